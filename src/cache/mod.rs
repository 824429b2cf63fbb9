//! The cache layer every cached resolver goes through.
//!
//! [`Cache::fetch_many`] serves one batch of reads (all the cached fields of
//! one GraphQL request, or of concurrent requests in the same batching
//! window):
//!
//! 1. the in-process tier answers what it holds, touching nothing else;
//! 2. one MGET reads the rest from Redis, together with the generation keys
//!    of their tags; an entry is served only if its generation is current
//!    (so a write, which replaces the generation, invalidates in O(1), and a
//!    lost generation key can only cause misses);
//! 3. misses load from the database, each key once per process
//!    (single-flight) and once across instances (a short Redis lease; the
//!    others wait for the value to land); hot keys are refreshed early by one
//!    caller (XFetch) and expired ones served stale while one refresh runs or
//!    while the database fails;
//! 4. fresh values are written back in the background, in one pipeline,
//!    after checking that no invalidation happened while they were loading
//!    (values of resolvers whose keys are free client input, searches, only
//!    when they pass [`admission`]).
//!
//! A read whose request said `Cache-Control: no-cache` ([`directive`]) skips
//! steps 1 and 2: it loads (once per process with the other refreshes of
//! its key) and is written back like a miss before it answers; `no-store`
//! keeps a read's loads out of every tier.
//!
//! Redis never fails or stalls a read: while it is down, erroring or slow,
//! reads bypass it and go to the database.
//!
//! | file | owns |
//! |---|---|
//! | [`policy`] | per-resolver name, prefix and TTL |
//! | [`admission`] | which search misses are stored: doorkeeper and budget |
//! | [`admin`] | pattern clears, namespace clears, the admin stats report |
//! | [`directive`] | the request's `Cache-Control` / `Pragma` directives |
//! | [`envelope`] | the stored value format (generation, expiry, load time) |
//! | [`invalidation`] | generation bumps and the pub/sub fan-out |
//! | [`key`] | key format `{namespace}:{version}:{prefix}:{params}` |
//! | [`local`] | the in-process tier (moka) |
//! | [`persisted`] | automatic persisted query texts |
//! | [`query`] | `CachedQuery` (what a resolver declares) and batching keys |
//! | [`response`] | whole kept responses (the fast path) |
//! | [`stats`] | hit/miss/error counters per resolver |

pub mod admin;
pub mod admission;
pub mod directive;
pub mod envelope;
pub mod invalidation;
pub mod key;
pub mod local;
pub mod persisted;
pub mod policy;
pub mod query;
pub mod response;
pub mod stats;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use fred::types::Value;
use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, Shared, join_all};
use tokio::sync::Semaphore;

use self::admission::{Admission, Doorkeeper};
use self::envelope::{Meta, new_generation, now_ms};
use self::local::{LocalEntry, LocalTier};
use self::query::Loaded;
use crate::error::AppError;
use crate::redis::{Op, RedisStore};

pub use self::directive::CacheDirectives;
pub use self::key::KeySpace;
pub use self::policy::{CachePolicies, Resolver};
pub use self::query::{CacheStatus, CachedQuery, Fetched, QueryKey, SharedValue, Tier};
pub use self::response::{Dependencies, ResponseKey, StoredResponse};
pub use self::stats::{CacheStats, Event};

/// Cache settings (the `CACHE_*` variables).
#[derive(Clone, Debug)]
pub struct CacheConfig {
    /// `CACHE_NAMESPACE`: first segment of every key.
    pub namespace: String,
    /// Per-resolver TTLs (`CACHE_TTL_*`).
    pub policies: CachePolicies,
    /// `CACHE_TTL_NOT_FOUND`: TTL of a cached absence (`anime(id)` for an id
    /// that does not exist).
    pub not_found_ttl: Duration,
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
    /// `CACHE_LOCAL_MAX_BYTES`: budget of the in-process tier (0: off).
    pub local_max_bytes: u64,
    /// `CACHE_RESPONSE_MAX_BYTES` (0, or `CACHE_RESPONSES=false`: off):
    /// budget of whole kept responses, the fast path for repeated public
    /// queries.
    pub response_max_bytes: u64,
    /// `CACHE_STALE_WHILE_REVALIDATE`: how long after expiry a value is
    /// still served while one refresh runs.
    pub stale_while_revalidate: Duration,
    /// `CACHE_STALE_IF_ERROR`: how long after expiry a value may stand in
    /// for a failed database load.
    pub stale_if_error: Duration,
    /// `CACHE_CLIENT_DIRECTIVES`: whether requests' `Cache-Control:
    /// no-cache` / `no-store` (and `Pragma: no-cache`) are honoured. Off,
    /// the headers are ignored, so no client can force database loads.
    pub is_client_directives_enabled: bool,
    /// `CACHE_SEARCH_MAX_ENTRIES`: the budget of search entries
    /// ([`Admission::Bounded`] resolvers) written to Redis per window
    /// across all instances (0: searches are never stored), and the number
    /// of recently missed search keys each instance remembers per
    /// doorkeeper generation (at most [`MAX_DOORKEEPER_ENTRIES`]). See
    /// [`admission`].
    pub search_max_entries: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            namespace: key::DEFAULT_NAMESPACE.to_owned(),
            policies: CachePolicies::default(),
            not_found_ttl: Duration::from_secs(30),
            batch_window: Duration::from_micros(50),
            max_pending_writes: 256,
            local_max_bytes: 64 * 1024 * 1024,
            response_max_bytes: 32 * 1024 * 1024,
            stale_while_revalidate: Duration::from_secs(10),
            stale_if_error: Duration::from_secs(600),
            is_client_directives_enabled: true,
            search_max_entries: 10_000,
        }
    }
}

