//! Genres, themes and studios: the three taxonomies share one shape
//! (`id`, `name`, `slug`, a join table with `position`), so their SQL is
//! written once here, for a [`Taxonomy`], and [`AnimeRepo`](super::AnimeRepo)
//! names them.
//!
//! Reads are one statement each, whatever the number of anime (up to
//! [`MAX_IDS_PER_STATEMENT`], which no DataLoader batch reaches). Writes
//! run inside the caller's transaction: [`replace_links`] creates missing
//! names (with their slugs) and replaces one anime's links.

use std::collections::{HashMap, HashSet};

use migration::slug;
use sea_orm::sea_query::{
    Alias, Condition, Expr, ExprTrait, Func, OnConflict, Order, Query, SelectStatement, UnionType,
};
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult};
use serde::{Deserialize, Serialize};

/// Ids per `IN (…)` list: far below SQLite's 32,766 and PostgreSQL's
/// 65,535 bind parameters. A larger request is split into several
/// statements (never the case for a DataLoader batch).
pub const MAX_IDS_PER_STATEMENT: usize = 10_000;

/// Attempts at creating missing names when concurrent writers take the
/// same slug at the same moment (each retry re-reads what is taken).
const CREATE_ATTEMPTS: usize = 3;

/// Which taxonomy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Taxonomy {
    /// `genre`, `anime_genre`.
    Genre,
    /// `theme`, `anime_theme`.
    Theme,
    /// `studio`, `anime_studio`.
    Studio,
}

impl Taxonomy {
    /// Every taxonomy.
    pub const ALL: [Self; 3] = [Self::Genre, Self::Theme, Self::Studio];

    /// Position in [`Taxonomy::ALL`], for per-taxonomy arrays.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Its table.
    pub fn table(self) -> &'static str {
        match self {
            Self::Genre => "genre",
            Self::Theme => "theme",
            Self::Studio => "studio",
        }
    }

    /// Its join table with `anime`.
    pub fn join_table(self) -> &'static str {
        match self {
            Self::Genre => "anime_genre",
            Self::Theme => "anime_theme",
            Self::Studio => "anime_studio",
        }
    }

    /// Its key column in the join table.
    pub fn key(self) -> &'static str {
        match self {
            Self::Genre => "genre_id",
            Self::Theme => "theme_id",
            Self::Studio => "studio_id",
        }
    }
}

/// One genre, theme or studio.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, FromQueryResult)]
pub struct Taxon {
    /// Its id in its table.
    pub id: i32,
    /// Display name.
    pub name: String,
    /// URL key (`slice-of-life`).
    pub slug: String,
}

/// A taxon with the number of anime that have it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaxonCount {
    /// The taxon.
    pub taxon: Taxon,
    /// Anime linked to it.
    pub anime_count: u64,
}

#[derive(FromQueryResult)]
struct LinkRow {
    anime_id: i32,
    id: i32,
    name: String,
    slug: String,
}

#[derive(FromQueryResult)]
struct CountRow {
    id: i32,
    name: String,
    slug: String,
    anime_count: i64,
}

impl From<CountRow> for TaxonCount {
    fn from(row: CountRow) -> Self {
        Self {
            taxon: Taxon {
                id: row.id,
                name: row.name,
                slug: row.slug,
            },
            anime_count: u64::try_from(row.anime_count).unwrap_or_default(),
        }
    }
}

fn t(kind: Taxonomy) -> Alias {
    Alias::new(kind.table())
}

fn j(kind: Taxonomy) -> Alias {
    Alias::new(kind.join_table())
}

fn col(name: &'static str) -> Alias {
    Alias::new(name)
}

