//! Dependency bookkeeping of the in-process tiers (values and kept
//! responses): which held entries depend on which invalidation tag, and
//! which tags were invalidated recently.
//!
//! - [`Dependents`] maps a tag to the entries that depend on it, so an
//!   invalidation drops exactly those, in O(number of dependents), without
//!   scanning the tier. Registrations are removed when their entry leaves
//!   the tier (evicted, expired, dropped), so the map never holds more than
//!   the tier does.
//! - [`Invalidations`] remembers, for a short while, when each tag was last
//!   invalidated (as an epoch of a counter), so that a fill that started
//!   before an invalidation of one of its tags is never inserted after it,
//!   however the insert and the invalidation interleave. Records older than
//!   [`RETENTION`] are dropped (no fill runs that long: a fill that started
//!   before the oldest record still held is refused outright), and at most
//!   [`MAX_RECORDS`] are kept, so the log is bounded by time and by size.
//!
//! An insert checks the log, registers its dependencies, inserts, and
//! checks the log again; an invalidation records its tags in the log first
//! and then drops the registered dependents. Whichever comes first, an
//! entry filled before the invalidation does not survive it.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// An invalidation tag, shared between the entries that depend on it.
pub type Tag = std::sync::Arc<str>;

/// How long an invalidation is remembered. Far longer than any fill can
/// take (a load is bounded by the database's acquire and statement
/// timeouts, a lease wait by one second), so a fill in flight always finds
/// the invalidations that happened since it started.
pub const RETENTION: Duration = Duration::from_secs(60);

/// Most invalidation records kept (about 80 bytes each). Beyond it the
/// oldest are dropped early, and fills that started before them refused:
/// a burst of writes costs some fills, never correctness or memory.
pub const MAX_RECORDS: usize = 200_000;

/// Shards of the dependents map: writers to different tags rarely contend.
const SHARDS: usize = 16;

/// What one registration costs: the map slot, the key handle and the
/// entry id, and, for a tag with a single dependent (an anime's own), the
/// tag's map itself: 152 bytes requested per registration, counted with a
/// counting allocator over 12,000 entries of one tag each; rounded up.
pub const REGISTRATION_BYTES: u32 = 160;

/// The point a fill started at: checked against the invalidations since.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Epoch(u64);

/// One shard of [`Dependents`]: per tag, the entries (key → entry id)
/// depending on it.
type Shard<K> = HashMap<Tag, HashMap<K, u64>>;

/// Which entries depend on which tag. `K` identifies an entry of one tier;
/// the id tells two entries under one key apart, so the removal of an old
/// one never unregisters its replacement.
pub struct Dependents<K> {
    shards: Box<[Mutex<Shard<K>>]>,
    hasher: foldhash::fast::RandomState,
}

impl<K: Hash + Eq + Clone> Default for Dependents<K> {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }
}

impl<K: Hash + Eq + Clone> Dependents<K> {
    fn shard(&self, tag: &str) -> std::sync::MutexGuard<'_, Shard<K>> {
        let index = (self.hasher.hash_one(tag) as usize) % self.shards.len();
        // A std mutex: held only for map operations, never across an await.
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers entry `id` under `key` as depending on each of `tags`.
    pub fn add(&self, tags: &[Tag], key: &K, id: u64) {
        for tag in tags {
            self.shard(tag)
                .entry(Tag::clone(tag))
                .or_default()
                .insert(key.clone(), id);
        }
    }

    /// Unregisters entry `id` under `key` (a newer entry under the same key
    /// keeps its registrations).
    pub fn remove(&self, tags: &[Tag], key: &K, id: u64) {
        for tag in tags {
            let mut shard = self.shard(tag);
            if let Some(keys) = shard.get_mut(tag) {
                if keys.get(key) == Some(&id) {
                    keys.remove(key);
                }
                if keys.is_empty() {
                    shard.remove(tag);
                }
            }
        }
    }

    /// The entries registered under `tag`, left registered.
    pub fn keys(&self, tag: &str) -> Vec<K> {
        self.shard(tag)
            .get(tag)
            .map(|keys| keys.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Takes every entry registered under `tag`.
    pub fn take(&self, tag: &str) -> Vec<K> {
        self.shard(tag)
            .remove(tag)
            .map(|keys| keys.into_keys().collect())
            .unwrap_or_default()
    }

    /// Forgets everything.
    pub fn clear(&self) {
        for shard in self.shards.iter() {
            shard.lock().unwrap_or_else(PoisonError::into_inner).clear();
        }
    }

    /// Registrations held (for reports and tests).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                shard
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .values()
                    .map(HashMap::len)
                    .sum::<usize>()
            })
            .sum()
    }

    /// Whether nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Recent invalidations, by tag, as epochs of one counter.
pub struct Invalidations {
    /// Incremented by every invalidation.
    epoch: AtomicU64,
    /// Epoch of the last "everything" invalidation: nothing from before
    /// it is served or inserted.
    all: AtomicU64,
    /// Epoch of the newest record dropped from the log (by age or count):
    /// a fill that started before it can no longer be checked, so it is
    /// not inserted. Entries already held are not concerned (the
    /// dependency index drops them when their tags are invalidated).
    floor: AtomicU64,
    /// A std mutex: held for map operations only, never across an await.
    log: Mutex<Log>,
}

