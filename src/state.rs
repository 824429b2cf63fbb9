//! [`AppState`]: the handles every request handler needs.
//!
//! A leaf: it imports only the layers below the HTTP server (configuration,
//! database, Redis, cache, services), never `app`, `server`, `graphql` or
//! `metrics`, so any of those may import it without an import circle.

use std::sync::Arc;

use crate::cache::Cache;
use crate::config::Config;
use crate::db::{Database, DbStats};
use crate::redis::RedisStore;
use crate::service::AnimeService;

/// Everything a request handler needs. Cheap to clone: each field is a
/// handle to shared state.
#[derive(Clone)]
pub struct AppState {
    /// The configuration the app was built with.
    pub config: Arc<Config>,
    /// The database: the request pool behind the circuit breaker. Every
    /// query of the server goes through it.
    pub db: Database,
    /// Statement counters of `db`.
    pub db_stats: Arc<DbStats>,
    /// The Redis connection (possibly disconnected and reconnecting).
    pub redis: RedisStore,
    /// The cache every cached resolver reads through.
    pub cache: Cache,
    /// Catalogue reads.
    pub anime: AnimeService,
}