/// The taxa of each of `anime_ids`, each anime's in its own order:
///
/// ```sql
/// SELECT j.anime_id, t.id, t.name, t.slug FROM anime_genre j
/// JOIN genre t ON t.id = j.genre_id
/// WHERE j.anime_id IN (…) ORDER BY j.anime_id, j.position
/// ```
///
/// Every id asked for is a key of the result (with no taxa: empty).
pub async fn links_of(
    conn: &impl ConnectionTrait,
    kind: Taxonomy,
    anime_ids: &[i32],
) -> Result<HashMap<i32, Vec<Taxon>>, DbErr> {
    let mut out: HashMap<i32, Vec<Taxon>> = anime_ids.iter().map(|&id| (id, Vec::new())).collect();
    for chunk in distinct(anime_ids).chunks(MAX_IDS_PER_STATEMENT) {
        let stmt = Query::select()
            .column((j(kind), col("anime_id")))
            .column((t(kind), col("id")))
            .column((t(kind), col("name")))
            .column((t(kind), col("slug")))
            .from(j(kind))
            .inner_join(
                t(kind),
                Expr::col((t(kind), col("id"))).equals((j(kind), col(kind.key()))),
            )
            .and_where(Expr::col((j(kind), col("anime_id"))).is_in(chunk.iter().copied()))
            .order_by((j(kind), col("anime_id")), Order::Asc)
            .order_by((j(kind), col("position")), Order::Asc)
            .to_owned();
        let rows = LinkRow::find_by_statement(conn.get_database_backend().build(&stmt))
            .all(conn)
            .await?;
        for row in rows {
            out.entry(row.anime_id).or_default().push(Taxon {
                id: row.id,
                name: row.name,
                slug: row.slug,
            });
        }
    }
    Ok(out)
}

/// The genre, theme and studio ids of each of `anime_ids`, in each
/// anime's order: one statement (`UNION ALL` of the three join tables,
/// per [`MAX_IDS_PER_STATEMENT`] ids), reading the join tables alone. Every
/// id asked for is a key.
pub async fn link_ids_of(
    conn: &impl ConnectionTrait,
    anime_ids: &[i32],
) -> Result<HashMap<i32, [Vec<i32>; 3]>, DbErr> {
    let mut out: HashMap<i32, [Vec<i32>; 3]> = anime_ids
        .iter()
        .map(|&id| (id, Default::default()))
        .collect();
    for chunk in distinct(anime_ids).chunks(MAX_IDS_PER_STATEMENT) {
        let select = |kind: Taxonomy| {
            Query::select()
                .expr_as(Expr::val(kind.index() as i32), col("kind"))
                .column((j(kind), col("anime_id")))
                .expr_as(Expr::col((j(kind), col(kind.key()))), col("taxon_id"))
                .column((j(kind), col("position")))
                .from(j(kind))
                .and_where(Expr::col((j(kind), col("anime_id"))).is_in(chunk.iter().copied()))
                .to_owned()
        };
        let mut stmt = select(Taxonomy::Genre);
        stmt.union(UnionType::All, select(Taxonomy::Theme))
            .union(UnionType::All, select(Taxonomy::Studio))
            .order_by(col("kind"), Order::Asc)
            .order_by(col("anime_id"), Order::Asc)
            .order_by(col("position"), Order::Asc);
        let rows = LinkIdRow::find_by_statement(conn.get_database_backend().build(&stmt))
            .all(conn)
            .await?;
        for row in rows {
            if let (Some(links), Ok(kind)) = (out.get_mut(&row.anime_id), usize::try_from(row.kind))
                && let Some(ids) = links.get_mut(kind)
            {
                ids.push(row.taxon_id);
            }
        }
    }
    Ok(out)
}

/// One row of [`link_ids_of`].
#[derive(FromQueryResult)]
struct LinkIdRow {
    kind: i32,
    anime_id: i32,
    taxon_id: i32,
}

/// `ids` without repeats, in first-seen order.
pub(crate) fn distinct(ids: &[i32]) -> Vec<i32> {
    let mut seen = HashSet::with_capacity(ids.len());
    ids.iter().copied().filter(|id| seen.insert(*id)).collect()
}

