//! The front door: the connection loop (hyper's HTTP/1.1 on tokio, with
//! graceful shutdown) and, before any routing or middleware, the exact-bytes
//! fast path for repeated public GraphQL requests.
//!
//! A request whose bytes (the POST body, or the GET query string) were seen
//! before and led to a kept response is answered here: one lookup from the
//! bytes to the response key ([`RequestIndex`]), one lookup of the kept
//! response, and the headers the router's path would send. Nothing is
//! parsed, normalized, hashed, traced or routed. Everything else, including
//! a request whose bytes are new or whose kept response is gone, continues
//! into the axum router and the request path of [`super::graphql`], which
//! fills the index once it has a kept response for those bytes.
//!
//! Why a layer below axum: on a kept-response hit, the router, the tower
//! middleware (request-id, trace span, panic catcher, metrics) and the JSON
//! parse and normalization cost more than serving the bytes (measured with
//! callgrind; see `docs/performance.md`).
//!
//! What a request must look like to be tried here (anything else takes the
//! full path, which applies every rule): `GET` or `HEAD` with a query string,
//! or `POST` with `Content-Type: application/json` and a `Content-Length` of
//! at most the body limit; no `Authorization`, no `x-anigo-cache-debug`, no
//! request `Cache-Control` or `Pragma`; path `/graphql`. The mapping from
//! bytes to response key is a pure function of the bytes, so an index entry
//! never goes stale; whether the kept response is still current is decided
//! by the cache on every hit, exactly as on the full path.

use std::convert::Infallible;
use std::future::Future;
use std::mem::size_of;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::header::{
    ACCEPT, AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_NONE_MATCH,
    PRAGMA, VARY,
};
use axum::http::{HeaderName, HeaderValue, Method, Request, StatusCode};
use axum::response::Response;
use futures_util::future::BoxFuture;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::{Service, ServiceExt as _};
use tower_http::cors::CorsLayer;

use super::graphql::{NO_STORE, VARY_ACCEPT, etag_matches, is_json};
use super::media::{Accepted, ResponseMedia};
use super::{REQUEST_ID_HEADER, ServerState, new_request_id};
use crate::cache::ResponseKey;
use crate::graphql::loader::CACHE_DEBUG_HEADER;
use crate::metrics::OperationMetrics;

/// Budget of the request index, weighed by what each entry holds (see
/// [`entry_weight`]). A client sending endless distinct bodies only
/// evicts others; a miss costs one normal request.
pub(super) const INDEX_BUDGET_BYTES: u64 = 4 * 1024 * 1024;

/// Largest request kept in the index; longer ones take the full path.
const MAX_INDEXED_BYTES: usize = 16 * 1024;

/// What an index entry holds: its own copy of the request bytes (see
/// [`RequestIndex::insert`]), the key and the entry (the entry behind its
/// `Arc` counts), and moka's per-entry bookkeeping (measured, see
/// `cache::local::ENTRY_OVERHEAD_BYTES`).
fn entry_weight(raw: &RequestBytes) -> u32 {
    let held = raw.bytes.len()
        + size_of::<RequestBytes>()
        + 2 * size_of::<usize>()
        + size_of::<IndexEntry>()
        + crate::cache::local::ENTRY_OVERHEAD_BYTES as usize;
    u32::try_from(held).unwrap_or(u32::MAX)
}

/// The GraphQL endpoint's path.
const GRAPHQL_PATH: &str = "/graphql";

/// The request id header, as a name built once.
const REQUEST_ID: HeaderName = HeaderName::from_static(REQUEST_ID_HEADER);

/// The cache debug header, as a name built once.
const CACHE_DEBUG: HeaderName = HeaderName::from_static(CACHE_DEBUG_HEADER);

/// Headers a fast-path answer carries at most (content type, entity tag,
/// caching, vary, request id), reserved at once.
const ANSWER_HEADERS: usize = 5;

/// The request bytes as the front door read them, handed to the GraphQL
/// handler (as a request extension) so it can index them once it has a kept
/// response for them.
#[derive(Clone, Debug)]
pub(super) struct RawRequest {
    /// The POST body or the GET query string.
    pub(super) bytes: RequestBytes,
    /// Whether the front door already asked the response cache for these
    /// bytes' key and found nothing current: the handler need not ask
    /// again (and count a second miss).
    pub(super) is_known_miss: bool,
}

/// The bytes that identify a request, and whether they are a GET query
/// string or a POST body: the same bytes mean different requests in the
/// two (a query string equal to a JSON body is no GraphQL request at all),
/// so they never share an index entry. hyper refuses the quotes a JSON
/// body needs in a request target, so today the two cannot meet; keying
/// them apart keeps it so whatever a parser accepts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct RequestBytes {
    is_get: bool,
    bytes: Bytes,
}

