//! The DataLoader between resolvers and the cache.
//!
//! One [`CacheLoader`] lives on the schema for the whole process, so keys
//! from every request arriving within the batching window travel in one
//! batch: one MGET. Its own cache stays off: a process-wide loader cache
//! would be a second cache with no TTL and no invalidation.
//!
//! Resolvers call [`load`], which applies the request's cache directives
//! (`Cache-Control: no-cache` / `no-store`, present in the request data only
//! when the client sent some and they are honoured), records the key and
//! HIT/MISS/BYPASS/STALE/REFRESH for the `x-anigo-cache-debug` response
//! extension, and what the response depends on when the response fast path
//! may keep it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};

use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{Context, ErrorExtensions};
use serde::Serialize;

use crate::cache::entity::{IdList, list_status, record_status};
use crate::cache::{
    Cache, CacheDirectives, CacheStatus, CachedQuery, Dependencies, Fetched, QueryKey, Tier,
};
use crate::error::AppError;
use crate::state::AppState;

/// Header that asks for the cache debug extension.
pub const CACHE_DEBUG_HEADER: &str = "x-anigo-cache-debug";

/// Batches cache reads.
pub struct CacheLoader {
    cache: Cache,
}

impl CacheLoader {
    /// The process-wide loader for `cache`, collecting keys for the cache's
    /// batching window before each batch.
    pub fn data_loader(cache: Cache) -> DataLoader<Self> {
        let window = cache.batch_window();
        DataLoader::new(Self { cache }, tokio::spawn).delay(window)
    }
}

impl Loader<QueryKey> for CacheLoader {
    /// Per-key outcome: one failed load must not fail the batch.
    type Value = Fetched;
    type Error = Infallible;

    async fn load(&self, keys: &[QueryKey]) -> Result<HashMap<QueryKey, Fetched>, Infallible> {
        Ok(self.cache.fetch_many(keys).await)
    }
}

/// Per-request record of cached reads, present when the client sent
/// `x-anigo-cache-debug: 1`. A std mutex: held only to push or read.
#[derive(Clone, Default)]
pub struct CacheTrace(Arc<Mutex<Vec<TraceEntry>>>);

/// One cached read as shown in `extensions.cache`.
#[derive(Clone, Debug, Serialize)]
pub struct TraceEntry {
    /// The resolver (GraphQL field name).
    pub resolver: &'static str,
    /// The Redis key.
    pub key: String,
    /// HIT, PARTIAL (a list: its ids cached, some anime not), MISS,
    /// BYPASS, STALE or REFRESH.
    pub status: CacheStatus,
    /// Which tier answered: local, redis or database.
    pub tier: Tier,
}

impl CacheTrace {
    fn record(&self, entry: TraceEntry) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(entry);
    }

    /// The recorded reads, in completion order.
    pub fn entries(&self) -> Vec<TraceEntry> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Reads `query` through the request's loader and the cache.
pub async fn load<Q: CachedQuery>(
    ctx: &Context<'_>,
    query: Q,
) -> async_graphql::Result<Arc<Q::Output>> {
    let state = ctx.data::<AppState>()?;
    let key = request_key(ctx, state, query);
    let fetched = fetch(ctx, state, &key).await?;
    record(ctx, &key, &fetched, fetched.status);
    fetched
        .typed::<Q::Output>()
        .map_err(|err| err.as_ref().extend())
}

/// One outcome of [`load_all`].
pub type Outcome<T> = Result<Arc<T>, Arc<AppError>>;

/// Reads `queries` (of one type) through the loader and the cache at
/// once: the keys the local tier does not hold go to the loader in one
/// call, so they travel in one batch (one MGET and, for a query that
/// loads in batches, one database load) however long the caller took to
/// build them. One outcome per query, in order; each is recorded as
/// [`load`] records one.
pub async fn load_all<Q: CachedQuery>(
    ctx: &Context<'_>,
    queries: impl IntoIterator<Item = Q>,
) -> async_graphql::Result<Vec<Outcome<Q::Output>>> {
    let state = ctx.data::<AppState>()?;
    let keys: Vec<QueryKey> = queries
        .into_iter()
        .map(|query| request_key(ctx, state, query))
        .collect();
    let fetched = fetch_all(ctx, state, &keys).await?;
    Ok(keys
        .iter()
        .zip(fetched)
        .map(|(key, fetched)| {
            record(ctx, key, &fetched, fetched.status);
            fetched.typed::<Q::Output>()
        })
        .collect())
}

