//! The in-process tier: decoded values in memory (moka), in front of Redis.
//! A hit here touches neither Redis nor the network.
//!
//! Bounded by bytes (`CACHE_LOCAL_MAX_BYTES`, weighed by the stored JSON
//! size); an entry lives until the logical expiry of the Redis entry it came
//! from, never longer. Invalidation arrives from this instance's writes and,
//! through Redis pub/sub, from every other instance; a Redis reconnect drops
//! everything (messages may have been missed).
//!
//! Correctness does not rest on moka's own invalidation (which is lazy and
//! timestamp-based): every invalidation takes a new `epoch` and records it
//! per tag; every entry records the epoch its fill started in; an entry is
//! served only if no invalidation of its tag (or of everything) came after
//! that. So a fill that started before an invalidation can never serve its
//! value after it, however the insert and the invalidation interleave.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache as Moka;

use super::envelope::now_ms;
use super::query::SharedValue;
use super::response::{ResponseKey, ResponseStore, StoredResponse};

/// One value held in memory.
#[derive(Clone)]
pub struct LocalEntry {
    /// The decoded value.
    pub value: SharedValue,
    /// Its invalidation tag.
    pub tag: Arc<str>,
    /// Logical expiry, unix ms.
    pub expires_at_ms: u64,
    /// Approximate memory cost: the JSON size.
    pub weight: u32,
    /// The epoch in which the fill of this value started (set by
    /// [`LocalTier::insert`]).
    pub epoch: u64,
}

/// The latest invalidation epochs: of everything, and per tag.
#[derive(Default)]
struct Invalidations {
    all: u64,
    by_tag: HashMap<Arc<str>, u64>,
}

/// Per-tag records kept before they are folded into one "everything"
/// invalidation (bounds memory under many distinct invalidated ids).
const MAX_TAG_RECORDS: usize = 10_000;

/// The in-process tier; disabled when its byte budget is zero. It also
/// holds whole responses ([`super::response`]), guarded by the same epochs.
pub struct LocalTier {
    cache: Option<Moka<Arc<str>, LocalEntry>>,
    responses: ResponseStore,
    epoch: AtomicU64,
    /// Read on every hit, written on invalidation; a std RwLock, never held
    /// across an await.
    invalidations: RwLock<Invalidations>,
}

struct UntilLogicalExpiry;

impl Expiry<Arc<str>, LocalEntry> for UntilLogicalExpiry {
    fn expire_after_create(
        &self,
        _key: &Arc<str>,
        value: &LocalEntry,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(Duration::from_millis(
            value.expires_at_ms.saturating_sub(now_ms()),
        ))
    }
}

impl LocalTier {
    /// A tier holding at most `max_bytes` of values and `response_bytes` of
    /// responses (0 disables either).
    pub fn new(max_bytes: u64, response_bytes: u64) -> Self {
        let cache = (max_bytes > 0).then(|| {
            Moka::builder()
                .max_capacity(max_bytes)
                .weigher(|key: &Arc<str>, entry: &LocalEntry| {
                    entry
                        .weight
                        .saturating_add(u32::try_from(key.len()).unwrap_or(u32::MAX))
                })
                .expire_after(UntilLogicalExpiry)
                .support_invalidation_closures()
                .build()
        });
        Self {
            cache,
            responses: ResponseStore::new(response_bytes),
            epoch: AtomicU64::new(0),
            invalidations: RwLock::new(Invalidations::default()),
        }
    }

    /// Whether the tier is on.
    pub fn is_enabled(&self) -> bool {
        self.cache.is_some()
    }

    /// The invalidation epoch; pass it back to [`LocalTier::insert`].
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// A fresh value for `key`, if held, with its logical expiry (unix ms).
    pub async fn get(&self, key: &str) -> Option<(SharedValue, u64)> {
        if !self.is_enabled() {
            return None;
        }
        let entry = self.cache.as_ref()?.get(key).await?;
        if entry.expires_at_ms <= now_ms() {
            return None;
        }
        self.is_current(std::slice::from_ref(&entry.tag), entry.epoch)
            .then_some((entry.value, entry.expires_at_ms))
    }

    /// Whether no invalidation of any of `tags` (or of everything) came
    /// after `epoch`.
    fn is_current(&self, tags: &[Arc<str>], epoch: u64) -> bool {
        let invalidations = self
            .invalidations
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        epoch >= invalidations.all
            && tags
                .iter()
                .all(|tag| invalidations.by_tag.get(tag).is_none_or(|at| epoch >= *at))
    }

    /// Whether whole responses are kept.
    pub fn responses_enabled(&self) -> bool {
        self.responses.is_enabled()
    }

    /// A current response for `key`, if held.
    pub async fn get_response(&self, key: &ResponseKey) -> Option<Arc<StoredResponse>> {
        let response = self.responses.get(key).await?;
        self.is_current(response.tags(), response.epoch())
            .then_some(response)
    }

