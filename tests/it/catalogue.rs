//! The catalogue's data model against real PostgreSQL and SQLite: the
//! migration that moved JSON genres into rows (and back), the batch
//! relation loaders and their statement counts, writes that create genres,
//! the list query's filters and orders, title search, and the query plans
//! that prove the indexes are used.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anigo::db::anime_query::{self, normalize_search};
use anigo::db::{
    AnimeFilter, AnimeOrder, AnimeRepo, AnimeSort, SortDirection, Taxonomy, YearRange,
};
use anigo::entities::anime::{self, Format, Season, Status};
use anigo::service::{AnimeChanges, AnimeDraft};
use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectionTrait, Database, DatabaseConnection, DbBackend, EntityTrait, QueryOrder, Statement,
    TransactionSession, TransactionTrait,
};

use crate::common::{Backend, SEEDED, TestApp};
use crate::support;

/// A fresh database URL for `backend` (the SQLite file lives in `dir`).
fn fresh_url(backend: Backend, dir: &tempfile::TempDir) -> String {
    match backend {
        Backend::Postgres => support::fresh_database_url(),
        Backend::Sqlite => format!("sqlite://{}/old.db?mode=rwc", dir.path().display()),
    }
}

async fn query_strings(conn: &impl ConnectionTrait, sql: &str) -> Vec<Vec<String>> {
    conn.query_all_raw(Statement::from_string(conn.get_database_backend(), sql))
        .await
        .unwrap_or_else(|err| panic!("{sql}: {err}"))
        .iter()
        .map(|row| {
            (0..)
                .map_while(|i| row.try_get_by_index::<Option<String>>(i).ok())
                .map(Option::unwrap_or_default)
                .collect()
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The migration
// ---------------------------------------------------------------------------

/// Genre names the old schema held, odd ones included: case variants of
/// one name, two spellings with one slug, non-ASCII, a quote, spaces.
const OLD_NAMES: &[&str] = &[
    "Action",
    "action",
    "ACTION",
    "Sci-Fi",
    "Sci Fi",
    "Slice of Life",
    "Drama",
    "Comedy",
    "Pokémon Battles",
    "日常",
    "Director's Cut",
    "  Spaced  ",
    "Romance",
    "Mystery",
];

/// Old anime (more than one page of the migration's reader): the JSON
/// array of each, empty and 10-name arrays and repeats within one array
/// among them.
fn old_genre_arrays() -> Vec<Vec<String>> {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    (0..12_345)
        .map(|i| match i % 9 {
            0 => Vec::new(),
            1 => OLD_NAMES[..10]
                .iter()
                .rev()
                .map(|s| (*s).to_owned())
                .collect(),
            2 => vec!["Drama".into(), "Drama".into(), "action".into()],
            _ => (0..1 + next(5))
                .map(|_| OLD_NAMES[next(OLD_NAMES.len() as u64) as usize].to_owned())
                .collect(),
        })
        .collect()
}

/// `names` without repeats, first occurrence kept (what the rows hold).
fn first_occurrences(names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in names {
        if !out.contains(name) {
            out.push(name.clone());
        }
    }
    out
}

async fn insert_old_anime(conn: &DatabaseConnection, arrays: &[Vec<String>]) {
    for chunk in arrays.chunks(500) {
        let values: Vec<String> = chunk
            .iter()
            .map(|names| {
                let json = serde_json::to_string(names)
                    .expect("json")
                    .replace('\'', "''");
                format!(
                    "('Old', 'TV', 'FINISHED', 1, '{json}', 'https://img.example/x.webp', 'x', \
                     '2024-01-01T00:00:00Z', '2024-01-01T00:00:00Z')"
                )
            })
            .collect();
        conn.execute_unprepared(&format!(
            "INSERT INTO anime (title, format, status, popularity, genres, picture_url, synopsis, created_at, updated_at) VALUES {}",
            values.join(", ")
        ))
        .await
        .expect("inserting old-shape anime");
    }
}

async fn migration_moves_every_genre_into_rows_and_back(backend: Backend) {
    // Arrange: a database at the first migration, with old-shape rows.
    let dir = tempfile::tempdir().expect("tmp");
    let conn = Database::connect(&fresh_url(backend, &dir))
        .await
        .expect("connect");
    Migrator::up(&conn, Some(1)).await.expect("first migration");
    let arrays = old_genre_arrays();
    insert_old_anime(&conn, &arrays).await;

    // Act
    Migrator::up(&conn, None)
        .await
        .expect("the catalogue migration");

    // Assert: every anime's names, in order, from the rows.
    let repo_rows = query_strings(
        &conn,
        "SELECT CAST(j.anime_id AS TEXT) AS id, g.name FROM anime_genre j JOIN genre g ON g.id = j.genre_id \
         ORDER BY j.anime_id, j.position",
    )
    .await;
    let mut moved: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for row in repo_rows {
        let id: usize = row[0].parse().expect("id");
        moved.entry(id).or_default().push(row[1].clone());
    }
    for (index, names) in arrays.iter().enumerate() {
        let expected = first_occurrences(names);
        let got = moved.remove(&(index + 1)).unwrap_or_default();
        assert_eq!(got, expected, "anime {}", index + 1);
    }
    assert!(moved.is_empty(), "links of unknown anime: {moved:?}");
    let genres = query_strings(&conn, "SELECT name, slug FROM genre ORDER BY name").await;
    let slugs: HashMap<String, String> = genres
        .iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
    assert_eq!(
        slugs.len(),
        OLD_NAMES.len(),
        "one row per distinct name: {slugs:?}"
    );
    assert_eq!(slugs["Slice of Life"], "slice-of-life");
    assert_eq!(slugs["Pokémon Battles"], "pokemon-battles");
    assert_eq!(slugs["Director's Cut"], "directors-cut");
    assert_eq!(slugs["  Spaced  "], "spaced");
    // The most used spelling keeps the plain slug; the others get numbers.
    assert_eq!(slugs["action"], "action", "{slugs:?}");
    let mut action: Vec<&str> = ["Action", "ACTION"]
        .iter()
        .map(|n| slugs[*n].as_str())
        .collect();
    action.sort_unstable();
    assert_eq!(action, ["action-2", "action-3"]);
    let mut sci_fi = [slugs["Sci-Fi"].as_str(), slugs["Sci Fi"].as_str()];
    sci_fi.sort_unstable();
    assert_eq!(sci_fi, ["sci-fi", "sci-fi-2"]);
    let columns = query_strings(&conn, "SELECT * FROM anime WHERE id = 1").await;
    assert!(!columns.is_empty());

    // Act: back to the first migration.
    Migrator::down(&conn, Some(1)).await.expect("down");

    // Assert: the JSON arrays again, repeats within one array dropped.
    let restored = query_strings(&conn, "SELECT CAST(genres AS TEXT) FROM anime ORDER BY id").await;
    assert_eq!(restored.len(), arrays.len());
    for (index, (row, names)) in restored.iter().zip(&arrays).enumerate() {
        let got: Vec<String> = serde_json::from_str(&row[0]).expect("a JSON array");
        assert_eq!(got, first_occurrences(names), "anime {}", index + 1);
    }
    let tables = match backend {
        Backend::Postgres => {
            query_strings(&conn, "SELECT tablename FROM pg_tables WHERE tablename IN ('genre', 'anime_genre', 'player', 'episode')").await
        }
        Backend::Sqlite => {
            query_strings(&conn, "SELECT name FROM sqlite_master WHERE name IN ('genre', 'anime_genre', 'player', 'episode', 'anime_search')").await
        }
    };
    assert!(tables.is_empty(), "left after down: {tables:?}");

    // And up again works on the restored shape.
    Migrator::up(&conn, None).await.expect("up again");
}

#[tokio::test]
async fn postgres_migration_moves_every_genre_into_rows_and_back() {
    migration_moves_every_genre_into_rows_and_back(Backend::Postgres).await;
}

#[tokio::test]
async fn sqlite_migration_moves_every_genre_into_rows_and_back() {
    migration_moves_every_genre_into_rows_and_back(Backend::Sqlite).await;
}

// ---------------------------------------------------------------------------
// Batch loaders and taxonomy reads
// ---------------------------------------------------------------------------

/// `(anime id, taxon name)` links of `kind` straight from SQL, by position.
async fn raw_links(app: &TestApp, kind: Taxonomy) -> BTreeMap<i32, Vec<String>> {
    let sql = format!(
        "SELECT CAST(j.anime_id AS TEXT) AS id, t.name FROM {} j JOIN {} t ON t.id = j.{} ORDER BY j.anime_id, j.position",
        kind.join_table(),
        kind.table(),
        kind.key()
    );
    let mut out: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for row in query_strings(&app.state.db, &sql).await {
        out.entry(row[0].parse().expect("id"))
            .or_default()
            .push(row[1].clone());
    }
    out
}

async fn loaders_answer_many_anime_with_one_statement_each(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let repo = AnimeRepo::new(app.state.db.clone());
    let ids: Vec<i32> = (1..=SEEDED as i32).chain([999_999, 3]).collect();

    for kind in Taxonomy::ALL {
        // Act
        let before = app.db_queries();
        let loaded = match kind {
            Taxonomy::Genre => repo.genres_of(&ids).await,
            Taxonomy::Theme => repo.themes_of(&ids).await,
            Taxonomy::Studio => repo.studios_of(&ids).await,
        }
        .expect("load");

        // Assert
        assert_eq!(app.db_queries() - before, 1, "{kind:?}: statements");
        let expected = raw_links(&app, kind).await;
        assert_eq!(
            loaded.len(),
            SEEDED as usize + 1,
            "every id asked for is a key"
        );
        assert_eq!(loaded[&999_999], []);
        for id in 1..=SEEDED as i32 {
            let names: Vec<String> = loaded[&id].iter().map(|t| t.name.clone()).collect();
            assert_eq!(
                names,
                expected.get(&id).cloned().unwrap_or_default(),
                "{kind:?} of {id}"
            );
            assert!(
                loaded[&id]
                    .iter()
                    .all(|t| t.slug == anigo::db::slug::slugify(&t.name))
            );
        }
    }

    let before = app.db_queries();
    let players = repo.players_of(&ids).await.expect("players");
    let episodes = repo.episodes_of(&ids).await.expect("episodes");
    assert_eq!(app.db_queries() - before, 2, "one statement each");
    let raw_players = query_strings(
        &app.state.db,
        "SELECT CAST(p.anime_id AS TEXT) AS id, p.embed_url FROM player p ORDER BY p.anime_id, p.position",
    )
    .await;
    let loaded_players: Vec<Vec<String>> = (1..=SEEDED as i32)
        .flat_map(|id| {
            players[&id]
                .iter()
                .map(move |p| vec![id.to_string(), p.embed_url.clone()])
        })
        .collect();
    assert_eq!(loaded_players, raw_players);
    assert!(
        players
            .values()
            .flatten()
            .all(|p| p.embed_url.starts_with("https://player.example/"))
    );
    let mut episode_count = 0;
    for id in 1..=SEEDED as i32 {
        let numbers: Vec<i32> = episodes[&id].iter().map(|e| e.number).collect();
        assert_eq!(
            numbers,
            (1..=numbers.len() as i32).collect::<Vec<_>>(),
            "episodes of {id}"
        );
        episode_count += numbers.len();
    }
    let total = query_strings(&app.state.db, "SELECT CAST(COUNT(*) AS TEXT) FROM episode").await;
    assert_eq!(total[0][0], episode_count.to_string());
    assert!(episode_count > 0);

    for kind in Taxonomy::ALL {
        let before = app.db_queries();
        let taxa = repo.taxa(kind).await.expect("taxa");
        assert_eq!(app.db_queries() - before, 1, "{kind:?}: one statement");
        let links = raw_links(&app, kind).await;
        let mut counts: HashMap<&str, u64> = HashMap::new();
        for name in links.values().flatten() {
            *counts.entry(name.as_str()).or_default() += 1;
        }
        assert!(
            taxa.windows(2).all(|w| w[0].taxon.name <= w[1].taxon.name),
            "by name"
        );
        for taxon in &taxa {
            assert_eq!(
                taxon.anime_count,
                counts.get(taxon.taxon.name.as_str()).copied().unwrap_or(0)
            );
        }
        let one = &taxa[taxa.len() / 2];
        let before = app.db_queries();
        let found = repo
            .taxon_by_slug(kind, &one.taxon.slug)
            .await
            .expect("by slug");
        assert_eq!(app.db_queries() - before, 1);
        assert_eq!(found.as_ref(), Some(one));
        assert_eq!(
            repo.taxon_by_slug(kind, "no-such-slug")
                .await
                .expect("by slug"),
            None
        );
    }
    let genres = repo.taxa(Taxonomy::Genre).await.expect("genres");
    assert_eq!(genres.len(), 20, "the seed's genres");
    assert_eq!(repo.taxa(Taxonomy::Theme).await.expect("themes").len(), 50);
    assert_eq!(
        repo.taxa(Taxonomy::Studio).await.expect("studios").len(),
        200
    );
}

#[tokio::test]
async fn postgres_loaders_answer_many_anime_with_one_statement_each() {
    loaders_answer_many_anime_with_one_statement_each(Backend::Postgres).await;
}

#[tokio::test]
async fn sqlite_loaders_answer_many_anime_with_one_statement_each() {
    loaders_answer_many_anime_with_one_statement_each(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_list_of_anime_reads_its_genres_with_one_more_statement() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let repo = AnimeRepo::new(app.state.db.clone());
    let links = raw_links(&app, Taxonomy::Genre).await;

    let before = app.db_queries();
    let popular = repo.popular(100).await.expect("popular");
    assert_eq!(
        app.db_queries() - before,
        2,
        "the rows, then all their genres"
    );
    let before = app.db_queries();
    let page = repo.page(0, 100).await.expect("page");
    assert_eq!(app.db_queries() - before, 2);

    for record in popular.iter().chain(&page) {
        assert_eq!(
            record.genres, links[&record.anime.id],
            "anime {}",
            record.anime.id
        );
    }
}

// ---------------------------------------------------------------------------
// Writes
// ---------------------------------------------------------------------------

fn draft(genres: &[&str]) -> AnimeDraft {
    AnimeDraft {
        title: "Zyxwv Quartz Saga".into(),
        title_english: Some("The Quiet Harbor".into()),
        title_original: Some("ゼクウォーツ物語".into()),
        age_rating: Some(anime::AgeRating::Pg13),
        format: Format::Tv,
        episodes: Some(12),
        status: Status::Finished,
        season: Some(Season::Spring),
        year: Some(2011),
        score: Some(7.5),
        popularity: 4_000_000,
        genres: genres.iter().map(|g| (*g).to_owned()).collect(),
        themes: Vec::new(),
        studios: Vec::new(),
        players: Vec::new(),
        episode_list: Vec::new(),
        picture_url: "https://img.example/q.webp".into(),
        synopsis: "A story.".into(),
    }
}

async fn writes_keep_genre_rows_in_step(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let repo = AnimeRepo::new(app.state.db.clone());
    let genres_before = repo.taxa(Taxonomy::Genre).await.expect("genres").len();

    // Act: one new name, one whose slug is taken ("Sci-Fi" exists).
    let created = app
        .state
        .anime
        .create(draft(&["Sci Fi", "Drama", "Cyberpunk Noir"]))
        .await
        .expect("create")
        .record();

    // Assert: names in the order validation leaves them (alphabetical).
    let id = created.anime.id;
    assert_eq!(created.genres, ["Cyberpunk Noir", "Drama", "Sci Fi"]);
    assert_eq!(
        repo.by_id(id).await.expect("read").expect("exists").genres,
        created.genres
    );
    let taxa = repo.taxa(Taxonomy::Genre).await.expect("genres");
    assert_eq!(taxa.len(), genres_before + 2);
    let slug_of = |name: &str| {
        taxa.iter()
            .find(|t| t.taxon.name == name)
            .map(|t| t.taxon.slug.clone())
    };
    assert_eq!(slug_of("Cyberpunk Noir").as_deref(), Some("cyberpunk-noir"));
    assert_eq!(slug_of("Sci Fi").as_deref(), Some("sci-fi-2"));
    assert_eq!(slug_of("Sci-Fi").as_deref(), Some("sci-fi"));
    assert_eq!(
        created.anime.title_original.as_deref(),
        Some("ゼクウォーツ物語")
    );
    assert_eq!(created.anime.age_rating, Some(anime::AgeRating::Pg13));

    // Act: a change without genres keeps them; one with genres replaces them.
    let renamed = app
        .state
        .anime
        .update(
            id,
            AnimeChanges {
                title: Some("Zyxwv Quartz Saga II".into()),
                ..AnimeChanges::default()
            },
        )
        .await
        .expect("update")
        .record();
    assert_eq!(renamed.genres, created.genres);
    let regenred = app
        .state
        .anime
        .update(
            id,
            AnimeChanges {
                genres: Some(vec!["Drama".into(), "Action".into()]),
                ..AnimeChanges::default()
            },
        )
        .await
        .expect("update genres")
        .record();
    assert_eq!(regenred.genres, ["Action", "Drama"]);
    assert_eq!(
        raw_links(&app, Taxonomy::Genre).await[&id],
        ["Action", "Drama"]
    );
    let cleared = app
        .state
        .anime
        .update(
            id,
            AnimeChanges {
                genres: Some(Vec::new()),
                ..AnimeChanges::default()
            },
        )
        .await
        .expect("clear genres")
        .record();
    assert!(cleared.genres.is_empty());
    assert!(!raw_links(&app, Taxonomy::Genre).await.contains_key(&id));

    // Act: deleting a seeded anime takes its links, players and episodes.
    let ids: Vec<i32> = (1..=SEEDED as i32).collect();
    let players = repo.players_of(&ids).await.expect("players");
    let episodes = repo.episodes_of(&ids).await.expect("episodes");
    let victim = ids
        .iter()
        .copied()
        .find(|id| !players[id].is_empty() && !episodes[id].is_empty())
        .expect("an anime with players and episodes");
    let players_before = players[&victim].len();
    app.state.anime.delete(victim).await.expect("delete");
    assert!(repo.players_of(&[victim]).await.expect("players")[&victim].is_empty());
    assert!(repo.episodes_of(&[victim]).await.expect("episodes")[&victim].is_empty());
    assert!(repo.genres_of(&[victim]).await.expect("genres")[&victim].is_empty());
    let orphans = query_strings(
        &app.state.db,
        &format!("SELECT CAST(COUNT(*) AS TEXT) FROM anime_studio WHERE anime_id = {victim}"),
    )
    .await;
    assert_eq!(
        orphans[0][0], "0",
        "cascade ({players_before} players before)"
    );
}

#[tokio::test]
async fn postgres_writes_keep_genre_rows_in_step() {
    writes_keep_genre_rows_in_step(Backend::Postgres).await;
}

#[tokio::test]
async fn sqlite_writes_keep_genre_rows_in_step() {
    writes_keep_genre_rows_in_step(Backend::Sqlite).await;
}

// ---------------------------------------------------------------------------
// The list query
// ---------------------------------------------------------------------------

/// One anime with its taxonomy slugs, for expected lists.
struct Row {
    anime: anime::Model,
    slugs: [Vec<String>; 3],
}

async fn rows(app: &TestApp) -> Vec<Row> {
    let all = anime::Entity::find()
        .order_by_asc(anime::Column::Id)
        .all(&app.state.db)
        .await
        .expect("anime");
    let ids: Vec<i32> = all.iter().map(|a| a.id).collect();
    let repo = AnimeRepo::new(app.state.db.clone());
    let (genres, themes, studios) = (
        repo.genres_of(&ids).await.expect("genres"),
        repo.themes_of(&ids).await.expect("themes"),
        repo.studios_of(&ids).await.expect("studios"),
    );
    let slugs = |map: &HashMap<i32, Vec<anigo::db::Taxon>>, id: i32| -> Vec<String> {
        map[&id].iter().map(|t| t.slug.clone()).collect()
    };
    all.into_iter()
        .map(|anime| Row {
            slugs: [
                slugs(&genres, anime.id),
                slugs(&themes, anime.id),
                slugs(&studios, anime.id),
            ],
            anime,
        })
        .collect()
}

fn keeps(filter: &AnimeFilter, row: &Row) -> bool {
    let a = &row.anime;
    let has =
        |slug: &Option<String>, slugs: &[String]| slug.as_ref().is_none_or(|s| slugs.contains(s));
    has(&filter.genre, &row.slugs[0])
        && has(&filter.theme, &row.slugs[1])
        && has(&filter.studio, &row.slugs[2])
        && filter
            .years
            .is_none_or(|r| a.year.is_some_and(|y| (r.from..=r.to).contains(&y)))
        && filter.season.is_none_or(|s| a.season == Some(s))
        && filter.format.is_none_or(|f| a.format == f)
        && filter.status.is_none_or(|s| a.status == s)
        && filter
            .min_score
            .is_none_or(|m| a.score.is_some_and(|s| s >= m))
}

/// The ids `filter` keeps in `order`, computed here: the column in the
/// order's direction, then id (ascending in the natural direction,
/// descending in the other), rows without a score or year last.
fn expected(all: &[Row], filter: &AnimeFilter, order: AnimeOrder) -> Vec<i32> {
    use std::cmp::Ordering;
    let mut kept: Vec<&anime::Model> = all
        .iter()
        .filter(|r| keeps(filter, r))
        .map(|r| &r.anime)
        .collect();
    let natural = order.is_natural();
    let value = |a: &anime::Model| -> Option<f64> {
        match order.sort {
            AnimeSort::Popularity => Some(f64::from(a.popularity)),
            AnimeSort::Score => a.score,
            AnimeSort::Year => a.year.map(f64::from),
            AnimeSort::Id => Some(f64::from(a.id)),
            AnimeSort::Title => Some(0.0),
        }
    };
    kept.sort_by(|a, b| {
        let by_value = match (value(a), value(b)) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => return Ordering::Greater,
            (Some(_), None) => return Ordering::Less,
            (Some(x), Some(y)) => {
                let cmp = if order.sort == AnimeSort::Title {
                    a.title.cmp(&b.title)
                } else {
                    x.total_cmp(&y)
                };
                if order.direction == SortDirection::Desc {
                    cmp.reverse()
                } else {
                    cmp
                }
            }
        };
        by_value.then_with(|| {
            if natural {
                a.id.cmp(&b.id)
            } else {
                b.id.cmp(&a.id)
            }
        })
    });
    kept.into_iter().map(|a| a.id).collect()
}

async fn lists_filter_and_order_as_documented(backend: Backend) {
    // Arrange: some anime without a score or a year, so NULLs matter.
    let app = TestApp::spawn(backend).await;
    app.state
        .db
        .execute_unprepared("UPDATE anime SET score = NULL WHERE id % 9 = 0")
        .await
        .expect("unscore");
    app.state
        .db
        .execute_unprepared("UPDATE anime SET year = NULL WHERE id % 13 = 0")
        .await
        .expect("unyear");
    let repo = AnimeRepo::new(app.state.db.clone());
    let all = rows(&app).await;
    let biggest_studio = {
        let mut sizes: HashMap<&String, usize> = HashMap::new();
        for row in &all {
            for slug in &row.slugs[2] {
                *sizes.entry(slug).or_default() += 1;
            }
        }
        sizes
            .into_iter()
            .max_by_key(|(slug, n)| (*n, (*slug).clone()))
            .map(|(s, _)| s.clone())
            .expect("a studio")
    };
    let theme = all
        .iter()
        .find_map(|r| r.slugs[1].first().cloned())
        .expect("a theme");
    let filters = [
        AnimeFilter::default(),
        AnimeFilter {
            genre: Some("action".into()),
            ..AnimeFilter::default()
        },
        AnimeFilter {
            theme: Some(theme),
            ..AnimeFilter::default()
        },
        AnimeFilter {
            studio: Some(biggest_studio),
            ..AnimeFilter::default()
        },
        AnimeFilter {
            years: Some(YearRange {
                from: 2010,
                to: 2020,
            }),
            ..AnimeFilter::default()
        },
        AnimeFilter {
            years: Some(YearRange::single(2024)),
            ..AnimeFilter::default()
        },
        AnimeFilter {
            season: Some(Season::Winter),
            ..AnimeFilter::default()
        },
        AnimeFilter {
            format: Some(Format::Tv),
            ..AnimeFilter::default()
        },
        AnimeFilter {
            status: Some(Status::Finished),
            ..AnimeFilter::default()
        },
        AnimeFilter {
            min_score: Some(7.0),
            ..AnimeFilter::default()
        },
        AnimeFilter {
            genre: Some("comedy".into()),
            format: Some(Format::Tv),
            min_score: Some(5.0),
            ..AnimeFilter::default()
        },
        AnimeFilter {
            genre: Some("no-such-genre".into()),
            ..AnimeFilter::default()
        },
    ];
    let sorts = [
        AnimeSort::Popularity,
        AnimeSort::Score,
        AnimeSort::Year,
        AnimeSort::Title,
        AnimeSort::Id,
    ];

    for filter in &filters {
        let count = repo.count(filter).await.expect("count");
        for sort in sorts {
            for order in [sort.natural(), sort.natural().reversed()] {
                let want = expected(&all, filter, order);
                assert_eq!(count, want.len() as u64, "count of {filter:?}");
                // Act: every page of 20, and one page across the NULL boundary.
                let mut got = Vec::new();
                for offset in (0..want.len().max(1) as u64).step_by(20) {
                    let page = repo.list(filter, order, offset, 20).await.expect("list");
                    got.extend(page.iter().map(|r| r.anime.id));
                }
                // Assert
                assert_eq!(got, want, "{filter:?} {order:?}");
            }
        }
    }
    // Past the last valued row, by a few pages: counts them, then NULLs.
    let order = AnimeSort::Score.natural();
    let want = expected(&all, &AnimeFilter::default(), order);
    let valued = all.iter().filter(|r| r.anime.score.is_some()).count() as u64;
    let before = app.db_queries();
    let tail = repo
        .list(&AnimeFilter::default(), order, valued + 2, 5)
        .await
        .expect("tail");
    assert_eq!(
        app.db_queries() - before,
        5,
        "valued ids, their count, NULL ids, the rows, their genres"
    );
    let tail: Vec<i32> = tail.iter().map(|r| r.anime.id).collect();
    assert_eq!(tail, want[valued as usize + 2..valued as usize + 7]);
    let before = app.db_queries();
    repo.list(&AnimeFilter::default(), order, 0, 20)
        .await
        .expect("first page");
    assert_eq!(
        app.db_queries() - before,
        3,
        "a first page: ids, the rows, then genres"
    );
}

#[tokio::test]
async fn postgres_lists_filter_and_order_as_documented() {
    lists_filter_and_order_as_documented(Backend::Postgres).await;
}

#[tokio::test]
async fn sqlite_lists_filter_and_order_as_documented() {
    lists_filter_and_order_as_documented(Backend::Sqlite).await;
}

// ---------------------------------------------------------------------------
// Search
// ---------------------------------------------------------------------------

/// The ids a search for `text` must return, computed here (ASCII case
/// folding, as both databases' `lower()` in these tests).
fn expected_search(all: &[anime::Model], text: &str, limit: usize) -> Vec<i32> {
    let q = normalize_search(text).expect("text");
    let tier = |a: &anime::Model| -> Option<u8> {
        let titles: Vec<String> = [
            Some(&a.title),
            a.title_english.as_ref(),
            a.title_original.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(|t| t.to_ascii_lowercase())
        .collect();
        if !titles.iter().any(|t| t.contains(&q)) {
            None
        } else if titles.contains(&q) {
            Some(0)
        } else if titles.iter().any(|t| t.starts_with(&q)) {
            Some(1)
        } else if titles.iter().any(|t| t.contains(&format!(" {q}"))) {
            Some(2)
        } else {
            Some(3)
        }
    };
    let mut hits: Vec<(u8, i32, i32)> = all
        .iter()
        .filter_map(|a| tier(a).map(|t| (t, -a.popularity, a.id)))
        .collect();
    hits.sort_unstable();
    hits.into_iter().take(limit).map(|(_, _, id)| id).collect()
}

async fn search_finds_titles_in_any_column_ranked_by_relevance(backend: Backend) -> Vec<Vec<i32>> {
    // Arrange: one anime with known titles, on top of the seed.
    let app = TestApp::spawn(backend).await;
    let created = app
        .state
        .anime
        .create(draft(&["Drama"]))
        .await
        .expect("create")
        .record();
    let repo = AnimeRepo::new(app.state.db.clone());
    let all = anime::Entity::find()
        .all(&app.state.db)
        .await
        .expect("anime");

    // Act + Assert: each title column, any case.
    for text in [
        "zyxwv QUARTZ",
        "  the   QUIET harbor ",
        "ゼクウォーツ",
        "Quartz Saga",
    ] {
        let found = repo.search(text, 10).await.expect("search");
        assert_eq!(
            found.first().map(|r| r.anime.id),
            Some(created.anime.id),
            "{text:?}"
        );
        assert_eq!(found[0].genres, ["Drama"]);
    }
    assert!(repo.search("   ", 10).await.expect("empty").is_empty());
    assert!(
        repo.search("no title has this", 10)
            .await
            .expect("none")
            .is_empty()
    );
    assert!(
        repo.search("100%_", 10)
            .await
            .expect("wildcards are literal")
            .is_empty()
    );

    let mut answers = Vec::new();
    for text in [
        "sora",
        "SORA NO",
        "kage",
        "the",
        "ka",
        "e",
        "season 2",
        "のかなた",
        "Ryū",
        "Tsubasa: Zero",
    ] {
        let got: Vec<i32> = repo
            .search(text, 25)
            .await
            .expect("search")
            .iter()
            .map(|r| r.anime.id)
            .collect();
        assert_eq!(got, expected_search(&all, text, 25), "{text:?}");
        answers.push(got);
    }
    let exact = repo.search("zyxwv quartz saga", 5).await.expect("exact");
    assert_eq!(exact[0].anime.id, created.anime.id, "an exact title first");

    // The search copy follows writes: a new title, a new popularity, a delete.
    let id = created.anime.id;
    app.state
        .anime
        .update(
            id,
            AnimeChanges {
                title: Some("Vwxyz Opal Saga".into()),
                ..AnimeChanges::default()
            },
        )
        .await
        .expect("rename");
    assert!(
        repo.search("quartz", 10)
            .await
            .expect("old title")
            .is_empty()
    );
    assert_eq!(
        repo.search("opal saga", 10).await.expect("new title")[0]
            .anime
            .id,
        id
    );
    let twin = app
        .state
        .anime
        .create(AnimeDraft {
            title: "Vwxyz Opal Saga".into(),
            popularity: 5_000_000,
            ..draft(&[])
        })
        .await
        .expect("a more popular twin");
    let order: Vec<i32> = repo
        .search("vwxyz", 10)
        .await
        .expect("both")
        .iter()
        .map(|r| r.anime.id)
        .collect();
    assert_eq!(order, [twin.row.id, id], "more popular first");
    app.state
        .anime
        .update(
            id,
            AnimeChanges {
                popularity: Some(6_000_000),
                ..AnimeChanges::default()
            },
        )
        .await
        .expect("more popular");
    let order: Vec<i32> = repo
        .search("vwxyz", 10)
        .await
        .expect("both")
        .iter()
        .map(|r| r.anime.id)
        .collect();
    assert_eq!(order, [id, twin.row.id], "popularity followed");
    app.state.anime.delete(id).await.expect("delete");
    let order: Vec<i32> = repo
        .search("vwxyz", 10)
        .await
        .expect("one")
        .iter()
        .map(|r| r.anime.id)
        .collect();
    assert_eq!(order, [twin.row.id]);
    answers
}

#[tokio::test]
async fn search_finds_titles_in_any_column_ranked_by_relevance_on_both_backends() {
    let pg = search_finds_titles_in_any_column_ranked_by_relevance(Backend::Postgres).await;
    let lite = search_finds_titles_in_any_column_ranked_by_relevance(Backend::Sqlite).await;
    assert_eq!(pg, lite, "the two backends rank alike");
}

/// The plan of `stmt` as text: `EXPLAIN` on PostgreSQL (with sequential
/// scans off when `force_index`, for tables too small for the planner to
/// bother), `EXPLAIN QUERY PLAN` on SQLite.
async fn plan(
    conn: &impl TransactionTrait,
    backend: DbBackend,
    stmt: &Statement,
    force_index: bool,
) -> String {
    let txn = conn.begin().await.expect("begin");
    if force_index && backend == DbBackend::Postgres {
        txn.execute_unprepared("SET LOCAL enable_seqscan = off")
            .await
            .expect("SET");
    }
    let prefix = match backend {
        DbBackend::Postgres => "EXPLAIN",
        _ => "EXPLAIN QUERY PLAN",
    };
    let values = stmt.values.clone().map(|v| v.0).unwrap_or_default();
    let rows = txn
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            format!("{prefix} {}", stmt.sql),
            values,
        ))
        .await
        .unwrap_or_else(|err| panic!("{}: {err}", stmt.sql));
    let column = match backend {
        DbBackend::Postgres => "QUERY PLAN",
        _ => "detail",
    };
    let text = rows
        .iter()
        .map(|row| row.try_get::<String>("", column).expect("plan line"))
        .collect::<Vec<_>>()
        .join("\n");
    txn.rollback().await.expect("rollback");
    text
}

/// The plans of every statement a search for `text` runs, one after the
/// other (see [`plan`]).
async fn search_plan(
    conn: &impl TransactionTrait,
    backend: DbBackend,
    text: &str,
    force_index: bool,
) -> String {
    let mut plans = Vec::new();
    for stmt in anime_query::search_statements(backend, text, 20) {
        plans.push(plan(conn, backend, &stmt, force_index).await);
    }
    plans.join("\n---\n")
}

/// A text no title contains: each search branch then reads the index that
/// narrows it most.
const RARE_TEXT: &str = "zqxv";

#[tokio::test]
async fn search_uses_the_trigram_index_and_the_fts_table() {
    let pg = TestApp::spawn(Backend::Postgres).await;
    let lite = TestApp::spawn(Backend::Sqlite).await;

    let pg_plan = search_plan(&pg.state.db, DbBackend::Postgres, RARE_TEXT, true).await;
    let lite_plan = search_plan(&lite.state.db, DbBackend::Sqlite, RARE_TEXT, false).await;

    // Equals and starts-with from the title B-trees, the rest from the
    // trigram index or the popularity walk (at 250 rows the planner takes
    // the walk; the 100,000-row check names the trigram index). The table
    // is too small for the planner to use an index on its own: sequential
    // scans are off for this plan.
    for index in [
        "idx_anime_search_title",
        "idx_anime_search_title_english",
        "idx_anime_search_title_original",
    ] {
        assert!(pg_plan.contains(index), "{index}: {pg_plan}");
    }
    assert!(
        pg_plan.contains("idx_anime_search_trgm")
            || pg_plan.contains("idx_anime_search_popularity"),
        "{pg_plan}"
    );
    assert!(!pg_plan.contains("Seq Scan"), "{pg_plan}");
    assert!(lite_plan.contains("VIRTUAL TABLE INDEX"), "{lite_plan}");
    // The trigram tokenizer: a substring in the middle of a word matches.
    let inner = query_strings(
        &lite.state.db,
        "SELECT CAST(COUNT(*) AS TEXT) FROM anime_search WHERE anime_search MATCH '\"ikar\"'",
    )
    .await;
    assert_ne!(inner[0][0], "0", "trigram matching inside Hikari");
}

// ---------------------------------------------------------------------------
// Plans at 100,000 anime
// ---------------------------------------------------------------------------

/// `CREATE DATABASE` options of a database with UTF-8 character classes and
/// byte-order collation (the title order the tests compute).
const UTF8_DATABASE: &str = "TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C.UTF-8'";

/// Anime in the plan check's database: enough that the planner prefers
/// indexes on its own (no planner settings changed).
const PLAN_ROWS: u64 = 100_000;

/// Every list shape the list query produces, with the index its plan must
/// name (any of them).
fn plan_cases() -> Vec<(String, AnimeFilter, AnimeOrder, &'static [&'static str])> {
    let filters: Vec<(&str, AnimeFilter)> = vec![
        ("none", AnimeFilter::default()),
        (
            "genre",
            AnimeFilter {
                genre: Some("mecha".into()),
                ..AnimeFilter::default()
            },
        ),
        (
            "theme",
            AnimeFilter {
                theme: Some("samurai".into()),
                ..AnimeFilter::default()
            },
        ),
        (
            "studio",
            AnimeFilter {
                studio: Some("tokiwa-works".into()),
                ..AnimeFilter::default()
            },
        ),
        (
            "years",
            AnimeFilter {
                years: Some(YearRange {
                    from: 1990,
                    to: 1995,
                }),
                ..AnimeFilter::default()
            },
        ),
        (
            "year",
            AnimeFilter {
                years: Some(YearRange::single(2020)),
                ..AnimeFilter::default()
            },
        ),
        (
            "season",
            AnimeFilter {
                season: Some(Season::Summer),
                ..AnimeFilter::default()
            },
        ),
        (
            "format",
            AnimeFilter {
                format: Some(Format::Music),
                ..AnimeFilter::default()
            },
        ),
        (
            "status",
            AnimeFilter {
                status: Some(Status::Upcoming),
                ..AnimeFilter::default()
            },
        ),
        (
            "min score",
            AnimeFilter {
                min_score: Some(9.0),
                ..AnimeFilter::default()
            },
        ),
    ];
    let mut cases = Vec::new();
    for (name, filter) in filters {
        for sort in [
            AnimeSort::Popularity,
            AnimeSort::Score,
            AnimeSort::Year,
            AnimeSort::Title,
        ] {
            for order in [sort.natural(), sort.natural().reversed()] {
                let order_index = match sort {
                    AnimeSort::Popularity => "idx_anime_popularity_desc_id",
                    AnimeSort::Score => "idx_anime_score_desc_id",
                    AnimeSort::Year => "idx_anime_year_desc_id",
                    AnimeSort::Title => "idx_anime_title_id",
                    AnimeSort::Id => "anime_pkey",
                };
                let filter_index = match name {
                    "genre" => "idx_anime_genre_genre_id_anime",
                    "theme" => "idx_anime_theme_theme_id_anime",
                    "studio" => "idx_anime_studio_studio_id_anime",
                    "years" | "year" => "idx_anime_year_desc_id",
                    "season" => "idx_anime_season_popularity",
                    "format" => "idx_anime_format_popularity",
                    "status" => "idx_anime_status_popularity",
                    "min score" => "idx_anime_score_desc_id",
                    _ => order_index,
                };
                let allowed: &'static [&'static str] =
                    Box::leak(vec![order_index, filter_index].into_boxed_slice());
                cases.push((
                    format!("{name} / {order:?}"),
                    filter.clone(),
                    order,
                    allowed,
                ));
            }
        }
    }
    cases
}

