//! Every query, on PostgreSQL and on SQLite, against seeded data.

use anigo::db::AnimeRepo;
use anigo::entities::{anime, episode, player};
use sea_orm::{ConnectionTrait, EntityTrait, QueryOrder, Statement};
use serde_json::json;

use crate::common::{Backend, SEEDED, TestApp, id_of};

/// All anime straight from the database, for expected values.
async fn all_anime(app: &TestApp) -> Vec<anime::Model> {
    anime::Entity::find()
        .order_by_asc(anime::Column::Id)
        .all(&app.state.db)
        .await
        .expect("reading anime directly")
}

async fn popular_anime_is_ordered_by_popularity_then_id(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let mut expected: Vec<(i64, i64)> = all_anime(&app)
        .await
        .iter()
        .map(|a| (i64::from(a.id), i64::from(a.popularity)))
        .collect();
    expected.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));

    // Act
    let top_default = app.data("{ popularAnime { id } }", json!({})).await["popularAnime"]
        .as_array()
        .expect("list")
        .len();
    let top_100 = app.popular(100).await;
    let top_1 = app.popular(1).await;

    // Assert
    assert_eq!(top_default, 20, "default limit is 20");
    assert_eq!(top_100, expected[..100].to_vec());
    assert_eq!(top_1, expected[..1].to_vec());
}

async fn anime_page_arithmetic_holds(backend: Backend) {
    let app = TestApp::spawn(backend).await;

    let first = app.page(1, 20).await;
    assert_eq!(first["total"], json!(SEEDED));
    assert_eq!(first["page"], json!(1));
    assert_eq!(first["perPage"], json!(20));
    assert_eq!(first["hasNextPage"], json!(true));
    let ids: Vec<i64> = first["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(
        ids,
        (1..=20).collect::<Vec<_>>(),
        "id order from the first id"
    );

    let second_to_last = app.page(12, 20).await;
    assert_eq!(second_to_last["hasNextPage"], json!(true));
    assert_eq!(second_to_last["items"].as_array().expect("items").len(), 20);

    let last = app.page(13, 20).await;
    let last_ids: Vec<i64> = last["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(
        last_ids,
        (241..=250).collect::<Vec<_>>(),
        "last page holds the remainder"
    );
    assert_eq!(last["hasNextPage"], json!(false));

    let exact = app.page(5, 50).await;
    assert_eq!(
        exact["hasNextPage"],
        json!(false),
        "page 5 of 50 ends exactly at 250"
    );

    let beyond = app.page(14, 20).await;
    assert_eq!(beyond["items"], json!([]));
    assert_eq!(beyond["hasNextPage"], json!(false));
    assert_eq!(beyond["total"], json!(SEEDED));

    let far = app.page(i64::from(i32::MAX), 100).await;
    assert_eq!(far["items"], json!([]), "a huge page number is just empty");

    let defaults = app
        .data("{ animePage { page perPage items { id } } }", json!({}))
        .await;
    assert_eq!(defaults["animePage"]["page"], json!(1));
    assert_eq!(defaults["animePage"]["perPage"], json!(20));
}

async fn count_and_single_anime_match_the_database(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rows = all_anime(&app).await;
    let sample = &rows[41];

    assert_eq!(app.count().await, SEEDED as i64);

    let data = app
        .data(
            "query($id: ID!) { anime(id: $id) { id title titleEnglish format episodes status season year score popularity genres pictureUrl synopsis createdAt updatedAt } }",
            json!({ "id": sample.id.to_string() }),
        )
        .await;
    let anime = &data["anime"];
    assert_eq!(id_of(anime), i64::from(sample.id));
    assert_eq!(anime["title"], json!(sample.title));
    assert_eq!(anime["titleEnglish"], json!(sample.title_english));
    assert_eq!(
        anime["format"],
        serde_json::to_value(sample.format).expect("enum")
    );
    assert_eq!(
        anime["status"],
        serde_json::to_value(sample.status).expect("enum")
    );
    assert_eq!(anime["episodes"], json!(sample.episodes));
    assert_eq!(anime["year"], json!(sample.year));
    assert_eq!(anime["score"], json!(sample.score));
    assert_eq!(anime["popularity"], json!(sample.popularity));
    let genres: Vec<String> = AnimeRepo::new(app.state.db.clone())
        .genres_of(&[sample.id])
        .await
        .expect("genres")[&sample.id]
        .iter()
        .map(|genre| genre.name.clone())
        .collect();
    assert!(!genres.is_empty());
    assert_eq!(anime["genres"], json!(genres));
    assert_eq!(anime["synopsis"], json!(sample.synopsis));
    assert!(
        anime["createdAt"]
            .as_str()
            .is_some_and(|t| t.starts_with("2024-01-01"))
    );
    let synopsis_len = sample.synopsis.len();
    assert!((400..=1200).contains(&synopsis_len));

    let missing = app
        .data("{ anime(id: \"999999\") { id } }", json!({}))
        .await;
    assert_eq!(
        missing["anime"],
        json!(null),
        "an unknown id is null, not an error"
    );
}

