//! Throwaway Redis and PostgreSQL servers for the integration tests.
//!
//! This module owns every external process the tests talk to. Nothing here
//! ever connects to a server the tests did not start themselves (unless the
//! environment overrides below ask for it): each [`RedisServer`] and
//! [`PostgresServer`] runs the real binary on a free loopback port, keeps its
//! files in its own temporary directory and is killed when dropped.
//!
//! * **Shared servers.** Starting PostgreSQL costs about a second, so the
//!   whole test binary shares one cluster ([`shared_postgres`]) and every test
//!   gets its own fresh database from [`fresh_database_url`]. Likewise
//!   [`shared_redis`] serves tests that only need *a* Redis. Tests that kill,
//!   freeze or restart a server must start their own instead.
//! * **Why `setpriv`.** CI runs the tests as root and PostgreSQL refuses to run
//!   as root. As root, `initdb` and `postgres` are therefore run as the
//!   `postgres` user through `setpriv`, which `exec`s the binary, so the PID we
//!   hold is the server's own and signals reach it directly.
//! * **Why watchdogs.** Statics are never dropped, so the shared servers would
//!   outlive the test binary. For each one a detached `sh` loop waits for this
//!   process to exit, then stops the server and deletes its directory. The
//!   server PID is also written to `server.pid` in that directory.
//! * **Clusters.** [`RedisCluster`] joins three cluster-mode `redis-server`
//!   processes with `redis-cli --cluster create`; each node has a watchdog,
//!   so a test binary that dies mid-test does not leave them running.
//! * **Environment overrides.** If `TEST_DATABASE_URL` is set,
//!   [`fresh_database_url`] creates its databases on that server instead
//!   (with `psql`, using the URL's host, port, user and password). If
//!   `TEST_REDIS_URL` is set, [`shared_redis_url`] returns it as is.
//!
//! Only the standard library and `tempfile` are used: signals are sent with
//! the `kill` command and Redis is spoken to with a tiny RESP client.

#![allow(
    dead_code,
    reason = "each test file uses a different part of this module"
)]

mod cluster;
mod postgres;
mod redis;

#[allow(unused_imports, reason = "not every test file names the server types")]
pub(crate) use self::{cluster::RedisCluster, postgres::PostgresServer, redis::RedisServer};

use std::io;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often readiness checks and shutdowns poll a server.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The PostgreSQL cluster shared by all tests of this binary, started on first
/// use. Never stop it; tests that need to stop PostgreSQL start their own.
pub(crate) fn shared_postgres() -> &'static PostgresServer {
    static SERVER: OnceLock<PostgresServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let server = PostgresServer::start();
        spawn_watchdog(server.pid(), "INT", server.dir());
        server
    })
}

/// The Redis server shared by all tests of this binary, started on first use.
/// Never kill or freeze it; tests that need that start their own.
pub(crate) fn shared_redis() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let server = RedisServer::start();
        spawn_watchdog(server.pid(), "KILL", server.dir());
        server
    })
}

/// URL of a brand-new, empty database: on the server named by
/// `TEST_DATABASE_URL` if that is set, otherwise on [`shared_postgres`].
pub(crate) fn fresh_database_url() -> String {
    fresh_database_url_with("")
}

/// [`fresh_database_url`] with `options` appended to `CREATE DATABASE`
/// (say, `TEMPLATE template0 LC_CTYPE 'C.UTF-8'`).
pub(crate) fn fresh_database_url_with(options: &str) -> String {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => create_database_at(url.trim(), options),
        _ => create_database_at(&shared_postgres().admin_url(), options),
    }
}

/// URL of the Redis the tests should share: `TEST_REDIS_URL` if set,
/// otherwise [`shared_redis`].
pub(crate) fn shared_redis_url() -> String {
    match std::env::var("TEST_REDIS_URL") {
        Ok(url) if !url.trim().is_empty() => url.trim().to_owned(),
        _ => shared_redis().url(),
    }
}

/// A loopback port that was free a moment ago (bind port 0, read it, release it).
pub(crate) fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to pick a free port");
    listener
        .local_addr()
        .expect("read the address of the port-0 listener")
        .port()
}