/// Generation keys live a day and are refreshed by every write-back that
/// uses them; if one still expires or is evicted, its entries become misses.
const GENERATION_TTL: Duration = Duration::from_secs(24 * 3600);

/// A fill lease expires after this long, so a holder that died blocks
/// nobody for longer.
const LEASE_TTL: Duration = Duration::from_secs(2);

/// How long a caller that lost the lease race waits for the holder's value
/// before loading itself.
const LEASE_WAIT: Duration = Duration::from_secs(1);

/// Poll interval while waiting for a lease holder's value.
const LEASE_POLL: Duration = Duration::from_millis(10);

/// TTLs are shortened by a random 0-5 % (at most 30 s) so that keys written
/// together do not expire together.
const JITTER_FRACTION: f64 = 0.05;
const MAX_JITTER: Duration = Duration::from_secs(30);

/// Most search keys a doorkeeper generation remembers (about 16 bytes
/// each), whatever `CACHE_SEARCH_MAX_ENTRIES` says.
pub const MAX_DOORKEEPER_ENTRIES: u64 = 100_000;

/// Longest a doorkeeper generation lasts: a search is stored when it misses
/// twice within about this long (or within the last two generations' worth
/// of distinct searches, when they are busier).
const DOORKEEPER_WINDOW: Duration = Duration::from_secs(300);

/// XFetch's beta: 1.0 refreshes early with a probability that rises as
/// expiry nears, scaled by how long the load takes.
const XFETCH_BETA: f64 = 1.0;

/// A load that concurrent callers in this process share.
type SharedLoad = Shared<BoxFuture<'static, Result<Filled, Arc<AppError>>>>;

/// An in-flight load and the local invalidation epoch it started in: a
/// caller from a later epoch (a write happened since) must not take its
/// possibly older result, and starts its own.
#[derive(Clone)]
struct InflightLoad {
    epoch: u64,
    id: u64,
    load: SharedLoad,
    /// Started by a `no-cache` read: straight from the database, so
    /// refreshes may join it.
    is_refresh: bool,
    /// Set when a refresh that stores took this load's place: its leader
    /// then does not write back.
    superseded: Arc<AtomicBool>,
}

/// How a load fills a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fill {
    /// A miss that will be written back: takes the cross-instance lease
    /// first, and losing it means waiting for the holder's value.
    Leased,
    /// Straight from the database: a bypass, or a miss that will not be
    /// written back (`no-store`).
    Direct,
    /// A `no-cache` read: straight from the database, and never the result
    /// of a load that might return a cached value. `is_stored`: it will be
    /// written back (not `no-store`, and Redis was trusted).
    Refresh { is_stored: bool },
}

/// What a shared load produced.
#[derive(Clone)]
enum Filled {
    /// Loaded from the database by this process.
    Loaded(Loaded),
    /// Another instance held the lease; its value landed in Redis.
    FromRedis(SharedValue),
}

impl Filled {
    fn value(&self) -> SharedValue {
        match self {
            Self::Loaded(loaded) => Arc::clone(&loaded.value),
            Self::FromRedis(value) => Arc::clone(value),
        }
    }
}

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
    local: LocalTier,
    /// Loads in progress, by key. A std mutex: it is held only to look up or
    /// insert, never across an await.
    inflight: Mutex<HashMap<Arc<str>, InflightLoad>>,
    /// Bounds background write-backs and refreshes.
    pending_writes: Arc<Semaphore>,
    /// Identifies this process as a lease holder.
    instance: String,
    /// Generation bumps that could not reach Redis; while any is pending,
    /// reads do not trust Redis (its entries may be ones a write replaced).
    pending_bumps: Mutex<Vec<String>>,
    /// The invalidation subscription, once established.
    subscriber: std::sync::OnceLock<fred::clients::SubscriberClient>,
    /// Whether the subscription is proven to deliver (own probe heard since
    /// the last connection trouble) and the listener reads it.
    is_listener_alive: std::sync::atomic::AtomicBool,
    /// The probe this instance is waiting to hear, if any.
    probe: Mutex<Option<String>>,
    /// Writes waiting for their invalidation to be acknowledged, by message
    /// id.
    acks: Mutex<HashMap<String, invalidation::AckWait>>,
    /// Automatic persisted query texts.
    persisted: persisted::PersistedQueries,
    /// Search keys missed recently ([`admission`]).
    doorkeeper: Doorkeeper,
}

/// How a Redis entry looked at lookup time.
enum Found {
    /// Valid and before its logical expiry.
    Fresh(SharedValue, Meta, usize),
    /// Valid, expired less than the stale-while-revalidate window ago.
    Revalidate(SharedValue),
    /// Valid but expired longer ago; kept as a stale-if-error fallback.
    Expired(SharedValue, Meta),
    /// Absent, invalidated or undecodable.
    Missing,
}

/// A key still to load, with what the lookup learned.
struct Pending<'k> {
    key: &'k QueryKey,
    status: CacheStatus,
    /// The tag generation seen at lookup (None: absent); a write-back only
    /// commits if it is still current.
    generation: Option<String>,
    /// An expired value that may stand in if the load fails.
    fallback: Option<(SharedValue, Meta)>,
    /// Whether a value it loads may be stored: false when the key's
    /// admission refused it ([`admission`]); it is then served like a
    /// `no-store` read (and never kept as part of a whole response).
    is_admitted: bool,
}

