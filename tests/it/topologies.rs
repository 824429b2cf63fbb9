//! Redis topologies through fred: a real three-node Redis Cluster shared by
//! two instances (reads across hash slots, writes, pattern clears,
//! invalidation, stats), an ACL user from `REDIS_URL`, and what a wrong
//! password does. URL parsing of every form (`redis://`, `rediss://`,
//! `redis-cluster://`, `redis-sentinel://`) is unit-tested in `config.rs`; no
//! TLS server or sentinel is started here.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::TestApp;
use crate::support::{RedisCluster, RedisServer};
use crate::two_tier::{
    BEARER, STRICT, rand_suffix, settings_on, statuses, two_instances_on, until,
};

fn all_are(body: &Value, status: &str, tier: &str) -> bool {
    statuses(body).iter().all(|(s, t)| s == status && t == tier)
}

/// Whether each key in `body`'s trace was read with `status` from `tier`.
/// An anime is one entry shared by `anime(id)` and every list showing it,
/// so a request can read it more than once: one of those reads is as
/// asked, the others that or a hit of what it brought (the trace is not
/// in the order of the reads).
fn first_reads_are(body: &Value, status: &str, tier: &str) -> bool {
    let mut as_asked: HashMap<&str, bool> = HashMap::new();
    let entries = body["extensions"]["cache"]
        .as_array()
        .unwrap_or_else(|| panic!("no cache extension: {body}"));
    for entry in entries {
        let key = entry["key"].as_str().unwrap_or_default();
        let is_as_asked = entry["status"] == status && entry["tier"] == tier;
        if !is_as_asked && entry["status"] != "HIT" {
            return false;
        }
        *as_asked.entry(key).or_default() |= is_as_asked;
    }
    !as_asked.is_empty() && as_asked.values().all(|&is_as_asked| is_as_asked)
}

