//! The `theme` table. A theme (School, Time Travel, …): finer than a genre; anime link to it through `anime_theme`.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A theme (School, Time Travel, …): finer than a genre.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "theme")]
pub struct Model {
    /// Surrogate key, assigned by the database.
    #[sea_orm(primary_key)]
    pub id: i32,
    /// Display name, unique (compared exactly), at most 64 characters.
    #[sea_orm(unique)]
    pub name: String,
    /// URL key derived from the name by `migration::slug` when the row was
    /// created; unique, lowercase `a-z0-9-`.
    #[sea_orm(unique)]
    pub slug: String,
}

/// Its rows in `anime_theme`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The join rows to its anime.
    #[sea_orm(has_many = "super::anime_theme::Entity")]
    AnimeTheme,
}

impl Related<super::anime::Entity> for Entity {
    fn to() -> RelationDef {
        super::anime_theme::Relation::Anime.def()
    }

    fn via() -> Option<RelationDef> {
        Some(super::anime_theme::Relation::Theme.def().rev())
    }
}

impl ActiveModelBehavior for ActiveModel {}
