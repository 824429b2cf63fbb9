//! Catalogue writes (admin only): `createAnime`, `updateAnime`,
//! `deleteAnime`, and `invalidateAnime` for changes made to the database
//! outside the service. Each returns after every cached entry it changed has
//! been invalidated on every instance.

use async_graphql::{Context, ID, InputObject, MaybeUndefined, Object, Result, ResultExt};

use super::admin::{AdminGuard, ClearResult};
use super::query::parse_id;
use super::types::{AgeRating, Anime, AnimeFormat, AnimeSeason, AnimeStatus};
use crate::db::relations::{EpisodeDraft, PlayerDraft};
use crate::error::AppError;
use crate::service::{AnimeChanges, AnimeDraft};
use crate::state::AppState;

/// A new anime.
#[derive(InputObject)]
pub struct CreateAnimeInput {
    /// Title, 1-255 characters.
    pub title: String,
    /// Official English title, up to 255 characters.
    pub title_english: Option<String>,
    /// Release format.
    pub format: AnimeFormat,
    /// Episode count, 0-10000.
    pub episodes: Option<i32>,
    /// Airing status.
    pub status: AnimeStatus,
    /// Season of first airing.
    pub season: Option<AnimeSeason>,
    /// Year of first airing, 1900-2100.
    pub year: Option<i32>,
    /// Score, 0-10.
    pub score: Option<f64>,
    /// Members count, at least 0.
    #[graphql(default)]
    pub popularity: i32,
    /// Original-language title, up to 255 characters.
    pub title_original: Option<String>,
    /// Age rating.
    pub age_rating: Option<AgeRating>,
    /// Up to 10 genres of 1-40 characters (a name that is no genre yet
    /// becomes one).
    #[graphql(default)]
    pub genres: Vec<String>,
    /// Up to 10 themes of 1-64 characters, in order (new names become
    /// themes).
    #[graphql(default)]
    pub themes: Vec<String>,
    /// Up to 10 studios of 1-64 characters, in order (new names become
    /// studios).
    #[graphql(default)]
    pub studios: Vec<String>,
    /// Up to 20 video players, in order.
    #[graphql(default)]
    pub players: Vec<PlayerInput>,
    /// Up to 2000 episodes, numbers at least 1 and distinct (listed by
    /// number whatever their order here).
    #[graphql(default)]
    pub episode_list: Vec<EpisodeInput>,
    /// http(s) URL of the cover picture.
    pub picture_url: String,
    /// Plot summary, up to 10000 characters.
    pub synopsis: String,
}

/// Changes to an anime: omitted fields stay as they are; `null` clears a
/// nullable field.
#[derive(InputObject, Default)]
pub struct UpdateAnimeInput {
    /// New title.
    pub title: Option<String>,
    /// New English title (`null` clears it).
    pub title_english: MaybeUndefined<String>,
    /// New release format.
    pub format: Option<AnimeFormat>,
    /// New episode count (`null` clears it).
    pub episodes: MaybeUndefined<i32>,
    /// New airing status.
    pub status: Option<AnimeStatus>,
    /// New season (`null` clears it).
    pub season: MaybeUndefined<AnimeSeason>,
    /// New year (`null` clears it).
    pub year: MaybeUndefined<i32>,
    /// New score (`null` clears it).
    pub score: MaybeUndefined<f64>,
    /// New members count.
    pub popularity: Option<i32>,
    /// New original-language title (`null` clears it).
    pub title_original: MaybeUndefined<String>,
    /// New age rating (`null` clears it).
    pub age_rating: MaybeUndefined<AgeRating>,
    /// New genres (replace the list).
    pub genres: Option<Vec<String>>,
    /// New themes (replace the list).
    pub themes: Option<Vec<String>>,
    /// New studios (replace the list).
    pub studios: Option<Vec<String>>,
    /// New video players (replace the list).
    pub players: Option<Vec<PlayerInput>>,
    /// New episodes (replace the list).
    pub episode_list: Option<Vec<EpisodeInput>>,
    /// New cover picture URL.
    pub picture_url: Option<String>,
    /// New synopsis.
    pub synopsis: Option<String>,
}

/// A video player of an anime.
#[derive(InputObject)]
pub struct PlayerInput {
    /// http(s) embed URL, up to 512 characters.
    pub embed_url: String,
    /// Who translated or dubbed it, up to 128 characters.
    pub translator: Option<String>,
    /// Quality label such as `1080p`, up to 16 characters.
    pub quality: Option<String>,
}

impl From<PlayerInput> for PlayerDraft {
    fn from(input: PlayerInput) -> Self {
        Self {
            embed_url: input.embed_url,
            translator: input.translator,
            quality: input.quality,
        }
    }
}

/// An episode of an anime.
#[derive(InputObject)]
pub struct EpisodeInput {
    /// Episode number, from 1, unique within the anime.
    pub number: i32,
    /// Episode title, up to 255 characters.
    pub title: Option<String>,
    /// When it first aired (`2024-04-06`).
    pub aired_on: Option<chrono::NaiveDate>,
}