/// What the front door could do with a request's bytes.
enum Fast {
    /// Answered from a kept response.
    Answered(Response),
    /// The bytes are indexed, but their kept response is gone.
    Missed,
    /// Not answerable here (unknown bytes, or an `Accept` only the full
    /// path answers).
    Unknown,
}

/// Request bytes → the response key they lead to, and the metric handles
/// of their operation. See the module documentation for why an entry never
/// goes stale.
pub(super) struct RequestIndex {
    /// Hashed with foldhash (randomly seeded), not SipHash: the keys are
    /// whole request bodies, hashed on every request, and an attacker who
    /// crafted colliding bodies would only slow down their own lookups in
    /// a bounded map.
    entries: moka::future::Cache<RequestBytes, Arc<IndexEntry>, foldhash::fast::RandomState>,
}

/// What a known request leads to.
pub(super) struct IndexEntry {
    /// The kept response's key.
    pub(super) key: ResponseKey,
    /// The operation's request counters, as the full path records them.
    pub(super) operation: Arc<OperationMetrics>,
}

impl Default for RequestIndex {
    fn default() -> Self {
        Self {
            entries: moka::future::Cache::builder()
                .max_capacity(INDEX_BUDGET_BYTES)
                .weigher(|raw: &RequestBytes, _entry: &Arc<IndexEntry>| entry_weight(raw))
                .build_with_hasher(foldhash::fast::RandomState::default()),
        }
    }
}

impl RequestIndex {
    /// Remembers that `raw` leads to the kept response `key`. The index
    /// keeps a copy of the bytes: a POST body is a slice of the buffer
    /// hyper read the connection into (8 KB or more), and holding the
    /// slice would hold that whole buffer, many times what the entry
    /// weighs.
    pub(super) async fn insert(
        &self,
        raw: RequestBytes,
        key: ResponseKey,
        operation: Arc<OperationMetrics>,
    ) {
        if raw.bytes.len() <= MAX_INDEXED_BYTES && !self.entries.contains_key(&raw) {
            let raw = RequestBytes {
                is_get: raw.is_get,
                bytes: Bytes::copy_from_slice(&raw.bytes),
            };
            self.entries
                .insert(raw, Arc::new(IndexEntry { key, operation }))
                .await;
        }
    }

    async fn get(&self, raw: &RequestBytes) -> Option<Arc<IndexEntry>> {
        self.entries.get(raw).await
    }
}

/// The per-connection service: the fast path, then the router.
#[derive(Clone)]
struct Front {
    state: ServerState,
    router: Router,
    peer: SocketAddr,
}

/// Which fast-path shape a request has.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `GET` or `HEAD` with a query string: the query string is the key.
    Get,
    /// `POST` with a JSON body of known, acceptable length.
    Post,
}

