//! API types: what the frontend sees. Each wraps or converts a domain value
//! with one `From` impl; field docs become GraphiQL descriptions.

use std::sync::Arc;

use async_graphql::{Context, Enum, ID, Object, Result, SimpleObject};
use chrono::{DateTime, NaiveDate, Utc};

use super::loader::load;
use super::query::state;
use super::taxonomy::{self, Genre, Studio, TaxonSource, Theme};
use crate::db::{AnimeRecord, Taxonomy};
use crate::entities::anime;
use crate::service::anime_write::{MAX_EPISODES, MAX_NAMES, MAX_PLAYERS};
use crate::service::{EpisodeEntry, PageResult, PlayerEntry, TaxonList};

/// Complexity charge of a genre, theme or studio list, per selected child
/// field: the most an anime can have through the API ([`MAX_NAMES`]).
const TAXA_COST: usize = MAX_NAMES;

/// Complexity charge of `Anime.players` per child field ([`MAX_PLAYERS`]).
const PLAYERS_COST: usize = MAX_PLAYERS;

/// Complexity charge of `Anime.episodeList` per child field: the most
/// episodes an anime can have ([`MAX_EPISODES`]). A detail page's episode
/// list fits the budget; one for every anime of a page does not.
const EPISODES_COST: usize = MAX_EPISODES;

/// An anime in the catalogue: a view into the value that holds it (a
/// cached list, page or single record), so answering from the cache copies
/// no record before serialization.
pub struct Anime {
    source: Arc<dyn Records>,
    index: usize,
}

/// Values that hold anime records, by position.
trait Records: Send + Sync {
    fn record(&self, index: usize) -> &AnimeRecord;
}

impl Records for AnimeRecord {
    fn record(&self, _index: usize) -> &AnimeRecord {
        self
    }
}

impl Records for Vec<AnimeRecord> {
    fn record(&self, index: usize) -> &AnimeRecord {
        &self[index]
    }
}

impl Records for PageResult {
    fn record(&self, index: usize) -> &AnimeRecord {
        &self.items[index]
    }
}

impl Anime {
    /// One record of its own (a write's result).
    pub fn owned(record: AnimeRecord) -> Self {
        Self {
            source: Arc::new(record),
            index: 0,
        }
    }

    /// Every record of a shared list, in order.
    pub fn all_of(list: &Arc<Vec<AnimeRecord>>) -> Vec<Self> {
        (0..list.len())
            .map(|index| Self {
                source: Arc::clone(list) as Arc<dyn Records>,
                index,
            })
            .collect()
    }

    fn record(&self) -> &AnimeRecord {
        self.source.record(self.index)
    }

    fn model(&self) -> &anime::Model {
        &self.record().anime
    }

    /// One of its genres, themes or studios, read as cached taxon ids and
    /// named through the cached list of `kind` (both loaded at once, in
    /// one batch); ids the list no longer holds (deleted) are skipped.
    async fn taxa(&self, ctx: &Context<'_>, kind: Taxonomy) -> Result<Vec<TaxonSource>> {
        let service = &state(ctx)?.anime;
        let id = self.model().id;
        let ids = async {
            match kind {
                Taxonomy::Genre => load(ctx, service.genres_of(id)).await,
                Taxonomy::Theme => load(ctx, service.themes_of(id)).await,
                Taxonomy::Studio => load(ctx, service.studios_of(id)).await,
            }
        };
        let (ids, list) = futures_util::try_join!(ids, taxonomy::list(ctx, kind))?;
        Ok(listed(&list, &ids))
    }
}

/// The entries of `list` with these `ids`, in the order of `ids`; ids
/// without one are left out.
fn listed(list: &Arc<TaxonList>, ids: &[i32]) -> Vec<TaxonSource> {
    ids.iter()
        .filter_map(|&id| list.position(id))
        .map(|index| TaxonSource::Listed(Arc::clone(list), index))
        .collect()
}

#[Object]
impl Anime {
    /// Stable identifier.
    async fn id(&self) -> ID {
        ID(self.model().id.to_string())
    }

