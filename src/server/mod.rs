//! The HTTP surface: routes and middleware.
//!
//! - `POST /graphql`: GraphQL over HTTP (JSON), see [`graphql`] for the
//!   request path (persisted queries, the response fast path, HTTP caching).
//! - `GET /graphql`: GraphiQL for browsers; with a `query` (or a persisted
//!   query's `extensions`) parameter, runs the query (GraphQL-over-HTTP
//!   GET).
//! - `GET /graphiql/{file}`: GraphiQL's scripts and stylesheets, compiled
//!   in (see [`graphiql`]); no CDN is involved.
//! - `GET /healthz`: the process is alive.
//! - `GET /readyz`: database (with its breaker) and Redis status; 503 only
//!   when the database is unreachable, at once while the breaker is open
//!   (without Redis the service is degraded, not down).
//! - `GET /metrics`: Prometheus text (keep it off the public internet).
//!
//! HTTP rules (GraphQL over HTTP, plus CSRF protection): POST bodies must be
//! `application/json` (else 415) and at most 1 MiB (else 413); a JSON array
//! is a batch of at most `GRAPHQL_MAX_BATCH`; GET never runs a mutation
//! (405); a request error (nothing executed) is 400 without `data`, a
//! timeout 504 (an unknown persisted query is 200, as clients expect); every
//! error body is GraphQL JSON with a code.

mod front;
mod graphiql;
mod graphql;
mod media;
mod prometheus;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::header::ETAG;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

use crate::cache::ResponseKey;
use crate::error::{INTERNAL_MESSAGE, code};
use crate::graphql::Schemas;
use crate::graphql::document::{DOCUMENT_BUDGET_BYTES, DocumentCache};
use crate::graphql::errors::attach_request_id;
use crate::graphql::loader::CACHE_DEBUG_HEADER;
use crate::redis::RedisStatus;
use crate::state::AppState;
use graphql::{error_response, single_response};

/// Header carrying the request id, generated when the client sends none.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Largest accepted request body. GraphQL documents are small; this stops a
/// client from making us buffer megabytes. Enforced by the body extractor of
/// `graphql_post` (a larger body is 413 with a GraphQL error).
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Budget of the validation memo. Each remembered request costs
/// [`VALIDATED_ENTRY_BYTES`], so 4 MiB remembers about 14,500 requests:
/// a request not among them is validated again (tens of microseconds),
/// nothing worse. It was 50,000 entries by count, about 13 MiB that no
/// budget accounted for.
pub const VALIDATED_BUDGET_BYTES: u64 = 4 * 1024 * 1024;

/// What one remembered request costs: its 32-byte key in moka's entry and
/// moka's bookkeeping. Measured with a counting allocator (the test
/// `a_remembered_request_costs_what_the_memo_weighs`): about 256 bytes
/// requested per entry, plus an eighth for the allocator's size classes.
const VALIDATED_ENTRY_BYTES: u32 = 288;

/// How long readiness waits for the database before calling it down (the
/// database guard's own bound is acquire + statement timeout; this caps it
/// for probes whatever those are set to).
const READY_DB_TIMEOUT: Duration = Duration::from_secs(2);

/// What every handler shares; one `Arc`, so the per-request clone axum
/// makes is one reference-count increment.
#[derive(Clone)]
struct ServerState(Arc<ServerInner>);

struct ServerInner {
    app: AppState,
    schema: Schemas,
    /// Requests (document, operation, variables) that passed strict
    /// validation once: they run on the prevalidated schema.
    validated: moka::future::Cache<ResponseKey, ()>,
    /// Parsed documents by normalized-text hash.
    documents: DocumentCache,
    /// Request bytes that led to kept responses, for the front door.
    requests: front::RequestIndex,
}

impl std::ops::Deref for ServerState {
    type Target = ServerInner;

    fn deref(&self) -> &ServerInner {
        &self.0
    }
}

/// Serves HTTP on `listener` until `shutdown` resolves, then stops
/// accepting and lets in-flight requests finish for at most
/// `drain_timeout`. Returns whether they all finished in time.
pub async fn serve(
    listener: TcpListener,
    app: AppState,
    schema: Schemas,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain_timeout: Duration,
) -> bool {
    let origins = &app.config.http.cors_allowed_origins;
    // Without configured origins there is no cross-site access to grant,
    // and no layer to run on every request.
    let cors =
        (!origins.is_empty()).then(|| cors_layer(origins, &app.config.http.cors_allowed_headers));
    log_budgets(&app);
    let state = ServerState(Arc::new(ServerInner {
        app,
        schema,
        documents: DocumentCache::default(),
        validated: validation_memo(),
        requests: front::RequestIndex::default(),
    }));
    let router = router(state.clone());
    front::serve(listener, state, router, cors, shutdown, drain_timeout).await
}

