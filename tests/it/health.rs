//! Liveness and readiness, with Redis present, absent, and the database down.

use serde_json::json;

use crate::common::{Backend, TestApp, TestSettings};
use crate::support::{self, PostgresServer};

#[tokio::test]
async fn healthz_answers_and_readyz_is_ready_with_redis_up() {
    let app = TestApp::spawn(Backend::Sqlite).await;

    let (status, body) = app.get_json("/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], json!("ok"));

    let (status, body) = app.get_json("/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], json!("ready"), "{body}");
    assert_eq!(body["database"]["status"], json!("up"));
    assert_eq!(body["redis"]["status"], json!("up"));
}

#[tokio::test]
async fn without_redis_the_app_starts_answers_and_reports_degraded() {
    // Arrange: a Redis URL on a port where nothing listens.
    let port = support::free_port();
    let mut settings = TestSettings::new(Backend::Postgres);
    settings.redis_url = Some(format!("redis://127.0.0.1:{port}/0"));

    // Act
    let started = std::time::Instant::now();
    let app = TestApp::spawn_with(settings).await;
    let start_time = started.elapsed();

    // Assert
    assert!(start_time.as_secs() < 10, "start-up took {start_time:?}");
    assert_eq!(app.count().await, 250);
    assert_eq!(app.popular(5).await.len(), 5);
    let (status, body) = app.get_json("/readyz").await;
    assert_eq!(status, 200, "Redis down is degraded, not unready: {body}");
    assert_eq!(body["status"], json!("degraded"));
    assert_eq!(body["redis"]["status"], json!("down"));
    assert_eq!(body["redis"]["addr"], json!(format!("127.0.0.1:{port}")));
}

#[tokio::test]
async fn redis_required_refuses_to_start_without_redis() {
    let port = support::free_port();
    let dir = tempfile::tempdir().expect("tmp");
    let vars = std::collections::HashMap::from([
        (
            "DATABASE_URL",
            format!("sqlite://{}/a.db?mode=rwc", dir.path().display()),
        ),
        ("REDIS_URL", format!("redis://127.0.0.1:{port}/0")),
        ("REDIS_REQUIRED", "true".to_owned()),
        ("REDIS_CONNECT_TIMEOUT_MS", "300".to_owned()),
        ("BIND_ADDR", "127.0.0.1:0".to_owned()),
    ]);
    let config = anigo::Config::from_lookup(|k| vars.get(k).cloned()).expect("config");
    let err = match anigo::App::build(config).await {
        Ok(_) => panic!("must not start without Redis when REDIS_REQUIRED is set"),
        Err(err) => err,
    };
    assert!(format!("{err:#}").contains("REDIS_REQUIRED"), "{err:#}");
}

#[tokio::test]
async fn readyz_is_503_when_the_database_is_unreachable() {
    // Arrange: a private PostgreSQL this test may stop.
    let mut postgres = PostgresServer::start();
    let mut settings = TestSettings::new(Backend::Postgres);
    settings.database_url = Some(postgres.create_database());
    let app = TestApp::spawn_with(settings).await;
    assert_eq!(app.get_json("/readyz").await.0, 200);

    // Act
    postgres.stop();
    let (status, body) = app.get_json("/readyz").await;

    // Assert
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], json!("unready"));
    assert_eq!(body["database"]["status"], json!("down"));
    let body = app.graphql("{ animeCount }", json!({})).await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        json!("DATABASE_UNAVAILABLE"),
        "{body}"
    );
    assert_eq!(body["errors"][0]["extensions"]["retryable"], json!(true));
    assert!(
        body["errors"][0]["extensions"]["requestId"].is_string(),
        "{body}"
    );

    // And it recovers once the database is back.
    postgres.start_again();
    let mut recovered = false;
    for _ in 0..50 {
        if app.get_json("/readyz").await.0 == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        recovered,
        "readiness did not recover after PostgreSQL restarted"
    );
}