/// Creates a uniquely named database through the server at `admin_url` (any
/// database on it we may connect to) and returns the new database's URL.
fn create_database_at(admin_url: &str, options: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = format!(
        "anigo_test_{seconds}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let psql = find_pg_binary("psql").unwrap_or_else(|| {
        panic!("psql not found on PATH or in /usr/lib/postgresql/*/bin: install it with `apt-get install -y postgresql-client`")
    });
    // `-d` accepts a whole connection URI, so host, port, user, password and
    // options all come from the URL (for our own server: 127.0.0.1, postgres).
    let output = Command::new(&psql)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", admin_url, "-c"])
        .arg(format!("CREATE DATABASE \"{name}\" {options}"))
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("failed to run {}: {e}", psql.display()));
    assert!(
        output.status.success(),
        "psql could not create database {name} via {admin_url} ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    with_database(admin_url, &name)
}

/// `url` with its database (path) replaced by `name`, keeping any `?query`.
fn with_database(url: &str, name: &str) -> String {
    let (scheme, rest) = url
        .split_once("://")
        .unwrap_or_else(|| panic!("database URL {url:?} has no scheme (expected postgres://...)"));
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let query = tail.find('?').map_or("", |i| &tail[i..]);
    format!("{scheme}://{authority}/{name}{query}")
}

/// Starts a detached watchdog that, once this test binary has exited, sends
/// `SIG<signal>` to `server_pid`, waits up to 10 s (then SIGKILLs it) and
/// removes `dir`. The outer `sh` backgrounds the loop and exits at once, so the
/// loop is re-parented and nothing is left for us to reap. A server whose
/// `dir` is already gone was stopped by its owner's `Drop`: its PID may belong
/// to another process by then, so it is left alone.
fn spawn_watchdog(server_pid: u32, signal: &str, dir: &Path) {
    const SCRIPT: &str = r#"(
        while kill -0 "$1" 2>/dev/null; do sleep 1; done
        [ -d "$4" ] || exit 0
        kill -"$3" "$2" 2>/dev/null
        i=0
        while kill -0 "$2" 2>/dev/null && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
        kill -KILL "$2" 2>/dev/null
        rm -rf "$4"
    ) </dev/null >/dev/null 2>&1 &"#;
    std::fs::write(dir.join("server.pid"), format!("{server_pid}\n"))
        .unwrap_or_else(|e| panic!("write server.pid into {}: {e}", dir.display()));
    let status = Command::new("sh")
        .args(["-c", SCRIPT, "anigo-test-watchdog"])
        .arg(std::process::id().to_string())
        .arg(server_pid.to_string())
        .arg(signal)
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Own process group: a Ctrl-C aimed at the tests must not kill it.
        .process_group(0)
        .status()
        .expect("run `sh` to start the server watchdog (is /bin/sh installed?)");
    assert!(
        status.success(),
        "starting the server watchdog failed: {status}"
    );
}

/// Polls `ready` until it holds. The error says why it never did: `child`
/// exited, or `timeout` passed.
fn wait_until(
    child: &mut Child,
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while !ready() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited early ({status})"));
        }
        if Instant::now() >= deadline {
            return Err(format!("was not ready within {timeout:?}"));
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    Ok(())
}

/// Sends `SIG<signal>` (e.g. "STOP") to `pid` with the `kill` command.
fn send_signal(pid: u32, signal: &str) -> io::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "`kill -{signal} {pid}` failed: {status}"
        )))
    }
}

/// Whether this process runs as root (`id -u` prints 0).
fn running_as_root() -> bool {
    let output = Command::new("id")
        .arg("-u")
        .output()
        .expect("run `id -u` to find out whether the tests run as root");
    String::from_utf8_lossy(&output.stdout).trim() == "0"
}

/// The first executable called `name` in a `PATH` directory.
fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// A PostgreSQL binary from `PATH`, else from the newest
/// `/usr/lib/postgresql/<version>/bin`.
fn find_pg_binary(name: &str) -> Option<PathBuf> {
    find_on_path(name).or_else(|| {
        let versions = std::fs::read_dir("/usr/lib/postgresql").ok()?;
        versions
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let version: Vec<u32> = entry
                    .file_name()
                    .to_str()?
                    .split('.')
                    .map(|part| part.parse().ok())
                    .collect::<Option<_>>()?;
                let binary = entry.path().join("bin").join(name);
                is_executable(&binary).then_some((version, binary))
            })
            .max()
            .map(|(_, binary)| binary)
    })
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// The last `lines` lines of a log file, for panic messages.
fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