#[tokio::test]
async fn at_100k_anime_every_list_shape_and_search_use_an_index() {
    // Arrange: 100,000 seeded anime, analysed, in a database whose
    // character classes are UTF-8 (as the official image's en_US.utf8):
    // under LC_CTYPE=C, pg_trgm indexes no kana or macron.
    let url = support::fresh_database_url_with(UTF8_DATABASE);
    let conn = Database::connect(&url).await.expect("connect");
    Migrator::up(&conn, None).await.expect("migrate");
    let started = Instant::now();
    let counts = anigo::seed::insert(&conn, PLAN_ROWS, anigo::seed::DEFAULT_SEED)
        .await
        .expect("seed");
    let seeded_in = started.elapsed();
    conn.execute_unprepared("VACUUM ANALYZE")
        .await
        .expect("VACUUM ANALYZE");
    eprintln!("seeded {counts:?} in {seeded_in:?}");

    // Act + Assert: each list and count statement's plan.
    let mut failures = Vec::new();
    for (name, filter, order, indexes) in plan_cases() {
        for stmt in [
            anime_query::list_statement(DbBackend::Postgres, &filter, order, 0, 20),
            anime_query::list_statement(DbBackend::Postgres, &filter, order, 1_000, 20),
        ] {
            let text = plan(&conn, DbBackend::Postgres, &stmt, false).await;
            let uses = indexes.iter().any(|index| text.contains(index));
            let used: Vec<&str> = text
                .split_whitespace()
                .filter(|word| word.starts_with("idx_") || word.ends_with("_pkey"))
                .collect();
            eprintln!("plan {name}: {}", used.join(" "));
            if text.contains("Seq Scan on anime") || !uses {
                failures.push(format!("{name}: expected one of {indexes:?}\n{text}"));
            }
        }
    }
    for (name, filter, _, _) in plan_cases().into_iter().step_by(8) {
        if name.starts_with("none") || name.starts_with("status") || name.starts_with("season") {
            // Counting most of the table: a sequential scan is the right plan.
            continue;
        }
        let text = plan(
            &conn,
            DbBackend::Postgres,
            &anime_query::count_statement(DbBackend::Postgres, &filter),
            false,
        )
        .await;
        if text.contains("Seq Scan on anime") {
            failures.push(format!("count {name}\n{text}"));
        }
    }
    // A rare text: index ranges; a text most anime contain: the walk by
    // popularity, stopped after a page.
    let rare = search_plan(&conn, DbBackend::Postgres, RARE_TEXT, false).await;
    let common = search_plan(&conn, DbBackend::Postgres, "the", false).await;
    for (text, plan, index) in [
        (RARE_TEXT, &rare, "idx_anime_search_trgm"),
        (RARE_TEXT, &rare, "idx_anime_search_title_english"),
        ("the", &common, "idx_anime_search_popularity"),
    ] {
        if !plan.contains(index) || plan.contains("Seq Scan") {
            failures.push(format!("search {text:?}: expected {index}\n{plan}"));
        }
    }
    eprintln!("search plan for {RARE_TEXT:?}:\n{rare}\nsearch plan for \"the\":\n{common}");
    assert!(
        failures.is_empty(),
        "{} plans without their index:\n{}",
        failures.len(),
        failures.join("\n\n")
    );

    // Search latency, uncached (distinct texts), through the repository.
    let (p50, p99, max) = search_latency(&url).await;
    eprintln!("postgres search over {PLAN_ROWS} anime: p50 {p50:?}, p99 {p99:?}, max {max:?}");
    assert!(p99 < PG_SEARCH_P99_BUDGET, "p99 {p99:?}");
}

