//! The `anime` table: one anime and its scalar fields. Genres, themes and
//! studios are rows of their own (`genre`, …) joined through `anime_genre`,
//! …; players and episodes belong to one anime each.

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
    /// Title in the original language and script (Japanese, usually).
    pub title_original: Option<String>,
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
    /// Age rating, when known.
    pub age_rating: Option<AgeRating>,
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

/// Age rating (the MPAA-like scale anime sites use). Stored as these
/// strings; the GraphQL enum uses the same names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum AgeRating {
    /// All ages.
    #[sea_orm(string_value = "G")]
    #[serde(rename = "G")]
    G,
    /// Children (parental guidance suggested).
    #[sea_orm(string_value = "PG")]
    #[serde(rename = "PG")]
    Pg,
    /// Teens 13 or older.
    #[sea_orm(string_value = "PG_13")]
    #[serde(rename = "PG_13")]
    Pg13,
    /// 17+ (violence and profanity).
    #[sea_orm(string_value = "R")]
    #[serde(rename = "R")]
    R,
    /// Mild nudity.
    #[sea_orm(string_value = "R_PLUS")]
    #[serde(rename = "R_PLUS")]
    RPlus,
    /// Hentai.
    #[sea_orm(string_value = "RX")]
    #[serde(rename = "RX")]
    Rx,
}

impl AgeRating {
    /// The label sites show: `G`, `PG`, `PG-13`, `R`, `R+`, `Rx`.
    pub fn label(self) -> &'static str {
        match self {
            Self::G => "G",
            Self::Pg => "PG",
            Self::Pg13 => "PG-13",
            Self::R => "R",
            Self::RPlus => "R+",
            Self::Rx => "Rx",
        }
    }
}

/// What an anime has: its players and episodes, and its rows in the join
/// tables (through which it has genres, themes and studios).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// Its video players.
    #[sea_orm(has_many = "super::player::Entity")]
    Player,
    /// Its episodes.
    #[sea_orm(has_many = "super::episode::Entity")]
    Episode,
    /// Its `anime_genre` rows.
    #[sea_orm(has_many = "super::anime_genre::Entity")]
    AnimeGenre,
    /// Its `anime_theme` rows.
    #[sea_orm(has_many = "super::anime_theme::Entity")]
    AnimeTheme,
    /// Its `anime_studio` rows.
    #[sea_orm(has_many = "super::anime_studio::Entity")]
    AnimeStudio,
}

impl Related<super::player::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Player.def()
    }
}

impl Related<super::episode::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Episode.def()
    }
}

impl Related<super::genre::Entity> for Entity {
    fn to() -> RelationDef {
        super::anime_genre::Relation::Genre.def()
    }

    fn via() -> Option<RelationDef> {
        Some(super::anime_genre::Relation::Anime.def().rev())
    }
}

impl Related<super::theme::Entity> for Entity {
    fn to() -> RelationDef {
        super::anime_theme::Relation::Theme.def()
    }

    fn via() -> Option<RelationDef> {
        Some(super::anime_theme::Relation::Anime.def().rev())
    }
}

impl Related<super::studio::Entity> for Entity {
    fn to() -> RelationDef {
        super::anime_studio::Relation::Studio.def()
    }

    fn via() -> Option<RelationDef> {
        Some(super::anime_studio::Relation::Anime.def().rev())
    }
}

impl ActiveModelBehavior for ActiveModel {}
