//! The cache layer every cached read goes through.
//!
//! [`Cache::fetch_many`] serves one batch of reads (all the cached fields of
//! one GraphQL request, or of concurrent requests in the same batching
//! window):
//!
//! 1. the in-process tier answers what it holds, touching nothing else;
//! 2. one MGET reads the rest from Redis, together with the generation keys
//!    of all their tags; an entry is served only if each of its tags'
//!    generations is current (so a write, which replaces the generations of
//!    the tags it changed, invalidates in O(tags), and a lost generation
//!    key can only cause misses);
//! 3. misses load from the database, each key once per process
//!    (single-flight) and once across instances (a short Redis lease; the
//!    others wait for the value to land), or, for queries that load in
//!    batches (entities: anime by id, their relations), one statement for
//!    all the misses of the batch; hot keys are refreshed early by one
//!    caller (XFetch) and expired ones served stale while one refresh runs
//!    or while the database fails;
//! 4. fresh values are written back in the background, in one pipeline,
//!    after checking that none of their tags was invalidated while they
//!    loaded (values of resolvers whose keys are free client input,
//!    searches, only when they pass [`admission`]).
//!
//! Lists, pages, rankings and search results store ordered ids; the anime
//! they name are entities of their own, read through the same path as a
//! second batch ([`entity`]): a list whose ids are cached while some of its
//! entities are not is a PARTIAL hit, and only those entities load.
//!
//! A read whose request said `Cache-Control: no-cache` ([`directive`]) skips
//! steps 1 and 2: it loads (once per process with the other refreshes of
//! its key) and is written back like a miss before it answers; `no-store`
//! keeps a read's loads out of every tier.
//!
//! Redis never fails or stalls a read: while it is down, erroring or slow,
//! reads bypass it and go to the database.
//!
//! Each part is a component that owns its state:
//!
//! | file | owns |
//! |---|---|
//! | [`remote`] | `RedisTier`: entries and generations in Redis (lookups, stores, bumps, leases) |
//! | [`local`] | `LocalTier`: the in-process values (moka) and kept responses, with their dependency index |
//! | [`deps`] | which held entry depends on which tag; the recent-invalidation log |
//! | [`fill`] | `Fills`: single-flight, leases, write-backs, the search budget |
//! | [`invalidation`] | `InvalidationBus`: bumps, deferred bumps, pub/sub, probe, acknowledgements; trust |
//! | [`entity`] | lists of ids and the entities they name: PARTIAL hits |
//! | [`response`] | whole kept responses (the fast path) |
//! | [`persisted`] | automatic persisted query texts |
//! | [`admission`] | which search misses are stored: doorkeeper and budget |
//! | [`admin`] | pattern clears, namespace clears, the admin stats report |
//! | [`policy`] | per-resolver name, prefix and TTL |
//! | [`query`] | `CachedQuery` (what a resolver declares) and batching keys |
//! | [`envelope`] | the stored value format (generations, ranges, expiry, load time) |
//! | [`ranged`] | ranged tags: logs of value changes, and the spans an entry covers |
//! | [`codec`] | compression of stored values: lz4, zstd, zstd with a trained dictionary |
//! | [`dictionary`] | the namespace's dictionary: trained from the catalogue, shared through Redis |
//! | [`key`] | key format `{namespace}:{version}:{prefix}:{params}` |
//! | [`directive`] | the request's `Cache-Control` / `Pragma` directives |
//! | [`stats`] | hit/miss/partial/error counters per resolver |

pub mod admin;
pub mod admission;
pub mod codec;
pub mod deps;
pub mod dictionary;
pub mod directive;
pub mod entity;
pub mod envelope;
pub mod fill;
pub mod invalidation;
pub mod key;
pub mod local;
pub mod persisted;
pub mod policy;
pub mod query;
pub mod ranged;
pub mod remote;
pub mod response;
pub mod stats;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use futures_util::future::join_all;
use sha2::{Digest as _, Sha256};

