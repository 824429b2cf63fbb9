//! A throwaway three-node Redis Cluster on loopback: three
//! `redis-server --cluster-enabled yes` processes joined by
//! `redis-cli --cluster create`, no replicas.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{POLL_INTERVAL, RedisServer, find_on_path, spawn_watchdog};

/// Primaries; three is the smallest cluster `redis-cli` creates.
const NODES: usize = 3;
/// How long the joined cluster may take to report `cluster_state:ok`.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Three cluster-mode `redis-server`s, each on a free loopback port in its own
/// temporary directory (which holds its `nodes.conf`), owning a third of the
/// hash slots. Dropping it SIGKILLs every node.
pub(crate) struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts the nodes, joins them and waits until every node reports the
    /// cluster healthy with all 16384 slots assigned.
    pub(crate) fn start() -> Self {
        let redis_cli = find_on_path("redis-cli").unwrap_or_else(|| {
            panic!("redis-cli not found: install it with `apt-get install -y redis-tools` (it comes with redis-server)")
        });
        let nodes: Vec<RedisServer> = (0..NODES)
            .map(|_| {
                let node = RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    // Short enough that a killed node is noticed within a
                    // test, long enough not to flap on a loaded machine.
                    "--cluster-node-timeout",
                    "5000",
                ]);
                // Per-test servers die with their `Drop`; the watchdog
                // covers a test binary that is killed instead.
                spawn_watchdog(node.pid(), "KILL", node.dir());
                node
            })
            .collect();
        let cluster = Self { nodes };
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect();
        let output = Command::new(&redis_cli)
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("failed to run {}: {e}", redis_cli.display()));
        assert!(
            output.status.success(),
            "redis-cli --cluster create {addresses:?} failed ({}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        cluster.wait_until_ok();
        cluster
    }

    /// `redis-cluster://127.0.0.1:<p1>?node=127.0.0.1:<p2>&node=127.0.0.1:<p3>`:
    /// every node as a seed, the form `REDIS_URL` takes for a cluster.
    pub(crate) fn url(&self) -> String {
        let others: Vec<String> = self.nodes[1..]
            .iter()
            .map(|node| format!("node=127.0.0.1:{}", node.port()))
            .collect();
        format!(
            "redis-cluster://127.0.0.1:{}?{}",
            self.nodes[0].port(),
            others.join("&")
        )
    }

    /// The nodes, each a primary.
    pub(crate) fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// Keys matching `pattern` on each node, in [`RedisCluster::nodes`] order.
    pub(crate) fn key_counts(&self, pattern: &str) -> Vec<usize> {
        self.nodes
            .iter()
            .map(|node| node.keys_matching(pattern).len())
            .collect()
    }

    /// Polls `CLUSTER INFO` on every node until each says the cluster is ok,
    /// knows all nodes and has every slot assigned.
    fn wait_until_ok(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let is_ok = |node: &RedisServer| {
            let info = node.command(&["CLUSTER", "INFO"]);
            let field = |name: &str| {
                info.lines()
                    .find_map(|line| line.trim().strip_prefix(name)?.strip_prefix(':'))
                    .map(str::to_owned)
            };
            field("cluster_state").as_deref() == Some("ok")
                && field("cluster_slots_ok").as_deref() == Some("16384")
                && field("cluster_known_nodes") == Some(NODES.to_string())
        };
        while !self.nodes.iter().all(is_ok) {
            assert!(
                Instant::now() < deadline,
                "the cluster was not ok within {READY_TIMEOUT:?}: {:?}",
                self.nodes
                    .iter()
                    .map(|node| node.command(&["CLUSTER", "INFO"]))
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}
