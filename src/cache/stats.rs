//! Cache counters per resolver: hits, misses, errors, bypasses, refreshes
//! and database loads. Lock-free (relaxed atomics: each counter is independent
//! and read only for reporting). The admin stats query and `/metrics` read
//! the same [`CacheStats::snapshot`].

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::policy::Resolver;
use super::query::QueryKey;

/// Live counters.
#[derive(Debug, Default)]
pub struct CacheStats {
    per_resolver: [Counters; Resolver::ALL.len()],
    responses: ResponseCounters,
}

#[derive(Debug, Default)]
struct ResponseCounters {
    hits: AtomicU64,
    misses: AtomicU64,
    stored: AtomicU64,
    bypasses: AtomicU64,
}

/// What happened to one whole-response lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseEvent {
    /// Answered from a kept response.
    Hit,
    /// No current response kept: executed.
    Miss,
    /// A response was kept after execution.
    Stored,
    /// Not looked up: Redis or the invalidation subscription untrusted.
    Bypass,
}

/// A point-in-time copy of the response counters.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct ResponseStats {
    /// Requests answered from a kept response.
    pub hits: u64,
    /// Lookups that found nothing current.
    pub misses: u64,
    /// Responses kept after execution.
    pub stored: u64,
    /// Lookups skipped because the cache was not trusted.
    pub bypasses: u64,
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
    bypasses: AtomicU64,
    refreshes: AtomicU64,
    loads: AtomicU64,
    partials: AtomicU64,
    dropped_writes: AtomicU64,
    not_admitted: AtomicU64,
}

/// What happened to one lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Served from the cache.
    Hit,
    /// Not in the cache (or undecodable): loaded from the database.
    Miss,
    /// A Redis command failed or timed out.
    Error,
    /// The cache was skipped: Redis unavailable or caching disabled.
    Bypass,
    /// The client asked for a fresh value (`Cache-Control: no-cache`): the
    /// cache was not consulted.
    Refresh,
    /// A database load ran (after a miss, bypass or refresh).
    Load,
    /// A list's ids came from the cache but some of the entities they name
    /// did not: only those were loaded (a partial hit; the list's own
    /// lookup is also counted as a hit).
    Partial,
    /// A write-back was dropped because too many were pending.
    DroppedWrite,
    /// A loaded value was not stored: the resolver's admission refused it
    /// (first sighting of a search, or its budget spent; see
    /// `cache::admission`).
    NotAdmitted,
}

/// A point-in-time copy of one resolver's counters.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct ResolverStats {
    /// Lookups served from the cache.
    pub hits: u64,
    /// Lookups not found in the cache.
    pub misses: u64,
    /// Redis failures (each also counted as a bypass or miss).
    pub errors: u64,
    /// Lookups that skipped the cache.
    pub bypasses: u64,
    /// Reads refreshed at the client's request (`no-cache`).
    pub refreshes: u64,
    /// Database loads.
    pub loads: u64,
    /// Lists served from cached ids with some entities loaded (also
    /// counted in `hits`).
    pub partials: u64,
    /// Write-backs dropped under pressure.
    pub dropped_writes: u64,
    /// Loaded values not stored because admission refused them (searches:
    /// first sighting, or the per-window budget spent).
    pub not_admitted: u64,
}

impl ResolverStats {
    /// hits / (hits + misses), or 0 before any lookup.
    pub fn hit_rate(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

impl CacheStats {
    /// Counts one event of `key` and logs it at debug ("Cache HIT:
    /// popularAnime", with the resolver and key as fields).
    pub fn note(&self, key: &QueryKey, event: Event, message: &'static str) {
        self.record(key.resolver(), event);
        let name = key.resolver().name();
        tracing::debug!(resolver = name, key = key.key(), "{message}: {name}");
    }

    /// Counts one event.
    pub fn record(&self, resolver: Resolver, event: Event) {
        let counters = &self.per_resolver[resolver.index()];
        let counter = match event {
            Event::Hit => &counters.hits,
            Event::Miss => &counters.misses,
            Event::Error => &counters.errors,
            Event::Bypass => &counters.bypasses,
            Event::Refresh => &counters.refreshes,
            Event::Load => &counters.loads,
            Event::Partial => &counters.partials,
            Event::DroppedWrite => &counters.dropped_writes,
            Event::NotAdmitted => &counters.not_admitted,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one whole-response event.
    pub fn record_response(&self, event: ResponseEvent) {
        let c = &self.responses;
        let counter = match event {
            ResponseEvent::Hit => &c.hits,
            ResponseEvent::Miss => &c.misses,
            ResponseEvent::Stored => &c.stored,
            ResponseEvent::Bypass => &c.bypasses,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The whole-response counters.
    pub fn response_snapshot(&self) -> ResponseStats {
        let c = &self.responses;
        ResponseStats {
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            stored: c.stored.load(Ordering::Relaxed),
            bypasses: c.bypasses.load(Ordering::Relaxed),
        }
    }

    /// The counters of `resolver`.
    pub fn snapshot(&self, resolver: Resolver) -> ResolverStats {
        let c = &self.per_resolver[resolver.index()];
        ResolverStats {
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            bypasses: c.bypasses.load(Ordering::Relaxed),
            refreshes: c.refreshes.load(Ordering::Relaxed),
            loads: c.loads.load(Ordering::Relaxed),
            partials: c.partials.load(Ordering::Relaxed),
            dropped_writes: c.dropped_writes.load(Ordering::Relaxed),
            not_admitted: c.not_admitted.load(Ordering::Relaxed),
        }
    }
}
