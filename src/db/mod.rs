//! The relational database: connecting (PostgreSQL or SQLite), preparing the
//! schema on start-up, and checking health. Every query lives in
//! [`anime_repo`]; nothing outside `db` builds SQL.

pub mod anime_repo;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};

use crate::config::{DatabaseConfig, redact_url};

pub use anime_repo::AnimeRepo;

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

/// Opens the connection pool, counting every statement into the returned
/// [`DbStats`]. Fails when the first connection cannot be made within the
/// configured timeout.
pub async fn connect_with_stats(
    config: &DatabaseConfig,
) -> anyhow::Result<(DatabaseConnection, Arc<DbStats>)> {
    let mut db = connect(config).await?;
    let stats = Arc::new(DbStats::default());
    let sink = Arc::clone(&stats);
    db.set_metric_callback(move |info| {
        sink.queries.fetch_add(1, Ordering::Relaxed);
        metrics::histogram!(crate::metrics::DB_QUERY_SECONDS).record(info.elapsed.as_secs_f64());
        if info.failed {
            metrics::counter!(crate::metrics::DB_QUERY_ERRORS_TOTAL).increment(1);
        }
    });
    Ok((db, stats))
}

/// Opens the connection pool. Fails when the first connection cannot be made
/// within the configured timeout.
pub async fn connect(config: &DatabaseConfig) -> anyhow::Result<DatabaseConnection> {
    let url = config.url.expose();
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(config.max_connections)
        .min_connections(1)
        .connect_timeout(config.connect_timeout)
        .acquire_timeout(config.connect_timeout)
        // sqlx logs every statement at info; per-query logging is debug at most.
        .sqlx_logging(false);
    Database::connect(options)
        .await
        .with_context(|| format!("connecting to the database at {}", redact_url(url)))
}

/// Applies pending migrations (when enabled) and inserts demo data into an
/// empty catalogue (when configured), so a first `cargo run` shows anime.
pub async fn prepare(db: &DatabaseConnection, config: &DatabaseConfig) -> anyhow::Result<()> {
    if config.auto_migrate {
        Migrator::up(db, None)
            .await
            .context("applying database migrations")?;
    }
    if config.demo_seed_count > 0 {
        let repo = AnimeRepo::new(db.clone());
        if repo
            .count()
            .await
            .context("counting anime before the demo seed")?
            == 0
        {
            let started = Instant::now();
            let inserted =
                crate::seed::insert(db, config.demo_seed_count, crate::seed::DEFAULT_SEED)
                    .await
                    .context("inserting demo anime")?;
            tracing::info!(
                inserted,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "Seeded demo anime into an empty database"
            );
        }
    }
    Ok(())
}

/// Round-trips a trivial query, for readiness checks.
pub async fn ping(db: &DatabaseConnection, timeout: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    match tokio::time::timeout(timeout, db.execute_unprepared("SELECT 1")).await {
        Ok(Ok(_)) => Ok(started.elapsed()),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}