use self::admission::{Admission, Doorkeeper};
use self::codec::{Codec, Compression};
use self::dictionary::{DictionaryKeeper, Samples};
use self::envelope::{Meta, now_ms};
use self::fill::{Fill, FillSettings, Filled, Fills, Write};
use self::invalidation::InvalidationBus;
use self::local::LocalTier;
use self::remote::{Found, RedisTier, TagState, as_ms};
use self::response::hex;
use self::stats::ResponseEvent;
use crate::error::AppError;
use crate::redis::RedisStore;

pub use self::deps::Tag;
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
    /// `CACHE_COMPRESSION`: how values stored in Redis are compressed
    /// ([`codec`]).
    pub compression: Compression,
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
            compression: Compression::default(),
        }
    }
}

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

/// The cache facade. Cheap to clone.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

/// The components the facade composes; each owns its state.
struct Inner {
    config: CacheConfig,
    /// Entries and generations in Redis.
    remote: Arc<RedisTier>,
    /// The in-process values and kept responses.
    local: Arc<LocalTier>,
    /// Counters, read by `cacheStats` and `/metrics`.
    stats: Arc<CacheStats>,
    /// Bumps, pub/sub, trust.
    bus: Arc<InvalidationBus>,
    /// Loads in flight, leases, write-backs.
    fills: Arc<Fills>,
    /// Automatic persisted query texts.
    persisted: persisted::PersistedQueries,
    /// Search keys missed recently ([`admission`]).
    doorkeeper: Doorkeeper,
}

/// A key still to load, with what the lookup learned.
struct Pending<'k> {
    key: &'k QueryKey,
    status: CacheStatus,
    /// The states of the key's tags seen at lookup (`None`: absent); a
    /// write-back commits only if they are all present and still admit it.
    generations: Vec<Option<TagState>>,
    /// An expired value that may stand in if the load fails.
    fallback: Option<(SharedValue, Meta)>,
    /// Whether a value it loads may be stored: false when the key's
    /// admission refused it ([`admission`]); it is then served like a
    /// `no-store` read (and never kept as part of a whole response).
    is_admitted: bool,
}

impl Pending<'_> {
    /// Whether a value it loads is to be stored (so it needs generations).
    fn is_stored(&self) -> bool {
        matches!(self.status, CacheStatus::Miss | CacheStatus::Refresh)
            && !self.key.directives().has_no_store
            && self.is_admitted
    }

    /// How its load fills the key.
    fn fill(&self) -> Fill {
        if self.key.directives().has_no_cache {
            Fill::Refresh {
                is_stored: self.status == CacheStatus::Refresh && self.is_stored(),
            }
        } else if self.status == CacheStatus::Miss && self.is_stored() {
            Fill::Leased
        } else {
            // A bypass, or a `no-store` miss: holding the lease would make
            // other instances wait for a value it never writes.
            Fill::Direct
        }
    }

    /// The states to commit under, when every tag has one.
    fn complete_generations(&self) -> Option<Vec<TagState>> {
        self.generations.iter().cloned().collect()
    }
}

impl Cache {
    /// A cache over `redis` with `config`.
    pub fn new(redis: RedisStore, config: CacheConfig) -> Self {
        let keys = KeySpace::new(&config.namespace);
        let remote = Arc::new(RedisTier::new(
            redis,
            keys,
            Arc::new(Codec::new(config.compression)),
            config.stale_while_revalidate,
            config.stale_if_error,
        ));
        let local = Arc::new(LocalTier::new(
            config.local_max_bytes,
            config.response_max_bytes,
        ));
        let stats = Arc::new(CacheStats::default());
        let bus = Arc::new(InvalidationBus::new(
            Arc::clone(&remote),
            Arc::clone(&local),
        ));
        let fills = Arc::new(Fills::new(
            Arc::clone(&remote),
            Arc::clone(&local),
            Arc::clone(&stats),
            Arc::clone(&bus),
            FillSettings {
                policies: config.policies.clone(),
                not_found_ttl: config.not_found_ttl,
                search_max_entries: config.search_max_entries,
                max_pending_writes: config.max_pending_writes,
            },
        ));
        let doorkeeper = Doorkeeper::new(
            usize::try_from(config.search_max_entries.min(MAX_DOORKEEPER_ENTRIES)).unwrap_or(1),
            DOORKEEPER_WINDOW,
        );
        bus.drop_local_tier_on_reconnect();
        Self {
            inner: Arc::new(Inner {
                config,
                remote,
                local,
                stats,
                bus,
                fills,
                persisted: persisted::PersistedQueries::default(),
                doorkeeper,
            }),
        }
    }

