//! The catalogue's list, count and search SQL: filters, orders and title
//! search, built to match the indexes of migration 2 (its module doc says
//! which index serves what; `tests/it/catalogue.rs` checks the plans).
//!
//! # List shapes
//!
//! ```sql
//! SELECT anime.id FROM anime
//! WHERE anime.id IN (SELECT j.anime_id FROM anime_genre j
//!                    JOIN genre t ON t.id = j.genre_id WHERE t.slug = $1)  -- genre (theme, studio alike)
//!   AND year BETWEEN $2 AND $3        -- or year = $2 for one year
//!   AND season = $4 AND format = $5 AND status = $6
//!   AND score >= $7
//! ORDER BY popularity DESC, id ASC    -- the order, then id
//! LIMIT $8 OFFSET $9
//! ```
//!
//! Orders: each [`AnimeSort`] has a natural direction (popularity, score
//! and year descending; title and id ascending) in which ties go to the
//! lower id; the other direction is its exact reverse (ties to the higher
//! id), so one index read forwards or backwards serves both. Score and year
//! are nullable: anime without one come last in both directions. Because
//! PostgreSQL and SQLite put NULLs at opposite ends of an index, a list by
//! score or year reads `score IS NOT NULL` rows first (one index range on
//! either backend) and only when the page reaches past them the NULL rows
//! (in the tie direction of id), counting the non-NULL rows first when the
//! page starts beyond them: one statement for every page but the last
//! ones. A `minScore` filter (for score) or year filter (for year) already
//! excludes NULLs, so those lists are one statement throughout.
//!
//! # Search
//!
//! The text is trimmed, its whitespace runs become one space and it is
//! lowercased; an anime matches when its title, English title or original
//! title contains it. Matches are found and ranked in `anime_search`, the
//! narrow copy of the lowercased titles and popularity (migration 2), and
//! only the page returned is read from `anime`.
//!
//! PostgreSQL runs one statement per tier, best tier first, until `limit`
//! anime are found; each takes the most popular of its tier from the index
//! that reads least (title B-trees for the first two tiers, the trigram
//! index for the others, or the popularity index when most anime qualify):
//!
//! ```sql
//! SELECT anime.* FROM (
//!   SELECT s.anime_id, s.popularity FROM anime_search s
//!   WHERE (s.title LIKE 'text%' OR s.title_english LIKE 'text%' OR s.title_original LIKE 'text%')
//!     AND NOT (s.title = 'text' OR …)              -- not a better tier
//!   ORDER BY s.popularity DESC, s.anime_id LIMIT 20) AS hit
//! JOIN anime ON anime.id = hit.anime_id ORDER BY hit.popularity DESC, hit.anime_id
//! ```
//!
//! SQLite ranks every match of the FTS5 trigram table in one statement
//! (`anime_search MATCH '"text"'`; texts under 3 characters, which a
//! trigram index cannot look up, scan the table with `LIKE`). Both order
//! the same way, so the two backends answer alike:
//!
//! 0. a title equals the text; 1. a title starts with it; 2. a word of a
//!    title starts with it; 3. it is elsewhere in a title;
//!
//! then popularity (descending), then id. Case-insensitive for ASCII on
//! both backends; for other letters as far as the database's `lower()`
//! goes (all of Unicode under a UTF-8 PostgreSQL locale; ASCII only in
//! SQLite and under the C locale, although FTS5's own matching folds
//! Unicode).

use migration::schema_names::{PG_SEARCH_EXPRESSION, SEARCH_TABLE};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query, SelectStatement};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, Order, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait, Select, Statement, Value,
};
use serde::{Deserialize, Serialize};

use super::taxonomy::Taxonomy;
use crate::entities::anime::{self, Format, Season, Status};

