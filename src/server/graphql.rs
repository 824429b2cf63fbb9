//! GraphQL over HTTP: `POST /graphql` and `GET /graphql`.
//!
//! Every request, single or batched, GET or POST, takes the same path
//! ([`answer`]):
//!
//! 1. automatic persisted queries: a request carrying only
//!    `extensions.persistedQuery.sha256Hash` gets its text from the
//!    persisted-query store, or `PERSISTED_QUERY_NOT_FOUND`; one carrying
//!    text and hash has the hash checked, and the text is stored once it
//!    validated;
//! 2. the response fast path: a request without credentials or cache
//!    tracing is looked up by the hash of its normalized document,
//!    operation name and canonical variables; a kept response is sent as it
//!    is (or `304 Not Modified`), with nothing parsed or executed;
//! 3. otherwise the document comes from the parsed-document cache, the
//!    request executes, and a response built only from fresh cached
//!    resolvers is kept for the next identical request.
//!
//! HTTP caching: kept responses carry `Cache-Control: public,
//! max-age=<seconds left>` and a strong `ETag` (one per media type);
//! `If-None-Match` on a `GET` or `HEAD` gets `304 Not Modified`; everything
//! else is `private, no-store`. The media type and the status of request
//! errors follow the `Accept` header ([`super::media`]); every response
//! says `Vary: Accept`. A request's own `Cache-Control: no-cache` skips the
//! kept-response lookup (the response executes, refreshing its values, and
//! is kept anew); `no-store` keeps nothing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use async_graphql::Variables;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest as _, State};
use axum::http::header::{
    ACCEPT, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH, VARY,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use super::front::RawRequest;
use super::media::{Accepted, ResponseMedia};
use super::{MAX_BODY_BYTES, REQUEST_ID_HEADER, ServerState};
use crate::cache::{CacheDirectives, Dependencies, StoredResponse};
use crate::config::AdminConfig;
use crate::error::code;
use crate::graphql::admin::{Bearer, Credentials};
use crate::graphql::document::{DocumentHash, check_tokens, is_cacheable, is_mutation};
use crate::graphql::errors::{attach_request_id, coded_error, shape};
use crate::graphql::loader::{CACHE_DEBUG_HEADER, CacheTrace};

/// `Cache-Control` of everything that is not a kept public response.
pub(super) const NO_STORE: HeaderValue = HeaderValue::from_static("private, no-store");

/// `Vary` of every GraphQL response: the media type follows `Accept`.
pub(super) const VARY_ACCEPT: HeaderValue = HeaderValue::from_static("accept");

/// One GraphQL request as sent: a POST body (or batch item), or the GET
/// parameters with their JSON decoded.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireRequest {
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    operation_name: Option<String>,
    #[serde(default)]
    variables: Option<Value>,
    #[serde(default)]
    extensions: Option<Value>,
}

/// GET parameters: `variables` and `extensions` are JSON text.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetParams {
    query: Option<String>,
    operation_name: Option<String>,
    variables: Option<String>,
    extensions: Option<String>,
}

/// What the request line and headers say about the caller.
struct Caller {
    request_id: Option<HeaderValue>,
    client: SocketAddr,
    /// What `Accept` allows.
    accepted: Accepted,
    /// `If-None-Match` of a `GET` or `HEAD` (conditional requests apply
    /// to safe methods only, RFC 9110 13.1.2), for a kept response's `304`.
    if_none_match: Option<HeaderValue>,
    bearer: Bearer,
    /// `x-anigo-cache-debug: 1` from a caller allowed to see the trace
    /// (the admin, or anyone with `CACHE_DEBUG_PUBLIC`); from anyone else
    /// the header is ignored.
    wants_trace: bool,
    /// No credentials and no trace: the answer may come from, and go to,
    /// the shared response cache.
    may_share: bool,
    /// `Cache-Control: no-cache` / `no-store` as sent (honoured only where
    /// `CACHE_CLIENT_DIRECTIVES` allows).
    directives: CacheDirectives,
}

