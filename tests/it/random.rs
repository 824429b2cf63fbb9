//! `randomAnime`: distinct picks that change from call to call, a bounded
//! number of statements (primary-key lookups, never a scan), anime read
//! through their cache entries, and never a kept response.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::common::{Backend, SEEDED, TestApp, first_error_code, id_of};

const RANDOM: &str = "query($n: Int) { randomAnime(limit: $n) { id title } }";

async fn pick(app: &TestApp, n: i64) -> Vec<i64> {
    let data = app.data(RANDOM, json!({ "n": n })).await;
    data["randomAnime"]
        .as_array()
        .expect("a list")
        .iter()
        .map(id_of)
        .collect()
}

#[tokio::test]
async fn random_anime_are_distinct_existing_and_differ_between_calls() {
    // Arrange
    let app = TestApp::spawn(Backend::Postgres).await;

    // Act
    let picks: Vec<Vec<i64>> = futures_util::future::join_all((0..5).map(|_| pick(&app, 10))).await;

    // Assert: ten distinct existing anime each time, not the same ten.
    for ids in &picks {
        assert_eq!(ids.len(), 10, "{ids:?}");
        let distinct: BTreeSet<i64> = ids.iter().copied().collect();
        assert_eq!(distinct.len(), 10, "duplicates in {ids:?}");
        assert!(
            ids.iter().all(|id| (1..=SEEDED as i64).contains(id)),
            "{ids:?}"
        );
    }
    let sets: BTreeSet<BTreeSet<i64>> = picks
        .iter()
        .map(|ids| ids.iter().copied().collect())
        .collect();
    assert!(sets.len() > 1, "five calls gave the same anime: {picks:?}");
}

#[tokio::test]
async fn random_anime_costs_two_statements_once_the_anime_are_cached() {
    // Arrange: every anime's entry cached, so only the pick reaches SQL.
    let app = TestApp::spawn(Backend::Sqlite).await;
    for id in 1..=SEEDED {
        app.data(
            "query($id: ID!) { anime(id: $id) { id } }",
            json!({ "id": id.to_string() }),
        )
        .await;
    }

    // Act
    let before = app.db_queries();
    let ids = pick(&app, 20).await;
    let statements = app.db_queries() - before;

    // Assert: the id range and one lookup of the candidates (a dense
    // catalogue needs no seek).
    assert_eq!(ids.len(), 20);
    assert_eq!(statements, 2, "statements for one pick of 20");
}

#[tokio::test]
async fn random_anime_is_never_kept_and_its_limit_is_checked() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    crate::two_tier::until(
        "listening",
        std::time::Duration::from_secs(10),
        async || app.state.cache.is_listening(),
    )
    .await;

    for _ in 0..2 {
        let response = app.post(RANDOM, json!({ "n": 3 })).await;
        assert_eq!(
            response.headers()["cache-control"],
            "private, no-store",
            "a random pick must not be cached by anyone"
        );
    }
    assert_eq!(app.state.cache.stats().response_snapshot().stored, 0);

    for n in [0, 21, -1] {
        let body: Value = app.graphql(RANDOM, json!({ "n": n })).await;
        assert_eq!(
            first_error_code(&body),
            "BAD_USER_INPUT",
            "limit {n}: {body}"
        );
        assert_eq!(body["errors"][0]["extensions"]["argument"], "limit");
    }
}
