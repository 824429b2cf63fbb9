//! The catalogue grid, through the cache: one page of the anime a filter
//! keeps in a chosen order (`animeList`, and the pages of
//! `genre(slug) { anime }`, theme and studio alike), and the number of
//! anime a filter keeps (a filtered `animeCount`).
//!
//! A page holds ids and its total (the anime are entities of their own);
//! both depend on the tags of their filter's partition and fields, and the
//! page on those of its order (`service::tags`): only writes that can move
//! anime in or out of the filter, or within the order, drop them. The
//! unfiltered count keeps its own key ([`AnimeCount`], `anime_count:all`).
//!
//! # Keys
//!
//! The parameters are the filter's set fields in a fixed order, then the
//! order and the page, each `name=value`:
//!
//! ```text
//! anime_list:genre=action:years=2001-2005:season=spring:format=tv:status=finished:min_score=7.5:sort=score_desc:page=1:per_page=20
//! anime_count:theme=school:years=2003
//! ```
//!
//! Slugs reach a key only when [`is_slug`] holds (lowercase ASCII, digits
//! and `-`): a filter naming anything else keeps no anime, and is answered
//! as empty without a key or a statement. Everything else in a key is a
//! number or a fixed word.

use crate::cache::{CachedQuery, Resolver};
use crate::db::{AnimeFilter, AnimeOrder, AnimeRepo, AnimeSort, SortDirection};
use crate::entities::anime::{Format, Season, Status};
use crate::error::Result;

use super::anime::{AnimeCount, AnimeService, PageRequest, PageResult};
use super::tags::{Covered, InvalidationPolicy};
use super::taxonomy::is_slug;
use crate::cache::ranged::Span;

/// `animeList(filter, sort, order, page, perPage)`: one page of the anime
/// `filter` keeps, in `order` (ties by id), with their total.
pub struct AnimeList {
    repo: AnimeRepo,
    policy: InvalidationPolicy,
    filter: AnimeFilter,
    order: AnimeOrder,
    page: PageRequest,
}

impl CachedQuery for AnimeList {
    type Output = PageResult;
    const RESOLVER: Resolver = Resolver::AnimeList;

    fn params(&self) -> String {
        let mut params = filter_params(&self.filter);
        if !params.is_empty() {
            params.push(':');
        }
        params.push_str(&format!(
            "sort={}:page={}:per_page={}",
            order_param(self.order),
            self.page.page,
            self.page.per_page
        ));
        params
    }

    fn tags(&self) -> Vec<String> {
        self.policy.list(&self.filter, self.order)
    }

    fn spans(&self, output: &Self::Output) -> Vec<(String, Vec<Span>)> {
        self.policy.spans(&self.filter, self.order, output.covered)
    }

    async fn load(&self) -> Result<Self::Output> {
        let request = self.page;
        let total = self.repo.count(&self.filter).await?;
        let ranked = if request.offset() >= total {
            Vec::new()
        } else {
            self.repo
                .ranked(&self.filter, self.order, request.offset(), request.per_page)
                .await?
        };
        Ok(PageResult {
            request,
            total,
            covered: Covered::of(&ranked),
            ids: ranked.into_iter().map(|(id, _)| id).collect(),
        })
    }
}

/// `animeCount(filter)` with a filter that sets something: the number of
/// anime it keeps. (Without one, [`AnimeCount`] answers, under its own key.)
pub struct FilteredAnimeCount {
    repo: AnimeRepo,
    policy: InvalidationPolicy,
    filter: AnimeFilter,
}

impl CachedQuery for FilteredAnimeCount {
    type Output = u64;
    const RESOLVER: Resolver = Resolver::AnimeCount;

    fn params(&self) -> String {
        filter_params(&self.filter)
    }

    fn tags(&self) -> Vec<String> {
        self.policy.count(&self.filter)
    }

    async fn load(&self) -> Result<Self::Output> {
        self.repo.count(&self.filter).await
    }
}

/// How a count of the anime a filter keeps is answered.
pub enum CountQuery {
    /// An empty filter: the whole catalogue, `anime_count:all`.
    All(AnimeCount),
    /// A filter that sets something, cached under its own key.
    Filtered(FilteredAnimeCount),
    /// A filter no anime can pass (a slug that cannot be one): zero, with
    /// no key and no statement.
    Nothing,
}

impl AnimeService {
    /// Page `page` of the anime `filter` keeps, in `order`; `None` (no
    /// query to make: the page is empty and the total zero) when a slug of
    /// `filter` cannot be a slug.
    pub fn list(
        &self,
        filter: AnimeFilter,
        order: AnimeOrder,
        page: PageRequest,
    ) -> Option<AnimeList> {
        can_match(&filter).then(|| AnimeList {
            repo: self.repo.clone(),
            policy: self.policy,
            filter,
            order,
            page,
        })
    }

    /// The number of anime `filter` keeps: the unfiltered count for an
    /// empty filter, nothing to ask when a slug cannot be a slug.
    pub fn count_matching(&self, filter: AnimeFilter) -> CountQuery {
        if filter == AnimeFilter::default() {
            CountQuery::All(self.count())
        } else if !can_match(&filter) {
            CountQuery::Nothing
        } else {
            CountQuery::Filtered(FilteredAnimeCount {
                repo: self.repo.clone(),
                policy: self.policy,
                filter,
            })
        }
    }
}

