//! Filling the cache after a miss: each key loads from the database once
//! per process (single-flight) and once across instances (a short Redis
//! lease; the others wait for the value to land), and fresh values are
//! written back, after checking that none of their tags was invalidated
//! while they loaded.
//!
//! [`Fills`] owns the loads in flight, the bound on background write-backs
//! and this instance's lease identity. It reads and writes Redis through
//! [`RedisTier`] and fills the in-process tier ([`LocalTier`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, Shared, join_all};
use tokio::sync::Semaphore;

use super::admission::{self, Admission};
use super::deps::Epoch;
use super::deps::Tag;
use super::envelope::{Meta, RangedStamp, new_generation, now_ms};
use super::invalidation::InvalidationBus;
use super::local::{LocalEntry, LocalTier};
use super::policy::{CachePolicies, Resolver};
use super::query::{Loaded, QueryKey, SharedValue};
use super::ranged::{self, Span};
use super::remote::{Found, RedisTier, TagState, as_ms};
use super::stats::{CacheStats, Event};
use crate::error::AppError;

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

/// How long a finished batch load stays joinable at most. Its values reach
/// the tiers only when their write-back (spawned; two Redis round trips)
/// has run, and a request that missed both tiers meantime would load them
/// again; joining the finished load instead is as fresh as the local hit
/// it would have had (only requests of the same invalidation epoch join).
/// The write-back unregisters it when done; this bounds the case where
/// none runs (the writer's request was dropped, the queue was full).
const BATCH_JOINABLE_FOR: Duration = Duration::from_secs(1);

/// A load that concurrent callers in this process share.
type SharedLoad = Shared<BoxFuture<'static, Result<Filled, Arc<AppError>>>>;

/// An in-flight load and the invalidation epoch it started in: a caller
/// from a later epoch (a write happened since) must not take its possibly
/// older result, and starts its own.
#[derive(Clone)]
struct InflightLoad {
    start: Epoch,
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
pub(super) enum Fill {
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
pub(super) enum Filled {
    /// Loaded from the database by this process.
    Loaded(Loaded),
    /// Another instance held the lease; its value landed in Redis.
    FromRedis(SharedValue),
}

impl Filled {
    pub(super) fn value(&self) -> SharedValue {
        match self {
            Self::Loaded(loaded) => Arc::clone(&loaded.value),
            Self::FromRedis(value) => Arc::clone(value),
        }
    }
}

/// A key of a batch that starts a load of its own.
struct NewLoad {
    key: QueryKey,
    is_refresh: bool,
    /// A fill to be written back ([`Fill::Leased`]): it stays joinable
    /// until its write-back ran.
    is_kept: bool,
    id: u64,
    superseded: Arc<AtomicBool>,
}

/// A value to write back: its key, the load, and the state of each of its
/// tags seen before the load (it commits only if they still admit it).
pub(super) type Write = (QueryKey, Loaded, Vec<TagState>);

/// Loads in flight, leases and write-backs.
pub(super) struct Fills {
    remote: Arc<RedisTier>,
    local: Arc<LocalTier>,
    stats: Arc<CacheStats>,
    bus: Arc<InvalidationBus>,
    policies: CachePolicies,
    /// TTL of a recorded absence.
    not_found_ttl: Duration,
    /// `CACHE_SEARCH_MAX_ENTRIES` (see [`admission`]).
    search_max_entries: u64,
    /// Loads in progress, by key. A std mutex: held only to look up or
    /// insert, never across an await.
    inflight: Mutex<HashMap<Arc<str>, InflightLoad>>,
    /// Bounds background write-backs and refreshes.
    pending_writes: Arc<Semaphore>,
    /// Identifies this process as a lease holder.
    instance: String,
}

/// What [`Fills::new`] needs besides the shared components.
pub(super) struct FillSettings {
    pub(super) policies: CachePolicies,
    pub(super) not_found_ttl: Duration,
    pub(super) search_max_entries: u64,
    pub(super) max_pending_writes: usize,
}

impl Fills {
    pub(super) fn new(
        remote: Arc<RedisTier>,
        local: Arc<LocalTier>,
        stats: Arc<CacheStats>,
        bus: Arc<InvalidationBus>,
        settings: FillSettings,
    ) -> Self {
        Self {
            remote,
            local,
            stats,
            bus,
            policies: settings.policies,
            not_found_ttl: settings.not_found_ttl,
            search_max_entries: settings.search_max_entries,
            inflight: Mutex::new(HashMap::new()),
            pending_writes: Arc::new(Semaphore::new(settings.max_pending_writes.max(1))),
            instance: new_generation().to_string(),
        }
    }

