//! HTTP semantics every client expects (GraphQL over HTTP, RFC 9110, CORS):
//! media types and statuses by `Accept`, `Vary`, `406`, GraphiQL only for
//! browsers, conditional requests on safe methods only, the preflight
//! Apollo Client's headers need, and who may see the cache trace.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::common::{Backend, TestApp, TestSettings};
use crate::two_tier::until;

const TOKEN: &str = "http-admin-token-0123456789";
const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json; charset=utf-8";
const JSON: &str = "application/json; charset=utf-8";

/// A response read off the wire: status, headers (lowercase names; repeated
/// headers joined with ", ") and body.
struct Raw {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {:.300}", String::from_utf8_lossy(&self.body)))
    }
}

/// Sends one HTTP/1.1 request with exactly `headers` (no client adds an
/// `Accept` of its own) and reads the whole response.
async fn raw(app: &TestApp, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Raw {
    let mut stream = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    let mut request = format!("{method} {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        request.push_str(&format!(
            "content-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write request");
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).await.expect("read response");

    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&bytes[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("status line");
    let mut headers: HashMap<String, String> = HashMap::new();
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            headers
                .entry(name.trim().to_ascii_lowercase())
                .and_modify(|existing| {
                    existing.push_str(", ");
                    existing.push_str(value.trim());
                })
                .or_insert_with(|| value.trim().to_owned());
        }
    }
    let mut body = bytes[split + 4..].to_vec();
    if headers
        .get("transfer-encoding")
        .is_some_and(|te| te.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Raw {
        status,
        headers,
        body,
    }
}

/// The payload of a chunked body.
fn dechunk(mut bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = bytes
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size = usize::from_str_radix(String::from_utf8_lossy(&bytes[..line_end]).trim(), 16)
            .expect("chunk size");
        if size == 0 {
            return out;
        }
        let start = line_end + 2;
        out.extend_from_slice(&bytes[start..start + size]);
        bytes = &bytes[start + size + 2..];
    }
}

fn body(query: &str) -> String {
    json!({ "query": query }).to_string()
}

