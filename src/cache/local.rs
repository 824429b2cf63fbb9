//! The in-process tiers: decoded values (moka) in front of Redis, and whole
//! kept responses ([`super::response`]). A hit here touches neither Redis
//! nor the network.
//!
//! Values are bounded by bytes (`CACHE_LOCAL_MAX_BYTES`), weighed by what
//! they hold: the stored payload size, the key, the dependency
//! registrations and moka's own per-entry bookkeeping. An entry lives until
//! the logical expiry of the Redis entry it came from, never longer.
//! Invalidation arrives from this instance's writes and, through Redis
//! pub/sub, from every other instance; a Redis reconnect drops everything
//! (messages may have been missed).
//!
//! An invalidation of a tag drops exactly the entries that depend on it,
//! found through [`Dependents`] (O(dependents), no scan), and is recorded
//! in [`Invalidations`], so a fill that started before it is never inserted
//! after it (see `deps` for why the order of the checks makes this hold).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache as Moka;
use moka::notification::RemovalCause;

use super::deps::{Dependents, Epoch, Invalidations, REGISTRATION_BYTES, Tag};
use super::envelope::now_ms;
use super::query::SharedValue;
use super::ranged::{self, Change, Span};
use super::response::{ResponseKey, ResponseStore, StoredResponse};

/// What moka spends per entry besides the key's and value's own heap (its
/// node, the deques and timer wheel slot, the key and value handles, its
/// share of the frequency sketch): 280 bytes requested per entry, counted
/// with a counting allocator (allocation-counter, this thread's
/// allocations only) over 10,000 and 50,000 inserts into a cache built as
/// this tier is (weigher, per-entry expiry, eviction listener), plus an
/// eighth for the allocator's size classes.
pub const ENTRY_OVERHEAD_BYTES: u32 = 320;

/// One value held in memory.
#[derive(Clone)]
pub struct LocalEntry {
    /// The decoded value.
    pub value: SharedValue,
    /// Its invalidation tags.
    pub tags: Arc<[Tag]>,
    /// What it covers of its ranged tags (`cache::ranged`; a ranged tag
    /// missing here is covered whole).
    pub spans: Arc<[(String, Vec<Span>)]>,
    /// Logical expiry, unix ms.
    pub expires_at_ms: u64,
    /// Length of the JSON it was decoded from (its weight is about this
    /// plus the bookkeeping).
    pub weight: u32,
}

/// An entry as the tier holds it.
#[derive(Clone)]
struct Held {
    entry: LocalEntry,
    /// Tells this entry apart from a later one under the same key.
    id: u64,
    /// When its fill started, for the "everything" invalidation check.
    start: Epoch,
}

/// The in-process tiers; values are off when their byte budget is zero. It
/// also holds whole responses ([`super::response`]), guarded by the same
/// invalidation log.
pub struct LocalTier {
    values: Option<Moka<Arc<str>, Held>>,
    dependents: Arc<Dependents<Arc<str>>>,
    responses: ResponseStore,
    log: Arc<Invalidations>,
    next_id: AtomicU64,
}

struct UntilLogicalExpiry;

impl Expiry<Arc<str>, Held> for UntilLogicalExpiry {
    fn expire_after_create(
        &self,
        _key: &Arc<str>,
        held: &Held,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(Duration::from_millis(
            held.entry.expires_at_ms.saturating_sub(now_ms()),
        ))
    }
}

/// Bytes of decoded value per byte of an entry's `weight`, in quarters:
/// the weight is the length of the value's JSON (after decompression for an
/// entry from Redis), and a decoded anime takes about as much heap as its
/// JSON (its text fields, less the JSON's names and quotes, plus the
/// struct and its `Arc`); a quarter more covers the allocator's rounding.
/// (Weighed by the compressed bytes from Redis instead, an 8 MiB tier held
/// 22 MiB of heap under `scripts/soak`: 15.6 MiB of decoded values.)
const DECODED_QUARTERS_PER_JSON_BYTE: u32 = 5;

/// What an entry of `key` weighs: its decoded value (see
/// [`DECODED_QUARTERS_PER_JSON_BYTE`]), its key (an `Arc<str>`), its
/// registrations and moka's per-entry cost.
fn weight(key: &str, held: &Held) -> u32 {
    let registrations = u32::try_from(held.entry.tags.len())
        .unwrap_or(u32::MAX)
        .saturating_mul(REGISTRATION_BYTES);
    (held
        .entry
        .weight
        .saturating_mul(DECODED_QUARTERS_PER_JSON_BYTE)
        / 4)
    .saturating_add(u32::try_from(key.len() + 16).unwrap_or(u32::MAX))
    .saturating_add(registrations)
    .saturating_add(ENTRY_OVERHEAD_BYTES)
}

