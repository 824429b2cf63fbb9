//! An anime's relations as fields (`genreList`, `themes`, `studios`,
//! `players`, `episodeList`): one statement per relation for a whole page
//! on a miss and none on a hit, values equal to what the database holds,
//! writes that show at once, taxon renames that reach the cached anime
//! (which hold their genre, theme and studio ids) without reloading them
//! and deletes that reload only the anime that had the taxon, and the
//! complexity budget
//! that lets a 100-anime grid with relations through but refuses an
//! episode list per anime.

use std::collections::HashMap;
use std::time::Duration;

use anigo::db::{AnimeRepo, Taxon, Taxonomy};
use serde_json::{Value, json};

use crate::common::{Backend, TestApp, TestSettings, first_error_code, id_of};

/// Anime in these tests' databases: more than one page of 100.
const SEEDED: u64 = 120;

const BEARER: &str = "Bearer relations-admin-token-0123456789";

/// The page the frontend's grid sends.
const GRID: &str = "{ animePage(perPage: 100) { items { id genreList { name } themes { name } studios { name } players { embedUrl } } } }";

/// The detail page.
const DETAIL: &str = r#"query($id: ID!) { anime(id: $id) { id title titleOriginal ageRating genres genreList { name slug } themes { name } studios { name } players { embedUrl translator quality } episodeList { number title airedOn } } }"#;

async fn spawn(backend: Backend) -> TestApp {
    let mut settings = TestSettings::new(backend);
    settings.vars.push(("DEMO_SEED_COUNT", SEEDED.to_string()));
    settings
        .vars
        .push(("ADMIN_TOKEN", BEARER["Bearer ".len()..].to_owned()));
    TestApp::spawn_with(settings).await
}

/// The `name`s of a JSON list of objects.
fn names(list: &Value, field: &str) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("a list: {list}"))
        .iter()
        .map(|item| item[field].as_str().expect("a string").to_owned())
        .collect()
}

fn taxon_names(taxa: &HashMap<i32, Vec<Taxon>>, id: i32) -> Vec<String> {
    taxa[&id].iter().map(|t| t.name.clone()).collect()
}

