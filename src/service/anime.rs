//! Reading the anime catalogue.

use crate::db::AnimeRepo;
use crate::entities::anime;
use crate::error::Result;

/// The catalogue's read use cases. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AnimeService {
    repo: AnimeRepo,
}

/// A validated page request: `page` ≥ 1 and `per_page` ≥ 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PageRequest {
    /// 1-based page number.
    pub page: u64,
    /// Items per page.
    pub per_page: u64,
}

impl PageRequest {
    /// Rows to skip. Saturates instead of overflowing: a page that far out
    /// is simply empty.
    pub fn offset(&self) -> u64 {
        self.page.saturating_sub(1).saturating_mul(self.per_page)
    }

    /// Whether rows remain after this page, given the total.
    pub fn has_next_page(&self, total: u64) -> bool {
        self.offset().saturating_add(self.per_page) < total
    }
}

/// One page of anime in id order, with the total it was cut from.
#[derive(Clone, Debug, PartialEq)]
pub struct PageResult {
    /// The request this page answers.
    pub request: PageRequest,
    /// Number of anime in the catalogue when the page was read.
    pub total: u64,
    /// The anime on the page (empty past the end).
    pub items: Vec<anime::Model>,
}

impl AnimeService {
    /// A service reading through `repo`.
    pub fn new(repo: AnimeRepo) -> Self {
        Self { repo }
    }

    /// The `limit` most popular anime, most popular first, ties by id.
    pub async fn popular(&self, limit: u64) -> Result<Vec<anime::Model>> {
        self.repo.popular(limit).await
    }

    /// One page in id order, with the total.
    pub async fn page(&self, request: PageRequest) -> Result<PageResult> {
        let total = self.repo.count().await?;
        let items = if request.offset() >= total {
            Vec::new()
        } else {
            self.repo.page(request.offset(), request.per_page).await?
        };
        Ok(PageResult {
            request,
            total,
            items,
        })
    }

    /// Number of anime.
    pub async fn count(&self) -> Result<u64> {
        self.repo.count().await
    }

    /// One anime, if it exists.
    pub async fn by_id(&self, id: i32) -> Result<Option<anime::Model>> {
        self.repo.by_id(id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_arithmetic_covers_first_last_and_past_the_end() {
        let first = PageRequest {
            page: 1,
            per_page: 20,
        };
        assert_eq!(first.offset(), 0);
        assert!(first.has_next_page(21));
        assert!(!first.has_next_page(20));

        let last = PageRequest {
            page: 3,
            per_page: 20,
        };
        assert_eq!(last.offset(), 40);
        assert!(!last.has_next_page(55));
        assert!(last.has_next_page(61));

        let beyond = PageRequest {
            page: u64::MAX,
            per_page: 100,
        };
        assert_eq!(beyond.offset(), u64::MAX);
        assert!(!beyond.has_next_page(1_000));
    }
}
