//! Cache administration: stats against INFO, pattern and namespace clears,
//! the admin token, and `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Backend, TestApp, TestSettings};
use crate::support::RedisServer;

const TOKEN: &str = "test-admin-token-0123456789";
const BEARER: &str = "Bearer test-admin-token-0123456789";

async fn admin_app(redis: &RedisServer, token: Option<&str>) -> TestApp {
    let mut settings = TestSettings::new(Backend::Sqlite);
    settings.redis_url = Some(redis.url());
    if let Some(token) = token {
        settings.vars.push(("ADMIN_TOKEN", token.to_owned()));
    }
    TestApp::spawn_with(settings).await
}

/// `field:value` from an INFO reply.
fn info_field(info: &str, name: &str) -> String {
    info.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const STATS: &str = "{ cacheStats { connected redisVersion keys namespaceKeys keyCountsAreExact memoryUsed memoryUsedHuman maxMemory maxMemoryPolicy evictedKeys keyspaceHits keyspaceMisses hitRate resolvers { name prefix ttlSeconds hits misses errors bypasses hitRate keys bytes } } }";

fn resolver<'a>(stats: &'a Value, name: &str) -> &'a Value {
    stats["resolvers"]
        .as_array()
        .and_then(|all| all.iter().find(|r| r["name"] == json!(name)))
        .unwrap_or_else(|| panic!("no resolver {name} in {stats}"))
}

#[tokio::test]
async fn cache_stats_match_redis_info_and_counters_move_by_one() {
    // Arrange
    let redis = RedisServer::start();
    let app = admin_app(&redis, Some(TOKEN)).await;
    app.graphql("{ popularAnime(limit: 4) { id } }", json!({}))
        .await;
    wait_for("write-back", || {
        redis.command(&["EXISTS", &app.key("popular:limit=4")]) == "1"
    })
    .await;

    // Act
    let before = app.admin(STATS, Some(BEARER)).await["data"]["cacheStats"].clone();
    app.graphql("{ popularAnime(limit: 5) { id } }", json!({}))
        .await; // miss
    let after_miss = app.admin(STATS, Some(BEARER)).await["data"]["cacheStats"].clone();
    app.graphql("{ popularAnime(limit: 5) { id } }", json!({}))
        .await; // hit
    let after_hit = app.admin(STATS, Some(BEARER)).await["data"]["cacheStats"].clone();
    let info = redis.command(&["INFO"]);

    // Assert: server fields are INFO's.
    assert_eq!(before["connected"], json!(true), "{before}");
    assert_eq!(
        before["redisVersion"],
        json!(info_field(&info, "redis_version"))
    );
    assert_eq!(
        before["maxMemory"],
        json!(
            info_field(&info, "maxmemory")
                .parse::<u64>()
                .expect("maxmemory")
        )
    );
    assert_eq!(
        before["maxMemoryPolicy"],
        json!(info_field(&info, "maxmemory_policy"))
    );
    assert_eq!(
        before["evictedKeys"],
        json!(
            info_field(&info, "evicted_keys")
                .parse::<u64>()
                .expect("evicted")
        )
    );
    let hits_now: u64 = info_field(&info, "keyspace_hits").parse().expect("hits");
    let reported_hits = after_hit["keyspaceHits"].as_u64().expect("keyspaceHits");
    // Background write-backs (the list and each of its five anime re-read
    // their generations before storing) may land between the two reads.
    assert!(
        reported_hits <= hits_now && reported_hits + 40 >= hits_now,
        "{reported_hits} vs INFO {hits_now}"
    );
    assert!(before["memoryUsed"].as_u64().is_some_and(|m| m > 0));
    assert_eq!(
        after_hit["keys"],
        json!(redis.command(&["DBSIZE"]).parse::<u64>().expect("dbsize"))
    );
    // Two lists of ids, the five anime they name (each an entity with the
    // generation key of its tag), and the generation keys of the lists'
    // two tags (`catalogue`, `list:all`).
    assert_eq!(after_hit["namespaceKeys"], json!(2 + 5 * 2 + 2));
    assert_eq!(after_hit["keyCountsAreExact"], json!(true));

    // Per-resolver counters: exactly one more miss, then one more hit.
    let (b, m, h) = (
        resolver(&before, "popularAnime"),
        resolver(&after_miss, "popularAnime"),
        resolver(&after_hit, "popularAnime"),
    );
    assert_eq!(m["misses"].as_u64(), b["misses"].as_u64().map(|v| v + 1));
    assert_eq!(m["hits"], b["hits"]);
    assert_eq!(h["hits"].as_u64(), m["hits"].as_u64().map(|v| v + 1));
    assert_eq!(h["misses"], m["misses"]);
    assert_eq!(h["ttlSeconds"], json!(60));
    assert_eq!(h["prefix"], json!("popular"));
    // Footprint: two popular keys, their value bytes as STRLEN reports.
    assert_eq!(h["keys"], json!(2));
    let bytes: u64 = ["popular:limit=4", "popular:limit=5"]
        .iter()
        .map(|k| {
            redis
                .command(&["STRLEN", &app.key(k)])
                .parse::<u64>()
                .expect("strlen")
        })
        .sum();
    assert_eq!(h["bytes"], json!(bytes));
}