/// `SELECT t.id, t.name, t.slug, COUNT(j.anime_id) … LEFT JOIN … GROUP BY`.
fn counted(kind: Taxonomy) -> SelectStatement {
    Query::select()
        .column((t(kind), col("id")))
        .column((t(kind), col("name")))
        .column((t(kind), col("slug")))
        .expr_as(
            Func::count(Expr::col((j(kind), col("anime_id")))),
            col("anime_count"),
        )
        .from(t(kind))
        .left_join(
            j(kind),
            Expr::col((j(kind), col(kind.key()))).equals((t(kind), col("id"))),
        )
        .group_by_col((t(kind), col("id")))
        .group_by_col((t(kind), col("name")))
        .group_by_col((t(kind), col("slug")))
        .to_owned()
}

/// Every taxon of `kind` with its anime count, by name (then id), in one
/// statement.
pub async fn all_counted(
    conn: &impl ConnectionTrait,
    kind: Taxonomy,
) -> Result<Vec<TaxonCount>, DbErr> {
    let stmt = counted(kind)
        .order_by((t(kind), col("name")), Order::Asc)
        .order_by((t(kind), col("id")), Order::Asc)
        .to_owned();
    let rows = CountRow::find_by_statement(conn.get_database_backend().build(&stmt))
        .all(conn)
        .await?;
    Ok(rows.into_iter().map(TaxonCount::from).collect())
}

/// The taxon of `kind` whose slug is `slug`, with its anime count.
pub async fn by_slug(
    conn: &impl ConnectionTrait,
    kind: Taxonomy,
    slug: &str,
) -> Result<Option<TaxonCount>, DbErr> {
    let stmt = counted(kind)
        .and_where(Expr::col((t(kind), col("slug"))).eq(slug))
        .to_owned();
    let row = CountRow::find_by_statement(conn.get_database_backend().build(&stmt))
        .one(conn)
        .await?;
    Ok(row.map(TaxonCount::from))
}

/// The ids of `names` in `kind`'s table, creating the missing ones (with
/// [`slug::slugify`], `-2`… on a collision). Names are compared exactly.
/// Meant to run inside a transaction.
pub async fn ensure(
    conn: &impl ConnectionTrait,
    kind: Taxonomy,
    names: &[String],
) -> Result<HashMap<String, i32>, DbErr> {
    let mut ids = ids_by_name(conn, kind, names).await?;
    for _ in 0..CREATE_ATTEMPTS {
        let mut missing: Vec<&String> = names.iter().filter(|n| !ids.contains_key(*n)).collect();
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            return Ok(ids);
        }
        let mut taken = taken_slugs(conn, kind, &missing).await?;
        let mut insert = Query::insert()
            .into_table(t(kind))
            .columns([col("name"), col("slug")])
            // A concurrent writer may create the same name (or take the
            // same slug) first: skip the row and look again.
            .on_conflict(OnConflict::new().do_nothing().to_owned())
            .to_owned();
        for name in &missing {
            let slug = slug::unique_slug(&slug::slugify(name), |s| taken.contains(s));
            taken.insert(slug.clone());
            insert
                .values([name.as_str().into(), slug.into()])
                .map_err(|err| DbErr::Custom(format!("building an INSERT: {err}")))?;
        }
        conn.execute(&insert).await?;
        let names: Vec<String> = missing.into_iter().cloned().collect();
        ids.extend(ids_by_name(conn, kind, &names).await?);
    }
    if names.iter().all(|n| ids.contains_key(n)) {
        Ok(ids)
    } else {
        Err(DbErr::Custom(format!(
            "could not create {} names after {CREATE_ATTEMPTS} attempts",
            kind.table()
        )))
    }
}