/// The anime entries a request read (`anime(id)`, and the anime of lists).
fn anime_keys(body: &Value) -> HashSet<String> {
    body["extensions"]["cache"]
        .as_array()
        .unwrap_or_else(|| panic!("no cache extension: {body}"))
        .iter()
        .filter(|entry| entry["resolver"] == "anime")
        .map(|entry| entry["key"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Every resolver in one request, and twelve anime: enough value keys and
/// generation keys that they land in many hash slots on every node.
fn view() -> String {
    let anime: Vec<String> = (1..=12)
        .map(|id| format!(r#"a{id}: anime(id: "{id}") {{ id title }}"#))
        .collect();
    format!(
        "{{ popularAnime(limit: 5) {{ id popularity }} animeCount animePage(page: 1, perPage: 10) {{ items {{ id }} }} {} }}",
        anime.join(" ")
    )
}

const STATS: &str = "{ cacheStats { connected redisVersion keys namespaceKeys keyCountsAreExact resolvers { name errors keys } } }";

#[tokio::test]
async fn two_instances_share_a_three_node_cluster_for_reads_writes_clears_and_stats() {
    // Arrange
    let started = Instant::now();
    let cluster = RedisCluster::start();
    let cluster_ready = started.elapsed();
    // Strict: the members count written below re-ranks `popularAnime` at
    // once rather than when it expires.
    let (a, b) = two_instances_on(&cluster.url(), STRICT).await;
    let namespace_keys = format!("{}:*", a.state.cache.keys().namespace());
    let view = view();

    // Reads: A loads from the database and writes back; B then finds every
    // field in Redis, which takes one MGET per hash slot.
    let body = a.graphql_debug(&view).await;
    assert!(first_reads_are(&body, "MISS", "database"), "{body}");
    // The twelve `anime(id)` and the anime of the two lists.
    let anime_entries = anime_keys(&body).len();
    assert!(anime_entries > 12, "{body}");
    let values = |prefix: &str| {
        let pattern = format!("{}*", a.key(prefix));
        cluster.key_counts(&pattern).iter().sum::<usize>()
    };
    until("A's write-back", Duration::from_secs(5), async || {
        values("anime:") == anime_entries
            && values("popular:") == 1
            && values("anime_count:") == 1
            && values("anime_paginated:") == 1
    })
    .await;
    let body = b.graphql_debug(&view).await;
    assert!(first_reads_are(&body, "HIT", "redis"), "{body}");
    assert_eq!(body["data"]["a7"]["id"], json!("7"));
    let per_node = cluster.key_counts(&namespace_keys);
    assert!(
        per_node.iter().all(|&count| count > 0),
        "keys on every node: {per_node:?}"
    );

    // A write on A is visible on B at once, local tiers included.
    until("B serves locally", Duration::from_secs(10), async || {
        all_are(&b.graphql_debug(&view).await, "HIT", "local")
    })
    .await;
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
    let body = b.graphql_debug(&view).await;
    assert_eq!(body["data"]["a5"]["title"], json!("Renamed"), "{body}");
    assert_eq!(body["data"]["popularAnime"][0]["id"], json!("5"), "{body}");

    // cacheStats: keys summed over the nodes, the namespace scanned on all.
    until("write-backs settle", Duration::from_secs(5), async || {
        let stats = &b.admin(STATS, Some(BEARER)).await["data"]["cacheStats"];
        let total: usize = cluster
            .nodes()
            .iter()
            .map(|node| node.command(&["DBSIZE"]).parse::<usize>().expect("DBSIZE"))
            .sum();
        stats["keys"] == json!(total)
            && stats["namespaceKeys"]
                == json!(cluster.key_counts(&namespace_keys).iter().sum::<usize>())
    })
    .await;
    let stats = b.admin(STATS, Some(BEARER)).await["data"]["cacheStats"].clone();
    assert_eq!(stats["connected"], json!(true), "{stats}");
    assert_eq!(stats["keyCountsAreExact"], json!(true), "{stats}");
    assert!(
        stats["redisVersion"]
            .as_str()
            .is_some_and(|v| !v.is_empty())
    );
    for resolver in stats["resolvers"].as_array().expect("resolvers") {
        assert_eq!(resolver["errors"], json!(0), "no Redis errors: {stats}");
    }
    for app in [&a, &b] {
        let stats = app.admin(STATS, Some(BEARER)).await["data"]["cacheStats"].clone();
        for resolver in stats["resolvers"].as_array().expect("resolvers") {
            assert_eq!(resolver["errors"], json!(0), "no Redis errors: {stats}");
        }
    }

    // clearCache(pattern) deletes on every node, and only what matches.
    let mut shown = Vec::new();
    for limit in 1..=12 {
        shown = a.popular(limit).await;
    }
    let popular = format!("{}*", a.key("popular:"));
    let anime = format!("{}*", a.key("anime:"));
    // The lists, and the anime they show (entries of their own).
    until("popular keys written", Duration::from_secs(5), async || {
        values("popular:") == 12
            && shown.iter().all(|(id, _)| {
                let key = a.key(&format!("anime:id={id}"));
                cluster.key_counts(&key).iter().sum::<usize>() == 1
            })
    })
    .await;
    let popular_per_node = cluster.key_counts(&popular);
    assert!(
        popular_per_node.iter().filter(|&&count| count > 0).count() >= 2,
        "popular keys on several nodes: {popular_per_node:?}"
    );
    let anime_before = cluster.key_counts(&anime).iter().sum::<usize>();
    let body = b
        .admin(
            r#"mutation { clearCache(pattern: "popular:*") { deleted } }"#,
            Some(BEARER),
        )
        .await;
    assert_eq!(body["data"]["clearCache"]["deleted"], json!(12), "{body}");
    assert_eq!(cluster.key_counts(&popular), vec![0; 3]);
    assert_eq!(
        cluster.key_counts(&anime).iter().sum::<usize>(),
        anime_before
    );

    // clearAllCache empties the namespace on every node.
    let left = cluster.key_counts(&namespace_keys).iter().sum::<usize>();
    let body = a
        .admin("mutation { clearAllCache { deleted } }", Some(BEARER))
        .await;
    let deleted = body["data"]["clearAllCache"]["deleted"]
        .as_u64()
        .unwrap_or_else(|| panic!("{body}"));
    // A write-back may land between the count and the clear.
    assert!(
        deleted as usize >= left,
        "deleted {deleted} of {left}: {body}"
    );
    assert_eq!(cluster.key_counts(&namespace_keys), vec![0; 3]);
    let body = b.graphql_debug(&view).await;
    assert_eq!(body["data"]["a5"]["title"], json!("Renamed"));
    assert!(
        first_reads_are(&body, "MISS", "database"),
        "cleared everywhere, local tiers included: {body}"
    );
    println!(
        "cluster ready in {cluster_ready:?}; whole test {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn cluster_subscriptions_come_back_after_their_connections_are_killed() {
    // Arrange
    let cluster = RedisCluster::start();
    let (a, b) = two_instances_on(&cluster.url(), &[]).await;
    let channel = a.state.cache.keys().invalidation_channel();
    let subscribers = || -> u64 {
        // Sharded: only the node owning the channel's slot counts them.
        cluster
            .nodes()
            .iter()
            .map(|node| {
                let reply = node.command(&["PUBSUB", "SHARDNUMSUB", &channel]);
                reply
                    .lines()
                    .nth(1)
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum()
    };
    assert_eq!(subscribers(), 2, "both instances on the channel's shard");
    // What an invalidation waits for: every instance counted, whichever
    // node each subscriber connection lives on (junk on the ack channel is
    // ignored by the listeners).
    let ack_channel = a.state.cache.keys().acknowledgement_channel();
    let receivers = a.state.redis.publish(&ack_channel, "test").await;
    assert_eq!(receivers.expect("published"), 2);
    let query = r#"{ anime(id: "9") { title } }"#;
    until(
        "B holds anime 9 locally",
        Duration::from_secs(10),
        async || all_are(&b.graphql_debug(query).await, "HIT", "local"),
    )
    .await;

    // Act: drop every pub/sub connection on every node.
    for node in cluster.nodes() {
        node.command(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    }
    until("both resubscribed", Duration::from_secs(10), async || {
        subscribers() == 2
    })
    .await;
    until(
        "both listening again",
        Duration::from_secs(10),
        async || a.state.cache.is_listening() && b.state.cache.is_listening(),
    )
    .await;
    let receivers = b.state.redis.publish(&ack_channel, "test").await;
    assert_eq!(receivers.expect("published"), 2, "each instance once");
    until(
        "B holds anime 9 locally again",
        Duration::from_secs(10),
        async || all_are(&b.graphql_debug(query).await, "HIT", "local"),
    )
    .await;

    // Assert: an invalidation on A still reaches B's local tier at once.
    let body = a
        .admin(
            r#"mutation { updateAnime(id: "9", input: { title: "Back Again" }) { title } }"#,
            Some(BEARER),
        )
        .await;
    assert_eq!(
        body["data"]["updateAnime"]["title"],
        json!("Back Again"),
        "{body}"
    );
    let body = b.graphql_debug(query).await;
    assert_eq!(
        body["data"]["anime"]["title"],
        json!("Back Again"),
        "{body}"
    );
}

#[tokio::test]
async fn an_acl_user_from_the_url_authenticates_and_stays_inside_its_namespace() {
    // Arrange: a user that may touch only keys and channels of one namespace.
    let redis = RedisServer::start();
    let namespace = format!("acl{}", rand_suffix());
    redis.command(&[
        "ACL",
        "SETUSER",
        "anigo",
        "on",
        ">s3cret:pw",
        "resetkeys",
        &format!("~{namespace}:*"),
        "resetchannels",
        &format!("&{namespace}:*"),
        "+@all",
    ]);
    // The password percent-encoded, as in any URL.
    let url = format!("redis://anigo:s3cret%3Apw@127.0.0.1:{}/0", redis.port());

    // Act
    let app = TestApp::spawn_with(settings_on(&url, &namespace, &[])).await;
    let query = r#"{ popularAnime(limit: 3) { id } anime(id: "2") { id } }"#;
    until("Redis hits", Duration::from_secs(10), async || {
        statuses(&app.graphql_debug(query).await)
            .iter()
            .all(|(status, _)| status == "HIT")
    })
    .await;

    // Assert: every connection is the ACL user's, nothing was denied.
    let clients = redis.command(&["CLIENT", "LIST"]);
    let users: Vec<&str> = clients
        .lines()
        .filter(|line| !line.contains("cmd=client|list"))
        .filter_map(|line| {
            line.split(' ')
                .find_map(|field| field.strip_prefix("user="))
        })
        .collect();
    assert!(!users.is_empty(), "{clients}");
    assert!(users.iter().all(|user| *user == "anigo"), "{clients}");
    assert_eq!(redis.command(&["ACL", "LOG"]), "", "no denied command");
    let (status, body) = app.get_json("/readyz").await;
    assert_eq!((status, &body["status"]), (200, &json!("ready")), "{body}");
    assert!(
        !body.to_string().contains("s3cret"),
        "no password in /readyz: {body}"
    );
    let stats = app.admin(STATS, Some(BEARER)).await;
    assert_eq!(
        stats["data"]["cacheStats"]["connected"],
        json!(true),
        "{stats}"
    );
}

#[tokio::test]
async fn a_wrong_password_runs_degraded_and_refuses_to_start_when_redis_is_required() {
    // Arrange
    let redis = RedisServer::start();
    redis.command(&[
        "ACL", "SETUSER", "anigo", "on", ">right", "~*", "&*", "+@all",
    ]);
    let url = format!("redis://anigo:wrong-pw@127.0.0.1:{}/0", redis.port());

    // Act + assert: by default the service runs without Redis.
    let mut degraded = settings_on(&url, &format!("wp{}", rand_suffix()), &[]);
    degraded
        .vars
        .push(("REDIS_CONNECT_TIMEOUT_MS", "300".to_owned()));
    let app = TestApp::spawn_with(degraded).await;
    assert_eq!(app.count().await, 250);
    let (status, body) = app.get_json("/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], json!("degraded"), "{body}");
    assert_eq!(body["redis"]["status"], json!("down"), "{body}");
    assert_eq!(
        body["redis"]["addr"],
        json!(format!("127.0.0.1:{}", redis.port()))
    );
    assert!(!body.to_string().contains("wrong-pw"), "{body}");

    // With REDIS_REQUIRED, start-up fails and says why (the refused AUTH),
    // without the password.
    let dir = tempfile::tempdir().expect("tmp");
    let vars = HashMap::from([
        (
            "DATABASE_URL",
            format!("sqlite://{}/a.db?mode=rwc", dir.path().display()),
        ),
        ("REDIS_URL", url),
        ("REDIS_REQUIRED", "true".to_owned()),
        ("REDIS_CONNECT_TIMEOUT_MS", "300".to_owned()),
        ("BIND_ADDR", "127.0.0.1:0".to_owned()),
    ]);
    let config = anigo::Config::from_lookup(|k| vars.get(k).cloned()).expect("config");
    let err = match anigo::App::build(config).await {
        Ok(_) => panic!("must not start with a wrong Redis password and REDIS_REQUIRED"),
        Err(err) => format!("{err:#}"),
    };
    println!("start-up error: {err}");
    assert!(err.contains("REDIS_REQUIRED"), "{err}");
    assert!(err.contains("WRONGPASS"), "names the refused AUTH: {err}");
    assert!(
        err.contains(&format!("127.0.0.1:{}", redis.port())),
        "{err}"
    );
    assert!(!err.contains("wrong-pw"), "{err}");
}