impl Cache {
    /// A cache over `redis` with `config`.
    pub fn new(redis: RedisStore, config: CacheConfig) -> Self {
        let doorkeeper = Doorkeeper::new(
            usize::try_from(config.search_max_entries.min(MAX_DOORKEEPER_ENTRIES)).unwrap_or(1),
            DOORKEEPER_WINDOW,
        );
        let cache = Self {
            inner: Arc::new(Inner {
                keys: KeySpace::new(&config.namespace),
                pending_writes: Arc::new(Semaphore::new(config.max_pending_writes.max(1))),
                local: LocalTier::new(config.local_max_bytes, config.response_max_bytes),
                redis,
                config,
                stats: CacheStats::default(),
                inflight: Mutex::new(HashMap::new()),
                instance: new_generation(),
                pending_bumps: Mutex::new(Vec::new()),
                subscriber: std::sync::OnceLock::new(),
                is_listener_alive: std::sync::atomic::AtomicBool::new(false),
                probe: Mutex::new(None),
                acks: Mutex::new(HashMap::new()),
                persisted: persisted::PersistedQueries::default(),
                doorkeeper,
            }),
        };
        cache.drop_local_tier_on_reconnect();
        cache
    }

    /// The batching key for `query`.
    pub fn query_key<Q: CachedQuery>(&self, query: Q) -> QueryKey {
        QueryKey::new(&self.inner.keys, query)
    }

    /// Reads one query through the cache (a batch of one): for callers
    /// outside GraphQL, such as benchmarks and tools.
    pub async fn get<Q: CachedQuery>(&self, query: Q) -> Result<Arc<Q::Output>, Arc<AppError>> {
        let key = self.query_key(query);
        if let Some(local) = self.get_local(&key).await {
            return local.typed::<Q::Output>();
        }
        let mut fetched = self.fetch_many(std::slice::from_ref(&key)).await;
        match fetched.remove(&key) {
            Some(fetched) => fetched.typed::<Q::Output>(),
            None => Err(Arc::new(AppError::Internal(anyhow::anyhow!(
                "cache batch lost a key"
            )))),
        }
    }

    /// Serves `key` from the in-process tier alone, if it holds it: the
    /// loader calls this first, so a local hit skips the batching window.
    /// The local tier hears other instances' writes only through Redis, so
    /// while Redis or the subscription is not trusted, neither is it.
    pub async fn get_local(&self, key: &QueryKey) -> Option<Fetched> {
        let inner = &*self.inner;
        if key.directives().has_no_cache
            || !inner.local.is_enabled()
            || !inner.config.policies.is_enabled(key.resolver())
            || !self.is_memory_trusted()
        {
            return None;
        }
        let (value, expires_at_ms) = inner.local.get(key.key()).await?;
        self.record(key, Event::Hit, "Cache HIT");
        Some(Fetched::ok(
            value,
            CacheStatus::Hit,
            Tier::Local,
            expires_at_ms,
        ))
    }

    /// Whether this instance's memory (values and kept responses) may be
    /// used: it hears other instances' invalidations only through Redis, so
    /// both Redis and the subscription must be trusted.
    fn is_memory_trusted(&self) -> bool {
        self.is_redis_trusted() && self.is_listening()
    }

    /// Whether Redis may be read now: connected, not paused by the breaker,
    /// and no generation bump waiting to be applied.
    fn is_redis_trusted(&self) -> bool {
        self.inner.redis.is_available()
            && self
                .inner
                .pending_bumps
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_empty()
    }