async fn ids_by_name(
    conn: &impl ConnectionTrait,
    kind: Taxonomy,
    names: &[String],
) -> Result<HashMap<String, i32>, DbErr> {
    if names.is_empty() {
        return Ok(HashMap::new());
    }
    let stmt = Query::select()
        .columns([col("id"), col("name"), col("slug")])
        .from(t(kind))
        .and_where(Expr::col(col("name")).is_in(names.iter().map(String::as_str)))
        .to_owned();
    let rows = Taxon::find_by_statement(conn.get_database_backend().build(&stmt))
        .all(conn)
        .await?;
    Ok(rows.into_iter().map(|row| (row.name, row.id)).collect())
}

/// The slugs that the slugs of `names` could collide with: each base slug
/// and its numbered variants.
async fn taken_slugs(
    conn: &impl ConnectionTrait,
    kind: Taxonomy,
    names: &[&String],
) -> Result<HashSet<String>, DbErr> {
    let mut any = Condition::any();
    for name in names {
        let base = slug::slugify(name);
        any = any
            .add(Expr::col(col("slug")).eq(base.as_str()))
            .add(Expr::col(col("slug")).like(format!("{base}-%")));
    }
    let stmt = Query::select()
        .column(col("slug"))
        .from(t(kind))
        .cond_where(any)
        .to_owned();
    let rows = conn.query_all(&stmt).await?;
    rows.into_iter()
        .map(|row| row.try_get::<String>("", "slug"))
        .collect()
}

/// Replaces the links of anime `anime_id` to `kind` with `names`, in that
/// order, creating names that have no row yet. Meant to run inside the
/// transaction that writes the anime row.
pub async fn replace_links(
    conn: &impl ConnectionTrait,
    kind: Taxonomy,
    anime_id: i32,
    names: &[String],
) -> Result<(), DbErr> {
    conn.execute(
        &Query::delete()
            .from_table(j(kind))
            .and_where(Expr::col(col("anime_id")).eq(anime_id))
            .to_owned(),
    )
    .await?;
    if names.is_empty() {
        return Ok(());
    }
    let ids = ensure(conn, kind, names).await?;
    let mut insert = Query::insert()
        .into_table(j(kind))
        .columns([col("anime_id"), col(kind.key()), col("position")])
        .to_owned();
    let mut linked = HashSet::new();
    for (position, name) in names.iter().enumerate() {
        // `ensure` answers for every name or fails.
        let id = *ids
            .get(name)
            .ok_or_else(|| DbErr::Custom(format!("{} {name:?} has no row", kind.table())))?;
        if !linked.insert(id) {
            continue;
        }
        let position = i16::try_from(position)
            .map_err(|_| DbErr::Custom(format!("more than {} {} names", i16::MAX, kind.table())))?;
        insert
            .values([anime_id.into(), id.into(), position.into()])
            .map_err(|err| DbErr::Custom(format!("building an INSERT: {err}")))?;
    }
    conn.execute(&insert).await?;
    Ok(())
}

