//! `searchAnime`: title search. The resolver checks `limit`, has the
//! service check and normalize the text (`service::search`), and reads the
//! result through the cache.

use std::ops::RangeInclusive;

use async_graphql::{Context, Object, Result, ResultExt};

use super::query::{in_range, state};
use super::types::Anime;
use crate::service::SearchText;

/// Allowed `limit` of `searchAnime`: a result list, not a way to page
/// through the catalogue.
const SEARCH_SIZE: RangeInclusive<i64> = 1..=50;

/// Title search.
#[derive(Default)]
pub struct SearchQuery;

#[Object]
impl SearchQuery {
    /// Anime whose title, English title or original title contains `query`,
    /// ignoring case: an exact title first, then titles that start with it,
    /// then titles with a word that starts with it, then any other match;
    /// within each, most members first, then lower id first. Cached up to
    /// 300 s (a text is stored once it has been searched twice).
    #[graphql(complexity = "limit.clamp(1, 50) as usize * child_complexity")]
    async fn search_anime(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "The text to find: 1 to 100 characters once trimmed, runs of whitespace taken as one space; no control characters (tabs and newlines count as spaces)."
        )]
        query: String,
        #[graphql(default = 20, desc = "How many anime to return at most: 1 to 50.")] limit: i64,
    ) -> Result<Vec<Anime>> {
        let limit = in_range("limit", limit, SEARCH_SIZE).extend()?;
        let text = SearchText::parse(&query).extend()?;
        let (_, anime) = Anime::list(ctx, state(ctx)?.anime.search(text, limit)).await?;
        Ok(anime)
    }
}
