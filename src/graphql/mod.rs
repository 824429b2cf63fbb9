//! The GraphQL API: schema assembly ([`build_schema`], [`sdl`]), the query
//! root, API types, the cache loader and error shaping. Resolvers are thin:
//! they check arguments, hand a service query to the loader, and map the
//! result to API types.

pub mod admin;
pub mod document;
pub mod errors;
pub mod limits;
pub mod loader;
pub mod query;
pub mod types;
pub mod write;

use std::sync::Arc;

use async_graphql::dataloader::DataLoader;
use async_graphql::{EmptySubscription, MergedObject, Schema, ValidationMode};

use crate::app::AppState;

/// The query root: the catalogue plus admin-only cache stats.
#[derive(MergedObject, Default)]
pub struct QueryRoot(query::CatalogQuery, admin::AdminQuery);

/// The mutation root (admin only): catalogue writes and cache
/// administration.
#[derive(MergedObject, Default)]
pub struct MutationRoot(write::CatalogMutation, admin::AdminMutation);

/// The executable schema.
pub type AppSchema = Schema<QueryRoot, MutationRoot, EmptySubscription>;

/// The executable schema twice, sharing one state and one loader.
#[derive(Clone)]
pub struct Schemas {
    /// Validates every document fully (async-graphql's strict mode).
    pub strict: AppSchema,
    /// For a document that already passed strict validation with the same
    /// operation and variables: async-graphql's fast mode, which keeps the
    /// depth and complexity limits and skips the rules whose outcome only
    /// the document and variables decide (about 8 % of a small query).
    pub prevalidated: AppSchema,
}

/// Builds the schemas with the application state as schema data. The
/// alias limit and error codes are applied around execution by the HTTP
/// layer (`server::graphql`), not by schema extensions (see `errors`).
pub fn build_schema(state: AppState) -> Schemas {
    let loader = Arc::new(loader::CacheLoader::data_loader(state.cache.clone()));
    Schemas {
        strict: build(state.clone(), Arc::clone(&loader), ValidationMode::Strict),
        prevalidated: build(state, loader, ValidationMode::Fast),
    }
}

fn build(
    state: AppState,
    loader: Arc<DataLoader<loader::CacheLoader>>,
    mode: ValidationMode,
) -> AppSchema {
    let limits = state.config.graphql.clone();
    let builder = Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        EmptySubscription,
    )
    .data(state)
    .data(loader)
    .validation_mode(mode)
    .limit_depth(limits.max_depth)
    .limit_complexity(limits.max_complexity);
    if limits.is_introspection_enabled {
        builder.finish()
    } else {
        builder.disable_introspection().finish()
    }
}

/// The schema as SDL: what `schema.graphql` must contain.
pub fn sdl() -> String {
    Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        EmptySubscription,
    )
    .finish()
    .sdl()
}
