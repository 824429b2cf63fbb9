//! A throwaway `redis-server` and a tiny RESP client to inspect it.

use std::collections::BTreeSet;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::{find_on_path, free_port, log_tail, send_signal, wait_until};

/// How long [`RedisServer::command`] waits for a reply.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a starting server may take to answer `PING`.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A `redis-server` on a free loopback port with no persistence, running in
/// its own temporary directory. Dropping it SIGKILLs the process.
pub(crate) struct RedisServer {
    binary: PathBuf,
    /// Options after ours on the command line (e.g. cluster mode).
    extra_args: Vec<String>,
    dir: TempDir,
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Keys the server has evicted so far (`INFO stats`).
    pub(crate) fn evicted_keys(&self) -> u64 {
        self.command(&["INFO", "stats"])
            .lines()
            .find_map(|line| line.strip_prefix("evicted_keys:"))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Starts a new server and waits until it answers `PING`.
    pub(crate) fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a new server with `extra_args` appended to its command line
    /// (they win over ours) and waits until it answers `PING`.
    pub(crate) fn start_with(extra_args: &[&str]) -> Self {
        let binary = find_on_path("redis-server").unwrap_or_else(|| {
            panic!("redis-server not found: install it with `apt-get install -y redis-server` (scripts/test does this when run as root)")
        });
        let dir = tempfile::Builder::new()
            .prefix("anigo-redis-")
            .tempdir()
            .expect("create a temp dir for redis-server (is $TMPDIR writable?)");
        let mut server = Self {
            binary,
            extra_args: extra_args.iter().map(|arg| (*arg).to_owned()).collect(),
            dir,
            port: free_port(),
            child: None,
        };
        server.spawn();
        server
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The loopback port the server listens on (stable across restarts).
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// PID of the running server; panics if it was killed.
    pub(crate) fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .expect("redis-server is not running (killed?)")
    }

    /// The server's temporary directory (holds `redis.log`).
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// SIGKILLs the server and waits for it to exit. Does nothing if it is
    /// already dead.
    pub(crate) fn kill(&mut self) {
        self.terminate()
            .expect("kill redis-server and wait for it to exit");
    }

    /// Starts the server again on the same port (killing it first if it is
    /// still running) and waits until it answers. The data is gone.
    pub(crate) fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Suspends the server with SIGSTOP: connections are still accepted by
    /// the kernel but nothing is answered until [`RedisServer::thaw`].
    pub(crate) fn freeze(&self) {
        send_signal(self.pid(), "STOP").expect("send SIGSTOP to redis-server");
    }

    /// Resumes a frozen server with SIGCONT.
    pub(crate) fn thaw(&self) {
        send_signal(self.pid(), "CONT").expect("send SIGCONT to redis-server");
    }

    /// Runs one command and returns its reply in readable form: simple
    /// strings, integers and bulk strings as their text, errors as
    /// `(error) <message>`, nil as `(nil)`, arrays as their items joined with
    /// `'\n'`. Panics if the server does not answer within 5 s.
    pub(crate) fn command(&self, args: &[&str]) -> String {
        self.try_command(args, COMMAND_TIMEOUT)
            .unwrap_or_else(|e| panic!("redis command {args:?} on port {} failed: {e}", self.port))
    }

    /// Like [`RedisServer::command`] with the given connect/read timeout, but
    /// returns the I/O error (refused, timed out, ...) instead of panicking.
    pub(crate) fn try_command(&self, args: &[&str], timeout: Duration) -> io::Result<String> {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let stream = TcpStream::connect_timeout(&address, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            request.extend_from_slice(arg.as_bytes());
            request.extend_from_slice(b"\r\n");
        }
        (&stream).write_all(&request)?;
        read_reply(&mut BufReader::new(stream))
    }

    /// The raw bytes stored under `key` (`GET`), `None` when absent: cache
    /// entries are binary (`anigo::cache::envelope`).
    pub(crate) fn get_bytes(&self, key: &str) -> Option<Vec<u8>> {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let stream = TcpStream::connect_timeout(&address, COMMAND_TIMEOUT).expect("connect");
        stream
            .set_read_timeout(Some(COMMAND_TIMEOUT))
            .expect("timeout");
        let request = format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len());
        (&stream).write_all(request.as_bytes()).expect("write");
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        reader.read_until(b'\n', &mut line).expect("read");
        let header = String::from_utf8_lossy(&line);
        let length: i64 = header
            .trim_end()
            .strip_prefix('$')
            .and_then(|len| len.parse().ok())
            .unwrap_or_else(|| panic!("GET {key}: unexpected reply {header:?}"));
        let length = usize::try_from(length).ok()?;
        let mut data = vec![0; length + 2];
        reader.read_exact(&mut data).expect("read value");
        data.truncate(length);
        Some(data)
    }

