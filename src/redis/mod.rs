//! The Redis connection through fred, and every command the cache sends,
//! configured so that a missing, slow or failing Redis looks like a cache
//! miss rather than holding up requests. It knows nothing about cache keys,
//! envelopes or tags: those are `cache`'s.
//!
//! fred's defaults suit a primary data store, not a cache: no command
//! timeout, no reconnect policy, an unbounded command queue and a first
//! connection that fails the caller. [`RedisStore::connect`] overrides each.
//!
//! One server, a cluster or a sentinel-managed primary, as `REDIS_URL` says
//! (see [`RedisConfig::client_config`]). On a cluster a command with several
//! keys must keep them in one hash slot, so [`RedisStore::mget`] sends one
//! MGET per slot (pipelined, each to its node) and every other multi-key
//! operation here is a pipeline of single-key commands; SCAN visits every
//! primary; pub/sub is sharded (SPUBLISH/SSUBSCRIBE, Redis 7), because a
//! plain PUBLISH on a cluster counts only the receivers connected to the
//! node it was sent to, and the invalidation protocol waits for that count.
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | `RedisStore`: connecting, reconnect logs, readiness (`ping`), the per-command options |
//! | `breaker.rs` | the breaker (consecutive failures, open-for, throttled failure logs) and `guarded`, the one door every command goes through |
//! | `commands.rs` | the cache's data commands: per-slot MGET, pipelines of `Op`s, generations, counters, leases |
//! | `scan.rs` | SCAN, UNLINK and STRLEN for pattern clears and the admin report |
//! | `stats.rs` | `RedisServerStats`: INFO and DBSIZE, summed over a cluster's primaries |
//! | `pubsub.rs` | publishing and the subscriber connection (sharded on a cluster) |

mod breaker;
mod commands;
mod pubsub;
mod scan;
mod stats;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use fred::prelude::*;
use fred::types::config::{Options, UnresponsiveConfig};
use serde::Serialize;

use self::breaker::{Breaker, Guard};
use crate::config::RedisConfig;

pub use self::commands::Op;
pub use self::stats::RedisServerStats;

/// Commands that may wait for a connection; past this the oldest are
/// refused, so a Redis outage cannot pile up unbounded work in memory.
const MAX_QUEUED_COMMANDS: usize = 4_096;

/// Reconnect backoff: first retry after 100 ms, doubling up to 5 s, forever.
/// Forever because the service must come back to the cache on its own after
/// any outage; 5 s keeps a dead Redis from being hammered.
const RECONNECT_MIN_DELAY_MS: u32 = 100;
const RECONNECT_MAX_DELAY_MS: u32 = 5_000;

/// A socket that has not answered anything for this long is treated as
/// dead (a frozen or partitioned Redis) and reconnected.
const UNRESPONSIVE_AFTER: Duration = Duration::from_secs(2);

/// Connection events (errors, reconnects) a client buffers for its
/// listeners: fred's `on_error` and `on_reconnect` tasks end at the first
/// lag, so fred's default of 32 is too tight for a burst of failures.
const NOTIFICATIONS_BUFFERED: usize = 256;

/// Pub/sub messages the subscriber's client buffers before the listener
/// reads them (fred's broadcast channel capacity).
const PUBSUB_BUFFERED_MESSAGES: usize = 4_096;

/// Timeout for administrative commands (INFO, SCAN, UNLINK, STRLEN).
const ADMIN_COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// The shared Redis client. Cheap to clone.
#[derive(Clone)]
pub struct RedisStore {
    client: Client,
    /// Kept to build the pub/sub connection with the same settings (and a
    /// deeper message buffer).
    builder: Arc<Builder>,
    /// `host:port`, for logs and readiness output.
    addr: String,
    /// Upper bound for any single cache command.
    command_timeout: Duration,
    /// Skips Redis for a moment after repeated failures; every command
    /// goes through its [`Breaker::guarded`].
    breaker: Arc<Breaker>,
}

