//! Reading an anime's video players and episodes, through the cache: one
//! entry per anime and relation (`anime_players:id=7`,
//! `anime_episodes:id=7`), each with a tag of its own
//! ([`tags::relation`], `anime:7:players`), which only a write that
//! replaces that relation bumps. They belong to one anime each, so their
//! entries hold the rows themselves.
//!
//! Every query here sets [`CachedQuery::LOADS_IN_BATCHES`]: the misses of
//! one DataLoader batch load with one call of the repository's batch
//! loader (`AnimeRepo::players_of`, …), so a page of 100 anime selecting
//! players costs one statement on a miss, and none on a hit.
//!
//! An anime's genres, themes and studios are not relations here: their
//! ids are part of the anime's own entry (`db::AnimeEntity`), named
//! through the cached taxonomy lists.

use serde::{Deserialize, Serialize};

use crate::cache::{CachedQuery, Resolver};
use crate::db::AnimeRepo;
use crate::entities::{episode, player};
use crate::error::{AppError, Result};

use super::AnimeService;
use super::tags::{self, Relation};

/// The one output of a batch of one query, from [`CachedQuery::load_many`].
fn single<T>(mut outputs: Vec<T>) -> Result<T> {
    outputs
        .pop()
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("a batch of one loaded no value")))
}

/// One video player of an anime, as its cached entry holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlayerEntry {
    /// URL for an `<iframe>`.
    pub embed_url: String,
    /// Who translated (dubbed or subtitled) this version, when known.
    pub translator: Option<String>,
    /// Quality label (`1080p`), when known.
    pub quality: Option<String>,
}

impl From<player::Model> for PlayerEntry {
    fn from(row: player::Model) -> Self {
        Self {
            embed_url: row.embed_url,
            translator: row.translator,
            quality: row.quality,
        }
    }
}

/// One episode of an anime, as its cached entry holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpisodeEntry {
    /// Episode number, from 1.
    pub number: i32,
    /// Episode title, when known.
    pub title: Option<String>,
    /// When it first aired, when known.
    pub aired_on: Option<chrono::NaiveDate>,
}

impl From<episode::Model> for EpisodeEntry {
    fn from(row: episode::Model) -> Self {
        Self {
            number: row.number,
            title: row.title,
            aired_on: row.aired_on,
        }
    }
}

/// One cached relation of one anime: a query struct, its `CachedQuery`
/// (batched: `$loader` answers every anime of a batch with one statement;
/// each row becomes one `$item` through `$map`) and the
/// [`AnimeService`] method that builds it.
macro_rules! relation_query {
    ($name:ident, $method:ident, $resolver:expr, $relation:expr, $loader:ident, $item:ty, $map:expr, $doc:literal) => {
        #[doc = $doc]
        pub struct $name {
            repo: AnimeRepo,
            anime_id: i32,
        }

        impl CachedQuery for $name {
            type Output = Vec<$item>;
            const RESOLVER: Resolver = $resolver;
            const LOADS_IN_BATCHES: bool = true;

            fn params(&self) -> String {
                format!("id={}", self.anime_id)
            }

            fn tags(&self) -> Vec<String> {
                vec![tags::relation(self.anime_id, $relation)]
            }

            async fn load(&self) -> Result<Self::Output> {
                single(Self::load_many(&[self]).await?)
            }

            async fn load_many(queries: &[&Self]) -> Result<Vec<Self::Output>> {
                // One repository for the whole batch: every query of it
                // comes from the one service.
                let Some(first) = queries.first() else {
                    return Ok(Vec::new());
                };
                let ids: Vec<i32> = queries.iter().map(|query| query.anime_id).collect();
                let mut rows = first.repo.$loader(&ids).await?;
                Ok(ids
                    .iter()
                    .map(|id| rows.remove(id).unwrap_or_default().into_iter().map($map).collect())
                    .collect())
            }
        }

        impl AnimeService {
            #[doc = concat!("[`", stringify!($name), "`] of anime `anime_id` (an id read from a loaded record, so not checked again).")]
            pub fn $method(&self, anime_id: i32) -> $name {
                $name {
                    repo: self.repo.clone(),
                    anime_id,
                }
            }
        }
    };
}

relation_query!(
    AnimePlayers,
    players_of,
    Resolver::AnimePlayers,
    Relation::Players,
    players_of,
    PlayerEntry,
    PlayerEntry::from,
    "`Anime.players`: one anime's video players, in order."
);
relation_query!(
    AnimeEpisodes,
    episodes_of,
    Resolver::AnimeEpisodes,
    Relation::Episodes,
    episodes_of,
    EpisodeEntry,
    EpisodeEntry::from,
    "`Anime.episodeList`: one anime's episodes, by number."
);
