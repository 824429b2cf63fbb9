//! The response fast path, persisted queries and HTTP caching, against the
//! real server with real Redis and PostgreSQL: what is kept, what never is,
//! and that writes, clears and expiry drop kept responses on every
//! instance.

use std::time::Duration;

use anigo::cache::Resolver;
use reqwest::header::{CACHE_CONTROL, ETAG, IF_NONE_MATCH};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::common::TestApp;
use crate::support::RedisServer;
use crate::two_tier::{BEARER, rand_suffix, settings, two_instances, until};

/// (what, request body, request headers).
type Case<'a> = (&'a str, Value, Vec<(&'a str, &'a str)>);

const POPULAR: &str = "query Top($limit: Int) { popularAnime(limit: $limit) { id title score } }";

/// One POST: (status, Cache-Control, ETag, body text).
/// The GraphQL-over-HTTP specification's media type: request errors are
/// 4xx with it (200 with plain JSON).
const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";

async fn post(
    app: &TestApp,
    body: Value,
    headers: &[(&str, &str)],
) -> (u16, String, Option<String>, String) {
    let mut request = app.http.post(app.url("/graphql")).json(&body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("POST /graphql");
    let status = response.status().as_u16();
    let cache_control = response
        .headers()
        .get(CACHE_CONTROL)
        .map(|v| v.to_str().expect("ASCII").to_owned())
        .unwrap_or_default();
    let etag = response
        .headers()
        .get(ETAG)
        .map(|v| v.to_str().expect("ASCII").to_owned());
    (
        status,
        cache_control,
        etag,
        response.text().await.expect("body"),
    )
}

/// Hits, misses and stores of the response fast path so far.
fn response_counts(app: &TestApp) -> (u64, u64, u64) {
    let stats = app.state.cache.stats().response_snapshot();
    (stats.hits, stats.misses, stats.stored)
}

/// Reads the popularAnime resolver went through the cache layer.
fn popular_reads(app: &TestApp) -> u64 {
    let stats = app.state.cache.stats().snapshot(Resolver::PopularAnime);
    stats.hits + stats.misses + stats.bypasses
}

fn max_age(cache_control: &str) -> u64 {
    cache_control
        .strip_prefix("public, max-age=")
        .unwrap_or_else(|| panic!("not a public response: {cache_control:?}"))
        .parse()
        .expect("max-age is a number")
}

async fn one_instance(vars: &[(&'static str, &str)]) -> (RedisServer, TestApp) {
    let redis = RedisServer::start();
    let app = TestApp::spawn_with(settings(&redis, &format!("fp{}", rand_suffix()), vars)).await;
    until("listening", Duration::from_secs(10), async || {
        app.state.cache.is_listening()
    })
    .await;
    (redis, app)
}

#[tokio::test]
async fn a_repeated_public_query_is_answered_without_executing() {
    let (_redis, app) = one_instance(&[]).await;
    let first = post(
        &app,
        json!({"query": POPULAR, "variables": {"limit": 5}}),
        &[],
    )
    .await;
    assert_eq!(first.0, 200, "{}", first.3);
    let age = max_age(&first.1);
    assert!(
        (50..=60).contains(&age),
        "max-age {age} outside the 60 s TTL"
    );
    let etag = first.2.clone().expect("a kept response has an ETag");
    assert_eq!(response_counts(&app).2, 1, "the response was kept");

    let reads = popular_reads(&app);
    let queries = app.db_queries();
    // The same document formatted differently, with a comment, and the
    // variables object in another key order: the same kept response.
    let reformatted =
        "# top five\nquery Top( $limit :Int ){popularAnime(limit:$limit){id,title,score}}";
    let second = post(
        &app,
        json!({"query": reformatted, "variables": {"limit": 5}}),
        &[],
    )
    .await;
    assert_eq!(second.3, first.3, "same bytes");
    assert_eq!(second.2.as_deref(), Some(etag.as_str()));
    assert!(max_age(&second.1) <= age);
    assert_eq!(
        response_counts(&app).0,
        1,
        "answered from the kept response"
    );
    assert_eq!(popular_reads(&app), reads, "no resolver ran");
    assert_eq!(app.db_queries(), queries, "no database statement");
    // Kept answers still count as GraphQL requests (no operationName was
    // sent: "anonymous"; each test runs in its own process under nextest).
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    let counted = metrics
        .lines()
        .find(|line| {
            line.starts_with("anigo_graphql_requests_total{operation=\"anonymous\",outcome=\"ok\"}")
        })
        .and_then(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no counter for anonymous operations in:\n{metrics}"));
    assert!(
        counted >= 2.0,
        "{counted} requests counted: the kept answer was not"
    );

    let multi = "query($x: Boolean!, $limit: Int) { popularAnime(limit: $limit) { id title @include(if: $x) } }";
    post(
        &app,
        json!({"query": multi, "variables": {"x": true, "limit": 2}}),
        &[],
    )
    .await;
    let hits = response_counts(&app).0;
    let swapped = post(
        &app,
        json!({"query": multi, "variables": {"limit": 2, "x": true}}),
        &[],
    )
    .await;
    assert_eq!(
        response_counts(&app).0,
        hits + 1,
        "variable order is irrelevant: {}",
        swapped.3
    );

    // Other variables are another response.
    let other = post(
        &app,
        json!({"query": POPULAR, "variables": {"limit": 6}}),
        &[],
    )
    .await;
    assert_ne!(other.3, first.3);
    assert_ne!(other.2.as_deref(), Some(etag.as_str()));

    // GET shares the path and the 304.
    let url = format!(
        "{}?query={}",
        app.url("/graphql"),
        urlencode("{ animeCount }")
    );
    let get = app.http.get(&url).send().await.expect("GET");
    let get_etag = get.headers()[ETAG].to_str().expect("ASCII").to_owned();
    assert!(
        get.headers()[CACHE_CONTROL]
            .to_str()
            .expect("ASCII")
            .starts_with("public, max-age=")
    );
    let again = app
        .http
        .get(&url)
        .header(IF_NONE_MATCH, &get_etag)
        .send()
        .await
        .expect("GET");
    assert_eq!(again.status().as_u16(), 304);
    assert_eq!(again.headers()[ETAG].to_str().expect("ASCII"), get_etag);
    assert!(again.bytes().await.expect("body").is_empty());
}

#[tokio::test]
async fn if_none_match_gets_304_only_for_the_current_tag() {
    // Conditional requests are GET (and HEAD) only: RFC 9110 13.1.2; a
    // POST with the same tag is answered in full (tests/it/http.rs).
    let (_redis, app) = one_instance(&[]).await;
    let url = format!(
        "{}?query={}",
        app.url("/graphql"),
        urlencode("{ animeCount }")
    );
    let get = async |if_none_match: Option<&str>| {
        let mut request = app.http.get(&url);
        if let Some(tag) = if_none_match {
            request = request.header(IF_NONE_MATCH, tag);
        }
        let response = request.send().await.expect("GET");
        let header = |name| {
            response
                .headers()
                .get(name)
                .map(|v: &reqwest::header::HeaderValue| v.to_str().expect("ASCII").to_owned())
        };
        let (status, cache_control, etag) = (
            response.status().as_u16(),
            header(CACHE_CONTROL).unwrap_or_default(),
            header(ETAG),
        );
        (
            status,
            cache_control,
            etag,
            response.text().await.expect("body"),
        )
    };
    let first = get(None).await;
    let etag = first.2.clone().expect("ETag");
    for candidate in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"other\", {etag}"),
        "*".to_owned(),
    ] {
        let (status, cache_control, tag, text) = get(Some(candidate.as_str())).await;
        assert_eq!(status, 304, "{candidate}");
        assert!(text.is_empty());
        assert_eq!(tag.as_deref(), Some(etag.as_str()));
        assert!(cache_control.starts_with("public, max-age="));
    }
    let (status, _, _, text) = get(Some("\"stale\"")).await;
    assert_eq!(status, 200);
    assert_eq!(text, first.3);
}

#[tokio::test]
async fn credentials_mutations_errors_and_admin_fields_are_never_kept() {
    let (_redis, app) = one_instance(&[]).await;
    let public = json!({"query": POPULAR, "variables": {"limit": 3}});
    post(&app, public.clone(), &[]).await;
    let stored = response_counts(&app).2;
    assert_eq!(stored, 1);

    let reads = popular_reads(&app);
    let cases: Vec<Case<'_>> = vec![
        (
            "with credentials",
            public.clone(),
            vec![("authorization", BEARER)],
        ),
        (
            "with cache tracing",
            public.clone(),
            vec![("x-anigo-cache-debug", "1")],
        ),
        (
            "a mutation",
            json!({"query": "mutation { invalidateAnime(ids: [\"1\"]) { deleted } }"}),
            vec![("authorization", BEARER)],
        ),
        (
            "a resolver error",
            json!({"query": "{ popularAnime(limit: -5) { id } }"}),
            vec![],
        ),
        (
            "an admin field without credentials",
            json!({"query": "{ animeCount cacheStats { connected } }"}),
            vec![],
        ),
        (
            "an admin field with credentials",
            json!({"query": "{ cacheStats { connected } }"}),
            vec![("authorization", BEARER)],
        ),
        (
            "introspection",
            json!({"query": "{ __schema { queryType { name } } }"}),
            vec![],
        ),
        ("a parse error", json!({"query": "{ animeCount"}), vec![]),
    ];
    for (name, body, headers) in cases {
        for _ in 0..2 {
            let (_, cache_control, etag, text) = post(&app, body.clone(), &headers).await;
            assert_eq!(cache_control, "private, no-store", "{name}: {text}");
            assert!(etag.is_none(), "{name}");
        }
    }
    assert_eq!(response_counts(&app).2, stored, "nothing else was kept");
    assert_eq!(
        popular_reads(&app),
        reads + 4,
        "requests with credentials or tracing ran the resolver each time"
    );

    // A batch as a whole is never public, though its items may be answered
    // from kept responses.
    let batch = app
        .http
        .post(app.url("/graphql"))
        .json(&json!([public, {"query": "{ animeCount }"}]))
        .send()
        .await
        .expect("batch");
    assert_eq!(batch.headers()[CACHE_CONTROL], "private, no-store");
    let items: Vec<Value> = batch.json().await.expect("JSON array");
    assert_eq!(items.len(), 2);
    assert_eq!(
        items[0]["data"]["popularAnime"].as_array().map(Vec::len),
        Some(3)
    );
    assert!(items[1]["data"]["animeCount"].is_u64());
}

#[tokio::test]
async fn writes_and_clears_drop_kept_responses_on_every_instance() {
    let redis = RedisServer::start();
    let (a, b) = two_instances(&redis, &[]).await;
    let query = json!({"query": "{ anime(id: \"7\") { title } popularAnime(limit: 2) { id } }"});
    for app in [&a, &b] {
        post(app, query.clone(), &[]).await;
        let (_, cache_control, _, _) = post(app, query.clone(), &[]).await;
        assert!(cache_control.starts_with("public"), "kept on both");
    }
    let (hits_b, ..) = response_counts(&b);

    let renamed = a
        .admin(
            r#"mutation { updateAnime(id: "7", input: { title: "Kept No More" }) { title } }"#,
            Some(BEARER),
        )
        .await;
    assert_eq!(
        renamed["data"]["updateAnime"]["title"], "Kept No More",
        "{renamed}"
    );
    for (name, app) in [("A", &a), ("B", &b)] {
        let (_, _, _, text) = post(app, query.clone(), &[]).await;
        let body: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(
            body["data"]["anime"]["title"], "Kept No More",
            "instance {name} served a response the write replaced"
        );
    }
    assert_eq!(response_counts(&b).0, hits_b, "B executed after the write");

    // Kept again on B, then a clear on A drops it there too.
    post(&b, query.clone(), &[]).await;
    let (hits_b, misses_b, _) = response_counts(&b);
    let cleared = a
        .admin("mutation { clearAllCache { deleted } }", Some(BEARER))
        .await;
    assert!(cleared.get("errors").is_none(), "{cleared}");
    post(&b, query.clone(), &[]).await;
    let (hits_after, misses_after, _) = response_counts(&b);
    assert_eq!(
        hits_after, hits_b,
        "B answered from a response the clear dropped"
    );
    assert_eq!(misses_after, misses_b + 1);
}

#[tokio::test]
async fn a_kept_response_lives_no_longer_than_its_shortest_resolver_ttl() {
    // Without stale-while-revalidate, so the expired count reloads fresh
    // (a stale value would be served but never kept).
    let (_redis, app) = one_instance(&[
        ("CACHE_TTL_ANIME_COUNT", "1"),
        ("CACHE_STALE_WHILE_REVALIDATE", "0"),
    ])
    .await;
    let body = json!({"query": "{ animeCount popularAnime(limit: 1) { id } }"});
    let (_, cache_control, ..) = post(&app, body.clone(), &[]).await;
    assert!(max_age(&cache_control) <= 1, "{cache_control}");
    let (_, misses, stored) = response_counts(&app);
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    post(&app, body, &[]).await;
    let (_, misses_after, stored_after) = response_counts(&app);
    assert_eq!(misses_after, misses + 1, "expired: executed again");
    assert_eq!(stored_after, stored + 1);
}

#[tokio::test]
async fn without_redis_nothing_is_kept_or_served_from_memory() {
    let (mut redis, app) = one_instance(&[]).await;
    let body = json!({"query": "{ animeCount }"});
    post(&app, body.clone(), &[]).await;
    redis.kill();
    until("Redis seen down", Duration::from_secs(10), async || {
        !app.state.redis.is_available()
    })
    .await;
    let (hits, ..) = response_counts(&app);
    for _ in 0..3 {
        let (status, cache_control, etag, text) = post(&app, body.clone(), &[]).await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(cache_control, "private, no-store");
        assert!(etag.is_none());
    }
    assert_eq!(
        response_counts(&app).0,
        hits,
        "no kept response while Redis is away"
    );
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn persisted(hash: &str) -> Value {
    json!({"persistedQuery": {"version": 1, "sha256Hash": hash}})
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn persisted_queries_register_once_and_work_on_every_instance() {
    let redis = RedisServer::start();
    let (a, b) = two_instances(&redis, &[]).await;
    let query = "query Persisted { popularAnime(limit: 4) { id title } }";
    let hash = sha256_hex(query);

    let (status, cache_control, _, text) =
        post(&a, json!({"extensions": persisted(&hash)}), &[]).await;
    let body: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "PERSISTED_QUERY_NOT_FOUND"
    );
    assert_eq!(body["errors"][0]["message"], "PersistedQueryNotFound");
    assert_eq!(
        cache_control, "private, no-store",
        "a miss must never be cached"
    );

    let (status, _, _, text) = post(
        &a,
        json!({"query": "{ animeCount }", "extensions": persisted(&hash)}),
        &[],
    )
    .await;
    let body: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(status, 400, "{text}");
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_REQUEST");

    let (status, _, _, registered) = post(
        &a,
        json!({"query": query, "extensions": persisted(&hash)}),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{registered}");
    let registered: Value = serde_json::from_str(&registered).expect("JSON");
    assert_eq!(
        registered["data"]["popularAnime"].as_array().map(Vec::len),
        Some(4)
    );

    // Hash only, on both instances (B learns it through Redis), by POST
    // and by GET.
    for app in [&a, &b] {
        let (status, _, _, text) = post(app, json!({"extensions": persisted(&hash)}), &[]).await;
        assert_eq!(status, 200, "{text}");
        let body: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(body["data"], registered["data"], "{text}");
    }
    let url = format!(
        "{}?extensions={}",
        b.url("/graphql"),
        urlencode(&persisted(&hash).to_string())
    );
    let get = b.http.get(&url).send().await.expect("GET");
    assert_eq!(get.status().as_u16(), 200);
    assert!(
        get.headers()[CACHE_CONTROL]
            .to_str()
            .expect("ASCII")
            .starts_with("public")
    );
    let body: Value = get.json().await.expect("JSON");
    assert_eq!(body["data"], registered["data"]);

    // A document that does not validate is never registered.
    let bad = "{ nope }";
    let bad_hash = sha256_hex(bad);
    let (status, ..) = post(
        &a,
        json!({"query": bad, "extensions": persisted(&bad_hash)}),
        &[("accept", GRAPHQL_RESPONSE_JSON)],
    )
    .await;
    assert_eq!(status, 400);
    let (_, _, _, text) = post(&a, json!({"extensions": persisted(&bad_hash)}), &[]).await;
    assert!(text.contains("PERSISTED_QUERY_NOT_FOUND"), "{text}");

    // Malformed extensions are request errors.
    for extensions in [
        json!({"persistedQuery": {"version": 2, "sha256Hash": hash}}),
        json!({"persistedQuery": {"version": 1, "sha256Hash": "abc"}}),
    ] {
        let (status, _, _, text) = post(&a, json!({"extensions": extensions}), &[]).await;
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("BAD_REQUEST"), "{text}");
    }
}

#[tokio::test]
async fn a_request_that_validated_once_keeps_every_limit_on_its_next_runs() {
    let (_redis, app) = one_instance(&[("GRAPHQL_MAX_COMPLEXITY", "200")]).await;
    let query = "query($n: Int) { popularAnime(limit: $n) { id title synopsis } }";
    // With credentials: executed every time (never a kept response), so the
    // second and later runs use the prevalidated schema.
    let run = async |variables: Value| {
        let (status, _, _, text) = post(
            &app,
            json!({"query": query, "variables": variables}),
            &[("authorization", BEARER), ("accept", GRAPHQL_RESPONSE_JSON)],
        )
        .await;
        (status, serde_json::from_str::<Value>(&text).expect("JSON"))
    };
    let first = run(json!({"n": 5})).await;
    for _ in 0..3 {
        assert_eq!(
            run(json!({"n": 5})).await,
            first,
            "same answer when prevalidated"
        );
    }
    assert_eq!(
        first.1["data"]["popularAnime"].as_array().map(Vec::len),
        Some(5)
    );
    for _ in 0..2 {
        let (status, body) = run(json!({"n": 100})).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "QUERY_TOO_COMPLEX",
            "{body}"
        );
        let (status, body) = run(json!({"n": "five"})).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{body}"
        );
    }
}
