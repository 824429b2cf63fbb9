//! Every query of the catalogue, behind one facade. Methods are named
//! after the query they run; callers above (`service`) never see SQL.
//! Queries run on the guarded [`Database`], so each one fails fast while
//! the database is known to be down.
//!
//! Every method that returns anime returns [`AnimeRecord`]s: the row plus
//! its genre names, read for a whole list with one more statement
//! (`… WHERE anime_id IN (…)`), never one per anime. The batch loaders
//! (`genres_of`, `players_of`, …) take many anime ids at once and answer
//! with one statement each, grouped by anime id, each anime's rows in its
//! own order: what a DataLoader needs. The list, count and search SQL is in
//! [`anime_query`](super::anime_query); the taxonomy SQL in
//! [`taxonomy`](super::taxonomy).

use std::collections::HashMap;

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};
use serde::{Deserialize, Serialize};

use super::Database;
use super::anime_query::{self, AnimeFilter, AnimeOrder};
use super::relations::RelationWrites;
use super::taxonomy::{self, MAX_IDS_PER_STATEMENT, Taxon, TaxonCount, TaxonWriteError, Taxonomy};
use crate::entities::anime::{self, Entity as Anime};
use crate::entities::{episode, player};
use crate::error::Result;

/// One anime with its genre names in the anime's own order: what the
/// repository's record reads return (tests and tools). The cache stores
/// the row alone, as an entity, and names genres through the taxonomy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnimeRecord {
    /// The `anime` row.
    pub anime: anime::Model,
    /// Genre names, by position.
    pub genres: Vec<String>,
}

/// One anime as the cache stores it (an entity entry, `anime:id=N`): the
/// row, and the ids of its genres, themes and studios in its own order
/// (their names, slugs and counts come from the cached taxonomy lists, so
/// a rename never touches an anime's entry).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnimeEntity {
    /// The `anime` row.
    pub row: anime::Model,
    /// Genre ids, by position.
    pub genres: Vec<i32>,
    /// Theme ids, by position.
    pub themes: Vec<i32>,
    /// Studio ids, by position.
    pub studios: Vec<i32>,
}

impl AnimeEntity {
    /// The taxon ids of `kind`.
    pub fn taxa(&self, kind: Taxonomy) -> &[i32] {
        match kind {
            Taxonomy::Genre => &self.genres,
            Taxonomy::Theme => &self.themes,
            Taxonomy::Studio => &self.studios,
        }
    }
}

/// One anime as a write saw it (before or after): the row, and its
/// genres, themes and studios (id, name, slug) in its own order. What the
/// invalidation policy compares to know what a write changed.
#[derive(Clone, Debug, PartialEq)]
pub struct AnimeFacts {
    /// The `anime` row.
    pub row: anime::Model,
    /// Its genres.
    pub genres: Vec<Taxon>,
    /// Its themes.
    pub themes: Vec<Taxon>,
    /// Its studios.
    pub studios: Vec<Taxon>,
}

impl AnimeFacts {
    /// The anime as the cache stores it.
    pub fn entity(&self) -> AnimeEntity {
        let ids = |taxa: &[Taxon]| taxa.iter().map(|taxon| taxon.id).collect();
        AnimeEntity {
            row: self.row.clone(),
            genres: ids(&self.genres),
            themes: ids(&self.themes),
            studios: ids(&self.studios),
        }
    }

    /// The row with its genre names (what the old record API returns).
    pub fn record(&self) -> AnimeRecord {
        AnimeRecord {
            anime: self.row.clone(),
            genres: self.genres.iter().map(|genre| genre.name.clone()).collect(),
        }
    }
}

/// Reads and writes the anime catalogue. Cheap to clone (the pool is shared).
#[derive(Clone, Debug)]
pub struct AnimeRepo {
    db: Database,
}

impl AnimeRepo {
    /// Reads and writes through `db`.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Ids of the `limit` most popular anime: `ORDER BY popularity DESC,
    /// id ASC` (served by `idx_anime_popularity_desc_id`).
    pub async fn popular_ids(&self, limit: u64) -> Result<Vec<i32>> {
        let ranked = self.popular_ranked(limit).await?;
        Ok(ranked.into_iter().map(|(id, _)| id).collect())
    }