    /// `SET key bytes KEEPTTL`: replaces a binary value, keeping its TTL.
    pub(crate) fn set_bytes(&self, key: &str, bytes: &[u8]) {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let stream = TcpStream::connect_timeout(&address, COMMAND_TIMEOUT).expect("connect");
        stream
            .set_read_timeout(Some(COMMAND_TIMEOUT))
            .expect("timeout");
        let mut request = format!(
            "*4\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n",
            key.len(),
            bytes.len()
        )
        .into_bytes();
        request.extend_from_slice(bytes);
        request.extend_from_slice(b"\r\n$7\r\nKEEPTTL\r\n");
        (&stream).write_all(&request).expect("write");
        let reply = read_reply(&mut BufReader::new(stream)).expect("reply");
        assert_eq!(reply, "OK", "SET {key}");
    }

    /// Every key matching `pattern`, from a full SCAN (each key once).
    pub(crate) fn keys_matching(&self, pattern: &str) -> BTreeSet<String> {
        let mut keys = BTreeSet::new();
        let mut cursor = "0".to_owned();
        loop {
            // The reply is the next cursor, then one key per line.
            let reply = self.command(&["SCAN", &cursor, "MATCH", pattern, "COUNT", "1000"]);
            let mut lines = reply.lines();
            cursor = lines.next().unwrap_or("0").to_owned();
            keys.extend(lines.filter(|key| !key.is_empty()).map(str::to_owned));
            if cursor == "0" {
                return keys;
            }
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// Spawns `redis-server` on `self.port` and waits until it answers.
    fn spawn(&mut self) {
        let port = self.port.to_string();
        let mut child = Command::new(&self.binary)
            .args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.log_path())
            .args(["--daemonize", "no"])
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start {}: {e}", self.binary.display()));
        let ping = || {
            let reply = self.try_command(&["PING"], Duration::from_millis(500));
            reply.is_ok_and(|reply| reply == "PONG")
        };
        let ready = wait_until(&mut child, START_TIMEOUT, ping);
        self.child = Some(child);
        if let Err(problem) = ready {
            let _ = self.terminate(); // do not leave a half-started server behind
            let log = log_tail(&self.log_path(), 30);
            panic!("redis-server on port {port} {problem}; log tail:\n{log}");
        }
    }

    /// SIGKILL (works on a frozen process too) and reap.
    fn terminate(&mut self) -> io::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        child.kill()?;
        child.wait().map(drop)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // Never panic in drop; a failure here means the process is gone already.
        let _ = self.terminate();
    }
}

/// Reads one RESP2 reply (see [`RedisServer::command`] for the text form).
fn read_reply(reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    if reader.read_until(b'\n', &mut line)? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let line = String::from_utf8_lossy(&line);
    let line = line.trim_end_matches(['\r', '\n']);
    let Some((kind, rest)) = line.split_at_checked(1) else {
        return Err(io::Error::other("empty RESP reply line"));
    };
    let length = || {
        rest.parse::<i64>()
            .map_err(|_| io::Error::other(format!("bad RESP length in {line:?}")))
    };
    match kind {
        "+" | ":" => Ok(rest.to_owned()),
        "-" => Ok(format!("(error) {rest}")),
        "$" => {
            let Ok(len) = usize::try_from(length()?) else {
                return Ok("(nil)".to_owned());
            };
            let mut data = vec![0; len + 2];
            reader.read_exact(&mut data)?;
            data.truncate(len);
            Ok(String::from_utf8_lossy(&data).into_owned())
        }
        "*" => {
            let Ok(len) = usize::try_from(length()?) else {
                return Ok("(nil)".to_owned());
            };
            let items = (0..len)
                .map(|_| read_reply(reader))
                .collect::<io::Result<Vec<_>>>()?;
            Ok(items.join("\n"))
        }
        _ => Err(io::Error::other(format!("unexpected RESP reply {line:?}"))),
    }
}