/// Connection state as seen by readiness checks and stats.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RedisStatus {
    /// Connected and answering.
    Up,
    /// Not connected, or not answering within the timeout.
    Down,
}

impl RedisStore {
    /// Starts the client and waits up to `connect_timeout` for a first
    /// connection. When Redis is unreachable this logs a warning and returns
    /// a store that keeps reconnecting in the background, unless
    /// `REDIS_REQUIRED` is set, in which case it fails.
    pub async fn connect(config: &RedisConfig) -> anyhow::Result<Self> {
        let mut fred_config = config
            .client_config()
            .with_context(|| format!("parsing REDIS_URL for {}", config.display_addr))?;
        // Run the reconnect policy for the first connection too, instead of
        // failing start-up when Redis is late or down.
        fred_config.fail_fast = false;

        let mut builder = Builder::from_config(fred_config);
        builder
            .with_performance_config(|perf| {
                perf.default_command_timeout = config.command_timeout;
                perf.broadcast_channel_capacity = NOTIFICATIONS_BUFFERED;
            })
            .with_connection_config(|conn| {
                conn.connection_timeout = config.connect_timeout;
                conn.internal_command_timeout = config.connect_timeout;
                conn.max_command_buffer_len = MAX_QUEUED_COMMANDS;
                // One attempt: a cache command that failed is a miss, not
                // something to retry while the request waits.
                conn.max_command_attempts = 1;
                conn.unresponsive = UnresponsiveConfig {
                    max_timeout: Some(UNRESPONSIVE_AFTER),
                    interval: Duration::from_millis(500),
                };
            })
            .set_policy(ReconnectPolicy::new_exponential(
                0,
                RECONNECT_MIN_DELAY_MS,
                RECONNECT_MAX_DELAY_MS,
                2,
            ));
        let client = builder.build().context("building the Redis client")?;
        // Pub/sub messages wait in a broadcast channel until the listener
        // reads them; fred's default of 32 is easy to overrun under load.
        // Only the subscriber gets the deep buffer: fred preallocates every
        // slot of its eight broadcast channels per client, and the command
        // client receives no messages.
        let mut subscriber_builder = builder;
        subscriber_builder.with_performance_config(|perf| {
            perf.broadcast_channel_capacity = PUBSUB_BUFFERED_MESSAGES;
        });

        let store = Self {
            client,
            builder: Arc::new(subscriber_builder),
            addr: config.display_addr.clone(),
            command_timeout: config.command_timeout,
            breaker: Arc::new(Breaker::new(&config.display_addr)),
        };
        store.watch_connection();
        // Connection errors from the first attempts, to say why start-up
        // went on without Redis (a refused AUTH looks like a timeout else).
        let mut errors = store.client.error_rx();
        // The connection task runs until `quit`; its handle is not needed.
        let _task = store.client.connect();

        match tokio::time::timeout(config.connect_timeout, store.client.wait_for_connect()).await {
            Ok(Ok(())) => {
                tracing::info!(redis_addr = %store.addr, "Redis connected: {}", store.addr);
                match store.server_stats().await {
                    Ok(stats) => {
                        let json = serde_json::to_string(&stats).unwrap_or_default();
                        tracing::info!(redis_addr = %store.addr, "Redis stats: {json}");
                        if let Some(warning) = stats.eviction_warning() {
                            tracing::warn!(
                                maxmemory_policy = %stats.max_memory_policy,
                                maxmemory = stats.max_memory,
                                "Redis eviction settings: {warning}"
                            );
                        }
                    }
                    Err(err) => {
                        tracing::warn!(redis_addr = %store.addr, error = %err, "Redis stats unavailable")
                    }
                }
            }
            outcome => {
                let mut last_error = None;
                while let Ok((err, _server)) = errors.try_recv() {
                    last_error = Some(err);
                }
                let reason = match (outcome, last_error) {
                    (Ok(Err(err)), _) => err.to_string(),
                    (_, Some(err)) => format!(
                        "no connection within {} ms; last error: {err}",
                        config.connect_timeout.as_millis()
                    ),
                    _ => format!(
                        "no connection within {} ms",
                        config.connect_timeout.as_millis()
                    ),
                };
                if config.is_required {
                    anyhow::bail!(
                        "Redis at {} is unreachable ({reason}) and REDIS_REQUIRED is set",
                        store.addr
                    );
                }
                tracing::warn!(
                    redis_addr = %store.addr,
                    reason = %reason,
                    "Redis unreachable: running without the cache, retrying in the background"
                );
            }
        }
        Ok(store)
    }

