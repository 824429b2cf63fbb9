//! The per-resolver Redis cache, observed by its effects: keys and TTLs in a
//! real redis-server, database statement counts, and Redis command stats.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{
    Backend, LIST_LOAD_STATEMENTS, TestApp, TestSettings, stored_entry, stored_value,
};
use crate::support::RedisServer;

/// Every cached resolver: (query, key after the namespace, policy TTL in s).
const RESOLVERS: [(&str, &str, u64); 4] = [
    (
        "{ popularAnime(limit: 7) { id title } }",
        "popular:limit=7",
        60,
    ),
    (
        "{ animePage(page: 3, perPage: 20) { total items { id } } }",
        "anime_paginated:page=3:per_page=20",
        300,
    ),
    ("{ animeCount }", "anime_count:all", 600),
    ("{ anime(id: \"5\") { id title } }", "anime:id=5", 300),
];

async fn app_with(redis: &RedisServer, backend: Backend, vars: &[(&'static str, &str)]) -> TestApp {
    let mut settings = TestSettings::new(backend);
    settings.redis_url = Some(redis.url());
    settings.vars = vars.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    TestApp::spawn_with(settings).await
}

/// `extensions.cache` entries as (key, status).
fn trace(body: &Value) -> Vec<(String, String)> {
    body["extensions"]["cache"]
        .as_array()
        .unwrap_or_else(|| panic!("no cache extension in {body}"))
        .iter()
        .map(|entry| {
            (
                entry["key"].as_str().unwrap_or_default().to_owned(),
                entry["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Polls until `check` holds (write-backs land in the background).
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Milliseconds until the stored entry's logical expiry (its envelope's).
fn logical_ttl_ms(redis: &RedisServer, key: &str) -> i64 {
    let (meta, _) = stored_entry(redis, key).expect("a stored entry");
    let expires = meta.expires_at_ms as i64;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    expires - now
}

fn mget_calls(redis: &RedisServer) -> u64 {
    let stats = redis.command(&["INFO", "commandstats"]);
    stats
        .lines()
        .find_map(|line| line.strip_prefix("cmdstat_mget:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|calls| calls.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn each_resolver_misses_then_hits_with_its_key_and_ttl() {
    let redis = RedisServer::start();
    let app = app_with(&redis, Backend::Postgres, &[]).await;

    for (query, key_rest, ttl_secs) in RESOLVERS {
        let key = app.key(key_rest);

        // First read: a miss, loaded from the database (a list's anime
        // are entities of their own, read after it: hits for those an
        // earlier read stored).
        let first = app.graphql_debug(query).await;
        assert!(first.get("errors").is_none(), "{first}");
        assert_eq!(trace(&first)[0], (key.clone(), "MISS".to_owned()));

        // The value lands in Redis under the documented key, expiring within
        // the policy's TTL (less up to 5 % jitter); Redis keeps it for the
        // stale-if-error window (600 s) beyond that.
        eventually(&format!("{key} in Redis"), || {
            redis.command(&["EXISTS", &key]) == "1"
        })
        .await;
        let ttl_ms = (ttl_secs * 1000) as i64;
        let left = logical_ttl_ms(&redis, &key);
        assert!(
            left > ttl_ms * 94 / 100 && left <= ttl_ms,
            "{key}: {left} ms left vs policy {ttl_ms}"
        );
        let pttl: i64 = redis.command(&["PTTL", &key]).parse().expect("PTTL");
        assert!(
            (pttl - left - 600_000).abs() < 2_000,
            "{key}: PTTL {pttl}, logical {left}"
        );
        assert!(!stored_value(&redis, &key).is_null());

        // Second read: a hit that does not touch the database.
        let before = app.db_queries();
        let second = app.graphql_debug(query).await;
        assert_eq!(trace(&second)[0], (key.clone(), "HIT".to_owned()));
        assert!(
            trace(&second).iter().all(|(_, status)| status == "HIT"),
            "{second}"
        );
        assert_eq!(
            second["data"], first["data"],
            "a hit returns what the miss returned"
        );
        assert_eq!(
            app.db_queries(),
            before,
            "{key}: a hit reached the database"
        );
    }
    let stats = app
        .state
        .cache
        .stats()
        .snapshot(anigo::cache::Resolver::PopularAnime);
    assert_eq!((stats.hits, stats.misses, stats.loads), (1, 1, 1));
}

#[tokio::test]
async fn an_expired_entry_is_loaded_from_the_database_again() {
    let redis = RedisServer::start();
    let app = app_with(
        &redis,
        Backend::Sqlite,
        &[
            ("CACHE_TTL_POPULAR", "1"),
            ("CACHE_STALE_WHILE_REVALIDATE", "0"),
            ("CACHE_STALE_IF_ERROR", "0"),
        ],
    )
    .await;
    let key = app.key("popular:limit=20");
    let query = "{ popularAnime { id } }";

    app.graphql_debug(query).await;
    eventually("the popular key", || {
        redis.command(&["EXISTS", &key]) == "1"
    })
    .await;
    let cached = app.db_queries();
    assert_eq!(trace(&app.graphql_debug(query).await)[0].1, "HIT");
    assert_eq!(app.db_queries(), cached);

    eventually("expiry after 1 s", || {
        redis.command(&["EXISTS", &key]) == "0"
    })
    .await;
    let body = app.graphql_debug(query).await;

    assert_eq!(trace(&body)[0].1, "MISS");
    assert!(
        trace(&body)[1..].iter().all(|(_, status)| status == "HIT"),
        "the anime outlive the ranking: {body}"
    );
    assert_eq!(
        app.db_queries(),
        cached + 1,
        "exactly one statement after expiry: the ranking's ids"
    );
}

// Multi-threaded like the server, so the loader's batch task can run on
// another worker while the request is still enqueuing keys. The window is
// async-graphql's 1 ms default rather than our 50 µs: the suite runs tests
// in parallel on two cores, and a thread descheduled for longer than 50 µs
// would split a batch (correct, but one more MGET) and flake this count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_touching_every_cached_field_costs_one_mget() {
    let redis = RedisServer::start();
    // The local tier is off: every warm read must reach Redis to be counted.
    let app = app_with(
        &redis,
        Backend::Sqlite,
        &[
            ("CACHE_BATCH_WINDOW_US", "1000"),
            ("CACHE_LOCAL_MAX_BYTES", "0"),
        ],
    )
    .await;
    let query = r#"{
        popularAnime(limit: 3) { id }
        animePage(page: 2, perPage: 5) { total }
        animeCount
        a: anime(id: "1") { id }
        b: anime(id: "2") { id }
    }"#;

    let before = mget_calls(&redis);
    let cold = app.graphql_debug(query).await;
    eventually("all five keys written back", || {
        redis.command(&[
            "EXISTS",
            &app.key("popular:limit=3"),
            &app.key("anime:id=2"),
        ]) == "2"
            && redis.command(&["EXISTS", &app.key("anime_count:all")]) == "1"
    })
    .await;
    let after_cold = mget_calls(&redis);
    let mut warm = Value::Null;
    for _ in 0..20 {
        warm = app.graphql_debug(query).await;
    }
    let after_warm = mget_calls(&redis);

    // Five reads, then the list's and the page's anime (3 + 5 entities,
    // anime 1 and 2 among them: read again, they are separate reads).
    assert_eq!(trace(&cold).len(), 5 + 3 + 5, "{cold}");
    // Round one, the five root fields: one MGET for the lookup, one
    // pipeline creating the missing generation keys (ending in an MGET of
    // them), one look per leased key after winning its lease (another
    // instance may have committed in between: the list, the page and the
    // count; the anime load in batches, without leases), and the background
    // write-back's generation check. Round two, the lists' anime: one MGET,
    // one generation pipeline, one write-back check.
    assert_eq!(
        after_cold - before,
        3 + 3 + 3,
        "a cold request sent {} MGETs",
        after_cold - before
    );
    assert!(
        trace(&warm).iter().all(|(_, status)| status == "HIT"),
        "{warm}"
    );
    // Two rounds each: the root fields, then the lists' anime.
    assert_eq!(
        after_warm - after_cold,
        2 * 20,
        "20 warm requests sent {} MGETs",
        after_warm - after_cold
    );
    assert_eq!(warm["data"], cold["data"]);
}

#[tokio::test]
async fn ttl_overrides_apply_and_zero_disables_a_resolver() {
    let redis = RedisServer::start();
    let app = app_with(
        &redis,
        Backend::Sqlite,
        &[("CACHE_TTL_POPULAR", "90"), ("CACHE_TTL_ANIME_COUNT", "0")],
    )
    .await;

    app.graphql_debug("{ popularAnime { id } }").await;
    let key = app.key("popular:limit=20");
    eventually("the popular key", || {
        redis.command(&["EXISTS", &key]) == "1"
    })
    .await;
    let left = logical_ttl_ms(&redis, &key);
    assert!(
        (85_000..=90_000).contains(&left),
        "{left} ms left for a 90 s override"
    );

    let before = app.db_queries();
    for _ in 0..3 {
        let body = app.graphql_debug("{ animeCount }").await;
        assert_eq!(trace(&body)[0].1, "BYPASS", "{body}");
        assert_eq!(body["data"]["animeCount"], json!(250));
    }
    assert_eq!(
        app.db_queries(),
        before + 3,
        "a disabled resolver reads the database each time"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(redis.command(&["EXISTS", &app.key("anime_count:all")]), "0");
}

#[tokio::test]
async fn a_corrupt_value_is_a_miss_and_gets_overwritten() {
    let redis = RedisServer::start();
    let app = app_with(&redis, Backend::Sqlite, &[]).await;
    let key = app.key("anime_count:all");
    // A v3 JSON envelope, as an older build wrote them: not ours any more.
    assert_eq!(
        redis.command(&["SET", &key, r#"{"g":"00","e":1,"d":1,"v":1}"#, "EX", "600"]),
        "OK"
    );

    let body = app.graphql_debug("{ animeCount }").await;

    assert_eq!(body["data"]["animeCount"], json!(250), "{body}");
    assert_eq!(trace(&body)[0].1, "MISS");
    eventually("the corrupt value replaced", || {
        stored_value(&redis, &key) == json!(250)
    })
    .await;
    assert_eq!(
        trace(&app.graphql_debug("{ animeCount }").await)[0].1,
        "HIT"
    );
}

#[tokio::test]
async fn concurrent_identical_cold_requests_load_once() {
    let redis = RedisServer::start();
    let app = app_with(&redis, Backend::Postgres, &[]).await;
    let query = "{ popularAnime(limit: 50) { id popularity } }";

    let before = app.db_queries();
    let requests = (0..8).map(|_| app.graphql(query, json!({})));
    let bodies = futures_util::future::join_all(requests).await;

    assert_eq!(
        app.db_queries() - before,
        LIST_LOAD_STATEMENTS,
        "eight concurrent cold requests, one load"
    );
    for body in &bodies {
        assert_eq!(body["data"], bodies[0]["data"]);
    }
}

#[tokio::test]
async fn queries_survive_redis_being_killed_frozen_and_restarted() {
    // Arrange: a warm cache on a Redis this test owns.
    let mut redis = RedisServer::start();
    let app = app_with(&redis, Backend::Postgres, &[]).await;
    let query = "{ popularAnime(limit: 10) { id popularity } animeCount }";
    let expected = app.graphql_debug(query).await["data"].clone();
    eventually("warm cache", || {
        redis.command(&["EXISTS", &app.key("anime_count:all")]) == "1"
    })
    .await;

    // Killed: answers stay correct, straight from the database.
    redis.kill();
    for _ in 0..5 {
        let started = Instant::now();
        let body = app.graphql_debug(query).await;
        assert_eq!(body["data"], expected, "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "took {:?}",
            started.elapsed()
        );
    }
    let (status, ready) = app.get_json("/readyz").await;
    assert_eq!((status, ready["status"].clone()), (200, json!("degraded")));

    // Restarted: hits resume once fred has reconnected.
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let body = app.graphql_debug(query).await;
        assert_eq!(body["data"], expected);
        if trace(&body).iter().all(|(_, status)| status == "HIT") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no hits 15 s after Redis came back: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Frozen (SIGSTOP): the connection stays open but nothing answers.
    redis.freeze();
    let mut worst = Duration::ZERO;
    for _ in 0..10 {
        let started = Instant::now();
        let body = app.graphql_debug(query).await;
        worst = worst.max(started.elapsed());
        assert_eq!(body["data"], expected, "{body}");
    }
    redis.thaw();
    // Bound: the 50 ms Redis timeout plus the database time, with slack for
    // a loaded CI machine; without timeouts this would hang forever.
    println!("worst latency while Redis was frozen: {worst:?}");
    assert!(
        worst < Duration::from_millis(750),
        "worst request took {worst:?} with Redis frozen"
    );
}

#[tokio::test]
async fn a_failed_load_is_not_cached() {
    use sea_orm::ConnectionTrait;

    let redis = RedisServer::start();
    let app = app_with(&redis, Backend::Postgres, &[]).await;
    app.state
        .db
        .execute_unprepared("ALTER TABLE anime RENAME TO anime_gone")
        .await
        .expect("hiding the table");

    let body = app.graphql_debug("{ animeCount }").await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        json!("INTERNAL"),
        "{body}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        redis.command(&["EXISTS", &app.key("anime_count:all")]),
        "0",
        "an error was cached"
    );

    // Once the table is back, the next read loads and caches the real value.
    app.state
        .db
        .execute_unprepared("ALTER TABLE anime_gone RENAME TO anime")
        .await
        .expect("restoring the table");
    let body = app.graphql_debug("{ animeCount }").await;
    assert_eq!(body["data"]["animeCount"], json!(250), "{body}");
    eventually("the count cached", || {
        stored_value(&redis, &app.key("anime_count:all")) == json!(250)
    })
    .await;
}
