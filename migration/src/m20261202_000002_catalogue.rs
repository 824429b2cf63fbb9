//! The catalogue's data model (issue 13): genres, themes and studios as
//! tables joined to anime, video players, episodes, the original title and
//! age rating, the indexes of the list and search queries, and the move of
//! every JSON genre name into rows.
//!
//! # Tables
//!
//! | table | columns | keys and indexes |
//! |---|---|---|
//! | `genre`, `theme`, `studio` | `id`, `name` (≤ 64), `slug` (≤ 64, see `slug.rs`) | unique `name`, unique `slug` |
//! | `anime_genre`, `anime_theme`, `anime_studio` | `anime_id`, `<x>_id`, `position` (the anime's own order) | primary key `(anime_id, <x>_id)`; index `(<x>_id, anime_id)`; both foreign keys `ON DELETE CASCADE` |
//! | `player` | `id`, `anime_id`, `embed_url` (≤ 512), `translator` (≤ 128), `quality` (≤ 16), `position` | index `(anime_id, position)`; cascade |
//! | `episode` | `id`, `anime_id`, `number`, `title` (≤ 255), `aired_on` (date) | unique `(anime_id, number)`; cascade |
//! | `anime` | gains `title_original` (≤ 255), `age_rating` (≤ 16); loses `genres` | see "Indexes on anime" |
//! | `anime_search` | `anime_id`, `popularity`, the three titles lowercased | see "Search" |
//!
//! # Indexes on `anime`
//!
//! Each list order has one index ending in `id`, the tie-breaker, so a
//! page is an index range with no sort step; the opposite direction is the
//! same index read backwards (which is why ascending orders break ties by
//! the higher id first: they are the exact reverse of the descending ones):
//!
//! - `(popularity DESC, id)` (from the first migration): the default order;
//! - `(score DESC, id)`, `(year DESC, id)`: score and year orders, and the
//!   `minScore` / year range filters (a range of the same index). Both
//!   columns are nullable, and the two backends put NULLs at opposite ends
//!   of a DESC index (PostgreSQL first, SQLite last): the list query reads
//!   the non-NULL rows (`col IS NOT NULL`, which both can answer from the
//!   index in either direction) and then the NULL rows, so unscored anime
//!   come last in both directions on both backends;
//! - `(title, id)`: the title order.
//!
//! The three equality filters with few values (format: 6, status: 3,
//! season: 4) each get `(<filter>, popularity DESC, id)`: "filter plus the
//! default order" is the common list, and it then reads exactly one page
//! of index entries, however rare the value (a plain popularity scan would
//! read 1/selectivity entries per row kept: 30 for MUSIC); the same index
//! answers `count(filter)`. With another order, such a filter rides along
//! that order's index (these values are never rare enough for a scan of
//! the filter's own rows plus a sort to be much better). No index for
//! other (filter, order) pairs: they multiply, and at this size a filtered
//! walk of an order index is already a page of milliseconds.
//!
//! Genre, theme and studio filters are semi-joins through the join tables:
//! `(<x>_id, anime_id)` lists the anime of one genre; the primary key
//! `(anime_id, <x>_id)` checks one anime while walking an order index.
//!
//! # Search
//!
//! `anime_search` holds a narrow copy of each anime: its id, popularity and
//! lowercased titles (`title`, `title_english`, `title_original`, `''` for
//! none), kept in step by triggers on `anime` (a delete cascades). A search
//! finds and ranks its matches there and reads only the page it returns
//! from `anime`: matched rows of `anime` are wide (the synopsis is stored
//! inline) and visiting thousands of them for a common word was most of a
//! search's time (p99 at 100,000 anime: PostgreSQL 28 → 14 ms, SQLite 40 →
//! 20 ms for ASCII words).
//!
//! - PostgreSQL: a table with `pg_trgm` and one GIN trigram index over the
//!   three titles joined by newlines (for "a word starts with" and
//!   "anywhere": one trigram index to keep up per write instead of three;
//!   the newline keeps a match from spanning two titles, as search texts
//!   never contain one); a `text_pattern_ops` B-tree per title (for
//!   "equals" and "starts with", where a common word's trigrams would match
//!   thousands of rows); `(popularity DESC, anime_id)` (for a text most
//!   titles contain: walking the most popular first finds a page sooner).
//!   The search runs one tier at a time (`db::anime_query`). Inserts are
//!   copied once per statement (a transition table), updates of the copied
//!   columns per row.
//! - SQLite: an FTS5 table with the `trigram` tokenizer (substring matching,
//!   case-insensitive, like `LIKE '%…%'`; the bundled SQLite is 3.51) and
//!   `popularity UNINDEXED`, rowid = anime id, kept by three triggers.
//!
//! Under PostgreSQL's C locale (`LC_CTYPE=C`) pg_trgm sees only ASCII
//! letters and digits, so texts in other scripts (kana, macrons) find no
//! trigram and scan the whole index: still right, but slower; a UTF-8
//! locale (what the official image uses) indexes them.
//!
//! # Data
//!
//! Every name in the JSON `genres` arrays becomes one `genre` row (names
//! compared exactly, so `Action` and `action` stay two genres; the more
//! used one gets the plain slug) and one `anime_genre` row per anime and
//! name, `position` = its index in the array. A name repeated within one
//! array is kept once, at its first position. Then `genres` is dropped.
//! `down` rebuilds the JSON arrays from the rows, in position order.

