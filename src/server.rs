//! The HTTP surface: routes and middleware.
//!
//! - `POST /graphql`: GraphQL over HTTP (JSON).
//! - `GET /graphql`: GraphiQL for browsers; with a `query` parameter, runs
//!   the query (GraphQL-over-HTTP GET).
//! - `GET /healthz`: the process is alive.
//! - `GET /readyz`: database and Redis status; 503 only when the database is
//!   unreachable (without Redis the service is degraded, not down).
//! - `GET /metrics`: Prometheus text (keep it off the public internet).
//!
//! HTTP rules (GraphQL over HTTP, plus CSRF protection): POST bodies must be
//! `application/json` (else 415) and at most 1 MiB (else 413); a JSON array
//! is a batch of at most `GRAPHQL_MAX_BATCH`; GET never runs a mutation
//! (405); a request error (nothing executed) is 400 without `data`, a
//! timeout 504; every error body is GraphQL JSON with a code.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use async_graphql::http::GraphiQLSource;
use async_graphql_axum::GraphQLResponse;
use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderName, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::app::AppState;
use crate::cache::RedisStatus;
use crate::error::{INTERNAL_MESSAGE, code};
use crate::graphql::AppSchema;
use crate::graphql::admin::{Bearer, Credentials};
use crate::graphql::errors::{attach_request_id, coded_error};
use crate::graphql::loader::{CACHE_DEBUG_HEADER, CacheTrace};

/// Header carrying the request id, generated when the client sends none.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Largest accepted request body. GraphQL documents are small; this stops a
/// client from making us buffer megabytes. Enforced by the body extractor of
/// `graphql_post` (a larger body is 413 with a GraphQL error).
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// How long readiness waits for the database before calling it down.
const READY_DB_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
struct ServerState {
    app: AppState,
    schema: AppSchema,
}

/// Builds the router with its middleware stack.
pub fn router(app: AppState, schema: AppSchema) -> Router {
    let cors = cors_layer(&app.config.http.cors_allowed_origins);
    let routes = Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route_layer(axum::middleware::from_fn(track_http))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(cors)
        .with_state(ServerState { app, schema });
    with_middleware(routes)
}

/// Request ids, tracing and panic containment around any router.
fn with_middleware(routes: Router) -> Router {
    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    let middleware = ServiceBuilder::new()
        // Outermost: the id exists before the trace span is made, so every
        // log line of the request carries it.
        .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
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
    let request_id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let response = next.run(request).await;
    if response.extensions().get::<PanicMarker>().is_none() {
        return response;
    }
    let mut error = error_response(INTERNAL_MESSAGE, code::INTERNAL);
    attach_request_id(&mut error, &request_id);
    let mut response = single_response(error, false);
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}

/// CORS for the configured browser origins (none: no cross-site access).
fn cors_layer(origins: &[String]) -> CorsLayer {
    let origins: Vec<axum::http::HeaderValue> =
        origins.iter().filter_map(|o| o.parse().ok()).collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
        .allow_headers([
            CONTENT_TYPE,
            AUTHORIZATION,
            HeaderName::from_static(REQUEST_ID_HEADER),
            HeaderName::from_static(CACHE_DEBUG_HEADER),
        ])
        .expose_headers([HeaderName::from_static(REQUEST_ID_HEADER)])
        .max_age(Duration::from_secs(600))
}

