//! Start-up, the seed command, and graceful shutdown.

use std::process::Command;
use std::time::{Duration, Instant};

use anigo::entities::anime;
use sea_orm::{Database, EntityTrait, PaginatorTrait};

use crate::common::{Backend, TestApp};
use crate::support;

#[tokio::test]
async fn shutdown_finishes_in_flight_work_and_stops_accepting() {
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
