//! Start-up, the seed command, and graceful shutdown.

use std::process::Command;
use std::time::{Duration, Instant};

use anigo::entities::anime;
use sea_orm::{Database, EntityTrait, PaginatorTrait};

use crate::common::{Backend, TestApp};
use crate::support;

#[tokio::test]
async fn shutdown_returns_promptly_and_stops_accepting() {
    // Arrange
    let app = TestApp::spawn(Backend::Sqlite).await;
    let url = app.url("/healthz");
    let http = app.http.clone();
    assert!(http.get(&url).send().await.is_ok());

    // Act
    let started = Instant::now();
    app.stop().await.expect("clean shutdown");

    // Assert
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let after = reqwest::Client::new().get(&url).send().await;
    assert!(after.is_err(), "still accepting after shutdown");
}

#[tokio::test]
async fn the_seed_command_loads_deterministic_rows_into_postgres() {
    // Arrange
    let url_a = support::fresh_database_url();
    let url_b = support::fresh_database_url();
    let seed = |url: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_anigo"))
            .args(["seed", "--count", "3000", "--seed", "7"])
            .env_clear()
            .env("DATABASE_URL", url)
            .env("RUST_LOG", "warn")
            .output()
            .expect("running anigo seed");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };

    // Act
    seed(&url_a);
    seed(&url_b);

    // Assert
    let a = Database::connect(&url_a).await.expect("connect a");
    let b = Database::connect(&url_b).await.expect("connect b");
    assert_eq!(anime::Entity::find().count(&a).await.expect("count"), 3000);
    let rows_a = anime::Entity::find().all(&a).await.expect("rows a");
    let rows_b = anime::Entity::find().all(&b).await.expect("rows b");
    assert_eq!(
        rows_a, rows_b,
        "same count and seed must give the same rows"
    );
    let json_len = serde_json::to_string(&rows_a[0]).expect("json").len();
    assert!(
        (900..=2200).contains(&json_len),
        "one anime is {json_len} bytes of JSON"
    );
}

#[tokio::test]
async fn the_binary_logs_the_old_lifecycle_lines_and_stops_on_sigint() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    // Arrange: the real binary on SQLite with the shared Redis.
    let dir = tempfile::tempdir().expect("tmp");
    let redis = support::shared_redis_url();
    let mut child = Command::new(env!("CARGO_BIN_EXE_anigo"))
        .current_dir(dir.path())
        .env_clear()
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("REDIS_URL", &redis)
        .env("DEMO_SEED_COUNT", "10")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting anigo");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !log.iter().any(|l: &String| l.contains("Listening on")) {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no 'Listening on' line; log so far: {log:#?}"));
        log.push(line);
    }

    // Act: Ctrl+C.
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    let exit = child.wait().expect("waiting for anigo");
    log.extend(rx.iter());

    // Assert
    assert!(exit.success(), "exit {exit:?}; log: {log:#?}");
    let port = redis
        .rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .expect("port");
    let text = log.join("\n");
    assert!(
        !text.contains('\u{1b}'),
        "no colour codes outside a terminal"
    );
    for expected in [
        "Starting application".to_owned(),
        format!("Redis connected: 127.0.0.1:{port}"),
        "Redis stats: {".to_owned(),
        "\"version\"".to_owned(),
        // The throwaway Redis has no maxmemory: the start-up check says so.
        "Redis eviction settings: Redis has no maxmemory limit".to_owned(),
        "Shutting down application".to_owned(),
        "Shutdown complete".to_owned(),
    ] {
        assert!(
            text.contains(&expected),
            "missing {expected:?} in log:\n{text}"
        );
    }
}

/// The binary's stderr, line by line, from a reader thread.
fn stderr_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::{BufRead, BufReader};

    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// Reads lines into `log` until `count` of them contain `needle`.
fn wait_for_lines(
    rx: &std::sync::mpsc::Receiver<String>,
    log: &mut Vec<String>,
    needle: &str,
    count: usize,
    limit: Duration,
) {
    let deadline = Instant::now() + limit;
    while log.iter().filter(|line| line.contains(needle)).count() < count {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("not {count} lines with {needle:?}; log so far: {log:#?}"));
        log.push(line);
    }
}

/// What start-up logs for each failed database attempt.
const RETRY_LINE: &str = "Database unreachable at start-up: retrying";

#[test]
fn start_up_retries_an_unreachable_database_with_the_real_cause_then_gives_up() {
    // Arrange: a PostgreSQL URL where nothing listens.
    let port = support::free_port();
    let dir = tempfile::tempdir().expect("tmp");

    // Act
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_anigo"))
        .current_dir(dir.path())
        .env_clear()
        .env(
            "DATABASE_URL",
            format!("postgres://anigo:hunter2@127.0.0.1:{port}/anigo"),
        )
        .env("DATABASE_STARTUP_TIMEOUT_SECS", "2")
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .output()
        .expect("running anigo");
    let took = started.elapsed();

    // Assert
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{log}");
    assert!(
        (Duration::from_secs(2)..Duration::from_secs(8)).contains(&took),
        "gave up after {took:?}"
    );
    let attempts: Vec<&str> = log.lines().filter(|l| l.contains(RETRY_LINE)).collect();
    assert!(attempts.len() >= 3, "backoff retries: {log}");
    for line in &attempts {
        assert!(line.contains("Connection refused (os error 111)"), "{line}");
    }
    assert!(
        !log.contains("pool timed out"),
        "the real cause, not the pool's: {log}"
    );
    assert!(!log.contains("hunter2"), "{log}");
    let last = log.lines().last().unwrap_or_default();
    assert!(
        last.contains("was unreachable for 2 s") && last.contains("Connection refused"),
        "a clear final error: {last}"
    );
}

#[test]
fn start_up_waits_for_a_database_that_comes_up_before_the_deadline() {
    use std::process::Stdio;

    // Arrange: a database that exists but whose server is stopped.
    let mut postgres = support::PostgresServer::start();
    let url = postgres.create_database();
    postgres.stop();
    let dir = tempfile::tempdir().expect("tmp");
    let mut child = Command::new(env!("CARGO_BIN_EXE_anigo"))
        .current_dir(dir.path())
        .env_clear()
        .env("DATABASE_URL", &url)
        .env("DATABASE_STARTUP_TIMEOUT_SECS", "30")
        .env("REDIS_URL", support::shared_redis_url())
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting anigo");
    let rx = stderr_lines(&mut child);
    let mut log = Vec::new();
    wait_for_lines(&rx, &mut log, RETRY_LINE, 2, Duration::from_secs(10));

    // Act: the database comes up.
    postgres.start_again();
    wait_for_lines(&rx, &mut log, "Listening on", 1, Duration::from_secs(20));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    let exit = child.wait().expect("waiting for anigo");
    log.extend(rx.iter());

    // Assert
    let text = log.join("\n");
    assert!(exit.success(), "exit {exit:?}; log:\n{text}");
    assert!(text.contains("Database reachable: starting"), "{text}");
    for line in log.iter().filter(|l| l.contains(RETRY_LINE)) {
        assert!(line.contains("Connection refused"), "{line}");
    }
}