/// The validation memo: requests that passed strict validation once,
/// bounded by [`VALIDATED_BUDGET_BYTES`].
fn validation_memo() -> moka::future::Cache<ResponseKey, ()> {
    moka::future::Cache::builder()
        .max_capacity(VALIDATED_BUDGET_BYTES)
        .weigher(|_key: &ResponseKey, _: &()| VALIDATED_ENTRY_BYTES)
        .build()
}

/// Logs what each in-process cache may hold, and their sum: resident
/// memory should stay within it plus a fixed allowance for the runtime,
/// the allocator and the connection pools (`scripts/soak` checks it, and
/// reads its budgets from this line).
fn log_budgets(app: &AppState) {
    let cache = &app.config.cache;
    let persisted = crate::cache::persisted::LOCAL_BUDGET_BYTES;
    let total = cache.local_max_bytes
        + cache.response_max_bytes
        + DOCUMENT_BUDGET_BYTES
        + VALIDATED_BUDGET_BYTES
        + front::INDEX_BUDGET_BYTES
        + persisted;
    tracing::info!(
        local_bytes = cache.local_max_bytes,
        responses_bytes = cache.response_max_bytes,
        documents_bytes = DOCUMENT_BUDGET_BYTES,
        validated_bytes = VALIDATED_BUDGET_BYTES,
        request_index_bytes = front::INDEX_BUDGET_BYTES,
        persisted_bytes = persisted,
        total_bytes = total,
        "In-process cache budgets"
    );
}

/// The routes with their middleware stack (CORS, when configured, wraps
/// the front door instead: it must apply to fast-path answers too).
fn router(state: ServerState) -> Router {
    let routes = Router::new()
        .route(
            "/graphql",
            get(graphql::graphql_get).post(graphql::graphql_post),
        )
        .merge(graphiql::routes())
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route_layer(axum::middleware::from_fn(track_http))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state);
    with_middleware(routes)
}

/// Request ids, tracing and panic containment around any router.
fn with_middleware(routes: Router) -> Router {
    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    let middleware = ServiceBuilder::new()
        // Outermost: the id exists before the trace span is made, so every
        // log line of the request carries it.
        .layer(SetRequestIdLayer::new(request_id.clone(), RandomRequestId))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
            let id = request
                .headers()
                .get(REQUEST_ID_HEADER)
                .and_then(|value| value.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id = %id)
        }))
        .layer(PropagateRequestIdLayer::new(request_id))
        .layer(axum::middleware::from_fn(request_id_into_panic_bodies))
        .layer(CatchPanicLayer::custom(panic_response));
    routes.layer(middleware)
}

/// Marks the response [`panic_response`] made, so the request id can be
/// added to its body.
#[derive(Clone, Copy)]
struct PanicMarker;

/// Puts the request id into the body of a caught panic's response, as for
/// every other internal error.
async fn request_id_into_panic_bodies(request: Request, next: axum::middleware::Next) -> Response {
    let request_id = request.headers().get(REQUEST_ID_HEADER).cloned();
    let response = next.run(request).await;
    if response.extensions().get::<PanicMarker>().is_none() {
        return response;
    }
    let mut error = error_response(INTERNAL_MESSAGE, code::INTERNAL);
    let request_id = request_id.as_ref().and_then(|id| id.to_str().ok());
    attach_request_id(&mut error, request_id.unwrap_or_default());
    let mut response = single_response(error, false, media::ResponseMedia::Json);
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}

/// Request ids for requests that bring none (see [`new_request_id`]).
#[derive(Clone, Copy)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<RequestId> {
        new_request_id().map(RequestId::new)
    }
}

/// A new request id: a random version-4 UUID from the thread-local
/// generator (no system call per request).
fn new_request_id() -> Option<HeaderValue> {
    let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    HeaderValue::from_str(id.hyphenated().encode_lower(&mut text)).ok()
}

/// Request headers browsers may send cross-site without further
/// configuration: ours, and what the common GraphQL clients add (Apollo
/// Client's `clientAwareness` and CSRF-prevention headers, the request's
/// `Cache-Control`).
const CORS_DEFAULT_HEADERS: [&str; 10] = [
    "content-type",
    "authorization",
    "apollographql-client-name",
    "apollographql-client-version",
    "apollo-require-preflight",
    "x-apollo-operation-name",
    "cache-control",
    "pragma",
    REQUEST_ID_HEADER,
    CACHE_DEBUG_HEADER,
];

/// How long a browser may reuse a preflight answer: two hours, the longest
/// Chromium honours (Firefox allows a day), so a page makes one preflight
/// per origin and header set, not one per query.
const CORS_MAX_AGE: Duration = Duration::from_secs(2 * 60 * 60);

