//! Genres, themes and studios: their API types and the query fields that
//! list them (`genres`, `themes`, `studios`) and enter the catalogue
//! through one (`genre(slug)`, `theme(slug)`, `studio(slug)`).
//!
//! The three types share one shape, so one macro writes them; each is a
//! view into a cached [`TaxonList`] entry or a cached [`TaxonCount`].

use std::sync::Arc;

use async_graphql::{Context, ID, Object, Result};

use super::catalogue::{AnimeList, AnimeSort, SortOrder, anime_list, of_taxon};
use super::loader::load;
use super::query::state;
use crate::db::{TaxonCount, Taxonomy};
use crate::service::TaxonList;

/// Where a taxon's fields come from: an entry of a cached list, or a
/// cached single taxon.
#[derive(Clone)]
pub enum TaxonSource {
    /// Entry `index` of a taxonomy list.
    Listed(Arc<TaxonList>, usize),
    /// One taxon (from `genre(slug)` or a write).
    Single(Arc<TaxonCount>),
}

impl TaxonSource {
    /// The taxon and its count.
    pub fn entry(&self) -> &TaxonCount {
        match self {
            Self::Listed(list, index) => &list.entries()[*index],
            Self::Single(entry) => entry,
        }
    }

    /// Every entry of `list`, in order.
    pub fn all_of(list: &Arc<TaxonList>) -> impl Iterator<Item = Self> + '_ {
        (0..list.entries().len()).map(|index| Self::Listed(Arc::clone(list), index))
    }
}

macro_rules! taxon_type {
    ($name:ident, $kind:expr, $doc:literal, $noun:literal) => {
        #[doc = $doc]
        pub struct $name(pub TaxonSource);

        impl $name {
            /// The taxonomy this type shows.
            pub const KIND: Taxonomy = $kind;

            fn entry(&self) -> &TaxonCount {
                self.0.entry()
            }
        }

        #[Object]
        #[doc = $doc]
        impl $name {
            #[doc = concat!("Stable identifier of the ", $noun, ".")]
            async fn id(&self) -> ID {
                ID(self.entry().taxon.id.to_string())
            }

            /// Display name.
            async fn name(&self) -> &str {
                &self.entry().taxon.name
            }

            #[doc = concat!(
                                "URL key, stable across renames unless changed on purpose (`",
                                $noun,
                                "(slug:)`)."
                            )]
            async fn slug(&self) -> &str {
                &self.entry().taxon.slug
            }

            #[doc = concat!("Number of anime with this ", $noun, ".")]
            async fn anime_count(&self) -> u64 {
                self.entry().anime_count
            }

            #[doc = concat!(
                        "One page of the anime with this ", $noun,
                        ": `animeList(filter: {", $noun, ": slug})`, with the same sort, ",
                        "order and paging (its `total` is `animeCount`). Cached up to 300 s."
                    )]
            #[graphql(complexity = "per_page.clamp(1, 100) as usize * child_complexity + 5")]
            async fn anime(
                &self,
                ctx: &Context<'_>,
                #[graphql(
                    default_with = "AnimeSort::Popularity",
                    desc = "What to order by (then by id)."
                )]
                sort: AnimeSort,
                #[graphql(desc = "Direction; the sort's natural direction when absent.")]
                order: Option<SortOrder>,
                #[graphql(default = 1, desc = "Page number, from 1.")] page: i64,
                #[graphql(default = 20, desc = "Anime per page, 1 to 100.")] per_page: i64,
            ) -> Result<AnimeList> {
                let filter = of_taxon(Self::KIND, &self.entry().taxon.slug);
                anime_list(ctx, Ok(filter), sort, order, page, per_page).await
            }
        }
    };
}

taxon_type!(
    Genre,
    Taxonomy::Genre,
    "A genre (Action, Slice of Life…).",
    "genre"
);
taxon_type!(
    Theme,
    Taxonomy::Theme,
    "A theme (School, Time Travel…).",
    "theme"
);
taxon_type!(Studio, Taxonomy::Studio, "An animation studio.", "studio");

