//! The `player` table: the video embeds an anime can be watched in.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// One video player of an anime.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "player")]
pub struct Model {
    /// Surrogate key, assigned by the database.
    #[sea_orm(primary_key)]
    pub id: i32,
    /// The anime it plays.
    pub anime_id: i32,
    /// URL for an `<iframe>`, at most 512 characters.
    pub embed_url: String,
    /// Who translated (dubbed or subtitled) this version, when known.
    pub translator: Option<String>,
    /// Quality label as the host shows it (`720p`, `1080p`), when known.
    pub quality: Option<String>,
    /// Place in the anime's list of players, from 0.
    pub position: i16,
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
