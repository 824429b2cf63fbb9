//! Admission: which loaded values are worth storing, for resolvers whose
//! keys come from free client input (search texts).
//!
//! Every other resolver stores every miss: its keys are bounded by the
//! catalogue (ids, pages, slugs). A search key is whatever text a client
//! sends, so a client sending millions of distinct texts would fill Redis
//! and the in-process tier with entries nobody reads again, evicting the
//! ones that are read. A resolver declaring [`Admission::Bounded`]
//! (`CachedQuery::ADMISSION`) is therefore stored only when
//!
//! 1. **its key was seen before**: the [`Doorkeeper`], a small in-process
//!    set of recently missed keys (hashes), admits a miss only the second
//!    time its key misses within a window. The first sighting is served
//!    from the database and forgotten (status `MISS`, tier `database`,
//!    counted as `not_admitted`, and never kept as a whole response
//!    either). A popular search is seen again soon, stored, and then hit;
//!    a flood of one-off texts only churns the doorkeeper's memory, which
//!    is bounded; and
//! 2. **the resolver's budget is not spent**: at most
//!    `CACHE_SEARCH_MAX_ENTRIES` entries of the resolver are written per
//!    window across all instances, counted with one `INCRBY` on a counter
//!    key per window (`{namespace}:{version}:admitted:{prefix}:{window}`),
//!    in the background write-back, off the request path. The window is an
//!    entry's lifetime in Redis (its TTL plus the stale window), so at most
//!    twice the budget of entries of the resolver exist in Redis at any
//!    time. Beyond the budget, values are served but not stored (counted as
//!    `not_admitted`); a budget of 0 stores none. The early and
//!    stale-while-revalidate refreshes of a stored entry replace it and are
//!    not counted. Such a refused miss may still be part of a whole
//!    response kept by this instance (`cache::response`, bounded by
//!    `CACHE_RESPONSE_MAX_BYTES`): the refusal is only known after the
//!    answer.
//!
//! A client that repeats each text twice passes the doorkeeper; the budget
//! is what bounds that one.

use std::collections::HashSet;
use std::hash::BuildHasher as _;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// What a resolver's misses must pass to be stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Admission {
    /// Every miss is stored (keys bounded by the catalogue).
    #[default]
    Always,
    /// Keys from free client input: a miss is stored only the second time
    /// its key misses within the doorkeeper's window, and only while the
    /// resolver's per-window budget lasts (module doc).
    Bounded,
}

/// Remembers recently missed keys, as 64-bit hashes (randomly seeded, so
/// clients cannot aim collisions), in two generations: the current one and
/// the one before. A key is admitted when either holds it. The current
/// generation becomes the previous one when it is full or older than the
/// window, so memory stays below two generations of `capacity` hashes
/// whatever clients send.
pub struct Doorkeeper {
    capacity: usize,
    window: Duration,
    hasher: foldhash::fast::RandomState,
    state: Mutex<Generations>,
}

struct Generations {
    current: HashSet<u64>,
    previous: HashSet<u64>,
    started: Instant,
}

impl Doorkeeper {
    /// A doorkeeper remembering up to `capacity` keys per generation, a
    /// generation lasting at most `window`.
    pub fn new(capacity: usize, window: Duration) -> Self {
        Self {
            capacity: capacity.max(1),
            window,
            hasher: foldhash::fast::RandomState::default(),
            state: Mutex::new(Generations {
                current: HashSet::new(),
                previous: HashSet::new(),
                started: Instant::now(),
            }),
        }
    }

    /// Records a miss of `key`; whether it was seen before (then it is to
    /// be stored).
    pub fn admit(&self, key: &str) -> bool {
        let hash = self.hasher.hash_one(key);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.current.len() >= self.capacity || state.started.elapsed() >= self.window {
            state.previous = std::mem::take(&mut state.current);
            state.started = Instant::now();
        }
        let was_seen = state.previous.contains(&hash);
        // `insert` is false when the current generation held it already.
        !state.current.insert(hash) || was_seen
    }
}

/// The number of the budget window `now_ms` falls in.
pub fn window_index(now_ms: u64, window: Duration) -> u64 {
    let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
    now_ms / window_ms
}

/// How many of `wanted` new entries fit a budget of `max`, given the
/// counter's value after adding them (`counted`).
pub fn within_budget(max: u64, counted: u64, wanted: u64) -> u64 {
    let before = counted.saturating_sub(wanted);
    max.saturating_sub(before).min(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_admitted_the_second_time_it_is_seen() {
        let door = Doorkeeper::new(100, Duration::from_secs(60));
        assert!(!door.admit("anime_search:q=sora"));
        assert!(door.admit("anime_search:q=sora"));
        assert!(door.admit("anime_search:q=sora"));
        assert!(!door.admit("anime_search:q=kage"));
    }

    #[test]
    fn memory_is_bounded_and_old_sightings_are_forgotten() {
        let door = Doorkeeper::new(3, Duration::from_secs(60));
        assert!(!door.admit("a"));
        // "a" survives one rotation (in the previous generation)…
        for key in ["b", "c", "d"] {
            assert!(!door.admit(key));
        }
        assert!(door.admit("a"));
        // …but not a flood of distinct keys.
        for i in 0..10 {
            assert!(!door.admit(&format!("flood{i}")));
        }
        let state = door.state.lock().expect("lock");
        assert!(state.current.len() <= 3 && state.previous.len() <= 3);
        drop(state);
        assert!(!door.admit("b"));
    }

    #[test]
    fn a_generation_ends_with_its_window() {
        let door = Doorkeeper::new(100, Duration::ZERO);
        assert!(!door.admit("a"));
        // Rotated once: still in the previous generation.
        assert!(door.admit("a"));
        // Rotated again: "a" moved to previous at the last call's insert.
        assert!(door.admit("a"));
        assert!(!door.admit("b"));
    }

    #[test]
    fn the_budget_admits_what_fits() {
        assert_eq!(within_budget(10, 3, 3), 3);
        assert_eq!(within_budget(10, 12, 3), 1);
        assert_eq!(within_budget(10, 15, 3), 0);
        assert_eq!(within_budget(0, 1, 1), 0);
        assert_eq!(window_index(1_500, Duration::from_secs(1)), 1);
        assert_eq!(window_index(1_500, Duration::ZERO), 1_500);
    }
}