/// The slowest searches (p99) the latency checks accept at 100,000 anime,
/// with the debug build's own work and a busy two-core machine: three times
/// what was measured (PostgreSQL 19 ms, SQLite 56 ms; the release target on
/// PostgreSQL is 20 ms, docs/performance.md has the release figures).
const PG_SEARCH_P99_BUDGET: Duration = Duration::from_millis(60);
const SQLITE_SEARCH_P99_BUDGET: Duration = Duration::from_millis(170);

/// p50, p99 and max of [`search_texts`] through `AnimeRepo::search` (the
/// matches and their genres) on the request pool of `url`.
async fn search_latency(url: &str) -> (Duration, Duration, Duration) {
    let config =
        anigo::Config::from_lookup(|name| (name == "DATABASE_URL").then(|| url.to_owned()))
            .expect("config");
    let (db, _) = anigo::db::connect_and_prepare(&config.database)
        .await
        .expect("connect");
    let repo = AnimeRepo::new(db.clone());
    let texts = search_texts(&db).await;
    let mut took = Vec::with_capacity(texts.len());
    for text in &texts {
        let started = Instant::now();
        repo.search(text, 20).await.expect("search");
        took.push((started.elapsed(), text));
    }
    took.sort_unstable();
    eprintln!(
        "{} texts; slowest: {:?}",
        took.len(),
        &took[took.len().saturating_sub(5)..]
    );
    let at = |q: usize| took[(took.len() * q / 100).min(took.len() - 1)].0;
    (at(50), at(99), at(100))
}