use std::collections::HashMap;

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

use crate::slug;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

/// Anime read per statement while moving genres: a page of JSON arrays is
/// a few hundred kilobytes.
const MOVE_PAGE_ROWS: u64 = 10_000;

/// Rows per INSERT while moving genres: 5,000 rows × 3 columns stays under
/// SQLite's 32,766 bind parameters (PostgreSQL allows 65,535).
const MOVE_BATCH_ROWS: usize = 5_000;

/// Index names, also used by `down` and named in EXPLAIN checks.
pub mod index {
    /// `anime (score DESC, id)`.
    pub const SCORE: &str = "idx_anime_score_desc_id";
    /// `anime (year DESC, id)`.
    pub const YEAR: &str = "idx_anime_year_desc_id";
    /// `anime (title, id)`.
    pub const TITLE: &str = "idx_anime_title_id";
    /// `anime (format, popularity DESC, id)`.
    pub const FORMAT: &str = "idx_anime_format_popularity";
    /// `anime (status, popularity DESC, id)`.
    pub const STATUS: &str = "idx_anime_status_popularity";
    /// `anime (season, popularity DESC, id)`.
    pub const SEASON: &str = "idx_anime_season_popularity";
    /// PostgreSQL: the GIN trigram index of `anime_search`.
    pub const SEARCH_TRGM: &str = "idx_anime_search_trgm";
    /// PostgreSQL: `anime_search (popularity DESC, anime_id)`.
    pub const SEARCH_POPULARITY: &str = "idx_anime_search_popularity";
    /// PostgreSQL: `anime_search (<title column> text_pattern_ops)`, one
    /// per title column (suffixed `_title`, `_title_english`, …).
    pub const SEARCH_TITLE_PREFIX: &str = "idx_anime_search";
    /// `player (anime_id, position)`.
    pub const PLAYER_ANIME: &str = "idx_player_anime_position";
    /// `episode (anime_id, number)`, unique.
    pub const EPISODE_ANIME: &str = "idx_episode_anime_number";
}

/// The search copy of the titles: a table with a trigram index on
/// PostgreSQL, an FTS5 table on SQLite (both keyed by the anime id).
pub const SEARCH_TABLE: &str = "anime_search";

/// Statistics target of `anime_search`'s title columns and trigram index
/// (PostgreSQL's default is 100): a finer histogram, so that the planner
/// tells a rare name from a common word.
const SEARCH_STATISTICS: u32 = 1_000;

/// The expression the PostgreSQL trigram index of [`SEARCH_TABLE`] is
/// built on (its columns are lowercased already); the search query must
/// repeat it exactly for the planner to use the index.
pub const PG_SEARCH_EXPRESSION: &str =
    "title || E'\\n' || title_english || E'\\n' || title_original";

/// A taxonomy (genre, theme or studio) and its join table.
#[derive(Clone, Copy)]
struct Taxonomy {
    table: &'static str,
    join_table: &'static str,
    key: &'static str,
}