    /// Holds `response` unless an invalidation happened since the epoch its
    /// execution started in. Returns whether it was kept.
    pub async fn insert_response(&self, key: ResponseKey, response: Arc<StoredResponse>) -> bool {
        if response.expires_at_ms <= now_ms() || self.epoch() != response.epoch() {
            return false;
        }
        self.responses.insert(key, response).await;
        true
    }

    /// Holds `entry` unless an invalidation happened since `epoch` was read
    /// (the value may be one that invalidation removed).
    pub async fn insert(&self, key: Arc<str>, mut entry: LocalEntry, epoch: u64) {
        let Some(cache) = &self.cache else {
            return;
        };
        if !self.is_enabled() || entry.expires_at_ms <= now_ms() || self.epoch() != epoch {
            return;
        }
        // Even if an invalidation lands between the check above and the
        // insert, `get` compares this epoch with it and refuses the entry.
        entry.epoch = epoch;
        cache.insert(key, entry).await;
    }

    /// Drops every entry carrying one of `tags`.
    pub fn invalidate_tags(&self, tags: &[String]) {
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        {
            let mut invalidations = self
                .invalidations
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            for tag in tags {
                invalidations.by_tag.insert(Arc::from(tag.as_str()), epoch);
            }
            if invalidations.by_tag.len() > MAX_TAG_RECORDS {
                invalidations.all = epoch;
                invalidations.by_tag.clear();
            }
        }
        // Free the memory too (moka applies this lazily; correctness comes
        // from the epochs above).
        self.responses.invalidate_tags(tags);
        if let Some(cache) = &self.cache {
            let tags: Vec<Arc<str>> = tags.iter().map(|t| Arc::from(t.as_str())).collect();
            if cache
                .invalidate_entries_if(move |_key, entry| tags.contains(&entry.tag))
                .is_err()
            {
                cache.invalidate_all();
            }
        }
    }

    /// Drops everything.
    pub fn invalidate_all(&self) {
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        {
            let mut invalidations = self
                .invalidations
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            invalidations.all = epoch;
            invalidations.by_tag.clear();
        }
        self.responses.invalidate_all();
        if let Some(cache) = &self.cache {
            cache.invalidate_all();
        }
    }

    /// Responses held and their bytes (after pending maintenance).
    pub async fn response_usage(&self) -> (u64, u64) {
        self.responses.weighted_size().await
    }

    /// Bytes currently held (after pending maintenance).
    pub async fn weighted_size(&self) -> u64 {
        match &self.cache {
            Some(cache) => {
                cache.run_pending_tasks().await;
                cache.weighted_size()
            }
            None => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tag: &str, weight: u32) -> LocalEntry {
        LocalEntry {
            value: Arc::new(1u64),
            tag: Arc::from(tag),
            expires_at_ms: now_ms() + 60_000,
            weight,
            epoch: 0,
        }
    }

    #[tokio::test]
    async fn an_invalidation_during_a_fill_keeps_the_fill_out() {
        let tier = LocalTier::new(1 << 20, 0);
        let epoch = tier.epoch();
        tier.invalidate_tags(&["popular".to_owned()]);
        tier.insert(Arc::from("k"), entry("popular", 10), epoch)
            .await;
        assert!(tier.get("k").await.is_none());

        let epoch = tier.epoch();
        tier.insert(Arc::from("k"), entry("popular", 10), epoch)
            .await;
        assert!(tier.get("k").await.is_some());
        tier.invalidate_tags(&["anime:1".to_owned()]);
        assert!(tier.get("k").await.is_some(), "another tag leaves it");
        tier.invalidate_tags(&["popular".to_owned()]);
        assert!(tier.get("k").await.is_none());
    }

    #[tokio::test]
    async fn an_entry_inserted_late_with_an_old_epoch_is_never_served() {
        let tier = LocalTier::new(1 << 20, 0);
        let epoch = tier.epoch();
        // The insert passes its epoch check, then an invalidation lands
        // before the value is read: simulate by inserting directly.
        tier.insert(Arc::from("k"), entry("popular", 10), epoch)
            .await;
        tier.invalidate_tags(&["popular".to_owned()]);
        if let Some(cache) = &tier.cache {
            let mut late = entry("popular", 10);
            late.epoch = epoch;
            cache.insert(Arc::from("k"), late).await;
        }
        assert!(tier.get("k").await.is_none());
    }

    #[tokio::test]
    async fn a_small_budget_still_keeps_entries() {
        let tier = LocalTier::new(150_000, 0);
        let epoch = tier.epoch();
        tier.insert(
            Arc::from("anigo:v3:anime:id=3"),
            entry("anime:3", 1_300),
            epoch,
        )
        .await;
        assert!(tier.get("anigo:v3:anime:id=3").await.is_some());
    }

    #[tokio::test]
    async fn the_byte_bound_holds() {
        let tier = LocalTier::new(100_000, 0);
        for i in 0..1_000 {
            let epoch = tier.epoch();
            tier.insert(Arc::from(format!("key-{i}")), entry("t", 1_000), epoch)
                .await;
        }
        let size = tier.weighted_size().await;
        assert!(size <= 100_000, "{size} bytes held");
        assert!(
            size >= 50_000,
            "only {size} bytes held: entries were not kept"
        );
    }
}
