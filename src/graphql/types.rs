//! API types: what the frontend sees. Each wraps or converts a domain value
//! with one `From` impl; field docs become GraphiQL descriptions.

use std::sync::Arc;

use async_graphql::{Context, Enum, ErrorExtensions, ID, Object, Result, SimpleObject};
use chrono::{DateTime, NaiveDate, Utc};

use super::loader::{Outcome, load, load_all, load_list};
use super::query::state;
use super::taxonomy::{self, Genre, Studio, TaxonSource, Theme};
use tokio::sync::OnceCell;

use crate::cache::CachedQuery;
use crate::cache::entity::IdList;
use crate::db::{AnimeEntity, AnimeFacts, Taxonomy};
use crate::entities::anime;
use crate::error::AppError;
use crate::service::anime_write::{MAX_EPISODES, MAX_NAMES, MAX_PLAYERS};
use crate::service::{AnimeService, EpisodeEntry, PageResult, PlayerEntry, TaxonList};

/// Complexity charge of a genre, theme or studio list, per selected child
/// field: the most an anime can have through the API ([`MAX_NAMES`]).
const TAXA_COST: usize = MAX_NAMES;

/// Complexity charge of `Anime.players` per child field ([`MAX_PLAYERS`]).
const PLAYERS_COST: usize = MAX_PLAYERS;

/// Complexity charge of `Anime.episodeList` per child field: the most
/// episodes an anime can have ([`MAX_EPISODES`]). A detail page's episode
/// list fits the budget; one for every anime of a page does not.
const EPISODES_COST: usize = MAX_EPISODES;

/// An anime in the catalogue: a view into its cached entity (shared by
/// every list that shows it), so answering from the cache copies no row
/// before serialization.
pub struct Anime {
    entity: Arc<AnimeEntity>,
    /// For an item of a list: the list's shared relation loads and the
    /// item's position in it.
    list: Option<(Arc<ListBatches>, usize)>,
}

/// The relations of the anime of one list, loaded once per response: the
/// first item that resolves a relation loads it for every item of the
/// list with one [`load_all`], so the keys travel in one batch (one
/// statement per relation on a miss) however long the items take to
/// resolve; the others take their outcome from here.
struct ListBatches {
    /// The list's anime, in order.
    ids: Vec<i32>,
    players: OnceCell<Vec<Outcome<Vec<PlayerEntry>>>>,
    episodes: OnceCell<Vec<Outcome<Vec<EpisodeEntry>>>>,
    /// The genre, theme and studio lists that name the ids above, in
    /// [`Taxonomy::ALL`] order: read once per list, not once per item.
    taxonomies: [OnceCell<Arc<TaxonList>>; 3],
}

impl Anime {
    /// The anime a write left, as its own transaction read it back: the
    /// mutation's answer costs no cache fill (the entry the write dropped
    /// is loaded by the next reader, if any). Its relations still resolve
    /// through the cache.
    pub fn written(facts: &AnimeFacts) -> Self {
        Self::entity(Arc::new(facts.entity()))
    }

    /// One cached entity.
    pub fn entity(entity: Arc<AnimeEntity>) -> Self {
        Self { entity, list: None }
    }

    /// The anime of list `query` (a page, ranking or search result holding
    /// ids), each read as its entity through the cache; ids whose anime
    /// no longer exists (deleted since the list was stored) are left out.
    /// Each relation is then loaded for all of them at once.
    pub async fn list<L>(ctx: &Context<'_>, query: L) -> Result<(Arc<L::Output>, Vec<Self>)>
    where
        L: CachedQuery,
        L::Output: IdList,
    {
        let service = &state(ctx)?.anime;
        let (list, outcomes) = load_list(ctx, query, |id| service.by_id(id)).await?;
        let mut rows = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            if let Some(row) = outcome.map_err(|err| err.as_ref().extend())?.as_ref() {
                rows.push(Arc::clone(row));
            }
        }
        Ok((list, Self::list_of(rows)))
    }

