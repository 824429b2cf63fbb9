//! The GraphQL API: schema assembly ([`build_schema`], [`sdl`]), the query
//! root, API types, the cache loader, the checks a document and its
//! variables pass before execution (`document`, `limits`, `values`) and
//! error shaping. Resolvers are thin: they check arguments, hand a service
//! query to the loader, and map the result to API types.

pub mod admin;
pub mod catalogue;
pub mod document;
pub mod errors;
pub mod limits;
pub mod loader;
pub mod query;
pub mod search;
pub mod taxonomy;
pub mod taxonomy_write;
pub mod types;
pub mod values;
pub mod write;

use std::sync::Arc;

use async_graphql::dataloader::DataLoader;
use async_graphql::{EmptySubscription, MergedObject, SDLExportOptions, Schema, ValidationMode};

use crate::state::AppState;

/// The query root: the catalogue plus admin-only cache stats.
// Named `Query` (and the mutation root `Mutation`) in the schema: the names
// every client's generated types show.
#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot(
    query::CatalogQuery,
    catalogue::CatalogueQuery,
    taxonomy::TaxonomyQuery,
    search::SearchQuery,
    admin::AdminQuery,
);

/// The mutation root (admin only): catalogue writes and cache
/// administration.
#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(
    write::CatalogMutation,
    taxonomy_write::TaxonomyMutation,
    admin::AdminMutation,
);

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

/// The directives every GraphQL service has. The specification lets SDL
/// leave their definitions out, as graphql-js's printer does, and [`sdl`]
/// does: async-graphql writes them without their arguments' descriptions,
/// so they would not say what introspection says.
const BUILT_IN_DIRECTIVES: &[&str] = &["deprecated", "include", "oneOf", "skip", "specifiedBy"];