impl Caller {
    fn new(method: &Method, headers: &HeaderMap, client: SocketAddr, admin: &AdminConfig) -> Self {
        let authorization = headers.get(AUTHORIZATION);
        let bearer = Bearer::from_header(authorization.map(HeaderValue::as_bytes));
        let wants_trace = headers
            .get(CACHE_DEBUG_HEADER)
            .is_some_and(|value| value.as_bytes() == b"1")
            && (admin.is_cache_debug_public
                || admin
                    .token
                    .as_ref()
                    .is_some_and(|token| bearer.is_token(token)));
        let is_safe = method == Method::GET || method == Method::HEAD;
        Self {
            request_id: headers.get(REQUEST_ID_HEADER).cloned(),
            client,
            accepted: Accepted::from_header(headers.get(ACCEPT)),
            if_none_match: headers.get(IF_NONE_MATCH).filter(|_| is_safe).cloned(),
            bearer,
            wants_trace,
            may_share: authorization.is_none() && !wants_trace,
            directives: CacheDirectives::from_headers(headers),
        }
    }

    /// The media type to answer in: the negotiated one, or plain JSON for
    /// the errors sent before (or instead of) negotiation.
    fn media(&self) -> ResponseMedia {
        self.accepted.media.unwrap_or(ResponseMedia::Json)
    }
}

/// How one request was answered.
enum Answer {
    /// A kept public response (found, or just stored).
    Kept(Arc<StoredResponse>),
    /// Executed; not to be stored by anyone.
    Executed {
        response: async_graphql::Response,
        is_timeout: bool,
    },
    /// Refused at the HTTP level (single GET requests only).
    Refused(Response),
}

