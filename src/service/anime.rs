//! Reading the anime catalogue, through the cache.
//!
//! Each cached read is a [`CachedQuery`]: the policy it follows, its key
//! parameters, its invalidation tags (from [`InvalidationPolicy`]) and its
//! database load. Lists hold ids; each anime is the entity [`AnimeById`]. [`AnimeService`] builds them; the
//! GraphQL loader batches them, and [`AnimeService::get`] reads one without
//! GraphQL (benchmarks, tools).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::tags::{Covered, InvalidationPolicy};
use crate::cache::dictionary::Samples;
use crate::cache::entity::IdList;
use crate::cache::ranged::Span;
use crate::cache::{Cache, CachedQuery, Resolver};
use crate::db::{AnimeEntity, AnimeFilter, AnimeRepo, AnimeSort};
use crate::error::{AppError, Result};

/// The catalogue's use cases (reads here, writes in `anime_write`). Cheap
/// to clone.
#[derive(Clone)]
pub struct AnimeService {
    pub(super) repo: AnimeRepo,
    pub(super) cache: Cache,
    /// What each read depends on and what each write bumps.
    pub(super) policy: InvalidationPolicy,
}

/// A validated page request: `page` ≥ 1 and `per_page` ≥ 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PageRequest {
    /// 1-based page number.
    pub page: u64,
    /// Items per page.
    pub per_page: u64,
}

impl PageRequest {
    /// Rows to skip. Saturates instead of overflowing: a page that far out
    /// is simply empty.
    pub fn offset(&self) -> u64 {
        self.page.saturating_sub(1).saturating_mul(self.per_page)
    }

    /// Whether rows remain after this page, given the total.
    pub fn has_next_page(&self, total: u64) -> bool {
        self.offset().saturating_add(self.per_page) < total
    }
}

/// Anime the compression dictionary is trained on: about 2.5 MB of JSON,
/// some forty times the dictionary's size, which zstd's trainer wants.
const DICTIONARY_SAMPLES: u64 = 2_000;

/// One page of anime ids with the total it was cut from: of the catalogue
/// in id order (`animePage`), or of the anime a filter keeps in an order
/// (`animeList`, see `catalogue`). The anime themselves are entities,
/// cached on their own ([`AnimeById`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PageResult {
    /// The request this page answers.
    pub request: PageRequest,
    /// Number of anime in the catalogue (or that the list's filter keeps)
    /// when the page was read.
    pub total: u64,
    /// The ids of the anime on the page, in order (empty past the end).
    pub ids: Vec<i32>,
    /// What the page covers of its ranking, when ranked by a number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covered: Option<Covered>,
}

/// A ranking's first anime ids (`popularAnime`), with what they cover of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ranking {
    /// The ids, best first.
    pub ids: Vec<i32>,
    /// The members counts of the first and last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covered: Option<Covered>,
}

impl IdList for Ranking {
    fn ids(&self) -> &[i32] {
        &self.ids
    }
}

impl IdList for PageResult {
    fn ids(&self) -> &[i32] {
        &self.ids
    }
}

/// `popularAnime(limit)`: most members first, ties by id.
pub struct PopularAnime {
    repo: AnimeRepo,
    policy: InvalidationPolicy,
    limit: u64,
}

impl CachedQuery for PopularAnime {
    type Output = Ranking;
    const RESOLVER: Resolver = Resolver::PopularAnime;

    fn params(&self) -> String {
        format!("limit={}", self.limit)
    }

    fn tags(&self) -> Vec<String> {
        self.policy
            .list(&AnimeFilter::default(), AnimeSort::Popularity.natural())
    }

    fn spans(&self, output: &Self::Output) -> Vec<(String, Vec<Span>)> {
        self.policy.spans(
            &AnimeFilter::default(),
            AnimeSort::Popularity.natural(),
            output.covered,
        )
    }

    async fn load(&self) -> Result<Self::Output> {
        let ranked = self.repo.popular_ranked(self.limit).await?;
        Ok(Ranking {
            covered: Covered::of(&ranked),
            ids: ranked.into_iter().map(|(id, _)| id).collect(),
        })
    }
}

