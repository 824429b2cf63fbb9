//! The `anime` table.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// One anime in the catalogue.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "anime")]
pub struct Model {
    /// Surrogate key, assigned by the database.
    #[sea_orm(primary_key)]
    pub id: i32,
    /// Title as commonly romanised.
    pub title: String,
    /// Official English title, when there is one.
    pub title_english: Option<String>,
    /// Release format (TV series, film, …).
    pub format: Format,
    /// Episode count; unknown for some ongoing and upcoming shows.
    pub episodes: Option<i32>,
    /// Airing status.
    pub status: Status,
    /// Season of first airing.
    pub season: Option<Season>,
    /// Year of first airing.
    pub year: Option<i32>,
    /// Average user score, 0 to 10.
    pub score: Option<f64>,
    /// Number of members who list the anime: the order of `popularAnime`.
    pub popularity: i32,
    /// Genre names, stored as a JSON array.
    #[sea_orm(column_type = "JsonBinary")]
    pub genres: Genres,
    /// Cover picture.
    pub picture_url: String,
    /// Plot summary.
    #[sea_orm(column_type = "Text")]
    pub synopsis: String,
    /// When the row was inserted.
    pub created_at: DateTimeUtc,
    /// When the row was last changed.
    pub updated_at: DateTimeUtc,
}

/// Genre names as a JSON array (portable across PostgreSQL and SQLite).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, FromJsonQueryResult)]
pub struct Genres(pub Vec<String>);

/// Release format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Format {
    /// Television series.
    #[sea_orm(string_value = "TV")]
    Tv,
    /// Feature film.
    #[sea_orm(string_value = "MOVIE")]
    Movie,
    /// Original video animation.
    #[sea_orm(string_value = "OVA")]
    Ova,
    /// Original net animation.
    #[sea_orm(string_value = "ONA")]
    Ona,
    /// Special episode.
    #[sea_orm(string_value = "SPECIAL")]
    Special,
    /// Music video.
    #[sea_orm(string_value = "MUSIC")]
    Music,
}

/// Airing status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Finished airing.
    #[sea_orm(string_value = "FINISHED")]
    Finished,
    /// Currently airing.
    #[sea_orm(string_value = "ONGOING")]
    Ongoing,
    /// Announced, not yet airing.
    #[sea_orm(string_value = "UPCOMING")]
    Upcoming,
}

/// Season of first airing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Season {
    /// January to March.
    #[sea_orm(string_value = "WINTER")]
    Winter,
    /// April to June.
    #[sea_orm(string_value = "SPRING")]
    Spring,
    /// July to September.
    #[sea_orm(string_value = "SUMMER")]
    Summer,
    /// October to December.
    #[sea_orm(string_value = "FALL")]
    Fall,
}

/// No relations yet.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