/// Answers one request; see the module documentation for the steps.
/// `raw`: the request's bytes as the front door read them (a single
/// request only); indexed once they lead to a kept response, so the next
/// identical bytes are answered before routing ([`super::front`]).
async fn answer(
    state: &ServerState,
    caller: &Caller,
    wire: WireRequest,
    is_get: bool,
    raw: Option<RawRequest>,
) -> Answer {
    let started = Instant::now();
    let cache = &state.app.cache;
    let directives = cache.client_directives(caller.directives);
    let persisted = match persisted_hash(wire.extensions.as_ref()) {
        Ok(persisted) => persisted,
        Err(message) => return request_error(&message, code::BAD_REQUEST),
    };
    let query: Arc<str> = match (wire.query, persisted) {
        (Some(text), Some(hash)) if !text.is_empty() => {
            if <[u8; 32]>::from(Sha256::digest(text.as_bytes())) != hash {
                return request_error("provided sha does not match query", code::BAD_REQUEST);
            }
            Arc::from(text)
        }
        (_, Some(hash)) => match cache.persisted_query(&hash).await {
            Some(text) => text,
            None => {
                return request_error("PersistedQueryNotFound", code::PERSISTED_QUERY_NOT_FOUND);
            }
        },
        (text, None) => Arc::from(text.unwrap_or_default()),
    };
    let mut variables = match wire.variables {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(variables)) => variables,
        Some(_) => {
            return request_error("`variables` must be a JSON object", code::BAD_REQUEST);
        }
    };
    let operation_name = wire.operation_name.filter(|name| !name.is_empty());
    // Before normalizing and hashing: a text far over the token limit is
    // refused for the price of counting up to the limit.
    if let Err(err) = check_tokens(&query, state.app.config.graphql.max_tokens) {
        return request_error_from(err);
    }
    let document_hash = DocumentHash::of(&query);

    // What identifies this request: the document, operation and variables
    // (a map serializes with sorted keys: canonical).
    let request_key = {
        let canonical = serde_json::to_vec(&variables).unwrap_or_default();
        document_hash.response_key(operation_name.as_deref(), &canonical)
    };
    // The fast path: a kept response, nothing parsed or executed.
    let response_key =
        (caller.may_share && cache.is_response_cache_enabled()).then_some(request_key);
    let is_known_miss = raw.as_ref().is_some_and(|raw| raw.is_known_miss);
    let raw = raw.map(|raw| raw.bytes);
    if let Some(key) = &response_key
        && !is_known_miss
        && !directives.has_no_cache
        && let Some(kept) = cache.cached_response(key).await
    {
        if let Some(hash) = persisted {
            cache.persist_query(hash, query).await;
        }
        // Counted with executed requests, so request-rate and latency
        // dashboards see all GraphQL traffic.
        let operation = crate::metrics::operation_handles(operation_name.as_deref());
        operation.record(true, started.elapsed());
        if let Some(raw) = raw {
            state.requests.insert(raw, *key, operation).await;
        }
        return Answer::Kept(kept);
    }

    // Refused before execution: the document's limits and argument values,
    // then this request's variables (see `graphql::document`).
    let parsed = match state
        .documents
        .get_or_parse(document_hash, &query, &state.app.config.graphql)
        .await
        .and_then(|parsed| {
            parsed.check_variables(operation_name.as_deref(), &mut variables)?;
            Ok(parsed)
        }) {
        Ok(parsed) => Some(parsed),
        Err(errors) => {
            crate::metrics::operation_handles(operation_name.as_deref())
                .record(false, started.elapsed());
            return Answer::Executed {
                response: async_graphql::Response::from_errors(errors),
                is_timeout: false,
            };
        }
    };
    let document = parsed.map(|parsed| parsed.document);
    // GET must never change anything: a link or an <img> can send it.
    if is_get
        && document
            .as_deref()
            .is_some_and(|document| is_mutation(document, operation_name.as_deref()))
    {
        let mut response = http_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "mutations need POST",
            code::BAD_REQUEST,
            caller.media(),
        );
        response
            .headers_mut()
            .insert(axum::http::header::ALLOW, HeaderValue::from_static("POST"));
        return Answer::Refused(response);
    }
    let dependencies = response_key
        .filter(|_| {
            !directives.has_no_store
                && document
                    .as_deref()
                    .is_some_and(|document| is_cacheable(document, operation_name.as_deref()))
        })
        .map(|key| (key, Arc::new(Dependencies::default())));

    let mut request = async_graphql::Request::new(query.as_ref())
        .variables(Variables::from_json(Value::Object(variables)));
    // Looked up before the name moves into the request.
    let indexed_operation = raw
        .as_ref()
        .map(|_| crate::metrics::operation_handles(operation_name.as_deref()));
    if let Some(name) = operation_name {
        request = request.operation_name(name);
    }
    if let Some(document) = &document {
        request.set_parsed_query(document.as_ref().clone());
    }
    if let Some((_, dependencies)) = &dependencies {
        request = request.data(Arc::clone(dependencies));
    }
    if !directives.is_empty() {
        request = request.data(directives);
    }
    let is_parsed = document.is_some();
    let is_prevalidated = is_parsed && state.validated.contains_key(&request_key);
    let epoch = cache.response_epoch();
    let (response, is_timeout) = execute(state, caller, request, is_parsed, is_prevalidated).await;
    if is_parsed && !is_prevalidated && !is_timeout && !is_request_error(&response) {
        state.validated.insert(request_key, ()).await;
    }

    if let Some(hash) = persisted
        && !is_timeout
        && !is_request_error(&response)
    {
        cache.persist_query(hash, query).await;
    }
    if let Some((key, dependencies)) = dependencies
        && !is_timeout
        && response.errors.is_empty()
        && response.extensions.is_empty()
        && let Ok(body) = serde_json::to_vec(&response)
        && let Some(kept) = cache
            .store_response(key, exact_bytes(body), &dependencies, epoch)
            .await
    {
        if let (Some(raw), Some(operation)) = (raw, indexed_operation) {
            state.requests.insert(raw, key, operation).await;
        }
        return Answer::Kept(kept);
    }
    Answer::Executed {
        response,
        is_timeout,
    }
}

