//! Requests' own cache directives (`Cache-Control: no-cache` / `no-store`,
//! `Pragma: no-cache`) against the real server with real Redis and
//! PostgreSQL, and the cache facade's handling of refreshes next to plain
//! reads, older loads and writes.

use std::sync::Arc;
use std::time::Duration;

use anigo::cache::{CacheConfig, CacheDirectives, CacheStatus, Resolver, Tier};
use anigo::redis::RedisStore;
use reqwest::header::CACHE_CONTROL;
use sea_orm::{ConnectionTrait, TransactionTrait};
use serde_json::{Value, json};

use crate::common::{LIST_LOAD_STATEMENTS, TestApp, stored_value};
use crate::support::RedisServer;
use crate::two_tier::{GatedQuery, rand_suffix, settings, statuses, until};

const NO_CACHE: CacheDirectives = CacheDirectives {
    has_no_cache: true,
    has_no_store: false,
};

/// One instance, listening for invalidations (so its in-process tiers are
/// trusted). A generous Redis timeout: these tests assert that refreshes
/// are stored, and a write-back that timed out on a loaded machine would
/// rightly be skipped.
async fn instance(vars: &[(&'static str, &str)]) -> (RedisServer, TestApp) {
    let redis = RedisServer::start();
    let mut vars = vars.to_vec();
    vars.push(("REDIS_TIMEOUT_MS", "1000"));
    let app = TestApp::spawn_with(settings(&redis, &format!("cd{}", rand_suffix()), &vars)).await;
    until("listening", Duration::from_secs(10), async || {
        app.state.cache.is_listening()
    })
    .await;
    (redis, app)
}

/// POSTs `query` with `headers`: (the response's Cache-Control, JSON body).
async fn send(app: &TestApp, query: &str, headers: &[(&str, &str)]) -> (String, Value) {
    let mut request = app
        .http
        .post(app.url("/graphql"))
        .json(&json!({ "query": query }));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("POST /graphql");
    let cache_control = response
        .headers()
        .get(CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body: Value = response.json().await.expect("JSON body");
    assert!(body.get("errors").is_none(), "{body}");
    (cache_control, body)
}

/// A request with the cache trace, and `extra` headers.
async fn traced(app: &TestApp, query: &str, extra: &[(&str, &str)]) -> Value {
    let mut headers = vec![("x-anigo-cache-debug", "1")];
    headers.extend_from_slice(extra);
    send(app, query, &headers).await.1
}

/// Changes a title in the database directly: nothing is invalidated.
async fn rename_behind_the_cache(app: &TestApp, id: u32, title: &str) {
    app.state
        .db
        .execute_unprepared(&format!(
            "UPDATE anime SET title = '{title}' WHERE id = {id}"
        ))
        .await
        .expect("UPDATE");
}

/// Hits, misses and stores of the response fast path so far.
fn response_counts(app: &TestApp) -> (u64, u64, u64) {
    let stats = app.state.cache.stats().response_snapshot();
    (stats.hits, stats.misses, stats.stored)
}

fn anime_stats(app: &TestApp) -> anigo::cache::stats::ResolverStats {
    app.state.cache.stats().snapshot(Resolver::Anime)
}

const ANIME_7: &str = r#"{ anime(id: "7") { title } }"#;

fn refreshed() -> Vec<(String, String)> {
    vec![("REFRESH".to_owned(), "database".to_owned())]
}

#[tokio::test]
async fn no_cache_loads_a_change_made_behind_the_caches_back_and_stores_it() {
    // Arrange: anime 7 held in the local tier and Redis, then renamed in
    // the database directly.
    let (redis, app) = instance(&[]).await;
    until("a local hit", Duration::from_secs(10), async || {
        statuses(&traced(&app, ANIME_7, &[]).await)[0] == ("HIT".to_owned(), "local".to_owned())
    })
    .await;
    rename_behind_the_cache(&app, 7, "Behind The Cache").await;
    let cached = traced(&app, ANIME_7, &[]).await;
    assert_ne!(
        cached["data"]["anime"]["title"], "Behind The Cache",
        "the cache hides the change"
    );
    let loads = anime_stats(&app).loads;

    // Act
    let fresh = traced(&app, ANIME_7, &[("cache-control", "no-cache")]).await;

    // Assert: loaded from the database, stored in Redis before the answer,
    // and the next plain read (the local tier) has it too.
    assert_eq!(statuses(&fresh), refreshed(), "{fresh}");
    assert_eq!(fresh["data"]["anime"]["title"], "Behind The Cache");
    assert_eq!(anime_stats(&app).loads, loads + 1);
    assert_eq!(
        stored_value(&redis, &app.key("anime:id=7"))["row"]["title"],
        "Behind The Cache"
    );
    let next = traced(&app, ANIME_7, &[]).await;
    assert_eq!(
        statuses(&next),
        vec![("HIT".to_owned(), "local".to_owned())]
    );
    assert_eq!(next["data"]["anime"]["title"], "Behind The Cache");

    // `max-age=0` and HTTP/1.0's `Pragma: no-cache` ask the same.
    for header in [("cache-control", "max-age=0"), ("pragma", "no-cache")] {
        let body = traced(&app, ANIME_7, &[header]).await;
        assert_eq!(statuses(&body), refreshed(), "{header:?}: {body}");
    }
    // Other directives change nothing.
    let body = traced(&app, ANIME_7, &[("cache-control", "max-age=60, max-stale")]).await;
    assert_eq!(statuses(&body)[0].0, "HIT", "{body}");
    assert_eq!(anime_stats(&app).refreshes, 3);
}

#[tokio::test]
async fn no_cache_on_the_fast_path_executes_and_keeps_the_fresh_response() {
    // Arrange: a kept response, then a change behind the cache's back.
    let (_redis, app) = instance(&[]).await;
    send(&app, ANIME_7, &[]).await;
    let (hits, ..) = response_counts(&app);
    let (_, kept) = send(&app, ANIME_7, &[]).await;
    assert_eq!(
        response_counts(&app).0,
        hits + 1,
        "answered from the kept response"
    );
    rename_behind_the_cache(&app, 7, "Fresh On The Fast Path").await;
    assert_ne!(
        send(&app, ANIME_7, &[]).await.1["data"]["anime"]["title"],
        "Fresh On The Fast Path",
        "the kept response hides the change"
    );
    let (hits, misses, stored) = response_counts(&app);

    // Act
    let (cache_control, fresh) = send(&app, ANIME_7, &[("cache-control", "no-cache")]).await;

    // Assert: executed (not even looked up), the new title, kept anew.
    assert_eq!(fresh["data"]["anime"]["title"], "Fresh On The Fast Path");
    assert_ne!(fresh, kept);
    assert!(
        cache_control.starts_with("public, max-age="),
        "{cache_control}"
    );
    assert_eq!(response_counts(&app), (hits, misses, stored + 1));
    assert_eq!(anime_stats(&app).refreshes, 1);
    let (_, next) = send(&app, ANIME_7, &[]).await;
    assert_eq!(
        next, fresh,
        "the next plain request gets the refreshed response"
    );
    assert_eq!(response_counts(&app).0, hits + 1, "from the kept response");
}

#[tokio::test]
async fn no_store_answers_a_cold_key_and_stores_nothing_anywhere() {
    let (redis, app) = instance(&[]).await;
    let query = r#"{ anime(id: "9") { title } }"#;
    let key = app.key("anime:id=9");
    let loads = anime_stats(&app).loads;

    // Per-resolver path: a miss from the database, nothing written back.
    let body = traced(&app, query, &[("cache-control", "no-store")]).await;
    assert_eq!(
        statuses(&body),
        vec![("MISS".to_owned(), "database".to_owned())]
    );
    assert!(body["data"]["anime"]["title"].is_string(), "{body}");
    // Fast path: the response is not kept either.
    let (_, _, stored) = response_counts(&app);
    let (cache_control, plain_body) = send(&app, query, &[("cache-control", "no-store")]).await;
    assert_eq!(cache_control, "private, no-store");
    assert_eq!(plain_body["data"], body["data"]);
    tokio::time::sleep(Duration::from_millis(300)).await;

    assert_eq!(anime_stats(&app).loads, loads + 2, "each request loaded");
    assert_eq!(
        redis.command(&["EXISTS", &key]),
        "0",
        "written back to Redis"
    );
    assert!(
        app.state.cache.local().get(&key).await.is_none(),
        "kept in the local tier"
    );
    assert_eq!(response_counts(&app).2, stored, "a response was kept");
    let next = traced(&app, query, &[]).await;
    assert_eq!(statuses(&next)[0].0, "MISS", "{next}");

    // Reads may still be answered from the cache.
    until(
        "stored by the plain read",
        Duration::from_secs(5),
        async || redis.command(&["EXISTS", &key]) == "1",
    )
    .await;
    let body = traced(&app, query, &[("cache-control", "no-store")]).await;
    assert_eq!(statuses(&body)[0].0, "HIT", "{body}");
}

#[tokio::test]
async fn no_cache_with_no_store_loads_fresh_and_leaves_the_cache_as_it_was() {
    let (redis, app) = instance(&[]).await;
    let query = r#"{ anime(id: "11") { title } }"#;
    let old = traced(&app, query, &[]).await["data"]["anime"]["title"].clone();
    until("a local hit", Duration::from_secs(10), async || {
        statuses(&traced(&app, query, &[]).await)[0] == ("HIT".to_owned(), "local".to_owned())
    })
    .await;
    rename_behind_the_cache(&app, 11, "Seen Once").await;

    let fresh = traced(&app, query, &[("cache-control", "no-cache, no-store")]).await;

    assert_eq!(statuses(&fresh), refreshed(), "{fresh}");
    assert_eq!(fresh["data"]["anime"]["title"], "Seen Once");
    assert_eq!(
        stored_value(&redis, &app.key("anime:id=11"))["row"]["title"],
        old
    );
    let next = traced(&app, query, &[]).await;
    assert_eq!(next["data"]["anime"]["title"], old, "nothing was stored");
    assert_eq!(statuses(&next)[0].0, "HIT");
}

#[tokio::test]
async fn fifty_concurrent_no_cache_requests_share_one_database_load() {
    let (_redis, app) = instance(&[]).await;
    let query = "{ popularAnime(limit: 12) { id popularity } }";
    let locker = sea_orm::Database::connect(&app.database_url)
        .await
        .expect("a second database connection");
    let popular = |app: &TestApp| app.state.cache.stats().snapshot(Resolver::PopularAnime);

    for round in ["cold", "warm"] {
        // Arrange: the table locked, so the first load waits until every
        // request has arrived.
        let lock = locker.begin().await.expect("BEGIN");
        lock.execute_unprepared("LOCK TABLE anime IN ACCESS EXCLUSIVE MODE")
            .await
            .expect("LOCK TABLE");
        let (loads, queries, anime_loads) = (
            popular(&app).loads,
            app.db_queries(),
            anime_stats(&app).loads,
        );

        // Act: public (fast-path eligible) requests, 25 at once, and 25
        // more once the first load has started: those cannot share its
        // batch, only its load.
        let send = || {
            let request = app
                .http
                .post(app.url("/graphql"))
                .header("cache-control", "no-cache")
                .json(&json!({ "query": query }));
            tokio::spawn(async move {
                let response = request.send().await.expect("POST");
                response.json::<Value>().await.expect("JSON")
            })
        };
        let mut requests: Vec<_> = (0..25).map(|_| send()).collect();
        until("the first load", Duration::from_secs(10), async || {
            popular(&app).loads > loads
        })
        .await;
        requests.extend((0..25).map(|_| send()));
        // Time for all of them to arrive and join it.
        tokio::time::sleep(Duration::from_millis(500)).await;
        lock.rollback().await.expect("ROLLBACK");
        let mut bodies = Vec::new();
        for request in requests {
            bodies.push(request.await.expect("request task"));
        }

        // Assert: the ranking loaded once; its twelve anime, refreshed by
        // every request, once per batch of requests that found no load of
        // them running (a refresh never reuses a value loaded before it
        // was asked for): a handful of statements, not fifty.
        assert_eq!(popular(&app).loads - loads, 1, "{round}: database loads");
        let statements = app.db_queries() - queries;
        let anime = anime_stats(&app).loads - anime_loads;
        println!("{round}: {statements} statements, {anime} anime loads");
        assert!(
            (LIST_LOAD_STATEMENTS..=LIST_LOAD_STATEMENTS + 4).contains(&statements),
            "{round}: {statements} statements"
        );
        assert!(anime <= 5 * 12, "{round}: {anime} anime loads");
        assert!(
            bodies
                .iter()
                .all(|body| body == &bodies[0] && body.get("errors").is_none()),
            "{round}: answers differ: {:?}",
            bodies[0]
        );
        let next = traced(&app, query, &[]).await;
        assert_eq!(statuses(&next)[0].0, "HIT", "{round}: stored: {next}");
    }
    assert!(
        popular(&app).refreshes >= 4,
        "each round had at least two batches"
    );
}

#[tokio::test]
async fn with_client_directives_switched_off_the_headers_are_ignored() {
    let (_redis, app) = instance(&[("CACHE_CLIENT_DIRECTIVES", "false")]).await;
    until("a local hit", Duration::from_secs(10), async || {
        statuses(&traced(&app, ANIME_7, &[]).await)[0] == ("HIT".to_owned(), "local".to_owned())
    })
    .await;
    send(&app, ANIME_7, &[]).await;
    let (hits, ..) = response_counts(&app);
    let loads = anime_stats(&app).loads;

    for header in [
        ("cache-control", "no-cache"),
        ("cache-control", "no-store, max-age=0"),
        ("pragma", "no-cache"),
    ] {
        let body = traced(&app, ANIME_7, &[header]).await;
        assert_eq!(
            statuses(&body),
            vec![("HIT".to_owned(), "local".to_owned())],
            "{header:?}"
        );
        let (cache_control, _) = send(&app, ANIME_7, &[header]).await;
        assert!(cache_control.starts_with("public"), "{header:?}");
    }

    assert_eq!(response_counts(&app).0, hits + 3, "kept responses answered");
    let stats = anime_stats(&app);
    assert_eq!((stats.loads, stats.refreshes), (loads, 0));
}

/// The cache facade alone on a real Redis, with the invalidation channel
/// not listened to (the tests read Redis and the local tier directly).
async fn facade(redis: &RedisServer) -> anigo::cache::Cache {
    let config = anigo::Config::from_lookup(|name| match name {
        "REDIS_URL" => Some(redis.url()),
        "CACHE_NAMESPACE" => Some(format!("dir{}", rand_suffix())),
        "REDIS_TIMEOUT_MS" => Some("1000".to_owned()),
        _ => None,
    })
    .expect("config");
    let store = RedisStore::connect(&config.redis).await.expect("redis");
    anigo::cache::Cache::new(
        store,
        CacheConfig {
            ..config.cache.clone()
        },
    )
}

fn gated(value: u64, is_open: bool) -> GatedQuery {
    let gate = Arc::new(tokio::sync::Notify::new());
    if is_open {
        gate.notify_one();
    }
    GatedQuery { gate, value }
}

/// The stored number (the gated query's value) under `key`.
fn stored_number(redis: &RedisServer, key: &str) -> Option<u64> {
    stored_value(redis, key).as_u64()
}

#[tokio::test]
async fn a_refresh_and_a_plain_read_of_one_key_in_one_batch_keep_their_own_outcomes() {
    let redis = RedisServer::start();
    let cache = facade(&redis).await;
    let plain = cache.query_key(gated(1, true));
    let key = plain.key().to_owned();
    cache.get(gated(1, true)).await.expect("warm");
    until("written back", Duration::from_secs(5), async || {
        stored_number(&redis, &key) == Some(1)
    })
    .await;
    let refresh = cache.query_key(gated(2, true)).with_directives(NO_CACHE);

    let mut fetched = cache.fetch_many(&[plain.clone(), refresh.clone()]).await;

    let plain = fetched.remove(&plain).expect("the plain read");
    let refresh = fetched.remove(&refresh).expect("the refresh");
    assert_eq!(
        (
            *plain.typed::<u64>().expect("value"),
            plain.status,
            plain.tier
        ),
        (1, CacheStatus::Hit, Tier::Redis),
        "the plain read was not turned into a refresh"
    );
    assert_eq!(
        (
            *refresh.typed::<u64>().expect("value"),
            refresh.status,
            refresh.tier
        ),
        (2, CacheStatus::Refresh, Tier::Database),
        "the refresh was not turned into a lookup"
    );
    assert_eq!(
        stored_number(&redis, &key),
        Some(2),
        "stored before answering"
    );
    assert_eq!(
        cache
            .local()
            .get(&key)
            .await
            .and_then(|(v, _)| v.downcast::<u64>().ok())
            .map(|v| *v),
        Some(2)
    );
}

#[tokio::test]
async fn a_refresh_neither_waits_for_nor_is_overwritten_by_an_older_load() {
    // Arrange: a plain miss whose load is paused (it read "old" data, 1).
    let redis = RedisServer::start();
    let cache = facade(&redis).await;
    let old = gated(1, false);
    let gate = Arc::clone(&old.gate);
    let key = cache.query_key(gated(0, false)).key().to_owned();
    let plain = tokio::spawn({
        let cache = cache.clone();
        async move { cache.get(old).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Act: a refresh (2) arrives while it is still loading.
    let refresh = cache.query_key(gated(2, true)).with_directives(NO_CACHE);
    let mut fetched = tokio::time::timeout(
        Duration::from_secs(2),
        cache.fetch_many(std::slice::from_ref(&refresh)),
    )
    .await
    .expect("the refresh waited for the older load");
    gate.notify_one();
    let older = plain.await.expect("task").expect("plain read");
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Assert: each caller got its own load; the older value was not
    // written back over the refreshed one.
    let refreshed = fetched.remove(&refresh).expect("the refresh");
    assert_eq!(*refreshed.typed::<u64>().expect("value"), 2);
    assert_eq!(*older, 1);
    assert_eq!(stored_number(&redis, &key), Some(2));
}

#[tokio::test]
async fn a_write_during_a_refresh_still_wins() {
    // Arrange: a warm key (1), then a refresh whose load reads 2 and pauses.
    let redis = RedisServer::start();
    let cache = facade(&redis).await;
    let key = cache.query_key(gated(0, false)).key().to_owned();
    cache.get(gated(1, true)).await.expect("warm");
    until("written back", Duration::from_secs(5), async || {
        stored_number(&redis, &key) == Some(1)
    })
    .await;
    let during = gated(2, false);
    let gate = Arc::clone(&during.gate);
    let refresh = cache.query_key(during).with_directives(NO_CACHE);
    let refreshing = tokio::spawn({
        let cache = cache.clone();
        let refresh = refresh.clone();
        async move { cache.fetch_many(std::slice::from_ref(&refresh)).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Act: a write invalidates the tag, then the refresh finishes.
    cache
        .invalidate(vec!["race".to_owned()])
        .await
        .expect("invalidate");
    gate.notify_one();
    let mut fetched = refreshing.await.expect("task");

    // Assert: its caller got what it loaded, but it was not stored: the
    // next read loads anew (3) instead of finding 2.
    assert_eq!(
        *fetched
            .remove(&refresh)
            .expect("refresh")
            .typed::<u64>()
            .expect("value"),
        2
    );
    assert_ne!(stored_number(&redis, &key), Some(2), "written back");
    assert_eq!(*cache.get(gated(3, true)).await.expect("read"), 3);
}
