//! Reading the genres, themes and studios, through the cache: each
//! taxonomy as one list with its anime counts, and one taxon by slug. Both
//! follow the `taxonomy` policy and tag (`service::tags::TAXONOMY`): any
//! taxonomy write, and any anime write that changes counts, drops them.
//!
//! The list is also the name table of the relation fields: an anime's
//! cached relations hold taxon ids, named through this list, so a rename
//! reaches every anime at once without touching their entries.

use std::collections::HashMap;

use crate::cache::{CachedQuery, Resolver};
use crate::db::{AnimeRepo, TaxonCount, Taxonomy};
use crate::error::Result;

use super::AnimeService;
use super::tags;

/// Longest slug a taxon can have (longer ones are unknown without asking
/// the database).
pub const MAX_SLUG_LEN: usize = migration::slug::MAX_SLUG_LEN;

/// Whether `slug` could be a taxon's slug: 1 to [`MAX_SLUG_LEN`] of
/// `a-z`, `0-9` and `-`. Anything else is no taxon's, so it is answered as
/// unknown without a key or a query (and never lands in a cache key).
pub fn is_slug(slug: &str) -> bool {
    !slug.is_empty()
        && slug.len() <= MAX_SLUG_LEN
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Every genre (theme, studio) with its anime count, by name.
pub struct TaxonomyList {
    repo: AnimeRepo,
    kind: Taxonomy,
}

impl CachedQuery for TaxonomyList {
    type Output = TaxonList;
    const RESOLVER: Resolver = Resolver::Taxonomy;

    fn params(&self) -> String {
        format!("kind={}", self.kind.table())
    }

    fn tags(&self) -> Vec<String> {
        vec![tags::taxonomy(self.kind)]
    }

    async fn load(&self) -> Result<Self::Output> {
        Ok(TaxonList::new(self.repo.taxa(self.kind).await?))
    }
}

/// A taxonomy's entries by name, with an index by id (rebuilt when a
/// cached list is decoded, never stored).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(from = "Vec<TaxonCount>", into = "Vec<TaxonCount>")]
pub struct TaxonList {
    entries: Vec<TaxonCount>,
    by_id: HashMap<i32, usize>,
}

impl TaxonList {
    /// The list of `entries`, in their order.
    pub fn new(entries: Vec<TaxonCount>) -> Self {
        let by_id = entries
            .iter()
            .enumerate()
            .map(|(index, entry)| (entry.taxon.id, index))
            .collect();
        Self { entries, by_id }
    }

    /// The entries, by name.
    pub fn entries(&self) -> &[TaxonCount] {
        &self.entries
    }

    /// Position of taxon `id` in [`TaxonList::entries`].
    pub fn position(&self, id: i32) -> Option<usize> {
        self.by_id.get(&id).copied()
    }
}

impl From<Vec<TaxonCount>> for TaxonList {
    fn from(entries: Vec<TaxonCount>) -> Self {
        Self::new(entries)
    }
}

impl From<TaxonList> for Vec<TaxonCount> {
    fn from(list: TaxonList) -> Self {
        list.entries
    }
}

/// One genre (theme, studio) by slug, with its anime count; an unknown
/// slug is cached as an absence.
pub struct TaxonBySlug {
    repo: AnimeRepo,
    kind: Taxonomy,
    slug: String,
}

impl CachedQuery for TaxonBySlug {
    type Output = Option<TaxonCount>;
    const RESOLVER: Resolver = Resolver::Taxonomy;

    fn params(&self) -> String {
        format!("kind={}:slug={}", self.kind.table(), self.slug)
    }

    fn tags(&self) -> Vec<String> {
        vec![tags::taxonomy(self.kind)]
    }

    fn is_negative(output: &Self::Output) -> bool {
        output.is_none()
    }

    async fn load(&self) -> Result<Self::Output> {
        self.repo.taxon_by_slug(self.kind, &self.slug).await
    }
}

impl AnimeService {
    /// Every taxon of `kind` with its anime count.
    pub fn taxa(&self, kind: Taxonomy) -> TaxonomyList {
        TaxonomyList {
            repo: self.repo.clone(),
            kind,
        }
    }

    /// The taxon of `kind` with `slug`; `None` (no query to make) when
    /// `slug` cannot be a slug.
    pub fn taxon(&self, kind: Taxonomy, slug: &str) -> Option<TaxonBySlug> {
        is_slug(slug).then(|| TaxonBySlug {
            repo: self.repo.clone(),
            kind,
            slug: slug.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Taxon;

    #[test]
    fn slugs_are_lowercase_ascii_words_with_dashes() {
        for good in ["action", "slice-of-life", "4-kids", "a"] {
            assert!(is_slug(good), "{good}");
        }
        let long = "a".repeat(MAX_SLUG_LEN + 1);
        for bad in [
            "",
            "Action",
            "slice of life",
            "a:b",
            "*",
            "é",
            long.as_str(),
        ] {
            assert!(!is_slug(bad), "{bad}");
        }
    }

    #[test]
    fn a_list_finds_entries_by_id_and_survives_its_json() {
        let entry = |id, name: &str| TaxonCount {
            taxon: Taxon {
                id,
                name: name.to_owned(),
                slug: name.to_lowercase(),
            },
            anime_count: 3,
        };
        let list = TaxonList::new(vec![entry(7, "Action"), entry(2, "Drama")]);
        assert_eq!(list.position(2), Some(1));
        assert_eq!(list.position(9), None);
        let json = serde_json::to_string(&list).expect("json");
        assert!(json.starts_with('['), "{json}");
        let back: TaxonList = serde_json::from_str(&json).expect("decode");
        assert_eq!(back, list);
        assert_eq!(back.position(7), Some(0));
    }
}