/// `body` in an allocation of its own length, for keeping: serde_json grew
/// the vector by doubling, so it may hold up to twice its length, while a
/// kept response is weighed by its length and lives for minutes. A copy,
/// not `shrink_to_fit`: mimalloc leaves a block that shrinks by less than
/// half where it is, at its old size.
fn exact_bytes(body: Vec<u8>) -> Bytes {
    if body.capacity() == body.len() {
        Bytes::from(body)
    } else {
        Bytes::copy_from_slice(&body)
    }
}

/// `extensions.persistedQuery`'s SHA-256, when the request has one.
fn persisted_hash(extensions: Option<&Value>) -> Result<Option<[u8; 32]>, String> {
    let Some(persisted) = extensions.and_then(|extensions| extensions.get("persistedQuery")) else {
        return Ok(None);
    };
    if persisted.get("version").and_then(Value::as_u64) != Some(1) {
        return Err("unsupported persisted query version (only 1 is supported)".to_owned());
    }
    let hash = persisted
        .get("sha256Hash")
        .and_then(Value::as_str)
        .and_then(parse_sha256_hex)
        .ok_or_else(|| {
            "`persistedQuery.sha256Hash` must be 64 hexadecimal characters".to_owned()
        })?;
    Ok(Some(hash))
}

/// 64 hex digits as 32 bytes.
fn parse_sha256_hex(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let digit = |b: u8| {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let mut hash = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        hash[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(hash)
}

/// Runs one GraphQL request, attaching the request id to internal errors
/// and bounding it by `REQUEST_TIMEOUT_SECS`. Returns whether it timed out.
async fn execute(
    state: &ServerState,
    caller: &Caller,
    request: async_graphql::Request,
    is_parsed: bool,
    is_prevalidated: bool,
) -> (async_graphql::Response, bool) {
    let credentials = Credentials {
        bearer: caller.bearer.clone(),
        client: Some(caller.client),
    };
    let mut request = request.data(credentials);
    let trace = caller.wants_trace.then(CacheTrace::default);
    if let Some(trace) = &trace {
        request = request.data(trace.clone());
    }
    let metrics = crate::metrics::operation_handles(request.operation_name.as_deref());
    let started = Instant::now();
    let limit = state.app.config.graphql.request_timeout;
    let schema = if is_prevalidated {
        &state.schema.prevalidated
    } else {
        &state.schema.strict
    };
    let (mut response, is_timeout) =
        match tokio::time::timeout(limit, schema.execute(request)).await {
            Ok(response) => (response, false),
            Err(_) => {
                tracing::warn!(timeout_secs = limit.as_secs(), "GraphQL request timed out");
                let message = format!(
                    "the request took longer than {} s and was stopped",
                    limit.as_secs()
                );
                (error_response(&message, code::TIMEOUT), true)
            }
        };
    metrics.record(response.errors.is_empty(), started.elapsed());
    shape(&mut response, is_parsed);
    let request_id = caller.request_id.as_ref().and_then(|id| id.to_str().ok());
    attach_request_id(&mut response, request_id.unwrap_or_default());
    if let Some(trace) = trace {
        let entries = async_graphql::to_value(trace.entries()).unwrap_or_default();
        response.extensions.insert("cache".to_owned(), entries);
    }
    (response, is_timeout)
}

/// A request refused before execution, as a GraphQL error.
fn request_error(message: &str, code: &'static str) -> Answer {
    request_error_from(coded_error(message, code))
}

/// A request refused before execution with `error`.
fn request_error_from(error: async_graphql::ServerError) -> Answer {
    Answer::Executed {
        response: async_graphql::Response::from_errors(vec![error]),
        is_timeout: false,
    }
}

/// A GraphQL response holding one error with `code`.
pub(super) fn error_response(message: &str, code: &'static str) -> async_graphql::Response {
    async_graphql::Response::from_errors(vec![coded_error(message, code)])
}

/// An HTTP error with a GraphQL-shaped body in `media`.
pub(super) fn http_error(
    status: StatusCode,
    message: &str,
    code: &'static str,
    media: ResponseMedia,
) -> Response {
    let mut response = single_response(error_response(message, code), false, media);
    *response.status_mut() = status;
    response
}

/// `406 Not Acceptable`: the client accepts neither GraphQL response type.
/// The body is plain JSON anyway, so a person reading it learns why.
fn not_acceptable() -> Response {
    http_error(
        StatusCode::NOT_ACCEPTABLE,
        "this endpoint answers application/graphql-response+json or application/json, and the Accept header allows neither",
        code::NOT_ACCEPTABLE,
        ResponseMedia::Json,
    )
}

/// Whether nothing executed: parse, validation, limits, variables, unknown
/// persisted query (errors without a path, and no data).
fn is_request_error(response: &async_graphql::Response) -> bool {
    response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|err| err.path.is_empty())
}

/// Whether any error of the response has `code`. An unknown persisted
/// query is answered 200, as Apollo's servers do, so that no client-side
/// HTTP error handling hides the code that tells the client to send the
/// full text.
fn has_code(response: &async_graphql::Response, code: &str) -> bool {
    response.errors.iter().any(|err| {
        matches!(
            err.extensions.as_ref().and_then(|e| e.get("code")),
            Some(async_graphql::Value::String(found)) if found == code
        )
    })
}

/// The JSON of one executed response: a request error has no `data` entry.
fn response_json(response: &async_graphql::Response) -> Vec<u8> {
    if !is_request_error(response) {
        return serde_json::to_vec(response).unwrap_or_default();
    }
    let mut body = serde_json::to_value(response).unwrap_or_default();
    if let Some(object) = body.as_object_mut() {
        object.remove("data");
    }
    body.to_string().into_bytes()
}

/// One executed response with the GraphQL-over-HTTP status rules: a
/// request that is not a well-formed GraphQL-over-HTTP request (code
/// `BAD_REQUEST`: bad `variables` or `extensions`) is 400; a GraphQL
/// request error (parse, validation, limits) is 400 when answered as
/// `application/graphql-response+json` and 200 as `application/json`; an
/// unknown persisted query is 200; a timeout 504; anything that executed
/// 200. Never stored by HTTP caches.
pub(super) fn single_response(
    response: async_graphql::Response,
    is_timeout: bool,
    media: ResponseMedia,
) -> Response {
    let status = if is_timeout {
        StatusCode::GATEWAY_TIMEOUT
    } else if is_request_error(&response)
        && !has_code(&response, code::PERSISTED_QUERY_NOT_FOUND)
        && (media.has_error_statuses() || has_code(&response, code::BAD_REQUEST))
    {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    private_json(status, response_json(&response), media)
}

/// A kept response in `media`: its bytes with that representation's
/// `ETag` and `Cache-Control: public`, or `304 Not Modified` when a
/// conditional `GET`/`HEAD` shows the client holds them already.
fn kept_response(
    kept: &StoredResponse,
    media: ResponseMedia,
    if_none_match: Option<&HeaderValue>,
) -> Response {
    let cache_control = HeaderValue::from_str(&format!("public, max-age={}", kept.max_age_secs()))
        .unwrap_or(NO_STORE);
    let etag = match media {
        ResponseMedia::GraphqlResponseJson => kept.etags[0].clone(),
        ResponseMedia::Json => kept.etags[1].clone(),
    };
    if if_none_match.is_some_and(|value| etag_matches(value.as_bytes(), etag.as_bytes())) {
        return (
            StatusCode::NOT_MODIFIED,
            [
                (ETAG, etag),
                (CACHE_CONTROL, cache_control),
                (VARY, VARY_ACCEPT),
            ],
        )
            .into_response();
    }
    (
        [
            (CONTENT_TYPE, media.content_type()),
            (ETAG, etag),
            (CACHE_CONTROL, cache_control),
            (VARY, VARY_ACCEPT),
        ],
        kept.body.clone(),
    )
        .into_response()
}

/// `If-None-Match` semantics (RFC 9110 13.1.2, weak comparison): `*`, or
/// any listed tag equal to ours once a `W/` prefix is ignored.
pub(super) fn etag_matches(if_none_match: &[u8], etag: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(if_none_match) else {
        return false;
    };
    let ours = std::str::from_utf8(etag).unwrap_or_default();
    text.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == ours
    })
}

