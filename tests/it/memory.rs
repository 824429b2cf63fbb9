//! What the cache costs in Redis: `MEMORY USAGE` of every key that
//! `popularAnime(limit: 20)` with every field of an anime stores, per
//! anime, for each compression setting (issue 14's target: at most 600
//! bytes per cached anime with the default). The dictionary itself (one
//! per namespace, shared by every entry) is reported apart.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{Backend, TestApp, TestSettings};
use crate::support::RedisServer;

/// Every field of an anime (what the old backend's measurement cached).
const QUERY: &str = "{ popularAnime(limit: 20) { id title titleEnglish titleOriginal ageRating format episodes status season year score popularity genres pictureUrl synopsis createdAt updatedAt } }";

/// Bytes per anime for `compression`: (entries, dictionary).
async fn per_anime(redis: &RedisServer, compression: &str) -> (u64, u64) {
    let mut settings = TestSettings::new(Backend::Postgres);
    settings.redis_url = Some(redis.url());
    settings.vars = vec![("CACHE_COMPRESSION", compression.to_owned())];
    let app = TestApp::spawn_with(settings).await;
    if compression == "zstd-dictionary" {
        let deadline = Instant::now() + Duration::from_secs(20);
        while app.state.cache.compression_dictionary().is_none() {
            assert!(Instant::now() < deadline, "no dictionary trained");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let body = app.graphql(QUERY, json!({})).await;
    assert!(body.get("errors").is_none(), "{body}");
    let pattern = format!("{}*", app.key(""));
    // Write-backs land in the background: wait for the twenty anime.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let entities = redis.keys_matching(&format!("{}anime:id=*", app.key(""))).len();
        if entities == 20 {
            break;
        }
        assert!(Instant::now() < deadline, "{entities} anime stored");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut entries, mut dictionary) = (0, 0);
    for key in redis.keys_matching(&pattern) {
        let usage: u64 = redis
            .command(&["MEMORY", "USAGE", &key, "SAMPLES", "0"])
            .parse()
            .expect("MEMORY USAGE");
        if key.contains(":dict:") {
            dictionary += usage;
        } else {
            entries += usage;
        }
    }
    (entries / 20, dictionary)
}

#[tokio::test]
async fn a_cached_anime_costs_at_most_600_bytes_of_redis_with_the_default_compression() {
    let redis = RedisServer::start();
    let mut report = Vec::new();
    for compression in ["none", "lz4", "zstd", "zstd-dictionary"] {
        let (bytes, dictionary) = per_anime(&redis, compression).await;
        report.push((compression, bytes, dictionary));
    }
    for (compression, bytes, dictionary) in &report {
        println!("{compression}: {bytes} bytes of Redis per cached anime (dictionary: {dictionary} bytes per namespace)");
    }
    let default = report
        .iter()
        .find(|(name, ..)| *name == "zstd-dictionary")
        .map_or(u64::MAX, |(_, bytes, _)| *bytes);
    assert!(default <= 600, "{default} bytes per anime: {report:?}");
}