    fn inflight(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, InflightLoad>> {
        self.inflight.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How long a value just filled from the database stays fresh: its
    /// resolver's TTL, or the not-found TTL for a recorded absence (a value
    /// another instance loaded may be either: the shorter one).
    pub(super) fn fresh_ttl(&self, key: &QueryKey, filled: &Filled) -> Duration {
        let ttl = self.policies.ttl(key.resolver());
        match filled {
            Filled::Loaded(loaded) if loaded.is_negative => self.not_found_ttl,
            Filled::Loaded(_) => ttl,
            Filled::FromRedis(_) => ttl.min(self.not_found_ttl),
        }
    }

    /// Loads `key` from the database, or joins a load of it already running
    /// in this process that started in the same invalidation epoch (a
    /// refresh joins only another refresh). Returns whether this caller is
    /// to write the value back: it started the load, and no refresh that
    /// stores took the load's place meanwhile.
    ///
    /// A refresh does not join a plain load: that one may be waiting for
    /// another instance's value (a cached one), or have read the database
    /// before the client asked for fresh data. It starts its own and takes
    /// the plain load's place, so that later readers of the key join the
    /// fresher load, and (when the refresh will be written back) the plain
    /// load is not, so its possibly older value cannot overwrite the
    /// refreshed one. Refreshes join each other: they get a value read at
    /// most one load time before they arrived, and that is what bounds the
    /// database work any number of clients sending `no-cache` can cause to
    /// one load per key and instance at a time.
    pub(super) async fn load_once(
        self: &Arc<Self>,
        key: &QueryKey,
        fill: Fill,
        start: Epoch,
        is_redis_trusted: bool,
    ) -> (Result<Filled, Arc<AppError>>, bool) {
        let is_refresh = matches!(fill, Fill::Refresh { .. });
        let supersedes = fill == Fill::Refresh { is_stored: true };
        let (load, superseded) = {
            let mut inflight = self.inflight();
            match inflight.get(key.key_arc()) {
                Some(running) if running.start == start && (running.is_refresh || !is_refresh) => {
                    (running.load.clone(), None)
                }
                running => {
                    if let Some(running) = running
                        && supersedes
                        && !running.is_refresh
                    {
                        running.superseded.store(true, Ordering::Relaxed);
                    }
                    // A load from before an invalidation may return data the
                    // write replaced: start a fresh one (without the lease,
                    // which that older load of ours may still hold).
                    let use_lease = fill == Fill::Leased && running.is_none() && is_redis_trusted;
                    let id = rand::random::<u64>();
                    let fills = Arc::clone(self);
                    let query = key.clone();
                    let load = async move {
                        let result = fills.load_with_lease(&query, use_lease).await;
                        let mut inflight = fills.inflight();
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
                            start,
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
        let is_writer = superseded.is_some_and(|flag| !flag.load(Ordering::Relaxed));
        (result, is_writer)
    }

    async fn load_with_lease(
        &self,
        key: &QueryKey,
        use_lease: bool,
    ) -> Result<Filled, Arc<AppError>> {
        let mut holds_lease = false;
        if use_lease {
            match self.remote.try_lease(key, &self.instance, LEASE_TTL).await {
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
                    if let Ok(mut looked) = self.remote.lookup(&[key]).await
                        && let Some(Found::Fresh(value, ..)) = looked.pop().map(|l| l.found)
                    {
                        if self
                            .remote
                            .run(vec![self.remote.release_op(key)])
                            .await
                            .is_err()
                        {
                            tracing::debug!("Releasing an unused fill lease failed; it expires");
                        }
                        return Ok(Filled::FromRedis(value));
                    }
                    holds_lease = true;
                }
                Err(()) => {}
            }
        }
        self.stats.record(key.resolver(), Event::Load);
        let loaded = key.load().await.map(Filled::Loaded).map_err(Arc::new);
        if loaded.is_err() && holds_lease {
            // No value will follow: free the lease now, or the next miss of
            // this key (here or on another instance) waits LEASE_WAIT for
            // nothing, which during a database outage turns a fast failure
            // into a one-second one.
            if self
                .remote
                .run(vec![self.remote.release_op(key)])
                .await
                .is_err()
            {
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
            match self.remote.lookup(&[key]).await.ok()?.pop()?.found {
                Found::Fresh(value, ..) => return Some(value),
                _ => continue,
            }
        }
        None
    }

    /// Loads the misses of queries that load in batches (entities): a key
    /// already loading in this process (same invalidation epoch; a refresh
    /// joins only a refresh) joins that load, like [`Fills::load_once`];
    /// the others load together, one `CachedQuery::load_many` per resolver,
    /// each registered as loading so that concurrent batches join it
    /// instead of loading it again, and for [`BATCH_JOINABLE_FOR`] after it
    /// finished (until its write-back has filled the tiers). No fill lease
    /// is taken: one statement per batch bounds the database's work
    /// already. Returns, per item, the outcome and whether this caller is
    /// to write it back.
    pub(super) async fn load_batches<T>(
        self: &Arc<Self>,
        items: Vec<(T, &QueryKey, Fill)>,
        start: Epoch,
    ) -> Vec<(T, Result<Filled, Arc<AppError>>, bool)> {
        let mut waits = Vec::with_capacity(items.len());
        {
            let mut inflight = self.inflight();
            // New loads, grouped by resolver.
            let mut groups: Vec<Vec<NewLoad>> = Vec::new();
            for (item, key, fill) in items {
                let is_refresh = matches!(fill, Fill::Refresh { .. });
                let supersedes = fill == Fill::Refresh { is_stored: true };
                match inflight.get(key.key_arc()) {
                    Some(running)
                        if running.start == start && (running.is_refresh || !is_refresh) =>
                    {
                        waits.push((item, Some(running.load.clone()), None));
                        continue;
                    }
                    Some(running) if supersedes && !running.is_refresh => {
                        running.superseded.store(true, Ordering::Relaxed);
                    }
                    _ => {}
                }
                let superseded = Arc::new(AtomicBool::new(false));
                let id = rand::random::<u64>();
                let entry = NewLoad {
                    key: key.clone(),
                    is_refresh,
                    is_kept: fill == Fill::Leased,
                    id,
                    superseded: Arc::clone(&superseded),
                };
                match groups
                    .iter_mut()
                    .find(|group| group[0].key.resolver() == key.resolver())
                {
                    Some(group) => group.push(entry),
                    None => groups.push(vec![entry]),
                }
                // Its load is known once the group is complete (below).
                waits.push((item, None, Some((Arc::clone(key.key_arc()), superseded))));
            }
            let mut loads: HashMap<Arc<str>, SharedLoad> = HashMap::new();
            for group in groups {
                let keys: Vec<QueryKey> = group.iter().map(|new| new.key.clone()).collect();
                // Refreshes and loads nothing will store are forgotten as
                // soon as they finish (a refresh must not hand its value to
                // one asked for later; `no-store` keeps nothing), the
                // others by their write-back or after BATCH_JOINABLE_FOR
                // (all at once on an error).
                let (kept, passing): (Vec<_>, Vec<_>) = group
                    .iter()
                    .map(|new| (Arc::clone(new.key.key_arc()), new.id, new.is_kept))
                    .partition(|(.., is_kept)| *is_kept);
                let fills = Arc::clone(self);
                let batch = async move {
                    for key in &keys {
                        fills.stats.record(key.resolver(), Event::Load);
                    }
                    let refs: Vec<&QueryKey> = keys.iter().collect();
                    let loaded = QueryKey::load_batch(&refs).await.map_err(Arc::new);
                    fills.forget(&passing);
                    if loaded.is_ok() {
                        let fills = Arc::clone(&fills);
                        tokio::spawn(async move {
                            tokio::time::sleep(BATCH_JOINABLE_FOR).await;
                            fills.forget(&kept);
                        });
                    } else {
                        fills.forget(&kept);
                    }
                    loaded.map(Arc::new)
                }
                .boxed()
                .shared();
                for (index, new) in group.into_iter().enumerate() {
                    let NewLoad {
                        key,
                        is_refresh,
                        is_kept: _,
                        id,
                        superseded,
                    } = new;
                    let load: SharedLoad = batch
                        .clone()
                        .map(move |loaded| {
                            let loaded = loaded?;
                            loaded
                                .get(index)
                                .cloned()
                                .map(Filled::Loaded)
                                .ok_or_else(|| {
                                    Arc::new(AppError::Internal(anyhow::anyhow!(
                                        "a batch load lost a value"
                                    )))
                                })
                        })
                        .boxed()
                        .shared();
                    loads.insert(Arc::clone(key.key_arc()), load.clone());
                    inflight.insert(
                        Arc::clone(key.key_arc()),
                        InflightLoad {
                            start,
                            id,
                            load,
                            is_refresh,
                            superseded,
                        },
                    );
                }
            }
            for (_, load, started) in &mut waits {
                if let (None, Some((key, _))) = (&load, started) {
                    *load = loads.get(key).cloned();
                }
            }
        }
        join_all(waits.into_iter().map(|(item, load, started)| async move {
            let result = match load {
                Some(load) => load.await,
                None => Err(Arc::new(AppError::Internal(anyhow::anyhow!(
                    "a batch load was not started"
                )))),
            };
            // Relaxed suffices: see `load_once`.
            let is_writer = started.is_some_and(|(_, flag)| !flag.load(Ordering::Relaxed));
            (item, result, is_writer)
        }))
        .await
    }

    /// Unregisters the finished loads of `keys` (their write-back ran: the
    /// tiers hold what they loaded, or a newer write made it obsolete).
    fn forget_finished<'k>(&self, keys: impl Iterator<Item = &'k QueryKey>) {
        let mut inflight = self.inflight();
        for key in keys {
            if inflight
                .get(key.key_arc())
                .is_some_and(|running| running.load.peek().is_some())
            {
                inflight.remove(key.key_arc());
            }
        }
    }

    /// Unregisters the loads `(key, id, _)` that are still registered.
    fn forget(&self, loads: &[(Arc<str>, u64, bool)]) {
        let mut inflight = self.inflight();
        for (key, id, _) in loads {
            if inflight.get(key).is_some_and(|running| running.id == *id) {
                inflight.remove(key);
            }
        }
    }

    /// Refreshes `key` in the background (early refresh or revalidation):
    /// one caller per process, one instance via the lease. `generations`:
    /// its tags' generations seen at lookup.
    pub(super) fn spawn_refresh(
        self: &Arc<Self>,
        key: QueryKey,
        generations: Vec<Option<TagState>>,
    ) {
        if self.inflight().contains_key(key.key_arc()) {
            return;
        }
        let Some(generations) = generations.into_iter().collect::<Option<Vec<_>>>() else {
            return;
        };
        let Ok(permit) = Arc::clone(&self.pending_writes).try_acquire_owned() else {
            return;
        };
        let fills = Arc::clone(self);
        tokio::spawn(async move {
            let _permit = permit;
            let start = fills.local.begin();
            let trusted = fills.bus.is_redis_trusted();
            let (filled, is_writer) = fills.load_once(&key, Fill::Leased, start, trusted).await;
            if let (Ok(Filled::Loaded(loaded)), true) = (filled, is_writer) {
                fills
                    .write_back(vec![(key, loaded, generations)], start)
                    .await;
            }
        });
    }

    /// Writes fresh values back off the request path. Bounded: when too
    /// many write-backs are pending (a slow Redis), this one is dropped and
    /// counted instead of piling up.
    pub(super) fn spawn_write_back(self: &Arc<Self>, writes: Vec<Write>, start: Epoch) {
        let Ok(permit) = Arc::clone(&self.pending_writes).try_acquire_owned() else {
            for (key, ..) in &writes {
                self.stats.record(key.resolver(), Event::DroppedWrite);
            }
            return;
        };
        let fills = Arc::clone(self);
        tokio::spawn(async move {
            let _permit = permit;
            let writes = fills.within_budget(writes).await;
            fills.write_back(writes, start).await;
        });
    }

    /// Commits fresh values: re-reads the generations first and skips every
    /// value one of whose tags was invalidated while it loaded (that value
    /// may be older than the write), then writes the rest in one pipeline
    /// and fills the local tier.
    pub(super) async fn write_back(&self, writes: Vec<Write>, start: Epoch) {
        let keys: Vec<QueryKey> = writes.iter().map(|(key, ..)| key.clone()).collect();
        self.commit(writes, start).await;
        self.forget_finished(keys.iter());
    }

    /// [`Fills::write_back`] but for unregistering the loads.
    async fn commit(&self, writes: Vec<Write>, start: Epoch) {
        if writes.is_empty() || !self.bus.is_redis_trusted() {
            return;
        }
        let mut names: Vec<(Tag, Arc<str>)> = writes
            .iter()
            .flat_map(|(key, ..)| {
                key.tags()
                    .iter()
                    .cloned()
                    .zip(key.generation_keys().iter().cloned())
            })
            .collect();
        names.sort_unstable();
        names.dedup();
        let Ok(current) = self.remote.generations(&names).await else {
            for (key, ..) in &writes {
                self.stats.record(key.resolver(), Event::Error);
            }
            return;
        };
        let current: HashMap<&str, Option<TagState>> =
            names.iter().map(|(_, name)| &**name).zip(current).collect();
        let mut ops = Vec::with_capacity(writes.len() * 4);
        let mut committed = Vec::with_capacity(writes.len());
        for (key, loaded, seen) in writes {
            let meta_ranges = stamps(&key, &loaded, &seen);
            // Commit only what the tags still admit: the same tokens the
            // fill started under and, for a ranged tag, no change logged
            // since that touches what the value covers. Anything else means
            // a write (or a lost generation key) happened while it loaded,
            // and the value may predate it.
            let is_unchanged = seen.len() == key.generation_keys().len()
                && key.generation_keys().iter().zip(&seen).enumerate().all(
                    |(index, (name, seen))| {
                        let stamp = meta_ranges
                            .iter()
                            .find(|range| usize::from(range.tag) == index);
                        current
                            .get(&**name)
                            .and_then(Option::as_ref)
                            .is_some_and(|now| now.admits(seen.token, stamp))
                    },
                );
            if !is_unchanged {
                tracing::debug!(
                    key = key.key(),
                    "Skipping a write-back: invalidated while loading"
                );
                // Free the lease anyway, so other instances need not wait
                // for it to expire.
                ops.push(self.remote.release_op(&key));
                continue;
            }
            let ttl = jittered(if loaded.is_negative {
                self.not_found_ttl
            } else {
                self.policies.ttl(key.resolver())
            });
            let meta = Meta {
                generations: seen.iter().map(|state| state.token).collect(),
                ranges: meta_ranges,
                expires_at_ms: now_ms() + as_ms(ttl),
                load_ms: loaded.load_ms,
            };
            ops.extend(self.remote.store_ops(&key, &meta, &loaded.json, ttl));
            committed.push((key, loaded, meta.expires_at_ms));
        }
        if self.remote.run(ops).await.is_err() {
            for (key, ..) in &committed {
                self.stats.record(key.resolver(), Event::Error);
            }
            return;
        }
        for (key, loaded, expires_at_ms) in committed {
            self.fill_local(&key, &loaded, expires_at_ms, start).await;
        }
    }

    /// Copies a value into the in-process tier (unless one of its tags was
    /// invalidated since `start`).
    pub(super) async fn fill_local(
        &self,
        key: &QueryKey,
        loaded: &Loaded,
        expires_at_ms: u64,
        start: Epoch,
    ) {
        self.fill_local_value(
            key,
            &loaded.value,
            &loaded.spans,
            expires_at_ms,
            loaded.json.len(),
            start,
        )
        .await;
    }

    /// Copies `value` (covering `spans` of its ranged tags) into the
    /// in-process tier (unless one of its tags was invalidated since
    /// `start`).
    pub(super) async fn fill_local_value(
        &self,
        key: &QueryKey,
        value: &SharedValue,
        spans: &Arc<[(String, Vec<Span>)]>,
        expires_at_ms: u64,
        weight: usize,
        start: Epoch,
    ) {
        let entry = LocalEntry {
            value: Arc::clone(value),
            tags: Arc::clone(key.tags()),
            spans: Arc::clone(spans),
            expires_at_ms,
            weight: u32::try_from(weight).unwrap_or(u32::MAX),
        };
        self.local
            .insert(Arc::clone(key.key_arc()), entry, start)
            .await;
    }

    /// Keeps the writes of [`Admission::Bounded`] resolvers that fit their
    /// budget of `CACHE_SEARCH_MAX_ENTRIES` per window across instances
    /// ([`admission`]): one `INCRBY` per resolver on the window's counter.
    /// The others are dropped (their leases freed) and counted as not
    /// admitted; so are all of them if the counter cannot be read. Applied
    /// to the write-backs of misses and `no-cache` refreshes, not to the
    /// early and stale-while-revalidate refreshes of an entry already
    /// stored, which replace it rather than add one.
    pub(super) async fn within_budget(&self, writes: Vec<Write>) -> Vec<Write> {
        if !self.bus.is_redis_trusted() {
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
        let mut allowed: Vec<(Resolver, u64)> = Vec::with_capacity(resolvers.len());
        for (resolver, wanted) in resolvers {
            let max = self.search_max_entries;
            let fits = if max == 0 {
                0
            } else {
                // The window is an entry's lifetime in Redis, so at most two
                // windows' worth of entries exist at once.
                let window = self.policies.ttl(resolver) + self.remote.stale_window();
                let counter = self
                    .remote
                    .keys()
                    .admission_key(resolver, admission::window_index(now_ms(), window));
                match self
                    .remote
                    .redis()
                    .incr_by(&counter, wanted, window * 2)
                    .await
                {
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
                self.stats
                    .note(key, Event::NotAdmitted, "Cache NOT ADMITTED (budget spent)");
                releases.push(self.remote.release_op(key));
            }
        }
        if self.remote.run(releases).await.is_err() {
            tracing::debug!("Releasing the leases of values over budget failed; they expire");
        }
        kept
    }
}

/// What a value of `key` covers of each of its ranged tags, as its
/// envelope records it: each ranged tag's log offset before the load
/// (`seen`) and the spans the query gave for it (none: it covers
/// everything, and any change drops it).
fn stamps(key: &QueryKey, loaded: &Loaded, seen: &[TagState]) -> Vec<RangedStamp> {
    key.tags()
        .iter()
        .zip(seen)
        .enumerate()
        .filter(|(_, (tag, _))| ranged::is_ranged(tag))
        .map(|(index, (tag, seen))| RangedStamp {
            tag: u8::try_from(index).unwrap_or(u8::MAX),
            offset: seen.offset(),
            spans: loaded
                .spans
                .iter()
                .find(|(name, _)| name.as_str() == &**tag)
                .map(|(_, spans)| spans.clone())
                .unwrap_or_default(),
        })
        .collect()
}

/// `ttl` shortened by a random 0-5 % (at most 30 s).
pub(super) fn jittered(ttl: Duration) -> Duration {
    let max = ttl.mul_f64(JITTER_FRACTION).min(MAX_JITTER);
    ttl.saturating_sub(max.mul_f64(rand::random::<f64>()))
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
}
