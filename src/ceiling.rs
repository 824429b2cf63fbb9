//! The benchmark ceiling (`anigo ceiling`, hidden): bare hyper answering
//! every request with fixed bytes held in memory.
//!
//! `scripts/bench` saves a real `popularAnime` response and serves it from
//! here: hyper's HTTP/1.1 connection on the same tokio runtime as the real
//! server, with no axum, no tower layers, no GraphQL, no cache and no
//! database. That is the most any configuration of the real server could
//! reach on the same machine, so the benchmark reports them as fractions of
//! it. Not for production use.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

use crate::app::shutdown_signal;

/// The media type the real server answers a plain JSON client with.
const CONTENT_TYPE_JSON: HeaderValue = HeaderValue::from_static("application/json; charset=utf-8");

/// Reads `body` once, then serves it on `bind` until SIGINT/SIGTERM.
pub async fn run(body: &Path, bind: SocketAddr) -> anyhow::Result<()> {
    let bytes = Bytes::from(
        tokio::fs::read(body)
            .await
            .with_context(|| format!("reading the response body from {}", body.display()))?,
    );
    let listener = TcpListener::bind(bind)
        .await
        .with_context(|| format!("binding the ceiling listener to {bind}"))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    tracing::info!(%addr, bytes = bytes.len(), "Ceiling listening on http://{addr}/graphql");
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(serve_connection(stream, bytes.clone()));
                }
                // Out of file descriptors and the like: the next accept may
                // work; the benchmark sees the errors in its own counts.
                Err(err) => tracing::warn!(error = %err, "Ceiling accept failed"),
            },
        }
    }
}

/// One keep-alive connection: every request, whatever its method and path,
/// is read to its end (so the connection stays reusable, as the real
/// server's does) and answered with a clone of `body` (a reference-count
/// bump, no copy).
async fn serve_connection(stream: TcpStream, body: Bytes) {
    // TCP_NODELAY off, as in the real server.
    let service = service_fn(move |request: Request<Incoming>| {
        let body = body.clone();
        async move { Ok::<_, Infallible>(answer(request, body).await) }
    });
    // A client closing its connection mid-request is not our concern here.
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

async fn answer<B>(request: Request<B>, body: Bytes) -> Response<Full<Bytes>>
where
    B: hyper::body::Body,
{
    let _ = request.into_body().collect().await;
    let mut response = Response::new(Full::new(body));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, CONTENT_TYPE_JSON);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_request_is_answered_with_the_fixed_bytes() {
        let body = Bytes::from_static(br#"{"data":{"animeCount":3}}"#);
        for method in ["POST", "GET"] {
            let request = Request::builder()
                .method(method)
                .uri("/graphql")
                .header(CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from_static(
                    br#"{"query":"{ animeCount }"}"#,
                )))
                .expect("valid request");

            let response = answer(request, body.clone()).await;

            assert_eq!(response.status(), hyper::StatusCode::OK);
            assert_eq!(response.headers()[CONTENT_TYPE], CONTENT_TYPE_JSON);
            let answered = response
                .into_body()
                .collect()
                .await
                .expect("infallible")
                .to_bytes();
            assert_eq!(answered, body);
        }
    }
}
