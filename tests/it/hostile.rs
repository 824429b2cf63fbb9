//! A table of hostile requests, each with its documented answer: never a
//! panic, a hang, a dropped connection or a leaked internal message.

use serde_json::{Value, json};

use crate::common::{Backend, TestApp, TestSettings};

const TOKEN: &str = "hostile-admin-token-0123456789";

/// (name, body bytes, expected HTTP status, expected `extensions.code`).
/// GraphQL-over-HTTP with `application/graphql-response+json`: request
/// errors (nothing executed) are 400 without a `data` entry; errors of
/// executed fields are 200.
fn cases() -> Vec<(&'static str, Vec<u8>, u16, &'static str)> {
    let deep = format!(
        "{{ {}animeCount{} }}",
        "a: animePage { ".repeat(10_000),
        " }".repeat(10_000)
    );
    let nested = format!(
        "{{ {}animeCount{} }}",
        "a: animePage { ".repeat(100),
        " }".repeat(100)
    );
    let aliases: String = (0..10_000).map(|i| format!("a{i}: animeCount ")).collect();
    let some_aliases: String = (0..1_000).map(|i| format!("a{i}: animeCount ")).collect();
    // Each fragment spreads the next twice: 2^40 fields in 1.6 kB.
    let doubling: String = (0..40)
        .map(|i| {
            format!(
                " fragment F{i} on Query {{ ...F{next} ...F{next} }}",
                next = i + 1
            )
        })
        .collect::<String>()
        + " fragment F40 on Query { animeCount }";
    let json_body = |query: &str, variables: Value| {
        json!({ "query": query, "variables": variables })
            .to_string()
            .into_bytes()
    };
    vec![
        (
            "malformed JSON",
            b"{\"query\": ".to_vec(),
            400,
            "BAD_REQUEST",
        ),
        ("not an object", b"42".to_vec(), 400, "BAD_REQUEST"),
        (
            "invalid UTF-8",
            vec![b'{', b'"', 0xff, 0xfe, b'"', b'}'],
            400,
            "BAD_REQUEST",
        ),
        (
            "query of the wrong type",
            br#"{"query": 7}"#.to_vec(),
            400,
            "BAD_REQUEST",
        ),
        (
            "variables as a list",
            br#"{"query": "{ animeCount }", "variables": [1]}"#.to_vec(),
            400,
            "BAD_REQUEST",
        ),
        (
            "unknown field",
            json_body("{ nope }", json!({})),
            400,
            "GRAPHQL_VALIDATION_FAILED",
        ),
        (
            "unknown argument",
            json_body("{ animeCount(x: 1) }", json!({})),
            400,
            "GRAPHQL_VALIDATION_FAILED",
        ),
        (
            "negative limit",
            json_body("{ popularAnime(limit: -5) { id } }", json!({})),
            200,
            "BAD_USER_INPUT",
        ),
        (
            "overflowing limit",
            json_body("{ popularAnime(limit: 1e400) { id } }", json!({})),
            400,
            "GRAPHQL_PARSE_FAILED",
        ),
        (
            "huge page",
            json_body(
                "query($p: Int) { animePage(page: $p) { total } }",
                json!({"p": 1e300}),
            ),
            400,
            "BAD_USER_INPUT",
        ),
        (
            "null byte in an id",
            json_body(
                "query($id: ID!) { anime(id: $id) { id } }",
                json!({"id": "1\u{0}"}),
            ),
            200,
            "BAD_USER_INPUT",
        ),
        (
            "10k-deep nesting (50,000 tokens)",
            json_body(&deep, json!({})),
            400,
            "QUERY_TOO_LARGE",
        ),
        (
            "100-deep nesting",
            json_body(&nested, json!({})),
            400,
            "GRAPHQL_PARSE_FAILED",
        ),
        (
            "10k aliases (30,000 tokens)",
            json_body(&format!("{{ {aliases} }}"), json!({})),
            400,
            "QUERY_TOO_LARGE",
        ),
        (
            "1,000 aliases",
            json_body(&format!("{{ {some_aliases} }}"), json!({})),
            400,
            "QUERY_TOO_COMPLEX",
        ),
        (
            "fragments that double 40 times",
            json_body(&format!("{{ ...F0 }}{doubling}"), json!({})),
            400,
            "QUERY_TOO_LARGE",
        ),
        (
            "control characters in a clear pattern",
            json_body(
                "mutation($p: String!) { clearCache(pattern: $p) { deleted } }",
                json!({"p": "popular:\u{7}*\n"}),
            ),
            200,
            "BAD_USER_INPUT",
        ),
        (
            "control characters in a title",
            json_body(
                r#"mutation { updateAnime(id: "1", input: { title: "a\u0000b" }) { id } }"#,
                json!({}),
            ),
            200,
            "BAD_USER_INPUT",
        ),
    ]
}

#[tokio::test]
async fn hostile_requests_get_their_documented_errors() {
    let mut settings = TestSettings::new(Backend::Sqlite);
    settings.vars.push(("ADMIN_TOKEN", TOKEN.to_owned()));
    let app = TestApp::spawn_with(settings).await;

    for (name, body, status, code) in cases() {
        // The table's statuses are those of the specification's own media
        // type. Answered as plain JSON, a GraphQL request error is 200 (the
        // errors are in the body); a request that is not well-formed
        // (BAD_REQUEST) stays 400.
        let json_status = if status == 400 && code != "BAD_REQUEST" {
            200
        } else {
            status
        };
        for (accept, status, content_type) in [
            (
                "application/graphql-response+json",
                status,
                "application/graphql-response+json; charset=utf-8",
            ),
            (
                "application/json",
                json_status,
                "application/json; charset=utf-8",
            ),
        ] {
            let response = app
                .http
                .post(app.url("/graphql"))
                .header("content-type", "application/json")
                .header("accept", accept)
                .header("authorization", format!("Bearer {TOKEN}"))
                .body(body.clone())
                .send()
                .await
                .unwrap_or_else(|err| panic!("{name}: the connection failed: {err}"));
            let got_status = response.status().as_u16();
            assert_eq!(
                response.headers()["content-type"],
                content_type,
                "{name} ({accept})"
            );
            let text = response.text().await.expect("body");
            let json: Value = serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("{name}: not JSON: {text:.300}"));
            assert_eq!(got_status, status, "{name} ({accept}): {text:.300}");
            assert_eq!(
                json["errors"][0]["extensions"]["code"],
                json!(code),
                "{name}: {text:.300}"
            );
            let lowered = text.to_lowercase();
            for leak in ["panicked", "sqlx", "select ", "stack backtrace", "src/"] {
                assert!(
                    !lowered.contains(leak),
                    "{name}: response leaks {leak:?}: {text:.300}"
                );
            }
        }
    }
    // Still serving.
    assert_eq!(app.count().await, 250);
}