    /// The batching key for `query`.
    pub fn query_key<Q: CachedQuery>(&self, query: Q) -> QueryKey {
        QueryKey::new(self.keys(), query)
    }

    /// Reads one query through the cache (a batch of one): for callers
    /// outside GraphQL, such as benchmarks and tools.
    pub async fn get<Q: CachedQuery>(&self, query: Q) -> Result<Arc<Q::Output>, Arc<AppError>> {
        self.get_many(std::iter::once(query))
            .await
            .pop()
            .unwrap_or_else(|| {
                Err(Arc::new(AppError::Internal(anyhow::anyhow!(
                    "cache batch lost a key"
                ))))
            })
    }

    /// Reads `queries` (of one type) through the cache as one batch: for
    /// callers outside GraphQL.
    pub async fn get_many<Q: CachedQuery>(
        &self,
        queries: impl IntoIterator<Item = Q>,
    ) -> Vec<Result<Arc<Q::Output>, Arc<AppError>>> {
        let keys: Vec<QueryKey> = queries
            .into_iter()
            .map(|query| self.query_key(query))
            .collect();
        self.read_all(&keys)
            .await
            .iter()
            .map(Fetched::typed::<Q::Output>)
            .collect()
    }

    /// Reads `keys`: what the in-process tier holds, the rest as one batch
    /// (what the GraphQL loader does, without its batching window).
    pub(crate) async fn read_all(&self, keys: &[QueryKey]) -> Vec<Fetched> {
        let mut found = Vec::with_capacity(keys.len());
        let mut missing = Vec::new();
        for key in keys {
            let local = self.get_local(key).await;
            if local.is_none() {
                missing.push(key.clone());
            }
            found.push(local);
        }
        let mut fetched = if missing.is_empty() {
            HashMap::new()
        } else {
            self.fetch_many(&missing).await
        };
        keys.iter()
            .zip(found)
            .map(|(key, local)| {
                local
                    .or_else(|| fetched.remove(key))
                    .unwrap_or_else(|| Fetched {
                        value: Err(Arc::new(AppError::Internal(anyhow::anyhow!(
                            "cache batch lost a key"
                        )))),
                        status: CacheStatus::Bypass,
                        tier: Tier::Database,
                        expires_at_ms: 0,
                    })
            })
            .collect()
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
            || !inner.bus.is_memory_trusted()
        {
            return None;
        }
        let (value, expires_at_ms) = inner.local.get(key.key()).await?;
        inner.stats.note(key, Event::Hit, "Cache HIT");
        Some(Fetched::ok(
            value,
            CacheStatus::Hit,
            Tier::Local,
            expires_at_ms,
        ))
    }