/// Reads list `query` (ids), then the entity `entity(id)` of each id it
/// holds (an anime), through the loader and the cache: the list's entry
/// first, then every entity at once (local tier, one MGET, one statement
/// for what is left). The list's trace entry says HIT, PARTIAL (its ids
/// were cached, some entities were not) or MISS (`cache::entity`).
pub async fn load_list<L, E>(
    ctx: &Context<'_>,
    query: L,
    entity: impl Fn(i32) -> E,
) -> async_graphql::Result<(Arc<L::Output>, Vec<Outcome<E::Output>>)>
where
    L: CachedQuery,
    L::Output: IdList,
    E: CachedQuery,
{
    let state = ctx.data::<AppState>()?;
    let key = request_key(ctx, state, query);
    let fetched = fetch(ctx, state, &key).await?;
    let list = match fetched.typed::<L::Output>() {
        Ok(list) => list,
        Err(err) => {
            record(ctx, &key, &fetched, fetched.status);
            return Err(err.as_ref().extend());
        }
    };
    let keys: Vec<QueryKey> = list
        .ids()
        .iter()
        .map(|&id| request_key(ctx, state, entity(id)))
        .collect();
    let entities = fetch_all(ctx, state, &keys).await?;
    let status = list_status(&fetched, &entities);
    record_status(state.cache.stats(), key.resolver(), status);
    record(ctx, &key, &fetched, status);
    let outcomes = keys
        .iter()
        .zip(entities)
        .map(|(key, fetched)| {
            record(ctx, key, &fetched, fetched.status);
            fetched.typed::<E::Output>()
        })
        .collect();
    Ok((list, outcomes))
}

/// One read: from the local tier, else through the loader's batch.
async fn fetch(
    ctx: &Context<'_>,
    state: &AppState,
    key: &QueryKey,
) -> async_graphql::Result<Fetched> {
    // A local hit needs no batch: answer it without the batching window
    // (a `no-cache` read gets none).
    if let Some(local) = state.cache.get_local(key).await {
        return Ok(local);
    }
    let loader = ctx.data::<Arc<DataLoader<CacheLoader>>>()?;
    match loader.load_one(key.clone()).await {
        Ok(Some(fetched)) => Ok(fetched),
        Ok(None) => Err(lost(key)),
        Err(never) => match never {},
    }
}

/// Many reads: what the local tier holds, the rest in one loader call.
async fn fetch_all(
    ctx: &Context<'_>,
    state: &AppState,
    keys: &[QueryKey],
) -> async_graphql::Result<Vec<Fetched>> {
    let loader = ctx.data::<Arc<DataLoader<CacheLoader>>>()?;
    let mut local = Vec::with_capacity(keys.len());
    for key in keys {
        local.push(state.cache.get_local(key).await);
    }
    let missing: Vec<QueryKey> = keys
        .iter()
        .zip(&local)
        .filter(|(_, fetched)| fetched.is_none())
        .map(|(key, _)| key.clone())
        .collect();
    let loaded = if missing.is_empty() {
        HashMap::new()
    } else {
        match loader.load_many(missing).await {
            Ok(loaded) => loaded,
            Err(never) => match never {},
        }
    };
    keys.iter()
        .zip(local)
        .map(|(key, local)| {
            local
                .or_else(|| loaded.get(key).cloned())
                .ok_or_else(|| lost(key))
        })
        .collect()
}

fn lost(key: &QueryKey) -> async_graphql::Error {
    AppError::Internal(anyhow::anyhow!(
        "cache loader returned no value for {}",
        key.key()
    ))
    .extend()
}

/// The key of `query` under the request's cache directives.
fn request_key<Q: CachedQuery>(ctx: &Context<'_>, state: &AppState, query: Q) -> QueryKey {
    let key = state.cache.query_key(query);
    match ctx.data_opt::<CacheDirectives>() {
        Some(directives) => key.with_directives(*directives),
        None => key,
    }
}

/// Records a read for the response's dependencies and the debug trace
/// (as `status`: a list's may be PARTIAL).
fn record(ctx: &Context<'_>, key: &QueryKey, fetched: &Fetched, status: CacheStatus) {
    if let Some(dependencies) = ctx.data_opt::<Arc<Dependencies>>() {
        dependencies.record(key.tags(), fetched);
    }
    if let Some(trace) = ctx.data_opt::<CacheTrace>() {
        trace.record(TraceEntry {
            resolver: key.resolver().name(),
            key: key.key().to_owned(),
            status,
            tier: fetched.tier,
        });
    }
}
