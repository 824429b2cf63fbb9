//! The `episode` table: an anime's episodes, one row per number.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// One episode of an anime.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "episode")]
pub struct Model {
    /// Surrogate key, assigned by the database.
    #[sea_orm(primary_key)]
    pub id: i32,
    /// The anime; `(anime_id, number)` is unique.
    pub anime_id: i32,
    /// Episode number, from 1.
    pub number: i32,
    /// Episode title, when known.
    pub title: Option<String>,
    /// When it first aired, when known.
    pub aired_on: Option<Date>,
}

/// The anime it belongs to.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The anime.
    #[sea_orm(
        belongs_to = "super::anime::Entity",
        from = "Column::AnimeId",
        to = "super::anime::Column::Id",
        on_delete = "Cascade"
    )]
    Anime,
}

impl Related<super::anime::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Anime.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