/// Whether the request says its body is JSON. Anything else could come from
/// a cross-site form (text/plain, urlencoded, multipart need no CORS
/// preflight), so it is refused: CSRF protection for POST.
pub(super) fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

pub(super) async fn graphql_post(
    State(state): State<ServerState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    request: axum::extract::Request,
) -> Response {
    // Read the headers in place (the `HeaderMap` extractor would copy them).
    let is_json = is_json(request.headers());
    let caller = Caller::new(
        request.method(),
        request.headers(),
        client,
        &state.app.config.admin,
    );
    let media = caller.media();
    let raw = request.extensions().get::<RawRequest>().cloned();
    let body = match Bytes::from_request(request, &()).await {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!("the body is larger than {MAX_BODY_BYTES} bytes")
            } else {
                rejection.body_text()
            };
            return http_error(status, &message, code::BAD_REQUEST, media);
        }
    };
    if !is_json {
        return http_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "POST /graphql needs `Content-Type: application/json`",
            code::BAD_REQUEST,
            media,
        );
    }
    if caller.accepted.media.is_none() {
        return not_acceptable();
    }
    // An array is a batch; anything else one request.
    let is_array = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    if !is_array {
        return match serde_json::from_slice::<WireRequest>(&body) {
            Ok(wire) => single(answer(&state, &caller, wire, false, raw).await, &caller),
            Err(err) => not_a_request(&err, media),
        };
    }
    let requests = match serde_json::from_slice::<Vec<WireRequest>>(&body) {
        Ok(requests) => requests,
        Err(err) => return not_a_request(&err, media),
    };
    let max = state.app.config.graphql.max_batch;
    if requests.is_empty() || requests.len() > max {
        return http_error(
            StatusCode::BAD_REQUEST,
            &format!("a batch holds 1 to {max} requests (got {})", requests.len()),
            code::BATCH_TOO_LARGE,
            media,
        );
    }
    let answers = futures_util::future::join_all(
        requests
            .into_iter()
            .map(|wire| answer(&state, &caller, wire, false, None)),
    )
    .await;
    batch(answers, media)
}