/// An app on SQLite whose memory tiers are trusted (its invalidation
/// subscription proven), so kept responses are stored from the start.
async fn app_with(vars: &[(&'static str, &str)]) -> TestApp {
    let mut settings = TestSettings::new(Backend::Sqlite);
    settings.vars = vars.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    let app = TestApp::spawn_with(settings).await;
    until("listening", Duration::from_secs(10), async || {
        app.state.cache.is_listening()
    })
    .await;
    app
}

#[tokio::test]
async fn request_errors_and_media_types_follow_the_accept_header() {
    // Arrange
    let app = app_with(&[]).await;
    let invalid = body("{ nope }");

    // Act: the same invalid document under each Accept a client sends.
    let cases = [
        (None, 200, JSON),
        (Some("*/*"), 200, JSON),
        (Some("application/json"), 200, JSON),
        (
            Some("application/graphql-response+json"),
            400,
            GRAPHQL_RESPONSE_JSON,
        ),
        (
            Some("application/graphql-response+json, application/json;q=0.9"),
            400,
            GRAPHQL_RESPONSE_JSON,
        ),
        (
            Some("application/graphql-response+json;q=0.5, application/json"),
            200,
            JSON,
        ),
    ];

    // Assert
    for (accept, status, content_type) in cases {
        let headers: Vec<(&str, &str)> = accept.iter().map(|a| ("accept", *a)).collect();
        let response = raw(&app, "POST", "/graphql", &headers, &invalid).await;
        assert_eq!(response.status, status, "{accept:?}");
        assert_eq!(response.header("content-type"), content_type, "{accept:?}");
        assert_eq!(response.header("vary"), "accept", "{accept:?}");
        let json = response.json();
        assert_eq!(
            json["errors"][0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED",
            "{accept:?}: {json}"
        );
        assert!(json.get("data").is_none(), "{accept:?}: {json}");
    }
    // A body that is not a GraphQL request is 400 in either type.
    for accept in ["application/json", "application/graphql-response+json"] {
        let response = raw(&app, "POST", "/graphql", &[("accept", accept)], "[1").await;
        assert_eq!(response.status, 400, "{accept}");
    }
}

#[tokio::test]
async fn an_accept_header_allowing_no_json_type_gets_406() {
    let app = app_with(&[]).await;

    for accept in [
        "text/html",
        "application/xml, text/plain;q=0.5",
        "application/json;q=0",
    ] {
        let post = raw(
            &app,
            "POST",
            "/graphql",
            &[("accept", accept)],
            &body("{ animeCount }"),
        )
        .await;
        let get = raw(
            &app,
            "GET",
            "/graphql?query=%7BanimeCount%7D",
            &[("accept", accept)],
            "",
        )
        .await;

        for response in [post, get] {
            assert_eq!(response.status, 406, "{accept}");
            assert_eq!(response.header("content-type"), JSON, "{accept}");
            assert_eq!(
                response.json()["errors"][0]["extensions"]["code"],
                "NOT_ACCEPTABLE",
                "{accept}"
            );
        }
    }
}

#[tokio::test]
async fn get_without_a_query_is_graphiql_for_browsers_and_an_error_for_json_clients() {
    let app = app_with(&[]).await;
    let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

    let page = raw(&app, "GET", "/graphql", &[("accept", browser)], "").await;
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").starts_with("text/html"));
    assert_eq!(page.header("vary"), "accept");
    assert!(String::from_utf8_lossy(&page.body).contains("graphiql"));

    for accept in [None, Some("application/json"), Some("*/*")] {
        let headers: Vec<(&str, &str)> = accept.iter().map(|a| ("accept", *a)).collect();
        let response = raw(&app, "GET", "/graphql", &headers, "").await;
        assert_eq!(response.status, 400, "{accept:?}");
        assert_eq!(response.header("content-type"), JSON, "{accept:?}");
        let json = response.json();
        assert_eq!(json["errors"][0]["extensions"]["code"], "BAD_REQUEST");
        assert!(
            json["errors"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("query")),
            "{json}"
        );
    }
}

#[tokio::test]
async fn kept_responses_come_back_in_the_media_type_asked_for_with_their_own_etag() {
    // Arrange: the response is kept after the first request.
    let app = app_with(&[]).await;
    let query = body("{ animeCount }");
    let first = raw(&app, "POST", "/graphql", &[], &query).await;
    assert_eq!(first.status, 200);

    // Act: kept answers in both types.
    let as_graphql = raw(
        &app,
        "POST",
        "/graphql",
        &[("accept", "application/graphql-response+json")],
        &query,
    )
    .await;
    let as_json = raw(
        &app,
        "POST",
        "/graphql",
        &[("accept", "application/json")],
        &query,
    )
    .await;

    // Assert
    for (response, content_type) in [(&as_graphql, GRAPHQL_RESPONSE_JSON), (&as_json, JSON)] {
        assert_eq!(response.status, 200);
        assert_eq!(response.header("content-type"), content_type);
        assert_eq!(response.header("vary"), "accept");
        assert!(
            response
                .header("cache-control")
                .starts_with("public, max-age=")
        );
        assert_eq!(response.json()["data"]["animeCount"], 250);
    }
    assert_eq!(as_graphql.body, as_json.body);
    let echoed = raw(
        &app,
        "POST",
        "/graphql",
        &[("x-request-id", "req-77")],
        &query,
    )
    .await;
    assert_eq!(echoed.header("x-request-id"), "req-77");
    assert_eq!(
        as_json.header("x-request-id").len(),
        36,
        "a generated UUID: {:?}",
        as_json.headers
    );
    assert_ne!(
        as_graphql.header("etag"),
        as_json.header("etag"),
        "two representations, two entity tags"
    );
    assert!(!as_graphql.header("etag").is_empty());
}

#[tokio::test]
async fn if_none_match_gives_304_to_get_and_head_only() {
    // Arrange
    let app = app_with(&[]).await;
    let path = "/graphql?query=%7BanimeCount%7D";
    let _ = raw(&app, "GET", path, &[], "").await;
    let kept = raw(&app, "GET", path, &[], "").await;
    let etag = kept.header("etag").to_owned();
    assert!(!etag.is_empty(), "kept responses carry an ETag");
    let conditional = [("if-none-match", etag.as_str())];

    // Act
    let get = raw(&app, "GET", path, &conditional, "").await;
    let head = raw(&app, "HEAD", path, &conditional, "").await;
    // The second POST of the same bytes is answered by the front door.
    let _ = raw(&app, "POST", "/graphql", &[], &body("{animeCount}")).await;
    let post = raw(
        &app,
        "POST",
        "/graphql",
        &conditional,
        &body("{animeCount}"),
    )
    .await;
    let other_type = raw(
        &app,
        "GET",
        path,
        &[
            ("if-none-match", etag.as_str()),
            ("accept", "application/graphql-response+json"),
        ],
        "",
    )
    .await;

    // Assert
    assert_eq!(get.status, 304);
    assert!(get.body.is_empty());
    assert_eq!(get.header("etag"), etag);
    assert_eq!(get.header("vary"), "accept");
    assert_eq!(head.status, 304);
    assert_eq!(post.status, 200, "a POST is never answered 304");
    assert_eq!(post.json()["data"]["animeCount"], 250);
    assert_eq!(
        other_type.status, 200,
        "the tag of the JSON representation does not validate the other one"
    );
}

#[tokio::test]
async fn cors_preflights_allow_what_apollo_client_sends_and_are_cached() {
    // Arrange
    let app = app_with(&[
        ("CORS_ALLOWED_ORIGINS", "http://localhost:3000"),
        ("CORS_ALLOWED_HEADERS", "x-tenant"),
    ])
    .await;
    let requested = "content-type, apollographql-client-name, apollographql-client-version, \
                     apollo-require-preflight, x-apollo-operation-name, cache-control, x-tenant";

    // Act
    let preflight = raw(
        &app,
        "OPTIONS",
        "/graphql",
        &[
            ("origin", "http://localhost:3000"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", requested),
        ],
        "",
    )
    .await;
    let cross_site = async || {
        raw(
            &app,
            "POST",
            "/graphql",
            &[
                ("origin", "http://localhost:3000"),
                ("apollographql-client-name", "web"),
            ],
            &body("{ animeCount }"),
        )
        .await
    };
    // Executed, then answered by the front door from the kept response:
    // both carry the CORS headers.
    let actual = [cross_site().await, cross_site().await];

    // Assert
    assert!(preflight.status < 300, "status {}", preflight.status);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        "http://localhost:3000"
    );
    let allowed: Vec<String> = preflight
        .header("access-control-allow-headers")
        .split(',')
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    for name in requested.split(',').map(str::trim) {
        assert!(
            allowed.iter().any(|a| a == name),
            "{name} not in {allowed:?}"
        );
    }
    assert_eq!(preflight.header("access-control-max-age"), "7200");
    assert!(actual[1].header("cache-control").starts_with("public"));
    for actual in actual {
        assert_eq!(actual.status, 200);
        assert_eq!(
            actual.header("access-control-allow-origin"),
            "http://localhost:3000"
        );
        assert!(
            actual
                .header("access-control-expose-headers")
                .contains("x-request-id"),
            "{:?}",
            actual.headers
        );
    }
}

#[tokio::test]
async fn the_cache_trace_is_shown_only_to_the_admin_unless_made_public() {
    // Arrange
    let private = app_with(&[("ADMIN_TOKEN", TOKEN), ("CACHE_DEBUG_PUBLIC", "false")]).await;
    let public = app_with(&[("CACHE_DEBUG_PUBLIC", "true")]).await;
    let query = body("{ animeCount }");
    let debug = ("x-anigo-cache-debug", "1");
    let bearer = format!("Bearer {TOKEN}");
    let wrong = "Bearer wrong-token-0123456789abc";

    // Act
    let anonymous = raw(&private, "POST", "/graphql", &[debug], &query).await;
    let anonymous_again = raw(&private, "POST", "/graphql", &[debug], &query).await;
    let wrong_token = raw(
        &private,
        "POST",
        "/graphql",
        &[debug, ("authorization", wrong)],
        &query,
    )
    .await;
    let admin = raw(
        &private,
        "POST",
        "/graphql",
        &[debug, ("authorization", bearer.as_str())],
        &query,
    )
    .await;
    let developer = raw(&public, "POST", "/graphql", &[debug], &query).await;

    // Assert
    for response in [&anonymous, &anonymous_again, &wrong_token] {
        let json = response.json();
        assert_eq!(json["data"]["animeCount"], 250);
        assert!(
            json.get("extensions").is_none(),
            "no trace for non-admins: {json}"
        );
    }
    assert!(
        anonymous_again
            .header("cache-control")
            .starts_with("public"),
        "an ignored debug header keeps the fast path: {:?}",
        anonymous_again.headers
    );
    for response in [&admin, &developer] {
        let json = response.json();
        assert_eq!(
            json["extensions"]["cache"][0]["resolver"], "animeCount",
            "{json}"
        );
        assert_eq!(response.header("cache-control"), "private, no-store");
    }
}