    /// Serves a batch of reads that the in-process tier did not answer
    /// (callers ask [`Cache::get_local`] first); every key gets an entry in
    /// the result. Each key's [`CacheDirectives`] apply to it alone: a
    /// `no-cache` key is not looked up but refreshed, a `no-store` key is
    /// looked up as usual but nothing it loads is stored.
    pub async fn fetch_many(&self, keys: &[QueryKey]) -> HashMap<QueryKey, Fetched> {
        let inner = &*self.inner;
        let epoch = inner.local.epoch();
        let mut results = HashMap::with_capacity(keys.len());
        let mut pending: Vec<Pending<'_>> = Vec::new();
        let mut lookups: Vec<&QueryKey> = Vec::new();
        for key in keys {
            if !inner.config.policies.is_enabled(key.resolver()) {
                pending.push(Pending::new(key, CacheStatus::Bypass));
            } else if key.directives().has_no_cache {
                // Refreshes go first: their loads start before this batch's
                // misses of the same key, which then join them.
                pending.push(self.refresh(key));
            } else {
                lookups.push(key);
            }
        }

        if !lookups.is_empty() {
            match self.lookup(&lookups).await {
                None => {
                    for key in lookups {
                        self.record(key, Event::Bypass, "Cache BYPASS");
                        pending.push(Pending::new(key, CacheStatus::Bypass));
                    }
                }
                Some(found) => {
                    for (key, (generation, found)) in lookups.into_iter().zip(found) {
                        // `no-store`: served from the cache, but nothing
                        // refreshed or copied into memory on its account.
                        let may_store = !key.directives().has_no_store;
                        match found {
                            Found::Fresh(value, meta, weight) => {
                                self.record(key, Event::Hit, "Cache HIT");
                                if may_store {
                                    if should_refresh_early(&meta) {
                                        self.spawn_refresh(key.clone(), generation.clone());
                                    }
                                    self.fill_local(key, &value, meta.expires_at_ms, weight, epoch)
                                        .await;
                                }
                                results.insert(
                                    key.clone(),
                                    Fetched::ok(
                                        value,
                                        CacheStatus::Hit,
                                        Tier::Redis,
                                        meta.expires_at_ms,
                                    ),
                                );
                            }
                            Found::Revalidate(value) => {
                                self.record(key, Event::Hit, "Cache STALE");
                                if may_store {
                                    self.spawn_refresh(key.clone(), generation);
                                }
                                results.insert(
                                    key.clone(),
                                    Fetched::ok(value, CacheStatus::Stale, Tier::Redis, 0),
                                );
                            }
                            Found::Expired(value, meta) => {
                                self.record(key, Event::Miss, "Cache MISS");
                                pending.push(Pending {
                                    key,
                                    status: CacheStatus::Miss,
                                    generation,
                                    fallback: Some((value, meta)),
                                    is_admitted: true,
                                });
                            }
                            Found::Missing => {
                                self.record(key, Event::Miss, "Cache MISS");
                                pending.push(Pending {
                                    key,
                                    status: CacheStatus::Miss,
                                    generation,
                                    fallback: None,
                                    is_admitted: true,
                                });
                            }
                        }
                    }
                }
            }
        }

        self.admit(&mut pending);
        self.ensure_generations(&mut pending).await;

        // Misses of resolvers that load in batches: one load per resolver.
        let (batched, pending): (Vec<Pending<'_>>, Vec<Pending<'_>>) = pending
            .into_iter()
            .partition(|item| item.key.loads_in_batches());
        let batch_loads = self.load_batches(batched);
        let single_loads = join_all(pending.into_iter().map(|item| async move {
            let fill = if item.key.directives().has_no_cache {
                Fill::Refresh {
                    is_stored: item.status == CacheStatus::Refresh
                        && !item.key.directives().has_no_store
                        && item.is_admitted,
                }
            } else if item.status == CacheStatus::Miss
                && !item.key.directives().has_no_store
                && item.is_admitted
            {
                Fill::Leased
            } else {
                // A bypass, or a `no-store` miss: holding the lease would
                // make other instances wait for a value it never writes.
                Fill::Direct
            };
            let (filled, is_writer) = self.load_once(item.key, fill, epoch).await;
            (item, filled, is_writer)
        }));
        let (single_loads, batch_loads) =
            futures_util::future::join(single_loads, batch_loads).await;
        let loads = single_loads.into_iter().chain(batch_loads);

        let mut writes = Vec::new();
        let mut refreshed = Vec::new();
        for (item, filled, is_writer) in loads {
            let key = item.key;
            let is_fill = matches!(item.status, CacheStatus::Miss | CacheStatus::Refresh);
            let is_admitted = item.is_admitted;
            let fetched = match filled {
                Ok(filled) => {
                    if let Filled::Loaded(loaded) = &filled {
                        // Only misses and refreshes are written back (a
                        // bypass means Redis is down or caching is off),
                        // only by the caller that ran the load, and never
                        // for `no-store` or a value admission refused.
                        if is_fill && is_writer && is_admitted && !key.directives().has_no_store {
                            let write = (key.clone(), loaded.clone(), item.generation.clone());
                            if item.status == CacheStatus::Refresh {
                                refreshed.push(write);
                            } else {
                                writes.push(write);
                            }
                        }
                    }
                    // Not admitted: nothing holds it, so nothing built
                    // from it (a whole response) may be kept either.
                    let expires_at_ms = if is_fill && is_admitted {
                        now_ms() + as_ms(self.fresh_ttl(key, &filled))
                    } else {
                        0
                    };
                    Fetched::ok(filled.value(), item.status, Tier::Database, expires_at_ms)
                }
                Err(err) => match item.fallback {
                    Some((value, meta))
                        if now_ms() < meta.expires_at_ms + as_ms(inner.config.stale_if_error) =>
                    {
                        let age_ms = now_ms().saturating_sub(meta.expires_at_ms);
                        if err.is_refused_by_breaker() {
                            // The breaker announced the outage once; a line
                            // per stale answer would flood the log.
                            tracing::debug!(
                                resolver = key.resolver().name(),
                                key = key.key(),
                                age_ms,
                                "Database load failed: serving the last good value (stale-if-error)"
                            );
                        } else {
                            tracing::warn!(
                                resolver = key.resolver().name(),
                                key = key.key(),
                                age_ms,
                                "Database load failed: serving the last good value (stale-if-error)"
                            );
                        }
                        Fetched::ok(value, CacheStatus::Stale, Tier::Redis, 0)
                    }
                    _ => Fetched {
                        value: Err(err),
                        status: item.status,
                        tier: Tier::Database,
                        expires_at_ms: 0,
                    },
                },
            };
            results.insert(key.clone(), fetched);
        }
        if !writes.is_empty() {
            self.spawn_write_back(writes, epoch);
        }
        if !refreshed.is_empty() {
            // A refresh stores before it answers: the client's next plain
            // read (on this instance, or through Redis on any) finds what it
            // just loaded rather than the value it asked to replace.
            let refreshed = self.within_budget(refreshed).await;
            self.write_back(refreshed, epoch).await;
        }
        results
    }