impl LocalTier {
    /// A tier holding at most `max_bytes` of values and `response_bytes` of
    /// responses (0 disables either).
    pub fn new(max_bytes: u64, response_bytes: u64) -> Self {
        let log = Arc::new(Invalidations::default());
        let dependents: Arc<Dependents<Arc<str>>> = Arc::default();
        let values = (max_bytes > 0).then(|| {
            let registered = Arc::clone(&dependents);
            Moka::builder()
                .max_capacity(max_bytes)
                .weigher(|key: &Arc<str>, held: &Held| weight(key, held))
                .expire_after(UntilLogicalExpiry)
                .eviction_listener(move |key: Arc<Arc<str>>, held: Held, cause| {
                    // A replaced entry's successor registered itself under
                    // the same key; its id differs, so this removal keeps
                    // it. Explicit removals were already unregistered.
                    if cause != RemovalCause::Replaced {
                        registered.remove(&held.entry.tags, &key, held.id);
                    }
                })
                .build()
        });
        Self {
            values,
            dependents,
            responses: ResponseStore::new(response_bytes, Arc::clone(&log)),
            log,
            next_id: AtomicU64::new(0),
        }
    }

    /// Whether the value tier is on.
    pub fn is_enabled(&self) -> bool {
        self.values.is_some()
    }

    /// The point a fill starting now records; pass it back to
    /// [`LocalTier::insert`].
    pub fn begin(&self) -> Epoch {
        self.log.begin()
    }

    /// A fresh value for `key`, if held, with its logical expiry (unix ms).
    pub async fn get(&self, key: &str) -> Option<(SharedValue, u64)> {
        let held = self.values.as_ref()?.get(key).await?;
        if held.entry.expires_at_ms <= now_ms() || !self.log.is_after_clear(held.start) {
            return None;
        }
        Some((held.entry.value, held.entry.expires_at_ms))
    }

