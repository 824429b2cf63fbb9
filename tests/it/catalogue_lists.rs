//! The catalogue grid over HTTP: `animeList` filters, sorts and pages as
//! the database rows say, the filtered `animeCount` agrees with it, the
//! genre/theme/studio pages are the same list, bad arguments are
//! `BAD_USER_INPUT` naming them, slugs that name nothing are empty lists,
//! reads are cached under readable keys and writes show on the next read.

use std::collections::{HashMap, HashSet};

use anigo::db::{AnimeRepo, Taxon};
use anigo::entities::anime::{self, Format};
use sea_orm::{ConnectionTrait, EntityTrait, QueryOrder};
use serde_json::{Value, json};

use crate::common::{Backend, SEEDED, TestApp, TestSettings, first_error_code, id_of};

const TOKEN: &str = "catalogue-lists-admin-token-0123";

const LIST: &str = "query($filter: AnimeFilterInput, $sort: AnimeSort, $order: SortOrder, $page: Int, $perPage: Int) { \
    animeList(filter: $filter, sort: $sort, order: $order, page: $page, perPage: $perPage) { \
      total page perPage hasNextPage items { id } } }";

const COUNT: &str = "query($filter: AnimeFilterInput) { animeCount(filter: $filter) }";

/// One anime and the slugs of its genres, themes and studios.
struct Row {
    anime: anime::Model,
    genres: Vec<String>,
    themes: Vec<String>,
    studios: Vec<String>,
}

/// Every anime, straight from the database.
async fn rows(app: &TestApp) -> Vec<Row> {
    let all = anime::Entity::find()
        .order_by_asc(anime::Column::Id)
        .all(&app.state.db)
        .await
        .expect("anime rows");
    let ids: Vec<i32> = all.iter().map(|a| a.id).collect();
    let repo = AnimeRepo::new(app.state.db.clone());
    let genres = repo.genres_of(&ids).await.expect("genres");
    let themes = repo.themes_of(&ids).await.expect("themes");
    let studios = repo.studios_of(&ids).await.expect("studios");
    let slugs = |map: &HashMap<i32, Vec<Taxon>>, id: i32| -> Vec<String> {
        map.get(&id)
            .map(|taxa| taxa.iter().map(|t| t.slug.clone()).collect())
            .unwrap_or_default()
    };
    all.into_iter()
        .map(|anime| Row {
            genres: slugs(&genres, anime.id),
            themes: slugs(&themes, anime.id),
            studios: slugs(&studios, anime.id),
            anime,
        })
        .collect()
}

/// The slug most anime have among `slugs_of` each row.
fn commonest(all: &[Row], slugs_of: impl Fn(&Row) -> &Vec<String>) -> String {
    let mut sizes: HashMap<&String, usize> = HashMap::new();
    for row in all {
        for slug in slugs_of(row) {
            *sizes.entry(slug).or_default() += 1;
        }
    }
    sizes
        .into_iter()
        .max_by_key(|(slug, n)| (*n, (*slug).clone()))
        .map(|(slug, _)| slug.clone())
        .expect("some slug")
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Sort {
    Popularity,
    Score,
    Year,
    Title,
    Id,
}

impl Sort {
    const ALL: [Sort; 5] = [
        Sort::Popularity,
        Sort::Score,
        Sort::Year,
        Sort::Title,
        Sort::Id,
    ];

    fn name(self) -> &'static str {
        match self {
            Sort::Popularity => "POPULARITY",
            Sort::Score => "SCORE",
            Sort::Year => "YEAR",
            Sort::Title => "TITLE",
            Sort::Id => "ID",
        }
    }

    fn is_descending_naturally(self) -> bool {
        matches!(self, Sort::Popularity | Sort::Score | Sort::Year)
    }
}