/// Runs one GraphQL request, attaching the request id to internal errors
/// and bounding it by `REQUEST_TIMEOUT_SECS`. Returns whether it timed out.
async fn execute(
    state: &ServerState,
    headers: &HeaderMap,
    client: SocketAddr,
    request: async_graphql::Request,
) -> (async_graphql::Response, bool) {
    let request_id = headers
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let credentials = Credentials {
        bearer: Bearer::from_header(headers.get(AUTHORIZATION).map(|value| value.as_bytes())),
        client: Some(client),
    };
    let mut request = request.data(credentials);
    let trace = headers
        .get(CACHE_DEBUG_HEADER)
        .is_some_and(|value| value.as_bytes() == b"1")
        .then(CacheTrace::default);
    if let Some(trace) = &trace {
        request = request.data(trace.clone());
    }
    let operation = crate::metrics::operation_label(request.operation_name.as_deref());
    let started = Instant::now();
    let limit = state.app.config.graphql.request_timeout;
    let (mut response, is_timeout) =
        match tokio::time::timeout(limit, state.schema.execute(request)).await {
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
    let outcome = if response.errors.is_empty() {
        "ok"
    } else {
        "error"
    };
    metrics::counter!(crate::metrics::GRAPHQL_REQUESTS_TOTAL, "operation" => operation.clone(), "outcome" => outcome)
        .increment(1);
    metrics::histogram!(crate::metrics::GRAPHQL_REQUEST_SECONDS, "operation" => operation)
        .record(started.elapsed().as_secs_f64());
    attach_request_id(&mut response, &request_id);
    if let Some(trace) = trace {
        let entries = async_graphql::to_value(trace.entries()).unwrap_or_default();
        response.extensions.insert("cache".to_owned(), entries);
    }
    (response, is_timeout)
}

/// A GraphQL response holding one error with `code`.
fn error_response(message: &str, code: &'static str) -> async_graphql::Response {
    async_graphql::Response::from_errors(vec![coded_error(message, code)])
}

/// An HTTP error with a GraphQL-shaped body.
fn http_error(status: StatusCode, message: &str, code: &'static str) -> Response {
    let mut response = single_response(error_response(message, code), false);
    *response.status_mut() = status;
    response
}

/// One GraphQL response as `application/graphql-response+json`, with the
/// GraphQL-over-HTTP status rules: a request error (nothing executed: parse,
/// validation, limits, variables; errors without a path) has no `data`
/// entry and status 400; a timeout 504; anything that executed is 200.
fn single_response(response: async_graphql::Response, is_timeout: bool) -> Response {
    let is_request_error = response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|err| err.path.is_empty());
    let status = if is_timeout {
        StatusCode::GATEWAY_TIMEOUT
    } else if is_request_error {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    if !is_request_error && !is_timeout {
        return GraphQLResponse::from(response).into_response();
    }
    let mut body = serde_json::to_value(&response).unwrap_or_default();
    if let Some(object) = body.as_object_mut() {
        object.remove("data");
    }
    (
        status,
        [(CONTENT_TYPE, "application/graphql-response+json")],
        body.to_string(),
    )
        .into_response()
}

/// Whether the request says its body is JSON. Anything else could come from
/// a cross-site form (text/plain, urlencoded, multipart need no CORS
/// preflight), so it is refused: CSRF protection for POST.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

async fn graphql_post(
    State(state): State<ServerState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!("the body is larger than {MAX_BODY_BYTES} bytes")
            } else {
                rejection.body_text()
            };
            return http_error(status, &message, code::BAD_REQUEST);
        }
    };
    if !is_json(&headers) {
        return http_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "POST /graphql needs `Content-Type: application/json`",
            code::BAD_REQUEST,
        );
    }
    // An array is a batch; anything else one request. (Left to serde's
    // untagged enum, `[]` would parse as a request with an empty query.)
    let is_array = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let parsed = if is_array {
        serde_json::from_slice(&body).map(async_graphql::BatchRequest::Batch)
    } else {
        serde_json::from_slice(&body).map(async_graphql::BatchRequest::Single)
    };
    let batch: async_graphql::BatchRequest = match parsed {
        Ok(batch) => batch,
        Err(err) => {
            return http_error(
                StatusCode::BAD_REQUEST,
                &format!("the body is not a GraphQL request: {err}"),
                code::BAD_REQUEST,
            );
        }
    };
    match batch {
        async_graphql::BatchRequest::Single(request) => {
            let (response, is_timeout) = execute(&state, &headers, client, request).await;
            single_response(response, is_timeout)
        }
        async_graphql::BatchRequest::Batch(requests) => {
            let max = state.app.config.graphql.max_batch;
            if requests.is_empty() || requests.len() > max {
                return http_error(
                    StatusCode::BAD_REQUEST,
                    &format!("a batch holds 1 to {max} requests (got {})", requests.len()),
                    code::BATCH_TOO_LARGE,
                );
            }
            let results = futures_util::future::join_all(
                requests
                    .into_iter()
                    .map(|request| execute(&state, &headers, client, request)),
            )
            .await;
            let is_timeout = results.iter().any(|(_, timed_out)| *timed_out);
            let responses = results.into_iter().map(|(response, _)| response).collect();
            let batch = async_graphql::BatchResponse::Batch(responses);
            with_timeout_status(GraphQLResponse::from(batch).into_response(), is_timeout)
        }
    }
}

