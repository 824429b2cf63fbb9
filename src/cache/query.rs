//! What a cached resolver declares, and the type-erased form the cache
//! batches.
//!
//! A cached resolver implements [`CachedQuery`]: which [`Resolver`] policy
//! it follows, its parameters (in fixed order, for the key) and its database
//! load. The cache handles everything else. Queries of different types travel
//! together in one batch (one MGET) as [`QueryKey`]s, which compare by their
//! Redis key and carry the query behind a trait object.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::key::KeySpace;
use super::policy::Resolver;
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

    /// Reads the value from the database (called on a miss or bypass).
    fn load(&self) -> impl Future<Output = Result<Self::Output, AppError>> + Send;
}

/// Object-safe view of a [`CachedQuery`].
trait ErasedQuery: Send + Sync {
    fn load(&self) -> BoxFuture<'_, Result<SharedValue, AppError>>;
    fn decode(&self, bytes: &[u8]) -> Result<SharedValue, serde_json::Error>;
    fn encode(&self, value: &SharedValue) -> Option<Result<Vec<u8>, serde_json::Error>>;
}

impl<Q: CachedQuery> ErasedQuery for Q {
    fn load(&self) -> BoxFuture<'_, Result<SharedValue, AppError>> {
        Box::pin(async move {
            let value = CachedQuery::load(self).await?;
            Ok(Arc::new(value) as SharedValue)
        })
    }

    fn decode(&self, bytes: &[u8]) -> Result<SharedValue, serde_json::Error> {
        serde_json::from_slice::<Q::Output>(bytes).map(|value| Arc::new(value) as SharedValue)
    }

    fn encode(&self, value: &SharedValue) -> Option<Result<Vec<u8>, serde_json::Error>> {
        value.downcast_ref::<Q::Output>().map(serde_json::to_vec)
    }
}

/// One cached read in a batch, identified by its Redis key.
#[derive(Clone)]
pub struct QueryKey {
    key: Arc<str>,
    resolver: Resolver,
    query: Arc<dyn ErasedQuery>,
}

impl QueryKey {
    /// Wraps `query`, computing its key in `keys`.
    pub fn new<Q: CachedQuery>(keys: &KeySpace, query: Q) -> Self {
        Self {
            key: keys.key(Q::RESOLVER, &query.params()).into(),
            resolver: Q::RESOLVER,
            query: Arc::new(query),
        }
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

    pub(crate) fn load(&self) -> BoxFuture<'_, Result<SharedValue, AppError>> {
        self.query.load()
    }

    pub(crate) fn decode(&self, bytes: &[u8]) -> Result<SharedValue, serde_json::Error> {
        self.query.decode(bytes)
    }

    pub(crate) fn encode(&self, value: &SharedValue) -> Option<Result<Vec<u8>, serde_json::Error>> {
        self.query.encode(value)
    }
}

impl PartialEq for QueryKey {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for QueryKey {}

impl Hash for QueryKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

impl fmt::Debug for QueryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("QueryKey").field(&self.key).finish()
    }
}

/// Where a value came from, as shown in the cache debug extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CacheStatus {
    /// Served from the cache.
    Hit,
    /// Not cached (or undecodable): loaded from the database and written back.
    Miss,
    /// The cache was skipped (Redis down or erroring, or caching disabled
    /// for this resolver): loaded from the database.
    Bypass,
}

/// The outcome of one [`QueryKey`]: the value or the load's error, and how
/// it was obtained.
#[derive(Clone)]
pub struct Fetched {
    /// The value, or why loading it failed (errors are never cached).
    pub value: Result<SharedValue, Arc<AppError>>,
    /// Hit, miss or bypass.
    pub status: CacheStatus,
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
