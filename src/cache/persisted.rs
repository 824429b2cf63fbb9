//! Automatic persisted queries (APQ): query texts by their SHA-256, so a
//! client can send a 64-character hash instead of the document.
//!
//! Texts live in this instance's memory (bounded) and in Redis under
//! `{ns}:v4:apq:{sha256}` for a week, so every instance learns a text
//! registered on any of them.
//! Only texts that parsed and validated are stored (the caller's rule), so
//! the store cannot be filled with arbitrary bytes. Without Redis, texts
//! are still remembered locally; a client that gets
//! `PERSISTED_QUERY_NOT_FOUND` simply sends the full text once more.

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache as Moka;

use super::local::ENTRY_OVERHEAD_BYTES;
use super::remote::RedisTier;
use super::response::hex;
use crate::redis::Op;

/// How long Redis keeps a registered text.
const PERSISTED_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Bytes of query text kept in memory at most (with each entry's key and
/// bookkeeping; public for the server's budget report).
pub const LOCAL_BUDGET_BYTES: u64 = 8 * 1024 * 1024;

/// Query texts by SHA-256, in memory.
pub(super) struct PersistedQueries {
    local: Moka<[u8; 32], Arc<str>>,
}

impl Default for PersistedQueries {
    fn default() -> Self {
        Self {
            local: Moka::builder()
                .max_capacity(LOCAL_BUDGET_BYTES)
                .weigher(|_hash: &[u8; 32], text: &Arc<str>| {
                    // The text with its `Arc` counts, its hash key and
                    // moka's per-entry cost.
                    u32::try_from(text.len() + 16 + 32 + ENTRY_OVERHEAD_BYTES as usize)
                        .unwrap_or(u32::MAX)
                })
                .build(),
        }
    }
}

impl PersistedQueries {
    /// The query text registered under `hash`: from memory, else from
    /// Redis (then kept in memory). `None` when unknown or Redis is away.
    pub(super) async fn get(&self, remote: &RedisTier, hash: &[u8; 32]) -> Option<Arc<str>> {
        if let Some(text) = self.local.get(hash).await {
            return Some(text);
        }
        if !remote.redis().is_available() {
            return None;
        }
        let key = remote.keys().persisted_query_key(&hex(hash));
        let value = remote.redis().mget(vec![key.into()]).await.ok()?.pop()??;
        let text: Arc<str> = Arc::from(value.as_str()?.as_ref());
        self.local.insert(*hash, Arc::clone(&text)).await;
        Some(text)
    }

    /// Registers `text` under `hash` (its SHA-256, already checked), in
    /// memory and in Redis. Awaited (one SET, bounded by the Redis command
    /// timeout): a registration happens once per query text, and a client
    /// that registers on one instance and then sends the hash alone to
    /// another must find it there.
    pub(super) async fn put(&self, remote: &RedisTier, hash: [u8; 32], text: Arc<str>) {
        if self.local.contains_key(&hash) {
            return;
        }
        self.local.insert(hash, Arc::clone(&text)).await;
        if !remote.redis().is_available() {
            return;
        }
        let op = Op::Set {
            key: remote.keys().persisted_query_key(&hex(&hash)).into(),
            value: text.as_bytes().to_vec(),
            ttl: PERSISTED_TTL,
        };
        if remote.run(vec![op]).await.is_err() {
            tracing::debug!("Storing a persisted query in Redis failed");
        }
    }
}
