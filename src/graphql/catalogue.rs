//! The catalogue grid: `animeList(filter, sort, order, page, perPage)`, the
//! filter `animeCount(filter)` shares, and the pages of
//! `genre(slug) { anime }` (theme, studio alike), which are the same list
//! filtered by that taxon.
//!
//! Arguments are checked here (every wrong one reported at once, each a
//! `BAD_USER_INPUT` naming it, `filter.yearFrom`); the page itself is the
//! service's cached [`crate::service::AnimeList`].

use std::ops::RangeInclusive;

use async_graphql::{Context, Enum, InputObject, Object, Result, SimpleObject};

use super::query::{PAGE_SIZE, in_range, state};
use super::types::{Anime, AnimeFormat, AnimePage, AnimeSeason, AnimeStatus};
use crate::db::{AnimeFilter, AnimeOrder, Taxonomy, YearRange};
use crate::error::AppError;
use crate::service::PageRequest;

/// Years a filter can name: those an anime can have.
const YEARS: RangeInclusive<i32> = 1900..=2100;

/// Scores a filter can name.
const SCORES: RangeInclusive<f64> = 0.0..=10.0;

/// What a list is ordered by; ties always go by id.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(remote = "crate::db::AnimeSort")]
pub enum AnimeSort {
    /// Members count; most popular first unless `order: ASC`.
    Popularity,
    /// Score; best first unless `order: ASC`. Unscored anime come last in
    /// both directions.
    Score,
    /// Year of first airing; newest first unless `order: ASC`. Anime
    /// without a year come last in both directions.
    Year,
    /// Title; A to Z unless `order: DESC`.
    Title,
    /// Id, the order anime were added; oldest first unless `order: DESC`.
    Id,
}

/// A direction. In a sort's natural direction (`POPULARITY`, `SCORE`,
/// `YEAR`: descending; `TITLE`, `ID`: ascending) ties go to the lower id;
/// the other direction is the exact reverse.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(remote = "crate::db::SortDirection")]
pub enum SortOrder {
    /// Smallest first.
    Asc,
    /// Largest first.
    Desc,
}

/// Which anime a list keeps: every field that is set must hold. A slug
/// that names no genre (theme, studio) keeps no anime; it is not an error.
#[derive(InputObject, Default)]
pub struct AnimeFilterInput {
    /// Slug of a genre the anime has (`slice-of-life`).
    pub genre: Option<String>,
    /// Slug of a theme the anime has.
    pub theme: Option<String>,
    /// Slug of a studio that made the anime.
    pub studio: Option<String>,
    /// Year of first airing, 1900-2100. Not together with `yearFrom` or
    /// `yearTo`.
    pub year: Option<i32>,
    /// First year of first airing kept, 1900-2100 (inclusive; alone: that
    /// year and later). Anime without a year are left out by any year
    /// filter.
    pub year_from: Option<i32>,
    /// Last year of first airing kept, 1900-2100 (inclusive; alone: that
    /// year and earlier), not before `yearFrom`.
    pub year_to: Option<i32>,
    /// Season of first airing.
    pub season: Option<AnimeSeason>,
    /// Release format.
    pub format: Option<AnimeFormat>,
    /// Airing status.
    pub status: Option<AnimeStatus>,
    /// Lowest score kept, 0-10 (inclusive); unscored anime are left out.
    pub min_score: Option<f64>,
}

