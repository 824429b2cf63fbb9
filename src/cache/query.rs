//! What a cached resolver declares, and the type-erased form the cache
//! batches.
//!
//! A cached resolver implements [`CachedQuery`]: which [`Resolver`] policy
//! it follows, its parameters (in fixed order, for the key) and its database
//! load. The cache handles everything else. Queries of different types travel
//! together in one batch (one MGET) as [`QueryKey`]s, which compare by their
//! Redis key and the request's cache directives, and carry the query behind
//! a trait object. So a refresh (`no-cache`) and a plain read of one key in
//! the same batch stay two reads with their own outcomes.
//!
//! A query whose misses are cheaper to load together than one by one (the
//! relations of many anime: one `WHERE anime_id IN (…)` instead of one
//! statement per anime) sets [`CachedQuery::LOADS_IN_BATCHES`] and
//! implements [`CachedQuery::load_many`]: the misses of one batch of its
//! resolver then load with one call.
//!
//! A query whose keys come from free client input (a search text) sets
//! [`CachedQuery::ADMISSION`] to [`Admission::Bounded`]: its misses are
//! stored only when they pass the cache's admission (`cache::admission`).

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::admission::Admission;
use super::deps::Tag;
use super::directive::CacheDirectives;
use super::envelope::{self, MAX_TAGS, Meta};
use super::key::KeySpace;
use super::policy::Resolver;
use super::ranged::Span;
use crate::error::AppError;

/// A loaded value shared by every request that asked for it.
pub type SharedValue = Arc<dyn Any + Send + Sync>;

/// A resolver's cacheable read: its policy, key parameters and load.
pub trait CachedQuery: Send + Sync + 'static {
    /// What the load returns and the cache stores (as JSON).
    type Output: Serialize + DeserializeOwned + Send + Sync + 'static;

    /// The policy (prefix, TTL) this query follows.
    const RESOLVER: Resolver;

    /// Key parameters in a fixed order, e.g. `page=3:per_page=20`.
    fn params(&self) -> String;

    /// The invalidation tags: a write that can change this query's result
    /// bumps at least one of them (the service's invalidation policy says
    /// which, e.g. `anime:42` for one anime, the tags of the fields a list
    /// is ordered and filtered by for a list). Defaults to the resolver's
    /// prefix alone (any write to the resolver's data invalidates every
    /// entry of it). At most [`MAX_TAGS`].
    fn tags(&self) -> Vec<String> {
        vec![Self::RESOLVER.prefix().to_owned()]
    }

    /// What `output` covers of each of its ranged tags (`cache::ranged`:
    /// tags whose name starts with `~`), e.g. a page of a ranking by score
    /// covers the scores from its last item's to its first's. A ranged tag
    /// left out here is covered whole: any change logged against it drops
    /// the entry.
    fn spans(&self, _output: &Self::Output) -> Vec<(String, Vec<Span>)> {
        Vec::new()
    }

    /// Whether a result records an absence (cached for the shorter
    /// not-found TTL).
    fn is_negative(_output: &Self::Output) -> bool {
        false
    }

    /// Which of this query's misses are stored: every one (the default),
    /// or, for keys made of free client input, only those the cache's
    /// admission lets through (`cache::admission`). A miss not admitted is
    /// served from the database like any other and simply not written.
    const ADMISSION: Admission = Admission::Always;

    /// Reads the value from the database (called on a miss or bypass).
    fn load(&self) -> impl Future<Output = Result<Self::Output, AppError>> + Send;

    /// Whether the misses of one batch load together through
    /// [`CachedQuery::load_many`] rather than one [`CachedQuery::load`]
    /// each. Such loads skip the per-key single-flight and fill leases:
    /// they are meant for cheap statements that answer many keys at once,
    /// where one statement per batch bounds the database's work already.
    const LOADS_IN_BATCHES: bool = false;

    /// Reads the values of `queries` at once, in their order (one output
    /// per query). The default loads them one by one.
    fn load_many(
        queries: &[&Self],
    ) -> impl Future<Output = Result<Vec<Self::Output>, AppError>> + Send {
        futures_util::future::try_join_all(queries.iter().map(|query| query.load()))
    }
}

/// A value fresh from the database, with its JSON for the write-back.
#[derive(Clone)]
pub struct Loaded {
    /// The value.
    pub value: SharedValue,
    /// Its JSON (the envelope's payload), also its weight in the local
    /// tier.
    pub json: Arc<[u8]>,
    /// Whether it records an absence.
    pub is_negative: bool,
    /// What it covers of its ranged tags ([`CachedQuery::spans`]).
    pub spans: Arc<[(String, Vec<Span>)]>,
    /// How long the load took.
    pub load_ms: u32,
}