/// `animePage(page, perPage)`: one page in id order with the total.
pub struct AnimePage {
    repo: AnimeRepo,
    policy: InvalidationPolicy,
    request: PageRequest,
}

impl CachedQuery for AnimePage {
    type Output = PageResult;
    const RESOLVER: Resolver = Resolver::AnimePage;

    fn params(&self) -> String {
        format!(
            "page={}:per_page={}",
            self.request.page, self.request.per_page
        )
    }

    fn tags(&self) -> Vec<String> {
        self.policy
            .list(&AnimeFilter::default(), AnimeSort::Id.natural())
    }

    async fn load(&self) -> Result<Self::Output> {
        let request = self.request;
        let total = self.repo.count(&AnimeFilter::default()).await?;
        let ids = if request.offset() >= total {
            Vec::new()
        } else {
            self.repo
                .page_ids(request.offset(), request.per_page)
                .await?
        };
        Ok(PageResult {
            request,
            total,
            ids,
            covered: None,
        })
    }
}

/// `animeCount`.
pub struct AnimeCount {
    repo: AnimeRepo,
    policy: InvalidationPolicy,
}

impl CachedQuery for AnimeCount {
    type Output = u64;
    const RESOLVER: Resolver = Resolver::AnimeCount;

    fn params(&self) -> String {
        "all".to_owned()
    }

    fn tags(&self) -> Vec<String> {
        self.policy.count(&AnimeFilter::default())
    }

    async fn load(&self) -> Result<Self::Output> {
        self.repo.count(&AnimeFilter::default()).await
    }
}

/// `anime(id)`, and every anime a list shows: one anime's row with its
/// genre, theme and studio ids, the entity entry lists share; or none (an
/// absence is cached for the shorter `CACHE_TTL_NOT_FOUND`, and
/// invalidated when that id is created). The misses of one batch load with
/// two statements (`WHERE id IN (…)`: the rows, then their links).
pub struct AnimeById {
    repo: AnimeRepo,
    policy: InvalidationPolicy,
    id: i32,
}

impl CachedQuery for AnimeById {
    type Output = Option<Arc<AnimeEntity>>;
    const RESOLVER: Resolver = Resolver::Anime;
    const LOADS_IN_BATCHES: bool = true;

    fn params(&self) -> String {
        format!("id={}", self.id)
    }

    fn tags(&self) -> Vec<String> {
        self.policy.anime(self.id)
    }

    fn is_negative(output: &Self::Output) -> bool {
        output.is_none()
    }

    async fn load(&self) -> Result<Self::Output> {
        Ok(self
            .repo
            .entities(&[self.id])
            .await?
            .remove(&self.id)
            .map(Arc::new))
    }

    async fn load_many(queries: &[&Self]) -> Result<Vec<Self::Output>> {
        // One repository for the whole batch: every query of it comes from
        // the one service.
        let Some(first) = queries.first() else {
            return Ok(Vec::new());
        };
        let ids: Vec<i32> = queries.iter().map(|query| query.id).collect();
        let mut found = first.repo.entities(&ids).await?;
        Ok(ids
            .iter()
            .map(|id| found.remove(id).map(Arc::new))
            .collect())
    }
}

impl AnimeService {
    /// A service reading through `cache` from `repo`, invalidating by
    /// `policy`.
    pub fn new(repo: AnimeRepo, cache: Cache, policy: InvalidationPolicy) -> Self {
        Self {
            repo,
            cache,
            policy,
        }
    }

    /// The invalidation policy.
    pub fn policy(&self) -> &InvalidationPolicy {
        &self.policy
    }

    /// The cache this service reads through.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The `limit` most popular anime.
    pub fn popular(&self, limit: u64) -> PopularAnime {
        PopularAnime {
            repo: self.repo.clone(),
            policy: self.policy,
            limit,
        }
    }