    /// Title as commonly romanised.
    async fn title(&self) -> &str {
        &self.model().title
    }

    /// Official English title, when there is one.
    async fn title_english(&self) -> Option<&str> {
        self.model().title_english.as_deref()
    }

    /// Title in the original language and script (Japanese, usually);
    /// null when not recorded.
    async fn title_original(&self) -> Option<&str> {
        self.model().title_original.as_deref()
    }

    /// Age rating; null when not known.
    async fn age_rating(&self) -> Option<AgeRating> {
        self.model().age_rating.map(Into::into)
    }

    /// Release format.
    async fn format(&self) -> AnimeFormat {
        self.model().format.into()
    }

    /// Episode count; null when not yet known.
    async fn episodes(&self) -> Option<i32> {
        self.model().episodes
    }

    /// Airing status.
    async fn status(&self) -> AnimeStatus {
        self.model().status.into()
    }

    /// Season of first airing.
    async fn season(&self) -> Option<AnimeSeason> {
        self.model().season.map(Into::into)
    }

    /// Year of first airing.
    async fn year(&self) -> Option<i32> {
        self.model().year
    }

    /// Average user score from 0 to 10; null when unrated.
    async fn score(&self) -> Option<f64> {
        self.model().score
    }

    /// Number of members who list this anime. `popularAnime` orders by it.
    async fn popularity(&self) -> i32 {
        self.model().popularity
    }

    /// Genre names, in the anime's own order (alphabetical for anime
    /// written through this API). Kept as it was for older clients: it is
    /// part of the anime's own entry, so a genre rename shows here once
    /// that entry is refreshed. `genreList` gives each genre's id, slug
    /// and anime count as well, always under its current name.
    async fn genres(&self) -> &[String] {
        &self.record().genres
    }

    /// The genres, in the anime's own order, as objects (what `genres`
    /// lists by name). The anime's genre ids are cached up to 300 s; names,
    /// slugs and counts come from the genre list, cached up to 600 s.
    #[graphql(complexity = "TAXA_COST * child_complexity")]
    async fn genre_list(&self, ctx: &Context<'_>) -> Result<Vec<Genre>> {
        let taxa = self.taxa(ctx, Taxonomy::Genre).await?;
        Ok(taxa.into_iter().map(Genre).collect())
    }

    /// The themes, in the anime's own order. The anime's theme ids are
    /// cached up to 300 s; names, slugs and counts come from the theme
    /// list, cached up to 600 s.
    #[graphql(complexity = "TAXA_COST * child_complexity")]
    async fn themes(&self, ctx: &Context<'_>) -> Result<Vec<Theme>> {
        let taxa = self.taxa(ctx, Taxonomy::Theme).await?;
        Ok(taxa.into_iter().map(Theme).collect())
    }

    /// The studios that made it, in the anime's own order. The anime's
    /// studio ids are cached up to 300 s; names, slugs and counts come from
    /// the studio list, cached up to 600 s.
    #[graphql(complexity = "TAXA_COST * child_complexity")]
    async fn studios(&self, ctx: &Context<'_>) -> Result<Vec<Studio>> {
        let taxa = self.taxa(ctx, Taxonomy::Studio).await?;
        Ok(taxa.into_iter().map(Studio).collect())
    }

    /// The video players it can be watched in, in order. Cached up to
    /// 300 s.
    #[graphql(complexity = "PLAYERS_COST * child_complexity")]
    async fn players(&self, ctx: &Context<'_>) -> Result<Vec<Player>> {
        let players = load(ctx, state(ctx)?.anime.players_of(self.model().id)).await?;
        Ok((0..players.len())
            .map(|index| Player {
                list: Arc::clone(&players),
                index,
            })
            .collect())
    }

    /// Its episodes, by number (`episodes` is their count as announced,
    /// which may be more than are listed). Cached up to 300 s. Charged as
    /// the longest list an anime can have: meant for a detail page, not
    /// for every anime of a page.
    #[graphql(complexity = "EPISODES_COST * child_complexity")]
    async fn episode_list(&self, ctx: &Context<'_>) -> Result<Vec<Episode>> {
        let episodes = load(ctx, state(ctx)?.anime.episodes_of(self.model().id)).await?;
        Ok((0..episodes.len())
            .map(|index| Episode {
                list: Arc::clone(&episodes),
                index,
            })
            .collect())
    }

