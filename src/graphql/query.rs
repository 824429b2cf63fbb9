//! The query root: the frontend's read API. Each resolver checks its
//! arguments, calls the service and maps the result; nothing else.

use std::ops::RangeInclusive;
use std::sync::Arc;

use async_graphql::{Context, ErrorExtensions, ID, Object, Result, ResultExt};

use super::catalogue::AnimeFilterInput;
use super::loader::load;
use super::types::{Anime, AnimePage};
use crate::error::AppError;
use crate::service::{CountQuery, PageRequest};
use crate::state::AppState;

/// Allowed `limit` and `perPage`. Arguments are read as 64-bit integers
/// (still `Int` in the schema) so that an out-of-range literal such as
/// `99999999999` gets our message naming the argument, not a parse error.
pub(super) const PAGE_SIZE: RangeInclusive<i64> = 1..=100;

/// Allowed `limit` of `randomAnime`: a handful of picks for a "discover"
/// panel, not a way to page through the catalogue.
const RANDOM_SIZE: RangeInclusive<i64> = 1..=20;

/// Read access to the anime catalogue.
#[derive(Default)]
pub struct CatalogQuery;

#[Object]
impl CatalogQuery {
    /// The most popular anime, most members first (ties: lower id first).
    /// `limit` is 1 to 100. The ranking is cached up to 60 s, and members
    /// counts change it only when it expires; each anime's own fields are
    /// cached up to 300 s and change at once when it is written.
    #[graphql(complexity = "limit.clamp(1, 100) as usize * child_complexity")]
    async fn popular_anime(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] limit: i64,
    ) -> Result<Vec<Anime>> {
        let limit = in_range("limit", limit, PAGE_SIZE).extend()?;
        let (_, anime) = Anime::list(ctx, state(ctx)?.anime.popular(limit)).await?;
        Ok(anime)
    }

    /// One page of the catalogue in id order. `page` starts at 1; `perPage`
    /// is 1 to 100. A page past the end is empty, with `hasNextPage: false`.
    /// Cached up to 300 s.
    #[graphql(complexity = "per_page.clamp(1, 100) as usize * child_complexity + 5")]
    async fn anime_page(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 1)] page: i64,
        #[graphql(default = 20)] per_page: i64,
    ) -> Result<AnimePage> {
        let page = in_range("page", page, 1..=i64::MAX).extend()?;
        let per_page = in_range("perPage", per_page, PAGE_SIZE).extend()?;
        AnimePage::load(ctx, state(ctx)?.anime.page(PageRequest { page, per_page })).await
    }

    /// Number of anime in the catalogue, or that `filter` keeps (the
    /// `total` of `animeList` with the same filter). Cached up to 600 s.
    async fn anime_count(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Which anime to count (as `animeList`'s); all of them when absent.")]
        filter: Option<AnimeFilterInput>,
    ) -> Result<u64> {
        let service = &state(ctx)?.anime;
        let Some(filter) = filter else {
            return Ok(*load(ctx, service.count()).await?);
        };
        let filter = filter.check().map_err(|err| err.into_field_error(ctx))?;
        Ok(match service.count_matching(filter) {
            CountQuery::All(query) => *load(ctx, query).await?,
            CountQuery::Filtered(query) => *load(ctx, query).await?,
            CountQuery::Nothing => 0,
        })
    }

    /// `limit` (1 to 20) random anime, different on each call. Each anime
    /// is read through `anime(id)`'s cache entries; the pick itself is never
    /// cached, and a response that contains this field is never kept.
    #[graphql(complexity = "limit.clamp(1, 20) as usize * child_complexity")]
    async fn random_anime(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 1)] limit: i64,
    ) -> Result<Vec<Anime>> {
        let limit = in_range("limit", limit, RANDOM_SIZE).extend()?;
        let service = &state(ctx)?.anime;
        let ids = service
            .random_ids(usize::try_from(limit).unwrap_or(1))
            .await
            .extend()?;
        let loads = ids.into_iter().map(|id| load(ctx, service.by_id(id)));
        let mut anime = Vec::new();
        for found in futures_util::future::try_join_all(loads).await? {
            // Deleted between the pick and the read: left out.
            if let Some(row) = found.as_ref() {
                anime.push(Anime::entity(Arc::clone(row)));
            }
        }
        Ok(anime)
    }

    /// One anime by id; null when there is none with that id. Cached up to
    /// 300 s.
    async fn anime(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Anime>> {
        let id = parse_id(&id).extend()?;
        let anime = load(ctx, state(ctx)?.anime.by_id(id)).await?;
        Ok(anime
            .as_ref()
            .as_ref()
            .map(|row| Anime::entity(Arc::clone(row))))
    }
}

pub(super) fn state<'a>(ctx: &Context<'a>) -> Result<&'a AppState> {
    // Registered once in `build_schema`; absent only in a miswired test.
    ctx.data::<AppState>().map_err(|_| {
        AppError::Internal(anyhow::anyhow!("AppState missing from schema data")).extend()
    })
}

/// Checks an integer argument against its allowed range.
pub(super) fn in_range(
    argument: &'static str,
    value: i64,
    allowed: RangeInclusive<i64>,
) -> Result<u64, AppError> {
    if !allowed.contains(&value) {
        let message = if *allowed.end() == i64::MAX {
            format!(
                "{argument} must be at least {} (got {value})",
                allowed.start()
            )
        } else {
            format!(
                "{argument} must be between {} and {} (got {value})",
                allowed.start(),
                allowed.end()
            )
        };
        return Err(AppError::bad_input(argument, message));
    }
    // In range, so non-negative.
    Ok(value.unsigned_abs())
}

/// Parses an `ID` argument as a positive database id.
pub(super) fn parse_id(id: &ID) -> Result<i32, AppError> {
    match id.parse::<i32>() {
        Ok(value) if value > 0 => Ok(value),
        _ => Err(AppError::bad_input(
            "id",
            format!(
                "id must be a positive integer up to {} (got {:?})",
                i32::MAX,
                truncate(id, 40)
            ),
        )),
    }
}

/// Echoes at most `max` characters of client input back in a message.
fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_accept_bounds_and_reject_outside() {
        assert_eq!(in_range("limit", 1, PAGE_SIZE).ok(), Some(1));
        assert_eq!(in_range("limit", 100, PAGE_SIZE).ok(), Some(100));
        let err = in_range("limit", 101, PAGE_SIZE).expect_err("101 is too big");
        assert_eq!(err.to_string(), "limit must be between 1 and 100 (got 101)");
        let err = in_range("page", 0, 1..=i64::MAX).expect_err("0 is too small");
        assert_eq!(err.to_string(), "page must be at least 1 (got 0)");
    }

    #[test]
    fn ids_must_be_positive_integers() {
        assert_eq!(parse_id(&ID::from("7")).ok(), Some(7));
        for bad in ["0", "-1", "abc", "1.5", "", "99999999999"] {
            assert!(parse_id(&ID::from(bad)).is_err(), "{bad} accepted");
        }
        let long = "x".repeat(500);
        let err = parse_id(&ID::from(long.as_str())).expect_err("long");
        assert!(err.to_string().len() < 150);
    }
}
