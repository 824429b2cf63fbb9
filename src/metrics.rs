//! Prometheus metrics: names, the process-wide recorder, and the text
//! served at `GET /metrics`.
//!
//! Latencies are histograms recorded where they happen (HTTP handler,
//! database metric callback, Redis commands). Cache counters are not
//! double-counted on the hot path: each scrape copies the same
//! `CacheStats` snapshot the admin `cacheStats` query reads.
//!
//! The recorder is global (the `metrics` facade has one per process), so
//! several apps in one process (tests) share it.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// GraphQL requests by operation name and outcome (`ok` / `error`):
/// executed ones and those answered from a kept response.
pub const GRAPHQL_REQUESTS_TOTAL: &str = "anigo_graphql_requests_total";
/// GraphQL request latency by operation name.
pub const GRAPHQL_REQUEST_SECONDS: &str = "anigo_graphql_request_duration_seconds";
/// HTTP requests by route and status.
pub const HTTP_REQUESTS_TOTAL: &str = "anigo_http_requests_total";
/// HTTP latency by route.
pub const HTTP_REQUEST_SECONDS: &str = "anigo_http_request_duration_seconds";
/// Database statement latency.
pub const DB_QUERY_SECONDS: &str = "anigo_db_query_duration_seconds";
/// Database statements that failed.
pub const DB_QUERY_ERRORS_TOTAL: &str = "anigo_db_query_errors_total";
/// 1 while the database circuit breaker is open (calls fail at once), else 0.
pub const DB_BREAKER_OPEN: &str = "anigo_db_breaker_open";
/// Times the database circuit breaker opened.
pub const DB_BREAKER_OPENED_TOTAL: &str = "anigo_db_breaker_opened_total";
/// Database calls refused at once because the breaker was open.
pub const DB_FAST_FAILED_TOTAL: &str = "anigo_db_fast_failed_total";
/// Redis cache command latency by command.
pub const REDIS_COMMAND_SECONDS: &str = "anigo_redis_command_duration_seconds";
/// 1 while the Redis connection is up and usable, else 0.
pub const REDIS_CONNECTED: &str = "anigo_redis_connected";
/// Cache reads served from Redis, by resolver.
pub const CACHE_HITS_TOTAL: &str = "anigo_cache_hits_total";
/// Cache reads not found in Redis, by resolver.
pub const CACHE_MISSES_TOTAL: &str = "anigo_cache_misses_total";
/// Redis failures on cache reads and write-backs, by resolver.
pub const CACHE_ERRORS_TOTAL: &str = "anigo_cache_errors_total";
/// Reads that skipped the cache (Redis unavailable or caching off).
pub const CACHE_BYPASSES_TOTAL: &str = "anigo_cache_bypasses_total";
/// Reads refreshed at the client's request (`Cache-Control: no-cache`), by
/// resolver.
pub const CACHE_REFRESHES_TOTAL: &str = "anigo_cache_refreshes_total";
/// Database loads made by the cache layer, by resolver.
pub const CACHE_LOADS_TOTAL: &str = "anigo_cache_loads_total";
/// List reads whose ids came from the cache while some of the anime they
/// name did not (those alone loaded), by resolver; also counted as hits.
pub const CACHE_PARTIALS_TOTAL: &str = "anigo_cache_partials_total";
/// Write-backs dropped because too many were pending.
pub const CACHE_DROPPED_WRITES_TOTAL: &str = "anigo_cache_dropped_writes_total";
/// Loaded values not stored because the resolver's admission refused them
/// (`searchAnime`: a text's first sighting, or the per-window budget
/// `CACHE_SEARCH_MAX_ENTRIES` spent), by resolver.
pub const CACHE_NOT_ADMITTED_TOTAL: &str = "anigo_cache_not_admitted_total";
/// Counter: response fast path lookups and stores, by `outcome` (hit, miss,
/// stored, bypass).
pub const RESPONSE_CACHE_TOTAL: &str = "anigo_response_cache_total";

/// Histogram buckets in seconds: 100 µs (a cache hit) to 5 s (a timeout).
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Distinct operation names kept as label values; later ones are counted as
/// "other", so clients cannot grow the series count without bound.
const MAX_OPERATION_LABELS: usize = 100;