    /// Cover picture URL.
    async fn picture_url(&self) -> &str {
        &self.model().picture_url
    }

    /// Plot summary.
    async fn synopsis(&self) -> &str {
        &self.model().synopsis
    }

    /// When the anime was added to the catalogue.
    async fn created_at(&self) -> DateTime<Utc> {
        self.model().created_at
    }

    /// When the anime was last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.model().updated_at
    }
}

/// A video player of an anime: a view into its cached list.
pub struct Player {
    list: Arc<Vec<PlayerEntry>>,
    index: usize,
}

#[Object]
impl Player {
    /// URL to show in an `<iframe>`.
    async fn embed_url(&self) -> &str {
        &self.list[self.index].embed_url
    }

    /// Who translated (dubbed or subtitled) this version; null when not
    /// known.
    async fn translator(&self) -> Option<&str> {
        self.list[self.index].translator.as_deref()
    }

    /// Quality label as the host shows it (`720p`, `1080p`); null when not
    /// known.
    async fn quality(&self) -> Option<&str> {
        self.list[self.index].quality.as_deref()
    }
}

/// An episode of an anime: a view into its cached list.
pub struct Episode {
    list: Arc<Vec<EpisodeEntry>>,
    index: usize,
}

#[Object]
impl Episode {
    /// Episode number, from 1.
    async fn number(&self) -> i32 {
        self.list[self.index].number
    }

    /// Episode title; null when not known.
    async fn title(&self) -> Option<&str> {
        self.list[self.index].title.as_deref()
    }

    /// When it first aired (`2024-04-06`); null when not known.
    async fn aired_on(&self) -> Option<NaiveDate> {
        self.list[self.index].aired_on
    }
}

/// Age rating, on the scale anime sites use.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(remote = "anime::AgeRating")]
pub enum AgeRating {
    /// G: all ages.
    G,
    /// PG: children (parental guidance suggested).
    Pg,
    /// PG-13: teens 13 or older.
    #[graphql(name = "PG_13")]
    Pg13,
    /// R: 17 or older (violence and profanity).
    R,
    /// R+: mild nudity.
    #[graphql(name = "R_PLUS")]
    RPlus,
    /// Rx: hentai.
    Rx,
}

/// Release format.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(remote = "anime::Format")]
pub enum AnimeFormat {
    /// Television series.
    Tv,
    /// Feature film.
    Movie,
    /// Original video animation.
    Ova,
    /// Original net animation.
    Ona,
    /// Special episode.
    Special,
    /// Music video.
    Music,
}

/// Airing status.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(remote = "anime::Status")]
pub enum AnimeStatus {
    /// Finished airing.
    Finished,
    /// Currently airing.
    Ongoing,
    /// Announced, not yet airing.
    Upcoming,
}

/// Season of first airing.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(remote = "anime::Season")]
pub enum AnimeSeason {
    /// January to March.
    Winter,
    /// April to June.
    Spring,
    /// July to September.
    Summer,
    /// October to December.
    Fall,
}

/// One page of the catalogue in id order.
#[derive(SimpleObject)]
pub struct AnimePage {
    /// Number of anime in the whole catalogue.
    pub total: u64,
    /// This page's number (1-based).
    pub page: u64,
    /// Items per page, as requested.
    pub per_page: u64,
    /// Whether a later page has items.
    pub has_next_page: bool,
    /// The anime on this page; empty past the last page.
    pub items: Vec<Anime>,
}

impl From<Arc<PageResult>> for AnimePage {
    fn from(result: Arc<PageResult>) -> Self {
        Self {
            total: result.total,
            page: result.request.page,
            per_page: result.request.per_page,
            has_next_page: result.request.has_next_page(result.total),
            items: (0..result.items.len())
                .map(|index| Anime {
                    source: Arc::clone(&result) as Arc<dyn Records>,
                    index,
                })
                .collect(),
        }
    }
}