    /// [`Self::popular_ids`] with each anime's members count.
    pub async fn popular_ranked(&self, limit: u64) -> Result<Vec<(i32, Option<f64>)>> {
        let rows: Vec<(i32, i32)> = Anime::find()
            .select_only()
            .column(anime::Column::Id)
            .column(anime::Column::Popularity)
            .order_by_desc(anime::Column::Popularity)
            .order_by_asc(anime::Column::Id)
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, popularity)| (id, Some(f64::from(popularity))))
            .collect())
    }

    /// Ids of one page in id order: rows `offset .. offset + limit`.
    pub async fn page_ids(&self, offset: u64, limit: u64) -> Result<Vec<i32>> {
        Ok(Anime::find()
            .select_only()
            .column(anime::Column::Id)
            .order_by_asc(anime::Column::Id)
            .offset(offset)
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?)
    }

    /// Ids of rows `offset .. offset + limit` of the anime `filter` keeps,
    /// in `order` (one statement; see `anime_query` for the last pages of a
    /// score or year order).
    pub async fn list_ids(
        &self,
        filter: &AnimeFilter,
        order: AnimeOrder,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<i32>> {
        let ranked = self.ranked(filter, order, offset, limit).await?;
        Ok(ranked.into_iter().map(|(id, _)| id).collect())
    }

    /// [`Self::list_ids`] with each anime's value of the order's column
    /// when that is a number (popularity, score, year): what a cached page
    /// covers of the ranking (`service::tags`).
    pub async fn ranked(
        &self,
        filter: &AnimeFilter,
        order: AnimeOrder,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<(i32, Option<f64>)>> {
        Ok(anime_query::list(&self.db, filter, order, offset, limit).await?)
    }

    /// Ids of up to `limit` anime whose title, English or original title
    /// contains `text` (case-insensitive), most relevant first, then most
    /// popular, then by id (see `anime_query`).
    pub async fn search_ids(&self, text: &str, limit: u64) -> Result<Vec<i32>> {
        let rows = anime_query::search(&self.db, text, limit).await?;
        Ok(rows.into_iter().map(|row| row.id).collect())
    }

    /// The anime of `ids` that exist, as the cache stores them, by id: two
    /// statements (per [`MAX_IDS_PER_STATEMENT`] ids), the rows and the
    /// genre, theme and studio ids of all of them.
    pub async fn entities(&self, ids: &[i32]) -> Result<HashMap<i32, AnimeEntity>> {
        let rows = self.rows(ids).await?;
        if rows.is_empty() {
            return Ok(HashMap::new());
        }
        let found: Vec<i32> = rows.keys().copied().collect();
        let mut links = taxonomy::link_ids_of(&self.db, &found).await?;
        Ok(rows
            .into_iter()
            .map(|(id, row)| {
                let [genres, themes, studios] = links.remove(&id).unwrap_or_default();
                (
                    id,
                    AnimeEntity {
                        row,
                        genres,
                        themes,
                        studios,
                    },
                )
            })
            .collect())
    }

    /// The rows of `ids` that exist, by id: one statement (per
    /// [`MAX_IDS_PER_STATEMENT`] ids).
    pub async fn rows(&self, ids: &[i32]) -> Result<HashMap<i32, anime::Model>> {
        let mut out = HashMap::with_capacity(ids.len());
        for chunk in taxonomy::distinct(ids).chunks(MAX_IDS_PER_STATEMENT) {
            let rows = Anime::find()
                .filter(anime::Column::Id.is_in(chunk.iter().copied()))
                .all(&self.db)
                .await?;
            out.extend(rows.into_iter().map(|row| (row.id, row)));
        }
        Ok(out)
    }

    /// The `limit` most popular anime with their genre names (tests and
    /// tools; the cache reads [`Self::popular_ids`] and rows).
    pub async fn popular(&self, limit: u64) -> Result<Vec<AnimeRecord>> {
        let rows = Anime::find()
            .order_by_desc(anime::Column::Popularity)
            .order_by_asc(anime::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?;
        records(&self.db, rows).await
    }

    /// One page in id order with genre names (tests and tools).
    pub async fn page(&self, offset: u64, limit: u64) -> Result<Vec<AnimeRecord>> {
        let rows = Anime::find()
            .order_by_asc(anime::Column::Id)
            .offset(offset)
            .limit(limit)
            .all(&self.db)
            .await?;
        records(&self.db, rows).await
    }

    /// [`Self::list_ids`] with rows and genre names (tests and tools).
    pub async fn list(
        &self,
        filter: &AnimeFilter,
        order: AnimeOrder,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<AnimeRecord>> {
        let ids = self.list_ids(filter, order, offset, limit).await?;
        self.records_of(&ids).await
    }

    /// Number of anime `filter` keeps (the whole catalogue for the default).
    pub async fn count(&self, filter: &AnimeFilter) -> Result<u64> {
        Ok(anime_query::count(&self.db, filter).await?)
    }

    /// [`Self::search_ids`] with rows and genre names (tests and tools).
    pub async fn search(&self, text: &str, limit: u64) -> Result<Vec<AnimeRecord>> {
        let rows = anime_query::search(&self.db, text, limit).await?;
        records(&self.db, rows).await
    }

    /// One anime by id, with its genre names.
    pub async fn by_id(&self, id: i32) -> Result<Option<AnimeRecord>> {
        let Some(row) = Anime::find_by_id(id).one(&self.db).await? else {
            return Ok(None);
        };
        Ok(records(&self.db, vec![row]).await?.pop())
    }

    /// The anime of `ids` that exist, in that order, with genre names.
    async fn records_of(&self, ids: &[i32]) -> Result<Vec<AnimeRecord>> {
        let mut rows = self.rows(ids).await?;
        let rows = ids.iter().filter_map(|id| rows.remove(id)).collect();
        records(&self.db, rows).await
    }

    /// The genres of each of `anime_ids` (id, name, slug), in each anime's
    /// order; every id asked for is a key. One statement.
    pub async fn genres_of(&self, anime_ids: &[i32]) -> Result<HashMap<i32, Vec<Taxon>>> {
        Ok(taxonomy::links_of(&self.db, Taxonomy::Genre, anime_ids).await?)
    }

    /// The themes of each of `anime_ids`, as [`Self::genres_of`].
    pub async fn themes_of(&self, anime_ids: &[i32]) -> Result<HashMap<i32, Vec<Taxon>>> {
        Ok(taxonomy::links_of(&self.db, Taxonomy::Theme, anime_ids).await?)
    }

    /// The studios of each of `anime_ids`, as [`Self::genres_of`].
    pub async fn studios_of(&self, anime_ids: &[i32]) -> Result<HashMap<i32, Vec<Taxon>>> {
        Ok(taxonomy::links_of(&self.db, Taxonomy::Studio, anime_ids).await?)
    }

    /// The players of each of `anime_ids`, by position; every id asked for
    /// is a key. One statement (`idx_player_anime_position`).
    pub async fn players_of(&self, anime_ids: &[i32]) -> Result<HashMap<i32, Vec<player::Model>>> {
        let mut out: HashMap<i32, Vec<player::Model>> =
            anime_ids.iter().map(|&id| (id, Vec::new())).collect();
        for chunk in taxonomy::distinct(anime_ids).chunks(MAX_IDS_PER_STATEMENT) {
            let rows = player::Entity::find()
                .filter(player::Column::AnimeId.is_in(chunk.iter().copied()))
                .order_by_asc(player::Column::AnimeId)
                .order_by_asc(player::Column::Position)
                .order_by_asc(player::Column::Id)
                .all(&self.db)
                .await?;
            for row in rows {
                out.entry(row.anime_id).or_default().push(row);
            }
        }
        Ok(out)
    }

    /// The episodes of each of `anime_ids`, by number; every id asked for
    /// is a key. One statement (`idx_episode_anime_number`).
    pub async fn episodes_of(
        &self,
        anime_ids: &[i32],
    ) -> Result<HashMap<i32, Vec<episode::Model>>> {
        let mut out: HashMap<i32, Vec<episode::Model>> =
            anime_ids.iter().map(|&id| (id, Vec::new())).collect();
        for chunk in taxonomy::distinct(anime_ids).chunks(MAX_IDS_PER_STATEMENT) {
            let rows = episode::Entity::find()
                .filter(episode::Column::AnimeId.is_in(chunk.iter().copied()))
                .order_by_asc(episode::Column::AnimeId)
                .order_by_asc(episode::Column::Number)
                .all(&self.db)
                .await?;
            for row in rows {
                out.entry(row.anime_id).or_default().push(row);
            }
        }
        Ok(out)
    }

    /// Every genre, theme or studio with its number of anime, by name. One
    /// statement.
    pub async fn taxa(&self, kind: Taxonomy) -> Result<Vec<TaxonCount>> {
        Ok(taxonomy::all_counted(&self.db, kind).await?)
    }

    /// The genre, theme or studio with this slug, with its number of anime.
    /// One statement.
    pub async fn taxon_by_slug(&self, kind: Taxonomy, slug: &str) -> Result<Option<TaxonCount>> {
        Ok(taxonomy::by_slug(&self.db, kind, slug).await?)
    }

    /// Inserts an anime with its relations (genre, theme and studio names,
    /// missing ones created; players; episodes) in one transaction and
    /// returns what it is now.
    pub async fn create(
        &self,
        row: anime::ActiveModel,
        relations: &RelationWrites,
    ) -> Result<AnimeFacts> {
        let txn = self.db.begin().await?;
        let anime = row.insert(&txn).await?;
        relations.apply(&txn, anime.id).await?;
        let created = facts(&txn, anime).await?;
        txn.commit().await?;
        Ok(created)
    }

    /// Applies `change` to the anime `id` and replaces the relations
    /// `relations` names, in one transaction: the anime before and after,
    /// `None` when there is no such anime.
    pub async fn update(
        &self,
        id: i32,
        change: impl FnOnce(&mut anime::ActiveModel),
        relations: &RelationWrites,
    ) -> Result<Option<(AnimeFacts, AnimeFacts)>> {
        let txn = self.db.begin().await?;
        let Some(current) = Anime::find_by_id(id).one(&txn).await? else {
            return Ok(None);
        };
        let before = facts(&txn, current.clone()).await?;
        let mut row = current.into_active_model();
        change(&mut row);
        let anime = row.update(&txn).await?;
        relations.apply(&txn, id).await?;
        let after = if relations.changes_taxonomy() {
            facts(&txn, anime).await?
        } else {
            AnimeFacts {
                row: anime,
                ..before.clone()
            }
        };
        txn.commit().await?;
        Ok(Some((before, after)))
    }

    /// The smallest and largest anime id (`None` for an empty catalogue):
    /// the two ends of the primary key index.
    pub async fn id_range(&self) -> Result<Option<(i32, i32)>> {
        let range: Option<(Option<i32>, Option<i32>)> = Anime::find()
            .select_only()
            .column_as(anime::Column::Id.min(), "min")
            .column_as(anime::Column::Id.max(), "max")
            .into_tuple()
            .one(&self.db)
            .await?;
        Ok(match range {
            Some((Some(min), Some(max))) => Some((min, max)),
            _ => None,
        })
    }

    /// Which of `ids` exist, in ascending order (primary key lookups).
    pub async fn existing_ids(&self, ids: &[i32]) -> Result<Vec<i32>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(Anime::find()
            .select_only()
            .column(anime::Column::Id)
            .filter(anime::Column::Id.is_in(ids.iter().copied()))
            .order_by_asc(anime::Column::Id)
            .into_tuple()
            .all(&self.db)
            .await?)
    }

    /// The first existing id at or after `id` (a primary key seek).
    pub async fn id_at_or_after(&self, id: i32) -> Result<Option<i32>> {
        Ok(Anime::find()
            .select_only()
            .column(anime::Column::Id)
            .filter(anime::Column::Id.gte(id))
            .order_by_asc(anime::Column::Id)
            .limit(1)
            .into_tuple()
            .one(&self.db)
            .await?)
    }

    /// Creates the genre (theme, studio) `name`; see [`taxonomy::create`].
    pub async fn create_taxon(
        &self,
        kind: Taxonomy,
        name: &str,
    ) -> std::result::Result<TaxonCount, TaxonWriteError> {
        let txn = self.db.begin().await?;
        let created = taxonomy::create(&txn, kind, name).await?;
        txn.commit().await?;
        Ok(created)
    }

    /// Renames the genre (theme, studio) `slug`, in one transaction; the
    /// taxon after the rename and the ids of its anime, `None` when there
    /// is no such slug. See [`taxonomy::rename`].
    pub async fn rename_taxon(
        &self,
        kind: Taxonomy,
        slug: &str,
        name: &str,
        new_slug: Option<&str>,
    ) -> std::result::Result<Option<(TaxonCount, Vec<i32>)>, TaxonWriteError> {
        let txn = self.db.begin().await?;
        let renamed = taxonomy::rename(&txn, kind, slug, name, new_slug).await?;
        txn.commit().await?;
        Ok(renamed)
    }

    /// Deletes the genre (theme, studio) `slug` with its links, in one
    /// transaction; the taxon as it was and the ids of the anime that had
    /// it, `None` when there is no such slug.
    pub async fn delete_taxon(
        &self,
        kind: Taxonomy,
        slug: &str,
    ) -> Result<Option<(TaxonCount, Vec<i32>)>> {
        let txn = self.db.begin().await?;
        let deleted = taxonomy::delete(&txn, kind, slug).await?;
        txn.commit().await?;
        Ok(deleted)
    }

    /// Deletes the anime `id` (its links, players and episodes go with it:
    /// the foreign keys cascade), in one transaction: the anime as it was,
    /// `None` when there was none.
    pub async fn delete(&self, id: i32) -> Result<Option<AnimeFacts>> {
        let txn = self.db.begin().await?;
        let Some(current) = Anime::find_by_id(id).one(&txn).await? else {
            return Ok(None);
        };
        let before = facts(&txn, current).await?;
        if Anime::delete_by_id(id).exec(&txn).await?.rows_affected == 0 {
            return Ok(None);
        }
        txn.commit().await?;
        Ok(Some(before))
    }
}

/// `row` with its genres, themes and studios (three statements).
async fn facts(conn: &impl ConnectionTrait, row: anime::Model) -> Result<AnimeFacts> {
    let id = row.id;
    let taxa = |mut links: HashMap<i32, Vec<Taxon>>| links.remove(&id).unwrap_or_default();
    let genres = taxa(taxonomy::links_of(conn, Taxonomy::Genre, &[id]).await?);
    let themes = taxa(taxonomy::links_of(conn, Taxonomy::Theme, &[id]).await?);
    let studios = taxa(taxonomy::links_of(conn, Taxonomy::Studio, &[id]).await?);
    Ok(AnimeFacts {
        row,
        genres,
        themes,
        studios,
    })
}

/// Genre names of `anime_ids`, by position.
async fn genre_names(
    conn: &impl ConnectionTrait,
    anime_ids: &[i32],
) -> Result<HashMap<i32, Vec<String>>> {
    Ok(taxonomy::links_of(conn, Taxonomy::Genre, anime_ids)
        .await?
        .into_iter()
        .map(|(id, taxa)| (id, taxa.into_iter().map(|t| t.name).collect()))
        .collect())
}

/// `rows` with their genre names: one statement for all of them (none for
/// an empty list).
async fn records(conn: &impl ConnectionTrait, rows: Vec<anime::Model>) -> Result<Vec<AnimeRecord>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i32> = rows.iter().map(|row| row.id).collect();
    let mut genres = genre_names(conn, &ids).await?;
    Ok(rows
        .into_iter()
        .map(|anime| AnimeRecord {
            genres: genres.remove(&anime.id).unwrap_or_default(),
            anime,
        })
        .collect())
}