/// Whether every slug of `filter` could be a taxon's (otherwise it keeps
/// no anime).
pub fn can_match(filter: &AnimeFilter) -> bool {
    [&filter.genre, &filter.theme, &filter.studio]
        .into_iter()
        .flatten()
        .all(|slug| is_slug(slug))
}

/// The key parameters of `filter`: its set fields in a fixed order
/// (`genre`, `theme`, `studio`, `years`, `season`, `format`, `status`,
/// `min_score`), `:`-separated; empty for the default filter. Slugs are
/// written as they are: callers make keys only for filters that
/// [`can_match`].
pub fn filter_params(filter: &AnimeFilter) -> String {
    let mut parts: Vec<String> = Vec::new();
    for (name, slug) in [
        ("genre", &filter.genre),
        ("theme", &filter.theme),
        ("studio", &filter.studio),
    ] {
        if let Some(slug) = slug {
            parts.push(format!("{name}={slug}"));
        }
    }
    if let Some(years) = filter.years {
        parts.push(if years.from == years.to {
            format!("years={}", years.from)
        } else {
            format!("years={}-{}", years.from, years.to)
        });
    }
    if let Some(season) = filter.season {
        parts.push(format!("season={}", season_name(season)));
    }
    if let Some(format) = filter.format {
        parts.push(format!("format={}", format_name(format)));
    }
    if let Some(status) = filter.status {
        parts.push(format!("status={}", status_name(status)));
    }
    if let Some(score) = filter.min_score {
        parts.push(format!("min_score={}", number(score)));
    }
    parts.join(":")
}

/// `popularity_desc`, `title_asc`…
pub fn order_param(order: AnimeOrder) -> String {
    let sort = match order.sort {
        AnimeSort::Popularity => "popularity",
        AnimeSort::Score => "score",
        AnimeSort::Year => "year",
        AnimeSort::Title => "title",
        AnimeSort::Id => "id",
    };
    let direction = match order.direction {
        SortDirection::Asc => "asc",
        SortDirection::Desc => "desc",
    };
    format!("{sort}_{direction}")
}

/// `value` in the shortest form that reads back as the same number:
/// plain decimals (`7.5`, `10`), or an exponent where that is much shorter
/// (`5e-324`). One form per value; `-0` is written `0`.
fn number(value: f64) -> String {
    let value = if value == 0.0 { 0.0 } else { value };
    let plain = format!("{value}");
    if plain.len() <= 24 {
        plain
    } else {
        format!("{value:e}")
    }
}

fn season_name(season: Season) -> &'static str {
    match season {
        Season::Winter => "winter",
        Season::Spring => "spring",
        Season::Summer => "summer",
        Season::Fall => "fall",
    }
}

fn format_name(format: Format) -> &'static str {
    match format {
        Format::Tv => "tv",
        Format::Movie => "movie",
        Format::Ova => "ova",
        Format::Ona => "ona",
        Format::Special => "special",
        Format::Music => "music",
    }
}

fn status_name(status: Status) -> &'static str {
    match status {
        Status::Finished => "finished",
        Status::Ongoing => "ongoing",
        Status::Upcoming => "upcoming",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::YearRange;

    #[test]
    fn params_list_only_set_filters_in_a_fixed_order() {
        let filter = AnimeFilter {
            genre: Some("action".into()),
            years: Some(YearRange {
                from: 2001,
                to: 2005,
            }),
            season: Some(Season::Spring),
            format: Some(Format::Tv),
            status: Some(Status::Finished),
            min_score: Some(7.5),
            ..AnimeFilter::default()
        };
        assert_eq!(
            filter_params(&filter),
            "genre=action:years=2001-2005:season=spring:format=tv:status=finished:min_score=7.5"
        );
        assert_eq!(filter_params(&AnimeFilter::default()), "");
        let all = AnimeFilter {
            genre: Some("a".into()),
            theme: Some("b".into()),
            studio: Some("c".into()),
            years: Some(YearRange::single(2003)),
            ..AnimeFilter::default()
        };
        assert_eq!(filter_params(&all), "genre=a:theme=b:studio=c:years=2003");
        assert_eq!(order_param(AnimeSort::Score.natural()), "score_desc");
        assert_eq!(order_param(AnimeSort::Title.natural()), "title_asc");
        assert_eq!(
            order_param(AnimeSort::Popularity.natural().reversed()),
            "popularity_asc"
        );
    }

    #[test]
    fn scores_are_written_one_way() {
        assert_eq!(number(7.5), "7.5");
        assert_eq!(number(7.0), "7");
        assert_eq!(number(10.0), "10");
        assert_eq!(number(-0.0), "0");
        assert_eq!(number(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(number(5e-324), "5e-324");
        for value in [7.25, 0.1 + 0.2, 5e-324, 9.999_999_999_999_998] {
            assert_eq!(number(value).parse::<f64>().ok(), Some(value));
        }
        for text in [number(1e-7), number(f64::MAX)] {
            assert!(text.len() <= 24, "{text}");
            assert!(!text.contains([':', '*', '?', '[', ']', ' ']), "{text}");
        }
    }

    #[test]
    fn a_filter_with_a_non_slug_matches_nothing() {
        let filter = |slug: &str| AnimeFilter {
            studio: Some(slug.to_owned()),
            ..AnimeFilter::default()
        };
        assert!(can_match(&filter("kyoto-animation")));
        assert!(can_match(&AnimeFilter::default()));
        for bad in ["", "Kyoto", "a:b", "a*", "x y"] {
            assert!(!can_match(&filter(bad)), "{bad}");
        }
    }
}
