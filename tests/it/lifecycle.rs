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