impl Front {
    /// Whether `request` may be answered from the index, and how.
    fn shape(&self, request: &Request<Incoming>) -> Option<Shape> {
        if request.uri().path() != GRAPHQL_PATH || !self.state.app.cache.is_response_cache_enabled()
        {
            return None;
        }
        let headers = request.headers();
        // Credentials, tracing and client cache directives change what the
        // full path does with the request.
        if headers.contains_key(AUTHORIZATION)
            || headers.contains_key(CACHE_DEBUG)
            || headers.contains_key(CACHE_CONTROL)
            || headers.contains_key(PRAGMA)
        {
            return None;
        }
        match *request.method() {
            Method::GET | Method::HEAD if request.uri().query().is_some() => Some(Shape::Get),
            Method::POST if is_json(headers) => {
                let length = headers
                    .get(CONTENT_LENGTH)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.parse::<usize>().ok())?;
                (length <= MAX_INDEXED_BYTES).then_some(Shape::Post)
            }
            _ => None,
        }
    }

    async fn call(self, request: Request<Incoming>) -> Response {
        let Some(shape) = self.shape(&request) else {
            return self.route(request.map(Body::new), None).await;
        };
        let started = Instant::now();
        let (parts, body) = request.into_parts();
        let (bytes, body) = match shape {
            Shape::Get => {
                let query = parts.uri.query().unwrap_or_default();
                (Bytes::copy_from_slice(query.as_bytes()), Body::new(body))
            }
            Shape::Post => match body.collect().await {
                Ok(collected) => {
                    let bytes = collected.to_bytes();
                    (bytes.clone(), Body::from(bytes))
                }
                // The client went away mid-body: nobody reads the answer.
                Err(_) => return bad_body(),
            },
        };
        let raw = RequestBytes {
            is_get: shape == Shape::Get,
            bytes,
        };
        let is_known_miss = match self.answer(&parts, &raw, started).await {
            Fast::Answered(response) => return response,
            Fast::Missed => true,
            Fast::Unknown => false,
        };
        let request = Request::from_parts(parts, body);
        let raw = RawRequest {
            bytes: raw,
            is_known_miss,
        };
        self.route(request, Some(raw)).await
    }

    /// The kept response for `raw`, with the headers the full path sends,
    /// when the index knows the bytes and the cache still holds a current
    /// response for them.
    async fn answer(
        &self,
        parts: &axum::http::request::Parts,
        raw: &RequestBytes,
        started: Instant,
    ) -> Fast {
        let Some(entry) = self.state.requests.get(raw).await else {
            return Fast::Unknown;
        };
        let Some(media) = Accepted::from_header(parts.headers.get(ACCEPT)).media else {
            return Fast::Unknown;
        };
        let Some(kept) = self.state.app.cache.cached_response(&entry.key).await else {
            return Fast::Missed;
        };
        let etag = match media {
            ResponseMedia::GraphqlResponseJson => &kept.etags[0],
            ResponseMedia::Json => &kept.etags[1],
        };
        let request_id = parts
            .headers
            .get(REQUEST_ID)
            .cloned()
            .or_else(new_request_id);
        let cache_control =
            HeaderValue::from_str(&format!("public, max-age={}", kept.max_age_secs()))
                .unwrap_or(NO_STORE);
        let is_conditional = parts.method != Method::POST
            && parts
                .headers
                .get(IF_NONE_MATCH)
                .is_some_and(|value| etag_matches(value.as_bytes(), etag.as_bytes()));
        let mut response = if is_conditional {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            response
        } else {
            Response::new(Body::from(kept.body.clone()))
        };
        let headers = response.headers_mut();
        headers.reserve(ANSWER_HEADERS);
        if !is_conditional {
            headers.insert(CONTENT_TYPE, media.content_type());
        }
        headers.insert(ETAG, etag.clone());
        headers.insert(CACHE_CONTROL, cache_control);
        headers.insert(VARY, VARY_ACCEPT);
        if let Some(id) = request_id {
            headers.insert(REQUEST_ID, id);
        }
        let elapsed = started.elapsed();
        entry.operation.record(true, elapsed);
        crate::metrics::record_http(GRAPHQL_PATH, response.status().as_u16(), elapsed);
        Fast::Answered(response)
    }

    /// The router's answer, with the peer address its handlers read and,
    /// when the front door read the request bytes, those bytes.
    async fn route(self, mut request: Request<Body>, raw: Option<RawRequest>) -> Response {
        request.extensions_mut().insert(ConnectInfo(self.peer));
        if let Some(raw) = raw {
            request.extensions_mut().insert(raw);
        }
        match self.router.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
}

/// The answer to a request whose body could not be read.
fn bad_body() -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::BAD_REQUEST;
    response
}

impl Service<Request<Incoming>> for Front {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        let front = self.clone();
        Box::pin(async move { Ok(front.call(request).await) })
    }
}

/// Serves HTTP/1.1 on `listener` until `shutdown` resolves, then stops
/// accepting and lets open connections finish their requests for at most
/// `drain_timeout`. Returns whether every connection finished in time.
pub(super) async fn serve(
    listener: TcpListener,
    state: ServerState,
    router: Router,
    cors: Option<CorsLayer>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain_timeout: Duration,
) -> bool {
    let graceful = GracefulShutdown::new();
    let builder = hyper::server::conn::http1::Builder::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors, or the like: wait a little
                    // rather than spin; connections already open go on.
                    tracing::warn!(error = %err, "Accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // TCP_NODELAY stays off, as with `axum::serve`: on loopback it made
        // 24 KB per-resolver answers 3-7 % slower under wrk (hyper writes a
        // response with one vectored write either way).
        let front = Front {
            state: state.clone(),
            router: router.clone(),
            peer,
        };
        let connection = match &cors {
            Some(cors) => {
                let service = tower::ServiceBuilder::new()
                    .layer(cors.clone())
                    .service(front);
                graceful
                    .watch(
                        builder.serve_connection(
                            TokioIo::new(stream),
                            TowerToHyperService::new(service),
                        ),
                    )
                    .boxed_connection()
            }
            None => graceful
                .watch(
                    builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(front)),
                )
                .boxed_connection(),
        };
        tokio::spawn(connection);
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => true,
        () = tokio::time::sleep(drain_timeout) => false,
    }
}

/// A served connection as a spawnable future whose errors (a client that
/// hung up, a malformed request line) are not ours to report.
trait BoxedConnection {
    fn boxed_connection(self) -> BoxFuture<'static, ()>;
}

impl<F, E> BoxedConnection for F
where
    F: Future<Output = Result<(), E>> + Send + 'static,
{
    fn boxed_connection(self) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let _ = self.await;
        })
    }
}