/// What a list keeps. Every field that is set must hold (AND); the default
/// keeps every anime.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AnimeFilter {
    /// Slug of a genre the anime has.
    pub genre: Option<String>,
    /// Slug of a theme the anime has.
    pub theme: Option<String>,
    /// Slug of a studio that made the anime.
    pub studio: Option<String>,
    /// Years of first airing (inclusive).
    pub years: Option<YearRange>,
    /// Season of first airing.
    pub season: Option<Season>,
    /// Release format.
    pub format: Option<Format>,
    /// Airing status.
    pub status: Option<Status>,
    /// Lowest score kept (inclusive); unscored anime are left out.
    pub min_score: Option<f64>,
}

/// An inclusive range of years; one year is `from == to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct YearRange {
    /// First year kept.
    pub from: i32,
    /// Last year kept.
    pub to: i32,
}

impl YearRange {
    /// Just `year`.
    pub fn single(year: i32) -> Self {
        Self {
            from: year,
            to: year,
        }
    }
}

/// What a list is ordered by (then by id).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AnimeSort {
    /// Members count; naturally descending.
    #[default]
    Popularity,
    /// Score; naturally descending; unscored last either way.
    Score,
    /// Year of first airing; naturally descending (newest first); unknown
    /// years last either way.
    Year,
    /// Title (the database's collation); naturally ascending.
    Title,
    /// Id, i.e. the order anime were added; naturally ascending.
    Id,
}

/// A direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SortDirection {
    /// Smallest first.
    Asc,
    /// Largest first.
    Desc,
}

impl SortDirection {
    fn reversed(self) -> Self {
        match self {
            Self::Asc => Self::Desc,
            Self::Desc => Self::Asc,
        }
    }

    fn order(self) -> Order {
        match self {
            Self::Asc => Order::Asc,
            Self::Desc => Order::Desc,
        }
    }
}

/// A sort and its direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AnimeOrder {
    /// What to order by.
    pub sort: AnimeSort,
    /// Which way.
    pub direction: SortDirection,
}

impl Default for AnimeOrder {
    /// Most popular first.
    fn default() -> Self {
        AnimeSort::Popularity.natural()
    }
}

impl AnimeSort {
    /// This sort in its natural direction.
    pub fn natural(self) -> AnimeOrder {
        let direction = match self {
            Self::Popularity | Self::Score | Self::Year => SortDirection::Desc,
            Self::Title | Self::Id => SortDirection::Asc,
        };
        AnimeOrder {
            sort: self,
            direction,
        }
    }

    fn column(self) -> anime::Column {
        match self {
            Self::Popularity => anime::Column::Popularity,
            Self::Score => anime::Column::Score,
            Self::Year => anime::Column::Year,
            Self::Title => anime::Column::Title,
            Self::Id => anime::Column::Id,
        }
    }

    fn is_nullable(self) -> bool {
        matches!(self, Self::Score | Self::Year)
    }
}

impl AnimeOrder {
    /// The same sort, the other way.
    pub fn reversed(self) -> Self {
        Self {
            sort: self.sort,
            direction: self.direction.reversed(),
        }
    }

    /// Whether this is the sort's natural direction (ties: lower id first).
    pub fn is_natural(self) -> bool {
        self.sort.natural().direction == self.direction
    }

    /// Direction of the id tie-breaker (and of the NULL rows' order).
    fn id_direction(self) -> SortDirection {
        if self.is_natural() {
            SortDirection::Asc
        } else {
            SortDirection::Desc
        }
    }
}

impl AnimeFilter {
    /// Whether the filter alone keeps out the NULLs of `sort`'s column.
    fn excludes_nulls_of(&self, sort: AnimeSort) -> bool {
        match sort {
            AnimeSort::Score => self.min_score.is_some(),
            AnimeSort::Year => self.years.is_some(),
            _ => true,
        }
    }
}

/// `anime.id IN (SELECT j.anime_id FROM <join> j JOIN <taxon> t ON … WHERE t.slug = ?)`.
fn has_taxon(kind: Taxonomy, slug: &str) -> SelectStatement {
    let (t, j) = (Alias::new(kind.table()), Alias::new(kind.join_table()));
    Query::select()
        .column((j.clone(), Alias::new("anime_id")))
        .from(j.clone())
        .inner_join(
            t.clone(),
            Expr::col((t.clone(), Alias::new("id"))).equals((j, Alias::new(kind.key()))),
        )
        .and_where(Expr::col((t, Alias::new("slug"))).eq(slug))
        .to_owned()
}