fn not_a_request(err: &serde_json::Error, media: ResponseMedia) -> Response {
    http_error(
        StatusCode::BAD_REQUEST,
        &format!("the body is not a GraphQL request: {err}"),
        code::BAD_REQUEST,
        media,
    )
}

/// The HTTP response to one request.
fn single(answer: Answer, caller: &Caller) -> Response {
    match answer {
        Answer::Kept(kept) => kept_response(&kept, caller.media(), caller.if_none_match.as_ref()),
        Answer::Executed {
            response,
            is_timeout,
        } => single_response(response, is_timeout, caller.media()),
        Answer::Refused(response) => response,
    }
}

/// The HTTP response to a batch: a JSON array of the answers, 504 if any
/// timed out; never stored by HTTP caches as a whole.
fn batch(answers: Vec<Answer>, media: ResponseMedia) -> Response {
    let mut body = Vec::with_capacity(answers.len() * 256);
    let mut is_timeout = false;
    body.push(b'[');
    for (i, answer) in answers.into_iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        match answer {
            Answer::Kept(kept) => body.extend_from_slice(&kept.body),
            Answer::Executed {
                response,
                is_timeout: timed_out,
            } => {
                is_timeout |= timed_out;
                body.extend_from_slice(&response_json(&response));
            }
            // Only single GET requests are refused at the HTTP level.
            Answer::Refused(_) => body.extend_from_slice(&response_json(&error_response(
                "refused",
                code::BAD_REQUEST,
            ))),
        }
    }
    body.push(b']');
    let status = if is_timeout {
        StatusCode::GATEWAY_TIMEOUT
    } else {
        StatusCode::OK
    };
    private_json(status, body, media)
}

/// A GraphQL JSON body in `media` that no HTTP cache may store.
fn private_json(status: StatusCode, body: Vec<u8>, media: ResponseMedia) -> Response {
    (
        status,
        [
            (CONTENT_TYPE, media.content_type()),
            (CACHE_CONTROL, NO_STORE),
            (VARY, VARY_ACCEPT),
        ],
        body,
    )
        .into_response()
}