/// The ids `keep` keeps, ordered by `sort` (`descending`), computed from
/// the rows: valued rows by the column then id (ascending in the sort's
/// natural direction, descending in the other), rows without a score or
/// year after them, by id in the same tie direction.
fn expected(all: &[Row], keep: &dyn Fn(&Row) -> bool, sort: Sort, descending: bool) -> Vec<i64> {
    use std::cmp::Ordering;
    let natural = descending == sort.is_descending_naturally();
    let mut kept: Vec<&anime::Model> = all.iter().filter(|r| keep(r)).map(|r| &r.anime).collect();
    kept.sort_by(|a, b| {
        let by_value = match sort {
            Sort::Popularity => Some(a.popularity.cmp(&b.popularity)),
            Sort::Title => Some(a.title.cmp(&b.title)),
            Sort::Id => Some(Ordering::Equal),
            Sort::Score => match (a.score, b.score) {
                (Some(x), Some(y)) => Some(x.total_cmp(&y)),
                (None, None) => Some(Ordering::Equal),
                (None, Some(_)) => return Ordering::Greater,
                (Some(_), None) => return Ordering::Less,
            },
            Sort::Year => match (a.year, b.year) {
                (Some(x), Some(y)) => Some(x.cmp(&y)),
                (None, None) => Some(Ordering::Equal),
                (None, Some(_)) => return Ordering::Greater,
                (Some(_), None) => return Ordering::Less,
            },
        }
        .map(|o| if descending { o.reverse() } else { o })
        .unwrap_or(Ordering::Equal);
        by_value.then_with(|| {
            if natural {
                a.id.cmp(&b.id)
            } else {
                b.id.cmp(&a.id)
            }
        })
    });
    kept.into_iter().map(|a| i64::from(a.id)).collect()
}

/// A filter as the API takes it and as the test applies it to rows.
struct Case {
    filter: Value,
    keep: Box<dyn Fn(&Row) -> bool>,
}

fn cases(all: &[Row]) -> Vec<Case> {
    let theme = commonest(all, |r| &r.themes);
    let studio = commonest(all, |r| &r.studios);
    vec![
        Case {
            filter: json!({ "genre": "action" }),
            keep: Box::new(|r| r.genres.iter().any(|g| g == "action")),
        },
        Case {
            filter: json!({ "theme": theme.clone() }),
            keep: Box::new(move |r| r.themes.contains(&theme)),
        },
        Case {
            filter: json!({ "studio": studio.clone() }),
            keep: Box::new(move |r| r.studios.contains(&studio)),
        },
        Case {
            filter: json!({ "yearFrom": 2005, "yearTo": 2015 }),
            keep: Box::new(|r| r.anime.year.is_some_and(|y| (2005..=2015).contains(&y))),
        },
        Case {
            filter: json!({ "year": 2020 }),
            keep: Box::new(|r| r.anime.year == Some(2020)),
        },
        Case {
            filter: json!({ "yearFrom": 2018 }),
            keep: Box::new(|r| r.anime.year.is_some_and(|y| y >= 2018)),
        },
        Case {
            filter: json!({ "season": "SPRING", "format": "TV", "status": "FINISHED" }),
            keep: Box::new(|r| {
                r.anime.season == Some(anime::Season::Spring)
                    && r.anime.format == Format::Tv
                    && r.anime.status == anime::Status::Finished
            }),
        },
        Case {
            filter: json!({ "minScore": 7.5 }),
            keep: Box::new(|r| r.anime.score.is_some_and(|s| s >= 7.5)),
        },
        Case {
            filter: json!({ "genre": "comedy", "format": "TV", "minScore": 5 }),
            keep: Box::new(|r| {
                r.genres.iter().any(|g| g == "comedy")
                    && r.anime.format == Format::Tv
                    && r.anime.score.is_some_and(|s| s >= 5.0)
            }),
        },
    ]
}