    /// Serves a batch of reads that the in-process tier did not answer
    /// (callers ask [`Cache::get_local`] first); every key gets an entry in
    /// the result. Each key's [`CacheDirectives`] apply to it alone: a
    /// `no-cache` key is not looked up but refreshed, a `no-store` key is
    /// looked up as usual but nothing it loads is stored.
    pub async fn fetch_many(&self, keys: &[QueryKey]) -> HashMap<QueryKey, Fetched> {
        let inner = &*self.inner;
        let start = inner.local.begin();
        let mut results = HashMap::with_capacity(keys.len());
        let mut pending: Vec<Pending<'_>> = Vec::new();
        let mut lookups: Vec<&QueryKey> = Vec::new();
        for key in keys {
            if !inner.config.policies.is_enabled(key.resolver()) || !key.is_storable() {
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
            let looked = if inner.bus.is_redis_trusted() {
                let looked = inner.remote.lookup(&lookups).await;
                if looked.is_err() {
                    for key in &lookups {
                        inner.stats.record(key.resolver(), Event::Error);
                    }
                }
                looked.ok()
            } else {
                None
            };
            match looked {
                None => {
                    for key in lookups {
                        inner.stats.note(key, Event::Bypass, "Cache BYPASS");
                        pending.push(Pending::new(key, CacheStatus::Bypass));
                    }
                }
                Some(looked) => {
                    for (key, looked) in lookups.into_iter().zip(looked) {
                        if let Some(fetched) = self.found(key, looked, start, &mut pending).await {
                            results.insert(key.clone(), fetched);
                        }
                    }
                }
            }
        }

        self.admit(&mut pending);
        self.ensure_generations(&mut pending).await;

        // Misses of resolvers that load in batches: one load per resolver.
        let is_trusted = inner.bus.is_redis_trusted();
        let (batched, single): (Vec<Pending<'_>>, Vec<Pending<'_>>) = pending
            .into_iter()
            .partition(|item| item.key.loads_in_batches());
        let batch_loads = inner.fills.load_batches(
            batched
                .into_iter()
                .map(|item| {
                    let (key, fill) = (item.key, item.fill());
                    (item, key, fill)
                })
                .collect(),
            start,
        );
        let single_loads = join_all(single.into_iter().map(|item| async move {
            let fill = item.fill();
            let (filled, is_writer) = inner
                .fills
                .load_once(item.key, fill, start, is_trusted)
                .await;
            (item, filled, is_writer)
        }));
        let (single_loads, batch_loads) =
            futures_util::future::join(single_loads, batch_loads).await;

        let mut writes: Vec<Write> = Vec::new();
        let mut refreshed: Vec<Write> = Vec::new();
        for (item, filled, is_writer) in single_loads.into_iter().chain(batch_loads) {
            let key = item.key;
            let fetched = match filled {
                Ok(filled) => {
                    let is_fill = matches!(item.status, CacheStatus::Miss | CacheStatus::Refresh);
                    if let Filled::Loaded(loaded) = &filled
                        && is_writer
                        && item.is_stored()
                        && let Some(generations) = item.complete_generations()
                    {
                        // Only misses and refreshes are written back (a
                        // bypass means Redis is down or caching is off),
                        // only by the caller that ran the load, and never
                        // for `no-store` or a value admission refused.
                        let write = (key.clone(), loaded.clone(), generations);
                        if item.status == CacheStatus::Refresh {
                            refreshed.push(write);
                        } else {
                            writes.push(write);
                        }
                    }
                    // Not admitted: nothing holds it, so nothing built
                    // from it (a whole response) may be kept either.
                    let expires_at_ms = if is_fill && item.is_admitted {
                        now_ms() + as_ms(inner.fills.fresh_ttl(key, &filled))
                    } else {
                        0
                    };
                    Fetched::ok(filled.value(), item.status, Tier::Database, expires_at_ms)
                }
                Err(err) => self.failed(key, item.status, item.fallback, err),
            };
            results.insert(key.clone(), fetched);
        }
        if !writes.is_empty() {
            inner.fills.spawn_write_back(writes, start);
        }
        if !refreshed.is_empty() {
            // A refresh stores before it answers: the client's next plain
            // read (on this instance, or through Redis on any) finds what it
            // just loaded rather than the value it asked to replace.
            let refreshed = inner.fills.within_budget(refreshed).await;
            inner.fills.write_back(refreshed, start).await;
        }
        results
    }

    /// What a lookup of `key` found: a value to answer with now, or (for a
    /// miss) an entry pushed to `pending`.
    async fn found<'k>(
        &self,
        key: &'k QueryKey,
        looked: remote::Looked,
        start: deps::Epoch,
        pending: &mut Vec<Pending<'k>>,
    ) -> Option<Fetched> {
        let inner = &*self.inner;
        // `no-store`: served from the cache, but nothing refreshed or
        // copied into memory on its account.
        let may_store = !key.directives().has_no_store;
        let generations = looked.generations;
        match looked.found {
            Found::Fresh(value, meta, weight) => {
                inner.stats.note(key, Event::Hit, "Cache HIT");
                if may_store {
                    if should_refresh_early(&meta) {
                        inner.fills.spawn_refresh(key.clone(), generations);
                    }
                    inner
                        .fills
                        .fill_local_value(
                            key,
                            &value,
                            &spans_of(key, &meta),
                            meta.expires_at_ms,
                            weight,
                            start,
                        )
                        .await;
                }
                Some(Fetched::ok(
                    value,
                    CacheStatus::Hit,
                    Tier::Redis,
                    meta.expires_at_ms,
                ))
            }
            Found::Revalidate(value) => {
                inner.stats.note(key, Event::Hit, "Cache STALE");
                if may_store {
                    inner.fills.spawn_refresh(key.clone(), generations);
                }
                Some(Fetched::ok(value, CacheStatus::Stale, Tier::Redis, 0))
            }
            Found::Expired(value, meta) => {
                inner.stats.note(key, Event::Miss, "Cache MISS");
                pending.push(Pending {
                    key,
                    status: CacheStatus::Miss,
                    generations,
                    fallback: Some((value, meta)),
                    is_admitted: true,
                });
                None
            }
            Found::Missing => {
                inner.stats.note(key, Event::Miss, "Cache MISS");
                pending.push(Pending {
                    key,
                    status: CacheStatus::Miss,
                    generations,
                    fallback: None,
                    is_admitted: true,
                });
                None
            }
        }
    }