impl AnimeFilterInput {
    /// The filter, or every problem of it (`filter.year`…).
    pub fn check(self) -> Result<AnimeFilter, AppError> {
        let mut problems = Vec::new();
        let mut year = |argument: &'static str, value: Option<i32>| match value {
            Some(value) if !YEARS.contains(&value) => {
                problems.push(AppError::bad_input(
                    argument,
                    format!(
                        "{argument} must be between {} and {} (got {value})",
                        YEARS.start(),
                        YEARS.end()
                    ),
                ));
                None
            }
            other => other,
        };
        let (single, from, to) = (
            year("filter.year", self.year),
            year("filter.yearFrom", self.year_from),
            year("filter.yearTo", self.year_to),
        );
        if self.year.is_some() && (self.year_from.is_some() || self.year_to.is_some()) {
            problems.push(AppError::bad_input(
                "filter.year",
                "filter.year cannot be combined with filter.yearFrom or filter.yearTo",
            ));
        }
        if let (Some(from), Some(to)) = (from, to)
            && from > to
        {
            problems.push(AppError::bad_input(
                "filter.yearFrom",
                format!("filter.yearFrom ({from}) must not be after filter.yearTo ({to})"),
            ));
        }
        if let Some(score) = self.min_score
            && !(score.is_finite() && SCORES.contains(&score))
        {
            problems.push(AppError::bad_input(
                "filter.minScore",
                format!(
                    "filter.minScore must be between {} and {} (got {score:?})",
                    SCORES.start(),
                    SCORES.end()
                ),
            ));
        }
        AppError::all(problems)?;
        let years = match (single, from, to) {
            (Some(year), _, _) => Some(YearRange::single(year)),
            (None, None, None) => None,
            (None, from, to) => Some(YearRange {
                from: from.unwrap_or(*YEARS.start()),
                to: to.unwrap_or(*YEARS.end()),
            }),
        };
        Ok(AnimeFilter {
            genre: self.genre,
            theme: self.theme,
            studio: self.studio,
            years,
            season: self.season.map(Into::into),
            format: self.format.map(Into::into),
            status: self.status.map(Into::into),
            min_score: self.min_score,
        })
    }
}

/// One page of a filtered, ordered list of anime. (For the complexity
/// limit the page's own numbers cost nothing: the field that returns it
/// counts `perPage` times its selection, plus 5.)
#[derive(SimpleObject)]
pub struct AnimeList {
    /// Number of anime the filter keeps (all pages).
    #[graphql(complexity = 0)]
    pub total: u64,
    /// This page's number (1-based).
    #[graphql(complexity = 0)]
    pub page: u64,
    /// Items per page, as requested.
    #[graphql(complexity = 0)]
    pub per_page: u64,
    /// Whether a later page has items.
    #[graphql(complexity = 0)]
    pub has_next_page: bool,
    /// The anime on this page, in the list's order; empty past the last
    /// page.
    pub items: Vec<Anime>,
}

impl AnimeList {
    /// The page of a list that keeps nothing.
    fn empty(request: PageRequest) -> Self {
        Self {
            total: 0,
            page: request.page,
            per_page: request.per_page,
            has_next_page: false,
            items: Vec::new(),
        }
    }
}

impl From<AnimePage> for AnimeList {
    fn from(page: AnimePage) -> Self {
        Self {
            total: page.total,
            page: page.page,
            per_page: page.per_page,
            has_next_page: page.has_next_page,
            items: page.items,
        }
    }
}

/// The list of anime with the taxon `slug` of `kind`.
pub(super) fn of_taxon(kind: Taxonomy, slug: &str) -> AnimeFilter {
    let slug = Some(slug.to_owned());
    match kind {
        Taxonomy::Genre => AnimeFilter {
            genre: slug,
            ..AnimeFilter::default()
        },
        Taxonomy::Theme => AnimeFilter {
            theme: slug,
            ..AnimeFilter::default()
        },
        Taxonomy::Studio => AnimeFilter {
            studio: slug,
            ..AnimeFilter::default()
        },
    }
}

/// Checks the list arguments (reporting every problem, of the filter too)
/// and reads the page through the cache.
pub(super) async fn anime_list(
    ctx: &Context<'_>,
    filter: Result<AnimeFilter, AppError>,
    sort: AnimeSort,
    order: Option<SortOrder>,
    page: i64,
    per_page: i64,
) -> Result<AnimeList> {
    let (filter, page, per_page) = match (
        filter,
        in_range("page", page, 1..=i64::MAX),
        in_range("perPage", per_page, PAGE_SIZE),
    ) {
        (Ok(filter), Ok(page), Ok(per_page)) => (filter, page, per_page),
        (filter, page, per_page) => {
            let problems = [filter.err(), page.err(), per_page.err()]
                .into_iter()
                .flatten()
                .collect();
            return Err(AppError::all(problems)
                .err()
                .unwrap_or_else(|| AppError::Internal(anyhow::anyhow!("no list problem")))
                .into_field_error(ctx));
        }
    };
    let sort = crate::db::AnimeSort::from(sort);
    let order = match order {
        None => sort.natural(),
        Some(direction) => AnimeOrder {
            sort,
            direction: direction.into(),
        },
    };
    let request = PageRequest { page, per_page };
    let Some(query) = state(ctx)?.anime.list(filter, order, request) else {
        return Ok(AnimeList::empty(request));
    };
    Ok(AnimeList::from(AnimePage::load(ctx, query).await?))
}

