//! The cache layer every cached resolver goes through.
//!
//! [`Cache::fetch_many`] serves one batch of reads (all the cached fields of
//! one GraphQL request, or of concurrent requests in the same batching
//! window): one MGET for every key; the misses load from the database
//! concurrently, each distinct key once (also across batches: a key already
//! loading is awaited, not loaded again); one pipelined `SET … PX` writes
//! them back in the background. Redis never fails or stalls a read: while it
//! is down, erroring or slow, reads bypass it and go to the database.
//!
//! | file | owns |
//! |---|---|
//! | [`policy`] | per-resolver name, prefix and TTL |
//! | [`admin`] | pattern clears, namespace clears, the admin stats report |
//! | [`key`] | key format `{namespace}:{version}:{prefix}:{params}` |
//! | [`query`] | `CachedQuery` (what a resolver declares) and batching keys |
//! | [`redis`] | the fred connection: timeouts, reconnects, breaker, stats |
//! | [`stats`] | hit/miss/error counters per resolver |

pub mod admin;
pub mod key;
pub mod policy;
pub mod query;
pub mod redis;
pub mod stats;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, Shared, join_all};
use tokio::sync::Semaphore;

use crate::error::AppError;

pub use self::key::KeySpace;
pub use self::policy::{CachePolicies, Resolver};
pub use self::query::{CacheStatus, CachedQuery, Fetched, QueryKey, SharedValue};
pub use self::redis::{RedisStatus, RedisStore};
pub use self::stats::{CacheStats, Event};

/// Cache settings (the `CACHE_*` variables).
#[derive(Clone, Debug)]
pub struct CacheConfig {
    /// `CACHE_NAMESPACE`: first segment of every key.
    pub namespace: String,
    /// Per-resolver TTLs (`CACHE_TTL_*`).
    pub policies: CachePolicies,
    /// `CACHE_BATCH_WINDOW_US`: how long the loader collects keys before one
    /// MGET. The fields of one request enqueue their keys within a few
    /// microseconds of each other; the window also joins concurrent requests.
    /// Every cached read waits this long, so it is kept far below
    /// async-graphql's 1 ms default: measured over HTTP, a count hit took
    /// 0.23 ms with no window, 0.32 ms at 50 µs, 0.52 ms at 250 µs and
    /// 1.33 ms at 1 ms (`cargo bench --bench resolver_cache`).
    pub batch_window: Duration,
    /// `CACHE_MAX_PENDING_WRITES`: write-back batches in flight at once;
    /// beyond it, write-backs are dropped (counted) rather than queued.
    pub max_pending_writes: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            namespace: key::DEFAULT_NAMESPACE.to_owned(),
            policies: CachePolicies::default(),
            batch_window: Duration::from_micros(50),
            max_pending_writes: 256,
        }
    }
}

/// A database load that concurrent callers share.
type InflightLoad = Shared<BoxFuture<'static, Result<SharedValue, Arc<AppError>>>>;

/// The cache facade. Cheap to clone.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    redis: RedisStore,
    keys: KeySpace,
    config: CacheConfig,
    stats: CacheStats,
    /// Loads in progress, by key. A std mutex: it is held only to look up or
    /// insert, never across an await.
    inflight: Mutex<HashMap<Arc<str>, InflightLoad>>,
    /// Bounds background write-backs.
    pending_writes: Arc<Semaphore>,
}

