//! The `anime_theme` join table: which themes an anime has, in its own
//! order (`position`). Deleting either side deletes the row (cascade).

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// One anime–theme link.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "anime_theme")]
pub struct Model {
    /// The anime.
    #[sea_orm(primary_key, auto_increment = false)]
    pub anime_id: i32,
    /// The theme.
    #[sea_orm(primary_key, auto_increment = false)]
    pub theme_id: i32,
    /// Place in the anime's list of themes, from 0.
    pub position: i16,
}

/// Both sides of the link.
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
    /// The theme.
    #[sea_orm(
        belongs_to = "super::theme::Entity",
        from = "Column::ThemeId",
        to = "super::theme::Column::Id",
        on_delete = "Cascade"
    )]
    Theme,
}

impl Related<super::anime::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Anime.def()
    }
}

impl Related<super::theme::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Theme.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