/// `SELECT anime.* FROM anime WHERE <filter>`.
pub(crate) fn filtered(filter: &AnimeFilter) -> Select<anime::Entity> {
    let mut select = anime::Entity::find();
    for (kind, slug) in [
        (Taxonomy::Genre, &filter.genre),
        (Taxonomy::Theme, &filter.theme),
        (Taxonomy::Studio, &filter.studio),
    ] {
        if let Some(slug) = slug {
            select = select.filter(anime::Column::Id.in_subquery(has_taxon(kind, slug)));
        }
    }
    if let Some(years) = filter.years {
        select = if years.from == years.to {
            select.filter(anime::Column::Year.eq(years.from))
        } else {
            select.filter(anime::Column::Year.between(years.from, years.to))
        };
    }
    if let Some(season) = filter.season {
        select = select.filter(anime::Column::Season.eq(season));
    }
    if let Some(format) = filter.format {
        select = select.filter(anime::Column::Format.eq(format));
    }
    if let Some(status) = filter.status {
        select = select.filter(anime::Column::Status.eq(status));
    }
    if let Some(score) = filter.min_score {
        select = select.filter(anime::Column::Score.gte(score));
    }
    select
}

/// Which rows of a nullable order a statement reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    /// The order's column cannot be NULL in these rows.
    All,
    /// `col IS NOT NULL`, in the order.
    Valued,
    /// `col IS NULL`, by id.
    Nulls,
}

fn ordered(filter: &AnimeFilter, order: AnimeOrder, part: Part) -> Select<anime::Entity> {
    let column = order.sort.column();
    let id = order.id_direction().order();
    let select = filtered(filter);
    match part {
        Part::All | Part::Valued => {
            let select = if part == Part::Valued {
                select.filter(column.is_not_null())
            } else {
                select
            };
            if order.sort == AnimeSort::Id {
                select.order_by(anime::Column::Id, order.direction.order())
            } else {
                select
                    .order_by(column, order.direction.order())
                    .order_by(anime::Column::Id, id)
            }
        }
        Part::Nulls => select
            .filter(column.is_null())
            .order_by(anime::Column::Id, id),
    }
}

fn first_part(filter: &AnimeFilter, order: AnimeOrder) -> Part {
    if order.sort.is_nullable() && !filter.excludes_nulls_of(order.sort) {
        Part::Valued
    } else {
        Part::All
    }
}

/// The first (for most pages the only) statement of [`list`], for EXPLAIN
/// checks.
pub fn list_statement(
    backend: DbBackend,
    filter: &AnimeFilter,
    order: AnimeOrder,
    offset: u64,
    limit: u64,
) -> Statement {
    ordered(filter, order, first_part(filter, order))
        .select_only()
        .column(anime::Column::Id)
        .offset(offset)
        .limit(limit)
        .build(backend)
}

/// The statement of [`count`], for EXPLAIN checks.
pub fn count_statement(backend: DbBackend, filter: &AnimeFilter) -> Statement {
    count_select(filter).build(backend)
}

fn count_select(filter: &AnimeFilter) -> Select<anime::Entity> {
    filtered(filter)
        .select_only()
        .column_as(anime::Column::Id.count(), "count")
}