/// The catalogue grid.
#[derive(Default)]
pub struct CatalogueQuery;

#[Object]
impl CatalogueQuery {
    /// One page of the anime `filter` keeps (all of them without one), by
    /// `sort`: in its natural direction (`POPULARITY`, `SCORE`, `YEAR`
    /// descending; `TITLE`, `ID` ascending) unless `order` says otherwise;
    /// ties by id. `page` starts at 1; `perPage` is 1 to 100. A page past
    /// the end is empty, with `hasNextPage: false`; a slug that names
    /// nothing gives an empty list. Cached up to 300 s.
    #[graphql(complexity = "per_page.clamp(1, 100) as usize * child_complexity + 5")]
    async fn anime_list(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Which anime to keep; all of them when absent.")] filter: Option<
            AnimeFilterInput,
        >,
        #[graphql(
            default_with = "AnimeSort::Popularity",
            desc = "What to order by (then by id)."
        )]
        sort: AnimeSort,
        #[graphql(desc = "Direction; the sort's natural direction when absent.")] order: Option<
            SortOrder,
        >,
        #[graphql(default = 1, desc = "Page number, from 1.")] page: i64,
        #[graphql(default = 20, desc = "Anime per page, 1 to 100.")] per_page: i64,
    ) -> Result<AnimeList> {
        let filter = filter.unwrap_or_default().check();
        anime_list(ctx, filter, sort, order, page, per_page).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(input: AnimeFilterInput) -> Vec<String> {
        match input.check() {
            Ok(_) => Vec::new(),
            Err(AppError::BadUserInputs(all)) => all.iter().map(ToString::to_string).collect(),
            Err(one) => vec![one.to_string()],
        }
    }

    #[test]
    fn years_become_one_range() {
        let years = |input: AnimeFilterInput| input.check().ok().and_then(|f| f.years);
        assert_eq!(
            years(AnimeFilterInput {
                year: Some(2004),
                ..AnimeFilterInput::default()
            }),
            Some(YearRange::single(2004))
        );
        assert_eq!(
            years(AnimeFilterInput {
                year_from: Some(2001),
                ..AnimeFilterInput::default()
            }),
            Some(YearRange {
                from: 2001,
                to: 2100
            })
        );
        assert_eq!(
            years(AnimeFilterInput {
                year_to: Some(1999),
                ..AnimeFilterInput::default()
            }),
            Some(YearRange {
                from: 1900,
                to: 1999
            })
        );
        assert_eq!(years(AnimeFilterInput::default()), None);
    }

    #[test]
    fn every_bad_field_is_reported() {
        let all = problems(AnimeFilterInput {
            year: Some(1800),
            year_from: Some(2010),
            year_to: Some(2005),
            min_score: Some(f64::NAN),
            ..AnimeFilterInput::default()
        });
        assert_eq!(all.len(), 4, "{all:?}");
        assert!(all[0].starts_with("filter.year must be between 1900 and 2100"));
        assert!(all[1].contains("cannot be combined"));
        assert!(all[2].starts_with("filter.yearFrom (2010) must not be after"));
        assert!(all[3].starts_with("filter.minScore"));
        assert_eq!(
            problems(AnimeFilterInput {
                min_score: Some(10.5),
                ..AnimeFilterInput::default()
            }),
            ["filter.minScore must be between 0 and 10 (got 10.5)"]
        );
        assert!(
            problems(AnimeFilterInput {
                min_score: Some(0.0),
                year_from: Some(2000),
                year_to: Some(2000),
                genre: Some("Not A Slug".into()),
                ..AnimeFilterInput::default()
            })
            .is_empty()
        );
    }
}