/// Why a stored entry could not be read back: a malformed envelope, or a
/// payload of another shape (treated as a miss and overwritten).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The envelope.
    #[error(transparent)]
    Envelope(#[from] envelope::DecodeError),
    /// The payload's JSON.
    #[error("payload: {0}")]
    Payload(#[from] serde_json::Error),
}

/// Object-safe view of a [`CachedQuery`].
trait ErasedQuery: Send + Sync {
    fn load(&self) -> BoxFuture<'_, Result<Loaded, AppError>>;
    fn decode(&self, bytes: &[u8]) -> Result<(Meta, SharedValue, usize), DecodeError>;
    fn loads_in_batches(&self) -> bool;
    fn admission(&self) -> Admission;
    fn as_any(&self) -> &dyn Any;
    /// Loads `queries` (this query's type, this one among them) with one
    /// [`CachedQuery::load_many`]; `None` when one of them is of another
    /// type.
    fn load_batch<'a>(
        &'a self,
        queries: &'a [&'a dyn ErasedQuery],
    ) -> Option<BoxFuture<'a, Result<Vec<Loaded>, AppError>>>;
}

/// Milliseconds since `started`, saturated.
fn elapsed_ms(started: std::time::Instant) -> u32 {
    u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX)
}

/// A freshly loaded value of `query` with its JSON.
fn loaded<Q: CachedQuery>(query: &Q, value: Q::Output, load_ms: u32) -> Result<Loaded, AppError> {
    let json = serde_json::to_vec(&value).map_err(|err| {
        AppError::Internal(anyhow::Error::new(err).context("serializing a value for the cache"))
    })?;
    Ok(Loaded {
        is_negative: Q::is_negative(&value),
        spans: query.spans(&value).into(),
        value: Arc::new(value) as SharedValue,
        json: json.into(),
        load_ms,
    })
}

impl<Q: CachedQuery> ErasedQuery for Q {
    fn load(&self) -> BoxFuture<'_, Result<Loaded, AppError>> {
        Box::pin(async move {
            let started = std::time::Instant::now();
            let value = CachedQuery::load(self).await?;
            loaded::<Q>(self, value, elapsed_ms(started))
        })
    }

    fn loads_in_batches(&self) -> bool {
        Q::LOADS_IN_BATCHES
    }

    fn admission(&self) -> Admission {
        Q::ADMISSION
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn load_batch<'a>(
        &'a self,
        queries: &'a [&'a dyn ErasedQuery],
    ) -> Option<BoxFuture<'a, Result<Vec<Loaded>, AppError>>> {
        let typed: Vec<&Q> = queries
            .iter()
            .map(|query| query.as_any().downcast_ref::<Q>())
            .collect::<Option<_>>()?;
        Some(Box::pin(async move {
            let started = std::time::Instant::now();
            let values = Q::load_many(&typed).await?;
            if values.len() != typed.len() {
                return Err(AppError::Internal(anyhow::anyhow!(
                    "{} loaded {} values for {} keys",
                    Q::RESOLVER.name(),
                    values.len(),
                    typed.len()
                )));
            }
            // The statement's time, charged to each value: XFetch weighs a
            // value's early refresh by what reloading it costs.
            let load_ms = elapsed_ms(started);
            typed
                .iter()
                .zip(values)
                .map(|(query, value)| loaded::<Q>(query, value, load_ms))
                .collect()
        }))
    }

    fn decode(&self, bytes: &[u8]) -> Result<(Meta, SharedValue, usize), DecodeError> {
        let (meta, payload) = envelope::unwrap(bytes)?;
        let value: Q::Output = serde_json::from_slice(&payload)?;
        Ok((meta, Arc::new(value) as SharedValue, payload.len()))
    }
}

/// One cached read in a batch, identified by its Redis key and directives.
#[derive(Clone)]
pub struct QueryKey {
    key: Arc<str>,
    /// The invalidation tags, in the order the envelope records their
    /// generations.
    tags: Arc<[Tag]>,
    /// The generation key of each tag, in the same order.
    generation_keys: Arc<[Arc<str>]>,
    resolver: Resolver,
    /// What the request asked of the cache (`Cache-Control`).
    directives: CacheDirectives,
    query: Arc<dyn ErasedQuery>,
}

impl QueryKey {
    /// Wraps `query`, computing its keys in `keys`.
    pub fn new<Q: CachedQuery>(keys: &KeySpace, query: Q) -> Self {
        let mut tags = query.tags();
        tags.sort_unstable();
        tags.dedup();
        Self {
            key: keys.key(Q::RESOLVER, &query.params()).into(),
            generation_keys: tags
                .iter()
                .map(|tag| Arc::from(keys.generation_key(tag)))
                .collect(),
            tags: tags.into_iter().map(Tag::from).collect(),
            resolver: Q::RESOLVER,
            directives: CacheDirectives::default(),
            query: Arc::new(query),
        }
    }

    /// The same read under the request's cache `directives`.
    #[must_use]
    pub fn with_directives(mut self, directives: CacheDirectives) -> Self {
        self.directives = directives;
        self
    }