/// Ids of rows `offset .. offset + limit` of the anime `filter` keeps, in
/// `order` (see the module doc for the statements this takes), each with
/// its value of the order's column when that is a number (popularity,
/// score, year; `None` when absent, and for title and id orders). Only the
/// id and that column are read: the rows themselves are entities the cache
/// holds on their own.
pub async fn list(
    conn: &impl ConnectionTrait,
    filter: &AnimeFilter,
    order: AnimeOrder,
    offset: u64,
    limit: u64,
) -> Result<Vec<(i32, Option<f64>)>, DbErr> {
    let first = first_part(filter, order);
    let mut found = ids_and_values(
        conn,
        order.sort,
        ordered(filter, order, first).offset(offset).limit(limit),
    )
    .await?;
    let got = found.len() as u64;
    if first == Part::All || got == limit {
        return Ok(found);
    }
    let nulls_offset = if got > 0 || offset == 0 {
        0
    } else {
        let valued = count_select(filter)
            .filter(order.sort.column().is_not_null())
            .into_tuple::<i64>()
            .one(conn)
            .await?
            .unwrap_or_default();
        offset.saturating_sub(u64::try_from(valued).unwrap_or_default())
    };
    let nulls = ids_and_values(
        conn,
        order.sort,
        ordered(filter, order, Part::Nulls)
            .offset(nulls_offset)
            .limit(limit - got),
    )
    .await?;
    found.extend(nulls);
    Ok(found)
}

/// Runs `select` for the id and, for a numeric `sort`, its column.
async fn ids_and_values(
    conn: &impl ConnectionTrait,
    sort: AnimeSort,
    select: Select<anime::Entity>,
) -> Result<Vec<(i32, Option<f64>)>, DbErr> {
    let select = select.select_only().column(anime::Column::Id);
    Ok(match sort {
        AnimeSort::Score => {
            select
                .column(anime::Column::Score)
                .into_tuple::<(i32, Option<f64>)>()
                .all(conn)
                .await?
        }
        AnimeSort::Year => select
            .column(anime::Column::Year)
            .into_tuple::<(i32, Option<i32>)>()
            .all(conn)
            .await?
            .into_iter()
            .map(|(id, year)| (id, year.map(f64::from)))
            .collect(),
        AnimeSort::Popularity => select
            .column(anime::Column::Popularity)
            .into_tuple::<(i32, i32)>()
            .all(conn)
            .await?
            .into_iter()
            .map(|(id, popularity)| (id, Some(f64::from(popularity))))
            .collect(),
        AnimeSort::Title | AnimeSort::Id => select
            .into_tuple::<i32>()
            .all(conn)
            .await?
            .into_iter()
            .map(|id| (id, None))
            .collect(),
    })
}

/// How many anime `filter` keeps: `SELECT COUNT(anime.id) FROM anime WHERE …`.
pub async fn count(conn: &impl ConnectionTrait, filter: &AnimeFilter) -> Result<u64, DbErr> {
    let count = count_select(filter)
        .into_tuple::<i64>()
        .one(conn)
        .await?
        .unwrap_or_default();
    Ok(u64::try_from(count).unwrap_or_default())
}

/// Texts shorter than this (in characters) have no trigram: SQLite's FTS5
/// table cannot look them up, so they scan `anime` instead.
const MIN_TRIGRAM_CHARS: usize = 3;

/// The search text as both backends compare it (module doc); `None` when
/// nothing is left.
pub fn normalize_search(text: &str) -> Option<String> {
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect();
    (!words.is_empty()).then(|| words.join(" ").to_lowercase())
}

/// `text` with LIKE's wildcards and the escape character escaped (`\`).
fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The relevance tier of a row `table` of `anime_search` (module doc),
/// with parameters `p2` (the text), `p3` (`text%`) and `p4` (`% text%`).
fn rank_expression(table: &str, p2: &str, p3: &str, p4: &str) -> String {
    let titles = ["title", "title_english", "title_original"];
    let any = |test: &dyn Fn(&str) -> String| {
        titles
            .iter()
            .map(|title| test(&format!("{table}.{title}")))
            .collect::<Vec<_>>()
            .join(" OR ")
    };
    format!(
        "CASE WHEN {} THEN 0 WHEN {} THEN 1 WHEN {} THEN 2 ELSE 3 END",
        any(&|t| format!("{t} = {p2}")),
        any(&|t| format!("{t} LIKE {p3} ESCAPE '\\'")),
        any(&|t| format!("{t} LIKE {p4} ESCAPE '\\'")),
    )
}