    /// A `no-cache` read: nothing is looked up; it loads from the database
    /// and, while Redis is trusted, fills under the tag's current generation
    /// like a miss. Without Redis it is a bypass (nothing could be stored
    /// safely).
    fn refresh<'k>(&self, key: &'k QueryKey) -> Pending<'k> {
        if self.is_redis_trusted() {
            self.record(key, Event::Refresh, "Cache REFRESH");
            Pending::new(key, CacheStatus::Refresh)
        } else {
            self.record(key, Event::Bypass, "Cache BYPASS");
            Pending::new(key, CacheStatus::Bypass)
        }
    }

    /// Applies the doorkeeper ([`admission`]) to the misses and refreshes of
    /// [`Admission::Bounded`] keys that would be stored: the first sighting
    /// of a key is served but not stored.
    fn admit(&self, pending: &mut [Pending<'_>]) {
        for item in pending.iter_mut() {
            if item.key.admission() == Admission::Bounded
                && matches!(item.status, CacheStatus::Miss | CacheStatus::Refresh)
                && !item.key.directives().has_no_store
                && !self.inner.doorkeeper.admit(item.key.key())
            {
                item.is_admitted = false;
                self.record(item.key, Event::NotAdmitted, "Cache NOT ADMITTED");
            }
        }
    }

    /// Gives every miss and refresh that will be stored a concrete
    /// generation to fill under. A miss whose tag had no generation key
    /// (first fill, or the key was evicted) gets one created now, before its
    /// load: "absent" cannot prove that no invalidation happened meanwhile
    /// (absent, bumped, evicted, absent again), while a random token that
    /// is still in place can. A refresh looked nothing up, so it reads the
    /// current generation here, also before its load. If Redis does not
    /// answer, those reads are served without a write-back.
    async fn ensure_generations(&self, pending: &mut [Pending<'_>]) {
        let needs_generation = |item: &Pending<'_>| {
            matches!(item.status, CacheStatus::Miss | CacheStatus::Refresh)
                && item.generation.is_none()
                && !item.key.directives().has_no_store
                && item.is_admitted
        };
        let mut keys: Vec<&str> = pending
            .iter()
            .filter(|item| needs_generation(item))
            .map(|item| item.key.generation_key())
            .collect();
        keys.sort_unstable();
        keys.dedup();
        if keys.is_empty() {
            return;
        }
        let proposed = keys.iter().map(|_| new_generation()).collect();
        let names = keys.iter().map(|key| (*key).into()).collect();
        let tokens = self
            .inner
            .redis
            .ensure_generations(names, proposed, GENERATION_TTL)
            .await
            .unwrap_or_else(|_| vec![None; keys.len()]);
        let by_key: HashMap<&str, Option<String>> = keys.into_iter().zip(tokens).collect();
        for item in pending.iter_mut() {
            if needs_generation(item) {
                match by_key.get(item.key.generation_key()).cloned().flatten() {
                    Some(token) => item.generation = Some(token),
                    // No generation to stamp: serve without caching.
                    None => item.status = CacheStatus::Bypass,
                }
            }
        }
    }

    /// How long a value just filled from the database stays fresh: its
    /// resolver's TTL, or the not-found TTL for a recorded absence (a value
    /// another instance loaded may be either: the shorter one).
    fn fresh_ttl(&self, key: &QueryKey, filled: &Filled) -> Duration {
        let config = &self.inner.config;
        let ttl = config.policies.ttl(key.resolver());
        match filled {
            Filled::Loaded(loaded) if loaded.is_negative => config.not_found_ttl,
            Filled::Loaded(_) => ttl,
            Filled::FromRedis(_) => ttl.min(config.not_found_ttl),
        }
    }

    fn record(&self, key: &QueryKey, event: Event, message: &'static str) {
        self.inner.stats.record(key.resolver(), event);
        let name = key.resolver().name();
        tracing::debug!(resolver = name, key = key.key(), "{message}: {name}");
    }

    /// One MGET for the entries and their generation keys. `None` when Redis
    /// is not to be used (down, erroring, or missing a generation bump).
    async fn lookup(&self, keys: &[&QueryKey]) -> Option<Vec<(Option<String>, Found)>> {
        let inner = &*self.inner;
        if !self.is_redis_trusted() {
            return None;
        }
        let mut generation_index: HashMap<&str, usize> = HashMap::new();
        let mut names: Vec<fred::types::Key> = keys.iter().map(|key| key.key().into()).collect();
        for key in keys {
            let next = keys.len() + generation_index.len();
            generation_index
                .entry(key.generation_key())
                .or_insert_with(|| {
                    names.push(key.generation_key().into());
                    next
                });
        }
        let values = match inner.redis.mget(names).await {
            Ok(values) => values,
            Err(_) => {
                for key in keys {
                    inner.stats.record(key.resolver(), Event::Error);
                }
                return None;
            }
        };
        let text = |value: &Option<Value>| {
            value
                .as_ref()
                .and_then(|v| v.as_str().map(|s| s.into_owned()))
        };
        let now = now_ms();
        let revalidate_ms = as_ms(inner.config.stale_while_revalidate);
        let stale_ms = as_ms(inner.config.stale_if_error);
        Some(
            keys.iter()
                .enumerate()
                .map(|(i, key)| {
                    let generation = text(&values[generation_index[key.generation_key()]]);
                    let Some(bytes) = values[i].as_ref().and_then(|value| value.as_bytes()) else {
                        return (generation, Found::Missing);
                    };
                    let (meta, value) = match key.decode(bytes) {
                        Ok(decoded) => decoded,
                        Err(err) => {
                            // Garbage or an old shape under our key: a miss,
                            // and the fresh value overwrites it.
                            tracing::warn!(
                                resolver = key.resolver().name(),
                                key = key.key(),
                                error = %err,
                                "Undecodable cache entry: reloading and overwriting it"
                            );
                            return (generation, Found::Missing);
                        }
                    };
                    if generation.as_deref() != Some(meta.generation.as_str()) {
                        // Invalidated by a write, or its generation key was
                        // lost: never served.
                        return (generation, Found::Missing);
                    }
                    let found = if now < meta.expires_at_ms {
                        Found::Fresh(value, meta, bytes.len())
                    } else if now < meta.expires_at_ms + revalidate_ms {
                        Found::Revalidate(value)
                    } else if now < meta.expires_at_ms + stale_ms {
                        Found::Expired(value, meta)
                    } else {
                        Found::Missing
                    };
                    (generation, found)
                })
                .collect(),
        )
    }

    async fn fill_local(
        &self,
        key: &QueryKey,
        value: &SharedValue,
        expires_at_ms: u64,
        weight: usize,
        epoch: u64,
    ) {
        let entry = LocalEntry {
            value: Arc::clone(value),
            tag: Arc::clone(key.tag()),
            expires_at_ms,
            weight: u32::try_from(weight).unwrap_or(u32::MAX),
            epoch,
        };
        self.inner
            .local
            .insert(Arc::clone(key.key_arc()), entry, epoch)
            .await;
    }

    /// Loads `key` from the database, or joins a load of it already running
    /// in this process that started in the same invalidation `epoch`
    /// (a refresh joins only another refresh). Returns whether this caller
    /// is to write the value back: it started the load, and no refresh that
    /// stores took the load's place meanwhile.
    ///
    /// A refresh does not join a plain load: that one may be waiting for
    /// another instance's value (a cached one), or have read the database
    /// before the client asked for fresh data. It starts its own and takes
    /// the plain load's place, so that later readers of the key join the
    /// fresher load, and (when the refresh will be written back) the plain
    /// load is not, so its possibly older value cannot overwrite the
    /// refreshed one. Refreshes join each other: they get a value read
    /// at most one load time before they arrived, and that is what bounds
    /// the database work any number of clients sending `no-cache` can cause
    /// to one load per key and instance at a time.
    /// Loads the `items` of resolvers whose misses load in batches: one
    /// [`CachedQuery::load_many`] per resolver, every item its own writer
    /// (no single-flight or lease: see [`CachedQuery::LOADS_IN_BATCHES`]).
    async fn load_batches<'k>(
        &self,
        items: Vec<Pending<'k>>,
    ) -> Vec<(Pending<'k>, Result<Filled, Arc<AppError>>, bool)> {
        let mut groups: Vec<Vec<Pending<'k>>> = Vec::new();
        for item in items {
            match groups
                .iter_mut()
                .find(|group| group[0].key.resolver() == item.key.resolver())
            {
                Some(group) => group.push(item),
                None => groups.push(vec![item]),
            }
        }
        let loads = join_all(groups.into_iter().map(|group| async move {
            for item in &group {
                self.inner.stats.record(item.key.resolver(), Event::Load);
            }
            let keys: Vec<&QueryKey> = group.iter().map(|item| item.key).collect();
            let loaded = QueryKey::load_batch(&keys).await.map_err(Arc::new);
            match loaded {
                Ok(values) => group
                    .into_iter()
                    .zip(values)
                    .map(|(item, value)| (item, Ok(Filled::Loaded(value)), true))
                    .collect::<Vec<_>>(),
                Err(err) => group
                    .into_iter()
                    .map(|item| (item, Err(Arc::clone(&err)), true))
                    .collect(),
            }
        }))
        .await;
        loads.into_iter().flatten().collect()
    }

    async fn load_once(
        &self,
        key: &QueryKey,
        fill: Fill,
        epoch: u64,
    ) -> (Result<Filled, Arc<AppError>>, bool) {
        let is_refresh = matches!(fill, Fill::Refresh { .. });
        let supersedes = fill == Fill::Refresh { is_stored: true };
        let (load, superseded) = {
            let mut inflight = self
                .inner
                .inflight
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match inflight.get(key.key_arc()) {
                Some(running) if running.epoch == epoch && (running.is_refresh || !is_refresh) => {
                    (running.load.clone(), None)
                }
                running => {
                    if let Some(running) = running
                        && supersedes
                        && !running.is_refresh
                    {
                        running.superseded.store(true, AtomicOrdering::Relaxed);
                    }
                    // A load from before an invalidation may return data the
                    // write replaced: start a fresh one (without the lease,
                    // which that older load of ours may still hold).
                    let use_lease = fill == Fill::Leased && running.is_none();
                    let id = rand::random::<u64>();
                    let cache = self.clone();
                    let query = key.clone();
                    let load = async move {
                        let result = cache.load_with_lease(&query, use_lease).await;
                        let mut inflight = cache
                            .inner
                            .inflight
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner);
                        if inflight
                            .get(query.key_arc())
                            .is_some_and(|running| running.id == id)
                        {
                            inflight.remove(query.key_arc());
                        }
                        result
                    }
                    .boxed()
                    .shared();
                    let superseded = Arc::new(AtomicBool::new(false));
                    inflight.insert(
                        Arc::clone(key.key_arc()),
                        InflightLoad {
                            epoch,
                            id,
                            load: load.clone(),
                            is_refresh,
                            superseded: Arc::clone(&superseded),
                        },
                    );
                    (load, Some(superseded))
                }
            }
        };
        let result = load.await;
        // Relaxed suffices: the flag is set under the inflight lock, which
        // the load takes again to finish before this read.
        let is_writer = superseded.is_some_and(|flag| !flag.load(AtomicOrdering::Relaxed));
        (result, is_writer)
    }

    async fn load_with_lease(
        &self,
        key: &QueryKey,
        use_lease: bool,
    ) -> Result<Filled, Arc<AppError>> {
        let inner = &*self.inner;
        let mut held_lease = None;
        if use_lease && self.is_redis_trusted() {
            let lease = inner.keys.lease_key(key.key());
            match inner
                .redis
                .try_lease(&lease, &inner.instance, LEASE_TTL)
                .await
            {
                Ok(false) => {
                    // Another instance is loading this key: wait for its
                    // value.
                    if let Some(value) = self.wait_for_value(key).await {
                        return Ok(Filled::FromRedis(value));
                    }
                }
                Ok(true) => {
                    // The lease is free also once a holder has committed
                    // (a commit deletes it): that value may have landed
                    // between our miss and the lease. Look once more.
                    if let Some(Some((_, Found::Fresh(value, ..)))) =
                        self.lookup(&[key]).await.map(|mut found| found.pop())
                    {
                        let release = Op::Delete { key: lease.into() };
                        if inner.redis.pipeline(vec![release]).await.is_err() {
                            tracing::debug!("Releasing an unused fill lease failed; it expires");
                        }
                        return Ok(Filled::FromRedis(value));
                    }
                    held_lease = Some(lease);
                }
                Err(_) => {}
            }
        }
        inner.stats.record(key.resolver(), Event::Load);
        let loaded = key.load().await.map(Filled::Loaded).map_err(Arc::new);
        if let (Err(_), Some(lease)) = (&loaded, held_lease) {
            // No value will follow: free the lease now, or the next miss of
            // this key (here or on another instance) waits LEASE_WAIT for
            // nothing, which during a database outage turns a fast failure
            // into a one-second one.
            let release = Op::Delete { key: lease.into() };
            if inner.redis.pipeline(vec![release]).await.is_err() {
                tracing::debug!("Releasing the fill lease of a failed load failed; it expires");
            }
        }
        loaded
    }

    /// Polls Redis for a lease holder's value, up to [`LEASE_WAIT`].
    async fn wait_for_value(&self, key: &QueryKey) -> Option<SharedValue> {
        let deadline = tokio::time::Instant::now() + LEASE_WAIT;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(LEASE_POLL).await;
            match self.lookup(&[key]).await?.pop() {
                Some((_, Found::Fresh(value, ..))) => return Some(value),
                Some(_) => continue,
                None => return None,
            }
        }
        None
    }

    /// Refreshes `key` in the background (early refresh or revalidation):
    /// one caller per process, one instance via the lease.
    fn spawn_refresh(&self, key: QueryKey, generation: Option<String>) {
        let is_loading = self
            .inner
            .inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(key.key_arc());
        if is_loading {
            return;
        }
        let Ok(permit) = Arc::clone(&self.inner.pending_writes).try_acquire_owned() else {
            return;
        };
        let cache = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let epoch = cache.inner.local.epoch();
            let (filled, is_writer) = cache.load_once(&key, Fill::Leased, epoch).await;
            if let (Ok(Filled::Loaded(loaded)), true) = (filled, is_writer) {
                cache
                    .write_back(vec![(key, loaded, generation)], epoch)
                    .await;
            }
        });
    }

    /// Writes fresh values back off the request path. Bounded: when too
    /// many write-backs are pending (a slow Redis), this one is dropped and
    /// counted instead of piling up.
    fn spawn_write_back(&self, writes: Vec<(QueryKey, Loaded, Option<String>)>, epoch: u64) {
        let Ok(permit) = Arc::clone(&self.inner.pending_writes).try_acquire_owned() else {
            for (key, ..) in &writes {
                self.inner.stats.record(key.resolver(), Event::DroppedWrite);
            }
            return;
        };
        let cache = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let writes = cache.within_budget(writes).await;
            cache.write_back(writes, epoch).await;
        });
    }

    /// Commits fresh values: re-reads the generations first and skips every
    /// value whose tag was invalidated while it loaded (that value may be
    /// older than the write), then writes the rest in one pipeline and fills
    /// the local tier.
    async fn write_back(&self, writes: Vec<(QueryKey, Loaded, Option<String>)>, epoch: u64) {
        let inner = &*self.inner;
        if writes.is_empty() || !self.is_redis_trusted() {
            return;
        }
        let names: Vec<fred::types::Key> = writes
            .iter()
            .map(|(key, ..)| key.generation_key().into())
            .collect();
        let Ok(current) = inner.redis.mget(names).await else {
            for (key, ..) in &writes {
                inner.stats.record(key.resolver(), Event::Error);
            }
            return;
        };
        let mut ops = Vec::with_capacity(writes.len() * 3);
        let mut committed = Vec::with_capacity(writes.len());
        for ((key, loaded, seen), current) in writes.into_iter().zip(current) {
            let current = current
                .as_ref()
                .and_then(|v| v.as_str().map(|s| s.into_owned()));
            // Commit only under the very generation the fill started with:
            // anything else means an invalidation (or a lost generation key)
            // happened while it loaded, and the value may predate it.
            let generation = match (seen, current) {
                (Some(seen), Some(current)) if seen == current => current,
                _ => {
                    tracing::debug!(
                        key = key.key(),
                        "Skipping a write-back: invalidated while loading"
                    );
                    // Free the lease anyway, so other instances need not
                    // wait for it to expire.
                    ops.push(Op::Delete {
                        key: inner.keys.lease_key(key.key()).into(),
                    });
                    continue;
                }
            };
            let ttl = jittered(if loaded.is_negative {
                inner.config.not_found_ttl
            } else {
                inner.config.policies.ttl(key.resolver())
            });
            let meta = Meta {
                generation,
                expires_at_ms: now_ms() + as_ms(ttl),
                load_ms: loaded.load_ms,
            };
            let stale_window = inner
                .config
                .stale_while_revalidate
                .max(inner.config.stale_if_error);
            ops.push(Op::Set {
                key: key.key().into(),
                value: envelope::wrap(&meta, &loaded.json),
                ttl: ttl + stale_window,
            });
            ops.push(Op::Expire {
                key: key.generation_key().into(),
                ttl: GENERATION_TTL,
            });
            ops.push(Op::Delete {
                key: inner.keys.lease_key(key.key()).into(),
            });
            committed.push((key, loaded, meta.expires_at_ms));
        }
        if ops.is_empty() {
            return;
        }
        if inner.redis.pipeline(ops).await.is_err() {
            for (key, ..) in &committed {
                inner.stats.record(key.resolver(), Event::Error);
            }
            return;
        }
        for (key, loaded, expires_at_ms) in committed {
            self.fill_local(&key, &loaded.value, expires_at_ms, loaded.json.len(), epoch)
                .await;
        }
    }

    /// Keeps the writes of [`Admission::Bounded`] resolvers that fit their
    /// budget of `CACHE_SEARCH_MAX_ENTRIES` per window across instances
    /// ([`admission`]): one `INCRBY` per resolver on the window's counter.
    /// The others are dropped (their leases freed) and counted as not
    /// admitted; so are all of them if the counter cannot be read. Applied
    /// to the write-backs of misses and `no-cache` refreshes, not to the
    /// early and stale-while-revalidate refreshes of an entry already
    /// stored, which replace it rather than add one.
    async fn within_budget(
        &self,
        writes: Vec<(QueryKey, Loaded, Option<String>)>,
    ) -> Vec<(QueryKey, Loaded, Option<String>)> {
        let inner = &*self.inner;
        if !self.is_redis_trusted() {
            // Nothing is written anyway (`write_back`).
            return writes;
        }
        let mut resolvers: Vec<(Resolver, u64)> = Vec::new();
        for (key, ..) in &writes {
            if key.admission() == Admission::Bounded {
                match resolvers.iter_mut().find(|(r, _)| *r == key.resolver()) {
                    Some((_, wanted)) => *wanted += 1,
                    None => resolvers.push((key.resolver(), 1)),
                }
            }
        }
        if resolvers.is_empty() {
            return writes;
        }
        let stale_window = inner
            .config
            .stale_while_revalidate
            .max(inner.config.stale_if_error);
        let mut allowed: Vec<(Resolver, u64)> = Vec::with_capacity(resolvers.len());
        for (resolver, wanted) in resolvers {
            let max = inner.config.search_max_entries;
            let fits = if max == 0 {
                0
            } else {
                // The window is an entry's lifetime in Redis, so at most two
                // windows' worth of entries exist at once.
                let window = inner.config.policies.ttl(resolver) + stale_window;
                let counter = inner
                    .keys
                    .admission_key(resolver, admission::window_index(now_ms(), window));
                match inner.redis.incr_by(&counter, wanted, window * 2).await {
                    Ok(counted) => admission::within_budget(max, counted, wanted),
                    Err(_) => 0,
                }
            };
            allowed.push((resolver, fits));
        }
        let mut kept = Vec::with_capacity(writes.len());
        let mut releases = Vec::new();
        for write in writes {
            let key = &write.0;
            if key.admission() != Admission::Bounded {
                kept.push(write);
                continue;
            }
            let Some((_, left)) = allowed.iter_mut().find(|(r, _)| *r == key.resolver()) else {
                kept.push(write);
                continue;
            };
            if *left > 0 {
                *left -= 1;
                kept.push(write);
            } else {
                self.record(key, Event::NotAdmitted, "Cache NOT ADMITTED (budget spent)");
                releases.push(Op::Delete {
                    key: inner.keys.lease_key(key.key()).into(),
                });
            }
        }
        if !releases.is_empty() && inner.redis.pipeline(releases).await.is_err() {
            tracing::debug!("Releasing the leases of values over budget failed; they expire");
        }
        kept
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

    /// The in-process tier.
    pub fn local(&self) -> &LocalTier {
        &self.inner.local
    }

    /// How long the loader collects keys before one MGET.
    pub fn batch_window(&self) -> Duration {
        self.inner.config.batch_window
    }
}

