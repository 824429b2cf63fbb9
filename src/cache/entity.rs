//! Lists of entities: a list, page, ranking or search result is cached as
//! the ordered ids it holds (and its total), and each entity it names (an
//! anime) is cached once, under its own key, shared by every list that
//! shows it and by its detail read.
//!
//! Reading a list is two batches through the same path: the list's entry,
//! then the entries of its entities (in-process tier first, then one Redis
//! round trip for every entity the batch still misses, then one statement,
//! `WHERE id IN (…)`, for whatever neither had: entity queries load in
//! batches). When the ids came from the cache but some entities did not,
//! the list read is a PARTIAL hit: only those entities loaded
//! ([`list_status`]), counted in `anigo_cache_partials_total`.
//!
//! An entity changes without touching the lists that show it (a synopsis
//! edit drops the anime's entry alone), and a list changes without
//! touching its entities (a new ranking reloads ids only).

use std::sync::Arc;

use super::query::{CacheStatus, CachedQuery, Fetched};
use super::stats::{CacheStats, Event};
use super::{Cache, Resolver};
use crate::error::AppError;

/// A cached value that names entities by id, in order.
pub trait IdList {
    /// The ids, in the list's order.
    fn ids(&self) -> &[i32];
}

impl IdList for Vec<i32> {
    fn ids(&self) -> &[i32] {
        self
    }
}

/// How a list read went, given how its own entry and each of its
/// entities were read: a list whose entry was a hit is PARTIAL when some
/// entity loaded from the database, HIT when none did; any other list
/// status stands.
pub fn list_status<'a>(
    list: &Fetched,
    entities: impl IntoIterator<Item = &'a Fetched>,
) -> CacheStatus {
    if list.status != CacheStatus::Hit {
        return list.status;
    }
    let is_partial = entities
        .into_iter()
        .any(|entity| matches!(entity.status, CacheStatus::Miss | CacheStatus::Refresh));
    if is_partial {
        CacheStatus::Partial
    } else {
        CacheStatus::Hit
    }
}

/// Counts a PARTIAL list read of `resolver`.
pub fn record_status(stats: &CacheStats, resolver: Resolver, status: CacheStatus) {
    if status == CacheStatus::Partial {
        stats.record(resolver, Event::Partial);
    }
}

/// An entity read of a list: the value, or why it failed.
pub type EntityOutcome<T> = Result<Arc<T>, Arc<AppError>>;

impl Cache {
    /// Reads list `query` and then each entity it names (`entity(id)`)
    /// through the cache, outside GraphQL (benchmarks, tools): the list's
    /// value, its entities in order, and the list read's status (HIT,
    /// PARTIAL, MISS…).
    pub async fn get_list<L, E>(
        &self,
        query: L,
        entity: impl Fn(i32) -> E,
    ) -> Result<(Arc<L::Output>, Vec<EntityOutcome<E::Output>>, CacheStatus), Arc<AppError>>
    where
        L: CachedQuery,
        L::Output: IdList,
        E: CachedQuery,
    {
        let key = self.query_key(query);
        let fetched = self
            .read_all(std::slice::from_ref(&key))
            .await
            .pop()
            .ok_or_else(|| {
                Arc::new(AppError::Internal(anyhow::anyhow!(
                    "cache batch lost a key"
                )))
            })?;
        let list = fetched.typed::<L::Output>()?;
        let keys: Vec<_> = list
            .ids()
            .iter()
            .map(|&id| self.query_key(entity(id)))
            .collect();
        let reads = self.read_all(&keys).await;
        let status = list_status(&fetched, &reads);
        record_status(self.stats(), key.resolver(), status);
        let entities = reads.iter().map(Fetched::typed::<E::Output>).collect();
        Ok((list, entities, status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Tier;

    fn read(status: CacheStatus) -> Fetched {
        Fetched {
            value: Ok(Arc::new(1u64)),
            status,
            tier: Tier::Redis,
            expires_at_ms: 1,
        }
    }

    #[test]
    fn a_cached_list_with_a_loaded_entity_is_partial() {
        let hit = read(CacheStatus::Hit);
        assert_eq!(
            list_status(&hit, &[read(CacheStatus::Hit), read(CacheStatus::Hit)]),
            CacheStatus::Hit
        );
        assert_eq!(
            list_status(&hit, &[read(CacheStatus::Hit), read(CacheStatus::Miss)]),
            CacheStatus::Partial
        );
        assert_eq!(list_status(&hit, &[]), CacheStatus::Hit);
        let miss = read(CacheStatus::Miss);
        assert_eq!(
            list_status(&miss, &[read(CacheStatus::Hit)]),
            CacheStatus::Miss,
            "a list loaded from the database is a miss whatever its entities were"
        );
    }
}
