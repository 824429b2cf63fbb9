//! The Redis connection through fred, configured so that a missing, slow or
//! failing Redis looks like a cache miss rather than holding up requests.
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

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use fred::clients::SubscriberClient;
use fred::prelude::*;
use fred::types::config::{Options, UnresponsiveConfig};
use fred::types::scan::{ScanResult, Scanner};
use fred::types::{Expiration, Key, SetOptions, Value};
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use std::pin::Pin;

use crate::config::RedisConfig;

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

/// Consecutive command failures that open the breaker.
const BREAKER_THRESHOLD: u32 = 3;

/// How long an open breaker skips Redis before one request probes it again.
/// Long enough that a frozen Redis costs one timeout per second, not one
/// per request; short enough that a recovered Redis is used again at once.
const BREAKER_OPEN_FOR: Duration = Duration::from_secs(1);

/// At most one "Redis command failed" warning per this interval, so an
/// outage does not flood the log.
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Keys examined per SCAN page: large enough that 200k keys take a few
/// hundred round trips, small enough that each page is a sub-millisecond
/// command that never blocks other clients noticeably.
const SCAN_PAGE: u32 = 1_000;

/// Timeout for administrative commands (INFO, SCAN, UNLINK, STRLEN).
const ADMIN_COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// One pipelined command.
#[derive(Debug)]
pub enum Op {
    /// `SET key value PX ttl`.
    Set {
        /// Key.
        key: Key,
        /// Value bytes.
        value: Vec<u8>,
        /// Expiry.
        ttl: Duration,
    },
    /// `PEXPIRE key ttl`.
    Expire {
        /// Key.
        key: Key,
        /// New expiry.
        ttl: Duration,
    },
    /// `DEL key`.
    Delete {
        /// Key.
        key: Key,
    },
}

fn millis(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1)
}

/// The shared Redis client. Cheap to clone.
#[derive(Clone)]
pub struct RedisStore {
    client: Client,
    /// Kept to build the pub/sub connection with the same settings.
    builder: Arc<Builder>,
    /// `host:port`, for logs and readiness output.
    addr: String,
    /// Upper bound for any single cache command.
    command_timeout: Duration,
    /// Skips Redis for a moment after repeated failures.
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

/// The server facts the start-up log line and readiness report show.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RedisServerStats {
    /// `redis_version` from INFO.
    pub version: String,
    /// `used_memory` in bytes.
    pub used_memory: u64,
    /// `used_memory_human`, e.g. "2.5M".
    pub used_memory_human: String,
    /// `maxmemory` in bytes (0 = no limit).
    pub max_memory: u64,
    /// `maxmemory_policy`, e.g. "allkeys-lru".
    pub max_memory_policy: String,
    /// Keys in the selected database (DBSIZE).
    pub keys: u64,
    /// `evicted_keys`: keys removed under memory pressure since the server
    /// started.
    pub evicted_keys: u64,
    /// `keyspace_hits`: successful key lookups, server-wide.
    pub keyspace_hits: u64,
    /// `keyspace_misses`: failed key lookups, server-wide.
    pub keyspace_misses: u64,
}

impl RedisServerStats {
    /// Two cluster nodes' facts as one: counts and memory summed, version
    /// and policy of the first, no memory limit if either has none.
    fn add(self, other: Self) -> Self {
        let used_memory = self.used_memory + other.used_memory;
        Self {
            used_memory_human: human_bytes(used_memory),
            used_memory,
            max_memory: if self.max_memory == 0 || other.max_memory == 0 {
                0
            } else {
                self.max_memory + other.max_memory
            },
            keys: self.keys + other.keys,
            evicted_keys: self.evicted_keys + other.evicted_keys,
            keyspace_hits: self.keyspace_hits + other.keyspace_hits,
            keyspace_misses: self.keyspace_misses + other.keyspace_misses,
            version: self.version,
            max_memory_policy: self.max_memory_policy,
        }
    }

    /// keyspace_hits / (hits + misses), or 0 before any lookup.
    pub fn hit_rate(&self) -> f64 {
        let total = self.keyspace_hits + self.keyspace_misses;
        if total == 0 {
            0.0
        } else {
            self.keyspace_hits as f64 / total as f64
        }
    }

