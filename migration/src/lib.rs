//! Schema migrations for AniGo, shared by the server (`anigo migrate …` and the
//! automatic migration on start-up) and by this crate's own small CLI.
//!
//! Every migration must run on PostgreSQL and SQLite alike: use sea-query's
//! portable column types; backend-specific SQL only where the backends
//! differ by nature (title search: pg_trgm and FTS5; the JSON aggregate of
//! a down migration), chosen by `manager.get_database_backend()`.
//!
//! [`slug`] is here, not in the server, because a migration turns names
//! into slugs too, and the server depends on this crate (not the reverse).

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_create_anime;
mod m20261202_000002_catalogue;
pub mod slug;

/// Names in the schema that queries depend on: the indexes of the list
/// query (named in EXPLAIN checks) and the search structures.
pub mod schema_names {
    pub use super::m20261202_000002_catalogue::{PG_SEARCH_EXPRESSION, SEARCH_TABLE, index};
}

/// The ordered list of AniGo migrations.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_create_anime::Migration),
            Box::new(m20261202_000002_catalogue::Migration),
        ]
    }
}
