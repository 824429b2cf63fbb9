//! API types: what the frontend sees. Each wraps or converts a domain value
//! with one `From` impl; field docs become GraphiQL descriptions.

use std::sync::Arc;

use async_graphql::{Enum, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};

use crate::db::AnimeRecord;
use crate::entities::anime;
use crate::service::PageResult;

/// An anime in the catalogue: a view into the value that holds it (a
/// cached list, page or single record), so answering from the cache copies
/// no record before serialization.
pub struct Anime {
    source: Arc<dyn Records>,
    index: usize,
}

/// Values that hold anime records, by position.
trait Records: Send + Sync {
    fn record(&self, index: usize) -> &AnimeRecord;
}

impl Records for AnimeRecord {
    fn record(&self, _index: usize) -> &AnimeRecord {
        self
    }
}

impl Records for Vec<AnimeRecord> {
    fn record(&self, index: usize) -> &AnimeRecord {
        &self[index]
    }
}

impl Records for PageResult {
    fn record(&self, index: usize) -> &AnimeRecord {
        &self.items[index]
    }
}

impl Anime {
    /// One record of its own (a write's result).
    pub fn owned(record: AnimeRecord) -> Self {
        Self {
            source: Arc::new(record),
            index: 0,
        }
    }

    /// Every record of a shared list, in order.
    pub fn all_of(list: &Arc<Vec<AnimeRecord>>) -> Vec<Self> {
        (0..list.len())
            .map(|index| Self {
                source: Arc::clone(list) as Arc<dyn Records>,
                index,
            })
            .collect()
    }

    fn record(&self) -> &AnimeRecord {
        self.source.record(self.index)
    }

    fn model(&self) -> &anime::Model {
        &self.record().anime
    }
}

#[Object]
impl Anime {
    /// Stable identifier.
    async fn id(&self) -> ID {
        ID(self.model().id.to_string())
    }

    /// Title as commonly romanised.
    async fn title(&self) -> &str {
        &self.model().title
    }

    /// Official English title, when there is one.
    async fn title_english(&self) -> Option<&str> {
        self.model().title_english.as_deref()
    }

    /// Release format.
    async fn format(&self) -> AnimeFormat {
        self.model().format.into()
    }

    /// Episode count; null when not yet known.
    async fn episodes(&self) -> Option<i32> {
        self.model().episodes
    }

    /// Airing status.
    async fn status(&self) -> AnimeStatus {
        self.model().status.into()
    }

    /// Season of first airing.
    async fn season(&self) -> Option<AnimeSeason> {
        self.model().season.map(Into::into)
    }

    /// Year of first airing.
    async fn year(&self) -> Option<i32> {
        self.model().year
    }

    /// Average user score from 0 to 10; null when unrated.
    async fn score(&self) -> Option<f64> {
        self.model().score
    }

    /// Number of members who list this anime. `popularAnime` orders by it.
    async fn popularity(&self) -> i32 {
        self.model().popularity
    }

    /// Genre names, in the anime's own order (alphabetical for anime
    /// written through this API).
    async fn genres(&self) -> &[String] {
        &self.record().genres
    }

    /// Cover picture URL.
    async fn picture_url(&self) -> &str {
        &self.model().picture_url
    }

    /// Plot summary.
    async fn synopsis(&self) -> &str {
        &self.model().synopsis
    }

    /// When the anime was added to the catalogue.
    async fn created_at(&self) -> DateTime<Utc> {
        self.model().created_at
    }

    /// When the anime was last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.model().updated_at
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

impl From<Arc<PageResult>> for AnimePage {
    fn from(result: Arc<PageResult>) -> Self {
        Self {
            total: result.total,
            page: result.request.page,
            per_page: result.request.per_page,
            has_next_page: result.request.has_next_page(result.total),
            items: (0..result.items.len())
                .map(|index| Anime {
                    source: Arc::clone(&result) as Arc<dyn Records>,
                    index,
                })
                .collect(),
        }
    }
}
