//! Schema migrations for AniGo, shared by the server (`anigo migrate …` and the
//! automatic migration on start-up) and by this crate's own small CLI.
//!
//! Every migration must run on PostgreSQL and SQLite alike: use sea-query's
//! portable column types only, no backend-specific SQL.

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_create_anime;

/// The ordered list of AniGo migrations.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(m20261125_000001_create_anime::Migration)]
    }
}
