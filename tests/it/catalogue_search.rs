//! `searchAnime` over HTTP on SQLite and PostgreSQL: ranking (exact title,
//! then prefix, word prefix, substring; then popularity, then id) across
//! the three title columns, ignoring case; one normalized key per search;
//! refused texts and limits; keys free of client bytes; admission (a text
//! is stored the second time it misses) and the per-window budget
//! (`CACHE_SEARCH_MAX_ENTRIES`); and invalidation by anime writes.

use std::time::{Duration, Instant};

use anigo::cache::Resolver;
use serde_json::{Value, json};

use crate::common::{Backend, TestApp, TestSettings, first_error_code, id_of};

const TOKEN: &str = "search-admin-token-0123456789";

const SEARCH: &str = "query($q: String!, $limit: Int) { searchAnime(query: $q, limit: $limit) { id title titleEnglish } }";

/// An app with a small seed (no seeded title contains "qvzx"), the admin
/// token, and a search budget of `max_entries`. The search TTL is a day,
/// so that a test never straddles two budget windows.
async fn spawn(backend: Backend, max_entries: u64) -> TestApp {
    let mut settings = TestSettings::new(backend);
    settings.vars.extend([
        ("ADMIN_TOKEN", TOKEN.to_owned()),
        ("DEMO_SEED_COUNT", "20".to_owned()),
        ("CACHE_SEARCH_MAX_ENTRIES", max_entries.to_string()),
        ("CACHE_TTL_ANIME_SEARCH", "86400".to_owned()),
    ]);
    TestApp::spawn_with(settings).await
}