    /// One page in id order, with the total.
    pub fn page(&self, request: PageRequest) -> AnimePage {
        AnimePage {
            repo: self.repo.clone(),
            policy: self.policy,
            request,
        }
    }

    /// Number of anime.
    pub fn count(&self) -> AnimeCount {
        AnimeCount {
            repo: self.repo.clone(),
            policy: self.policy,
        }
    }

    /// One anime by id.
    pub fn by_id(&self, id: i32) -> AnimeById {
        AnimeById {
            repo: self.repo.clone(),
            policy: self.policy,
            id,
        }
    }

    /// Up to `limit` distinct random anime ids, different on each call,
    /// without scanning the table: random candidates between the smallest
    /// and largest id are checked in one primary-key lookup; where deletes
    /// left gaps, each missing pick seeks the next existing id. Not cached:
    /// the anime themselves are read through `anime(id)`'s entries.
    pub async fn random_ids(&self, limit: usize) -> Result<Vec<i32>> {
        use rand::seq::SliceRandom as _;

        let Some((min, max)) = self.repo.id_range().await? else {
            return Ok(Vec::new());
        };
        let span = i64::from(max) - i64::from(min) + 1;
        let wanted = limit.min(usize::try_from(span).unwrap_or(usize::MAX));
        // Twice as many candidates as wanted: with ids mostly dense, one
        // lookup finds enough. (The thread-local generator is not `Send`,
        // so it is never held across an await.)
        let mut candidates: Vec<i32> = (0..wanted * 2)
            .map(|_| rand::random_range(min..=max))
            .collect();
        candidates.sort_unstable();
        candidates.dedup();
        let mut found = self.repo.existing_ids(&candidates).await?;
        found.shuffle(&mut rand::rng());
        found.truncate(wanted);
        // Gaps: seek from further random points, a bounded number of times
        // (a catalogue that is mostly holes still answers, maybe short).
        let mut seeks = 0;
        while found.len() < wanted && seeks < wanted * 4 {
            seeks += 1;
            let from = rand::random_range(min..=max);
            let id = self.repo.id_at_or_after(from).await?.unwrap_or(min);
            if !found.contains(&id) {
                found.push(id);
            }
        }
        Ok(found)
    }

    /// Samples of the anime entries the cache stores, as it stores them:
    /// what its compression dictionary is trained on (`cache::dictionary`).
    /// The most popular anime, which are also the most read.
    pub fn dictionary_samples(&self) -> Samples {
        let repo = self.repo.clone();
        Arc::new(move || {
            let repo = repo.clone();
            Box::pin(async move {
                let ids = repo.popular_ids(DICTIONARY_SAMPLES).await?;
                let mut entities = repo.entities(&ids).await?;
                ids.iter()
                    .filter_map(|id| entities.remove(id))
                    .map(|entity| {
                        let entry: <AnimeById as CachedQuery>::Output = Some(Arc::new(entity));
                        serde_json::to_vec(&entry).map_err(|err| {
                            AppError::Internal(
                                anyhow::Error::new(err).context("serializing a sample"),
                            )
                        })
                    })
                    .collect()
            })
        })
    }

    /// Runs one query through the cache, outside GraphQL.
    pub async fn get<Q: CachedQuery>(&self, query: Q) -> Result<Arc<Q::Output>, Arc<AppError>> {
        self.cache.get(query).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_arithmetic_covers_first_last_and_past_the_end() {
        let first = PageRequest {
            page: 1,
            per_page: 20,
        };
        assert_eq!(first.offset(), 0);
        assert!(first.has_next_page(21));
        assert!(!first.has_next_page(20));

        let last = PageRequest {
            page: 3,
            per_page: 20,
        };
        assert_eq!(last.offset(), 40);
        assert!(!last.has_next_page(55));
        assert!(last.has_next_page(61));

        let beyond = PageRequest {
            page: u64::MAX,
            per_page: 100,
        };
        assert_eq!(beyond.offset(), u64::MAX);
        assert!(!beyond.has_next_page(1_000));
    }
}