impl From<EpisodeInput> for EpisodeDraft {
    fn from(input: EpisodeInput) -> Self {
        Self {
            number: input.number,
            title: input.title,
            aired_on: input.aired_on,
        }
    }
}

/// Catalogue writes.
#[derive(Default)]
pub struct CatalogMutation;

#[Object]
impl CatalogMutation {
    /// Adds an anime. Admin only. Every invalid input field is reported,
    /// one BAD_USER_INPUT error each, `extensions.argument` naming it
    /// (`input.year`).
    #[graphql(guard = "AdminGuard")]
    async fn create_anime(&self, ctx: &Context<'_>, input: CreateAnimeInput) -> Result<Anime> {
        let state = ctx.data::<AppState>()?;
        let created = state
            .anime
            .create(input.into())
            .await
            .map_err(|err| err.into_field_error(ctx))?;
        tracing::info!(id = created.row.id, "Anime created");
        Ok(Anime::written(&created))
    }

    /// Changes an anime; an unknown id is NOT_FOUND. Admin only. Every
    /// invalid input field is reported, as for `createAnime`.
    #[graphql(guard = "AdminGuard")]
    async fn update_anime(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateAnimeInput,
    ) -> Result<Anime> {
        let id = parse_id(&id).extend()?;
        let state = ctx.data::<AppState>()?;
        let updated = state
            .anime
            .update(id, input.into())
            .await
            .map_err(|err| err.into_field_error(ctx))?;
        tracing::info!(id, "Anime updated");
        Ok(Anime::written(&updated))
    }

    /// Deletes an anime; an unknown id is NOT_FOUND. Admin only.
    #[graphql(guard = "AdminGuard")]
    async fn delete_anime(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let id = parse_id(&id).extend()?;
        let state = ctx.data::<AppState>()?;
        state.anime.delete(id).await.extend()?;
        tracing::info!(id, "Anime deleted");
        Ok(true)
    }

    /// Invalidates the cached entries of these anime (and every list, page
    /// and count), as a write would: for changes made to the database
    /// outside the service. `deleted` is the number of cache tags
    /// invalidated. Admin only.
    #[graphql(guard = "AdminGuard")]
    async fn invalidate_anime(&self, ctx: &Context<'_>, ids: Vec<ID>) -> Result<ClearResult> {
        if ids.is_empty() || ids.len() > 1_000 {
            return Err(AppError::bad_input(
                "ids",
                "ids must list 1 to 1000 anime ids",
            ))
            .extend();
        }
        let ids = ids
            .iter()
            .map(parse_id)
            .collect::<Result<Vec<i32>, AppError>>()
            .extend()?;
        let state = ctx.data::<AppState>()?;
        let started = std::time::Instant::now();
        let invalidated = state.anime.invalidate(&ids).await.extend()?;
        tracing::info!(ids = ?ids, invalidated, "Anime invalidated");
        Ok(ClearResult {
            deleted: invalidated,
            took_ms: started.elapsed().as_millis() as u64,
        })
    }
}

impl From<CreateAnimeInput> for AnimeDraft {
    fn from(input: CreateAnimeInput) -> Self {
        Self {
            title: input.title,
            title_english: input.title_english,
            title_original: input.title_original,
            age_rating: input.age_rating.map(Into::into),
            format: input.format.into(),
            episodes: input.episodes,
            status: input.status.into(),
            season: input.season.map(Into::into),
            year: input.year,
            score: input.score,
            popularity: input.popularity,
            genres: input.genres,
            themes: input.themes,
            studios: input.studios,
            players: input.players.into_iter().map(Into::into).collect(),
            episode_list: input.episode_list.into_iter().map(Into::into).collect(),
            picture_url: input.picture_url,
            synopsis: input.synopsis,
        }
    }
}

/// `MaybeUndefined` → "leave" (`None`), "clear" (`Some(None)`) or "set".
fn change<T, U: From<T>>(value: MaybeUndefined<T>) -> Option<Option<U>> {
    match value {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(v) => Some(Some(v.into())),
    }
}

impl From<UpdateAnimeInput> for AnimeChanges {
    fn from(input: UpdateAnimeInput) -> Self {
        Self {
            title: input.title,
            title_english: change(input.title_english),
            title_original: change(input.title_original),
            age_rating: change(input.age_rating),
            format: input.format.map(Into::into),
            episodes: change(input.episodes),
            status: input.status.map(Into::into),
            season: change(input.season),
            year: change(input.year),
            score: change(input.score),
            popularity: input.popularity,
            genres: input.genres,
            themes: input.themes,
            studios: input.studios,
            players: input
                .players
                .map(|players| players.into_iter().map(Into::into).collect()),
            episode_list: input
                .episode_list
                .map(|episodes| episodes.into_iter().map(Into::into).collect()),
            picture_url: input.picture_url,
            synopsis: input.synopsis,
        }
    }
}