/// The cache trace of a debug response: (resolver, status) per read.
fn trace(body: &Value) -> Vec<(String, String)> {
    body["extensions"]["cache"]
        .as_array()
        .unwrap_or_else(|| panic!("a cache trace: {body}"))
        .iter()
        .map(|entry| {
            (
                entry["resolver"].as_str().unwrap_or_default().to_owned(),
                entry["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

async fn detail(app: &TestApp, id: i64) -> Value {
    app.data(DETAIL, json!({ "id": id.to_string() })).await["anime"].clone()
}

async fn a_page_of_100_costs_one_statement_per_relation_then_none(backend: Backend) {
    // Arrange
    let app = spawn(backend).await;
    let repo = AnimeRepo::new(app.state.db.clone());

    // Act: the first grid reads everything from the database.
    let before = app.db_queries();
    let first = app.graphql_debug(GRID).await;
    let cold = app.db_queries() - before;

    // Assert: the page (count, ids), its anime (their rows, then the
    // genre, theme and studio ids of all of them: the anime's own
    // entries), one statement for the players of all 100, and one per
    // taxonomy list that names the genres, themes and studios.
    assert!(first.get("errors").is_none(), "{first}");
    assert_eq!(cold, 2 + 2 + 1 + 3, "statements of a cold grid");
    let entries = trace(&first);
    for resolver in ["anime", "Anime.players"] {
        let misses = entries
            .iter()
            .filter(|(name, status)| name == resolver && status == "MISS")
            .count();
        assert_eq!(misses, 100, "{resolver} misses in {entries:?}");
    }

    // Assert: what the database holds, for each anime.
    let items = first["data"]["animePage"]["items"]
        .as_array()
        .expect("items")
        .clone();
    let ids: Vec<i32> = items.iter().map(|a| id_of(a) as i32).collect();
    assert_eq!(ids, (1..=100).collect::<Vec<i32>>());
    let genres = repo.genres_of(&ids).await.expect("genres");
    let themes = repo.themes_of(&ids).await.expect("themes");
    let studios = repo.studios_of(&ids).await.expect("studios");
    let players = repo.players_of(&ids).await.expect("players");
    let mut nonempty = [0; 4];
    for (item, id) in items.iter().zip(&ids) {
        let shown = [
            names(&item["genreList"], "name"),
            names(&item["themes"], "name"),
            names(&item["studios"], "name"),
            names(&item["players"], "embedUrl"),
        ];
        let held = [
            taxon_names(&genres, *id),
            taxon_names(&themes, *id),
            taxon_names(&studios, *id),
            players[id].iter().map(|p| p.embed_url.clone()).collect(),
        ];
        assert_eq!(shown, held, "anime {id}");
        for (count, list) in nonempty.iter_mut().zip(&held) {
            *count += usize::from(!list.is_empty());
        }
    }
    assert!(
        nonempty.iter().all(|&count| count > 10),
        "the seed gives most anime some of each relation: {nonempty:?}"
    );

    // Act: the same grid again, once the write-back (in the background)
    // has landed.
    let mut keys: Vec<String> = ["genre", "theme", "studio"]
        .iter()
        .map(|kind| app.key(&format!("taxonomy:kind={kind}")))
        .collect();
    keys.push(app.key("anime_paginated:page=1:per_page=100"));
    for prefix in ["anime", "anime_players"] {
        keys.extend(ids.iter().map(|id| app.key(&format!("{prefix}:id={id}"))));
    }
    let redis = crate::support::shared_redis();
    let missing = || {
        keys.iter()
            .filter(|key| redis.command(&["EXISTS", key.as_str()]).trim() != "1")
            .cloned()
            .collect::<Vec<_>>()
    };
    let mut exists = vec!["EXISTS"];
    exists.extend(keys.iter().map(String::as_str));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while redis.command(&exists).trim() != keys.len().to_string() {
        if std::time::Instant::now() > deadline {
            panic!(
                "never written back: {:?}; stats {:?}",
                missing(),
                anigo::cache::Resolver::ALL.map(|r| app.state.cache.stats().snapshot(r))
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = app.db_queries();
    let second = app.graphql_debug(GRID).await;

    // Assert: no statement, every read a hit, the same data.
    assert_eq!(app.db_queries() - before, 0, "statements of a warm grid");
    let entries = trace(&second);
    // The page, each anime (with its genre, theme and studio ids), the
    // players of each, and each taxonomy list once for the whole page.
    assert_eq!(entries.len(), 1 + 100 + 100 + 3, "{entries:?}");
    assert_eq!(entries[0].0, "animePage", "{entries:?}");
    for (resolver, reads) in [("anime", 100), ("Anime.players", 100), ("taxonomy", 3)] {
        assert_eq!(
            entries.iter().filter(|(name, _)| name == resolver).count(),
            reads,
            "{resolver} in {entries:?}"
        );
    }
    assert!(
        entries.iter().all(|(_, status)| status == "HIT"),
        "{entries:?}"
    );
    assert_eq!(second["data"], first["data"]);
}

#[tokio::test]
async fn a_page_of_100_costs_one_statement_per_relation_then_none_sqlite() {
    a_page_of_100_costs_one_statement_per_relation_then_none(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_page_of_100_costs_one_statement_per_relation_then_none_postgres() {
    a_page_of_100_costs_one_statement_per_relation_then_none(Backend::Postgres).await;
}

#[tokio::test]
async fn the_detail_page_shows_every_relation_as_the_database_holds_it() {
    // Arrange: an anime of the seed with episodes and players.
    let app = spawn(Backend::Sqlite).await;
    let repo = AnimeRepo::new(app.state.db.clone());
    let ids: Vec<i32> = (1..=SEEDED as i32).collect();
    let episodes = repo.episodes_of(&ids).await.expect("episodes");
    let players = repo.players_of(&ids).await.expect("players");
    let id = *ids
        .iter()
        .find(|id| !episodes[id].is_empty() && !players[id].is_empty())
        .expect("a seeded anime with episodes and players");
    let genres = repo.genres_of(&[id]).await.expect("genres");
    let row = repo.by_id(id).await.expect("read").expect("exists").anime;

    // Act
    let anime = detail(&app, i64::from(id)).await;

    // Assert
    assert_eq!(anime["title"], json!(row.title));
    assert_eq!(anime["titleOriginal"], json!(row.title_original));
    let rating = row.age_rating.map(|r| match r.label() {
        "PG-13" => "PG_13".to_owned(),
        "R+" => "R_PLUS".to_owned(),
        other => other.to_uppercase(),
    });
    assert_eq!(anime["ageRating"], json!(rating));
    let held: Vec<Value> = genres[&id]
        .iter()
        .map(|g| json!({ "name": g.name, "slug": g.slug }))
        .collect();
    assert_eq!(anime["genreList"], json!(held));
    assert_eq!(
        anime["genres"],
        json!(genres[&id].iter().map(|g| &g.name).collect::<Vec<_>>()),
        "the names list and the objects agree"
    );
    let held: Vec<Value> = players[&id]
        .iter()
        .map(|p| json!({ "embedUrl": p.embed_url, "translator": p.translator, "quality": p.quality }))
        .collect();
    assert_eq!(anime["players"], json!(held));
    let held: Vec<Value> = episodes[&id]
        .iter()
        .map(|e| {
            json!({
                "number": e.number,
                "title": e.title,
                "airedOn": e.aired_on.map(|d| d.format("%Y-%m-%d").to_string()),
            })
        })
        .collect();
    assert_eq!(anime["episodeList"], json!(held));
}

#[tokio::test]
async fn an_update_of_relations_shows_on_the_next_read() {
    // Arrange: the detail page read, so its relations are cached.
    let app = spawn(Backend::Sqlite).await;
    let before = detail(&app, 5).await;
    let cached = app
        .graphql_debug(r#"{ anime(id: "5") { genreList { name } players { embedUrl } } }"#)
        .await;
    assert!(
        trace(&cached).iter().all(|(_, status)| status == "HIT"),
        "{cached}"
    );

    // Act
    let updated = app
        .admin(
            r#"mutation { updateAnime(id: "5", input: { genres: ["Zeta Genre", "Action"], players: [{ embedUrl: "https://player.example/new", translator: "Fansub", quality: "1080p" }], ageRating: PG_13 }) { id ageRating genreList { name } players { embedUrl } } }"#,
            Some(BEARER),
        )
        .await;
    let after = detail(&app, 5).await;

    // Assert: the mutation's answer and the next read both show the change.
    assert!(updated.get("errors").is_none(), "{updated}");
    assert_eq!(
        updated["data"]["updateAnime"]["genreList"],
        json!([{ "name": "Action" }, { "name": "Zeta Genre" }])
    );
    assert_eq!(
        names(&after["genreList"], "name"),
        ["Action", "Zeta Genre"],
        "{after}"
    );
    assert_eq!(after["genres"], json!(["Action", "Zeta Genre"]));
    assert_eq!(
        after["players"],
        json!([{ "embedUrl": "https://player.example/new", "translator": "Fansub", "quality": "1080p" }])
    );
    assert_eq!(after["ageRating"], "PG_13");
    assert_ne!(before["players"], after["players"]);
    // Untouched relations are unchanged.
    assert_eq!(after["themes"], before["themes"]);
    assert_eq!(after["episodeList"], before["episodeList"]);

    // Act: `null` clears the age rating.
    let cleared = app
        .admin(
            r#"mutation { updateAnime(id: "5", input: { ageRating: null }) { id } }"#,
            Some(BEARER),
        )
        .await;
    assert!(cleared.get("errors").is_none(), "{cleared}");
    assert_eq!(detail(&app, 5).await["ageRating"], Value::Null);
}

#[tokio::test]
async fn a_created_anime_round_trips_every_relation() {
    // Arrange
    let app = spawn(Backend::Sqlite).await;
    let create = r#"mutation {
        createAnime(input: {
            title: "Relations", titleOriginal: "関係", format: TV, status: FINISHED,
            ageRating: R_PLUS, genres: ["Drama"], themes: ["Time Travel", "School"],
            studios: ["Studio Rel"],
            players: [{ embedUrl: "https://player.example/a" }, { embedUrl: "https://player.example/b", quality: "720p" }],
            episodeList: [{ number: 2, title: "Two" }, { number: 1, title: "One", airedOn: "2024-04-06" }],
            pictureUrl: "https://img.example/r.webp", synopsis: "s"
        }) { id }
    }"#;

    // Act
    let created = app.admin(create, Some(BEARER)).await;
    let id = id_of(&created["data"]["createAnime"]);
    let anime = detail(&app, id).await;

    // Assert
    assert_eq!(anime["titleOriginal"], "関係");
    assert_eq!(anime["ageRating"], "R_PLUS");
    assert_eq!(names(&anime["genreList"], "name"), ["Drama"]);
    assert_eq!(anime["genreList"][0]["slug"], "drama");
    assert_eq!(names(&anime["themes"], "name"), ["Time Travel", "School"]);
    assert_eq!(names(&anime["studios"], "name"), ["Studio Rel"]);
    assert_eq!(
        anime["players"],
        json!([
            { "embedUrl": "https://player.example/a", "translator": null, "quality": null },
            { "embedUrl": "https://player.example/b", "translator": null, "quality": "720p" },
        ])
    );
    assert_eq!(
        anime["episodeList"],
        json!([
            { "number": 1, "title": "One", "airedOn": "2024-04-06" },
            { "number": 2, "title": "Two", "airedOn": null },
        ])
    );

    // A bad episode list is refused, naming the field.
    let body = app
        .admin(
            &create.replace(r#"{ number: 2, title: "Two" }"#, r#"{ number: 1 }"#),
            Some(BEARER),
        )
        .await;
    assert_eq!(first_error_code(&body), "BAD_USER_INPUT", "{body}");
    assert_eq!(
        body["errors"][0]["extensions"]["argument"],
        "input.episodeList"
    );
}

#[tokio::test]
async fn a_theme_rename_or_delete_reaches_cached_relations_without_reloading_them() {
    // Arrange: the themes of an anime with two or more cached.
    let app = spawn(Backend::Sqlite).await;
    let repo = AnimeRepo::new(app.state.db.clone());
    let ids: Vec<i32> = (1..=SEEDED as i32).collect();
    let held = repo.themes_of(&ids).await.expect("themes");
    let id = *ids
        .iter()
        .find(|id| held.get(id).is_some_and(|themes| themes.len() >= 2))
        .expect("a seeded anime with two themes");
    let query = format!(r#"{{ anime(id: "{id}") {{ title themes {{ name slug }} }} }}"#);
    let before = app.graphql_debug(&query).await;
    let themes = before["data"]["anime"]["themes"]
        .as_array()
        .expect("themes")
        .clone();
    assert_eq!(themes.len(), held[&id].len(), "{before}");
    let first = themes[0]["slug"].as_str().expect("slug").to_owned();
    let second = themes[1]["slug"].as_str().expect("slug").to_owned();

    // Act: rename one theme in place, through the service (what the admin
    // mutation runs).
    let service = &app.state.anime;
    service
        .rename_taxon(Taxonomy::Theme, &first, "Renamed", None)
        .await
        .expect("rename");
    let renamed = app.graphql_debug(&query).await;

    // Assert: the new name, and the anime's own entry (row and theme ids)
    // still a hit: only the taxonomy list was invalidated.
    let shown = &renamed["data"]["anime"]["themes"];
    assert_eq!(
        shown[0],
        json!({ "name": "Renamed", "slug": first }),
        "{renamed}"
    );
    assert_eq!(shown.as_array().map(Vec::len), Some(themes.len()));
    assert_eq!(
        trace(&renamed),
        [
            ("anime".to_owned(), "HIT".to_owned()),
            ("taxonomy".to_owned(), "MISS".to_owned())
        ],
        "{renamed}"
    );

    // Act: delete another theme.
    service
        .delete_taxon(Taxonomy::Theme, &second)
        .await
        .expect("delete");
    let after = app.graphql_debug(&query).await;

    // Assert: the deleted theme gone, the rename kept. A delete drops the
    // entry of each anime that had it (no cached entry may keep the id of
    // a taxon that is gone).
    let shown = &after["data"]["anime"]["themes"];
    assert_eq!(
        shown[0],
        json!({ "name": "Renamed", "slug": first }),
        "{after}"
    );
    assert!(
        !names(shown, "slug").contains(&second),
        "deleted theme shown: {after}"
    );
    assert_eq!(shown.as_array().map(Vec::len), Some(themes.len() - 1));
    assert_eq!(
        trace(&after),
        [
            ("anime".to_owned(), "MISS".to_owned()),
            ("taxonomy".to_owned(), "MISS".to_owned())
        ],
        "{after}"
    );
}

#[tokio::test]
async fn the_complexity_budget_admits_the_grid_and_the_detail_page_but_not_abuse() {
    let app = spawn(Backend::Sqlite).await;
    let scalars = "id title titleEnglish titleOriginal ageRating format episodes status season year score popularity pictureUrl";
    let full_grid = format!(
        "{{ animePage(perPage: 100) {{ total items {{ {scalars} genreList {{ name slug }} themes {{ name }} studios {{ name }} players {{ embedUrl }} }} }} }}"
    );
    for (name, query, variables) in [
        ("grid", GRID.to_owned(), json!({})),
        ("full grid", full_grid.clone(), json!({})),
        ("detail", DETAIL.to_owned(), json!({ "id": "1" })),
    ] {
        let body = app.graphql(&query, variables).await;
        assert!(body.get("errors").is_none(), "{name}: {body}");
    }

    let abusive = [
        // An episode list for every anime of a page.
        "{ animePage(perPage: 100) { items { id episodeList { number title airedOn } } } }"
            .to_owned(),
        // Two full grids in one document.
        format!(
            "{{ a: {} b: {} }}",
            &full_grid[1..full_grid.len() - 1],
            &full_grid[1..full_grid.len() - 1]
        ),
        // Relations of every anime of a list of every anime of a page.
        "{ animePage(perPage: 100) { items { genreList { name } themes { name } studios { name } players { embedUrl translator quality } } } popularAnime(limit: 100) { genreList { name slug animeCount } themes { name slug animeCount } studios { name slug animeCount } } }".to_owned(),
    ];
    for query in abusive {
        let body = app.graphql(&query, json!({})).await;
        assert_eq!(
            first_error_code(&body),
            "QUERY_TOO_COMPLEX",
            "{query}: {body}"
        );
    }
}
