//! The relational database: connecting (PostgreSQL or SQLite), preparing the
//! schema on start-up, the guard every server query passes, and health.
//! Every query goes through [`AnimeRepo`]; nothing outside `db` builds SQL.
//!
//! | module | owns |
//! |---|---|
//! | [`database`] | [`Database`]: the request pool behind the breaker and a client-side bound; error classification |
//! | [`breaker`] | the circuit breaker's states and its background prober |
//! | [`startup`] | reaching the database at start-up, with retries and the real cause |
//! | [`relations`] | writing an anime's players and episodes; the relation writes of one anime write |
//! | [`anime_repo`] | `AnimeRepo`, the facade of every catalogue query; `AnimeRecord`; the batch relation loaders |
//! | [`anime_query`] | the list, count and search SQL: filters, orders, ranking, matched to the indexes |
//! | [`taxonomy`] | genres, themes and studios: links of many anime at once, counts, by slug, creating names on write |

pub mod anime_query;
pub mod anime_repo;
pub mod breaker;
pub mod database;
pub mod relations;
pub mod startup;
pub mod taxonomy;

/// The slug rule of genre, theme and studio names (lives in the migration
/// crate, which uses it too).
pub use migration::slug;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context as _;
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, DatabaseConnection, EntityTrait, PaginatorTrait};

use crate::config::DatabaseConfig;

pub use anime_query::{AnimeFilter, AnimeOrder, AnimeSort, SortDirection, YearRange};
pub use anime_repo::{AnimeEntity, AnimeFacts, AnimeRecord, AnimeRepo};
pub use breaker::BreakerState;
pub use database::Database;
pub use startup::connect_for_maintenance;
pub use taxonomy::{Taxon, TaxonCount, TaxonWriteError, Taxonomy};

/// Statement counter, fed by sea-orm's metric callback. Tests use it to
/// prove a read did or did not reach the database; latency and failures go
/// to the Prometheus metrics from the same callback.
#[derive(Debug, Default)]
pub struct DbStats {
    queries: AtomicU64,
}

impl DbStats {
    /// Statements executed since start.
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }
}

/// What a pool is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// The server's requests: `DATABASE_STATEMENT_TIMEOUT_MS` applies.
    Requests,
    /// Migrations and seeding: no statement timeout.
    Maintenance,
}

/// sea-orm's options for a pool on `config` for `purpose`.
pub(crate) fn connect_options(config: &DatabaseConfig, purpose: Purpose) -> ConnectOptions {
    let mut options = ConnectOptions::new(config.url.expose().to_owned());
    options
        .max_connections(config.max_connections)
        .min_connections(1)
        // sea-orm gives both to sqlx's pool as its acquire timeout, which
        // bounds connecting as well as waiting for a free connection.
        .connect_timeout(config.acquire_timeout)
        .acquire_timeout(config.acquire_timeout)
        // sqlx logs every statement at info; per-query logging is debug at most.
        .sqlx_logging(false);
    if purpose == Purpose::Requests {
        // A startup parameter of each connection (no extra round trip);
        // PostgreSQL only, SQLite relies on the client-side bound.
        options.statement_timeout(config.statement_timeout);
        // Plan every statement for its own parameters: the right plan of a
        // title search or a genre filter depends on the value (a rare name
        // reads an index range, a common word walks the popularity index),
        // and a prepared statement's generic plan, which PostgreSQL may
        // switch to after five runs, is made for no value in particular.
        // Planning these statements costs a fraction of a millisecond.
        options.map_sqlx_postgres_opts(|opts| {
            opts.options([("plan_cache_mode", "force_custom_plan")])
        });
    }
    options
}

/// Reaches the database (retrying with backoff up to
/// `DATABASE_STARTUP_TIMEOUT_SECS`, logging each failed attempt with its
/// cause), prepares it on a maintenance connection (see [`prepare`]), then
/// opens the request pool behind the breaker, counting every statement into
/// the returned [`DbStats`].
pub async fn connect_and_prepare(
    config: &DatabaseConfig,
) -> anyhow::Result<(Database, Arc<DbStats>)> {
    let mut conn = startup::with_retries(config, || async {
        startup::reach(config).await?;
        let maintenance = startup::open(config, Purpose::Maintenance).await?;
        let prepared = prepare(&maintenance, config).await;
        // Closing a pool of a database that is fine cannot fail in a way
        // that matters: its connections are simply dropped.
        let _ = maintenance.close().await;
        prepared.map_err(startup::AttemptError::from_db)?;
        startup::open(config, Purpose::Requests).await
    })
    .await?;
    let stats = Arc::new(DbStats::default());
    let sink = Arc::clone(&stats);
    conn.set_metric_callback(move |info| {
        sink.queries.fetch_add(1, Ordering::Relaxed);
        metrics::histogram!(crate::metrics::DB_QUERY_SECONDS).record(info.elapsed.as_secs_f64());
        if info.failed {
            metrics::counter!(crate::metrics::DB_QUERY_ERRORS_TOTAL).increment(1);
        }
    });
    Ok((Database::new(conn, config), stats))
}

/// Applies pending migrations (when enabled) and inserts demo data into an
/// empty catalogue (when configured), so a first `cargo run` shows anime.
/// Runs on a maintenance connection: no statement timeout applies.
pub async fn prepare(db: &DatabaseConnection, config: &DatabaseConfig) -> anyhow::Result<()> {
    if config.auto_migrate {
        Migrator::up(db, None)
            .await
            .context("applying database migrations")?;
    }
    if config.demo_seed_count > 0 {
        let count = crate::entities::anime::Entity::find()
            .count(db)
            .await
            .context("counting anime before the demo seed")?;
        if count == 0 {
            let started = Instant::now();
            let inserted =
                crate::seed::insert(db, config.demo_seed_count, crate::seed::DEFAULT_SEED)
                    .await
                    .context("inserting demo anime")?
                    .anime;
            tracing::info!(
                inserted,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "Seeded demo anime into an empty database"
            );
        }
    }
    Ok(())
}
