//! The in-process tier: decoded values in memory (moka), in front of Redis.
//! A hit here touches neither Redis nor the network.
//!
//! Bounded by bytes (`CACHE_LOCAL_MAX_BYTES`, weighed by the stored JSON
//! size); an entry lives until the logical expiry of the Redis entry it came
//! from, never longer. Invalidation arrives from this instance's writes and,
//! through Redis pub/sub, from every other instance; a Redis reconnect drops
//! everything (messages may have been missed). The `epoch` counts
//! invalidations, so a fill that started before one does not insert a value
//! that the invalidation was meant to remove.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache as Moka;

use super::envelope::now_ms;
use super::query::SharedValue;

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
}

/// The in-process tier; disabled when its byte budget is zero.
pub struct LocalTier {
    cache: Option<Moka<Arc<str>, LocalEntry>>,
    epoch: AtomicU64,
    /// Set when invalidations cannot be received: nothing is served.
    is_disabled: std::sync::atomic::AtomicBool,
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
    /// A tier holding at most `max_bytes` of values (0 disables it).
    pub fn new(max_bytes: u64) -> Self {
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
            epoch: AtomicU64::new(0),
            is_disabled: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether the tier is on.
    pub fn is_enabled(&self) -> bool {
        self.cache.is_some() && !self.is_disabled.load(Ordering::Acquire)
    }

    /// Turns the tier off for good (it could not hear invalidations).
    pub fn disable(&self) {
        self.is_disabled.store(true, Ordering::Release);
        self.invalidate_all();
    }

    /// The invalidation epoch; pass it back to [`LocalTier::insert`].
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// A fresh value for `key`, if held.
    pub async fn get(&self, key: &str) -> Option<SharedValue> {
        if !self.is_enabled() {
            return None;
        }
        let entry = self.cache.as_ref()?.get(key).await?;
        (entry.expires_at_ms > now_ms()).then_some(entry.value)
    }

    /// Holds `entry` unless an invalidation happened since `epoch` was read
    /// (the value may be one that invalidation removed).
    pub async fn insert(&self, key: Arc<str>, entry: LocalEntry, epoch: u64) {
        let Some(cache) = &self.cache else {
            return;
        };
        if !self.is_enabled() || entry.expires_at_ms <= now_ms() || self.epoch() != epoch {
            return;
        }
        cache.insert(key, entry).await;
        // Re-check: an invalidation that ran between the epoch check and the
        // insert must not be undone by it.
        if self.epoch() != epoch {
            self.invalidate_all();
        }
    }

    /// Drops every entry carrying one of `tags`.
    pub fn invalidate_tags(&self, tags: &[String]) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let Some(cache) = &self.cache else {
            return;
        };
        let tags: Vec<Arc<str>> = tags.iter().map(|t| Arc::from(t.as_str())).collect();
        if cache
            .invalidate_entries_if(move |_key, entry| tags.contains(&entry.tag))
            .is_err()
        {
            cache.invalidate_all();
        }
    }

    /// Drops everything.
    pub fn invalidate_all(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Some(cache) = &self.cache {
            cache.invalidate_all();
        }
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
        }
    }

    #[tokio::test]
    async fn an_invalidation_during_a_fill_keeps_the_fill_out() {
        let tier = LocalTier::new(1 << 20);
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
    async fn the_byte_bound_holds() {
        let tier = LocalTier::new(100_000);
        for i in 0..1_000 {
            let epoch = tier.epoch();
            tier.insert(Arc::from(format!("key-{i}")), entry("t", 1_000), epoch)
                .await;
        }
        let size = tier.weighted_size().await;
        assert!(size <= 100_000, "{size} bytes held");
    }
}