impl Cache {
    /// A cache over `redis` with `config`.
    pub fn new(redis: RedisStore, config: CacheConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                keys: KeySpace::new(&config.namespace),
                pending_writes: Arc::new(Semaphore::new(config.max_pending_writes.max(1))),
                redis,
                config,
                stats: CacheStats::default(),
                inflight: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The batching key for `query`.
    pub fn query_key<Q: CachedQuery>(&self, query: Q) -> QueryKey {
        QueryKey::new(&self.inner.keys, query)
    }

    /// Reads one query through the cache (a batch of one): for callers
    /// outside GraphQL, such as benchmarks and tools.
    pub async fn get<Q: CachedQuery>(&self, query: Q) -> Result<Arc<Q::Output>, Arc<AppError>> {
        let key = self.query_key(query);
        let mut fetched = self.fetch_many(std::slice::from_ref(&key)).await;
        match fetched.remove(&key) {
            Some(fetched) => fetched.typed::<Q::Output>(),
            None => Err(Arc::new(AppError::Internal(anyhow::anyhow!(
                "cache batch lost a key"
            )))),
        }
    }

    /// Serves a batch of reads: cache first, the database for the rest.
    /// Every key gets an entry in the result.
    pub async fn fetch_many(&self, keys: &[QueryKey]) -> HashMap<QueryKey, Fetched> {
        let inner = &*self.inner;
        let mut results = HashMap::with_capacity(keys.len());
        let mut to_load: Vec<(&QueryKey, CacheStatus)> = Vec::new();

        let (cacheable, disabled): (Vec<&QueryKey>, Vec<&QueryKey>) = keys
            .iter()
            .partition(|key| inner.config.policies.is_enabled(key.resolver()));
        to_load.extend(disabled.into_iter().map(|key| (key, CacheStatus::Bypass)));

        if !cacheable.is_empty() {
            let lookup = if inner.redis.is_available() {
                let names = cacheable.iter().map(|key| key.key().into()).collect();
                let reply = inner.redis.mget(names).await;
                if reply.is_err() {
                    for key in &cacheable {
                        inner.stats.record(key.resolver(), Event::Error);
                    }
                }
                reply.ok()
            } else {
                None
            };
            match lookup {
                // Redis down, erroring or slow: straight to the database.
                None => {
                    for key in cacheable {
                        inner.stats.record(key.resolver(), Event::Bypass);
                        tracing::debug!(
                            resolver = key.resolver().name(),
                            key = key.key(),
                            "Cache BYPASS: {}",
                            key.resolver().name()
                        );
                        to_load.push((key, CacheStatus::Bypass));
                    }
                }
                Some(values) => {
                    for (key, value) in cacheable.into_iter().zip(values) {
                        let name = key.resolver().name();
                        let decoded = value
                            .as_ref()
                            .and_then(|value| value.as_bytes())
                            .map(|bytes| key.decode(bytes));
                        match decoded {
                            Some(Ok(value)) => {
                                inner.stats.record(key.resolver(), Event::Hit);
                                tracing::debug!(
                                    resolver = name,
                                    key = key.key(),
                                    "Cache HIT: {name}"
                                );
                                results.insert(
                                    key.clone(),
                                    Fetched {
                                        value: Ok(value),
                                        status: CacheStatus::Hit,
                                    },
                                );
                            }
                            Some(Err(err)) => {
                                // Garbage or an old shape under our key: a
                                // miss, and the fresh value overwrites it.
                                inner.stats.record(key.resolver(), Event::Miss);
                                tracing::warn!(resolver = name, key = key.key(), error = %err, "Undecodable cache entry: reloading and overwriting it");
                                to_load.push((key, CacheStatus::Miss));
                            }
                            None => {
                                inner.stats.record(key.resolver(), Event::Miss);
                                tracing::debug!(
                                    resolver = name,
                                    key = key.key(),
                                    "Cache MISS: {name}"
                                );
                                to_load.push((key, CacheStatus::Miss));
                            }
                        }
                    }
                }
            }
        }
        let loads = join_all(to_load.into_iter().map(|(key, status)| async move {
            let (value, is_leader) = self.load_once(key).await;
            (key, status, value, is_leader)
        }))
        .await;

        let mut writes = Vec::new();
        for (key, status, value, is_leader) in loads {
            // Only misses are written back (a bypass means Redis is down or
            // caching is off), only by the caller that ran the load, and
            // never an error.
            if status == CacheStatus::Miss
                && is_leader
                && let Ok(shared) = &value
            {
                match key.encode(shared) {
                    Some(Ok(bytes)) => writes.push((key.clone(), bytes)),
                    Some(Err(err)) => {
                        tracing::error!(key = key.key(), error = %err, "Cannot serialize a value for the cache")
                    }
                    None => {}
                }
            }
            results.insert(key.clone(), Fetched { value, status });
        }
        if !writes.is_empty() {
            self.spawn_write_back(writes);
        }
        results
    }

    /// Loads `key` from the database, or joins a load of it already running.
    /// Returns whether this caller started the load.
    async fn load_once(&self, key: &QueryKey) -> (Result<SharedValue, Arc<AppError>>, bool) {
        let (load, is_leader) = {
            let mut inflight = self
                .inner
                .inflight
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match inflight.get(key.key_arc()) {
                Some(load) => (load.clone(), false),
                None => {
                    let inner = Arc::clone(&self.inner);
                    let query = key.clone();
                    let load = async move {
                        inner.stats.record(query.resolver(), Event::Load);
                        let result = query.load().await.map_err(Arc::new);
                        inner
                            .inflight
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .remove(query.key_arc());
                        result
                    }
                    .boxed()
                    .shared();
                    inflight.insert(Arc::clone(key.key_arc()), load.clone());
                    (load, true)
                }
            }
        };
        (load.await, is_leader)
    }

    /// Writes fresh values back in one pipeline, off the request path.
    /// Bounded: when too many write-backs are pending (a slow Redis), this
    /// one is dropped and counted instead of piling up.
    fn spawn_write_back(&self, writes: Vec<(QueryKey, Vec<u8>)>) {
        let Ok(permit) = Arc::clone(&self.inner.pending_writes).try_acquire_owned() else {
            for (key, _) in &writes {
                self.inner.stats.record(key.resolver(), Event::DroppedWrite);
            }
            return;
        };
        let inner = Arc::clone(&self.inner);
        tokio::spawn(async move {
            let _permit = permit;
            let resolvers: Vec<Resolver> = writes.iter().map(|(key, _)| key.resolver()).collect();
            let entries = writes
                .into_iter()
                .map(|(key, bytes)| {
                    let ttl = inner.config.policies.ttl(key.resolver());
                    (key.key().into(), bytes, ttl)
                })
                .collect();
            if inner.redis.set_many(entries).await.is_err() {
                for resolver in resolvers {
                    inner.stats.record(resolver, Event::Error);
                }
            }
        });
    }

    /// Counters per resolver.
    pub fn stats(&self) -> &CacheStats {
        &self.inner.stats
    }

    /// The effective policies.
    pub fn policies(&self) -> &CachePolicies {
        &self.inner.config.policies
    }

    /// The key space (namespace and version).
    pub fn keys(&self) -> &KeySpace {
        &self.inner.keys
    }

    /// The Redis connection.
    pub fn redis(&self) -> &RedisStore {
        &self.inner.redis
    }

    /// How long the loader collects keys before one MGET.
    pub fn batch_window(&self) -> Duration {
        self.inner.config.batch_window
    }
}
