//! sea-orm entities: the database shape of our data and nothing else.
//!
//! No GraphQL derives live here; `graphql::types` converts an entity model
//! into its API type with one `From` impl, so the two can change separately.
//!
//! | entity | table |
//! |---|---|
//! | [`anime`] | one anime's scalar fields |
//! | [`genre`], [`theme`], [`studio`] | the taxonomies: id, name, slug |
//! | [`anime_genre`], [`anime_theme`], [`anime_studio`] | many-to-many links, in the anime's order |
//! | [`player`] | video embeds of an anime |
//! | [`episode`] | episodes of an anime |

pub mod anime;
pub mod anime_genre;
pub mod anime_studio;
pub mod anime_theme;
pub mod episode;
pub mod genre;
pub mod player;
pub mod studio;
pub mod theme;
