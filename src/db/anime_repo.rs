//! Every sea-orm query on the `anime` table. Methods are named after the
//! query they run; callers above (`service`) never see SQL. Queries run on
//! the guarded [`Database`], so each one fails fast while the database is
//! known to be down.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use super::Database;
use crate::entities::anime::{self, Entity as Anime};
use crate::error::Result;

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

    /// The `limit` most popular anime: `ORDER BY popularity DESC, id ASC`
    /// (served by `idx_anime_popularity_desc_id`).
    pub async fn popular(&self, limit: u64) -> Result<Vec<anime::Model>> {
        Ok(Anime::find()
            .order_by_desc(anime::Column::Popularity)
            .order_by_asc(anime::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?)
    }

    /// One page in id order: rows `offset .. offset + limit`.
    pub async fn page(&self, offset: u64, limit: u64) -> Result<Vec<anime::Model>> {
        Ok(Anime::find()
            .order_by_asc(anime::Column::Id)
            .offset(offset)
            .limit(limit)
            .all(&self.db)
            .await?)
    }

    /// Number of anime in the catalogue.
    pub async fn count(&self) -> Result<u64> {
        Ok(Anime::find().count(&self.db).await?)
    }

    /// One anime by id.
    pub async fn by_id(&self, id: i32) -> Result<Option<anime::Model>> {
        Ok(Anime::find_by_id(id).one(&self.db).await?)
    }

    /// Inserts an anime and returns it with its id.
    pub async fn create(&self, row: anime::ActiveModel) -> Result<anime::Model> {
        Ok(row.insert(&self.db).await?)
    }

    /// Applies `change` to the anime `id`; `None` when there is none.
    pub async fn update(
        &self,
        id: i32,
        change: impl FnOnce(&mut anime::ActiveModel),
    ) -> Result<Option<anime::Model>> {
        let Some(current) = Anime::find_by_id(id).one(&self.db).await? else {
            return Ok(None);
        };
        let mut row = current.into_active_model();
        change(&mut row);
        Ok(Some(row.update(&self.db).await?))
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

    /// Deletes the anime `id`; whether it existed.
    pub async fn delete(&self, id: i32) -> Result<bool> {
        Ok(Anime::delete_by_id(id).exec(&self.db).await?.rows_affected > 0)
    }
}
