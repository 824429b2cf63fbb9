//! The entity-aware cache, observed by its effects: each anime cached once
//! and shared by every list that shows it; a list whose ids are cached but
//! some of whose anime are not is a PARTIAL hit that loads only those; and
//! a write drops only the entries whose data it changed (the policy of
//! `service::tags`), in Redis, in the in-process tier and in kept
//! responses.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::TestApp;
use crate::support::RedisServer;
use crate::two_tier::{BEARER, STRICT, settings, until};

async fn app(redis: &RedisServer, vars: &[(&'static str, &str)]) -> TestApp {
    let namespace = format!("ent{}", crate::two_tier::rand_suffix());
    let app = TestApp::spawn_with(settings(redis, &namespace, vars)).await;
    // In-process tiers are used only once the subscription is proven.
    if app.state.cache.local().is_enabled() || app.state.cache.is_response_cache_enabled() {
        until("listening", Duration::from_secs(10), async || {
            app.state.cache.is_listening()
        })
        .await;
    }
    app
}

/// (resolver, key suffix after the namespace and version, status) of each
/// cached read in a debug response.
fn reads(app: &TestApp, body: &Value) -> Vec<(String, String, String)> {
    let prefix = app.key("");
    body["extensions"]["cache"]
        .as_array()
        .unwrap_or_else(|| panic!("no trace: {body}"))
        .iter()
        .map(|read| {
            (
                read["resolver"].as_str().unwrap_or_default().to_owned(),
                read["key"]
                    .as_str()
                    .unwrap_or_default()
                    .trim_start_matches(prefix.as_str())
                    .to_owned(),
                read["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The status of the read of `key` (after the namespace and version).
fn status(app: &TestApp, body: &Value, key: &str) -> String {
    reads(app, body)
        .into_iter()
        .find(|(_, read, _)| read == key)
        .map(|(.., status)| status)
        .unwrap_or_else(|| panic!("no read of {key} in {body}"))
}

async fn write(app: &TestApp, mutation: &str) {
    let body = app
        .admin(&format!("mutation {{ {mutation} }}"), Some(BEARER))
        .await;
    assert!(body.get("errors").is_none(), "{mutation}: {body}");
}

/// Reads `query` until every read of it is a hit from the in-process tier
/// (write-backs land in the background).
async fn warm(app: &TestApp, query: &str) {
    until("a warm query", Duration::from_secs(10), async || {
        let body = app.graphql_debug(query).await;
        body["extensions"]["cache"].as_array().is_some_and(|all| {
            all.iter()
                .all(|read| read["status"] == "HIT" && read["tier"] == "local")
        })
    })
    .await;
}

const HOME: &str = "{
    popularAnime(limit: 10) { id title synopsis }
    byScore: animeList(sort: SCORE, perPage: 10) { items { id title } }
    byId: animePage(page: 1, perPage: 10) { items { id title } }
    animeCount
}";

#[tokio::test]
async fn a_synopsis_edit_keeps_every_list_and_reloads_only_that_anime() {
    // Arrange: every list warm in both tiers.
    let redis = RedisServer::start();
    let app = app(&redis, &[]).await;
    warm(&app, HOME).await;
    let first = app.graphql_debug(HOME).await;
    let target = first["data"]["popularAnime"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let statements = app.db_queries();

    // Act: a synopsis edit (through the service: no HTTP round trip).
    let id: i32 = target.parse().expect("an id");
    app.state
        .anime
        .update(
            id,
            anigo::service::AnimeChanges {
                synopsis: Some("A new synopsis.".to_owned()),
                ..Default::default()
            },
        )
        .await
        .expect("update");
    let after_write = app.db_queries();
    let body = app.graphql_debug(HOME).await;

    // Assert: the new synopsis shows at once; every list kept its ids
    // (the ranking containing the anime is PARTIAL), only that anime
    // missed, and loading it took its two statements (row, links).
    assert_eq!(
        body["data"]["popularAnime"][0]["synopsis"],
        "A new synopsis."
    );
    assert_eq!(status(&app, &body, "popular:limit=10"), "PARTIAL");
    assert_eq!(status(&app, &body, "anime_count:all"), "HIT");
    let misses: Vec<_> = reads(&app, &body)
        .into_iter()
        .filter(|(.., status)| status != "HIT" && status != "PARTIAL")
        .collect();
    assert_eq!(
        misses,
        vec![(
            "anime".to_owned(),
            format!("anime:id={target}"),
            "MISS".to_owned()
        )]
    );
    assert_eq!(
        app.db_queries() - after_write,
        2,
        "the anime's row and links"
    );
    assert!(after_write > statements, "the write itself ran statements");
    let stats = app
        .state
        .cache
        .stats()
        .snapshot(anigo::cache::Resolver::PopularAnime);
    assert!(stats.partials >= 1, "{stats:?}");
}

#[tokio::test]
async fn a_score_change_drops_only_the_lists_ranked_or_filtered_by_score() {
    let redis = RedisServer::start();
    let app = app(&redis, &[]).await;
    let query = "{
        byScore: animeList(sort: SCORE, perPage: 10) { items { id } }
        good: animeList(filter: { minScore: 8.5 }, sort: TITLE, perPage: 10) { total items { id } }
        byPopularity: animeList(sort: POPULARITY, perPage: 10) { items { id } }
        byId: animePage(page: 2, perPage: 10) { items { id } }
        goodCount: animeCount(filter: { minScore: 8.5 })
        animeCount
    }";
    warm(&app, query).await;

    write(
        &app,
        r#"updateAnime(id: "3", input: { score: 9.9 }) { id }"#,
    )
    .await;
    let body = app.graphql_debug(query).await;

    for key in [
        "anime_list:sort=score_desc:page=1:per_page=10",
        "anime_list:min_score=8.5:sort=title_asc:page=1:per_page=10",
        "anime_count:min_score=8.5",
    ] {
        assert_eq!(status(&app, &body, key), "MISS", "{key}");
    }
    for key in [
        "anime_list:sort=popularity_desc:page=1:per_page=10",
        "anime_paginated:page=2:per_page=10",
        "anime_count:all",
    ] {
        assert_ne!(
            status(&app, &body, key),
            "MISS",
            "{key} survives a score change"
        );
    }
    let top = body["data"]["byScore"]["items"][0]["id"].clone();
    assert_eq!(top, json!("3"), "{body}");
}

#[tokio::test]
async fn moving_an_anime_between_genres_touches_only_those_two_genres() {
    let redis = RedisServer::start();
    let app = app(&redis, &[]).await;
    // Anime 7 is in the first genre it lists; move it to a genre it lacks.
    let seven = app
        .data(
            r#"{ anime(id: "7") { genreList { name slug } } }"#,
            json!({}),
        )
        .await;
    let slugs: Vec<String> = app.data("{ genres { slug } }", json!({})).await["genres"]
        .as_array()
        .expect("genres")
        .iter()
        .map(|g| g["slug"].as_str().expect("slug").to_owned())
        .collect();
    let own: Vec<String> = seven["anime"]["genreList"]
        .as_array()
        .expect("genreList")
        .iter()
        .map(|g| g["slug"].as_str().expect("slug").to_owned())
        .collect();
    let from = own[0].clone();
    let to = slugs
        .iter()
        .find(|s| !own.contains(s))
        .expect("a genre it lacks")
        .clone();
    let other = slugs
        .iter()
        .find(|s| **s != from && **s != to && !own.contains(s))
        .expect("a third genre")
        .clone();
    let page = |alias: &str, slug: &str| {
        format!(
            r#"{alias}: animeList(filter: {{ genre: "{slug}" }}, perPage: 10) {{ total items {{ id }} }}"#
        )
    };
    let query = format!(
        "{{ {} {} {} }}",
        page("from", &from),
        page("to", &to),
        page("other", &other)
    );
    warm(&app, &query).await;

    let mut genres: Vec<String> = seven["anime"]["genreList"]
        .as_array()
        .expect("genreList")
        .iter()
        .skip(1)
        .map(|g| format!("{:?}", g["name"].as_str().expect("name")))
        .collect();
    let to_name = app
        .data(
            &format!(r#"{{ genre(slug: "{to}") {{ name }} }}"#),
            json!({}),
        )
        .await["genre"]["name"]
        .as_str()
        .expect("name")
        .to_owned();
    genres.push(format!("{to_name:?}"));
    write(
        &app,
        &format!(
            r#"updateAnime(id: "7", input: {{ genres: [{}] }}) {{ id }}"#,
            genres.join(", ")
        ),
    )
    .await;
    let body = app.graphql_debug(&query).await;

    let key =
        |slug: &str| format!("anime_list:genre={slug}:sort=popularity_desc:page=1:per_page=10");
    assert_eq!(status(&app, &body, &key(&from)), "MISS");
    assert_eq!(status(&app, &body, &key(&to)), "MISS");
    assert_ne!(
        status(&app, &body, &key(&other)),
        "MISS",
        "{other} untouched"
    );
}

#[tokio::test]
async fn one_redis_round_trip_and_one_statement_for_the_anime_a_cached_list_misses() {
    // Arrange: the local tier off, so every read is counted at Redis; a
    // warm ranking, then three of its anime dropped from Redis.
    let redis = RedisServer::start();
    let app = app(
        &redis,
        &[("CACHE_LOCAL_MAX_BYTES", "0"), ("CACHE_RESPONSES", "false")],
    )
    .await;
    let query = "{ popularAnime(limit: 10) { id title } }";
    until("a warm ranking", Duration::from_secs(10), async || {
        let body = app.graphql_debug(query).await;
        body["extensions"]["cache"]
            .as_array()
            .is_some_and(|all| all.iter().all(|read| read["status"] == "HIT"))
    })
    .await;
    let ids: Vec<String> = app.data(query, json!({})).await["popularAnime"]
        .as_array()
        .expect("list")
        .iter()
        .map(|a| a["id"].as_str().expect("id").to_owned())
        .collect();
    for id in &ids[2..5] {
        redis.command(&["DEL", &app.key(&format!("anime:id={id}"))]);
    }
    let mgets = |redis: &RedisServer| -> u64 {
        redis
            .command(&["INFO", "commandstats"])
            .lines()
            .find_map(|line| line.strip_prefix("cmdstat_mget:calls="))
            .and_then(|rest| rest.split(',').next())
            .and_then(|calls| calls.parse().ok())
            .unwrap_or(0)
    };
    let (before, statements) = (mgets(&redis), app.db_queries());

    // Act
    let body = app.graphql_debug(query).await;

    // Assert: PARTIAL; one MGET for the ranking, one for its ten anime,
    // one for the generations the three misses fill under; one statement
    // each for the three rows and their links.
    assert_eq!(status(&app, &body, "popular:limit=10"), "PARTIAL");
    let missed: Vec<String> = reads(&app, &body)
        .into_iter()
        .filter(|(.., status)| status == "MISS")
        .map(|(_, key, _)| key)
        .collect();
    assert_eq!(missed.len(), 3, "{body}");
    assert_eq!(
        app.db_queries() - statements,
        2,
        "rows and links of the three, at once"
    );
    let round_trips = mgets(&redis) - before;
    assert!(
        (2..=3).contains(&round_trips),
        "{round_trips} MGETs before the answer (ranking, anime, generation check)"
    );
}

#[tokio::test]
async fn a_kept_response_is_dropped_when_an_anime_in_it_changes_and_only_then() {
    let redis = RedisServer::start();
    let app = app(&redis, STRICT).await;
    let with_seven = r#"{ anime(id: "7") { id title } }"#;
    let without = r#"{ anime(id: "8") { id title } }"#;
    let kept = |app: &TestApp| app.state.cache.stats().response_snapshot().hits;
    // Two kept responses.
    for query in [with_seven, without] {
        until("a kept response", Duration::from_secs(10), async || {
            let before = kept(&app);
            app.graphql(query, json!({})).await;
            kept(&app) > before
        })
        .await;
    }

    write(
        &app,
        r#"updateAnime(id: "7", input: { title: "Seven Renamed" }) { id }"#,
    )
    .await;

    let before = kept(&app);
    let body = app.graphql(with_seven, json!({})).await;
    assert_eq!(body["data"]["anime"]["title"], "Seven Renamed");
    assert_eq!(kept(&app), before, "the response with anime 7 was dropped");
    app.graphql(without, json!({})).await;
    assert_eq!(kept(&app), before + 1, "the other one was kept");
}

#[tokio::test]
async fn a_score_change_drops_only_the_ranking_pages_it_reaches() {
    // Arrange: the top of the score ranking, and the anime with the lowest
    // score (far below that page).
    let redis = RedisServer::start();
    let app = app(&redis, &[]).await;
    let query = "{ top: animeList(sort: SCORE, perPage: 10) { items { id score } } }";
    warm(&app, query).await;
    let lowest = app
        .data(
            "{ animeList(sort: SCORE, order: ASC, perPage: 1) { items { id score } } }",
            json!({}),
        )
        .await["animeList"]["items"][0]
        .clone();
    let (low_id, low_score) = (
        lowest["id"].as_str().expect("id").to_owned(),
        lowest["score"].as_f64().expect("a score"),
    );
    let key = "anime_list:sort=score_desc:page=1:per_page=10";

    // Act + assert: a change far below the page leaves it a hit...
    write(
        &app,
        &format!(
            r#"updateAnime(id: "{low_id}", input: {{ score: {} }}) {{ id }}"#,
            low_score + 0.1
        ),
    )
    .await;
    let body = app.graphql_debug(query).await;
    assert_eq!(status(&app, &body, key), "HIT", "{body}");

    // ...and one that lands on it drops it.
    write(
        &app,
        &format!(r#"updateAnime(id: "{low_id}", input: {{ score: 9.99 }}) {{ id }}"#),
    )
    .await;
    let body = app.graphql_debug(query).await;
    assert_eq!(status(&app, &body, key), "MISS", "{body}");
    assert_eq!(body["data"]["top"]["items"][0]["id"], json!(low_id));
}
