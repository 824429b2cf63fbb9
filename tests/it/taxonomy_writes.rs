//! Genre, theme and studio writes through the API: creates, renames (the
//! slug stays unless moved) and deletes are visible on the next read of
//! every cached field they affect (the taxonomy lists, `genre(slug)`, the
//! genre names embedded in `anime(id)` and `popularAnime`), and bad input
//! is BAD_USER_INPUT naming the argument.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Backend, TestApp, TestSettings, first_error_code};
use crate::two_tier::until;

const TOKEN: &str = "taxonomy-admin-token-0123456789";

async fn admin_app(backend: Backend) -> TestApp {
    let mut settings = TestSettings::new(backend);
    settings.vars.push(("ADMIN_TOKEN", TOKEN.to_owned()));
    TestApp::spawn_with(settings).await
}

async fn admin(app: &TestApp, query: &str) -> Value {
    app.admin(query, Some(&format!("Bearer {TOKEN}"))).await
}

/// The genre with the most anime: (slug, name, one of its anime ids).
async fn busiest_genre(app: &TestApp) -> (String, String, i64) {
    let data = app
        .data("{ genres { slug name animeCount } }", json!({}))
        .await;
    let genre = data["genres"]
        .as_array()
        .expect("genres")
        .iter()
        .max_by_key(|g| g["animeCount"].as_u64())
        .expect("seeded genres")
        .clone();
    let name = genre["name"].as_str().expect("name").to_owned();
    let page = app
        .data(
            "{ animePage(perPage: 100) { items { id genres } } }",
            json!({}),
        )
        .await;
    let id = page["animePage"]["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|a| {
            a["genres"]
                .as_array()
                .expect("genres")
                .contains(&json!(name))
        })
        .map(crate::common::id_of)
        .expect("an anime of the busiest genre on the first page");
    (genre["slug"].as_str().expect("slug").to_owned(), name, id)
}

async fn genres_of(app: &TestApp, id: i64) -> Vec<String> {
    let data = app
        .data(
            &format!("{{ anime(id: \"{id}\") {{ genres }} }}"),
            json!({}),
        )
        .await;
    serde_json::from_value(data["anime"]["genres"].clone()).expect("names")
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|g| g["name"].as_str().expect("name").to_owned())
        .collect()
}

async fn genre_renames_reach_every_cached_read(backend: Backend) {
    // Arrange: every read cached before the write.
    let app = admin_app(backend).await;
    let (slug, name, id) = busiest_genre(&app).await;
    assert!(genres_of(&app, id).await.contains(&name));
    let popular = "{ popularAnime(limit: 100) { id genres } }";
    app.data(popular, json!({})).await;
    let entry = format!("{{ genre(slug: \"{slug}\") {{ name slug animeCount }} }}");
    let before = app.data(&entry, json!({})).await;
    // Cached: the next read is a hit (once the background write-back has
    // landed).
    until(
        "genre(slug) to be a cache hit",
        Duration::from_secs(5),
        async || {
            let trace = app.graphql_debug(&entry).await;
            trace["extensions"]["cache"][0]["status"] == "HIT"
        },
    )
    .await;

    // Act: rename, keeping the slug.
    let renamed = admin(
        &app,
        &format!("mutation {{ renameGenre(slug: \"{slug}\", name: \"Renamed Genre\") {{ name slug animeCount }} }}"),
    )
    .await;

    // Assert
    assert!(renamed.get("errors").is_none(), "{renamed}");
    assert_eq!(renamed["data"]["renameGenre"]["slug"], slug.as_str());
    let genres = genres_of(&app, id).await;
    assert!(genres.contains(&"Renamed Genre".to_owned()), "{genres:?}");
    assert!(!genres.contains(&name), "{genres:?}");
    let after = app.data(&entry, json!({})).await;
    assert_eq!(after["genre"]["name"], "Renamed Genre");
    assert_eq!(after["genre"]["animeCount"], before["genre"]["animeCount"]);
    let list = app.data("{ genres { name } }", json!({})).await;
    assert!(names(&list["genres"]).contains(&"Renamed Genre".to_owned()));
    let data = app.data(popular, json!({})).await;
    let text = data.to_string();
    assert!(
        !text.contains(&format!("\"{name}\"")),
        "old name still in popularAnime"
    );

    // Act: move it to a new slug.
    let moved = admin(
        &app,
        &format!("mutation {{ renameGenre(slug: \"{slug}\", name: \"Renamed Genre\", newSlug: \"renamed\") {{ slug }} }}"),
    )
    .await;
    assert_eq!(moved["data"]["renameGenre"]["slug"], "renamed", "{moved}");
    assert_eq!(app.data(&entry, json!({})).await["genre"], Value::Null);
    let new_entry = app
        .data("{ genre(slug: \"renamed\") { name } }", json!({}))
        .await;
    assert_eq!(new_entry["genre"]["name"], "Renamed Genre");
}

