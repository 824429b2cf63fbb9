//! The two-tier cache with two service instances sharing one Redis and one
//! PostgreSQL: local hits, cross-instance invalidation, stampedes, stale
//! serving, writes, memory bounds, evictions and the fill/invalidation race.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anigo::cache::{CacheConfig, CachedQuery, Resolver};
use anigo::entities::anime;
use anigo::redis::RedisStore;
use sea_orm::{ConnectionTrait, EntityTrait, QueryOrder, QuerySelect};
use serde_json::{Value, json};

use crate::common::{Backend, LIST_LOAD_STATEMENTS, TestApp, TestSettings, id_of};
use crate::support::{PostgresServer, RedisServer};

pub(crate) const BEARER: &str = "Bearer two-tier-admin-token-0123";

pub(crate) fn settings(
    redis: &RedisServer,
    namespace: &str,
    vars: &[(&'static str, &str)],
) -> TestSettings {
    settings_on(&redis.url(), namespace, vars)
}

/// An instance on PostgreSQL and the Redis (or cluster) at `redis_url`, in
/// `namespace`, with the admin token and `vars`.
pub(crate) fn settings_on(
    redis_url: &str,
    namespace: &str,
    vars: &[(&'static str, &str)],
) -> TestSettings {
    let mut settings = TestSettings::new(Backend::Postgres);
    settings.redis_url = Some(redis_url.to_owned());
    settings.vars = vec![
        ("CACHE_NAMESPACE", namespace.to_owned()),
        (
            "ADMIN_TOKEN",
            BEARER.trim_start_matches("Bearer ").to_owned(),
        ),
    ];
    settings
        .vars
        .extend(vars.iter().map(|(k, v)| (*k, (*v).to_owned())));
    settings
}

/// Two instances on one Redis and one database, with one namespace.
/// No relaxed field: every write, members counts included, re-ranks at
/// once (`CACHE_RELAXED_FIELDS`), so reads can be checked exactly against
/// the database. The relaxed default is checked on its own.
pub(crate) const STRICT: &[(&str, &str)] = &[("CACHE_RELAXED_FIELDS", "none")];

pub(crate) async fn two_instances(
    redis: &RedisServer,
    vars: &[(&'static str, &str)],
) -> (TestApp, TestApp) {
    two_instances_on(&redis.url(), vars).await
}

/// Two instances on the Redis (or cluster) at `redis_url` and one database,
/// in one namespace, both with their invalidation subscription proven.
pub(crate) async fn two_instances_on(
    redis_url: &str,
    vars: &[(&'static str, &str)],
) -> (TestApp, TestApp) {
    let namespace = format!("tt{}", rand_suffix());
    let a = TestApp::spawn_with(settings_on(redis_url, &namespace, vars)).await;
    let mut b_settings = settings_on(redis_url, &namespace, vars);
    b_settings.database_url = Some(a.database_url.clone());
    let b = TestApp::spawn_with(b_settings).await;
    // Both subscriptions proven: from here on no start-up step drops a local
    // tier (which would also split in-flight loads across the epoch).
    until(
        "both instances listening",
        Duration::from_secs(10),
        async || a.state.cache.is_listening() && b.state.cache.is_listening(),
    )
    .await;
    (a, b)
}

pub(crate) fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64 % 1_000_000_007)
        .unwrap_or_default()
}

/// (status, tier) of each cached field in a debug response.
pub(crate) fn statuses(body: &Value) -> Vec<(String, String)> {
    body["extensions"]["cache"]
        .as_array()
        .unwrap_or_else(|| panic!("no cache extension: {body}"))
        .iter()
        .map(|e| {
            (
                e["status"].as_str().unwrap_or_default().to_owned(),
                e["tier"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

pub(crate) async fn until(
    what: &str,
    limit: Duration,
    mut check: impl AsyncFnMut() -> bool,
) -> Duration {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

/// Sum of Redis command calls except the INFO used to read them.
fn redis_calls(redis: &RedisServer) -> u64 {
    redis
        .command(&["INFO", "commandstats"])
        .lines()
        .filter(|line| line.starts_with("cmdstat_") && !line.starts_with("cmdstat_info"))
        .filter_map(|line| {
            line.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

#[tokio::test]
async fn a_local_hit_does_not_touch_redis() {
    let redis = RedisServer::start();
    let app = TestApp::spawn_with(settings(&redis, &format!("lh{}", rand_suffix()), &[])).await;
    let query = "{ popularAnime(limit: 8) { id } animeCount }";
    until("local hits", Duration::from_secs(10), async || {
        statuses(&app.graphql_debug(query).await)
            .iter()
            .all(|(status, tier)| status == "HIT" && tier == "local")
    })
    .await;

    let before = redis_calls(&redis);
    for _ in 0..10 {
        let body = app.graphql_debug(query).await;
        assert!(
            statuses(&body)
                .iter()
                .all(|(s, t)| s == "HIT" && t == "local"),
            "{body}"
        );
    }
    assert_eq!(
        redis_calls(&redis),
        before,
        "local hits sent commands to Redis"
    );
}

#[tokio::test]
async fn an_invalidation_on_one_instance_reaches_the_other_within_a_second() {
    let redis = RedisServer::start();
    let (a, b) = two_instances(&redis, &[]).await;
    let query = "{ anime(id: \"5\") { title } }";
    until(
        "B holds anime 5 locally",
        Duration::from_secs(10),
        async || {
            statuses(&b.graphql_debug(query).await)[0] == ("HIT".to_owned(), "local".to_owned())
        },
    )
    .await;

    let started = Instant::now();
    let body = a
        .admin(
            "mutation { invalidateAnime(ids: [\"5\"]) { deleted } }",
            Some(BEARER),
        )
        .await;
    // anime:5 and every list, count and taxonomy tag (service::tags).
    let tags = anigo::service::tags::InvalidationPolicy::default().for_outside_change(&[5]);
    assert_eq!(
        body["data"]["invalidateAnime"]["deleted"],
        json!(tags.len()),
        "{body}"
    );
    let seen = until(
        "B to drop its local entry",
        Duration::from_secs(1),
        async || {
            statuses(&b.graphql_debug(query).await)[0].0 != "HIT"
                || statuses(&b.graphql_debug(query).await)[0].1 != "local"
        },
    )
    .await;
    println!(
        "B dropped the entry {seen:?} after the invalidation ({:?} total)",
        started.elapsed()
    );
}

async fn db_state(app: &TestApp) -> (Vec<i64>, i64, Vec<i64>) {
    let db = &app.state.db;
    let popular: Vec<i64> = anime::Entity::find()
        .order_by_desc(anime::Column::Popularity)
        .order_by_asc(anime::Column::Id)
        .limit(5)
        .all(db)
        .await
        .expect("popular")
        .iter()
        .map(|a| i64::from(a.id))
        .collect();
    let all = anime::Entity::find()
        .order_by_asc(anime::Column::Id)
        .all(db)
        .await
        .expect("all");
    let page: Vec<i64> = all.iter().take(10).map(|a| i64::from(a.id)).collect();
    (popular, all.len() as i64, page)
}

const VIEW: &str = r#"{ popularAnime(limit: 5) { id popularity } animeCount animePage(page: 1, perPage: 10) { items { id } } a5: anime(id: "5") { id title popularity } }"#;

fn view_of(body: &Value) -> (Vec<i64>, i64, Vec<i64>) {
    let data = &body["data"];
    (
        data["popularAnime"]
            .as_array()
            .expect("popular")
            .iter()
            .map(id_of)
            .collect(),
        data["animeCount"].as_i64().expect("count"),
        data["animePage"]["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(id_of)
            .collect(),
    )
}

#[tokio::test]
async fn writes_are_visible_on_both_instances_immediately() {
    let redis = RedisServer::start();
    let (a, b) = two_instances(&redis, STRICT).await;
    // Warm both instances, local tiers included.
    for app in [&a, &b] {
        for _ in 0..3 {
            app.graphql_debug(VIEW).await;
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }

    // Update on A: anime 5 becomes the most popular, with a new title.
    let body = a
        .admin(
            r#"mutation { updateAnime(id: "5", input: { title: "Renamed", popularity: 9999999 }) { id title } }"#,
            Some(BEARER),
        )
        .await;
    assert_eq!(
        body["data"]["updateAnime"]["title"],
        json!("Renamed"),
        "{body}"
    );
    for app in [&b, &a] {
        let body = app.graphql_debug(VIEW).await;
        assert_eq!(view_of(&body), db_state(app).await, "{body}");
        assert_eq!(body["data"]["a5"]["title"], json!("Renamed"));
        assert_eq!(body["data"]["popularAnime"][0]["id"], json!("5"));
    }

    // Delete on B.
    let body = b
        .admin(r#"mutation { deleteAnime(id: "5") }"#, Some(BEARER))
        .await;
    assert_eq!(body["data"]["deleteAnime"], json!(true), "{body}");
    for app in [&a, &b] {
        let body = app.graphql_debug(VIEW).await;
        assert_eq!(view_of(&body), db_state(app).await, "{body}");
        assert_eq!(body["data"]["a5"], json!(null));
        assert_eq!(body["data"]["animeCount"], json!(249));
    }

    // A cached "not found" is invalidated when that id is created.
    let next_id = 251;
    let missing = format!(r#"{{ anime(id: "{next_id}") {{ id }} }}"#);
    assert_eq!(
        b.graphql_debug(&missing).await["data"]["anime"],
        json!(null)
    );
    let body = a
        .admin(
            r#"mutation { createAnime(input: { title: "Brand New", format: TV, status: UPCOMING, pictureUrl: "https://img.example/n.webp", synopsis: "A new show." }) { id } }"#,
            Some(BEARER),
        )
        .await;
    assert_eq!(
        body["data"]["createAnime"]["id"],
        json!(next_id.to_string()),
        "{body}"
    );
    let body = b.graphql_debug(&missing).await;
    assert_eq!(
        body["data"]["anime"]["id"],
        json!(next_id.to_string()),
        "{body}"
    );
    assert_eq!(b.count().await, 250);

    // Bad input and unknown ids.
    let body = a
        .admin(
            r#"mutation { updateAnime(id: "999999", input: { title: "x" }) { id } }"#,
            Some(BEARER),
        )
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        json!("NOT_FOUND"),
        "{body}"
    );
    let body = a
        .admin(
            r#"mutation { updateAnime(id: "6", input: { score: 11 }) { id } }"#,
            Some(BEARER),
        )
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        json!("BAD_USER_INPUT"),
        "{body}"
    );
    assert_eq!(
        body["errors"][0]["extensions"]["argument"],
        json!("input.score")
    );
    let body = a.admin(r#"mutation { deleteAnime(id: "6") }"#, None).await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        json!("UNAUTHENTICATED"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_cold_requests_across_two_instances_load_once() {
    let redis = RedisServer::start();
    // A generous Redis timeout: 500 requests at once on two cores (debug
    // build) can hold a 50 ms command past its deadline, and a timed-out
    // lookup rightly goes to the database; this test is about the lease.
    let (a, b) = two_instances(&redis, &[("REDIS_TIMEOUT_MS", "2000")]).await;
    let query = json!({ "query": "{ popularAnime(limit: 33) { id } }" });
    let before = a.db_queries() + b.db_queries();

    let requests = (0..500).map(|i| {
        let app = if i % 2 == 0 { &a } else { &b };
        let body = query.clone();
        async move {
            let response: Value = app
                .http
                .post(app.url("/graphql"))
                .json(&body)
                .send()
                .await
                .expect("request")
                .json()
                .await
                .expect("json");
            response
        }
    });
    let bodies = futures_util::future::join_all(requests).await;

    let loads = a.db_queries() + b.db_queries() - before;
    assert!(
        bodies.iter().all(|body| body["data"] == bodies[0]["data"]),
        "answers differ"
    );
    // The ranking loads once over both instances (the fill lease). Its
    // anime load in batches, which take no lease: once per instance at
    // most (single-flight), each load the rows and their taxon ids.
    let rankings = [&a, &b].map(|app| {
        app.state
            .cache
            .stats()
            .snapshot(Resolver::PopularAnime)
            .loads
    });
    assert_eq!(
        rankings.iter().sum::<u64>(),
        1,
        "ranking loads: {rankings:?}"
    );
    for app in [&a, &b] {
        let anime = app.state.cache.stats().snapshot(Resolver::Anime).loads;
        assert!(anime <= 33, "{anime} anime loads on one instance");
    }
    const ENTITY_LOAD_STATEMENTS: u64 = 2;
    assert!(
        (LIST_LOAD_STATEMENTS..=LIST_LOAD_STATEMENTS + ENTITY_LOAD_STATEMENTS).contains(&loads),
        "500 cold requests over two instances ran {loads} database statements (one load, and \
         the anime once more on the other instance at most)"
    );
}

#[tokio::test]
async fn stale_while_revalidate_answers_at_once_then_refreshes() {
    let redis = RedisServer::start();
    let app = TestApp::spawn_with(settings(
        &redis,
        &format!("swr{}", rand_suffix()),
        &[
            ("CACHE_TTL_ANIME", "1"),
            ("CACHE_STALE_WHILE_REVALIDATE", "30"),
        ],
    ))
    .await;
    let query = "{ anime(id: \"7\") { title } }";
    let old = app.graphql_debug(query).await["data"]["anime"]["title"].clone();
    until("written back", Duration::from_secs(5), async || {
        statuses(&app.graphql_debug(query).await)[0].0 == "HIT"
    })
    .await;
    // Changed behind the service's back: only expiry can reveal it.
    app.state
        .db
        .execute_unprepared("UPDATE anime SET title = 'Revalidated' WHERE id = 7")
        .await
        .expect("update");
    tokio::time::sleep(Duration::from_millis(1_300)).await;

    let started = Instant::now();
    let stale = app.graphql_debug(query).await;
    let stale_time = started.elapsed();

    assert_eq!(statuses(&stale)[0].0, "STALE", "{stale}");
    assert_eq!(stale["data"]["anime"]["title"], old);
    assert!(
        stale_time < Duration::from_millis(500),
        "a stale answer took {stale_time:?}"
    );
    until("the refreshed value", Duration::from_secs(5), async || {
        app.graphql_debug(query).await["data"]["anime"]["title"] == json!("Revalidated")
    })
    .await;
}

#[tokio::test]
async fn stale_if_error_answers_with_the_last_good_value_while_postgres_is_down() {
    let redis = RedisServer::start();
    let mut postgres = PostgresServer::start();
    let mut settings = settings(
        &redis,
        &format!("sie{}", rand_suffix()),
        &[
            ("CACHE_TTL_ANIME_COUNT", "1"),
            ("CACHE_STALE_WHILE_REVALIDATE", "0"),
        ],
    );
    settings.database_url = Some(postgres.create_database());
    let app = TestApp::spawn_with(settings).await;
    let query = "{ animeCount }";
    app.graphql_debug(query).await;
    until("written back", Duration::from_secs(5), async || {
        statuses(&app.graphql_debug(query).await)[0].0 == "HIT"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1_300)).await;

    postgres.stop();
    let body = app.graphql_debug(query).await;

    assert_eq!(body["data"]["animeCount"], json!(250), "{body}");
    assert_eq!(statuses(&body)[0].0, "STALE", "{body}");
    let uncached = app
        .graphql_debug("{ animePage(page: 3, perPage: 7) { total } }")
        .await;
    assert_eq!(
        uncached["errors"][0]["extensions"]["code"],
        json!("DATABASE_UNAVAILABLE"),
        "{uncached}"
    );
}

#[tokio::test]
async fn the_local_tier_stays_within_its_byte_budget_under_a_sweep() {
    let redis = RedisServer::start();
    let budget: u64 = 150_000;
    let app = TestApp::spawn_with(settings(
        &redis,
        &format!("mem{}", rand_suffix()),
        &[("CACHE_LOCAL_MAX_BYTES", "150000")],
    ))
    .await;
    // 250 anime of ~1.3 KB and 25 pages of ~13 KB: several times the budget.
    for round in 0..2 {
        for id in 1..=250 {
            app.graphql(&format!("{{ anime(id: \"{id}\") {{ id }} }}"), json!({}))
                .await;
        }
        for page in 1..=25 {
            app.page(page, 10).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let held = app.state.cache.local().weighted_size().await;
        println!("round {round}: local tier holds {held} bytes (budget {budget})");
        assert!(
            held <= budget,
            "local tier holds {held} bytes over a {budget}-byte budget"
        );
        assert!(
            held > budget / 4,
            "the local tier is barely used: {held} bytes"
        );
    }
}

/// A query whose load the test controls: it waits at a gate, then returns
/// the value it is given.
pub(crate) struct GatedQuery {
    pub(crate) gate: Arc<tokio::sync::Notify>,
    pub(crate) value: u64,
}

impl CachedQuery for GatedQuery {
    type Output = u64;
    const RESOLVER: Resolver = Resolver::AnimeCount;

    fn params(&self) -> String {
        "gated".to_owned()
    }

    fn tags(&self) -> Vec<String> {
        vec!["race".to_owned()]
    }

    async fn load(&self) -> Result<u64, anigo::error::AppError> {
        self.gate.notified().await;
        Ok(self.value)
    }
}

#[tokio::test]
async fn a_fill_paused_across_an_invalidation_does_not_write_back_its_old_value() {
    // Arrange: the cache facade alone, on a real Redis.
    let redis = RedisServer::start();
    let config = anigo::Config::from_lookup(|name| match name {
        "REDIS_URL" => Some(redis.url()),
        "CACHE_NAMESPACE" => Some(format!("race{}", rand_suffix())),
        _ => None,
    })
    .expect("config");
    let store = RedisStore::connect(&config.redis).await.expect("redis");
    let cache = anigo::cache::Cache::new(
        store,
        CacheConfig {
            ..config.cache.clone()
        },
    );
    let key = cache
        .query_key(GatedQuery {
            gate: Arc::default(),
            value: 0,
        })
        .key()
        .to_owned();

    for warm in [false, true] {
        if warm {
            // Second round: the tag has a generation the fill saw.
            cache
                .invalidate(vec!["race".to_owned()])
                .await
                .expect("bump");
        }
        // Act: a fill reads "old" (1) and pauses; a write invalidates; the
        // fill resumes.
        let gate = Arc::new(tokio::sync::Notify::new());
        let fill = tokio::spawn({
            let cache = cache.clone();
            let gate = Arc::clone(&gate);
            async move { cache.get(GatedQuery { gate, value: 1 }).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        cache
            .invalidate(vec!["race".to_owned()])
            .await
            .expect("invalidate");
        // A read after the invalidation must not join the paused fill (whose
        // value predates it): it loads anew and sees the new value.
        let open = Arc::new(tokio::sync::Notify::new());
        open.notify_one();
        let after = cache
            .get(GatedQuery {
                gate: open,
                value: 3,
            })
            .await
            .expect("read after write");
        assert_eq!(
            *after, 3,
            "a read after the write joined the older fill (warm={warm})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        redis.command(&["DEL", &key]);
        gate.notify_one();
        let old = fill.await.expect("fill task").expect("fill");
        tokio::time::sleep(Duration::from_millis(300)).await;

        // Assert: the caller got its value, but it was never stored, and the
        // next read loads the new one.
        assert_eq!(*old, 1);
        assert_eq!(
            redis.command(&["EXISTS", &key]),
            "0",
            "a stale fill was written back (warm={warm})"
        );
        let gate = Arc::new(tokio::sync::Notify::new());
        gate.notify_one();
        let new = cache
            .get(GatedQuery { gate, value: 2 })
            .await
            .expect("reload");
        assert_eq!(*new, 2, "warm={warm}");
        redis.command(&["DEL", &key]);
    }
}

#[tokio::test]
async fn a_write_storm_under_eviction_never_serves_stale_data() {
    let _ = anigo::telemetry::init(&anigo::config::LogConfig {
        format: anigo::config::LogFormat::Pretty,
        filter: "warn,fred=off".to_owned(),
    });
    // Arrange: a tiny Redis that evicts anything, two instances.
    let redis = RedisServer::start();
    redis.command(&["CONFIG", "SET", "maxmemory", "3mb"]);
    redis.command(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
    let (a, b) = two_instances(&redis, STRICT).await;
    let filler = "x".repeat(20_000);
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };

    // Act + assert: random writes on either instance, each followed by
    // reads on both, every read checked against the database.
    let mut checks = 0;
    for step in 0..120 {
        let id = next(20) + 1;
        let writer = if next(2) == 0 { &a } else { &b };
        let popularity = next(5_000_000);
        let body = writer
            .admin(
                &format!(r#"mutation {{ updateAnime(id: "{id}", input: {{ popularity: {popularity}, title: "t{step}" }}) {{ id }} }}"#),
                Some(BEARER),
            )
            .await;
        assert!(body.get("errors").is_none(), "{body}");
        for _ in 0..3 {
            redis.command(&["SET", &format!("filler:{}", next(1_000_000)), &filler]);
        }
        for reader in [&a, &b] {
            let probe = next(20) + 1;
            let body = reader
                .graphql_debug(&format!(
                    r#"{{ popularAnime(limit: 5) {{ id }} one: anime(id: "{probe}") {{ title popularity }} }}"#
                ))
                .await;
            let (popular, ..) = db_state(reader).await;
            let got: Vec<i64> = body["data"]["popularAnime"]
                .as_array()
                .expect("list")
                .iter()
                .map(id_of)
                .collect();
            assert_eq!(got, popular, "step {step}: stale popular list: {body}");
            let row = anime::Entity::find_by_id(probe as i32)
                .one(&reader.state.db)
                .await
                .expect("row")
                .expect("exists");
            assert_eq!(
                body["data"]["one"]["title"],
                json!(row.title),
                "step {step}: stale anime {probe}: {body}"
            );
            assert_eq!(body["data"]["one"]["popularity"], json!(row.popularity));
            checks += 1;
        }
    }
    let evicted = redis.evicted_keys();
    println!("{checks} reads checked against the database; Redis evicted {evicted} keys");
    assert!(evicted > 0, "the storm did not force any eviction");
}
