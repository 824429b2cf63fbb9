//! What the server says about itself: version, memory, eviction settings
//! and keyspace counters (INFO and DBSIZE), summed over a cluster's
//! primaries, for the start-up log and the admin report.

use fred::prelude::*;
use fred::types::config::Options;
use serde::Serialize;

use super::RedisStore;
use super::breaker::Guard;

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
    /// Server version, memory, eviction and keyspace counters (one INFO)
    /// and the key count (DBSIZE). On a cluster, the sum over every primary
    /// (each holds only its slots' keys).
    pub async fn server_stats(&self) -> Result<RedisServerStats, Error> {
        let stats = async {
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
        };
        self.breaker.guarded("INFO", Guard::Admin, stats).await
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
