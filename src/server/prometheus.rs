//! `GET /metrics`: the Prometheus text. The counters the cache keeps
//! itself (hits, misses, partial hits, loads… per resolver; the response
//! fast path) and two gauges are copied into the registry of
//! `crate::metrics` at each scrape, then everything is rendered. Metric
//! names live in `crate::metrics`, which imports nothing of the cache or
//! the database; this module joins them.

use crate::cache::{Cache, Resolver};
use crate::db::Database;
use crate::metrics::{
    CACHE_BYPASSES_TOTAL, CACHE_DROPPED_WRITES_TOTAL, CACHE_ERRORS_TOTAL, CACHE_HITS_TOTAL,
    CACHE_LOADS_TOTAL, CACHE_MISSES_TOTAL, CACHE_NOT_ADMITTED_TOTAL, CACHE_PARTIALS_TOTAL,
    CACHE_REFRESHES_TOTAL, DB_BREAKER_OPEN, REDIS_CONNECTED, RESPONSE_CACHE_TOTAL, install,
};

/// The Prometheus text for `GET /metrics`: the counters of `cache`, the
/// state of its Redis connection and of the database breaker `db`.
pub(super) fn render(cache: &Cache, db: &Database) -> String {
    let Some(handle) = install() else {
        return String::new();
    };
    for resolver in Resolver::ALL {
        let stats = cache.stats().snapshot(resolver);
        let label = [("resolver", resolver.name())];
        metrics::counter!(CACHE_HITS_TOTAL, &label).absolute(stats.hits);
        metrics::counter!(CACHE_MISSES_TOTAL, &label).absolute(stats.misses);
        metrics::counter!(CACHE_ERRORS_TOTAL, &label).absolute(stats.errors);
        metrics::counter!(CACHE_BYPASSES_TOTAL, &label).absolute(stats.bypasses);
        metrics::counter!(CACHE_REFRESHES_TOTAL, &label).absolute(stats.refreshes);
        metrics::counter!(CACHE_LOADS_TOTAL, &label).absolute(stats.loads);
        metrics::counter!(CACHE_PARTIALS_TOTAL, &label).absolute(stats.partials);
        metrics::counter!(CACHE_DROPPED_WRITES_TOTAL, &label).absolute(stats.dropped_writes);
        metrics::counter!(CACHE_NOT_ADMITTED_TOTAL, &label).absolute(stats.not_admitted);
    }
    let responses = cache.stats().response_snapshot();
    for (outcome, count) in [
        ("hit", responses.hits),
        ("miss", responses.misses),
        ("stored", responses.stored),
        ("bypass", responses.bypasses),
    ] {
        metrics::counter!(RESPONSE_CACHE_TOTAL, "outcome" => outcome).absolute(count);
    }
    let is_up = cache.redis().is_available();
    metrics::gauge!(REDIS_CONNECTED).set(if is_up { 1.0 } else { 0.0 });
    let is_open = db.breaker_state().is_open();
    metrics::gauge!(DB_BREAKER_OPEN).set(if is_open { 1.0 } else { 0.0 });
    handle.run_upkeep();
    handle.render()
}