/// Creates an anime through the admin mutation; its id.
async fn create(
    app: &TestApp,
    title: &str,
    english: Option<&str>,
    original: Option<&str>,
    popularity: i64,
) -> i64 {
    let body: Value = app
        .http
        .post(app.url("/graphql"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .json(&json!({
            "query": "mutation($input: CreateAnimeInput!) { createAnime(input: $input) { id } }",
            "variables": { "input": {
                "title": title,
                "titleEnglish": english,
                "titleOriginal": original,
                "popularity": popularity,
                "format": "TV",
                "status": "FINISHED",
                "pictureUrl": "https://img.example/s.webp",
                "synopsis": "A search fixture.",
            }},
        }))
        .send()
        .await
        .expect("sending createAnime")
        .json()
        .await
        .expect("JSON");
    assert!(body.get("errors").is_none(), "createAnime: {body}");
    id_of(&body["data"]["createAnime"])
}

/// `searchAnime(query: text, limit)` with the cache trace.
async fn search(app: &TestApp, text: &str, limit: Option<i64>) -> Value {
    // No `limit` variable at all when none is given: the default applies.
    let mut variables = json!({ "q": text });
    if let Some(limit) = limit {
        variables["limit"] = json!(limit);
    }
    app.http
        .post(app.url("/graphql"))
        .header("x-anigo-cache-debug", "1")
        .json(&json!({ "query": SEARCH, "variables": variables }))
        .send()
        .await
        .expect("sending searchAnime")
        .json()
        .await
        .expect("JSON")
}

/// The ids found.
fn ids(body: &Value) -> Vec<i64> {
    assert!(body.get("errors").is_none(), "{body}");
    body["data"]["searchAnime"]
        .as_array()
        .unwrap_or_else(|| panic!("no list in {body}"))
        .iter()
        .map(id_of)
        .collect()
}

/// The cache read of a search: (key, status). The trace holds it first,
/// then one read per anime found, in the order found (each anime is an
/// entry of its own, shared with every list and `anime(id)`).
fn read(body: &Value) -> (String, String) {
    let entries = body["extensions"]["cache"]
        .as_array()
        .unwrap_or_else(|| panic!("no cache trace in {body}"));
    assert!(!entries.is_empty(), "{body}");
    assert_eq!(entries[0]["resolver"], "searchAnime", "{body}");
    let key = entries[0]["key"].as_str().unwrap_or_default().to_owned();
    let found: Vec<i64> = body["data"]["searchAnime"]
        .as_array()
        .map(|found| found.iter().map(id_of).collect())
        .unwrap_or_default();
    assert_eq!(entries.len(), 1 + found.len(), "{body}");
    let (prefix, _) = key
        .split_once("anime_search:")
        .unwrap_or_else(|| panic!("not a search key: {key}"));
    for (entry, id) in entries[1..].iter().zip(&found) {
        assert_eq!(entry["resolver"], "anime", "{body}");
        assert_eq!(
            entry["key"].as_str().unwrap_or_default(),
            format!("{prefix}anime:id={id}"),
            "{body}"
        );
    }
    (
        key,
        entries[0]["status"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Whether Redis holds `key`.
async fn is_stored(app: &TestApp, key: &str) -> bool {
    let values = app
        .state
        .cache
        .redis()
        .mget(vec![key.into()])
        .await
        .expect("MGET");
    values.first().is_some_and(Option::is_some)
}

/// Polls until `check` holds (write-backs land in the background).
async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn not_admitted(app: &TestApp) -> u64 {
    app.state
        .cache
        .stats()
        .snapshot(Resolver::AnimeSearch)
        .not_admitted
}

// ---------------------------------------------------------------------------
// Ranking and matching
// ---------------------------------------------------------------------------

async fn ranks_by_tier_then_popularity_then_id(backend: Backend) {
    // Arrange: one anime per tier, two prefix matches tied on popularity.
    let app = spawn(backend, 100).await;
    let substring = create(&app, "Moonqvzxlight", None, None, 99_999).await;
    let word = create(&app, "Harbor", Some("Blue Qvzxian Sky"), None, 1_000).await;
    let prefix_a = create(&app, "Qvzx Harbor", None, None, 5).await;
    let prefix_b = create(&app, "Qvzx Dawn", None, None, 5).await;
    let original = create(&app, "Other Story", None, Some("QVZX 物語"), 7).await;
    let exact = create(&app, "Qvzx", None, None, 10).await;

    // Act + Assert: any case finds every column, best tier first.
    let expected = vec![exact, original, prefix_a, prefix_b, word, substring];
    for text in ["qvzx", "QVZX", "  QvZx "] {
        assert_eq!(ids(&search(&app, text, None).await), expected, "{text:?}");
    }
    assert_eq!(
        ids(&search(&app, "qvzx", Some(2)).await),
        [exact, original],
        "the limit cuts the ranked list"
    );
    // The English and the original title on their own.
    assert_eq!(ids(&search(&app, "BLUE qvzxian", None).await), [word]);
    assert_eq!(ids(&search(&app, "物語", None).await), [original]);
    assert_eq!(ids(&search(&app, "qvzx harbor", None).await), [prefix_a]);
    assert!(ids(&search(&app, "qvzx nothing", None).await).is_empty());
}

#[tokio::test]
async fn ranks_by_tier_then_popularity_then_id_on_sqlite() {
    ranks_by_tier_then_popularity_then_id(Backend::Sqlite).await;
}

#[tokio::test]
async fn ranks_by_tier_then_popularity_then_id_on_postgres() {
    ranks_by_tier_then_popularity_then_id(Backend::Postgres).await;
}

// ---------------------------------------------------------------------------
// Keys, admission and invalidation
// ---------------------------------------------------------------------------

async fn one_key_per_normalized_text_stored_on_second_sight(backend: Backend) {
    // Arrange
    let app = spawn(backend, 100).await;
    let id = create(&app, "Qvzx Harbor", None, None, 5).await;
    let key = app.key("anime_search:q=qvzx+harbor:limit=20");

    // Act: first sight.
    let first = search(&app, "  QVZX   Harbor ", None).await;

    // Assert: served, not stored.
    assert_eq!(ids(&first), [id]);
    assert_eq!(read(&first), (key.clone(), "MISS".to_owned()));
    assert_eq!(not_admitted(&app), 1);
    assert!(
        !is_stored(&app, &key).await,
        "a first sighting is not stored"
    );

    // Act + Assert: the same text, differently written: the same key, a
    // miss again, now stored; then a hit.
    let second = search(&app, "qvzx harbor", None).await;
    assert_eq!(ids(&second), [id]);
    assert_eq!(read(&second), (key.clone(), "MISS".to_owned()));
    eventually("the second sighting in Redis", || is_stored(&app, &key)).await;
    let third = search(&app, "Qvzx\tHARBOR", None).await;
    assert_eq!(ids(&third), [id]);
    assert_eq!(read(&third), (key.clone(), "HIT".to_owned()));
    assert_eq!(not_admitted(&app), 1);

    // Another limit is another search.
    let other = search(&app, "qvzx harbor", Some(5)).await;
    assert_eq!(
        read(&other),
        (
            app.key("anime_search:q=qvzx+harbor:limit=5"),
            "MISS".to_owned()
        )
    );
}

#[tokio::test]
async fn one_key_per_normalized_text_stored_on_second_sight_on_sqlite() {
    one_key_per_normalized_text_stored_on_second_sight(Backend::Sqlite).await;
}

#[tokio::test]
async fn one_key_per_normalized_text_stored_on_second_sight_on_postgres() {
    one_key_per_normalized_text_stored_on_second_sight(Backend::Postgres).await;
}

async fn a_new_title_shows_in_the_next_search(backend: Backend) {
    // Arrange: a search stored (and hit) with no match.
    let app = spawn(backend, 100).await;
    for _ in 0..2 {
        assert!(ids(&search(&app, "qvzx nova", None).await).is_empty());
    }
    let key = app.key("anime_search:q=qvzx+nova:limit=20");
    eventually("the search in Redis", || is_stored(&app, &key)).await;
    assert_eq!(read(&search(&app, "qvzx nova", None).await).1, "HIT");

    // Act
    let id = create(&app, "The Qvzx Nova", None, None, 1).await;

    // Assert: the write dropped the stored search.
    let after = search(&app, "Qvzx Nova", None).await;
    assert_eq!(ids(&after), [id]);
    assert_eq!(read(&after), (key, "MISS".to_owned()));
}

#[tokio::test]
async fn a_new_title_shows_in_the_next_search_on_sqlite() {
    a_new_title_shows_in_the_next_search(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_new_title_shows_in_the_next_search_on_postgres() {
    a_new_title_shows_in_the_next_search(Backend::Postgres).await;
}

async fn the_budget_bounds_stored_searches(backend: Backend) {
    // Arrange: room for two search entries per window.
    let app = spawn(backend, 2).await;
    let id = create(&app, "Qvzx Budget Three", None, None, 1).await;
    let key = |text: &str| app.key(&format!("anime_search:q={text}:limit=20"));

    // Act: three texts, each searched twice (admitted on the second).
    for text in ["qvzx+budget+one", "qvzx+budget+two"] {
        let query = text.replace('+', " ");
        for _ in 0..2 {
            search(&app, &query, None).await;
        }
        let stored = key(text);
        eventually("an admitted search in Redis", || is_stored(&app, &stored)).await;
    }
    let refused_before = not_admitted(&app);
    for _ in 0..2 {
        let body = search(&app, "Qvzx Budget Three", None).await;
        // Assert: served correctly all the same.
        assert_eq!(ids(&body), [id]);
        assert_eq!(read(&body).1, "MISS");
    }

    // Assert: the third is refused by the budget, off the request path.
    eventually("the budget refusal", || {
        let refused = not_admitted(&app);
        async move { refused >= refused_before + 2 }
    })
    .await;
    assert!(!is_stored(&app, &key("qvzx+budget+three")).await);
    let again = search(&app, "qvzx budget three", None).await;
    assert_eq!(ids(&again), [id]);
    assert_eq!(read(&again).1, "MISS", "over budget: never stored");
    // The two within the budget are still hits.
    let first = search(&app, "qvzx budget one", None).await;
    assert_eq!(read(&first), (key("qvzx+budget+one"), "HIT".to_owned()));
}

#[tokio::test]
async fn the_budget_bounds_stored_searches_on_sqlite() {
    the_budget_bounds_stored_searches(Backend::Sqlite).await;
}

#[tokio::test]
async fn the_budget_bounds_stored_searches_on_postgres() {
    the_budget_bounds_stored_searches(Backend::Postgres).await;
}

// ---------------------------------------------------------------------------
// Refused input and hostile keys
// ---------------------------------------------------------------------------

async fn refuses_bad_texts_and_limits_and_encodes_keys(backend: Backend) {
    let app = spawn(backend, 100).await;
    let too_long = "a".repeat(101);
    let cases: [(&str, Option<i64>, &str, &str); 8] = [
        ("a\u{0}b", None, "query", "control characters"),
        ("\u{1b}[31mred", None, "query", "control characters"),
        ("a\u{85}b", None, "query", "control characters"),
        ("   \t ", None, "query", "other than whitespace"),
        ("", None, "query", "other than whitespace"),
        (too_long.as_str(), None, "query", "at most 100 characters"),
        ("sora", Some(0), "limit", "between 1 and 50"),
        ("sora", Some(51), "limit", "between 1 and 50"),
    ];
    for (text, limit, argument, message) in cases {
        let body = search(&app, text, limit).await;
        assert_eq!(
            first_error_code(&body),
            "BAD_USER_INPUT",
            "{text:?}: {body}"
        );
        let error = &body["errors"][0];
        assert_eq!(error["extensions"]["argument"], json!(argument), "{body}");
        let said = error["message"].as_str().unwrap_or_default();
        assert!(
            said.starts_with(argument) && said.contains(message),
            "{said}"
        );
        assert!(!said.contains('\u{0}') && said.len() < 150, "{said}");
    }
    // 100 characters once collapsed is fine.
    let padded = format!("  {}  ", "a".repeat(100));
    assert!(search(&app, &padded, None).await.get("errors").is_none());

    // Hostile text: no client byte reaches the key as itself.
    for (text, encoded) in [
        ("a:b*?[x]", "a%3Ab%2A%3F%5Bx%5D"),
        ("のかなた", "%E3%81%AE%E3%81%8B%E3%81%AA%E3%81%9F"),
        ("x y%_", "x+y%25%5F"),
    ] {
        let body = search(&app, text, None).await;
        let (key, _) = read(&body);
        assert_eq!(key, app.key(&format!("anime_search:q={encoded}:limit=20")));
    }
    let long = "の".repeat(100);
    let (key, _) = read(&search(&app, &long, None).await);
    let params = key
        .strip_prefix(&app.key("anime_search:"))
        .expect("search prefix");
    assert!(params.len() < 150, "{params}");
    assert!(
        params
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"%+~=:".contains(&b)),
        "{params}"
    );
    assert!(params.contains('~'), "long texts end in a hash: {params}");
}

#[tokio::test]
async fn refuses_bad_texts_and_limits_and_encodes_keys_on_sqlite() {
    refuses_bad_texts_and_limits_and_encodes_keys(Backend::Sqlite).await;
}

#[tokio::test]
async fn refuses_bad_texts_and_limits_and_encodes_keys_on_postgres() {
    refuses_bad_texts_and_limits_and_encodes_keys(Backend::Postgres).await;
}