pub(super) async fn graphql_get(
    State(state): State<ServerState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    request: axum::extract::Request,
) -> Response {
    let caller = Caller::new(
        request.method(),
        request.headers(),
        client,
        &state.app.config.admin,
    );
    let query = request.uri().query().unwrap_or_default();
    let is_request = query
        .split('&')
        .any(|pair| pair.starts_with("query=") || pair.starts_with("extensions="));
    if !is_request {
        // A browser gets GraphiQL; a JSON client an error it can read.
        if caller.accepted.prefers_html {
            return super::graphiql::page_response();
        }
        return http_error(
            StatusCode::BAD_REQUEST,
            "GET /graphql needs a `query` parameter (or a persisted query's `extensions`); open it in a browser for GraphiQL",
            code::BAD_REQUEST,
            caller.media(),
        );
    }
    if caller.accepted.media.is_none() {
        return not_acceptable();
    }
    let wire = match get_request(query) {
        Ok(wire) => wire,
        Err(message) => {
            return http_error(
                StatusCode::BAD_REQUEST,
                &format!("invalid GraphQL GET request: {message}"),
                code::BAD_REQUEST,
                caller.media(),
            );
        }
    };
    let raw = request.extensions().get::<RawRequest>().cloned();
    single(answer(&state, &caller, wire, true, raw).await, &caller)
}

/// The request in a GET query string.
fn get_request(query: &str) -> Result<WireRequest, String> {
    let params: GetParams = serde_urlencoded::from_str(query).map_err(|err| err.to_string())?;
    let json = |name: &str, text: Option<String>| -> Result<Option<Value>, String> {
        match text.filter(|text| !text.is_empty()) {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|err| format!("`{name}` is not JSON: {err}")),
        }
    };
    Ok(WireRequest {
        query: params.query,
        operation_name: params.operation_name,
        variables: json("variables", params.variables)?,
        extensions: json("extensions", params.extensions)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_follows_weak_comparison() {
        assert!(etag_matches(b"\"abc\"", b"\"abc\""));
        assert!(etag_matches(b"W/\"abc\"", b"\"abc\""));
        assert!(etag_matches(b"\"x\", \"abc\"", b"\"abc\""));
        assert!(etag_matches(b"*", b"\"abc\""));
        assert!(!etag_matches(b"\"abd\"", b"\"abc\""));
        assert!(!etag_matches(b"abc", b"\"abc\""));
    }

    #[test]
    fn sha256_hashes_parse_as_hex() {
        let hex = "ecf4edb46db40b5132295c0291d62fb65d6759a9eedfa4d5d612dd5ec54a6b38";
        let hash = parse_sha256_hex(hex).expect("valid");
        assert_eq!(crate::cache::response::hex(&hash), hex);
        assert_eq!(
            parse_sha256_hex(&hex.to_uppercase()),
            Some(hash),
            "uppercase is accepted"
        );
        assert!(parse_sha256_hex(&hex[1..]).is_none());
        assert!(parse_sha256_hex(&format!("{}zz", &hex[2..])).is_none());
    }

    #[test]
    fn persisted_query_extensions_are_checked() {
        let ok =
            serde_json::json!({"persistedQuery": {"version": 1, "sha256Hash": "ab".repeat(32)}});
        assert_eq!(persisted_hash(Some(&ok)), Ok(Some([0xab; 32])));
        assert_eq!(persisted_hash(None), Ok(None));
        assert_eq!(
            persisted_hash(Some(&serde_json::json!({"other": 1}))),
            Ok(None)
        );
        let v2 =
            serde_json::json!({"persistedQuery": {"version": 2, "sha256Hash": "ab".repeat(32)}});
        assert!(persisted_hash(Some(&v2)).is_err());
        let short = serde_json::json!({"persistedQuery": {"version": 1, "sha256Hash": "ab"}});
        assert!(persisted_hash(Some(&short)).is_err());
    }
}