/// The schema as SDL: what `schema.graphql` must contain. It says what
/// introspection says: the schema description, `@specifiedBy` on scalars
/// that have a specification URL (`DateTime`), and no built-in directive
/// definitions.
pub fn sdl() -> String {
    let sdl = without_built_in_directives(&type_system_sdl());
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

/// `sdl` without the definitions of [`BUILT_IN_DIRECTIVES`] (each one line,
/// after its description).
fn without_built_in_directives(sdl: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    for line in sdl.lines() {
        let is_built_in = line.strip_prefix("directive @").is_some_and(|rest| {
            let name = rest
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .next()
                .unwrap_or_default();
            BUILT_IN_DIRECTIVES.contains(&name)
        });
        if !is_built_in {
            kept.push(line);
            continue;
        }
        // Drop its description: `"""` … `"""`, or one `"""…"""` line.
        match kept.last() {
            Some(&"\"\"\"") => {
                kept.pop();
                while let Some(line) = kept.pop() {
                    if line == "\"\"\"" {
                        break;
                    }
                }
            }
            Some(last) if last.starts_with("\"\"\"") && last.len() > 6 => {
                kept.pop();
            }
            _ => {}
        }
    }
    let mut out = kept.join("\n");
    out.push('\n');
    out
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::graphql::document::{DocumentCache, DocumentHash};

    #[test]
    fn the_sdl_leaves_out_built_in_directives_and_says_what_introspection_says() {
        let sdl = sdl();
        assert!(!sdl.contains("directive @"), "{sdl}");
        assert!(sdl.contains(
            "scalar DateTime @specifiedBy(url: \"https://datatracker.ietf.org/doc/html/rfc3339\")"
        ));
        assert!(sdl.contains(&format!(
            "\"\"\"\n{SCHEMA_DESCRIPTION}\n\"\"\"\nschema {{\n"
        )));
        assert!(sdl.contains("\tquery: Query\n\tmutation: Mutation\n"));
        assert!(
            async_graphql::parser::parse_schema(without_built_in_directives(&type_system_sdl()))
                .is_ok()
        );
        let kept = "\"\"\"\nA type.\n\"\"\"\ntype A {\n\ta: Int\n}\n\"\"\"One line.\"\"\"\ndirective @skip(if: Boolean!) on FIELD\ndirective @mine on FIELD\n";
        assert_eq!(
            without_built_in_directives(kept),
            "\"\"\"\nA type.\n\"\"\"\ntype A {\n\ta: Int\n}\ndirective @mine on FIELD\n"
        );
    }

    /// The documents a client can send that cost the most under the
    /// default limits, each with the code it gets (`None`: answered). A
    /// timing check, not a benchmark: run it in a release build to read
    /// the figures, `cargo test --release --lib document_costs -- --ignored
    /// --nocapture`.
    #[tokio::test]
    #[ignore = "prints timings; meaningful in a release build"]
    async fn document_costs_under_the_default_limits() {
        let limits = crate::Config::from_lookup(|_| None)
            .expect("the defaults are valid")
            .graphql;
        let schema = Schema::build(
            QueryRoot::default(),
            MutationRoot::default(),
            EmptySubscription,
        )
        .limit_depth(limits.max_depth)
        .limit_complexity(limits.max_complexity)
        .finish();

        let doubling = |levels: usize| {
            let mut query = String::from("{ ...F0 }");
            for level in 0..levels {
                let next = level + 1;
                query.push_str(&format!(
                    " fragment F{level} on Query {{ ...F{next} ...F{next} }}"
                ));
            }
            query.push_str(&format!(" fragment F{levels} on Query {{ __typename }}"));
            query
        };
        let cases: Vec<(&str, String, Option<&str>)> = vec![
            (
                "1 MiB: 95,000 __typename",
                format!("{{ {}}}", "__typename ".repeat(95_000)),
                Some("QUERY_TOO_LARGE"),
            ),
            (
                "14,998 __typename (15,000 tokens)",
                format!("{{ {}}}", "__typename ".repeat(14_998)),
                None,
            ),
            (
                "14,999 __typename (one token over)",
                format!("{{ {}}}", "__typename ".repeat(14_999)),
                Some("QUERY_TOO_LARGE"),
            ),
            (
                "14,000 animeCount",
                format!("{{ {}}}", "animeCount ".repeat(14_000)),
                Some("QUERY_TOO_COMPLEX"),
            ),
            (
                "doubling fragments, 13 levels (8,192 fields)",
                doubling(13),
                None,
            ),
            (
                "doubling fragments, 40 levels",
                doubling(40),
                Some("QUERY_TOO_LARGE"),
            ),
            (
                "1,400 fragments in a chain",
                format!(
                    "{{ ...F0 }}{} fragment F1400 on Query {{ __typename }}",
                    (0..1_400)
                        .map(|i| format!(" fragment F{i} on Query {{ ...F{} }}", i + 1))
                        .collect::<String>()
                ),
                Some("GRAPHQL_PARSE_FAILED"),
            ),
            (
                "3,000 operations, one run",
                (0..3_000)
                    .map(|i| format!("query Q{i} {{ __typename }} "))
                    .collect(),
                None,
            ),
            (
                "2 fields with 2,400 equal arguments each",
                format!(
                    "{{ {f} {f} }}",
                    f = format!("popularAnime({}) {{ id }}", "limit: 1 ".repeat(2_400))
                ),
                Some("GRAPHQL_VALIDATION_FAILED"),
            ),
            (
                "2,100 directives on one field",
                format!("{{ __typename {}}}", "@skip(if: false) ".repeat(2_100)),
                None,
            ),
            (
                "introspection of every type and field",
                "{ __schema { types { name fields { name args { name type { name } } type { name ofType { name } } } } } }".to_owned(),
                None,
            ),
        ];

        println!("{:<48} {:>9} {:>8}  outcome", "document", "bytes", "ms");
        for (name, query, expected) in cases {
            let mut best = Duration::MAX;
            let mut outcome = String::new();
            for _ in 0..5 {
                let cache = DocumentCache::default();
                let started = Instant::now();
                let hash = DocumentHash::of(&query);
                outcome = match cache.get_or_parse(hash, &query, &limits).await {
                    Err(errors) => code_of(&errors[0]),
                    Ok(parsed) => {
                        let request =
                            async_graphql::Request::new(query.as_str()).operation_name("Q0");
                        let mut request = if query.starts_with("query Q0") {
                            request
                        } else {
                            async_graphql::Request::new(query.as_str())
                        };
                        request.set_parsed_query(parsed.document.as_ref().clone());
                        let mut response = schema.execute(request).await;
                        errors::shape(&mut response, true);
                        response
                            .errors
                            .first()
                            .map_or_else(|| "answered".to_owned(), code_of)
                    }
                };
                best = best.min(started.elapsed());
            }
            println!(
                "{name:<48} {:>9} {:>8.2}  {outcome}",
                query.len(),
                best.as_secs_f64() * 1e3
            );
            assert_eq!(outcome, expected.unwrap_or("answered"), "{name}");
        }
    }

    fn code_of(error: &async_graphql::ServerError) -> String {
        match error.extensions.as_ref().and_then(|e| e.get("code")) {
            Some(async_graphql::Value::String(code)) => code.clone(),
            _ => "no code".to_owned(),
        }
    }
}