const TAXONOMIES: [Taxonomy; 3] = [
    Taxonomy {
        table: "genre",
        join_table: "anime_genre",
        key: "genre_id",
    },
    Taxonomy {
        table: "theme",
        join_table: "anime_theme",
        key: "theme_id",
    },
    Taxonomy {
        table: "studio",
        join_table: "anime_studio",
        key: "studio_id",
    },
];

const GENRE: Taxonomy = TAXONOMIES[0];

#[expect(
    elided_lifetimes_in_paths,
    reason = "the trait's signature elides SchemaManager's lifetime; spelling it out does not match"
)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// All or nothing on both backends: SQLite's DDL is transactional too.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for taxonomy in TAXONOMIES {
            create_taxonomy(manager, taxonomy).await?;
        }
        create_player(manager).await?;
        create_episode(manager).await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Anime::Table)
                    .add_column(string_len_null(Anime::TitleOriginal, 255))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Anime::Table)
                    .add_column(string_len_null(Anime::AgeRating, 16))
                    .to_owned(),
            )
            .await?;
        create_anime_indexes(manager).await?;
        move_genres_to_rows(manager).await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Anime::Table)
                    .drop_column(Anime::Genres)
                    .to_owned(),
            )
            .await?;
        create_search(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        let backend = manager.get_database_backend();
        drop_search(manager).await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Anime::Table)
                    .add_column(json_binary(Anime::Genres).default("[]"))
                    .to_owned(),
            )
            .await?;
        let aggregate = match backend {
            DbBackend::Postgres => "jsonb_agg",
            _ => "json_group_array",
        };
        conn.execute_unprepared(&format!(
            "UPDATE anime SET genres = names.list FROM ( \
                SELECT ag.anime_id, {aggregate}(g.name ORDER BY ag.position) AS list \
                FROM anime_genre ag JOIN genre g ON g.id = ag.genre_id \
                GROUP BY ag.anime_id) AS names \
             WHERE names.anime_id = anime.id"
        ))
        .await?;
        for name in [
            index::SCORE,
            index::YEAR,
            index::TITLE,
            index::FORMAT,
            index::STATUS,
            index::SEASON,
        ] {
            manager
                .drop_index(Index::drop().name(name).table(Anime::Table).to_owned())
                .await?;
        }
        for table in ["episode", "player"]
            .into_iter()
            .chain(TAXONOMIES.iter().map(|t| t.join_table))
            .chain(TAXONOMIES.iter().map(|t| t.table))
        {
            manager
                .drop_table(Table::drop().table(Alias::new(table)).to_owned())
                .await?;
        }
        for column in [Anime::TitleOriginal, Anime::AgeRating] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Anime::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

