//! The invalidation tags of the catalogue: which writes make which cached
//! reads stale. Every cached read names one of these as its
//! `CachedQuery::tag`; every write bumps the tags of what it changed (see
//! `anime_write`). One tag per entry, coarse on purpose: a tag covers every
//! entry whose value a write can change, so invalidation is O(1) per tag
//! and exact (never stale), at the price of also dropping entries the write
//! did not change.
//!
//! | tag | entries | bumped by |
//! |---|---|---|
//! | `anime:{id}` | `anime(id)`, the relations of anime `id` | any write to anime `id` |
//! | `popular` | `popularAnime` | any anime write, a genre rename or delete (names are embedded) |
//! | `anime_paginated` | `animePage` | any anime write, a genre rename or delete |
//! | `anime_count` | the unfiltered `animeCount` | anime create and delete |
//! | `anime_list` | `animeList`, filtered `animeCount` | any anime write, any taxonomy write |
//! | `taxonomy` | genre, theme and studio lists and entries (with their anime counts) | anime create, delete and relation changes; any taxonomy write |
//! | `anime_search` | `searchAnime` | any anime write, a genre rename or delete |
//!
//! Taxonomy writes (see [`for_taxon_write`]): the relation entries of an
//! anime hold taxon ids, named through the cached taxonomy lists, so a
//! rename or delete of a theme or studio bumps `taxonomy` (and
//! `anime_list` when lists filtered by its slug change) but no anime's
//! entries. Genre names are also embedded in every cached anime record
//! (`Anime.genres`, for old clients), so a genre rename or delete bumps
//! `anime:{id}` of each anime that has it, and every list that embeds
//! records: one `SET` per member anime, in one pipeline.

use crate::db::Taxonomy;

/// Tag of one anime's entries (the record and its relations).
pub fn anime(id: i32) -> String {
    format!("anime:{id}")
}

/// `popularAnime` lists.
pub const POPULAR: &str = "popular";

/// `animePage` pages.
pub const ANIME_PAGINATED: &str = "anime_paginated";

/// The unfiltered `animeCount`.
pub const ANIME_COUNT: &str = "anime_count";

/// `animeList` pages and filtered counts.
pub const ANIME_LIST: &str = "anime_list";

/// Genre, theme and studio lists and entries.
pub const TAXONOMY: &str = "taxonomy";

/// `searchAnime` results.
pub const ANIME_SEARCH: &str = "anime_search";

/// What a write to a genre, theme or studio did, for its tags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaxonWrite {
    /// Created: no anime has it yet, only the taxonomy lists change.
    Created,
    /// Renamed, and moved to another slug or not.
    Renamed {
        /// Whether its slug changed (lists filtered by the old or new
        /// slug change).
        slug_changed: bool,
    },
    /// Deleted, with its links.
    Deleted,
}

/// The tags a write of `kind` to a taxon of `taxonomy` must bump; `members`
/// are the ids of the anime that have it.
pub fn for_taxon_write(taxonomy: Taxonomy, kind: TaxonWrite, members: &[i32]) -> Vec<String> {
    let mut tags = vec![TAXONOMY.to_owned()];
    let lists_change = match kind {
        TaxonWrite::Created => false,
        TaxonWrite::Renamed { slug_changed } => slug_changed,
        TaxonWrite::Deleted => true,
    };
    let records_change = taxonomy == Taxonomy::Genre && kind != TaxonWrite::Created;
    if records_change {
        tags.extend(members.iter().map(|&id| anime(id)));
        tags.extend(
            [POPULAR, ANIME_PAGINATED, ANIME_SEARCH]
                .iter()
                .map(|tag| (*tag).to_owned()),
        );
    }
    if lists_change || records_change {
        tags.push(ANIME_LIST.to_owned());
    }
    tags
}

/// What a write to anime changed, for its tags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnimeWrite {
    /// Created or deleted: every list, count and membership.
    CreatedOrDeleted,
    /// Updated, with or without a change of its genres, themes or studios.
    Updated {
        /// Whether its genres, themes or studios changed (taxonomy counts).
        has_relation_changes: bool,
    },
}

/// The tags a write of `kind` to anime `ids` must bump.
pub fn for_anime_write(ids: &[i32], kind: AnimeWrite) -> Vec<String> {
    let mut tags: Vec<String> = ids.iter().map(|&id| anime(id)).collect();
    tags.extend(
        [POPULAR, ANIME_PAGINATED, ANIME_LIST, ANIME_SEARCH]
            .iter()
            .map(|tag| (*tag).to_owned()),
    );
    match kind {
        AnimeWrite::CreatedOrDeleted => {
            tags.push(ANIME_COUNT.to_owned());
            tags.push(TAXONOMY.to_owned());
        }
        AnimeWrite::Updated {
            has_relation_changes: true,
        } => tags.push(TAXONOMY.to_owned()),
        AnimeWrite::Updated {
            has_relation_changes: false,
        } => {}
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_theme_rename_touches_only_the_taxonomy_and_a_genre_rename_its_anime() {
        let theme = for_taxon_write(
            Taxonomy::Theme,
            TaxonWrite::Renamed {
                slug_changed: false,
            },
            &[1, 2],
        );
        assert_eq!(theme, vec![TAXONOMY.to_owned()]);
        let moved = for_taxon_write(
            Taxonomy::Studio,
            TaxonWrite::Renamed { slug_changed: true },
            &[1],
        );
        assert_eq!(moved, vec![TAXONOMY.to_owned(), ANIME_LIST.to_owned()]);
        let genre = for_taxon_write(
            Taxonomy::Genre,
            TaxonWrite::Renamed {
                slug_changed: false,
            },
            &[4, 9],
        );
        for tag in [
            "anime:4",
            "anime:9",
            POPULAR,
            ANIME_PAGINATED,
            ANIME_LIST,
            ANIME_SEARCH,
        ] {
            assert!(genre.contains(&tag.to_owned()), "{tag}");
        }
        assert!(!genre.contains(&ANIME_COUNT.to_owned()));
    }

    #[test]
    fn deletes_change_filtered_lists_and_creates_only_the_taxonomy() {
        let deleted = for_taxon_write(Taxonomy::Studio, TaxonWrite::Deleted, &[3]);
        assert!(deleted.contains(&ANIME_LIST.to_owned()));
        assert!(!deleted.contains(&"anime:3".to_owned()));
        let created = for_taxon_write(Taxonomy::Genre, TaxonWrite::Created, &[]);
        assert_eq!(created, vec![TAXONOMY.to_owned()]);
    }

    #[test]
    fn an_update_without_relation_changes_keeps_counts_and_taxonomy() {
        let tags = for_anime_write(
            &[7],
            AnimeWrite::Updated {
                has_relation_changes: false,
            },
        );
        assert!(tags.contains(&"anime:7".to_owned()));
        assert!(tags.contains(&ANIME_LIST.to_owned()));
        assert!(!tags.contains(&ANIME_COUNT.to_owned()));
        assert!(!tags.contains(&TAXONOMY.to_owned()));
    }

    #[test]
    fn creates_and_deletes_change_counts_and_taxonomy() {
        let tags = for_anime_write(&[1, 2], AnimeWrite::CreatedOrDeleted);
        for tag in [
            "anime:1",
            "anime:2",
            ANIME_COUNT,
            TAXONOMY,
            POPULAR,
            ANIME_SEARCH,
        ] {
            assert!(tags.contains(&tag.to_owned()), "{tag}");
        }
    }
}
