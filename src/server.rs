//! The HTTP surface: routes and middleware.
//!
//! - `POST /graphql`: GraphQL over HTTP (JSON).
//! - `GET /graphql`: GraphiQL for browsers; with a `query` parameter, runs
//!   the query (GraphQL-over-HTTP GET).
//! - `GET /healthz`: the process is alive.
//! - `GET /readyz`: database and Redis status; 503 only when the database is
//!   unreachable (without Redis the service is degraded, not down).
//! - `GET /metrics`: Prometheus text (keep it off the public internet).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use async_graphql::http::GraphiQLSource;
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::Router;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, HeaderName, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::app::AppState;
use crate::cache::RedisStatus;
use crate::error::{INTERNAL_MESSAGE, code};
use crate::graphql::admin::{Bearer, Credentials};
use crate::graphql::errors::attach_request_id;
use crate::graphql::loader::{CACHE_DEBUG_HEADER, CacheTrace};
use crate::graphql::{AppSchema, RequestId};

/// Header carrying the request id, generated when the client sends none.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Largest accepted request body. GraphQL documents are small; this stops a
/// client from making us buffer megabytes (the GraphQL extractor reads the
/// whole body itself, so axum's default limit does not apply).
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
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES));

    Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route_layer(axum::middleware::from_fn(track_http))
        .layer(middleware)
        .with_state(ServerState { app, schema })
}

/// Runs one GraphQL request, attaching the request id to internal errors.
async fn execute(
    state: &ServerState,
    headers: &HeaderMap,
    client: SocketAddr,
    request: async_graphql::Request,
) -> GraphQLResponse {
    let request_id = headers
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let credentials = Credentials {
        bearer: Bearer::from_header(headers.get(AUTHORIZATION).map(|value| value.as_bytes())),
        client: Some(client),
    };
    let mut request = request
        .data(RequestId(request_id.clone()))
        .data(credentials);
    let trace = headers
        .get(CACHE_DEBUG_HEADER)
        .is_some_and(|value| value.as_bytes() == b"1")
        .then(CacheTrace::default);
    if let Some(trace) = &trace {
        request = request.data(trace.clone());
    }
    let operation = crate::metrics::operation_label(request.operation_name.as_deref());
    let started = Instant::now();
    let mut response = state.schema.execute(request).await;
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
    response.into()
}

async fn graphql_post(
    State(state): State<ServerState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    request: GraphQLRequest,
) -> GraphQLResponse {
    execute(&state, &headers, client, request.into_inner()).await
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
    match async_graphql::http::parse_query_string(query) {
        Ok(request) => execute(&state, &headers, client, request).await.into_response(),
        Err(err) => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({
                "errors": [{"message": format!("invalid GraphQL GET request: {err}"), "extensions": {"code": code::BAD_USER_INPUT}}]
            })),
        )
            .into_response(),
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
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(json!({ "errors": [{ "message": INTERNAL_MESSAGE, "extensions": { "code": code::INTERNAL } }] })),
    )
        .into_response()
}
