//! The database guard against real servers: PostgreSQL's statement timeout
//! on the request pool (and not on the maintenance connection), the
//! client-side bound on SQLite, and which errors count against the
//! database.

use std::time::{Duration, Instant};

use anigo::db::{BreakerState, database};
use sea_orm::{ConnectionTrait, Statement};

use crate::common::{Backend, TestApp, TestSettings};
use crate::support;

/// The value of a PostgreSQL setting on `conn`.
async fn setting(conn: &impl ConnectionTrait, name: &str) -> String {
    let row = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            format!("SHOW {name}"),
        ))
        .await
        .expect("SHOW")
        .expect("one row");
    row.try_get_by_index::<String>(0).expect("text")
}

#[tokio::test]
async fn postgres_cancels_a_request_statement_past_the_statement_timeout() {
    // Arrange
    let mut settings = TestSettings::new(Backend::Postgres);
    settings
        .vars
        .push(("DATABASE_STATEMENT_TIMEOUT_MS", "300".to_owned()));
    let app = TestApp::spawn_with(settings).await;
    assert_eq!(setting(&app.state.db, "statement_timeout").await, "300ms");

    // Act
    let started = Instant::now();
    let err = app
        .state
        .db
        .execute_unprepared("SELECT pg_sleep(3)")
        .await
        .expect_err("cancelled");
    let took = started.elapsed();

    // Assert
    assert!(
        took < Duration::from_millis(1_000),
        "cancelled after {took:?}"
    );
    let failure = database::classify(&err).expect("a timeout counts against the database");
    assert_eq!(
        failure.kind,
        anigo::db::breaker::FailureKind::Timeout,
        "{err}"
    );
    assert_eq!(
        app.state.db.breaker_state(),
        BreakerState::Closed,
        "one slow statement is not an outage"
    );
}

#[tokio::test]
async fn the_request_pool_plans_each_statement_for_its_own_values() {
    let app = TestApp::spawn(Backend::Postgres).await;

    let mode = setting(&app.state.db, "plan_cache_mode").await;

    assert_eq!(
        mode, "force_custom_plan",
        "no generic plans for searches and filters"
    );
}

#[tokio::test]
async fn migrations_and_seeding_run_without_the_statement_timeout() {
    let url = support::fresh_database_url();
    let config = anigo::Config::from_lookup(|name| match name {
        "DATABASE_URL" => Some(url.clone()),
        "DATABASE_STATEMENT_TIMEOUT_MS" => Some("300".to_owned()),
        _ => None,
    })
    .expect("config");

    let conn = anigo::db::connect_for_maintenance(&config.database)
        .await
        .expect("connect");

    assert_eq!(setting(&conn, "statement_timeout").await, "0");
}

#[tokio::test]
async fn a_statement_error_does_not_count_against_the_database() {
    // Arrange
    let app = TestApp::spawn(Backend::Postgres).await;
    let duplicate = "INSERT INTO anime (id, title, format, status, popularity, genres, picture_url, synopsis, created_at, updated_at) \
        SELECT id, title, format, status, popularity, genres, picture_url, synopsis, created_at, updated_at FROM anime WHERE id = 1";

    // Act: more unique violations than the breaker's threshold.
    for _ in 0..5 {
        let err = app
            .state
            .db
            .execute_unprepared(duplicate)
            .await
            .expect_err("duplicate key");
        assert!(database::classify(&err).is_none(), "{err}");
        assert!(!database::is_unavailable(&err));
    }

    // Assert
    assert_eq!(app.state.db.breaker_state(), BreakerState::Closed);
    assert_eq!(app.count().await, 250);
}

#[tokio::test]
async fn on_sqlite_the_client_side_bound_ends_a_statement_that_runs_too_long() {
    // Arrange: SQLite has no server-side statement timeout.
    let mut settings = TestSettings::new(Backend::Sqlite);
    settings.vars.extend([
        ("DATABASE_STATEMENT_TIMEOUT_MS", "200".to_owned()),
        ("DATABASE_ACQUIRE_TIMEOUT_MS", "200".to_owned()),
    ]);
    let app = TestApp::spawn_with(settings).await;
    // Counting to fifty million takes SQLite seconds.
    let slow = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 50000000) SELECT count(*) FROM c";

    // Act
    let started = Instant::now();
    let err = app
        .state
        .db
        .execute_unprepared(slow)
        .await
        .expect_err("abandoned");
    let took = started.elapsed();

    // Assert: acquire + statement timeout + 250 ms grace.
    assert!(
        (Duration::from_millis(600)..Duration::from_millis(1_200)).contains(&took),
        "abandoned after {took:?}"
    );
    assert!(database::is_unavailable(&err), "{err}");
    assert_eq!(
        app.state.db.breaker_state(),
        BreakerState::Closed,
        "one is not an outage"
    );
}