fn with_timeout_status(mut response: Response, is_timeout: bool) -> Response {
    if is_timeout {
        *response.status_mut() = StatusCode::GATEWAY_TIMEOUT;
    }
    response
}

async fn graphql_get(
    State(state): State<ServerState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let query = uri.query().unwrap_or_default();
    if !query.split('&').any(|pair| pair.starts_with("query=")) {
        return Html(
            GraphiQLSource::build()
                .endpoint("/graphql")
                .title("AniGo API")
                .finish(),
        )
        .into_response();
    }
    let request = match async_graphql::http::parse_query_string(query) {
        Ok(request) => request,
        Err(err) => {
            return http_error(
                StatusCode::BAD_REQUEST,
                &format!("invalid GraphQL GET request: {err}"),
                code::BAD_REQUEST,
            );
        }
    };
    // GET must never change anything: a link or an <img> can send it.
    if is_mutation(&request) {
        let mut response = http_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "mutations need POST",
            code::BAD_REQUEST,
        );
        response.headers_mut().insert(
            axum::http::header::ALLOW,
            axum::http::HeaderValue::from_static("POST"),
        );
        return response;
    }
    let (response, is_timeout) = execute(&state, &headers, client, request).await;
    single_response(response, is_timeout)
}

/// Whether the operation a request would run is a mutation (a document
/// that does not parse is left to the executor's own error).
fn is_mutation(request: &async_graphql::Request) -> bool {
    use async_graphql::parser::types::{DocumentOperations, OperationType};
    let Ok(document) = async_graphql::parser::parse_query(&request.query) else {
        return false;
    };
    match &document.operations {
        DocumentOperations::Single(operation) => operation.node.ty == OperationType::Mutation,
        DocumentOperations::Multiple(operations) => match request.operation_name.as_deref() {
            Some(name) => operations
                .get(name)
                .is_some_and(|operation| operation.node.ty == OperationType::Mutation),
            None => operations
                .values()
                .any(|operation| operation.node.ty == OperationType::Mutation),
        },
    }
}

/// Counts and times every request by route (the matched pattern, so ids in
/// paths cannot grow the label set) and status.
async fn track_http(request: Request, next: axum::middleware::Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(crate::metrics::HTTP_REQUESTS_TOTAL, "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!(crate::metrics::HTTP_REQUEST_SECONDS, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Prometheus exposition text.
async fn metrics_text(State(state): State<ServerState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(&state.app),
    )
        .into_response()
}

async fn healthz() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<ServerState>) -> Response {
    let db = crate::db::ping(&state.app.db, READY_DB_TIMEOUT).await;
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
            Ok(latency) => json!({ "status": "up", "latencyMs": latency.as_secs_f64() * 1e3 }),
            Err(_) => json!({ "status": "down" }),
        },
        "redis": {
            "status": redis_status,
            "addr": state.app.redis.addr(),
            "latencyMs": redis_latency.map(|latency| latency.as_secs_f64() * 1e3),
        },
    });
    if let Err(reason) = &db {
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
    use tower::ServiceExt as _;

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