#[tokio::test]
async fn cache_stats_without_redis_keep_the_counters() {
    let mut redis = RedisServer::start();
    let app = admin_app(&redis, Some(TOKEN)).await;
    app.graphql("{ animeCount }", json!({})).await;
    redis.kill();

    let body = app.admin(STATS, Some(BEARER)).await;
    let stats = &body["data"]["cacheStats"];

    assert_eq!(stats["connected"], json!(false), "{body}");
    assert_eq!(stats["redisVersion"], json!(null));
    assert_eq!(stats["keys"], json!(null));
    assert_eq!(resolver(stats, "animeCount")["misses"], json!(1));
    assert_eq!(resolver(stats, "animeCount")["keys"], json!(null));
}

/// Fills the namespace with `count` keys under `prefix` using one Lua loop.
fn populate(redis: &RedisServer, prefix: &str, count: usize) {
    let script =
        "for i = 1, tonumber(ARGV[1]) do redis.call('SET', KEYS[1] .. i, 'x') end return 1";
    assert_eq!(
        redis.command(&["EVAL", script, "1", prefix, &count.to_string()]),
        "1"
    );
}

/// Runs GETs against Redis on another thread until stopped; returns the
/// worst latency seen.
fn reader(redis: &RedisServer, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Duration> {
    let port = redis.port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut stream =
            std::net::TcpStream::connect(("127.0.0.1", port)).expect("reader connects");
        stream.set_nodelay(true).ok();
        let mut worst = Duration::ZERO;
        let mut buf = [0u8; 64];
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            stream
                .write_all(b"*2\r\n$3\r\nGET\r\n$9\r\nunrelated\r\n")
                .expect("write");
            let n = stream.read(&mut buf).expect("read");
            assert!(n > 0);
            worst = worst.max(started.elapsed());
            std::thread::sleep(Duration::from_micros(200));
        }
        worst
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clearing_200k_keys_keeps_a_concurrent_reader_fast_unlike_keys_and_del() {
    // Arrange
    let redis = RedisServer::start();
    let app = admin_app(&redis, Some(TOKEN)).await;
    redis.command(&["SET", "unrelated", "keep me"]);
    let bulk = app.key("anime_paginated:bulk:");
    populate(&redis, &bulk, 200_000);

    // Act: our clear, with a reader hammering the same Redis.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = reader(&redis, Arc::clone(&stop));
    let body = app
        .admin(
            "mutation { clearCache(pattern: \"anime_paginated:*\") { deleted tookMs } }",
            Some(BEARER),
        )
        .await;
    stop.store(true, Ordering::Relaxed);
    let ours = watcher.join().expect("reader");

    // The same data deleted the old way: KEYS, then one DEL.
    populate(&redis, &bulk, 200_000);
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = reader(&redis, Arc::clone(&stop));
    let listed = redis.command(&["KEYS", &format!("{bulk}*")]);
    let keys: Vec<&str> = listed.lines().collect();
    let mut del = vec!["DEL"];
    del.extend(keys.iter().copied());
    let deleted_old_way: u64 = redis.command(&del).parse().expect("DEL count");
    stop.store(true, Ordering::Relaxed);
    let old_way = watcher.join().expect("reader");

    // Assert
    assert_eq!(
        body["data"]["clearCache"]["deleted"],
        json!(200_000),
        "{body}"
    );
    assert_eq!(deleted_old_way, 200_000);
    assert_eq!(redis.command(&["GET", "unrelated"]), "keep me");
    println!(
        "worst concurrent GET latency: SCAN+UNLINK {ours:?} (clear took {} ms) vs KEYS+DEL {old_way:?}",
        body["data"]["clearCache"]["tookMs"]
    );
    assert!(
        ours < Duration::from_millis(100),
        "a reader waited {ours:?} during SCAN+UNLINK"
    );
}

#[tokio::test]
async fn clears_never_touch_keys_outside_the_namespace() {
    // Arrange: ours (current and an older version), another namespace that
    // starts with ours, and an unrelated key.
    let redis = RedisServer::start();
    let app = admin_app(&redis, Some(TOKEN)).await;
    let ns = app.state.cache.keys().namespace().to_owned();
    let ours = [
        app.key("popular:limit=20"),
        app.key("anime_paginated:page=1:per_page=20"),
    ];
    let old_version = format!("{ns}:v0:popular:limit=20");
    let survivors = [
        format!("{ns}x:v1:popular:limit=20"),
        "anigo-other:thing".to_owned(),
        "unrelated".to_owned(),
    ];
    for key in ours.iter().chain([&old_version]).chain(survivors.iter()) {
        redis.command(&["SET", key, "1"]);
    }

    // Act + assert: "*:*:*" stays inside {ns}:v1: and needs two more colons.
    let body = app
        .admin(
            "mutation { clearCache(pattern: \"*:*:*\") { deleted } }",
            Some(BEARER),
        )
        .await;
    assert_eq!(body["data"]["clearCache"]["deleted"], json!(1), "{body}");
    assert_eq!(redis.command(&["EXISTS", &ours[1]]), "0");
    assert_eq!(redis.command(&["EXISTS", &ours[0]]), "1");

    let body = app
        .admin(
            "mutation { clearCache(pattern: \"*\") { deleted } }",
            Some(BEARER),
        )
        .await;
    assert_eq!(body["data"]["clearCache"]["deleted"], json!(1), "{body}");
    assert_eq!(
        redis.command(&["EXISTS", &old_version]),
        "1",
        "another version is not ours to clear by pattern"
    );

    let body = app
        .admin(
            "mutation { clearAllCache { deleted tookMs } }",
            Some(BEARER),
        )
        .await;
    assert_eq!(body["data"]["clearAllCache"]["deleted"], json!(1), "{body}");
    assert_eq!(
        redis.command(&["EXISTS", &old_version]),
        "0",
        "clearAllCache covers every version"
    );
    for key in &survivors {
        assert_eq!(redis.command(&["EXISTS", key]), "1", "{key} was deleted");
    }
}

#[tokio::test]
async fn bad_patterns_are_refused_and_delete_nothing() {
    let redis = RedisServer::start();
    let app = admin_app(&redis, Some(TOKEN)).await;
    let ns = app.state.cache.keys().namespace().to_owned();
    let key = app.key("popular:limit=20");
    redis.command(&["SET", &key, "1"]);
    redis.command(&["SET", "unrelated", "1"]);

    for pattern in [
        "",
        "   ",
        "../*",
        "..",
        "popular/*",
        "[a-z]*",
        "a\\\\*",
        "* *",
        &format!("{ns}:v1:popular:*"),
    ] {
        let query = format!(
            "mutation {{ clearCache(pattern: {}) {{ deleted }} }}",
            json!(pattern)
        );
        let body = app.admin(&query, Some(BEARER)).await;
        assert_eq!(
            body["errors"][0]["extensions"]["code"],
            json!("BAD_USER_INPUT"),
            "{pattern:?}: {body}"
        );
        assert_eq!(
            body["errors"][0]["extensions"]["argument"],
            json!("pattern")
        );
    }
    assert_eq!(
        redis.command(&["EXISTS", &key, "unrelated"]),
        "2",
        "a refused pattern deleted something"
    );
}

#[tokio::test]
async fn missing_malformed_and_wrong_tokens_are_refused_and_do_nothing() {
    let redis = RedisServer::start();
    let app = admin_app(&redis, Some(TOKEN)).await;
    let key = app.key("popular:limit=20");
    redis.command(&["SET", &key, "1"]);

    let cases = [
        (None, "UNAUTHENTICATED"),
        (Some("Basic dXNlcjpwYXNz"), "UNAUTHENTICATED"),
        (Some("Bearer"), "UNAUTHENTICATED"),
        (Some("Bearer wrong-token-wrong-token"), "FORBIDDEN"),
        (Some("Bearer test-admin-token-012345678"), "FORBIDDEN"),
    ];
    for (header, code) in cases {
        for query in [
            "mutation { clearAllCache { deleted } }",
            "mutation { clearCache(pattern: \"*\") { deleted } }",
            STATS,
        ] {
            let body = app.admin(query, header).await;
            assert_eq!(
                body["errors"][0]["extensions"]["code"],
                json!(code),
                "{header:?} {query}: {body}"
            );
            assert_eq!(body["data"], json!(null), "{body}");
        }
    }
    assert_eq!(
        redis.command(&["EXISTS", &key]),
        "1",
        "a refused call deleted something"
    );

    let body = app
        .admin("mutation { clearAllCache { deleted } }", Some(BEARER))
        .await;
    assert_eq!(body["data"]["clearAllCache"]["deleted"], json!(1), "{body}");
}

#[tokio::test]
async fn admin_fields_are_refused_when_no_token_is_configured() {
    let redis = RedisServer::start();
    let app = admin_app(&redis, None).await;
    let body = app
        .admin("mutation { clearAllCache { deleted } }", Some(BEARER))
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        json!("FORBIDDEN"),
        "{body}"
    );
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("ADMIN_TOKEN"),
        "the message should say how to enable: {message}"
    );
}

