//! Start-up and shutdown.
//!
//! [`App::build`] connects the database and Redis, prepares the schema and
//! binds the listener; [`App::run_until_stopped`] serves until the shutdown
//! future resolves, then drains in-flight requests under a deadline, quits
//! Redis, stops the database breaker's prober and closes the pool. `main` passes SIGINT/SIGTERM; tests pass their
//! own future and read the bound port from [`App::local_addr`]. The
//! handles it builds form the [`AppState`], which lives in `state`, a leaf
//! every layer may import.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::cache::Cache;
use crate::config::Config;
use crate::db::{self, AnimeRepo};
use crate::graphql::{self, Schemas};
use crate::redis::RedisStore;
use crate::server;
use crate::service::AnimeService;
use crate::state::AppState;

/// A built application: connected, migrated and bound, not yet serving.
pub struct App {
    listener: TcpListener,
    state: AppState,
    schema: Schemas,
}

impl App {
    /// Connects to the database and Redis, prepares the schema and binds the
    /// listener. Logs "Starting application" first.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        tracing::info!(version = env!("CARGO_PKG_VERSION"), "Starting application");
        crate::metrics::install();
        if config.database.uses_deprecated_connect_timeout {
            tracing::warn!(
                var = "DATABASE_CONNECT_TIMEOUT_SECS",
                replacement = "DATABASE_ACQUIRE_TIMEOUT_MS",
                "Deprecated configuration variable: set its replacement instead"
            );
        }
        let (db, db_stats) = db::connect_and_prepare(&config.database).await?;
        let redis = RedisStore::connect(&config.redis).await?;
        let cache = Cache::new(redis.clone(), config.cache.clone());
        cache.listen_for_invalidations();
        let listener = TcpListener::bind(config.http.bind_addr)
            .await
            .with_context(|| format!("binding the HTTP listener to {}", config.http.bind_addr))?;

        let state = AppState {
            anime: AnimeService::new(
                AnimeRepo::new(db.clone()),
                cache.clone(),
                config.invalidation,
            ),
            config: Arc::new(config),
            db,
            db_stats,
            redis,
            cache,
        };
        state
            .cache
            .keep_dictionary(state.anime.dictionary_samples());
        let schema = graphql::build_schema(state.clone());
        Ok(Self {
            listener,
            state,
            schema,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.state.config.http.bind_addr)
    }

    /// The shared state, for tests and tools that need the handles.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then shuts down in order: stop
    /// accepting, let in-flight requests finish (at most
    /// `SHUTDOWN_TIMEOUT_SECS`), quit Redis, stop the database prober and
    /// close the pool.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            listener,
            state,
            schema,
        } = self;
        let addr = listener.local_addr().context("reading the bound address")?;
        tracing::info!(%addr, "Listening on http://{addr}/graphql");

        let shutdown = async move {
            shutdown.await;
            tracing::info!("Shutting down application");
        };
        let drain_timeout = state.config.http.shutdown_timeout;
        let drained = server::serve(listener, state.clone(), schema, shutdown, drain_timeout).await;
        if !drained {
            tracing::warn!(
                timeout_secs = drain_timeout.as_secs(),
                "In-flight requests did not finish before the shutdown timeout; dropping them"
            );
        }

        state.redis.quit().await;
        if let Err(err) = state.db.close().await {
            tracing::warn!(error = %err, "Closing the database pool failed");
        }
        tracing::info!("Shutdown complete");
        Ok(())
    }
}

/// Resolves on SIGINT (Ctrl+C) or SIGTERM. The handlers are installed when
/// this is called, not when the future is first polled, so a signal that
/// arrives right after "Listening on" still shuts down gracefully.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {},
                        _ = terminate.recv() => {},
                    }
                }
                (Err(err), _) | (_, Err(err)) => {
                    tracing::warn!(error = %err, "Cannot listen for SIGINT/SIGTERM; stop the process with SIGKILL");
                    std::future::pending::<()>().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}