#[derive(Default)]
struct Log {
    by_tag: HashMap<Tag, u64>,
    /// (when, tag, epoch) in the order recorded, to drop the oldest.
    order: VecDeque<(Instant, Tag, u64)>,
}

impl Default for Invalidations {
    fn default() -> Self {
        Self {
            epoch: AtomicU64::new(0),
            all: AtomicU64::new(0),
            floor: AtomicU64::new(0),
            log: Mutex::new(Log::default()),
        }
    }
}

impl Invalidations {
    /// The epoch a fill starting now records.
    pub fn begin(&self) -> Epoch {
        Epoch(self.epoch.load(Ordering::Acquire))
    }

    /// Whether no invalidation of `tags` (nor of everything) happened since
    /// `start`.
    pub fn is_current(&self, tags: &[Tag], start: Epoch) -> bool {
        if !self.is_after_clear(start) || start.0 < self.floor.load(Ordering::Acquire) {
            return false;
        }
        let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        tags.iter()
            .all(|tag| log.by_tag.get(tag).is_none_or(|&at| at <= start.0))
    }

    /// Whether nothing at all was invalidated since `start`.
    pub fn is_unchanged_since(&self, start: Epoch) -> bool {
        self.epoch.load(Ordering::Acquire) == start.0
    }

    /// Whether an entry filled from `start` is still allowed by the last
    /// "everything" invalidation (one atomic load: the read path's check).
    pub fn is_after_clear(&self, start: Epoch) -> bool {
        start.0 >= self.all.load(Ordering::Acquire)
    }

    /// Records an invalidation of `tags`; fills that started before it and
    /// depend on one of them are refused from now on.
    pub fn invalidate(&self, tags: &[Tag]) {
        let now = Instant::now();
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        // Under the lock, so records enter `order` in epoch order.
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        for tag in tags {
            log.by_tag.insert(Tag::clone(tag), epoch);
            log.order.push_back((now, Tag::clone(tag), epoch));
        }
        while let Some((at, _, _)) = log.order.front() {
            let is_old = now.duration_since(*at) > RETENTION;
            if !is_old && log.order.len() <= MAX_RECORDS {
                break;
            }
            let Some((_, tag, dropped)) = log.order.pop_front() else {
                break;
            };
            if log.by_tag.get(&tag) == Some(&dropped) {
                log.by_tag.remove(&tag);
            }
            // Nothing from before the dropped record can be checked any
            // more: refuse it.
            self.floor.fetch_max(dropped, Ordering::AcqRel);
        }
    }

    /// Records an invalidation of everything.
    pub fn invalidate_all(&self) {
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        self.all.fetch_max(epoch, Ordering::AcqRel);
        log.by_tag.clear();
        log.order.clear();
    }

    /// Records held (for tests).
    pub fn records(&self) -> usize {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .order
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(names: &[&str]) -> Vec<Tag> {
        names.iter().map(|name| Tag::from(*name)).collect()
    }

    #[test]
    fn a_fill_from_before_an_invalidation_of_one_of_its_tags_is_refused() {
        let log = Invalidations::default();
        let start = log.begin();
        log.invalidate(&tags(&["anime:1"]));
        assert!(!log.is_current(&tags(&["anime:2", "anime:1"]), start));
        assert!(
            log.is_current(&tags(&["anime:2"]), start),
            "other tags stay"
        );
        let later = log.begin();
        assert!(log.is_current(&tags(&["anime:1"]), later));
        log.invalidate_all();
        assert!(!log.is_current(&tags(&["anime:2"]), later));
        assert!(!log.is_after_clear(later));
        assert_eq!(log.records(), 0);
    }

    #[test]
    fn the_log_is_bounded_and_refuses_what_it_can_no_longer_check() {
        let log = Invalidations::default();
        let start = log.begin();
        for i in 0..MAX_RECORDS + 10 {
            log.invalidate(&[Tag::from(format!("anime:{i}"))]);
        }
        assert!(log.records() <= MAX_RECORDS);
        assert!(
            !log.is_current(&tags(&["unrelated"]), start),
            "records it dropped may have concerned this fill"
        );
        assert!(log.is_current(&tags(&["unrelated"]), log.begin()));
        assert!(
            log.is_after_clear(start),
            "entries held from before stay: only fills in flight are refused"
        );
    }

    #[test]
    fn dependents_are_taken_once_and_replacements_keep_theirs() {
        let deps: Dependents<u32> = Dependents::default();
        deps.add(&tags(&["a", "b"]), &1, 10);
        deps.add(&tags(&["b"]), &2, 11);
        assert_eq!(deps.len(), 3);
        let mut taken = deps.take("b");
        taken.sort_unstable();
        assert_eq!(taken, vec![1, 2]);
        assert!(deps.take("b").is_empty());
        // Key 1 replaced by entry 12: removing entry 10 leaves 12 alone.
        deps.add(&tags(&["a"]), &1, 12);
        deps.remove(&tags(&["a"]), &1, 10);
        assert_eq!(deps.take("a"), vec![1]);
        assert!(deps.is_empty());
    }
}
