//! What the cache costs in Redis: `MEMORY USAGE` of every key that
//! `popularAnime(limit: 20)` with every field of an anime stores (the
//! ranking, twenty anime entries and the generation keys of their tags),
//! per anime, for each compression setting. Target: at most 600 bytes per
//! cached anime with the default (`zstd-dictionary`), on the seed's
//! synopses and on English prose the dictionary was not trained on. The
//! dictionary itself (one per namespace, shared by every entry) is
//! reported apart.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{Backend, TestApp, TestSettings};
use crate::support::RedisServer;

/// Every field of an anime (what the old backend's measurement cached).
const QUERY: &str = "{ popularAnime(limit: 20) { id title titleEnglish titleOriginal ageRating format episodes status season year score popularity genres pictureUrl synopsis createdAt updatedAt } }";

/// Bytes per anime for `compression`, on the database at `database_url`
/// (a fresh seeded one when `None`): (entries, dictionary). With
/// `unseen`, once the dictionary is trained and before anything is read,
/// the synopses of the anime read are replaced by those texts: what a
/// dictionary does for anime it was not trained on.
async fn per_anime(
    redis: &RedisServer,
    compression: &str,
    database_url: Option<String>,
    unseen: Option<&[String]>,
) -> (u64, u64) {
    let mut settings = TestSettings::new(Backend::Postgres);
    settings.redis_url = Some(redis.url());
    settings.database_url = database_url;
    settings.vars = vec![("CACHE_COMPRESSION", compression.to_owned())];
    let app = TestApp::spawn_with(settings).await;
    if compression == "zstd-dictionary" {
        let deadline = Instant::now() + Duration::from_secs(20);
        while app.state.cache.compression_dictionary().is_none() {
            assert!(Instant::now() < deadline, "no dictionary trained");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    if let Some(texts) = unseen {
        let popular = anigo::db::AnimeRepo::new(app.state.db.clone())
            .popular_ids(20)
            .await
            .expect("popular");
        set_synopses(&app, popular.into_iter().zip(texts.iter().cloned())).await;
    }
    let body = app.graphql(QUERY, json!({})).await;
    assert!(body.get("errors").is_none(), "{body}");
    let pattern = format!("{}*", app.key(""));
    // Write-backs land in the background: wait for the twenty anime.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let entities = redis
            .keys_matching(&format!("{}anime:id=*", app.key("")))
            .len();
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

/// English prose cut into synopses of 400 to 1,200 bytes, each from its
/// own place: the seed's synopses are stitched from a few dozen fixed
/// sentences, which a dictionary learns whole, so they flatter it; real
/// ones do not repeat.
fn prose_synopses(corpus: &str, count: usize) -> Vec<String> {
    let words: Vec<&str> = corpus
        .split_whitespace()
        .filter(|word| {
            word.chars()
                .all(|c| c.is_alphanumeric() || ",.;:'()-".contains(c))
        })
        .collect();
    (0..count)
        .map(|i| {
            let start = (i * 97) % words.len().saturating_sub(300).max(1);
            let target = 400 + (i * 131) % 800;
            let mut text = String::new();
            for word in words[start..].iter().cycle() {
                if text.len() + word.len() + 1 > target {
                    break;
                }
                if !text.is_empty() {
                    text.push(' ');
                }
                text.push_str(word);
            }
            text
        })
        .collect()
}

#[tokio::test]
async fn a_cached_anime_costs_at_most_600_bytes_of_redis_with_the_default_compression() {
    let redis = RedisServer::start();
    let mut report = Vec::new();
    for compression in ["none", "lz4", "zstd", "zstd-dictionary"] {
        let (bytes, dictionary) = per_anime(&redis, compression, None, None).await;
        report.push((compression, bytes, dictionary));
    }
    for (compression, bytes, dictionary) in &report {
        println!(
            "seed synopses, {compression}: {bytes} bytes of Redis per cached anime (dictionary: {dictionary} bytes per namespace)"
        );
    }
    let default = report
        .iter()
        .find(|(name, ..)| *name == "zstd-dictionary")
        .map_or(u64::MAX, |(_, bytes, _)| *bytes);
    assert!(default <= 600, "{default} bytes per anime: {report:?}");

    // The same with synopses of English prose, none like another: the
    // catalogue's from this repository's documentation, and the twenty
    // read, once the dictionary is trained, from its code comments (text
    // the dictionary has never seen).
    let seeded = TestApp::spawn(Backend::Postgres).await;
    let docs = read_all(&[
        "README.md",
        "docs/architecture.md",
        "docs/operations.md",
        "docs/security.md",
    ]);
    let catalogue = prose_synopses(&docs, 250);
    set_synopses(&seeded, (1..).zip(catalogue)).await;
    let comments: String = read_all(&[
        "src/cache/mod.rs",
        "src/cache/fill.rs",
        "src/service/tags.rs",
        "src/db/anime_query.rs",
        "src/server/graphql.rs",
    ])
    .lines()
    .filter_map(|line| {
        line.trim()
            .strip_prefix("///")
            .or_else(|| line.trim().strip_prefix("//!"))
    })
    .collect::<Vec<_>>()
    .join(" ");
    let unseen = prose_synopses(&comments, 20);
    let mut prose = Vec::new();
    for compression in ["zstd", "zstd-dictionary"] {
        let (bytes, _) = per_anime(
            &redis,
            compression,
            Some(seeded.database_url.clone()),
            Some(&unseen),
        )
        .await;
        println!(
            "prose synopses the dictionary never saw, {compression}: {bytes} bytes of Redis per cached anime"
        );
        prose.push((compression, bytes));
    }
    let (_, zstd) = prose[0];
    let (_, trained) = prose[1];
    assert!(
        trained < zstd && trained <= 600,
        "on unseen prose: {prose:?}"
    );
}

fn read_all(paths: &[&str]) -> String {
    paths
        .iter()
        .map(|path| std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Sets the synopses of the anime with these ids, in the database.
async fn set_synopses(app: &TestApp, synopses: impl IntoIterator<Item = (i32, String)>) {
    use sea_orm::ConnectionTrait;
    for (id, synopsis) in synopses {
        app.state
            .db
            .execute_raw(sea_orm::Statement::from_sql_and_values(
                sea_orm::DbBackend::Postgres,
                "UPDATE anime SET synopsis = $1 WHERE id = $2",
                [synopsis.into(), id.into()],
            ))
            .await
            .expect("UPDATE");
    }
}