    /// A warning about `maxmemory-policy`, when the setting can hurt the
    /// cache or the data sharing the server.
    pub fn eviction_warning(&self) -> Option<&'static str> {
        match self.max_memory_policy.as_str() {
            "noeviction" if self.max_memory > 0 => Some(
                "maxmemory-policy is noeviction: once Redis is full, cache write-backs fail and the service serves from the database; prefer volatile-lru",
            ),
            // allkeys-* (what compose.yaml runs) is fine for a Redis of our
            // own: every key we write has a TTL, and an evicted entry or
            // generation key only turns into a miss. (On a Redis shared with
            // other applications, volatile-lru spares their keys; the
            // operations guide says so.)
            _ if self.max_memory == 0 => Some(
                "Redis has no maxmemory limit: the cache grows until entries expire; set maxmemory (e.g. 256mb) with volatile-lru",
            ),
            _ => None,
        }
    }
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
                // Pub/sub messages wait here until the listener reads them;
                // fred's default of 32 is easy to overrun under load.
                perf.broadcast_channel_capacity = 4_096;
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

        let store = Self {
            client,
            builder: Arc::new(builder),
            addr: config.display_addr.clone(),
            command_timeout: config.command_timeout,
            breaker: Arc::new(Breaker::default()),
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

    /// PINGs the server within the command timeout.
    pub async fn ping(&self) -> (RedisStatus, Option<Duration>) {
        if !self.is_connected() {
            return (RedisStatus::Down, None);
        }
        let started = Instant::now();
        let reply: Result<String, _> = self
            .client
            .with_options(&self.fast_options())
            .ping(None)
            .await;
        match reply {
            Ok(_) => (RedisStatus::Up, Some(started.elapsed())),
            Err(_) => (RedisStatus::Down, None),
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

    /// Server version, memory, eviction and keyspace counters (one INFO)
    /// and the key count (DBSIZE). On a cluster, the sum over every primary
    /// (each holds only its slots' keys).
    pub async fn server_stats(&self) -> Result<RedisServerStats, Error> {
        if !self.client.is_clustered() {
            return self.node_stats(None).await;
        }
        let primaries = self
            .client
            .cached_cluster_state()
            .map(|state| state.unique_primary_nodes())
            .unwrap_or_default();
        if primaries.is_empty() {
            return Err(Error::new(
                fred::error::ErrorKind::Cluster,
                "the cluster's primaries are not known yet",
            ));
        }
        let nodes = futures_util::future::try_join_all(
            primaries
                .into_iter()
                .map(|node| self.node_stats(Some(node))),
        )
        .await?;
        Ok(nodes
            .into_iter()
            .reduce(RedisServerStats::add)
            .unwrap_or_default())
    }

    /// INFO and DBSIZE of one server: `node` of a cluster, or the server.
    async fn node_stats(
        &self,
        node: Option<fred::types::config::Server>,
    ) -> Result<RedisServerStats, Error> {
        let client = self.client.with_options(&Options {
            cluster_node: node,
            ..self.admin_options()
        });
        let info: String = client.info(None).await?;
        let keys: u64 = client.dbsize().await?;
        let field = |name: &str| -> &str {
            info.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .unwrap_or_default()
                .trim()
        };
        let number = |name: &str| field(name).parse().unwrap_or_default();
        Ok(RedisServerStats {
            version: field("redis_version").to_owned(),
            used_memory: number("used_memory"),
            used_memory_human: field("used_memory_human").to_owned(),
            max_memory: number("maxmemory"),
            max_memory_policy: field("maxmemory_policy").to_owned(),
            keys,
            evicted_keys: number("evicted_keys"),
            keyspace_hits: number("keyspace_hits"),
            keyspace_misses: number("keyspace_misses"),
        })
    }

    /// Deletes every key matching `pattern` with SCAN (bounded COUNT) and
    /// UNLINK in batches, on every primary of a cluster; never KEYS. Returns
    /// how many keys were deleted (SCAN may report a key twice; UNLINK
    /// counts each key once, so the total is exact).
    pub async fn delete_matching(&self, pattern: &str) -> Result<u64, Error> {
        let mut deleted = 0u64;
        let is_cluster = self.client.is_clustered();
        let mut pages: Pin<Box<dyn Stream<Item = Result<ScanResult, Error>> + Send>> = if is_cluster
        {
            Box::pin(self.client.scan_cluster(pattern, Some(SCAN_PAGE), None))
        } else {
            Box::pin(self.client.scan(pattern, Some(SCAN_PAGE), None))
        };
        let client = self.client.with_options(&self.admin_options());
        while let Some(page) = pages.next().await {
            let mut page = page?;
            let keys = page.take_results().unwrap_or_default();
            // Dropping the page asks for the next one while we delete.
            drop(page);
            if keys.is_empty() {
                continue;
            }
            if is_cluster {
                // Keys of one page may live in different slots: one UNLINK
                // each, pipelined, so each goes to its own node.
                let pipeline = client.pipeline();
                for key in keys {
                    let _: () = pipeline.unlink(key).await?;
                }
                let counts: Vec<u64> = pipeline.all().await?;
                deleted += counts.iter().sum::<u64>();
            } else {
                let count: u64 = client.unlink(keys).await?;
                deleted += count;
            }
        }
        Ok(deleted)
    }

    /// Up to `limit` keys matching `pattern`, from SCAN, and whether the
    /// scan finished (all matching keys seen) before the limit.
    pub async fn scan_keys(&self, pattern: &str, limit: usize) -> Result<(Vec<Key>, bool), Error> {
        let mut found = Vec::new();
        let mut pages: Pin<Box<dyn Stream<Item = Result<ScanResult, Error>> + Send>> =
            if self.client.is_clustered() {
                Box::pin(self.client.scan_cluster(pattern, Some(SCAN_PAGE), None))
            } else {
                Box::pin(self.client.scan(pattern, Some(SCAN_PAGE), None))
            };
        while let Some(page) = pages.next().await {
            let mut page = page?;
            found.extend(page.take_results().unwrap_or_default());
            if found.len() >= limit {
                page.cancel();
                found.truncate(limit);
                return Ok((found, false));
            }
        }
        Ok((found, true))
    }

    /// Value sizes (STRLEN) of `keys`, in one pipelined round trip.
    pub async fn value_sizes(&self, keys: &[Key]) -> Result<Vec<u64>, Error> {
        let pipeline = self.client.with_options(&self.admin_options()).pipeline();
        for key in keys {
            let _: () = pipeline.strlen(key.clone()).await?;
        }
        pipeline.all().await
    }

    /// Whether cache commands should be sent now: connected, and not
    /// within a pause after repeated failures.
    pub fn is_available(&self) -> bool {
        self.client.is_connected() && self.breaker.is_closed()
    }

    /// Reads `keys` in one MGET (on a cluster, one per hash slot, sent
    /// together). `None` where a key is absent.
    pub async fn mget(&self, keys: Vec<Key>) -> Result<Vec<Option<Value>>, Error> {
        let reply = if self.client.is_clustered() {
            self.mget_by_slot(keys).await
        } else {
            self.mget_one(keys).await
        };
        match reply {
            Ok(values) => {
                self.breaker.record_success();
                Ok(values
                    .into_iter()
                    .map(|value| (!value.is_null()).then_some(value))
                    .collect())
            }
            Err(err) => {
                self.record_failure("MGET", &err);
                Err(err)
            }
        }
    }

    /// One MGET, its reply checked to hold one value per key.
    async fn mget_one(&self, keys: Vec<Key>) -> Result<Vec<Value>, Error> {
        let count = keys.len();
        let reply: Value = self
            .client
            .with_options(&self.fast_options())
            .mget(keys)
            .await?;
        mget_values(reply, count)
    }

    /// A cluster refuses an MGET whose keys span hash slots (CROSSSLOT), and
    /// a value key and its generation key rarely share one. So: one MGET
    /// per slot, pipelined (fred writes each to the node owning its slot,
    /// and the nodes answer concurrently), the values put back in `keys`
    /// order. Any failing slot fails the whole read, which is then a miss.
    async fn mget_by_slot(&self, keys: Vec<Key>) -> Result<Vec<Value>, Error> {
        let groups = slot_groups(&keys);
        if groups.len() <= 1 {
            return self.mget_one(keys).await;
        }
        let pipeline = self.client.with_options(&self.fast_options()).pipeline();
        for group in &groups {
            let slot_keys: Vec<Key> = group.iter().map(|&i| keys[i].clone()).collect();
            // Only queues the command; the round trip is `all()`.
            let _: () = pipeline.mget(slot_keys).await?;
        }
        let replies = tokio::time::timeout(self.command_timeout, pipeline.all::<Vec<Value>>())
            .await
            .map_err(|_| Error::new(fred::error::ErrorKind::Timeout, "MGET timed out"))??;
        if replies.len() != groups.len() {
            return Err(Error::new(
                fred::error::ErrorKind::Protocol,
                format!("{} MGET replies for {} slots", replies.len(), groups.len()),
            ));
        }
        let mut values = vec![Value::Null; keys.len()];
        for (group, reply) in groups.iter().zip(replies) {
            for (&index, value) in group.iter().zip(mget_values(reply, group.len())?) {
                values[index] = value;
            }
        }
        Ok(values)
    }

    /// Runs `ops` in one pipelined round trip (cache write-backs, generation
    /// bumps). Bounded by the command timeout per command and as a whole.
    pub async fn pipeline(&self, ops: Vec<Op>) -> Result<(), Error> {
        let pipeline = self.client.pipeline();
        for op in ops {
            // Each call only queues the command; the round trip is `all()`.
            let _: () = match op {
                Op::Set { key, value, ttl } => {
                    pipeline
                        .set(
                            key,
                            value.as_slice(),
                            Some(Expiration::PX(millis(ttl))),
                            None,
                            false,
                        )
                        .await?
                }
                Op::Expire { key, ttl } => pipeline.pexpire(key, millis(ttl), None).await?,
                Op::Delete { key } => pipeline.del(key).await?,
            };
        }
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.command_timeout * 4, pipeline.all::<Value>()).await;
        metrics::histogram!(crate::metrics::REDIS_COMMAND_SECONDS, "command" => "pipeline")
            .record(started.elapsed().as_secs_f64());
        let result = match outcome {
            Ok(result) => result.map(drop),
            Err(_) => Err(Error::new(
                fred::error::ErrorKind::Timeout,
                "pipeline timed out",
            )),
        };
        match &result {
            Ok(()) => self.breaker.record_success(),
            Err(err) => self.record_failure("pipeline", err),
        }
        result
    }

    /// Makes sure each generation key exists (creating it with the proposed
    /// token when absent, `SET … NX`) and returns the tokens now in place, in
    /// one pipelined round trip.
    pub async fn ensure_generations(
        &self,
        keys: Vec<Key>,
        proposed: Vec<String>,
        ttl: Duration,
    ) -> Result<Vec<Option<String>>, Error> {
        let pipeline = self.client.pipeline();
        for (key, token) in keys.iter().zip(&proposed) {
            let _: () = pipeline
                .set(
                    key.clone(),
                    token.as_str(),
                    Some(Expiration::PX(millis(ttl))),
                    Some(SetOptions::NX),
                    false,
                )
                .await?;
        }
        // One MGET of them all; on a cluster one GET each, since the keys
        // may live in different hash slots.
        let is_per_key = self.client.is_clustered();
        if is_per_key {
            for key in &keys {
                let _: () = pipeline.get(key.clone()).await?;
            }
        } else {
            let _: () = pipeline.mget(keys.clone()).await?;
        }
        let outcome =
            tokio::time::timeout(self.command_timeout, pipeline.all::<Vec<Value>>()).await;
        let result = match outcome {
            Ok(Ok(replies)) => generation_tokens(replies, keys.len(), is_per_key),
            Ok(Err(err)) => Err(err),
            Err(_) => Err(Error::new(
                fred::error::ErrorKind::Timeout,
                "generation setup timed out",
            )),
        };
        match &result {
            Ok(_) => self.breaker.record_success(),
            Err(err) => self.record_failure("generation setup", err),
        }
        result
    }

    /// `INCRBY key by` and `PEXPIRE key ttl` in one round trip: the
    /// counter's value after adding `by` (admission budgets).
    pub async fn incr_by(&self, key: &str, by: u64, ttl: Duration) -> Result<u64, Error> {
        let pipeline = self.client.pipeline();
        let by = i64::try_from(by).unwrap_or(i64::MAX);
        let _: () = pipeline.incr_by(key, by).await?;
        let _: () = pipeline.pexpire(key, millis(ttl), None).await?;
        let outcome =
            tokio::time::timeout(self.command_timeout, pipeline.all::<Vec<Value>>()).await;
        let result = match outcome {
            Ok(Ok(replies)) => replies
                .first()
                .and_then(Value::as_u64)
                .ok_or_else(|| Error::new(fred::error::ErrorKind::Protocol, "INCRBY reply")),
            Ok(Err(err)) => Err(err),
            Err(_) => Err(Error::new(
                fred::error::ErrorKind::Timeout,
                "INCRBY timed out",
            )),
        };
        match &result {
            Ok(_) => self.breaker.record_success(),
            Err(err) => self.record_failure("INCRBY", err),
        }
        result
    }

    /// `SET key owner NX PX ttl`: whether this caller now holds the lease.
    pub async fn try_lease(&self, key: &str, owner: &str, ttl: Duration) -> Result<bool, Error> {
        let reply: Result<Value, Error> = self
            .client
            .with_options(&self.fast_options())
            .set(
                key,
                owner,
                Some(Expiration::PX(millis(ttl))),
                Some(SetOptions::NX),
                false,
            )
            .await;
        match reply {
            Ok(value) => {
                self.breaker.record_success();
                Ok(!value.is_null())
            }
            Err(err) => {
                self.record_failure("SET NX", &err);
                Err(err)
            }
        }
    }

    /// Publishes `message` on `channel`; returns how many subscribers
    /// received it. On a cluster SPUBLISH, to the node owning the channel's
    /// slot, where every [`RedisStore::subscribe`]r of it is connected, so
    /// the count covers all of them.
    pub async fn publish(&self, channel: &str, message: &str) -> Result<u64, Error> {
        let client = self.client.with_options(&self.admin_options());
        let receivers: i64 = if self.client.is_clustered() {
            client.spublish(channel, message).await?
        } else {
            client.publish(channel, message).await?
        };
        Ok(u64::try_from(receivers).unwrap_or_default())
    }

    /// A dedicated pub/sub connection to the same server(s), with the same
    /// timeouts and reconnect policy, subscribed to `channels` (and
    /// resubscribing after reconnects). On a cluster each channel is an
    /// SSUBSCRIBE of its own (the channels may hash to different slots).
    pub async fn subscribe(&self, channels: Vec<String>) -> Result<SubscriberClient, Error> {
        let subscriber = self.builder.build_subscriber_client()?;
        // The connection task runs until `quit`; it reconnects forever.
        drop(subscriber.connect());
        if !subscriber.is_clustered() {
            drop(subscriber.manage_subscriptions());
            subscriber.wait_for_connect().await?;
            subscriber.subscribe(channels).await?;
            return Ok(subscriber);
        }
        // Our own renewal instead of fred 10.1's manage_subscriptions, which
        // proved unreliable for shard channels on a cluster (tried in
        // tests/it/topologies.rs: after killed connections it sometimes
        // never resubscribed, and sometimes subscribed extra connections,
        // which inflates the SPUBLISH count that writes wait for). SSUBSCRIBE
        // of a channel already subscribed is a no-op, so every reconnect of
        // any node simply renews them all.
        let resubscriber = subscriber.clone();
        let shard_channels = channels.clone();
        // Ends when the client quits (the reconnect channel closes).
        drop(tokio::spawn(async move {
            let mut reconnects = resubscriber.reconnect_rx();
            loop {
                match reconnects.recv().await {
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
                for channel in &shard_channels {
                    if let Err(err) = resubscriber.ssubscribe(channel.as_str()).await {
                        tracing::debug!(channel, error = %err, "Resubscribing failed");
                    }
                }
            }
        }));
        subscriber.wait_for_connect().await?;
        for channel in channels {
            subscriber.ssubscribe(channel).await?;
        }
        Ok(subscriber)
    }

    /// Counts a failed command toward the breaker and logs it, at most once
    /// per [`FAILURE_LOG_INTERVAL`] (with how many were not logged).
    fn record_failure(&self, command: &str, error: &Error) {
        self.breaker.record_failure();
        if let Some(suppressed) = self.breaker.take_log_permit() {
            tracing::warn!(
                redis_addr = %self.addr,
                command,
                error = %error,
                suppressed,
                "Redis command failed: serving from the database"
            );
        }
    }

    /// Closes the connection; pending commands finish first.
    pub async fn quit(&self) {
        if let Err(err) = self.client.quit().await {
            tracing::debug!(error = %err, "Redis quit failed");
        }
    }
}

/// The values of an MGET reply for `count` keys.
fn mget_values(reply: Value, count: usize) -> Result<Vec<Value>, Error> {
    match reply {
        Value::Array(values) if values.len() == count => Ok(values),
        // MGET of one key may come back unwrapped on some proxies.
        value if count == 1 && !matches!(value, Value::Array(_)) => Ok(vec![value]),
        other => Err(Error::new(
            fred::error::ErrorKind::Protocol,
            format!("MGET returned {:?} for {count} keys", other.kind()),
        )),
    }
}

/// The generation tokens from the replies to `count` `SET … NX` followed
/// by one MGET of the keys, or (`is_per_key`) by one GET each.
fn generation_tokens(
    mut replies: Vec<Value>,
    count: usize,
    is_per_key: bool,
) -> Result<Vec<Option<String>>, Error> {
    let tokens = match replies.pop() {
        Some(last) if is_per_key && replies.len() + 1 == count * 2 => {
            let mut tokens = replies.split_off(count);
            tokens.push(last);
            tokens
        }
        Some(Value::Array(tokens)) if !is_per_key && tokens.len() == count => tokens,
        other => {
            return Err(Error::new(
                fred::error::ErrorKind::Protocol,
                format!("unexpected reply to reading {count} generations: {other:?}"),
            ));
        }
    };
    Ok(tokens
        .into_iter()
        .map(|token| token.as_str().map(|t| t.into_owned()))
        .collect())
}

/// Indexes of `keys` grouped by cluster hash slot, each group in `keys`
/// order (the order of the groups does not matter).
fn slot_groups(keys: &[Key]) -> Vec<Vec<usize>> {
    let mut by_slot: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
    for (index, key) in keys.iter().enumerate() {
        by_slot
            .entry(fred::util::redis_keyslot(key.as_bytes()))
            .or_default()
            .push(index);
    }
    by_slot.into_values().collect()
}

/// Bytes as Redis's INFO shows them (`used_memory_human`), e.g. "2.50M".
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["K", "M", "G", "T"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2}{}", UNITS[unit])
}

/// A small circuit breaker: after [`BREAKER_THRESHOLD`] consecutive
/// failures, Redis is skipped for [`BREAKER_OPEN_FOR`]; the first request
/// after that probes it again. Also throttles failure logs.
#[derive(Debug)]
struct Breaker {
    consecutive_failures: AtomicU32,
    /// Milliseconds since `epoch` until which Redis is skipped.
    open_until_ms: AtomicU64,
    /// Milliseconds since `epoch` before which no failure is logged.
    next_log_ms: AtomicU64,
    /// Failures not logged since the last warning.
    suppressed: AtomicU64,
    epoch: Instant,
}

impl Default for Breaker {
    fn default() -> Self {
        Self {
            consecutive_failures: AtomicU32::new(0),
            open_until_ms: AtomicU64::new(0),
            next_log_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

impl Breaker {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn is_closed(&self) -> bool {
        self.now_ms() >= self.open_until_ms.load(Ordering::Relaxed)
    }

    fn record_success(&self) {
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
    }

    fn record_failure(&self) {
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= BREAKER_THRESHOLD {
            let until = self.now_ms() + BREAKER_OPEN_FOR.as_millis() as u64;
            self.open_until_ms.store(until, Ordering::Relaxed);
        }
    }

    /// `Some(suppressed count)` when a warning may be logged now.
    fn take_log_permit(&self) -> Option<u64> {
        let now = self.now_ms();
        let next = self.next_log_ms.load(Ordering::Relaxed);
        let interval = FAILURE_LOG_INTERVAL.as_millis() as u64;
        if now >= next
            && self
                .next_log_ms
                .compare_exchange(next, now + interval, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_after_repeated_failures_and_success_resets_the_count() {
        let breaker = Breaker::default();
        breaker.record_failure();
        breaker.record_failure();
        assert!(breaker.is_closed(), "two failures are tolerated");
        breaker.record_success();
        breaker.record_failure();
        breaker.record_failure();
        assert!(breaker.is_closed(), "success reset the count");
        breaker.record_failure();
        assert!(!breaker.is_closed(), "third consecutive failure opens it");
    }

    #[test]
    fn keys_are_grouped_by_hash_slot_in_their_original_order() {
        let keys: Vec<Key> = ["{a}:1", "b", "{a}:2", "c", "{a}:3", "b"]
            .into_iter()
            .map(Key::from)
            .collect();
        let mut groups = slot_groups(&keys);
        groups.sort();
        // "b" and "c" differ in slot from each other and from "{a}".
        assert_eq!(groups, vec![vec![0, 2, 4], vec![1, 5], vec![3]]);
        assert!(slot_groups(&[]).is_empty());
    }

    #[test]
    fn generation_tokens_come_from_the_mget_or_the_gets() {
        let ok = || Value::from("OK");
        let token = |t: &str| Value::from(t);
        let mget = vec![
            ok(),
            Value::Null,
            Value::Array(vec![token("g1"), token("g2")]),
        ];
        let expected = vec![Some("g1".to_owned()), Some("g2".to_owned())];
        assert_eq!(generation_tokens(mget, 2, false).expect("mget"), expected);
        let gets = vec![ok(), Value::Null, token("g1"), token("g2")];
        assert_eq!(generation_tokens(gets, 2, true).expect("gets"), expected);
        let gets = vec![ok(), Value::Null, token("g1"), Value::Null];
        assert_eq!(
            generation_tokens(gets, 2, true).expect("one evicted"),
            vec![Some("g1".to_owned()), None]
        );
        assert!(generation_tokens(vec![ok(), token("g1")], 2, true).is_err());
        assert!(generation_tokens(vec![ok(), Value::Array(vec![])], 1, false).is_err());
    }

    #[test]
    fn mget_replies_must_hold_one_value_per_key() {
        let two = Value::Array(vec![Value::Null, Value::from("x")]);
        assert_eq!(mget_values(two.clone(), 2).expect("two").len(), 2);
        assert!(mget_values(two, 3).is_err());
        assert_eq!(
            mget_values(Value::from("x"), 1).expect("unwrapped single"),
            vec![Value::from("x")]
        );
    }

    #[test]
    fn cluster_stats_are_summed_over_nodes() {
        let node = |keys, max_memory| RedisServerStats {
            version: "7.0.15".to_owned(),
            used_memory: 1024 * 1024,
            used_memory_human: "1.00M".to_owned(),
            max_memory,
            max_memory_policy: "volatile-lru".to_owned(),
            keys,
            evicted_keys: 1,
            keyspace_hits: 3,
            keyspace_misses: 1,
        };
        let total = node(2, 100).add(node(5, 100));
        assert_eq!(total.keys, 7);
        assert_eq!(total.max_memory, 200);
        assert_eq!(total.used_memory_human, "2.00M");
        assert_eq!((total.keyspace_hits, total.evicted_keys), (6, 2));
        assert_eq!(
            node(1, 100).add(node(1, 0)).max_memory,
            0,
            "one unbounded node"
        );
        assert_eq!(human_bytes(512), "512B");
        assert_eq!(human_bytes(1536), "1.50K");
    }

    #[test]
    fn failure_logs_are_throttled() {
        let breaker = Breaker::default();
        assert_eq!(breaker.take_log_permit(), Some(0));
        assert_eq!(breaker.take_log_permit(), None);
        assert_eq!(breaker.take_log_permit(), None);
        breaker.next_log_ms.store(0, Ordering::Relaxed);
        assert_eq!(
            breaker.take_log_permit(),
            Some(2),
            "reports what it suppressed"
        );
    }
}