/// Installs the recorder once per process and returns its handle. `None`
/// when another recorder was installed first (metrics are then not served).
pub fn install() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(&BUCKETS)
                .and_then(PrometheusBuilder::install_recorder);
            match handle {
                Ok(handle) => {
                    describe();
                    // Histograms buffer samples until upkeep drains them; do
                    // it even when nobody scrapes.
                    let upkeep = handle.clone();
                    tokio::spawn(async move {
                        let mut tick = tokio::time::interval(Duration::from_secs(5));
                        loop {
                            tick.tick().await;
                            upkeep.run_upkeep();
                        }
                    });
                    Some(handle)
                }
                Err(err) => {
                    tracing::warn!(error = %err, "Metrics recorder not installed; /metrics will be empty");
                    None
                }
            }
        })
        .as_ref()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        GRAPHQL_REQUESTS_TOTAL,
        "GraphQL requests by operation name and outcome"
    );
    describe_histogram!(
        GRAPHQL_REQUEST_SECONDS,
        metrics::Unit::Seconds,
        "GraphQL request latency by operation name"
    );
    describe_counter!(HTTP_REQUESTS_TOTAL, "HTTP requests by route and status");
    describe_histogram!(
        HTTP_REQUEST_SECONDS,
        metrics::Unit::Seconds,
        "HTTP request latency by route"
    );
    describe_histogram!(
        DB_QUERY_SECONDS,
        metrics::Unit::Seconds,
        "Database statement latency"
    );
    describe_counter!(DB_QUERY_ERRORS_TOTAL, "Database statements that failed");
    describe_gauge!(
        DB_BREAKER_OPEN,
        "1 while the database circuit breaker is open (database calls fail at once), else 0"
    );
    describe_counter!(
        DB_BREAKER_OPENED_TOTAL,
        "Times the database circuit breaker opened"
    );
    describe_counter!(
        DB_FAST_FAILED_TOTAL,
        "Database calls refused at once because the circuit breaker was open"
    );
    describe_histogram!(
        REDIS_COMMAND_SECONDS,
        metrics::Unit::Seconds,
        "Redis cache command latency by command"
    );
    describe_gauge!(
        REDIS_CONNECTED,
        "1 while Redis is connected and usable, else 0"
    );
    describe_counter!(CACHE_HITS_TOTAL, "Cache reads served from Redis");
    describe_counter!(CACHE_MISSES_TOTAL, "Cache reads not found in Redis");
    describe_counter!(
        CACHE_ERRORS_TOTAL,
        "Redis failures on cache reads and write-backs"
    );
    describe_counter!(
        CACHE_BYPASSES_TOTAL,
        "Cache reads that skipped Redis (down, erroring, or caching off)"
    );
    describe_counter!(
        CACHE_REFRESHES_TOTAL,
        "Cache reads that skipped every tier at the client's request (Cache-Control: no-cache)"
    );
    describe_counter!(CACHE_LOADS_TOTAL, "Database loads made by the cache layer");
    describe_counter!(
        CACHE_PARTIALS_TOTAL,
        "List reads served from cached ids with some of their anime loaded (also counted as hits)"
    );
    describe_counter!(
        CACHE_DROPPED_WRITES_TOTAL,
        "Cache write-backs dropped under pressure"
    );
    describe_counter!(
        CACHE_NOT_ADMITTED_TOTAL,
        "Loaded values not stored because admission refused them (search texts seen once, or the search budget spent)"
    );
    describe_counter!(
        RESPONSE_CACHE_TOTAL,
        "Response fast path: requests answered from a kept response (hit), executed (miss), responses kept (stored), lookups skipped while the cache was untrusted (bypass)"
    );
}

/// Handles for one operation label: registered once, then used without a
/// registry lookup or an allocation per request.
pub struct OperationMetrics {
    ok: Counter,
    error: Counter,
    seconds: Histogram,
}

impl OperationMetrics {
    /// Counts one request and its latency.
    pub fn record(&self, is_ok: bool, elapsed: Duration) {
        if is_ok { &self.ok } else { &self.error }.increment(1);
        self.seconds.record(elapsed.as_secs_f64());
    }
}

/// The metric handles for operation `name`, labelled with the name itself
/// when it is a plain identifier and one of the first
/// [`MAX_OPERATION_LABELS`] seen, `anonymous` when absent, `other`
/// otherwise.
pub fn operation_handles(name: Option<&str>) -> Arc<OperationMetrics> {
    static SEEN: OnceLock<RwLock<HashMap<String, Arc<OperationMetrics>>>> = OnceLock::new();
    let seen = SEEN.get_or_init(Default::default);
    let label = label_of(name);
    if let Some(handles) = seen
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(label)
    {
        return Arc::clone(handles);
    }
    // A std lock: held for one map lookup or insert, never across an await.
    let mut seen = seen.write().unwrap_or_else(PoisonError::into_inner);
    let named = seen.len() < MAX_OPERATION_LABELS + 2;
    let label = if named || label == "anonymous" {
        label
    } else {
        "other"
    };
    let handles = seen.entry(label.to_owned()).or_insert_with(|| {
        let owned = label.to_owned();
        Arc::new(OperationMetrics {
            ok: metrics::counter!(GRAPHQL_REQUESTS_TOTAL, "operation" => owned.clone(), "outcome" => "ok"),
            error: metrics::counter!(GRAPHQL_REQUESTS_TOTAL, "operation" => owned.clone(), "outcome" => "error"),
            seconds: metrics::histogram!(GRAPHQL_REQUEST_SECONDS, "operation" => owned),
        })
    });
    Arc::clone(handles)
}

/// The label for an operation name before the count bound applies.
fn label_of(name: Option<&str>) -> &str {
    match name {
        None => "anonymous",
        Some(name) if is_identifier(name) => name,
        Some(_) => "other",
    }
}

fn is_identifier(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
}

/// Counts one HTTP request by `route` and `status` with its latency, through
/// handles registered on first use (routes and statuses are few).
pub fn record_http(route: &str, status: u16, elapsed: Duration) {
    type Handles = (String, u16, Counter, Histogram);
    static SEEN: OnceLock<RwLock<Vec<Handles>>> = OnceLock::new();
    let seen = SEEN.get_or_init(Default::default);
    let record = |(_, _, counter, histogram): &Handles| {
        counter.increment(1);
        histogram.record(elapsed.as_secs_f64());
    };
    {
        let seen = seen.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(handles) = seen.iter().find(|h| h.1 == status && h.0 == route) {
            record(handles);
            return;
        }
    }
    let handles = (
        route.to_owned(),
        status,
        metrics::counter!(HTTP_REQUESTS_TOTAL, "route" => route.to_owned(), "status" => status.to_string()),
        metrics::histogram!(HTTP_REQUEST_SECONDS, "route" => route.to_owned()),
    );
    record(&handles);
    seen.write()
        .unwrap_or_else(PoisonError::into_inner)
        .push(handles);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_labels_are_bounded_identifiers() {
        let label = label_of;
        assert_eq!(label(None), "anonymous");
        assert_eq!(label(Some("PopularList")), "PopularList");
        assert_eq!(label(Some("bad name")), "other");
        assert_eq!(label(Some("9lives")), "other");
        assert_eq!(label(Some(&"x".repeat(65))), "other");
    }
}