/// Why a taxon write was refused.
#[derive(Debug, thiserror::Error)]
pub enum TaxonWriteError {
    /// Another genre (theme, studio) has this name already.
    #[error("the name is taken")]
    NameTaken,
    /// Another genre (theme, studio) has this slug already.
    #[error("the slug is taken")]
    SlugTaken,
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// Creates a genre (theme, studio) named `name`, with the slug derived from
/// it (`-2`… on a collision). Refuses a name that exists.
pub async fn create(
    conn: &impl ConnectionTrait,
    kind: Taxonomy,
    name: &str,
) -> Result<TaxonCount, TaxonWriteError> {
    let names = [name.to_owned()];
    if !ids_by_name(conn, kind, &names).await?.is_empty() {
        return Err(TaxonWriteError::NameTaken);
    }
    let ids = ensure(conn, kind, &names).await?;
    let id = ids.get(name).copied().ok_or(TaxonWriteError::NameTaken)?;
    let taxon = by_id(conn, kind, id)
        .await?
        .ok_or(TaxonWriteError::Db(DbErr::RecordNotFound(format!(
            "{} {id} right after creating it",
            kind.table()
        ))))?;
    Ok(TaxonCount {
        taxon,
        anime_count: 0,
    })
}

/// Renames the genre (theme, studio) `slug` to `name` and, when given, moves
/// it to `new_slug`; `None` when there is no such slug. The slug stays as it
/// is unless asked: links to `/genre/<slug>` keep working after a rename.
/// Returns the taxon as it is now and the ids of the anime that have it.
/// Meant to run inside a transaction.
pub async fn rename(
    conn: &impl ConnectionTrait,
    kind: Taxonomy,
    slug: &str,
    name: &str,
    new_slug: Option<&str>,
) -> Result<Option<(TaxonCount, Vec<i32>)>, TaxonWriteError> {
    let Some(current) = by_slug(conn, kind, slug).await? else {
        return Ok(None);
    };
    let id = current.taxon.id;
    let others = ids_by_name(conn, kind, &[name.to_owned()]).await?;
    if others.get(name).is_some_and(|other| *other != id) {
        return Err(TaxonWriteError::NameTaken);
    }
    let slug_after = new_slug.unwrap_or(slug);
    if slug_after != slug && by_slug(conn, kind, slug_after).await?.is_some() {
        return Err(TaxonWriteError::SlugTaken);
    }
    conn.execute(
        &Query::update()
            .table(t(kind))
            .value(col("name"), name)
            .value(col("slug"), slug_after)
            .and_where(Expr::col(col("id")).eq(id))
            .to_owned(),
    )
    .await?;
    let members = member_ids(conn, kind, id).await?;
    let renamed = TaxonCount {
        taxon: Taxon {
            id,
            name: name.to_owned(),
            slug: slug_after.to_owned(),
        },
        anime_count: current.anime_count,
    };
    Ok(Some((renamed, members)))
}

/// Deletes the genre (theme, studio) `slug` (its links go with it: the
/// foreign keys cascade) and returns it as it was, with the ids of the
/// anime that had it; `None` when there is no such slug. Meant to run
/// inside a transaction, so that the returned ids are exactly the links it
/// removed.
pub async fn delete(
    conn: &impl ConnectionTrait,
    kind: Taxonomy,
    slug: &str,
) -> Result<Option<(TaxonCount, Vec<i32>)>, DbErr> {
    let Some(current) = by_slug(conn, kind, slug).await? else {
        return Ok(None);
    };
    let members = member_ids(conn, kind, current.taxon.id).await?;
    conn.execute(
        &Query::delete()
            .from_table(t(kind))
            .and_where(Expr::col(col("id")).eq(current.taxon.id))
            .to_owned(),
    )
    .await?;
    Ok(Some((current, members)))
}

/// The ids of the anime linked to taxon `id`, in id order.
async fn member_ids(
    conn: &impl ConnectionTrait,
    kind: Taxonomy,
    id: i32,
) -> Result<Vec<i32>, DbErr> {
    conn.query_all(
        &Query::select()
            .column(col("anime_id"))
            .from(j(kind))
            .and_where(Expr::col(col(kind.key())).eq(id))
            .order_by(col("anime_id"), Order::Asc)
            .to_owned(),
    )
    .await?
    .into_iter()
    .map(|row| row.try_get::<i32>("", "anime_id"))
    .collect()
}

async fn by_id(
    conn: &impl ConnectionTrait,
    kind: Taxonomy,
    id: i32,
) -> Result<Option<Taxon>, DbErr> {
    let stmt = Query::select()
        .columns([col("id"), col("name"), col("slug")])
        .from(t(kind))
        .and_where(Expr::col(col("id")).eq(id))
        .to_owned();
    Taxon::find_by_statement(conn.get_database_backend().build(&stmt))
        .one(conn)
        .await
}