    /// Logs reconnects and connection errors. An outage is reported once at
    /// warn (fred reports every failed attempt; those go to debug) and its
    /// end once at info, so a long outage does not flood the log.
    fn watch_connection(&self) {
        let is_outage_reported = Arc::new(AtomicBool::new(false));
        let addr = self.addr.clone();
        let reported = Arc::clone(&is_outage_reported);
        // The listener tasks end when the client quits; their handles are
        // not needed, so they are detached.
        drop(self.client.on_reconnect(move |_server| {
            let addr = addr.clone();
            let was_down = reported.swap(false, Ordering::Relaxed);
            async move {
                if was_down {
                    tracing::info!(redis_addr = %addr, "Redis reconnected");
                }
                Ok(())
            }
        }));
        let addr = self.addr.clone();
        drop(self.client.on_error(move |(error, _server)| {
            let addr = addr.clone();
            let is_first = !is_outage_reported.swap(true, Ordering::Relaxed);
            async move {
                if is_first {
                    tracing::warn!(redis_addr = %addr, error = %error, "Redis connection lost: serving from the database until it is back");
                } else {
                    tracing::debug!(redis_addr = %addr, error = %error, "Redis connection error");
                }
                Ok(())
            }
        }));
    }

    /// `host:port` of the server.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The fred client, for the cache layer.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Whether a connection is currently up (no round trip).
    pub fn is_connected(&self) -> bool {
        self.client.is_connected()
    }

    /// Whether cache commands should be sent now: connected, and not
    /// within a pause after repeated failures.
    pub fn is_available(&self) -> bool {
        self.client.is_connected() && self.breaker.is_closed()
    }

    /// Options for one cache command: fail at once while disconnected, one
    /// attempt, bounded by the command timeout.
    pub fn fast_options(&self) -> Options {
        Options {
            fail_fast: true,
            max_attempts: Some(1),
            timeout: Some(self.command_timeout),
            ..Options::default()
        }
    }

    /// Options for administrative commands: still bounded, but not held to
    /// the tight per-read timeout.
    fn admin_options(&self) -> Options {
        Options {
            timeout: Some(self.command_timeout.max(ADMIN_COMMAND_TIMEOUT)),
            fail_fast: true,
            max_attempts: Some(1),
            ..Options::default()
        }
    }

    /// PINGs the server within the command timeout.
    pub async fn ping(&self) -> (RedisStatus, Option<Duration>) {
        if !self.is_connected() {
            return (RedisStatus::Down, None);
        }
        let started = Instant::now();
        let reply = self
            .breaker
            .guarded(
                "PING",
                Guard::Admin,
                self.client
                    .with_options(&self.fast_options())
                    .ping::<String>(None),
            )
            .await;
        match reply {
            Ok(_) => (RedisStatus::Up, Some(started.elapsed())),
            Err(_) => (RedisStatus::Down, None),
        }
    }

    /// Closes the connection; pending commands finish first.
    pub async fn quit(&self) {
        let quit = self
            .breaker
            .guarded("QUIT", Guard::Admin, self.client.quit());
        if let Err(err) = quit.await {
            tracing::debug!(error = %err, "Redis quit failed");
        }
    }
}