/// CORS for the configured browser origins, allowing the default request
/// headers plus `CORS_ALLOWED_HEADERS`.
fn cors_layer(origins: &[String], extra_headers: &[HeaderName]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| o.parse().ok()).collect();
    let headers: Vec<HeaderName> = CORS_DEFAULT_HEADERS
        .iter()
        .map(|name| HeaderName::from_static(name))
        .chain(extra_headers.iter().cloned())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
        .allow_headers(headers)
        .expose_headers([HeaderName::from_static(REQUEST_ID_HEADER), ETAG])
        .max_age(CORS_MAX_AGE)
}

/// Counts and times every request by route (the matched pattern, so ids in
/// paths cannot grow the label set) and status.
async fn track_http(request: Request, next: axum::middleware::Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().cloned();
    let started = Instant::now();
    let response = next.run(request).await;
    crate::metrics::record_http(
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// Prometheus exposition text.
async fn metrics_text(State(state): State<ServerState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        prometheus::render(&state.app.cache, &state.app.db),
    )
        .into_response()
}

async fn healthz() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<ServerState>) -> Response {
    let database = &state.app.db;
    // With the breaker open the ping fails at once, without a pool wait.
    let db = match tokio::time::timeout(READY_DB_TIMEOUT, database.ping()).await {
        Ok(Ok(latency)) => Ok(latency),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err(format!(
            "no answer within {} ms",
            READY_DB_TIMEOUT.as_millis()
        )),
    };
    let breaker = database.breaker_state();
    let (redis_status, redis_latency) = state.app.redis.ping().await;
    let db_up = db.is_ok();
    let status = match (db_up, &redis_status) {
        (false, _) => "unready",
        (true, RedisStatus::Up) => "ready",
        (true, RedisStatus::Down) => "degraded",
    };
    let body = json!({
        "status": status,
        "database": match &db {
            Ok(latency) => json!({
                "status": "up",
                "latencyMs": latency.as_secs_f64() * 1e3,
                "breaker": breaker.as_str(),
            }),
            Err(_) => json!({ "status": "down", "breaker": breaker.as_str() }),
        },
        "redis": {
            "status": redis_status,
            "addr": state.app.redis.addr(),
            "latencyMs": redis_latency.map(|latency| latency.as_secs_f64() * 1e3),
        },
    });
    // While the breaker is open the outage was announced once already.
    if let Err(reason) = &db
        && !breaker.is_open()
    {
        tracing::warn!(reason = %reason, "Readiness: database unreachable");
    }
    let code = if db_up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}

/// A panic in a handler becomes a 500 with a GraphQL-shaped body; the panic
/// message goes to the log only.
fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(non-string panic)");
    tracing::error!(panic = %detail, "Request handler panicked");
    let mut response = (
        StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(json!({ "errors": [{ "message": INTERNAL_MESSAGE, "extensions": { "code": code::INTERNAL } }] })),
    )
        .into_response();
    response.extensions_mut().insert(PanicMarker);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt as _;
    use tower::ServiceExt as _;

    #[test]
    fn a_remembered_request_costs_what_the_memo_weighs() {
        const ENTRIES: u64 = 12_000;
        let memo = validation_memo();
        let mut held = 0;
        for i in 0..ENTRIES {
            let mut key = [0; 32];
            key[..8].copy_from_slice(&i.to_le_bytes());
            let insert = memo.insert(ResponseKey(key), ());
            // moka's future cache inserts without waiting here; what it
            // allocates on this thread is the entry's cost. Counting is
            // per thread, so tests running meanwhile do not count.
            held += allocation_counter::measure(|| {
                insert.now_or_never().expect("inserted at once");
            })
            .bytes_current;
        }
        let pending = memo.run_pending_tasks();
        held += allocation_counter::measure(|| {
            pending.now_or_never().expect("maintenance runs at once");
        })
        .bytes_current;
        assert_eq!(memo.entry_count(), ENTRIES, "nothing was evicted");
        let per_entry = u64::try_from(held).expect("entries are held") / ENTRIES;
        let weighed = u64::from(VALIDATED_ENTRY_BYTES);
        assert!(
            per_entry <= weighed && per_entry >= weighed * 3 / 4,
            "{per_entry} bytes per entry, weighed {weighed}"
        );
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_internal_with_the_request_id() {
        let routes: Router = Router::new().route(
            "/boom",
            get(|| async {
                panic!("secret detail from deep inside");
                #[allow(unreachable_code)]
                ()
            }),
        );
        let response = with_middleware(routes)
            .oneshot(
                axum::http::Request::get("/boom")
                    .header(REQUEST_ID_HEADER, "req-42")
                    .body(axum::body::Body::empty())
                    .expect("request"),
            )
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        let body: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
        assert_eq!(body["errors"][0]["extensions"]["code"], "INTERNAL");
        assert_eq!(body["errors"][0]["extensions"]["requestId"], "req-42");
        assert!(!String::from_utf8_lossy(&bytes).contains("secret"));
    }
}