#[tokio::test]
async fn postgres_popular_anime_is_ordered_by_popularity_then_id() {
    popular_anime_is_ordered_by_popularity_then_id(Backend::Postgres).await;
}

#[tokio::test]
async fn sqlite_popular_anime_is_ordered_by_popularity_then_id() {
    popular_anime_is_ordered_by_popularity_then_id(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_anime_page_arithmetic_holds() {
    anime_page_arithmetic_holds(Backend::Postgres).await;
}

#[tokio::test]
async fn sqlite_anime_page_arithmetic_holds() {
    anime_page_arithmetic_holds(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_count_and_single_anime_match_the_database() {
    count_and_single_anime_match_the_database(Backend::Postgres).await;
}

#[tokio::test]
async fn sqlite_count_and_single_anime_match_the_database() {
    count_and_single_anime_match_the_database(Backend::Sqlite).await;
}

/// Every seeded row of a database in a backend-neutral form: anime rows,
/// each taxonomy's links as (anime id, position, name, slug), players and
/// episodes without their surrogate ids.
#[derive(Debug, PartialEq)]
struct Catalogue {
    anime: Vec<anime::Model>,
    links: Vec<Vec<(i32, i16, String, String)>>,
    players: Vec<PlayerRow>,
    episodes: Vec<(i32, i32, Option<String>, Option<chrono::NaiveDate>)>,
}

/// A player without its id: anime id, position, URL, translator, quality.
type PlayerRow = (i32, i16, String, Option<String>, Option<String>);

async fn catalogue(app: &TestApp) -> Catalogue {
    let db = &app.state.db;
    let mut links = Vec::new();
    for (table, join, key) in [
        ("genre", "anime_genre", "genre_id"),
        ("theme", "anime_theme", "theme_id"),
        ("studio", "anime_studio", "studio_id"),
    ] {
        let rows = db
            .query_all_raw(Statement::from_string(
                db.get_database_backend(),
                format!(
                    "SELECT j.anime_id, j.position, t.name, t.slug FROM {join} j \
                     JOIN {table} t ON t.id = j.{key} ORDER BY j.anime_id, j.position"
                ),
            ))
            .await
            .expect("links");
        links.push(
            rows.iter()
                .map(|row| {
                    (
                        row.try_get("", "anime_id").expect("anime_id"),
                        row.try_get("", "position").expect("position"),
                        row.try_get("", "name").expect("name"),
                        row.try_get("", "slug").expect("slug"),
                    )
                })
                .collect(),
        );
    }
    let players = player::Entity::find()
        .order_by_asc(player::Column::AnimeId)
        .order_by_asc(player::Column::Position)
        .all(db)
        .await
        .expect("players")
        .into_iter()
        .map(|p| (p.anime_id, p.position, p.embed_url, p.translator, p.quality))
        .collect();
    let episodes = episode::Entity::find()
        .order_by_asc(episode::Column::AnimeId)
        .order_by_asc(episode::Column::Number)
        .all(db)
        .await
        .expect("episodes")
        .into_iter()
        .map(|e| (e.anime_id, e.number, e.title, e.aired_on))
        .collect();
    Catalogue {
        anime: all_anime(app).await,
        links,
        players,
        episodes,
    }
}

#[tokio::test]
async fn the_same_seed_gives_the_same_catalogue_on_both_databases() {
    // Arrange
    let pg = TestApp::spawn(Backend::Postgres).await;
    let lite = TestApp::spawn(Backend::Sqlite).await;

    // Act
    let (pg, lite) = (catalogue(&pg).await, catalogue(&lite).await);

    // Assert: every table, row for row.
    assert_eq!(pg.anime.len(), SEEDED as usize);
    assert!(pg.links.iter().all(|rows| !rows.is_empty()));
    assert!(!pg.players.is_empty() && !pg.episodes.is_empty());
    assert_eq!(pg.anime, lite.anime);
    assert_eq!(pg.links, lite.links);
    assert_eq!(pg.players, lite.players);
    assert_eq!(pg.episodes, lite.episodes);
}
