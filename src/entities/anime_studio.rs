//! The `anime_studio` join table: which studios an anime has, in its own
//! order (`position`). Deleting either side deletes the row (cascade).

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// One anime–studio link.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "anime_studio")]
pub struct Model {
    /// The anime.
    #[sea_orm(primary_key, auto_increment = false)]
    pub anime_id: i32,
    /// The studio.
    #[sea_orm(primary_key, auto_increment = false)]
    pub studio_id: i32,
    /// Place in the anime's list of studios, from 0.
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
    /// The studio.
    #[sea_orm(
        belongs_to = "super::studio::Entity",
        from = "Column::StudioId",
        to = "super::studio::Column::Id",
        on_delete = "Cascade"
    )]
    Studio,
}

impl Related<super::anime::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Anime.def()
    }
}

impl Related<super::studio::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Studio.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
