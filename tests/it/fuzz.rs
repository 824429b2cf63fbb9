//! A property test over request bodies: random bytes, and GraphQL-shaped
//! documents built from the schema's own words with random variables. For
//! every one the server answers with a documented status and a GraphQL JSON
//! body whose errors all carry a code; it never panics, hangs or drops the
//! connection.

use proptest::prelude::*;
use serde_json::{Value, json};

use crate::common::{Backend, TestApp, TestSettings};

const WORDS: &[&str] = &[
    "{",
    "}",
    "(",
    ")",
    ":",
    ",",
    "...",
    "on",
    "query",
    "mutation",
    "Query",
    "popularAnime",
    "animePage",
    "animeCount",
    "anime",
    "id",
    "title",
    "genres",
    "items",
    "total",
    "limit",
    "page",
    "perPage",
    "1",
    "-1",
    "0",
    "20",
    "99999999999",
    "1e999",
    "\"5\"",
    "\"x\"",
    "$v",
    "null",
    "true",
    "clearCache",
    "clearAllCache",
    "pattern",
    "\"*\"",
    "deleted",
    "__typename",
    "__schema",
    "a:",
    "@skip(if: true)",
    "@include(if: $v)",
    "query($v: Int)",
    "query($v: ID!)",
    "cacheStats",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z]{1,3}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    let document =
        prop::collection::vec(prop::sample::select(WORDS), 0..30).prop_map(|w| w.join(" "));
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        (document, json_value()).prop_map(|(query, v)| {
            json!({ "query": query, "variables": { "v": v } })
                .to_string()
                .into_bytes()
        }),
        (json_value(), json_value()).prop_map(|(query, variables)| {
            json!({ "query": query, "variables": variables })
                .to_string()
                .into_bytes()
        }),
    ]
}

/// Whether `body` is a GraphQL response (or batch of them) whose errors all
/// have a message and a code.
fn is_graphql_response(body: &Value) -> bool {
    let single = |b: &Value| {
        let errors_ok = match b.get("errors") {
            None => true,
            Some(Value::Array(errors)) => {
                !errors.is_empty()
                    && errors
                        .iter()
                        .all(|e| e["message"].is_string() && e["extensions"]["code"].is_string())
            }
            Some(_) => false,
        };
        b.is_object() && (b.get("data").is_some() || b.get("errors").is_some()) && errors_ok
    };
    match body {
        Value::Array(items) => items.iter().all(single),
        other => single(other),
    }
}

#[test]
fn random_bodies_always_get_a_graphql_answer() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut settings = TestSettings::new(Backend::Sqlite);
    settings
        .vars
        .push(("ADMIN_TOKEN", "fuzz-admin-token-0123456789".to_owned()));
    let app = runtime.block_on(TestApp::spawn_with(settings));
    let url = app.url("/graphql");
    let client = reqwest::Client::new();

    let config = ProptestConfig {
        cases: 400,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(bytes in body())| {
        let (status, text) = runtime.block_on(async {
            let response = client
                .post(&url)
                .header("content-type", "application/json")
                .header("authorization", "Bearer fuzz-admin-token-0123456789")
                .body(bytes.clone())
                .send()
                .await
                .expect("the server dropped the connection");
            let status = response.status().as_u16();
            (status, response.text().await.expect("body"))
        });
        prop_assert!([200, 400].contains(&status), "status {} for {:?}: {}", status, String::from_utf8_lossy(&bytes), text);
        let parsed: Value = serde_json::from_str(&text).expect("a JSON body");
        prop_assert!(is_graphql_response(&parsed), "not a GraphQL response: {}", text);
        prop_assert!(!text.contains("panicked"), "{}", text);
    });
    // Still serving after all that.
    let body = runtime.block_on(app.graphql("{ animeCount }", json!({})));
    assert_eq!(body["data"]["animeCount"], json!(250));
    drop(app);
}
