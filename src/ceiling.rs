//! The benchmark ceiling (`anigo ceiling`, hidden): a bare HTTP server that
//! answers `/graphql` with fixed bytes held in memory.
//!
//! `scripts/bench` saves a real `popularAnime` response and serves it from
//! here, on the same HTTP stack (axum on hyper, tokio) as the real server,
//! but with no middleware, no GraphQL, no cache and no database. What this
//! reaches is the most any of the real configurations could reach on the
//! same machine, so the benchmark reports them as fractions of it. Not for
//! production use.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::app::shutdown_signal;

/// The media type the real server answers GraphQL with.
const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

/// Reads `body` once, then serves it on `bind` until SIGINT/SIGTERM.
pub async fn run(body: &Path, bind: SocketAddr) -> anyhow::Result<()> {
    let bytes = tokio::fs::read(body)
        .await
        .with_context(|| format!("reading the response body from {}", body.display()))?;
    let listener = TcpListener::bind(bind)
        .await
        .with_context(|| format!("binding the ceiling listener to {bind}"))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    tracing::info!(%addr, bytes = bytes.len(), "Ceiling listening on http://{addr}/graphql");
    axum::serve(listener, router(Bytes::from(bytes)))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving the ceiling")
}

/// `GET` and `POST /graphql`, both answering `body`; nothing else.
fn router(body: Bytes) -> Router {
    Router::new()
        .route("/graphql", get(answer).post(answer))
        .with_state(body)
}

/// Reads the request body (so the connection stays reusable, as the real
/// server's does) and answers a clone of the bytes: a reference count bump,
/// no copy.
async fn answer(State(body): State<Bytes>, _request: Bytes) -> impl IntoResponse {
    ([(CONTENT_TYPE, GRAPHQL_RESPONSE)], body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt as _;

    #[tokio::test]
    async fn post_and_get_answer_the_fixed_bytes() {
        let body = Bytes::from_static(br#"{"data":{"animeCount":3}}"#);
        for method in ["POST", "GET"] {
            let request = Request::builder()
                .method(method)
                .uri("/graphql")
                .header(CONTENT_TYPE, "application/json")
                .body(Body::from(r#"{"query":"{ animeCount }"}"#))
                .expect("valid request");

            let response = router(body.clone())
                .oneshot(request)
                .await
                .expect("infallible");

            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.headers()[CONTENT_TYPE], GRAPHQL_RESPONSE);
            let answered = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("body");
            assert_eq!(answered, body);
        }
    }
}
