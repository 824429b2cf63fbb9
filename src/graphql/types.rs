//! API types: what the frontend sees. Each wraps or converts a domain value
//! with one `From` impl; field docs become GraphiQL descriptions.

use async_graphql::{Enum, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};

use crate::entities::anime;
use crate::service::PageResult;

/// An anime in the catalogue.
pub struct Anime(pub anime::Model);

impl From<anime::Model> for Anime {
    fn from(model: anime::Model) -> Self {
        Self(model)
    }
}

#[Object]
impl Anime {
    /// Stable identifier.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// Title as commonly romanised.
    async fn title(&self) -> &str {
        &self.0.title
    }

    /// Official English title, when there is one.
    async fn title_english(&self) -> Option<&str> {
        self.0.title_english.as_deref()
    }

    /// Release format.
    async fn format(&self) -> AnimeFormat {
        self.0.format.into()
    }

    /// Episode count; null when not yet known.
    async fn episodes(&self) -> Option<i32> {
        self.0.episodes
    }

    /// Airing status.
    async fn status(&self) -> AnimeStatus {
        self.0.status.into()
    }

    /// Season of first airing.
    async fn season(&self) -> Option<AnimeSeason> {
        self.0.season.map(Into::into)
    }

    /// Year of first airing.
    async fn year(&self) -> Option<i32> {
        self.0.year
    }

    /// Average user score from 0 to 10; null when unrated.
    async fn score(&self) -> Option<f64> {
        self.0.score
    }

    /// Number of members who list this anime. `popularAnime` orders by it.
    async fn popularity(&self) -> i32 {
        self.0.popularity
    }

    /// Genre names, alphabetical.
    async fn genres(&self) -> &[String] {
        &self.0.genres.0
    }

    /// Cover picture URL.
    async fn picture_url(&self) -> &str {
        &self.0.picture_url
    }

    /// Plot summary.
    async fn synopsis(&self) -> &str {
        &self.0.synopsis
    }

    /// When the anime was added to the catalogue.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    /// When the anime was last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// Release format.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(remote = "anime::Format")]
pub enum AnimeFormat {
    /// Television series.
    Tv,
    /// Feature film.
    Movie,
    /// Original video animation.
    Ova,
    /// Original net animation.
    Ona,
    /// Special episode.
    Special,
    /// Music video.
    Music,
}

/// Airing status.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(remote = "anime::Status")]
pub enum AnimeStatus {
    /// Finished airing.
    Finished,
    /// Currently airing.
    Ongoing,
    /// Announced, not yet airing.
    Upcoming,
}

/// Season of first airing.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(remote = "anime::Season")]
pub enum AnimeSeason {
    /// January to March.
    Winter,
    /// April to June.
    Spring,
    /// July to September.
    Summer,
    /// October to December.
    Fall,
}

/// One page of the catalogue in id order.
#[derive(SimpleObject)]
pub struct AnimePage {
    /// Number of anime in the whole catalogue.
    pub total: u64,
    /// This page's number (1-based).
    pub page: u64,
    /// Items per page, as requested.
    pub per_page: u64,
    /// Whether a later page has items.
    pub has_next_page: bool,
    /// The anime on this page; empty past the last page.
    pub items: Vec<Anime>,
}

impl From<&PageResult> for AnimePage {
    fn from(result: &PageResult) -> Self {
        Self {
            total: result.total,
            page: result.request.page,
            per_page: result.request.per_page,
            has_next_page: result.request.has_next_page(result.total),
            items: result.items.iter().cloned().map(Anime).collect(),
        }
    }
}
