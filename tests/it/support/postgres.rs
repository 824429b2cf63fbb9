//! A throwaway PostgreSQL cluster (`initdb` + `postgres`) in a temp dir.

use std::fs::{self, OpenOptions};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::{
    POLL_INTERVAL, create_database_at, find_on_path, find_pg_binary, free_port, log_tail,
    running_as_root, send_signal, wait_until,
};

/// What PostgreSQL logs once it accepts connections.
const READY_LINE: &str = "database system is ready to accept connections";
/// How long a starting cluster may take to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a fast shutdown may take before the server is SIGKILLed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A PostgreSQL cluster on a free loopback port with fsync off and trust
/// authentication for the `postgres` superuser. Dropping it shuts it down.
pub(crate) struct PostgresServer {
    postgres: PathBuf,
    /// Run the binaries as the `postgres` user through `setpriv` (we are root).
    as_postgres_user: bool,
    dir: TempDir,
    port: u16,
    child: Option<Child>,
}

impl PostgresServer {
    /// Creates a cluster with `initdb`, starts it and waits until it is ready.
    pub(crate) fn start() -> Self {
        let postgres = find_pg_binary("postgres").unwrap_or_else(|| {
            panic!("PostgreSQL not found on PATH or in /usr/lib/postgresql/*/bin: install it with `apt-get install -y postgresql`")
        });
        let initdb = find_pg_binary("initdb").unwrap_or_else(|| {
            panic!("initdb not found on PATH or in /usr/lib/postgresql/*/bin: install it with `apt-get install -y postgresql`")
        });
        let as_postgres_user = running_as_root();
        // As root, stay in /tmp: the `postgres` user must be able to reach the
        // directory (a $TMPDIR under /root would not do), and socket paths
        // must stay short.
        let parent = if as_postgres_user {
            PathBuf::from("/tmp")
        } else {
            std::env::temp_dir()
        };
        let dir = tempfile::Builder::new()
            .prefix("anigo-pg-")
            .tempdir_in(parent)
            .expect("create a temp dir for PostgreSQL (is the temp dir writable?)");
        if as_postgres_user {
            assert!(
                find_on_path("setpriv").is_some(),
                "setpriv not found (needed to run PostgreSQL as the postgres user when root): install it with `apt-get install -y util-linux`"
            );
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("run chown on the PostgreSQL temp dir");
            assert!(
                status.success(),
                "`chown -R postgres:postgres {}` failed ({status}): does the postgres user exist? `apt-get install -y postgresql` creates it",
                dir.path().display()
            );
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700))
                .expect("chmod 0700 the PostgreSQL temp dir");
        }

        let mut server = Self {
            postgres,
            as_postgres_user,
            dir,
            port: free_port(),
            child: None,
        };
        let output = server
            .command(&initdb)
            .arg("-D")
            .arg(server.data_dir())
            .args(["-A", "trust", "-U", "postgres", "--no-sync"])
            .args(["-E", "UTF8", "--locale=C"])
            .output()
            .unwrap_or_else(|e| panic!("failed to run {}: {e}", initdb.display()));
        assert!(
            output.status.success(),
            "initdb failed ({}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        );
        server.spawn();
        server
    }

    /// The loopback port the server listens on (stable across restarts).
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`, the superuser's URL.
    pub(crate) fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Creates a new, uniquely named database with `psql` and returns its URL.
    pub(crate) fn create_database(&self) -> String {
        create_database_at(&self.admin_url(), "")
    }

    /// PID of the running postmaster; panics if it is stopped.
    pub(crate) fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .expect("PostgreSQL is not running (stopped?)")
    }

    /// The server's temporary directory (holds `data/` and `postgres.log`).
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Fast shutdown (SIGINT) and wait for the server to exit (SIGKILL after
    /// 10 s). Does nothing if it is already stopped.
    pub(crate) fn stop(&mut self) {
        self.shutdown()
            .expect("stop PostgreSQL and wait for it to exit");
    }

    /// Starts the stopped server again with the same data and port and waits
    /// until it is ready. Panics if it is still running.
    pub(crate) fn start_again(&mut self) {
        assert!(
            self.child.is_none(),
            "start_again: PostgreSQL is still running; call stop() first"
        );
        self.spawn();
    }

    /// SIGSTOP the postmaster and every backend: connections stay open and
    /// nothing answers (a hung host, a stalled disk). Panics if stopped.
    pub(crate) fn freeze(&self) {
        let postmaster = self.pid();
        send_signal(postmaster, "STOP").expect("SIGSTOP the postmaster");
        for pid in children_of(postmaster) {
            signal_quietly(pid, "STOP");
        }
    }

    /// SIGCONT what [`PostgresServer::freeze`] stopped.
    pub(crate) fn thaw(&self) {
        let postmaster = self.pid();
        for pid in children_of(postmaster) {
            signal_quietly(pid, "CONT");
        }
        send_signal(postmaster, "CONT").expect("SIGCONT the postmaster");
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// A command running `binary` as the right user, inside the temp dir.
    fn command(&self, binary: &Path) -> Command {
        let mut command = if self.as_postgres_user {
            // setpriv execs `binary`, so the child PID is the server's own.
            let mut command = Command::new("setpriv");
            command
                .args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
                .arg(binary);
            command
        } else {
            Command::new(binary)
        };
        command.current_dir(self.dir.path()).stdin(Stdio::null());
        command
    }

    /// Starts `postgres` on `self.port` and waits until it is ready.
    fn spawn(&mut self) {
        let log_path = self.log_path();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("open the PostgreSQL log file");
        // Only lines written after this offset count towards readiness, so
        // the "ready" line of an earlier run is not mistaken for this one.
        let log_offset = log.metadata().map_or(0, |meta| meta.len());
        let port = self.port.to_string();
        let mut child = self
            .command(&self.postgres)
            .arg("-D")
            .arg(self.data_dir())
            .args(["-p", &port, "-k"])
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
            .args(["-c", "max_connections=200"])
            .stdout(log.try_clone().expect("duplicate the log file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start {}: {e}", self.postgres.display()));

        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let ready = || {
            let log = fs::read(&log_path).unwrap_or_default();
            let new = log
                .get(usize::try_from(log_offset).unwrap_or(0)..)
                .unwrap_or_default();
            String::from_utf8_lossy(new).contains(READY_LINE)
                && TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_ok()
        };
        let ready = wait_until(&mut child, START_TIMEOUT, ready);
        self.child = Some(child);
        if let Err(problem) = ready {
            let _ = self.shutdown();
            let log = log_tail(&log_path, 30);
            panic!("PostgreSQL on port {port} {problem}; log tail:\n{log}");
        }
    }

    /// SIGINT (fast shutdown), wait up to [`STOP_TIMEOUT`], then SIGKILL; reap.
    fn shutdown(&mut self) -> io::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        // A frozen server cannot act on SIGINT.
        for pid in children_of(child.id()) {
            signal_quietly(pid, "CONT");
        }
        signal_quietly(child.id(), "CONT");
        if child.try_wait()?.is_none() {
            if send_signal(child.id(), "INT").is_err() {
                child.kill()?;
            }
            let deadline = Instant::now() + STOP_TIMEOUT;
            while child.try_wait()?.is_none() {
                if Instant::now() >= deadline {
                    child.kill()?;
                    break;
                }
                std::thread::sleep(POLL_INTERVAL);
            }
        }
        child.wait().map(drop)
    }
}

/// `kill -<signal> <pid>`, for a process that may have exited meanwhile (a
/// backend that finished): no error, no message.
fn signal_quietly(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}

/// The processes whose parent is `parent` (PostgreSQL's backends and
/// auxiliary processes), from `/proc/<pid>/stat`.
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            // `pid (comm) state ppid …`; comm may hold spaces, so split
            // after its closing parenthesis.
            fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let rest = stat.rsplit_once(')')?.1;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        // Never panic in drop; the worst case is a server the OS reaps later.
        let _ = self.shutdown();
    }
}