#[tokio::test]
async fn sqlite_genre_renames_reach_every_cached_read() {
    genre_renames_reach_every_cached_read(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_genre_renames_reach_every_cached_read() {
    genre_renames_reach_every_cached_read(Backend::Postgres).await;
}

#[tokio::test]
async fn creates_and_deletes_show_at_once_and_bad_input_names_the_argument() {
    // Arrange
    let app = admin_app(Backend::Sqlite).await;
    let (slug, name, id) = busiest_genre(&app).await;
    app.data("{ studios { name } }", json!({})).await;
    app.data("{ studio(slug: \"new-studio\") { name } }", json!({}))
        .await;

    // Act: create a studio; it shows in the cached list and entry.
    let created = admin(
        &app,
        "mutation { createStudio(name: \"  New Studio \") { name slug animeCount } }",
    )
    .await;

    // Assert
    assert_eq!(
        created["data"]["createStudio"],
        json!({ "name": "New Studio", "slug": "new-studio", "animeCount": 0 }),
        "{created}"
    );
    let list = app.data("{ studios { name } }", json!({})).await;
    assert!(names(&list["studios"]).contains(&"New Studio".to_owned()));
    let entry = app
        .data("{ studio(slug: \"new-studio\") { name } }", json!({}))
        .await;
    assert_eq!(entry["studio"]["name"], "New Studio");

    // Duplicates and bad names are refused, naming the argument.
    for (mutation, argument) in [
        ("createStudio(name: \"New Studio\")", "name"),
        ("createGenre(name: \"   \")", "name"),
        (
            &*format!("createGenre(name: \"{}\")", "x".repeat(41)),
            "name",
        ),
        (
            "renameTheme(slug: \"no-such\", name: \"X\", newSlug: \"Bad Slug\")",
            "newSlug",
        ),
    ] {
        let body = admin(&app, &format!("mutation {{ {mutation} {{ slug }} }}")).await;
        assert_eq!(
            first_error_code(&body),
            "BAD_USER_INPUT",
            "{mutation}: {body}"
        );
        assert_eq!(
            body["errors"][0]["extensions"]["argument"], argument,
            "{mutation}: {body}"
        );
    }
    let missing = admin(&app, "mutation { deleteTheme(slug: \"no-such\") { slug } }").await;
    assert_eq!(first_error_code(&missing), "NOT_FOUND", "{missing}");
    let anonymous = app
        .admin("mutation { deleteGenre(slug: \"action\") { slug } }", None)
        .await;
    assert_eq!(
        first_error_code(&anonymous),
        "UNAUTHENTICATED",
        "{anonymous}"
    );

    // Act: delete the busiest genre.
    let deleted = admin(
        &app,
        &format!("mutation {{ deleteGenre(slug: \"{slug}\") {{ name animeCount }} }}"),
    )
    .await;

    // Assert: gone from its anime, the list and its entry.
    assert_eq!(
        deleted["data"]["deleteGenre"]["name"],
        name.as_str(),
        "{deleted}"
    );
    assert!(deleted["data"]["deleteGenre"]["animeCount"].as_u64() > Some(0));
    assert!(!genres_of(&app, id).await.contains(&name));
    let list = app.data("{ genres { name } }", json!({})).await;
    assert!(!names(&list["genres"]).contains(&name));
    let entry = app
        .data(
            &format!("{{ genre(slug: \"{slug}\") {{ name }} }}"),
            json!({}),
        )
        .await;
    assert_eq!(entry["genre"], Value::Null);
    let again = admin(
        &app,
        &format!("mutation {{ deleteGenre(slug: \"{slug}\") {{ name }} }}"),
    )
    .await;
    assert_eq!(first_error_code(&again), "NOT_FOUND", "{again}");
}
