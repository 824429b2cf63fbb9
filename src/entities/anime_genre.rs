//! The `anime_genre` join table: which genres an anime has, in its own
//! order (`position`). Deleting either side deletes the row (cascade).

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// One anime–genre link.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "anime_genre")]
pub struct Model {
    /// The anime.
    #[sea_orm(primary_key, auto_increment = false)]
    pub anime_id: i32,
    /// The genre.
    #[sea_orm(primary_key, auto_increment = false)]
    pub genre_id: i32,
    /// Place in the anime's list of genres, from 0.
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
    /// The genre.
    #[sea_orm(
        belongs_to = "super::genre::Entity",
        from = "Column::GenreId",
        to = "super::genre::Column::Id",
        on_delete = "Cascade"
    )]
    Genre,
}

impl Related<super::anime::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Anime.def()
    }
}

impl Related<super::genre::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Genre.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