/// Reads every page of one list (and the page after the last) and checks
/// the paging against `want`.
async fn read_all_pages(
    app: &TestApp,
    filter: &Value,
    sort: Sort,
    order: Option<&str>,
    per_page: usize,
    want: &[i64],
) {
    let what = format!("{filter} {sort:?} {order:?}");
    let mut got: Vec<i64> = Vec::new();
    let pages = want.len().div_ceil(per_page);
    for page in 1..=pages + 1 {
        let mut variables =
            json!({ "filter": filter, "sort": sort.name(), "page": page, "perPage": per_page });
        if let Some(order) = order {
            variables["order"] = json!(order);
        }
        let list = app.data(LIST, variables).await["animeList"].clone();
        assert_eq!(list["total"], json!(want.len()), "{what} page {page}");
        assert_eq!(list["page"], json!(page), "{what}");
        assert_eq!(list["perPage"], json!(per_page), "{what}");
        assert_eq!(
            list["hasNextPage"],
            json!(page * per_page < want.len()),
            "{what} page {page}"
        );
        let items: Vec<i64> = list["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(id_of)
            .collect();
        if page > pages {
            assert!(items.is_empty(), "{what}: past the end {items:?}");
        } else {
            assert!(!items.is_empty() && items.len() <= per_page, "{what}");
        }
        got.extend(items);
    }
    let distinct: HashSet<i64> = got.iter().copied().collect();
    assert_eq!(distinct.len(), got.len(), "{what}: pages overlap");
    assert_eq!(got, want, "{what}");
}

/// The app with some anime lacking a score or a year (so NULLs matter).
async fn app_with_gaps(settings: TestSettings) -> TestApp {
    let app = TestApp::spawn_with(settings).await;
    for sql in [
        "UPDATE anime SET score = NULL WHERE id % 11 = 0",
        "UPDATE anime SET year = NULL WHERE id % 17 = 0",
    ] {
        app.state.db.execute_unprepared(sql).await.expect(sql);
    }
    app
}

#[tokio::test]
async fn sqlite_lists_filter_sort_and_page_as_the_rows_say() {
    let app = app_with_gaps(TestSettings::new(Backend::Sqlite)).await;
    let all = rows(&app).await;

    // The whole catalogue: every sort, in its natural direction without
    // `order` and in both directions with it.
    let everything = |_: &Row| true;
    for sort in Sort::ALL {
        let natural = sort.is_descending_naturally();
        let want = expected(&all, &everything, sort, natural);
        assert_eq!(want.len() as u64, SEEDED);
        read_all_pages(&app, &json!(null), sort, None, 20, &want).await;
        for (order, descending) in [("ASC", false), ("DESC", true)] {
            let want = expected(&all, &everything, sort, descending);
            read_all_pages(&app, &json!({}), sort, Some(order), 20, &want).await;
        }
    }

    // Each filter, every sort both ways, in pages of 7; its count agrees.
    for case in cases(&all) {
        let count = app.data(COUNT, json!({ "filter": case.filter })).await["animeCount"].clone();
        let kept = all.iter().filter(|r| (case.keep)(r)).count();
        assert!(kept > 0, "{}: an empty case tests little", case.filter);
        assert_eq!(count, json!(kept), "count of {}", case.filter);
        for sort in Sort::ALL {
            for (order, descending) in [("ASC", false), ("DESC", true)] {
                let want = expected(&all, &*case.keep, sort, descending);
                read_all_pages(&app, &case.filter, sort, Some(order), 7, &want).await;
            }
        }
    }
}

#[tokio::test]
async fn postgres_lists_filter_sort_and_page_as_the_rows_say() {
    let app = app_with_gaps(TestSettings::new(Backend::Postgres)).await;
    let all = rows(&app).await;
    let action = |r: &Row| r.genres.iter().any(|g| g == "action");
    let filter = json!({ "genre": "action" });
    for sort in [Sort::Popularity, Sort::Score, Sort::Year, Sort::Id] {
        for (order, descending) in [("ASC", false), ("DESC", true)] {
            let want = expected(&all, &action, sort, descending);
            read_all_pages(&app, &filter, sort, Some(order), 9, &want).await;
        }
    }
    let count = app.data(COUNT, json!({ "filter": filter })).await["animeCount"].clone();
    assert_eq!(count, json!(all.iter().filter(|r| action(r)).count()));
}

#[tokio::test]
async fn bad_arguments_are_bad_user_input_naming_them() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let cases = [
        (
            r#"{ animeList(filter: { yearFrom: 2010, yearTo: 2005 }) { total } }"#,
            "filter.yearFrom",
        ),
        (
            r#"{ animeList(filter: { year: 1899 }) { total } }"#,
            "filter.year",
        ),
        (
            r#"{ animeList(filter: { yearFrom: 1800 }) { total } }"#,
            "filter.yearFrom",
        ),
        (
            r#"{ animeList(filter: { yearTo: 2101 }) { total } }"#,
            "filter.yearTo",
        ),
        (
            r#"{ animeList(filter: { year: 2001, yearTo: 2005 }) { total } }"#,
            "filter.year",
        ),
        (
            r#"{ animeList(filter: { minScore: 10.5 }) { total } }"#,
            "filter.minScore",
        ),
        (
            r#"{ animeList(filter: { minScore: -0.1 }) { total } }"#,
            "filter.minScore",
        ),
        (r#"{ animeList(page: 0) { total } }"#, "page"),
        (r#"{ animeList(perPage: 0) { total } }"#, "perPage"),
        (r#"{ animeList(perPage: 101) { total } }"#, "perPage"),
        (r#"{ animeList(page: 99999999999) { total } }"#, "page"),
        (
            r#"{ animeCount(filter: { minScore: 11 }) }"#,
            "filter.minScore",
        ),
        (
            r#"{ animeCount(filter: { yearFrom: 2020, yearTo: 2019 }) }"#,
            "filter.yearFrom",
        ),
        (
            r#"{ genre(slug: "action") { anime(perPage: 101) { total } } }"#,
            "perPage",
        ),
        (
            r#"{ genre(slug: "action") { anime(page: -1) { total } } }"#,
            "page",
        ),
    ];
    let before = app.db_queries();
    for (query, argument) in cases {
        let body = app.graphql(query, json!({})).await;
        assert_eq!(first_error_code(&body), "BAD_USER_INPUT", "{query}: {body}");
        let error = &body["errors"][0];
        assert_eq!(
            error["extensions"]["argument"],
            json!(argument),
            "{query}: {body}"
        );
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(argument), "{query}: {message}");
    }
    // Only the genre the bad pages hang off is read (once, maybe twice
    // while its write-back lands); no bad argument reaches a list or count.
    assert!(
        app.db_queries() - before <= 2,
        "{} statements",
        app.db_queries() - before
    );

    // Every problem at once, one error each.
    let body = app
        .graphql(
            r#"{ animeList(page: 0, perPage: 500, filter: { minScore: 12, yearFrom: 2003, yearTo: 2001 }) { total } }"#,
            json!({}),
        )
        .await;
    let mut arguments: Vec<&str> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["extensions"]["argument"].as_str().unwrap_or_default())
        .collect();
    arguments.sort_unstable();
    assert_eq!(
        arguments,
        ["filter.minScore", "filter.yearFrom", "page", "perPage"],
        "{body}"
    );
}

/// The cache trace of a response: (key, status) pairs.
fn trace(body: &Value) -> Vec<(String, String)> {
    body["extensions"]["cache"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| {
                    (
                        e["key"].as_str().unwrap_or_default().to_owned(),
                        e["status"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn slugs_that_name_nothing_are_empty_lists() {
    let app = TestApp::spawn(Backend::Sqlite).await;

    // A well-formed slug no genre has: asked once, cached as an empty page.
    let unknown = app
        .graphql_debug(r#"{ animeList(filter: { genre: "no-such-genre" }) { total hasNextPage items { id } } }"#)
        .await;
    assert_eq!(
        unknown["data"]["animeList"],
        json!({ "total": 0, "hasNextPage": false, "items": [] }),
        "{unknown}"
    );
    assert_eq!(
        trace(&unknown),
        [(
            app.key("anime_list:genre=no-such-genre:sort=popularity_desc:page=1:per_page=20"),
            "MISS".to_owned()
        )]
    );

    // Anything that cannot be a slug: empty, without a key or a statement.
    let long = "a".repeat(300);
    for slug in ["Action", "a:b*", "", "x y", "[?]", long.as_str()] {
        for filter in [
            json!({ "genre": slug }),
            json!({ "theme": slug, "year": 2001 }),
            json!({ "studio": slug }),
        ] {
            let before = app.db_queries();
            let list = app
                .graphql(
                    "query($f: AnimeFilterInput) { animeList(filter: $f) { total hasNextPage items { id } } animeCount(filter: $f) }",
                    json!({ "f": filter }),
                )
                .await;
            assert_eq!(
                list["data"],
                json!({ "animeList": { "total": 0, "hasNextPage": false, "items": [] }, "animeCount": 0 }),
                "{filter}: {list}"
            );
            assert_eq!(app.db_queries(), before, "{filter} reached the database");
        }
    }
    let traced = app
        .graphql_debug(r#"{ animeList(filter: { genre: "Not:A*Slug" }) { total } animeCount(filter: { studio: "?" }) }"#)
        .await;
    assert!(trace(&traced).is_empty(), "{traced}");
    assert_eq!(traced["data"]["animeList"]["total"], json!(0));
}

/// The trace a list read should have: the list's own entry under `key`
/// with `status`, then one entry per anime of `items`, in order, each with
/// `entity_status`.
fn list_trace(
    app: &TestApp,
    key: &str,
    status: &str,
    items: &Value,
    entity_status: &str,
) -> Vec<(String, String)> {
    let mut want = vec![(key.to_owned(), status.to_owned())];
    want.extend(items.as_array().expect("items").iter().map(|anime| {
        (
            app.key(&format!("anime:id={}", id_of(anime))),
            entity_status.to_owned(),
        )
    }));
    want
}

/// Makes the least popular anime (by `animeList`) the most popular, by
/// 1 000 members over the top one: its id and new popularity.
async fn make_the_last_the_first(app: &TestApp, top: &str, least: &str) -> (i64, i64) {
    let before_write = app.data(top, json!({})).await;
    let last = app.data(least, json!({})).await["animeList"]["items"][0].clone();
    let last_id = id_of(&last);
    let top_popularity = before_write["animeList"]["items"][0]["popularity"]
        .as_i64()
        .expect("popularity");
    assert!(
        !before_write["animeList"]["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|a| id_of(a) == last_id),
        "the least popular anime is already on top"
    );
    let new_popularity = top_popularity + 1_000;
    let updated = app
        .admin(
            &format!(
                r#"mutation {{ updateAnime(id: "{last_id}", input: {{ popularity: {new_popularity} }}) {{ id popularity }} }}"#
            ),
            Some(&format!("Bearer {TOKEN}")),
        )
        .await;
    assert!(updated.get("errors").is_none(), "{updated}");
    (last_id, new_popularity)
}

#[tokio::test]
async fn a_second_read_hits_and_a_write_shows_on_the_next_read() {
    let mut settings = TestSettings::new(Backend::Sqlite);
    settings.vars.push(("ADMIN_TOKEN", TOKEN.to_owned()));
    let app = TestApp::spawn_with(settings).await;

    // A miss under the documented key (and one per anime it shows), then
    // a hit of all of them with no statement.
    let query = r#"{ animeList(filter: { genre: "action", yearFrom: 2001, yearTo: 2020, minScore: 5.5, format: TV }, sort: SCORE, page: 1, perPage: 10) { total items { id score } } }"#;
    let key = app.key(
        "anime_list:genre=action:years=2001-2020:format=tv:min_score=5.5:sort=score_desc:page=1:per_page=10",
    );
    let first = app.graphql_debug(query).await;
    assert!(first.get("errors").is_none(), "{first}");
    let items = &first["data"]["animeList"]["items"];
    assert!(!items.as_array().expect("items").is_empty(), "{first}");
    assert_eq!(trace(&first), list_trace(&app, &key, "MISS", items, "MISS"));
    let before = app.db_queries();
    let second = app.graphql_debug(query).await;
    assert_eq!(trace(&second), list_trace(&app, &key, "HIT", items, "HIT"));
    assert_eq!(second["data"], first["data"]);
    assert_eq!(app.db_queries(), before, "a hit ran a statement");

    // Popularity is relaxed by default: the least popular anime becoming
    // the most popular shows in its own entry at once, but the rankings
    // keep their ids (the one holding it is a hit, or PARTIAL while the
    // anime reloads) and catch up only when they expire.
    let top = r#"{ animeList(perPage: 5) { items { id popularity } } }"#;
    let least = r#"{ animeList(order: ASC, perPage: 1) { items { id popularity } } }"#;
    let top_before = app.data(top, json!({})).await;
    let (last_id, new_popularity) = make_the_last_the_first(&app, top, least).await;
    let stale = app.graphql_debug(least).await;
    assert_eq!(
        stale["data"]["animeList"]["items"][0],
        json!({ "id": last_id.to_string(), "popularity": new_popularity }),
        "{stale}"
    );
    let reads = trace(&stale);
    let least_key = app.key("anime_list:sort=popularity_asc:page=1:per_page=1");
    assert_eq!(reads.len(), 2, "{stale}");
    assert_eq!(reads[0].0, least_key, "{stale}");
    assert!(["HIT", "PARTIAL"].contains(&reads[0].1.as_str()), "{stale}");
    assert_eq!(reads[1].0, app.key(&format!("anime:id={last_id}")));
    let still = app.graphql_debug(top).await;
    assert_eq!(still["data"], top_before, "{still}");
    assert_eq!(
        trace(&still).first().map(|(_, status)| status.as_str()),
        Some("HIT"),
        "{still}"
    );

    // With no relaxed field, the write re-ranks on the next read.
    let mut settings = TestSettings::new(Backend::Sqlite);
    settings.vars.push(("ADMIN_TOKEN", TOKEN.to_owned()));
    settings
        .vars
        .push(("CACHE_RELAXED_FIELDS", "none".to_owned()));
    let app = TestApp::spawn_with(settings).await;
    let (last_id, new_popularity) = make_the_last_the_first(&app, top, least).await;
    let after = app.graphql_debug(top).await;
    assert_eq!(
        trace(&after).first().map(|(_, status)| status.as_str()),
        Some("MISS"),
        "{after}"
    );
    assert_eq!(
        after["data"]["animeList"]["items"][0],
        json!({ "id": last_id.to_string(), "popularity": new_popularity })
    );
    let new_last = app.data(least, json!({})).await["animeList"]["items"][0].clone();
    assert_ne!(id_of(&new_last), last_id);
}

#[tokio::test]
async fn counts_follow_the_filter_and_the_unfiltered_key_stays() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let all = rows(&app).await;

    // Without a filter, or with an empty one: today's key and value.
    let plain = app.graphql_debug("{ animeCount }").await;
    assert_eq!(plain["data"]["animeCount"], json!(SEEDED));
    assert_eq!(
        trace(&plain),
        [(app.key("anime_count:all"), "MISS".to_owned())]
    );
    // The write-back lands in the background: the empty filter reads the
    // same key, a hit once it has.
    let mut empty = Value::Null;
    for _ in 0..100 {
        empty = app.graphql_debug("{ animeCount(filter: {}) }").await;
        if trace(&empty)[0].1 == "HIT" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(empty["data"]["animeCount"], json!(SEEDED));
    assert_eq!(
        trace(&empty),
        [(app.key("anime_count:all"), "HIT".to_owned())]
    );

    // With one: its own key, the list's total, the rows' count.
    let filtered = app
        .graphql_debug(r#"{ animeCount(filter: { genre: "action", format: TV, season: FALL }) animeList(filter: { genre: "action", format: TV, season: FALL }) { total } }"#)
        .await;
    let want = all
        .iter()
        .filter(|r| {
            r.genres.iter().any(|g| g == "action")
                && r.anime.format == Format::Tv
                && r.anime.season == Some(anime::Season::Fall)
        })
        .count();
    assert!(want > 0);
    assert_eq!(filtered["data"]["animeCount"], json!(want), "{filtered}");
    assert_eq!(filtered["data"]["animeList"]["total"], json!(want));
    let keys: Vec<String> = trace(&filtered).into_iter().map(|(key, _)| key).collect();
    assert!(
        keys.contains(&app.key("anime_count:genre=action:season=fall:format=tv")),
        "{keys:?}"
    );
}

#[tokio::test]
async fn genre_theme_and_studio_pages_are_the_filtered_list() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let all = rows(&app).await;
    let theme = commonest(&all, |r| &r.themes);
    let studio = commonest(&all, |r| &r.studios);

    let genre = app
        .graphql_debug(r#"{ genre(slug: "action") { name animeCount anime(perPage: 5) { total items { id } } } }"#)
        .await;
    let page = &genre["data"]["genre"];
    assert_eq!(page["name"], json!("Action"), "{genre}");
    assert_eq!(page["anime"]["total"], page["animeCount"]);
    let action = |r: &Row| r.genres.iter().any(|g| g == "action");
    let want = expected(&all, &action, Sort::Popularity, true);
    assert_eq!(page["anime"]["total"], json!(want.len()));
    let ids: Vec<i64> = page["anime"]["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(ids, want[..5]);
    let keys: Vec<String> = trace(&genre).into_iter().map(|(key, _)| key).collect();
    assert!(
        keys.contains(&app.key("anime_list:genre=action:sort=popularity_desc:page=1:per_page=5")),
        "{keys:?}"
    );

    // A theme page 2 by title, a studio page by score ascending: the same
    // as `animeList` with that filter.
    for (field, slug, args) in [
        (
            "theme",
            theme,
            "sort: TITLE, order: DESC, page: 2, perPage: 4",
        ),
        ("studio", studio, "sort: SCORE, order: ASC, perPage: 6"),
    ] {
        let body = app
            .data(
                &format!(
                    r#"{{ t: {field}(slug: "{slug}") {{ animeCount anime({args}) {{ total page hasNextPage items {{ id }} }} }}
                         l: animeList(filter: {{ {field}: "{slug}" }}, {args}) {{ total page hasNextPage items {{ id }} }} }}"#
                ),
                json!({}),
            )
            .await;
        assert_eq!(body["t"]["anime"], body["l"], "{field} {slug}");
        assert_eq!(body["t"]["anime"]["total"], body["t"]["animeCount"]);
        assert!(!body["l"]["items"].as_array().expect("items").is_empty());
    }
}

#[tokio::test]
async fn a_full_grid_fits_the_complexity_limit_and_nested_pages_do_not() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let detail = "id title titleEnglish format episodes status season year score popularity \
                  genres pictureUrl synopsis createdAt updatedAt \
                  a: id b: title c: year d: score e: popularity";
    let relations = "genreList { name } themes { name } studios { name } players { embedUrl }";
    let grid = format!(
        "{{ animeList(perPage: 100) {{ total page perPage hasNextPage items {{ {detail} }} }} }}"
    );
    let body = app.graphql(&grid, json!({})).await;
    assert!(body.get("errors").is_none(), "{body}");
    assert_eq!(
        body["data"]["animeList"]["items"]
            .as_array()
            .expect("items")
            .len(),
        100
    );

    for abuse in [
        format!(
            "{{ a: animeList(perPage: 100) {{ items {{ {detail} {relations} }} }} b: animeList(page: 2, perPage: 100) {{ items {{ {detail} {relations} }} }} }}"
        ),
        "{ studios { anime(perPage: 100) { items { id title } } } }".to_owned(),
        "{ genres { anime(perPage: 100) { items { id title genreList { name } } } } }".to_owned(),
        "{ genres { anime(perPage: 100) { items { genreList { anime(perPage: 100) { items { id } } } } } } }"
            .to_owned(),
    ] {
        let body = app.graphql(&abuse, json!({})).await;
        assert_eq!(
            first_error_code(&body),
            "QUERY_TOO_COMPLEX",
            "{abuse}: {body}"
        );
    }
    // A page of each genre, as a home page shows them, still fits.
    let rows = app
        .graphql(
            "{ genres { name anime(perPage: 10) { items { id title pictureUrl score } } } }",
            json!({}),
        )
        .await;
    assert!(rows.get("errors").is_none(), "{rows}");
}
