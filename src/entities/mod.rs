//! sea-orm entities: the database shape of our data and nothing else.
//!
//! No GraphQL derives live here; `graphql::types` converts an entity model
//! into its API type with one `From` impl, so the two can change separately.

pub mod anime;