    /// The request's cache directives (default: a plain cached read).
    pub fn directives(&self) -> CacheDirectives {
        self.directives
    }

    /// The invalidation tags (sorted, distinct).
    pub fn tags(&self) -> &Arc<[Tag]> {
        &self.tags
    }

    /// Whether the envelope can record this read's tags (at most
    /// [`MAX_TAGS`]); a read with more is served from the database, never
    /// stored (no query of the service has that many).
    pub fn is_storable(&self) -> bool {
        !self.tags.is_empty() && self.tags.len() <= MAX_TAGS
    }

    /// The Redis keys holding the tags' current generations, in the order
    /// of [`QueryKey::tags`].
    pub fn generation_keys(&self) -> &[Arc<str>] {
        &self.generation_keys
    }

    /// The full Redis key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Shared handle to the key string.
    pub(crate) fn key_arc(&self) -> &Arc<str> {
        &self.key
    }

    /// The policy this read follows.
    pub fn resolver(&self) -> Resolver {
        self.resolver
    }

    pub(crate) fn load(&self) -> BoxFuture<'_, Result<Loaded, AppError>> {
        self.query.load()
    }

    /// Whether this read's misses load together with others of its
    /// resolver ([`CachedQuery::LOADS_IN_BATCHES`]).
    pub(crate) fn loads_in_batches(&self) -> bool {
        self.query.loads_in_batches()
    }

    /// What this read's misses must pass to be stored
    /// ([`CachedQuery::ADMISSION`]).
    pub(crate) fn admission(&self) -> Admission {
        self.query.admission()
    }

    /// Loads `keys` (of one resolver) with one [`CachedQuery::load_many`],
    /// in their order.
    pub(crate) async fn load_batch(keys: &[&QueryKey]) -> Result<Vec<Loaded>, AppError> {
        let Some(first) = keys.first() else {
            return Ok(Vec::new());
        };
        let queries: Vec<&dyn ErasedQuery> = keys.iter().map(|key| &*key.query).collect();
        match first.query.load_batch(&queries) {
            Some(load) => load.await,
            None => Err(AppError::Internal(anyhow::anyhow!(
                "a batch of {} mixes query types",
                first.resolver.name()
            ))),
        }
    }

    /// The meta and value stored in `bytes`, and the length of the
    /// value's JSON (its weight in memory).
    pub(crate) fn decode(&self, bytes: &[u8]) -> Result<(Meta, SharedValue, usize), DecodeError> {
        self.query.decode(bytes)
    }
}

impl PartialEq for QueryKey {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key && self.directives == other.directives
    }
}

impl Eq for QueryKey {}

impl Hash for QueryKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state);
        self.directives.hash(state);
    }
}

impl fmt::Debug for QueryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("QueryKey")
            .field(&self.key)
            .field(&self.directives)
            .finish()
    }
}

/// Where a value came from, as shown in the cache debug extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CacheStatus {
    /// Served from the cache (see [`Tier`] for which).
    Hit,
    /// Not cached (or invalidated, or undecodable): loaded from the database
    /// and written back.
    Miss,
    /// The cache was skipped (Redis down or erroring, or caching disabled
    /// for this resolver): loaded from the database.
    Bypass,
    /// A list whose ids came from the cache while some of its entities did
    /// not: only those loaded from the database.
    Partial,
    /// Past its TTL, served anyway: while one refresh runs
    /// (stale-while-revalidate) or because the database failed
    /// (stale-if-error).
    Stale,
    /// The request said `Cache-Control: no-cache`: no cache tier was
    /// consulted; loaded from the database and stored like a miss (unless
    /// it also said `no-store`).
    Refresh,
}

/// Which tier answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// The in-process tier.
    Local,
    /// Redis.
    Redis,
    /// The database.
    Database,
}

/// The outcome of one [`QueryKey`]: the value or the load's error, and how
/// it was obtained.
#[derive(Clone)]
pub struct Fetched {
    /// The value, or why loading it failed (errors are never cached).
    pub value: Result<SharedValue, Arc<AppError>>,
    /// Hit, miss, bypass, stale or refresh.
    pub status: CacheStatus,
    /// The tier that answered.
    pub tier: Tier,
    /// Until when (unix ms) the value may be served as fresh; 0 when it
    /// must not be reused at all (stale, bypassed or failed). A response
    /// built from it lives no longer than this.
    pub expires_at_ms: u64,
}

impl Fetched {
    /// The value as the query's output type.
    pub fn typed<T: Any + Send + Sync>(&self) -> Result<Arc<T>, Arc<AppError>> {
        let value = self.value.clone()?;
        value.downcast::<T>().map_err(|_| {
            Arc::new(AppError::Internal(anyhow::anyhow!(
                "cached value has an unexpected type (expected {})",
                std::any::type_name::<T>()
            )))
        })
    }
}