/// `genre`/`theme`/`studio` and its join table with `anime`.
async fn create_taxonomy(manager: &SchemaManager<'_>, taxonomy: Taxonomy) -> Result<(), DbErr> {
    let table = Alias::new(taxonomy.table);
    manager
        .create_table(
            Table::create()
                .table(table.clone())
                .col(pk_auto(Taxon::Id))
                .col(string_len_uniq(Taxon::Name, 64))
                .col(string_len_uniq(Taxon::Slug, 64))
                .to_owned(),
        )
        .await?;
    let join = Alias::new(taxonomy.join_table);
    let key = Alias::new(taxonomy.key);
    manager
        .create_table(
            Table::create()
                .table(join.clone())
                .col(integer(Join::AnimeId))
                .col(integer(key.clone()))
                // The anime's own order of its genres (and so `Anime.genres`).
                .col(small_integer(Join::Position))
                .primary_key(Index::create().col(Join::AnimeId).col(key.clone()))
                .foreign_key(
                    ForeignKey::create()
                        .from(join.clone(), Join::AnimeId)
                        .to(Anime::Table, Anime::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(join.clone(), key.clone())
                        .to(table, Taxon::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
    // "The anime of genre X": the primary key leads with anime_id.
    manager
        .create_index(
            Index::create()
                .name(format!(
                    "idx_{}_{}_anime",
                    taxonomy.join_table, taxonomy.key
                ))
                .table(join)
                .col(key)
                .col(Join::AnimeId)
                .to_owned(),
        )
        .await
}

async fn create_player(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Player::Table)
                .col(pk_auto(Player::Id))
                .col(integer(Player::AnimeId))
                .col(string_len(Player::EmbedUrl, 512))
                .col(string_len_null(Player::Translator, 128))
                // "720p", "1080p": a label, not a number, as sites show it.
                .col(string_len_null(Player::Quality, 16))
                .col(small_integer(Player::Position))
                .foreign_key(
                    ForeignKey::create()
                        .from(Player::Table, Player::AnimeId)
                        .to(Anime::Table, Anime::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
    // The players of many anime at once, each anime's in order.
    manager
        .create_index(
            Index::create()
                .name(index::PLAYER_ANIME)
                .table(Player::Table)
                .col(Player::AnimeId)
                .col(Player::Position)
                .to_owned(),
        )
        .await
}

async fn create_episode(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Episode::Table)
                .col(pk_auto(Episode::Id))
                .col(integer(Episode::AnimeId))
                .col(integer(Episode::Number))
                .col(string_len_null(Episode::Title, 255))
                .col(date_null(Episode::AiredOn))
                .foreign_key(
                    ForeignKey::create()
                        .from(Episode::Table, Episode::AnimeId)
                        .to(Anime::Table, Anime::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
    // One episode per number; also the episodes of many anime in order.
    manager
        .create_index(
            Index::create()
                .name(index::EPISODE_ANIME)
                .table(Episode::Table)
                .col(Episode::AnimeId)
                .col(Episode::Number)
                .unique()
                .to_owned(),
        )
        .await
}

/// The list orders' and filters' indexes (see the module doc).
async fn create_anime_indexes(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let ordered = [
        (index::SCORE, Anime::Score, IndexOrder::Desc),
        (index::YEAR, Anime::Year, IndexOrder::Desc),
        (index::TITLE, Anime::Title, IndexOrder::Asc),
    ];
    for (name, column, order) in ordered {
        manager
            .create_index(
                Index::create()
                    .name(name)
                    .table(Anime::Table)
                    .col((column, order))
                    .col((Anime::Id, IndexOrder::Asc))
                    .to_owned(),
            )
            .await?;
    }
    let filters = [
        (index::FORMAT, Anime::Format),
        (index::STATUS, Anime::Status),
        (index::SEASON, Anime::Season),
    ];
    for (name, column) in filters {
        manager
            .create_index(
                Index::create()
                    .name(name)
                    .table(Anime::Table)
                    .col(column)
                    .col((Anime::Popularity, IndexOrder::Desc))
                    .col((Anime::Id, IndexOrder::Asc))
                    .to_owned(),
            )
            .await?;
    }
    Ok(())
}

/// One page of `(id, genre names)` after `after_id`, in id order.
async fn genre_page(
    conn: &impl ConnectionTrait,
    after_id: i32,
) -> Result<Vec<(i32, Vec<String>)>, DbErr> {
    // jsonb on PostgreSQL, text on SQLite: read both as text.
    let page = Query::select()
        .column(Anime::Id)
        .expr_as(Expr::cust("CAST(genres AS TEXT)"), Alias::new("genres"))
        .from(Anime::Table)
        .and_where(Expr::col(Anime::Id).gt(after_id))
        .order_by(Anime::Id, Order::Asc)
        .limit(MOVE_PAGE_ROWS)
        .to_owned();
    let rows = conn.query_all(&page).await?;
    rows.into_iter()
        .map(|row| {
            let id: i32 = row.try_get("", "id")?;
            let json: String = row.try_get("", "genres")?;
            let names: Vec<String> = serde_json::from_str(&json).map_err(|err| {
                DbErr::Migration(format!(
                    "anime {id}: genres is not a JSON array of strings ({err}): {json}"
                ))
            })?;
            Ok((id, names))
        })
        .collect()
}

/// Every JSON genre name into `genre` and `anime_genre` rows (see the
/// module doc): one pass to collect the names, one to write the links.
async fn move_genres_to_rows(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let conn = manager.get_connection();

    let mut uses: HashMap<String, u64> = HashMap::new();
    let mut after = 0;
    loop {
        let page = genre_page(conn, after).await?;
        let Some(&(last, _)) = page.last() else { break };
        for (_, names) in page {
            for name in names {
                *uses.entry(name).or_default() += 1;
            }
        }
        after = last;
    }

    // The most used spelling gets the plain slug; ties by name, so the
    // outcome does not depend on the order rows were read in.
    let mut names: Vec<(String, u64)> = uses.into_iter().collect();
    names.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut slugs = std::collections::HashSet::new();
    let rows: Vec<(String, String)> = names
        .into_iter()
        .map(|(name, _)| {
            let slug = slug::unique_slug(&slug::slugify(&name), |s| slugs.contains(s));
            slugs.insert(slug.clone());
            (name, slug)
        })
        .collect();
    for batch in rows.chunks(MOVE_BATCH_ROWS) {
        let mut insert = Query::insert()
            .into_table(Alias::new(GENRE.table))
            .columns([Taxon::Name, Taxon::Slug])
            .to_owned();
        for (name, slug) in batch {
            insert
                .values([name.as_str().into(), slug.as_str().into()])
                .map_err(values_error)?;
        }
        conn.execute(&insert).await?;
    }
    let ids: HashMap<String, i32> = conn
        .query_all(
            &Query::select()
                .columns([Taxon::Id, Taxon::Name])
                .from(Alias::new(GENRE.table))
                .to_owned(),
        )
        .await?
        .into_iter()
        .map(|row| Ok((row.try_get("", "name")?, row.try_get("", "id")?)))
        .collect::<Result<_, DbErr>>()?;

    let mut links: Vec<(i32, i32, i16)> = Vec::new();
    let mut after = 0;
    loop {
        let page = genre_page(conn, after).await?;
        let Some(&(last, _)) = page.last() else { break };
        for (anime_id, names) in page {
            let mut seen = Vec::with_capacity(names.len());
            for (position, name) in names.iter().enumerate() {
                // Every name was inserted by the first pass.
                let genre_id = *ids.get(name.as_str()).ok_or_else(|| {
                    DbErr::Migration(format!("anime {anime_id}: genre {name:?} has no row"))
                })?;
                if seen.contains(&genre_id) {
                    continue;
                }
                seen.push(genre_id);
                let position = <i16 as TryFrom<usize>>::try_from(position).map_err(|_| {
                    DbErr::Migration(format!("anime {anime_id}: more than 32,767 genres"))
                })?;
                links.push((anime_id, genre_id, position));
            }
        }
        for batch in links.chunks(MOVE_BATCH_ROWS) {
            let mut insert = Query::insert()
                .into_table(Alias::new(GENRE.join_table))
                .columns([
                    Alias::new("anime_id"),
                    Alias::new(GENRE.key),
                    Alias::new("position"),
                ])
                .to_owned();
            for &(anime_id, genre_id, position) in batch {
                insert
                    .values([anime_id.into(), genre_id.into(), position.into()])
                    .map_err(values_error)?;
            }
            conn.execute(&insert).await?;
        }
        links.clear();
        after = last;
    }
    Ok(())
}

/// A row of the wrong width for its INSERT (a bug here, never the data).
fn values_error(err: sea_orm_migration::prelude::error::Error) -> DbErr {
    DbErr::Migration(format!("building an INSERT: {err}"))
}

/// Title search: a narrow copy of every anime's lowercased titles and its
/// popularity, kept in step by triggers, indexed by pg_trgm (PostgreSQL)
/// or FTS5 (SQLite); see the module doc.
async fn create_search(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let conn = manager.get_connection();
    let statements: Vec<String> = match manager.get_database_backend() {
        DbBackend::Postgres => vec![
            // A trusted extension since PostgreSQL 13: the database owner
            // may create it, no superuser needed.
            "CREATE EXTENSION IF NOT EXISTS pg_trgm".to_owned(),
            format!(
                "CREATE TABLE {SEARCH_TABLE} ( \
                 anime_id integer PRIMARY KEY REFERENCES anime (id) ON DELETE CASCADE, \
                 popularity integer NOT NULL, title text NOT NULL, \
                 title_english text NOT NULL, title_original text NOT NULL)"
            ),
            // Tiers 2 and 3 (a word of a title starts with the text; the
            // text is anywhere): one trigram index over the three titles.
            format!(
                "CREATE INDEX {} ON {SEARCH_TABLE} USING gin (({PG_SEARCH_EXPRESSION}) gin_trgm_ops)",
                index::SEARCH_TRGM
            ),
            // Tiers 0 and 1 (a title equals the text, starts with it): a
            // B-tree range per column, exact where trigrams of a common
            // word would match thousands of rows; `text_pattern_ops` so
            // that `LIKE 'text%'` is a range under any collation.
            format!(
                "CREATE INDEX {}_title ON {SEARCH_TABLE} (title text_pattern_ops)",
                index::SEARCH_TITLE_PREFIX
            ),
            format!(
                "CREATE INDEX {}_title_english ON {SEARCH_TABLE} (title_english text_pattern_ops)",
                index::SEARCH_TITLE_PREFIX
            ),
            format!(
                "CREATE INDEX {}_title_original ON {SEARCH_TABLE} (title_original text_pattern_ops)",
                index::SEARCH_TITLE_PREFIX
            ),
            // For a text that most anime contain: walking the most popular
            // first finds a page of them sooner than ranking every match.
            format!(
                "CREATE INDEX {} ON {SEARCH_TABLE} (popularity DESC, anime_id)",
                index::SEARCH_POPULARITY
            ),
            // Which of the two the planner picks rests on how many rows a
            // pattern matches; the default 100-entry histograms misjudge
            // rare names by 30× (a walk of the whole table for 27 rows).
            format!(
                "ALTER TABLE {SEARCH_TABLE} ALTER COLUMN title SET STATISTICS {SEARCH_STATISTICS}, \
                 ALTER COLUMN title_english SET STATISTICS {SEARCH_STATISTICS}, \
                 ALTER COLUMN title_original SET STATISTICS {SEARCH_STATISTICS}"
            ),
            format!(
                "ALTER INDEX {} ALTER COLUMN 1 SET STATISTICS {SEARCH_STATISTICS}",
                index::SEARCH_TRGM
            ),
            format!(
                "INSERT INTO {SEARCH_TABLE} (anime_id, popularity, title, title_english, title_original) \
                 SELECT id, popularity, {PG_ROW} FROM anime",
                PG_ROW = pg_lowered("")
            ),
            // Inserts: once per statement, from its transition table (a
            // seed batch of 1,000 rows is one INSERT … SELECT, not 1,000).
            format!(
                "CREATE FUNCTION {SEARCH_TABLE}_inserted() RETURNS trigger LANGUAGE plpgsql AS $$ \
                 BEGIN \
                 INSERT INTO {SEARCH_TABLE} (anime_id, popularity, title, title_english, title_original) \
                 SELECT id, popularity, {PG_ROW} FROM inserted; \
                 RETURN NULL; \
                 END $$",
                PG_ROW = pg_lowered("")
            ),
            format!(
                "CREATE TRIGGER {SEARCH_TABLE}_insert AFTER INSERT ON anime \
                 REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT \
                 EXECUTE FUNCTION {SEARCH_TABLE}_inserted()"
            ),
            // Updates: per row, and only of the columns the copy holds
            // (PostgreSQL allows no transition table with a column list).
            format!(
                "CREATE FUNCTION {SEARCH_TABLE}_updated() RETURNS trigger LANGUAGE plpgsql AS $$ \
                 BEGIN \
                 UPDATE {SEARCH_TABLE} SET popularity = NEW.popularity, title = lower(NEW.title), \
                 title_english = lower(coalesce(NEW.title_english, '')), \
                 title_original = lower(coalesce(NEW.title_original, '')) \
                 WHERE anime_id = NEW.id; \
                 RETURN NULL; \
                 END $$"
            ),
            format!(
                "CREATE TRIGGER {SEARCH_TABLE}_update \
                 AFTER UPDATE OF title, title_english, title_original, popularity ON anime \
                 FOR EACH ROW EXECUTE FUNCTION {SEARCH_TABLE}_updated()"
            ),
        ],
        DbBackend::Sqlite => {
            let columns = "title, title_english, title_original, popularity";
            let new = "new.id, lower(new.title), lower(coalesce(new.title_english, '')), \
                       lower(coalesce(new.title_original, '')), new.popularity";
            vec![
                // Its own copy of the values (not `content='anime'`): ranking
                // then reads only this table, never the wide anime rows.
                format!(
                    "CREATE VIRTUAL TABLE {SEARCH_TABLE} USING fts5(title, title_english, title_original, \
                     popularity UNINDEXED, tokenize='trigram')"
                ),
                format!(
                    "INSERT INTO {SEARCH_TABLE} (rowid, {columns}) SELECT id, lower(title), \
                     lower(coalesce(title_english, '')), lower(coalesce(title_original, '')), popularity FROM anime"
                ),
                format!(
                    "CREATE TRIGGER {SEARCH_TABLE}_insert AFTER INSERT ON anime BEGIN \
                     INSERT INTO {SEARCH_TABLE} (rowid, {columns}) VALUES ({new}); END"
                ),
                format!(
                    "CREATE TRIGGER {SEARCH_TABLE}_delete AFTER DELETE ON anime BEGIN \
                     DELETE FROM {SEARCH_TABLE} WHERE rowid = old.id; END"
                ),
                format!(
                    "CREATE TRIGGER {SEARCH_TABLE}_update \
                     AFTER UPDATE OF title, title_english, title_original, popularity ON anime BEGIN \
                     DELETE FROM {SEARCH_TABLE} WHERE rowid = old.id; \
                     INSERT INTO {SEARCH_TABLE} (rowid, {columns}) VALUES ({new}); END"
                ),
            ]
        }
        other => {
            return Err(DbErr::Migration(format!(
                "title search is built for PostgreSQL and SQLite, not {other:?}"
            )));
        }
    };
    for sql in statements {
        conn.execute_unprepared(&sql).await?;
    }
    Ok(())
}

/// `lower(title), lower(coalesce(title_english, '')), …` of a row
/// (`prefix` names it, e.g. `NEW.`).
fn pg_lowered(prefix: &str) -> String {
    format!(
        "lower({prefix}title), lower(coalesce({prefix}title_english, '')), \
         lower(coalesce({prefix}title_original, ''))"
    )
}

/// Undoes [`create_search`]; `pg_trgm` stays (other schemas may use it).
async fn drop_search(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let conn = manager.get_connection();
    let statements: Vec<String> = match manager.get_database_backend() {
        DbBackend::Postgres => vec![
            format!("DROP TRIGGER IF EXISTS {SEARCH_TABLE}_insert ON anime"),
            format!("DROP TRIGGER IF EXISTS {SEARCH_TABLE}_update ON anime"),
            format!("DROP FUNCTION IF EXISTS {SEARCH_TABLE}_inserted()"),
            format!("DROP FUNCTION IF EXISTS {SEARCH_TABLE}_updated()"),
            format!("DROP TABLE IF EXISTS {SEARCH_TABLE}"),
        ],
        _ => ["insert", "delete", "update"]
            .iter()
            .map(|trigger| format!("DROP TRIGGER IF EXISTS {SEARCH_TABLE}_{trigger}"))
            .chain([format!("DROP TABLE IF EXISTS {SEARCH_TABLE}")])
            .collect(),
    };
    for sql in statements {
        conn.execute_unprepared(&sql).await?;
    }
    Ok(())
}

#[derive(DeriveIden)]
enum Anime {
    Table,
    Id,
    Title,
    TitleOriginal,
    AgeRating,
    Score,
    Year,
    Format,
    Status,
    Season,
    Popularity,
    Genres,
}

/// The columns every taxonomy table has.
#[derive(DeriveIden)]
enum Taxon {
    Id,
    Name,
    Slug,
}

/// The columns every join table has besides its taxonomy key.
#[derive(DeriveIden)]
enum Join {
    AnimeId,
    Position,
}

#[derive(DeriveIden)]
enum Player {
    Table,
    Id,
    AnimeId,
    EmbedUrl,
    Translator,
    Quality,
    Position,
}

#[derive(DeriveIden)]
enum Episode {
    Table,
    Id,
    AnimeId,
    Number,
    Title,
    AiredOn,
}