/// What people type: every common word of the generated titles, and 150
/// pieces of real titles (a whole word, or its first 4-6 letters) drawn
/// from every 600th anime; none repeated, so no answer is cached anywhere.
async fn search_texts(db: &impl ConnectionTrait) -> Vec<String> {
    let mut texts: Vec<String> = COMMON_WORDS.iter().map(|t| (*t).to_owned()).collect();
    let rows = query_strings(
        db,
        "SELECT title, title_english, title_original FROM anime WHERE id % 600 = 7 ORDER BY id",
    )
    .await;
    for (i, row) in rows.iter().enumerate() {
        let title = row.get(i % 3).filter(|t| !t.is_empty()).unwrap_or(&row[0]);
        let words: Vec<&str> = title.split_whitespace().collect();
        let word = words[i % words.len()].trim_matches(|c: char| !c.is_alphanumeric());
        let piece: String = match i % 2 {
            0 => word.to_owned(),
            _ => word.chars().take(4 + i % 3).collect(),
        };
        if !piece.is_empty() && !texts.contains(&piece) {
            texts.push(piece);
        }
    }
    texts
}

#[tokio::test]
async fn at_100k_anime_sqlite_search_uses_the_fts_table_within_budget() {
    // Arrange
    let dir = tempfile::tempdir().expect("tmp");
    let url = format!("sqlite://{}/big.db?mode=rwc", dir.path().display());
    let conn = Database::connect(&url).await.expect("connect");
    Migrator::up(&conn, None).await.expect("migrate");
    let started = Instant::now();
    let counts = anigo::seed::insert(&conn, PLAN_ROWS, anigo::seed::DEFAULT_SEED)
        .await
        .expect("seed");
    eprintln!("sqlite seeded {counts:?} in {:?}", started.elapsed());
    conn.execute_unprepared("ANALYZE").await.expect("ANALYZE");

    // Act
    let text = search_plan(&conn, DbBackend::Sqlite, "kanata", false).await;
    let (p50, p99, max) = search_latency(&url).await;

    // Assert
    eprintln!("sqlite search over {PLAN_ROWS} anime: p50 {p50:?}, p99 {p99:?}, max {max:?}");
    assert!(text.contains("VIRTUAL TABLE INDEX"), "{text}");
    assert!(p99 < SQLITE_SEARCH_P99_BUDGET, "p99 {p99:?}");
}