    /// The outcome of a failed load: the expired value when one may stand
    /// in (stale-if-error), else the error.
    fn failed(
        &self,
        key: &QueryKey,
        status: CacheStatus,
        fallback: Option<(SharedValue, Meta)>,
        err: Arc<AppError>,
    ) -> Fetched {
        let stale_ms = as_ms(self.inner.remote.stale_if_error());
        match fallback {
            Some((value, meta)) if now_ms() < meta.expires_at_ms + stale_ms => {
                let age_ms = now_ms().saturating_sub(meta.expires_at_ms);
                if err.is_refused_by_breaker() {
                    // The breaker announced the outage once; a line per
                    // stale answer would flood the log.
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
                status,
                tier: Tier::Database,
                expires_at_ms: 0,
            },
        }
    }

    /// A `no-cache` read: nothing is looked up; it loads from the database
    /// and, while Redis is trusted, fills under the tags' current
    /// generations like a miss. Without Redis it is a bypass (nothing could
    /// be stored safely).
    fn refresh<'k>(&self, key: &'k QueryKey) -> Pending<'k> {
        let inner = &*self.inner;
        if inner.bus.is_redis_trusted() {
            inner.stats.note(key, Event::Refresh, "Cache REFRESH");
            Pending::new(key, CacheStatus::Refresh)
        } else {
            inner.stats.note(key, Event::Bypass, "Cache BYPASS");
            Pending::new(key, CacheStatus::Bypass)
        }
    }

    /// Applies the doorkeeper ([`admission`]) to the misses and refreshes of
    /// [`Admission::Bounded`] keys that would be stored: the first sighting
    /// of a key is served but not stored.
    fn admit(&self, pending: &mut [Pending<'_>]) {
        for item in pending.iter_mut() {
            if item.key.admission() == Admission::Bounded
                && item.is_stored()
                && !self.inner.doorkeeper.admit(item.key.key())
            {
                item.is_admitted = false;
                self.inner
                    .stats
                    .note(item.key, Event::NotAdmitted, "Cache NOT ADMITTED");
            }
        }
    }

    /// Gives every miss and refresh that will be stored a concrete
    /// generation for each of its tags to fill under. A tag with no
    /// generation key (first fill, or the key was evicted) gets one created
    /// now, before the load: "absent" cannot prove that no invalidation
    /// happened meanwhile (absent, bumped, evicted, absent again), while a
    /// random token that is still in place can. A refresh looked nothing
    /// up, so it reads the current generations here, also before its load.
    /// If Redis does not answer, those reads are served without a
    /// write-back.
    async fn ensure_generations(&self, pending: &mut [Pending<'_>]) {
        let needs =
            |item: &Pending<'_>| item.is_stored() && item.generations.iter().any(Option::is_none);
        let mut names: Vec<(&str, &str)> = pending
            .iter()
            .filter(|item| needs(item))
            .flat_map(|item| {
                item.key
                    .tags()
                    .iter()
                    .zip(item.key.generation_keys())
                    .zip(&item.generations)
                    .filter(|(_, seen)| seen.is_none())
                    .map(|((tag, name), _)| (&**tag, &**name))
            })
            .collect();
        names.sort_unstable();
        names.dedup();
        if names.is_empty() {
            return;
        }
        let tokens = self
            .inner
            .remote
            .ensure_generations(&names)
            .await
            .unwrap_or_else(|| vec![None; names.len()]);
        let by_name: HashMap<&str, Option<TagState>> = names
            .into_iter()
            .map(|(_, name)| name)
            .zip(tokens)
            .collect();
        for item in pending.iter_mut() {
            if !needs(item) {
                continue;
            }
            let seen = std::mem::take(&mut item.generations);
            item.generations = item
                .key
                .generation_keys()
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    seen.get(i)
                        .cloned()
                        .flatten()
                        .or_else(|| by_name.get(&**name).cloned().flatten())
                })
                .collect();
            if item.complete_generations().is_none() {
                // No generation to stamp: serve without caching.
                item.status = CacheStatus::Bypass;
            }
        }
    }

    /// Invalidates `tags` everywhere (see [`invalidation`]): this
    /// instance's in-process tiers at once, Redis entries through their
    /// generations, other instances' in-process tiers through pub/sub,
    /// waiting for their acknowledgements. Returns the number of tags.
    pub async fn invalidate(&self, tags: Vec<String>) -> Result<u64, AppError> {
        Ok(self.inner.bus.invalidate(tags, Vec::new()).await)
    }

    /// Invalidates `tags` and logs `changes` against their ranged tags
    /// (`ranged`), everywhere, as [`Cache::invalidate`] does.
    pub async fn invalidate_with_changes(
        &self,
        tags: Vec<String>,
        changes: Vec<(String, ranged::Change)>,
    ) -> Result<u64, AppError> {
        Ok(self.inner.bus.invalidate(tags, changes).await)
    }

    /// Keeps the namespace's compression dictionary in the background
    /// (`CACHE_COMPRESSION=zstd-dictionary`, the default; see
    /// [`dictionary`]), training it from `samples` when there is none.
    pub fn keep_dictionary(&self, samples: Samples) {
        if self.inner.config.compression == Compression::ZstdDictionary {
            DictionaryKeeper::new(
                Arc::clone(&self.inner.remote),
                Arc::clone(self.inner.remote.codec()),
                samples,
            )
            .start();
        }
    }

    /// The id of the dictionary new values are compressed with, once one
    /// is installed.
    pub fn compression_dictionary(&self) -> Option<u32> {
        self.inner.remote.codec().current().map(|d| d.id())
    }

    /// Starts listening for other instances' invalidations (see
    /// [`invalidation`]).
    pub fn listen_for_invalidations(&self) {
        self.inner.bus.listen();
    }

    /// Whether this instance hears other instances' invalidations now.
    pub fn is_listening(&self) -> bool {
        self.inner.bus.is_listening()
    }

    /// Tells every instance to drop its in-process tiers (after a clear).
    pub(crate) async fn broadcast_clear(&self) {
        self.inner.bus.broadcast_clear().await;
    }

    /// Whether whole responses are kept (`CACHE_RESPONSES`).
    pub fn is_response_cache_enabled(&self) -> bool {
        self.inner.local.responses_enabled()
    }

    /// The invalidation epoch to read before executing a request whose
    /// response may be kept; pass it to [`Cache::store_response`].
    pub fn response_epoch(&self) -> deps::Epoch {
        self.inner.local.begin()
    }

    /// The kept response for `key`, if there is a current one. Like the
    /// in-process value tier, it is trusted only while this instance hears
    /// other instances' invalidations and Redis holds every generation bump.
    pub async fn cached_response(&self, key: &ResponseKey) -> Option<Arc<StoredResponse>> {
        if !self.is_response_cache_enabled() {
            return None;
        }
        if !self.inner.bus.is_memory_trusted() {
            self.inner.stats.record_response(ResponseEvent::Bypass);
            return None;
        }
        let found = self.inner.local.get_response(key).await;
        self.inner.stats.record_response(if found.is_some() {
            ResponseEvent::Hit
        } else {
            ResponseEvent::Miss
        });
        found
    }

    /// Keeps `body` as the response for `key` if everything it was built
    /// from (`dependencies`) was fresh and none of its tags was invalidated
    /// since `start`. Returns the kept response (for its `ETag` and
    /// `max-age`), or `None` when it may not be reused.
    pub async fn store_response(
        &self,
        key: ResponseKey,
        body: Bytes,
        dependencies: &Dependencies,
        start: deps::Epoch,
    ) -> Option<Arc<StoredResponse>> {
        if !self.is_response_cache_enabled() || !self.inner.bus.is_memory_trusted() {
            return None;
        }
        let digest = hex(&Sha256::digest(&body)[..16]);
        let response = Arc::new(dependencies.to_response(body, &digest, start)?);
        if !self
            .inner
            .local
            .insert_response(key, Arc::clone(&response))
            .await
        {
            return None;
        }
        self.inner.stats.record_response(ResponseEvent::Stored);
        Some(response)
    }

    /// The query text registered under `hash` (automatic persisted
    /// queries): from memory, else from Redis (then kept in memory). `None`
    /// when unknown or Redis is away.
    pub async fn persisted_query(&self, hash: &[u8; 32]) -> Option<Arc<str>> {
        self.inner.persisted.get(&self.inner.remote, hash).await
    }

    /// Registers `text` under `hash` (its SHA-256, already checked), in
    /// memory and in Redis.
    pub async fn persist_query(&self, hash: [u8; 32], text: Arc<str>) {
        self.inner
            .persisted
            .put(&self.inner.remote, hash, text)
            .await;
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
        self.inner.remote.keys()
    }

    /// The Redis connection.
    pub fn redis(&self) -> &RedisStore {
        self.inner.remote.redis()
    }

    /// The in-process tiers.
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
            // Nothing looked up (a refresh or a bypass): every tag unknown.
            generations: vec![None; key.generation_keys().len()],
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

/// What an entry of `key` stored under `meta` covers of its ranged tags,
/// by tag name.
fn spans_of(key: &QueryKey, meta: &Meta) -> Arc<[(String, Vec<ranged::Span>)]> {
    meta.ranges
        .iter()
        .filter_map(|range| {
            let tag = key.tags().get(usize::from(range.tag))?;
            Some((tag.to_string(), range.spans.clone()))
        })
        .collect()
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
    fn xfetch_refreshes_near_expiry_not_long_before() {
        let far = Meta {
            generations: Vec::new(),
            ranges: Vec::new(),
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
