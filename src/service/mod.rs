//! Use cases, independent of GraphQL: what the resolvers ask for, in domain
//! terms. Caching joins here (cache-aside around the repository), so it can
//! be tested and benchmarked without HTTP. Each cached read is declared
//! here as a `cache::CachedQuery` next to its database load.

pub mod anime;
pub mod anime_write;
pub mod catalogue;
pub mod relations;
pub mod search;
pub mod tags;
pub mod taxonomy;
pub mod taxonomy_write;

pub use anime::{
    AnimeById, AnimeCount, AnimePage, AnimeService, PageRequest, PageResult, PopularAnime,
};
pub use anime_write::{AnimeChanges, AnimeDraft};
pub use catalogue::{AnimeList, CountQuery, FilteredAnimeCount};
pub use relations::{AnimeEpisodes, AnimePlayers, EpisodeEntry, PlayerEntry};
pub use search::{SearchAnime, SearchText};
pub use taxonomy::{TaxonBySlug, TaxonList, TaxonomyList};