/// The common words of generated titles (and a few in kana and with
/// macrons): each matches hundreds to tens of thousands of anime.
const COMMON_WORDS: &[&str] = &[
    "sora",
    "hoshi",
    "kaze no",
    "yume",
    "tsuki",
    "hikari",
    "kage",
    "mizu",
    "hana",
    "tetsu",
    "kokoro",
    "mirai",
    "umi",
    "yoru",
    "honoo",
    "shiro",
    "kuro",
    "akatsuki",
    "sakura",
    "ryuu",
    "kitsune",
    "tenshi",
    "akuma",
    "majo",
    "yuusha",
    "kishi",
    "ningyo",
    "oukoku",
    "gakuen",
    "kanata",
    "no uta",
    "tsubasa",
    "monogatari",
    "senki",
    "kiseki",
    "kakumei",
    "yakusoku",
    "densetsu",
    "no mori",
    "tantei",
    "shoujo",
    "no hate",
    "endless",
    "silent sky",
    "crimson",
    "hidden",
    "the last",
    "broken",
    "golden",
    "wandering",
    "distant",
    "forgotten",
    "burning",
    "frozen",
    "eternal",
    "little",
    "secret",
    "star",
    "wind",
    "dream",
    "moon",
    "light",
    "shadow",
    "tide",
    "blossom",
    "blade",
    "heart",
    "future",
    "sea",
    "night",
    "flame",
    "kingdom",
    "academy",
    "witch",
    "knight",
    "promise",
    "season 2",
    "season 3",
    "the movie",
    "final chapter",
    "zero",
    "next generation",
    "requiem",
    "ソラ",
    "のかなた",
    "ものがたり",
    "劇場版",
    "ryū",
    "shōjo",
    "ōkoku",
    "yūsha",
    "sora no kanata",
    "hikari no",
    "kage no",
    "tsuki no",
    "umi no",
    "ken no",
    "hana no",
    "yume no",
];