    /// `rows`, viewed as one list of this response: each relation is
    /// loaded for all of them at once.
    fn list_of(rows: Vec<Arc<AnimeEntity>>) -> Vec<Self> {
        let batches = Arc::new(ListBatches {
            ids: rows.iter().map(|entity| entity.row.id).collect(),
            players: OnceCell::new(),
            episodes: OnceCell::new(),
            taxonomies: Default::default(),
        });
        rows.into_iter()
            .enumerate()
            .map(|(index, entity)| Self {
                entity,
                list: Some((Arc::clone(&batches), index)),
            })
            .collect()
    }

    fn model(&self) -> &anime::Model {
        &self.entity.row
    }

    /// One relation of this anime: for an item of a list, its outcome of
    /// the list's one load (`cell` of its [`ListBatches`]); otherwise a
    /// load of its own.
    async fn related<Q: CachedQuery>(
        &self,
        ctx: &Context<'_>,
        cell: impl FnOnce(&ListBatches) -> &OnceCell<Vec<Outcome<Q::Output>>>,
        query: impl Fn(&AnimeService, i32) -> Q,
    ) -> Result<Arc<Q::Output>> {
        let service = &state(ctx)?.anime;
        let Some((batches, index)) = &self.list else {
            return load(ctx, query(service, self.model().id)).await;
        };
        let outcomes = cell(batches)
            .get_or_try_init(|| {
                let queries = batches.ids.iter().map(|&id| query(service, id));
                load_all(ctx, queries)
            })
            .await?;
        match outcomes.get(*index) {
            Some(outcome) => outcome.clone().map_err(|err| err.as_ref().extend()),
            None => Err(AppError::Internal(anyhow::anyhow!(
                "a list's relation load has no item {index}"
            ))
            .extend()),
        }
    }

    /// Its genres, themes or studios: the ids its entry holds, named
    /// through the cached list of `kind` (read once per list); ids the list
    /// no longer holds (deleted) are skipped.
    async fn taxa(&self, ctx: &Context<'_>, kind: Taxonomy) -> Result<Vec<TaxonSource>> {
        let list = match &self.list {
            Some((batches, _)) => {
                let cell = &batches.taxonomies[kind.index()];
                cell.get_or_try_init(|| taxonomy::list(ctx, kind))
                    .await
                    .cloned()?
            }
            None => taxonomy::list(ctx, kind).await?,
        };
        Ok(listed(&list, self.entity.taxa(kind)))
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
    /// written through this API). Kept for older clients: `genreList`
    /// gives each genre's id, slug and anime count as well. Cached as
    /// `genreList` is.
    #[graphql(complexity = "TAXA_COST")]
    async fn genres(&self, ctx: &Context<'_>) -> Result<Vec<String>> {
        let taxa = self.taxa(ctx, Taxonomy::Genre).await?;
        Ok(taxa
            .iter()
            .map(|taxon| taxon.entry().taxon.name.clone())
            .collect())
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
        let players = self
            .related(ctx, |b| &b.players, AnimeService::players_of)
            .await?;
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
        let episodes = self
            .related(ctx, |b| &b.episodes, AnimeService::episodes_of)
            .await?;
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

impl AnimePage {
    /// A page of ids with the anime read for them.
    pub fn new(result: &PageResult, items: Vec<Anime>) -> Self {
        Self {
            total: result.total,
            page: result.request.page,
            per_page: result.request.per_page,
            has_next_page: result.request.has_next_page(result.total),
            items,
        }
    }

    /// Page `query` (ids) with its anime, read through the cache.
    pub async fn load<L>(ctx: &Context<'_>, query: L) -> Result<Self>
    where
        L: CachedQuery<Output = PageResult>,
    {
        let (result, items) = Anime::list(ctx, query).await?;
        Ok(Self::new(&result, items))
    }
}
