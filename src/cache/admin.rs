//! Cache administration: pattern clears, clearing the namespace, and the
//! stats behind the admin `cacheStats` query and the start-up log line.
//!
//! Clears use SCAN + UNLINK in pages, never KEYS (which blocks Redis) or
//! FLUSHDB (which deletes data that is not ours); every pattern is applied
//! inside our namespace. Key and byte counts per resolver come from a
//! bounded SCAN of the namespace plus STRLEN of the keys found: exact up to
//! [`STATS_SCAN_LIMIT`] keys, lower bounds beyond (reported as such).

use std::time::{Duration, Instant};

use fred::types::Key;

use super::Cache;
use super::policy::Resolver;
use super::stats::{ResolverStats, ResponseStats};
use crate::error::AppError;
use crate::redis::RedisServerStats;

/// Most keys the stats scan examines: enough for an exact picture of a
/// typical cache, bounded so that `cacheStats` stays fast on a huge one.
pub const STATS_SCAN_LIMIT: usize = 20_000;

/// What a clear did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClearOutcome {
    /// Keys deleted.
    pub deleted: u64,
    /// Wall time of the clear.
    pub took: Duration,
}

/// Everything `cacheStats` reports.
#[derive(Clone, Debug)]
pub struct CacheReport {
    /// Server-wide facts; `None` when Redis is unreachable.
    pub server: Option<RedisServerStats>,
    /// Keys under our namespace (all versions), from the bounded scan.
    pub namespace_keys: Option<u64>,
    /// Whether the scan saw every key (otherwise counts are lower bounds).
    pub is_exact: bool,
    /// Per resolver, in [`Resolver::ALL`] order.
    pub resolvers: Vec<ResolverReport>,
    /// The response fast path of this instance.
    pub responses: ResponseReport,
}

/// The response fast path's counters and footprint on this instance.
#[derive(Clone, Debug)]
pub struct ResponseReport {
    /// Whether responses are kept at all.
    pub is_enabled: bool,
    /// Counters since this process started.
    pub counters: ResponseStats,
    /// Responses held now.
    pub entries: u64,
    /// Bytes they take.
    pub bytes: u64,
}

/// One resolver's policy, counters and footprint.
#[derive(Clone, Debug)]
pub struct ResolverReport {
    /// The resolver.
    pub resolver: Resolver,
    /// Its TTL (zero: caching disabled).
    pub ttl: Duration,
    /// Counters since this process started.
    pub counters: ResolverStats,
    /// Current-version keys under its prefix; `None` when Redis is down.
    pub keys: Option<u64>,
    /// Sum of their value sizes in bytes; `None` when Redis is down.
    pub bytes: Option<u64>,
}

impl Cache {
    /// Deletes the keys matching `pattern`, relative to
    /// `{namespace}:{version}:`. A pattern that is empty or could reach
    /// outside the namespace is refused and deletes nothing.
    pub async fn clear_pattern(&self, pattern: &str) -> Result<ClearOutcome, AppError> {
        let scoped = self
            .keys()
            .scoped_pattern(pattern)
            .map_err(|message| AppError::bad_input("pattern", message))?;
        self.delete_matching(&scoped).await
    }

    /// Deletes every key of our namespace, all versions, and nothing else.
    pub async fn clear_all(&self) -> Result<ClearOutcome, AppError> {
        self.delete_matching(&self.keys().namespace_pattern()).await
    }

    async fn delete_matching(&self, scan_pattern: &str) -> Result<ClearOutcome, AppError> {
        let started = Instant::now();
        let deleted = self.redis().delete_matching(scan_pattern).await;
        // Even a partial clear must reach every local tier.
        self.broadcast_clear().await;
        let deleted = deleted.map_err(AppError::CacheUnavailable)?;
        Ok(ClearOutcome {
            deleted,
            took: started.elapsed(),
        })
    }

    /// Server stats, namespace footprint and per-resolver counters. Redis
    /// being down is not an error here: its fields are `None`.
    pub async fn report(&self) -> CacheReport {
        let counters = |resolver: Resolver| self.stats().snapshot(resolver);
        let server = if self.redis().is_connected() {
            self.redis().server_stats().await.ok()
        } else {
            None
        };
        let footprint = match server {
            Some(_) => self.footprint().await.ok(),
            None => None,
        };
        let resolvers = Resolver::ALL
            .iter()
            .map(|&resolver| ResolverReport {
                resolver,
                ttl: self.policies().ttl(resolver),
                counters: counters(resolver),
                keys: footprint.as_ref().map(|f| f.keys[resolver.index()]),
                bytes: footprint.as_ref().map(|f| f.bytes[resolver.index()]),
            })
            .collect();
        let (entries, bytes) = self.inner.local.response_usage().await;
        let responses = ResponseReport {
            is_enabled: self.is_response_cache_enabled(),
            counters: self.stats().response_snapshot(),
            entries,
            bytes,
        };
        CacheReport {
            responses,
            namespace_keys: footprint.as_ref().map(|f| f.namespace_keys),
            is_exact: footprint.as_ref().is_some_and(|f| f.is_exact),
            server,
            resolvers,
        }
    }

    /// Scans the namespace (bounded) and sizes what it finds.
    async fn footprint(&self) -> Result<Footprint, fred::error::Error> {
        let redis = self.redis();
        let (keys, is_exact) = redis
            .scan_keys(&self.keys().namespace_pattern(), STATS_SCAN_LIMIT)
            .await?;
        let mut footprint = Footprint {
            namespace_keys: keys.len() as u64,
            is_exact,
            ..Footprint::default()
        };
        let versioned = self.keys().versioned_prefix().to_owned();
        let mut by_resolver: Vec<(usize, Key)> = Vec::new();
        for key in keys {
            let Some(rest) = key
                .as_str()
                .and_then(|k| k.strip_prefix(versioned.as_str()))
            else {
                continue;
            };
            let prefix = rest.split(':').next().unwrap_or_default();
            if let Some(resolver) = Resolver::ALL.iter().find(|r| r.prefix() == prefix) {
                footprint.keys[resolver.index()] += 1;
                by_resolver.push((resolver.index(), key));
            }
        }
        for chunk in by_resolver.chunks(1_000) {
            let names: Vec<Key> = chunk.iter().map(|(_, key)| key.clone()).collect();
            let sizes = redis.value_sizes(&names).await?;
            for ((index, _), size) in chunk.iter().zip(sizes) {
                footprint.bytes[*index] += size;
            }
        }
        Ok(footprint)
    }
}

#[derive(Debug, Default)]
struct Footprint {
    namespace_keys: u64,
    is_exact: bool,
    keys: [u64; Resolver::ALL.len()],
    bytes: [u64; Resolver::ALL.len()],
}
