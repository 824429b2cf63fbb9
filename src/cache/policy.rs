//! One cache policy per cached resolver: its name (logs, metrics, debug
//! output), its key prefix and its TTL.
//!
//! Defaults are the old backend's: popular 60 s, paginated 300 s, count
//! 600 s; `anime(id)` 300 s. The catalogue's: lists, searches and each
//! relation of an anime 300 s, the taxonomy (genres, themes, studios with
//! their counts) 600 s. Each TTL can be overridden with its
//! `CACHE_TTL_*` variable (seconds); 0 turns caching off for that resolver.
//! Adding a cached resolver means adding a [`Resolver`] variant here and a
//! `CachedQuery` implementation next to its database load.

use std::time::Duration;

/// A cached resolver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resolver {
    /// `popularAnime(limit)`.
    PopularAnime,
    /// `animePage(page, perPage)`.
    AnimePage,
    /// `animeCount`.
    AnimeCount,
    /// `anime(id)`.
    Anime,
    /// `animeList(filter, sort, page, perPage)` and the pages of
    /// `genre(slug) { anime }` (theme, studio alike).
    AnimeList,
    /// `genres`, `themes`, `studios` and `genre(slug)` (theme, studio):
    /// each taxonomy with its anime counts.
    Taxonomy,
    /// `searchAnime(query, limit)`.
    AnimeSearch,
    /// `Anime.players`.
    AnimePlayers,
    /// `Anime.episodeList`.
    AnimeEpisodes,
}

impl Resolver {
    /// Every cached resolver, in a fixed order (index = position).
    pub const ALL: [Resolver; 9] = [
        Self::PopularAnime,
        Self::AnimePage,
        Self::AnimeCount,
        Self::Anime,
        Self::AnimeList,
        Self::Taxonomy,
        Self::AnimeSearch,
        Self::AnimePlayers,
        Self::AnimeEpisodes,
    ];

    /// The GraphQL field name, as in logs ("Cache HIT: popularAnime").
    pub const fn name(self) -> &'static str {
        match self {
            Self::PopularAnime => "popularAnime",
            Self::AnimePage => "animePage",
            Self::AnimeCount => "animeCount",
            Self::Anime => "anime",
            Self::AnimeList => "animeList",
            Self::Taxonomy => "taxonomy",
            Self::AnimeSearch => "searchAnime",
            Self::AnimePlayers => "Anime.players",
            Self::AnimeEpisodes => "Anime.episodeList",
        }
    }

    /// Key prefix, the old backend's where it had one.
    pub const fn prefix(self) -> &'static str {
        match self {
            Self::PopularAnime => "popular",
            Self::AnimePage => "anime_paginated",
            Self::AnimeCount => "anime_count",
            Self::Anime => "anime",
            Self::AnimeList => "anime_list",
            Self::Taxonomy => "taxonomy",
            Self::AnimeSearch => "anime_search",
            Self::AnimePlayers => "anime_players",
            Self::AnimeEpisodes => "anime_episodes",
        }
    }

    /// TTL when no override is configured.
    pub const fn default_ttl(self) -> Duration {
        match self {
            Self::PopularAnime => Duration::from_secs(60),
            Self::AnimePage => Duration::from_secs(300),
            Self::AnimeCount => Duration::from_secs(600),
            Self::Anime => Duration::from_secs(300),
            Self::AnimeList => Duration::from_secs(300),
            Self::Taxonomy => Duration::from_secs(600),
            Self::AnimeSearch => Duration::from_secs(300),
            Self::AnimePlayers | Self::AnimeEpisodes => Duration::from_secs(300),
        }
    }

    /// The variable overriding the TTL, in seconds.
    pub const fn ttl_var(self) -> &'static str {
        match self {
            Self::PopularAnime => "CACHE_TTL_POPULAR",
            Self::AnimePage => "CACHE_TTL_ANIME_PAGINATED",
            Self::AnimeCount => "CACHE_TTL_ANIME_COUNT",
            Self::Anime => "CACHE_TTL_ANIME",
            Self::AnimeList => "CACHE_TTL_ANIME_LIST",
            Self::Taxonomy => "CACHE_TTL_TAXONOMY",
            Self::AnimeSearch => "CACHE_TTL_ANIME_SEARCH",
            Self::AnimePlayers => "CACHE_TTL_ANIME_PLAYERS",
            Self::AnimeEpisodes => "CACHE_TTL_ANIME_EPISODES",
        }
    }

    /// Position in [`Resolver::ALL`], for per-resolver arrays.
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// The effective policy of each resolver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachePolicies {
    ttls: [Duration; Resolver::ALL.len()],
}

impl Default for CachePolicies {
    fn default() -> Self {
        Self {
            ttls: Resolver::ALL.map(Resolver::default_ttl),
        }
    }
}

impl CachePolicies {
    /// Overrides one resolver's TTL; zero disables its cache.
    pub fn with_ttl(mut self, resolver: Resolver, ttl: Duration) -> Self {
        self.ttls[resolver.index()] = ttl;
        self
    }

    /// The TTL of `resolver` (zero when disabled).
    pub fn ttl(&self, resolver: Resolver) -> Duration {
        self.ttls[resolver.index()]
    }

    /// Whether `resolver` is cached at all.
    pub fn is_enabled(&self, resolver: Resolver) -> bool {
        !self.ttl(resolver).is_zero()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_old_backend() {
        let policies = CachePolicies::default();
        assert_eq!(
            policies.ttl(Resolver::PopularAnime),
            Duration::from_secs(60)
        );
        assert_eq!(policies.ttl(Resolver::AnimePage), Duration::from_secs(300));
        assert_eq!(policies.ttl(Resolver::AnimeCount), Duration::from_secs(600));
        assert_eq!(Resolver::PopularAnime.prefix(), "popular");
        assert_eq!(Resolver::AnimePage.prefix(), "anime_paginated");
        assert_eq!(Resolver::AnimeCount.prefix(), "anime_count");
    }

    #[test]
    fn indexes_follow_all() {
        for (position, resolver) in Resolver::ALL.iter().enumerate() {
            assert_eq!(resolver.index(), position);
        }
    }

    #[test]
    fn zero_ttl_disables() {
        let policies = CachePolicies::default().with_ttl(Resolver::Anime, Duration::ZERO);
        assert!(!policies.is_enabled(Resolver::Anime));
        assert!(policies.is_enabled(Resolver::AnimeCount));
    }
}
