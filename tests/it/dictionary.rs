//! The compression dictionary of a namespace (`cache::dictionary`): the
//! instances of one namespace train one between them, share it through
//! Redis, and read each other's compressed entries; an entry compressed
//! with a dictionary nobody knows is a miss, never an error.

use std::time::Duration;

use serde_json::json;

use crate::support::RedisServer;
use crate::two_tier::{statuses, two_instances, until};

/// The format byte of an entry compressed with a dictionary
/// (`cache::codec::ZSTD_DICTIONARY`).
const WITH_DICTIONARY: u8 = anigo::cache::codec::ZSTD_DICTIONARY;

#[tokio::test]
async fn two_instances_share_one_trained_dictionary_and_read_each_others_entries() {
    // Arrange: two instances of one namespace, compression by dictionary.
    let redis = RedisServer::start();
    let (a, b) = two_instances(&redis, &[("CACHE_COMPRESSION", "zstd-dictionary")]).await;
    until(
        "both instances have the dictionary",
        Duration::from_secs(30),
        async || {
            a.state.cache.compression_dictionary().is_some()
                && a.state.cache.compression_dictionary() == b.state.cache.compression_dictionary()
        },
    )
    .await;
    let id = a.state.cache.compression_dictionary().expect("installed");
    assert_eq!(
        redis.command(&["GET", &a.key("dict:current")]),
        format!("{id:08x}"),
        "Redis names the one both use"
    );
    let query = r#"{ anime(id: "3") { title synopsis } }"#;

    // Act: A stores anime 3; B reads it from Redis.
    let on_a = a.graphql_debug(query).await;
    let key = a.key("anime:id=3");
    until(
        "the entry written back",
        Duration::from_secs(10),
        async || redis.get_bytes(&key).is_some(),
    )
    .await;
    let stored = redis.get_bytes(&key).expect("stored");
    let on_b = b.graphql_debug(query).await;

    // Assert
    assert_eq!(stored[0], WITH_DICTIONARY, "compressed with the dictionary");
    assert_eq!(
        u32::from_le_bytes([stored[23], stored[24], stored[25], stored[26]]),
        id,
        "naming it (after the 2-byte head, one generation, expiry, load time and the ranges count)"
    );
    assert_eq!(
        statuses(&on_b)[0],
        ("HIT".to_owned(), "redis".to_owned()),
        "{on_b}"
    );
    assert_eq!(on_b["data"], on_a["data"]);
}

#[tokio::test]
async fn an_entry_compressed_with_an_unknown_dictionary_is_a_miss_and_is_replaced() {
    let redis = RedisServer::start();
    let (a, _b) = two_instances(&redis, &[("CACHE_COMPRESSION", "zstd-dictionary")]).await;
    until("a dictionary", Duration::from_secs(30), async || {
        a.state.cache.compression_dictionary().is_some()
    })
    .await;
    let query = r#"{ anime(id: "4") { title synopsis } }"#;
    let expected = a.data(query, json!({})).await;
    let key = a.key("anime:id=4");
    until(
        "the entry written back",
        Duration::from_secs(10),
        async || redis.get_bytes(&key).is_some(),
    )
    .await;

    // Another dictionary's id in the entry (as a newer build's would be),
    // and nothing in memory: only Redis can answer.
    let mut bytes = redis.get_bytes(&key).expect("stored");
    assert_eq!(bytes[0], WITH_DICTIONARY);
    bytes[23..27].copy_from_slice(&0x0bad_d1c7_u32.to_le_bytes());
    let b = a.state.cache.clone();
    b.local().invalidate_all();
    redis.set_bytes(&key, &bytes);
    let body = a.graphql_debug(query).await;

    assert_eq!(body["data"], expected, "{body}");
    assert_eq!(statuses(&body)[0].0, "MISS", "{body}");
    until("the entry replaced", Duration::from_secs(10), async || {
        redis
            .get_bytes(&key)
            .is_some_and(|now| now[23..27] != 0x0bad_d1c7_u32.to_le_bytes())
    })
    .await;
}
