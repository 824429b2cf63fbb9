//! The GraphQL API: schema assembly ([`build_schema`], [`sdl`]), the query
//! root, API types, the cache loader, the checks a document and its
//! variables pass before execution (`document`, `limits`, `values`) and
//! error shaping. Resolvers are thin: they check arguments, hand a service
//! query to the loader, and map the result to API types.

pub mod admin;
pub mod document;
pub mod errors;
pub mod limits;
pub mod loader;
pub mod query;
pub mod types;
pub mod values;
pub mod write;

use std::sync::Arc;

use async_graphql::dataloader::DataLoader;
use async_graphql::{EmptySubscription, MergedObject, SDLExportOptions, Schema, ValidationMode};

use crate::app::AppState;

/// The query root: the catalogue plus admin-only cache stats.
// Named `Query` (and the mutation root `Mutation`) in the schema: the names
// every client's generated types show.
#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot(query::CatalogQuery, admin::AdminQuery);

/// The mutation root (admin only): catalogue writes and cache
/// administration.
#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
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

/// What async-graphql 7 answers to `__schema { description }`: a fixed
/// text (its description of the `__Schema` type), which a schema cannot
/// change. [`sdl`] gives it as the schema description so that
/// `schema.graphql` and introspection say the same thing
/// (`tests/it/contract.rs` compares them, so an upgrade that changes it
/// fails there).
pub const SCHEMA_DESCRIPTION: &str = "A GraphQL Schema defines the capabilities of a GraphQL server. It exposes all available types and directives on the server, as well as the entry points for query, mutation, and subscription operations.";

/// The schema as SDL: what `schema.graphql` must contain. It says what
/// introspection says: the schema description, and `@specifiedBy` on
/// scalars that have a specification URL (`DateTime`).
pub fn sdl() -> String {
    let sdl = type_system_sdl();
    // async-graphql writes the `schema { … }` block last and no schema
    // description; a description goes right before the block.
    match sdl.rfind("schema {") {
        Some(at) => format!(
            "{}\"\"\"\n{SCHEMA_DESCRIPTION}\n\"\"\"\n{}",
            &sdl[..at],
            &sdl[at..]
        ),
        None => sdl,
    }
}

/// [`sdl`] without the schema description, which async-graphql's own SDL
/// parser (`parse_schema`) does not accept: what `values` reads the input
/// types from.
pub(crate) fn type_system_sdl() -> String {
    Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        EmptySubscription,
    )
    .finish()
    .sdl_with_options(SDLExportOptions::new().include_specified_by())
}