/// Relevance tiers (module doc), best first.
const TIERS: u8 = 4;

/// The statements of [`search`] for an already normalized `text`, in the
/// order it runs them: on PostgreSQL one per tier (it stops once `limit`
/// anime are found), on SQLite one.
pub fn search_statements(backend: DbBackend, text: &str, limit: u64) -> Vec<Statement> {
    let escaped = escape_like(text);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    match backend {
        DbBackend::Postgres => (0..TIERS)
            .map(|tier| pg_tier(tier, text, &escaped, limit))
            .collect(),
        _ => vec![sqlite_search(text, &escaped, limit)],
    }
}

/// PostgreSQL: the `limit` most popular anime of exactly one tier, from
/// whichever index reads less: the title B-trees for "equals" and "starts
/// with", the trigram index for "a word starts with" and "anywhere" (and
/// for a text most anime contain, the popularity index, walked until
/// `limit` rows qualify; the planner picks by the statistics). Tiers run
/// best first and stop at `limit` anime, so a common word ("sora") is
/// answered by its "starts with" tier and never ranks the thousands of
/// titles that merely contain it. No `ESCAPE`: PostgreSQL's default
/// escape is `\`, and without the clause a prefix pattern becomes a
/// B-tree range.
fn pg_tier(tier: u8, text: &str, escaped: &str, limit: i64) -> Statement {
    let titles = ["s.title", "s.title_english", "s.title_original"];
    let any = |test: &dyn Fn(&str) -> String| {
        let tests: Vec<String> = titles.iter().map(|t| test(t)).collect();
        format!("({})", tests.join(" OR "))
    };
    // Each tier's condition; a row belongs to the first it meets.
    let conditions = [
        any(&|t| format!("{t} = $1")),
        any(&|t| format!("{t} LIKE $2")),
        format!("({PG_SEARCH_EXPRESSION}) LIKE $3"),
        format!("({PG_SEARCH_EXPRESSION}) LIKE $4"),
    ];
    let tier = usize::from(tier).min(conditions.len() - 1);
    let mut condition = conditions[tier].clone();
    for better in &conditions[..tier] {
        condition.push_str(&format!(" AND NOT {better}"));
    }
    let sql = format!(
        "SELECT anime.* FROM ( \
           SELECT s.anime_id, s.popularity FROM {SEARCH_TABLE} s WHERE {condition} \
           ORDER BY s.popularity DESC, s.anime_id LIMIT $5) AS hit \
         JOIN anime ON anime.id = hit.anime_id \
         ORDER BY hit.popularity DESC, hit.anime_id"
    );
    let values: Vec<Value> = vec![
        text.to_owned().into(),
        format!("{escaped}%").into(),
        format!("% {escaped}%").into(),
        format!("%{escaped}%").into(),
        limit.into(),
    ];
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// SQLite: every match from the FTS5 table (or, under 3 characters, a scan
/// of it), ranked in one pass.
fn sqlite_search(text: &str, escaped: &str, limit: i64) -> Statement {
    let (matches, first) = if text.chars().count() >= MIN_TRIGRAM_CHARS {
        (
            format!("{SEARCH_TABLE} MATCH ?1"),
            // A phrase: FTS5 then matches the text as a substring.
            format!("\"{}\"", text.replace('"', "\"\"")),
        )
    } else {
        (
            "s.title LIKE ?1 ESCAPE '\\' OR s.title_english LIKE ?1 ESCAPE '\\' \
             OR s.title_original LIKE ?1 ESCAPE '\\'"
                .to_owned(),
            format!("%{escaped}%"),
        )
    };
    let sql = format!(
        "SELECT anime.* FROM ( \
           SELECT s.rowid AS anime_id, s.popularity AS popularity, {rank} AS tier \
           FROM {SEARCH_TABLE} s WHERE {matches} \
           ORDER BY tier, s.popularity DESC, s.rowid LIMIT ?5) AS hit \
         JOIN anime ON anime.id = hit.anime_id \
         ORDER BY hit.tier, hit.popularity DESC, hit.anime_id",
        rank = rank_expression("s", "?2", "?3", "?4"),
    );
    let values: Vec<Value> = vec![
        first.into(),
        text.to_owned().into(),
        format!("{escaped}%").into(),
        format!("% {escaped}%").into(),
        limit.into(),
    ];
    Statement::from_sql_and_values(DbBackend::Sqlite, sql, values)
}

/// Up to `limit` anime whose titles contain `text`, most relevant first
/// (module doc). An empty text finds nothing, without a statement.
pub async fn search(
    conn: &impl ConnectionTrait,
    text: &str,
    limit: u64,
) -> Result<Vec<anime::Model>, DbErr> {
    let Some(text) = normalize_search(text) else {
        return Ok(Vec::new());
    };
    let mut found: Vec<anime::Model> = Vec::new();
    let backend = conn.get_database_backend();
    let mut tier = 0;
    while (found.len() as u64) < limit && tier < TIERS {
        let wanted = limit - found.len() as u64;
        let statement = match backend {
            DbBackend::Postgres => pg_tier(tier, &text, &escape_like(&text), wanted as i64),
            _ => sqlite_search(&text, &escape_like(&text), wanted as i64),
        };
        let rows = anime::Entity::find()
            .from_raw_sql(statement)
            .all(conn)
            .await?;
        // A title renamed between two tiers' statements could come twice.
        for row in rows {
            if !found.iter().any(|seen| seen.id == row.id) {
                found.push(row);
            }
        }
        tier = match backend {
            DbBackend::Postgres => tier + 1,
            // One statement ranks every tier.
            _ => TIERS,
        };
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_text_is_trimmed_collapsed_and_lowercased() {
        assert_eq!(
            normalize_search("  Sora \t NO\nkanata "),
            Some("sora no kanata".into())
        );
        assert_eq!(normalize_search(" \u{0} \n"), None);
        assert_eq!(escape_like(r"100%_\"), r"100\%\_\\");
    }

    #[test]
    fn each_sort_reverses_exactly_and_breaks_ties_by_id() {
        let popular = AnimeOrder::default();
        assert_eq!(popular.sort, AnimeSort::Popularity);
        assert_eq!(popular.direction, SortDirection::Desc);
        assert_eq!(popular.id_direction(), SortDirection::Asc);
        assert_eq!(popular.reversed().id_direction(), SortDirection::Desc);
        assert_eq!(AnimeSort::Title.natural().direction, SortDirection::Asc);

        let sql = list_statement(DbBackend::Postgres, &AnimeFilter::default(), popular, 0, 20)
            .to_string();
        assert!(
            sql.ends_with(
                r#"ORDER BY "anime"."popularity" DESC, "anime"."id" ASC LIMIT 20 OFFSET 0"#
            ),
            "{sql}"
        );
        let sql = list_statement(
            DbBackend::Sqlite,
            &AnimeFilter::default(),
            AnimeSort::Score.natural().reversed(),
            0,
            20,
        )
        .to_string();
        assert!(sql.contains(r#""anime"."score" IS NOT NULL"#), "{sql}");
        assert!(
            sql.contains(r#"ORDER BY "anime"."score" ASC, "anime"."id" DESC"#),
            "{sql}"
        );
    }

    #[test]
    fn a_filter_that_excludes_nulls_lists_in_one_part() {
        let filter = AnimeFilter {
            min_score: Some(8.0),
            ..AnimeFilter::default()
        };
        let sql = list_statement(
            DbBackend::Postgres,
            &filter,
            AnimeSort::Score.natural(),
            0,
            20,
        )
        .to_string();
        assert!(!sql.contains("IS NOT NULL"), "{sql}");
        assert!(sql.contains(r#""anime"."score" >= 8"#), "{sql}");
    }
}