    /// Holds `entry` under `key` unless one of its tags was invalidated
    /// since `start` (the value may be one that invalidation removed).
    pub async fn insert(&self, key: Arc<str>, entry: LocalEntry, start: Epoch) {
        let Some(values) = &self.values else {
            return;
        };
        if entry.expires_at_ms <= now_ms() || !self.log.is_current(&entry.tags, start) {
            return;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let tags = Arc::clone(&entry.tags);
        self.dependents.add(&tags, &key, id);
        values
            .insert(Arc::clone(&key), Held { entry, id, start })
            .await;
        // An invalidation may have run between the check above and the
        // insert, finding nothing to drop yet: check again (`deps`).
        if !self.log.is_current(&tags, start) {
            values.invalidate(&key).await;
            self.dependents.remove(&tags, &key, id);
        }
    }

    /// Whether whole responses are kept.
    pub fn responses_enabled(&self) -> bool {
        self.responses.is_enabled()
    }

    /// A current response for `key`, if held.
    pub async fn get_response(&self, key: &ResponseKey) -> Option<Arc<StoredResponse>> {
        self.responses.get(key).await
    }

    /// Holds `response` unless one of its tags was invalidated since the
    /// epoch its execution started in. Returns whether it was kept.
    pub async fn insert_response(&self, key: ResponseKey, response: Arc<StoredResponse>) -> bool {
        self.responses.insert(key, response).await
    }

    /// Drops every value and response depending on one of `tags`.
    pub async fn invalidate_tags(&self, tags: &[Tag]) {
        self.invalidate(tags, &[]).await;
    }

    /// Drops every value and response depending on one of `tags`, and the
    /// values depending on a ranged tag of `changes` that one of its
    /// changes touches (`cache::ranged`); kept responses depending on such
    /// a tag are dropped whole.
    pub async fn invalidate(&self, tags: &[Tag], changes: &[(Tag, Change)]) {
        let mut recorded: Vec<Tag> = tags.to_vec();
        recorded.extend(changes.iter().map(|(tag, _)| Tag::clone(tag)));
        // Fills in flight that depend on a changed tag are kept out
        // whatever they cover: the log records tags, not values.
        self.log.invalidate(&recorded);
        if let Some(values) = &self.values {
            for tag in tags {
                for key in self.dependents.take(tag) {
                    values.invalidate(&key).await;
                }
            }
            let mut changed: Vec<&Tag> = changes.iter().map(|(tag, _)| tag).collect();
            changed.sort_unstable();
            changed.dedup();
            for tag in changed {
                let of_tag: Vec<Change> = changes
                    .iter()
                    .filter(|(changed, _)| changed == tag)
                    .map(|(_, change)| *change)
                    .collect();
                for key in self.dependents.keys(tag) {
                    let Some(held) = values.get(&key).await else {
                        continue;
                    };
                    let spans = held
                        .entry
                        .spans
                        .iter()
                        .find(|(name, _)| name.as_str() == &**tag)
                        .map(|(_, spans)| spans.as_slice())
                        .unwrap_or_default();
                    if !ranged::survives(spans, &of_tag) {
                        values.invalidate(&key).await;
                    }
                }
            }
        }
        self.responses.invalidate_tags(&recorded).await;
    }

    /// Drops everything.
    pub fn invalidate_all(&self) {
        self.log.invalidate_all();
        self.dependents.clear();
        self.responses.invalidate_all();
        if let Some(values) = &self.values {
            values.invalidate_all();
        }
    }

    /// Responses held and their bytes (after pending maintenance).
    pub async fn response_usage(&self) -> (u64, u64) {
        self.responses.weighted_size().await
    }

    /// Bytes currently held (after pending maintenance).
    pub async fn weighted_size(&self) -> u64 {
        match &self.values {
            Some(values) => {
                values.run_pending_tasks().await;
                values.weighted_size()
            }
            None => 0,
        }
    }

    /// Dependency registrations held by values and responses (bounded by
    /// what the tiers hold).
    pub fn registrations(&self) -> usize {
        self.dependents.len() + self.responses.registrations()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tags: &[&str], weight: u32) -> LocalEntry {
        LocalEntry {
            value: Arc::new(1u64),
            tags: tags.iter().map(|tag| Tag::from(*tag)).collect(),
            spans: Arc::from(Vec::new()),
            expires_at_ms: now_ms() + 60_000,
            weight,
        }
    }

    fn tag(name: &str) -> Vec<Tag> {
        vec![Tag::from(name)]
    }

    #[tokio::test]
    async fn an_invalidation_during_a_fill_keeps_the_fill_out() {
        let tier = LocalTier::new(1 << 20, 0);
        let start = tier.begin();
        tier.invalidate_tags(&tag("popular")).await;
        tier.insert(Arc::from("k"), entry(&["popular"], 10), start)
            .await;
        assert!(tier.get("k").await.is_none());

        let start = tier.begin();
        tier.insert(Arc::from("k"), entry(&["popular", "anime:1"], 10), start)
            .await;
        assert!(tier.get("k").await.is_some());
        tier.invalidate_tags(&tag("anime:2")).await;
        assert!(tier.get("k").await.is_some(), "another tag leaves it");
        tier.invalidate_tags(&tag("anime:1")).await;
        assert!(tier.get("k").await.is_none(), "any of its tags drops it");
        assert_eq!(tier.registrations(), 0, "its registrations went with it");
    }

    #[tokio::test]
    async fn invalidation_drops_only_the_dependents() {
        let tier = LocalTier::new(1 << 20, 0);
        for i in 0..100 {
            let start = tier.begin();
            let own = format!("anime:{i}");
            tier.insert(
                Arc::from(format!("k{i}")),
                entry(&[own.as_str(), "list"], 10),
                start,
            )
            .await;
        }
        tier.invalidate_tags(&tag("anime:7")).await;
        assert!(tier.get("k7").await.is_none());
        assert!(tier.get("k8").await.is_some());
        tier.invalidate_tags(&tag("list")).await;
        assert!(tier.get("k8").await.is_none());
    }

    #[tokio::test]
    async fn everything_goes_with_invalidate_all() {
        let tier = LocalTier::new(1 << 20, 0);
        let before = tier.begin();
        tier.insert(Arc::from("k"), entry(&["a"], 10), before).await;
        tier.invalidate_all();
        assert!(tier.get("k").await.is_none());
        tier.insert(Arc::from("k2"), entry(&["b"], 10), before)
            .await;
        assert!(
            tier.get("k2").await.is_none(),
            "a fill from before is refused"
        );
    }

    #[tokio::test]
    async fn a_small_budget_still_keeps_entries() {
        let tier = LocalTier::new(150_000, 0);
        let start = tier.begin();
        tier.insert(
            Arc::from("anigo:v4:anime:id=3"),
            entry(&["anime:3"], 1_300),
            start,
        )
        .await;
        assert!(tier.get("anigo:v4:anime:id=3").await.is_some());
    }

    #[tokio::test]
    async fn the_byte_bound_holds_and_evictions_unregister() {
        let tier = LocalTier::new(100_000, 0);
        for i in 0..1_000 {
            let start = tier.begin();
            tier.insert(Arc::from(format!("key-{i}")), entry(&["t"], 1_000), start)
                .await;
        }
        let size = tier.weighted_size().await;
        assert!(size <= 100_000, "{size} bytes held");
        assert!(
            size >= 50_000,
            "only {size} bytes held: entries were not kept"
        );
        let held = tier.values.as_ref().map_or(0, |v| v.entry_count());
        assert!(
            tier.registrations() as u64 <= held + 8,
            "{} registrations for {held} entries",
            tier.registrations()
        );
    }
}