/// `name{labels}` → value, from Prometheus text; panics on a malformed line.
fn parse_exposition(text: &str) -> std::collections::HashMap<String, f64> {
    let mut samples = std::collections::HashMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(comment) = line.strip_prefix('#') {
            let comment = comment.trim_start();
            assert!(
                comment.starts_with("HELP ") || comment.starts_with("TYPE "),
                "bad comment line: {line}"
            );
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':'),
            "bad metric name in {line}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "unterminated labels: {line}");
        }
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        samples.insert(series.to_owned(), value);
    }
    samples
}

#[tokio::test]
async fn metrics_are_valid_prometheus_text_matching_the_requests_made() {
    let redis = RedisServer::start();
    let app = admin_app(&redis, Some(TOKEN)).await;
    let scrape = || async {
        let response = app
            .http
            .get(app.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .to_owned();
        assert!(content_type.starts_with("text/plain"), "{content_type}");
        parse_exposition(&response.text().await.expect("body"))
    };
    let get = |samples: &std::collections::HashMap<String, f64>, series: &str| {
        samples.get(series).copied().unwrap_or(0.0)
    };

    let before = scrape().await;
    for _ in 0..3 {
        let body = app
            .http
            .post(app.url("/graphql"))
            .json(&json!({ "query": "query TopFive { popularAnime(limit: 5) { id } }", "operationName": "TopFive" }))
            .send()
            .await
            .expect("request")
            .json::<Value>()
            .await
            .expect("json");
        assert!(body.get("errors").is_none(), "{body}");
    }
    let after = scrape().await;

    let ok = "anigo_graphql_requests_total{operation=\"TopFive\",outcome=\"ok\"}";
    assert_eq!(get(&after, ok) - get(&before, ok), 3.0);
    let stats = app
        .state
        .cache
        .stats()
        .snapshot(anigo::cache::Resolver::PopularAnime);
    assert_eq!(
        get(&after, "anigo_cache_hits_total{resolver=\"popularAnime\"}"),
        stats.hits as f64
    );
    assert_eq!(
        get(
            &after,
            "anigo_cache_misses_total{resolver=\"popularAnime\"}"
        ),
        stats.misses as f64
    );
    assert_eq!(stats.hits + stats.misses, 3);
    assert_eq!(get(&after, "anigo_redis_connected"), 1.0);
    assert!(
        get(
            &after,
            "anigo_graphql_request_duration_seconds_count{operation=\"TopFive\"}"
        ) >= 3.0
    );
    assert!(
        after
            .keys()
            .any(|k| k.starts_with("anigo_db_query_duration_seconds_bucket")),
        "no db histogram"
    );
    assert!(
        after
            .keys()
            .any(|k| k.starts_with("anigo_redis_command_duration_seconds_bucket")),
        "no redis histogram"
    );
    assert!(
        get(
            &after,
            "anigo_http_requests_total{route=\"/graphql\",status=\"200\"}"
        ) >= 3.0
    );
}