/// The whole list of `kind`, cached.
pub async fn list(ctx: &Context<'_>, kind: Taxonomy) -> Result<Arc<TaxonList>> {
    load(ctx, state(ctx)?.anime.taxa(kind)).await
}

/// The taxon of `kind` with `slug`, cached; `None` for an unknown slug.
async fn one(ctx: &Context<'_>, kind: Taxonomy, slug: &str) -> Result<Option<TaxonSource>> {
    let Some(query) = state(ctx)?.anime.taxon(kind, slug) else {
        return Ok(None);
    };
    let found = load(ctx, query).await?;
    Ok(found
        .as_ref()
        .clone()
        .map(|entry| TaxonSource::Single(Arc::new(entry))))
}

/// How many entries the `genres`, `themes` and `studios` lists count as for
/// the complexity limit: a little over what a real catalogue has (the
/// seeded one, like the old backend's, about 20 genres, 50 themes and 200
/// studios), so that a page of anime under every taxon of a list is paid
/// for per taxon.
const LISTED_GENRES: usize = 30;
/// See [`LISTED_GENRES`].
const LISTED_THEMES: usize = 60;
/// See [`LISTED_GENRES`].
const LISTED_STUDIOS: usize = 250;

/// The genres, themes and studios.
#[derive(Default)]
pub struct TaxonomyQuery;

#[Object]
impl TaxonomyQuery {
    /// Every genre with its anime count, by name. Cached up to 600 s.
    /// For the complexity limit the list counts as 30 genres (each
    /// `anime` page under it is paid 30 times).
    #[graphql(complexity = "LISTED_GENRES * child_complexity + 1")]
    async fn genres(&self, ctx: &Context<'_>) -> Result<Vec<Genre>> {
        let list = list(ctx, Taxonomy::Genre).await?;
        Ok(TaxonSource::all_of(&list).map(Genre).collect())
    }

    /// Every theme with its anime count, by name. Cached up to 600 s.
    /// For the complexity limit the list counts as 60 themes (each
    /// `anime` page under it is paid 60 times).
    #[graphql(complexity = "LISTED_THEMES * child_complexity + 1")]
    async fn themes(&self, ctx: &Context<'_>) -> Result<Vec<Theme>> {
        let list = list(ctx, Taxonomy::Theme).await?;
        Ok(TaxonSource::all_of(&list).map(Theme).collect())
    }

    /// Every studio with its anime count, by name. Cached up to 600 s.
    /// For the complexity limit the list counts as 250 studios (each
    /// `anime` page under it is paid 250 times).
    #[graphql(complexity = "LISTED_STUDIOS * child_complexity + 1")]
    async fn studios(&self, ctx: &Context<'_>) -> Result<Vec<Studio>> {
        let list = list(ctx, Taxonomy::Studio).await?;
        Ok(TaxonSource::all_of(&list).map(Studio).collect())
    }

    /// The genre with this slug (`slice-of-life`); null when there is none.
    /// Cached up to 600 s.
    async fn genre(&self, ctx: &Context<'_>, slug: String) -> Result<Option<Genre>> {
        Ok(one(ctx, Taxonomy::Genre, &slug).await?.map(Genre))
    }

    /// The theme with this slug; null when there is none. Cached up to
    /// 600 s.
    async fn theme(&self, ctx: &Context<'_>, slug: String) -> Result<Option<Theme>> {
        Ok(one(ctx, Taxonomy::Theme, &slug).await?.map(Theme))
    }

    /// The studio with this slug; null when there is none. Cached up to
    /// 600 s.
    async fn studio(&self, ctx: &Context<'_>, slug: String) -> Result<Option<Studio>> {
        Ok(one(ctx, Taxonomy::Studio, &slug).await?.map(Studio))
    }
}