impl<'k> Pending<'k> {
    fn new(key: &'k QueryKey, status: CacheStatus) -> Self {
        Self {
            key,
            status,
            generation: None,
            fallback: None,
            is_admitted: true,
        }
    }
}

impl Fetched {
    fn ok(value: SharedValue, status: CacheStatus, tier: Tier, expires_at_ms: u64) -> Self {
        Self {
            value: Ok(value),
            status,
            tier,
            expires_at_ms,
        }
    }
}

fn as_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// `ttl` shortened by a random 0-5 % (at most 30 s).
fn jittered(ttl: Duration) -> Duration {
    let max = ttl.mul_f64(JITTER_FRACTION).min(MAX_JITTER);
    ttl.saturating_sub(max.mul_f64(rand::random::<f64>()))
}

/// XFetch: refresh early with probability rising as expiry nears, more
/// eagerly for values that are slow to load.
fn should_refresh_early(meta: &Meta) -> bool {
    let now = now_ms() as f64;
    let u: f64 = rand::random::<f64>().max(f64::MIN_POSITIVE);
    let gap = -f64::from(meta.load_ms.max(1)) * XFETCH_BETA * u.ln();
    now + gap >= meta.expires_at_ms as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_only_shortens_and_by_at_most_five_percent() {
        for _ in 0..1_000 {
            let ttl = jittered(Duration::from_secs(60));
            assert!(
                ttl <= Duration::from_secs(60) && ttl >= Duration::from_secs(57),
                "{ttl:?}"
            );
        }
        let long = jittered(Duration::from_secs(3_600));
        assert!(long >= Duration::from_secs(3_570));
    }

    #[test]
    fn xfetch_refreshes_near_expiry_not_long_before() {
        let far = Meta {
            generation: String::new(),
            expires_at_ms: now_ms() + 60_000,
            load_ms: 5,
        };
        assert!((0..1_000).all(|_| !should_refresh_early(&far)));
        let due = Meta {
            expires_at_ms: now_ms() + 1,
            load_ms: 50,
            ..far
        };
        assert!((0..1_000).filter(|_| should_refresh_early(&due)).count() > 900);
    }
}
