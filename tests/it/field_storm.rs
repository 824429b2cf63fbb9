//! The randomized storm under eviction: field-level writes of every kind
//! (each scalar field, each relation, creates, deletes, taxon renames) on
//! either of two instances sharing a tiny Redis that evicts anything, and
//! after each one every catalogue read on both, checked against the
//! database. Run twice:
//!
//! - with every field strict (`CACHE_RELAXED_FIELDS=none`): every read must
//!   be exactly the database's answer at that moment;
//! - with the default policy: only the declared relaxed field
//!   (`popularity`) may lag, only in rankings (never in an anime's own
//!   fields), and never by more than the rankings' TTL plus the
//!   stale-while-revalidate window: a ranking is accepted when it is the
//!   database's ranking under the members counts of some moment in that
//!   window.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anigo::db::{
    AnimeFilter, AnimeOrder, AnimeRepo, AnimeSort, SortDirection, Taxonomy, YearRange,
};
use anigo::entities::anime;
use sea_orm::EntityTrait;
use serde_json::{Value, json};

use crate::common::{TestApp, id_of};
use crate::support::RedisServer;
use crate::two_tier::{BEARER, STRICT, two_instances};

/// TTL of rankings, searches and pages in this storm (seconds).
const LIST_TTL_SECS: u64 = 2;
/// Stale-while-revalidate window in this storm (seconds).
const SWR_SECS: u64 = 1;

/// How old a ranking may be: its TTL, the stale window, and a second for
/// the load and write-back that produced it.
const MAX_LAG: Duration = Duration::from_secs(LIST_TTL_SECS + SWR_SECS + 1);

/// xorshift64: deterministic, so a failure replays.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Every members count the storm set, with when: what a ranking may lag
/// behind.
struct Popularity {
    /// Per anime, (since when, count) in time order.
    history: HashMap<i32, Vec<(Instant, i32)>>,
    /// How far behind a ranking may be ([`MAX_LAG`] when relaxed, zero
    /// when strict).
    max_lag: Duration,
}

impl Popularity {
    fn new(max_lag: Duration) -> Self {
        Self {
            history: HashMap::new(),
            max_lag,
        }
    }

    fn set(&mut self, id: i32, at: Instant, value: i32) {
        self.history.entry(id).or_default().push((at, value));
    }

    /// The counts as they were at `at` (an anime written only later has
    /// its first known count).
    fn at(&self, at: Instant) -> HashMap<i32, i32> {
        self.history
            .iter()
            .filter_map(|(&id, values)| {
                let value = values
                    .iter()
                    .rev()
                    .find(|(since, _)| *since <= at)
                    .or_else(|| values.first())?
                    .1;
                Some((id, value))
            })
            .collect()
    }

    /// The moments whose counts a ranking read now may show: the start of
    /// the lag window and every change within it (newest first).
    fn moments(&self, now: Instant) -> Vec<Instant> {
        let start = now.checked_sub(self.max_lag).unwrap_or(now);
        let mut moments: Vec<Instant> = self
            .history
            .values()
            .flatten()
            .map(|(at, _)| *at)
            .filter(|at| *at > start && *at <= now)
            .collect();
        moments.push(now);
        moments.push(start);
        moments.sort_unstable_by(|a, b| b.cmp(a));
        moments.dedup();
        moments
    }
}

fn ids(list: &Value) -> Vec<i32> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|item| id_of(item) as i32)
        .collect()
}

/// `rows` ordered by members count under `counts` (then by id), in the
/// natural direction or exactly reversed.
fn by_popularity(rows: &[i32], counts: &HashMap<i32, i32>, descending: bool) -> Vec<i32> {
    let mut sorted = rows.to_vec();
    sorted.sort_by_key(|id| (std::cmp::Reverse(counts.get(id).copied().unwrap_or(0)), *id));
    if !descending {
        sorted.reverse();
    }
    sorted
}

/// The search tier of `row` for the normalized text `q` (0 equal, 1
/// starts with, 2 a word starts with, 3 contains), as `db::anime_query`
/// ranks; `None` when no title contains it.
fn tier(row: &anime::Model, q: &str) -> Option<u8> {
    [
        Some(row.title.as_str()),
        row.title_english.as_deref(),
        row.title_original.as_deref(),
    ]
    .into_iter()
    .flatten()
    .map(str::to_lowercase)
    .filter_map(|title| {
        if title == q {
            Some(0)
        } else if title.starts_with(q) {
            Some(1)
        } else if title.contains(&format!(" {q}")) {
            Some(2)
        } else if title.contains(q) {
            Some(3)
        } else {
            None
        }
    })
    .min()
}

/// The search result for `q` (limit `limit`) under `counts`.
fn search(rows: &[anime::Model], q: &str, counts: &HashMap<i32, i32>, limit: usize) -> Vec<i32> {
    let mut found: Vec<(u8, i32, i32)> = rows
        .iter()
        .filter_map(|row| {
            let popularity = counts.get(&row.id).copied().unwrap_or(row.popularity);
            tier(row, q).map(|tier| (tier, -popularity, row.id))
        })
        .collect();
    found.sort_unstable();
    found.into_iter().take(limit).map(|(.., id)| id).collect()
}

/// Rankings read that were not the current one (but one of the lag
/// window): evidence that the storm exercised the relaxation.
static LAGGED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Checks a ranking read now: it must be what `expected` gives for the
/// counts of some moment of the lag window.
fn check_ranking(
    what: &str,
    got: &[i32],
    popularity: &Popularity,
    expected: impl Fn(&HashMap<i32, i32>) -> Vec<i32>,
) {
    let now = Instant::now();
    let moments = popularity.moments(now);
    if let Some(index) = moments
        .iter()
        .position(|&at| expected(&popularity.at(at)) == got)
    {
        if index > 0 && expected(&popularity.at(now)) != got {
            LAGGED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        return;
    }
    panic!(
        "{what}: {got:?} is no ranking of the last {:?}; now it is {:?}",
        popularity.max_lag,
        expected(&popularity.at(now))
    );
}

async fn write(app: &TestApp, mutation: &str) -> Value {
    let body = app
        .admin(&format!("mutation {{ {mutation} }}"), Some(BEARER))
        .await;
    assert!(body.get("errors").is_none(), "{mutation}: {body}");
    body["data"].clone()
}

/// One random field-level write; returns what it did.
async fn random_write(
    rng: &mut Rng,
    app: &TestApp,
    step: usize,
    genres: &[String],
    created: &mut Vec<i32>,
    popularity: &mut Popularity,
) -> String {
    let id = rng.below(30) as i32 + 1;
    let names = |rng: &mut Rng, pool: &[&str]| {
        let n = rng.below(3) as usize + 1;
        let picked: Vec<String> = (0..n).map(|_| format!("{:?}", rng.pick(pool))).collect();
        picked.join(", ")
    };
    let genre_names: Vec<&str> = genres.iter().map(String::as_str).collect();
    let update = |input: String| {
        format!("updateAnime(id: \"{id}\", input: {{ {input} }}) {{ id popularity }}")
    };
    let mutation = match rng.below(16) {
        0..=3 => {
            // A view counter: the relaxed field, written most often.
            let value = 1_000 + rng.below(3_000_000) as i32;
            let data = write(app, &update(format!("popularity: {value}"))).await;
            popularity.set(id, Instant::now(), value);
            return format!("step {step}: anime {id} popularity {value} ({data})");
        }
        4 => update(format!("score: {}", rng.below(100) as f64 / 10.0)),
        5 => update(format!("year: {}", 1990 + rng.below(35))),
        6 => update(format!("title: \"Field Storm {step}\"")),
        7 => update(format!(
            "titleEnglish: \"Storm English {step}\", synopsis: \"Synopsis {step}\""
        )),
        8 => update(format!(
            "format: {}, status: {}, season: {}",
            rng.pick(&["TV", "MOVIE", "OVA"]),
            rng.pick(&["FINISHED", "ONGOING"]),
            rng.pick(&["WINTER", "SUMMER", "null"])
        )),
        9 => update(format!("genres: [{}]", names(rng, &genre_names))),
        10 => update(format!(
            "themes: [{}], studios: [{}]",
            names(rng, &["School", "Space", "Storm Theme"]),
            names(rng, &["Storm Studio", "Other Studio"])
        )),
        11 => update(format!(
            "players: [{{ embedUrl: \"https://v.example/{step}\", quality: \"720p\" }}], episodeList: [{{ number: 1, title: \"E {step}\" }}], episodes: {}",
            rng.below(50) + 1
        )),
        12 => update(format!(
            "ageRating: {}, pictureUrl: \"https://img.example/{step}.webp\"",
            rng.pick(&["PG", "R", "null"])
        )),
        13 => {
            let value = rng.below(3_000_000) as i32;
            let data = write(
                app,
                &format!(
                    "createAnime(input: {{ title: \"Storm Created {step}\", format: TV, status: ONGOING, year: 2020, score: 7.5, popularity: {value}, genres: [{}], pictureUrl: \"https://img.example/s.webp\", synopsis: \"s\" }}) {{ id }}",
                    names(rng, &genre_names)
                ),
            )
            .await;
            let new = id_of(&data["createAnime"]) as i32;
            popularity.set(new, Instant::now(), value);
            created.push(new);
            return format!("step {step}: created {new}");
        }
        14 if !created.is_empty() => {
            let victim = created.remove(rng.below(created.len() as u64) as usize);
            format!("deleteAnime(id: \"{victim}\")")
        }
        _ => {
            let slug = rng.pick(&["action", "drama", "comedy"]);
            format!(
                "renameGenre(slug: \"{slug}\", name: \"{} {step}\") {{ slug }}",
                slug.to_uppercase()
            )
        }
    };
    write(app, &mutation).await;
    format!("step {step}: {mutation}")
}

const SORTS: [(&str, AnimeSort); 5] = [
    ("POPULARITY", AnimeSort::Popularity),
    ("SCORE", AnimeSort::Score),
    ("YEAR", AnimeSort::Year),
    ("TITLE", AnimeSort::Title),
    ("ID", AnimeSort::Id),
];

/// Every read of the catalogue on `reader`, checked.
async fn check_reads(rng: &mut Rng, reader: &TestApp, what: &str, popularity: &Popularity) {
    let repo = AnimeRepo::new(reader.state.db.clone());
    let genre = *rng.pick(&["action", "drama", "comedy", "fantasy", "romance"]);
    let (sort_name, sort) = *rng.pick(&SORTS);
    let descending = rng.below(2) == 0;
    let with_years = rng.below(2) == 0;
    let filter = AnimeFilter {
        genre: (rng.below(3) > 0).then(|| genre.to_owned()),
        years: with_years.then_some(YearRange {
            from: 2000,
            to: 2100,
        }),
        ..AnimeFilter::default()
    };
    let mut filter_arg = Vec::new();
    if let Some(genre) = &filter.genre {
        filter_arg.push(format!("genre: \"{genre}\""));
    }
    if with_years {
        filter_arg.push("yearFrom: 2000".to_owned());
    }
    let filter_arg = filter_arg.join(", ");
    let direction = if descending { "DESC" } else { "ASC" };
    let page = rng.below(3) + 1;
    let probe = rng.below(30) + 1;
    let text = *rng.pick(&["storm", "a", "sky", "the"]);
    let body = reader
        .graphql_debug(&format!(
            r#"{{
              animeList(filter: {{ {filter_arg} }}, sort: {sort_name}, order: {direction}, page: {page}, perPage: 10) {{ total items {{ id }} }}
              animeCount(filter: {{ {filter_arg} }})
              popularAnime(limit: 10) {{ id popularity }}
              animePage(page: {page}, perPage: 10) {{ total items {{ id }} }}
              genres {{ slug name animeCount }}
              themes {{ slug animeCount }}
              studios {{ slug animeCount }}
              genre(slug: "{genre}") {{ animeCount anime(perPage: 5) {{ total items {{ id }} }} }}
              one: anime(id: "{probe}") {{
                title titleEnglish format status season year score popularity episodes ageRating pictureUrl synopsis
                genres genreList {{ slug }} themes {{ slug }} studios {{ slug }} players {{ embedUrl }} episodeList {{ number title }}
              }}
              searchAnime(query: "{text}", limit: 10) {{ id }}
            }}"#
        ))
        .await;
    assert!(body.get("errors").is_none(), "{what}: {body}");
    let data = &body["data"];
    let trace = &body["extensions"];

    // Rows as the database has them now: members counts in rows are
    // current (the anime's own fields are never relaxed).
    let rows: Vec<anime::Model> = anime::Entity::find()
        .all(&reader.state.db)
        .await
        .expect("rows");
    let member_ids = |filter: &AnimeFilter| {
        let repo = repo.clone();
        let filter = filter.clone();
        async move {
            repo.list_ids(&filter, AnimeSort::Id.natural(), 0, 100_000)
                .await
                .expect("members")
        }
    };

    // The list page: exact unless ranked by members count.
    let order = AnimeOrder {
        sort,
        direction: if descending {
            SortDirection::Desc
        } else {
            SortDirection::Asc
        },
    };
    let offset = ((page - 1) * 10) as usize;
    let got = ids(&data["animeList"]["items"]);
    if sort == AnimeSort::Popularity {
        let members = member_ids(&filter).await;
        check_ranking(
            &format!("{what}: list {filter:?} {order:?}"),
            &got,
            popularity,
            |counts| {
                by_popularity(&members, counts, order.direction == SortDirection::Desc)
                    .into_iter()
                    .skip(offset)
                    .take(10)
                    .collect()
            },
        );
    } else {
        let expected = repo
            .list_ids(&filter, order, offset as u64, 10)
            .await
            .expect("list");
        assert_eq!(
            got, expected,
            "{what}: stale list ({filter:?}, {order:?}) {trace}"
        );
    }
    let total = repo.count(&filter).await.expect("count");
    assert_eq!(
        data["animeList"]["total"],
        json!(total),
        "{what}: stale total"
    );
    assert_eq!(
        data["animeCount"],
        json!(total),
        "{what}: stale filtered count"
    );

    // The popular ranking lags; each anime's own count never does.
    let all = member_ids(&AnimeFilter::default()).await;
    let popular = ids(&data["popularAnime"]);
    check_ranking(
        &format!("{what}: popularAnime"),
        &popular,
        popularity,
        |counts| {
            by_popularity(&all, counts, true)
                .into_iter()
                .take(10)
                .collect()
        },
    );
    for item in data["popularAnime"].as_array().expect("popular") {
        let id = id_of(item) as i32;
        let row = rows
            .iter()
            .find(|row| row.id == id)
            .expect("a listed anime exists");
        assert_eq!(
            item["popularity"],
            json!(row.popularity),
            "{what}: stale count of {id}"
        );
    }

    // Id order: exact.
    let expected = repo
        .list_ids(
            &AnimeFilter::default(),
            AnimeSort::Id.natural(),
            offset as u64,
            10,
        )
        .await
        .expect("page");
    assert_eq!(
        ids(&data["animePage"]["items"]),
        expected,
        "{what}: stale page {trace}"
    );
    assert_eq!(
        data["animePage"]["total"],
        json!(all.len()),
        "{what}: stale page total"
    );

    // Taxonomies and their counts: exact.
    for (field, kind) in [
        ("genres", Taxonomy::Genre),
        ("themes", Taxonomy::Theme),
        ("studios", Taxonomy::Studio),
    ] {
        let expected: Vec<(String, u64)> = repo
            .taxa(kind)
            .await
            .expect("taxa")
            .into_iter()
            .map(|t| (t.taxon.slug, t.anime_count))
            .collect();
        let got: Vec<(String, u64)> = data[field]
            .as_array()
            .expect("list")
            .iter()
            .map(|t| {
                (
                    t["slug"].as_str().expect("slug").to_owned(),
                    t["animeCount"].as_u64().expect("count"),
                )
            })
            .collect();
        assert_eq!(got, expected, "{what}: stale {field}");
    }

    // A genre's page: ranked by members count.
    match repo
        .taxon_by_slug(Taxonomy::Genre, genre)
        .await
        .expect("genre")
    {
        None => assert_eq!(data["genre"], Value::Null, "{what}"),
        Some(entry) => {
            assert_eq!(
                data["genre"]["animeCount"],
                json!(entry.anime_count),
                "{what}"
            );
            let members = member_ids(&AnimeFilter {
                genre: Some(genre.to_owned()),
                ..AnimeFilter::default()
            })
            .await;
            check_ranking(
                &format!("{what}: genre {genre} page"),
                &ids(&data["genre"]["anime"]["items"]),
                popularity,
                |counts| {
                    by_popularity(&members, counts, true)
                        .into_iter()
                        .take(5)
                        .collect()
                },
            );
        }
    }

    // One anime: every field exact, relations too.
    let probe = probe as i32;
    match rows.iter().find(|row| row.id == probe) {
        None => assert_eq!(data["one"], Value::Null, "{what}"),
        Some(row) => {
            let one = &data["one"];
            let enum_name = |value: &Value| value.as_str().map(str::to_owned);
            assert_eq!(one["title"], json!(row.title), "{what}: title of {probe}");
            assert_eq!(one["titleEnglish"], json!(row.title_english), "{what}");
            assert_eq!(
                one["synopsis"],
                json!(row.synopsis),
                "{what}: synopsis of {probe}"
            );
            assert_eq!(
                one["popularity"],
                json!(row.popularity),
                "{what}: count of {probe}"
            );
            assert_eq!(one["score"], json!(row.score), "{what}: score of {probe}");
            assert_eq!(one["year"], json!(row.year), "{what}: year of {probe}");
            assert_eq!(one["episodes"], json!(row.episodes), "{what}");
            assert_eq!(one["pictureUrl"], json!(row.picture_url), "{what}");
            assert_eq!(
                enum_name(&one["format"]),
                serde_json::to_value(row.format)
                    .ok()
                    .and_then(|v| enum_name(&v)),
                "{what}: format of {probe}"
            );
            assert_eq!(
                enum_name(&one["status"]),
                serde_json::to_value(row.status)
                    .ok()
                    .and_then(|v| enum_name(&v)),
                "{what}: status of {probe}"
            );
            assert_eq!(
                one["season"].is_null(),
                row.season.is_none(),
                "{what}: season of {probe}"
            );
            assert_eq!(
                one["ageRating"].is_null(),
                row.age_rating.is_none(),
                "{what}"
            );
            let id = [probe];
            let slugs_of = |map: HashMap<i32, Vec<anigo::db::Taxon>>| -> Vec<String> {
                map.get(&probe)
                    .map(|taxa| taxa.iter().map(|t| t.slug.clone()).collect())
                    .unwrap_or_default()
            };
            let slugs = |list: &Value| -> Vec<String> {
                list.as_array()
                    .expect("taxa")
                    .iter()
                    .map(|t| t["slug"].as_str().expect("slug").to_owned())
                    .collect()
            };
            let genres = repo.genres_of(&id).await.expect("genres");
            let names: Vec<String> = genres
                .get(&probe)
                .map(|taxa| taxa.iter().map(|t| t.name.clone()).collect())
                .unwrap_or_default();
            assert_eq!(
                one["genres"],
                json!(names),
                "{what}: genre names of {probe}"
            );
            assert_eq!(
                slugs(&one["genreList"]),
                slugs_of(genres),
                "{what}: genres of {probe}"
            );
            assert_eq!(
                slugs(&one["themes"]),
                slugs_of(repo.themes_of(&id).await.expect("themes")),
                "{what}: themes of {probe}"
            );
            assert_eq!(
                slugs(&one["studios"]),
                slugs_of(repo.studios_of(&id).await.expect("studios")),
                "{what}: studios of {probe}"
            );
            let players: Vec<String> = repo
                .players_of(&id)
                .await
                .expect("players")
                .remove(&probe)
                .unwrap_or_default()
                .into_iter()
                .map(|p| p.embed_url)
                .collect();
            let got: Vec<String> = one["players"]
                .as_array()
                .expect("players")
                .iter()
                .map(|p| p["embedUrl"].as_str().expect("url").to_owned())
                .collect();
            assert_eq!(got, players, "{what}: players of {probe}");
            let episodes: Vec<(i32, Option<String>)> = repo
                .episodes_of(&id)
                .await
                .expect("episodes")
                .remove(&probe)
                .unwrap_or_default()
                .into_iter()
                .map(|e| (e.number, e.title))
                .collect();
            let got: Vec<(i32, Option<String>)> = one["episodeList"]
                .as_array()
                .expect("episodes")
                .iter()
                .map(|e| {
                    (
                        e["number"].as_i64().expect("number") as i32,
                        e["title"].as_str().map(str::to_owned),
                    )
                })
                .collect();
            assert_eq!(got, episodes, "{what}: episodes of {probe}");
        }
    }

    // Search: titles exact, ranking within a tier by members count.
    let got = ids(&data["searchAnime"]);
    let now_expected = search(&rows, text, &popularity.at(Instant::now()), 10);
    let db_now: Vec<i32> = repo.search_ids(text, 10).await.expect("search");
    assert_eq!(
        now_expected, db_now,
        "the test's model of the search ranking is wrong"
    );
    check_ranking(
        &format!("{what}: search {text:?}"),
        &got,
        popularity,
        |counts| search(&rows, text, counts, 10),
    );
}

/// Runs the storm: `strict` with every field strict (nothing may lag),
/// else with the default policy and short list TTLs.
async fn storm(strict: bool) {
    // Arrange: a tiny Redis that evicts anything, two instances.
    let redis = RedisServer::start();
    redis.command(&["CONFIG", "SET", "maxmemory", "4mb"]);
    redis.command(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
    let ttl = LIST_TTL_SECS.to_string();
    let swr = SWR_SECS.to_string();
    let mut vars = vec![
        ("CACHE_TTL_POPULAR", ttl.as_str()),
        ("CACHE_TTL_ANIME_LIST", ttl.as_str()),
        ("CACHE_TTL_ANIME_PAGINATED", ttl.as_str()),
        ("CACHE_TTL_ANIME_SEARCH", ttl.as_str()),
        ("CACHE_STALE_WHILE_REVALIDATE", swr.as_str()),
    ];
    if strict {
        vars.extend_from_slice(STRICT);
    }
    let (a, b) = two_instances(&redis, &vars).await;
    let genres: Vec<String> = a.data("{ genres { name } }", json!({})).await["genres"]
        .as_array()
        .expect("genres")
        .iter()
        .map(|g| g["name"].as_str().expect("name").to_owned())
        .collect();
    let mut popularity = Popularity::new(if strict { Duration::ZERO } else { MAX_LAG });
    let started = Instant::now();
    for row in anime::Entity::find().all(&a.state.db).await.expect("rows") {
        popularity.set(row.id, started, row.popularity);
    }
    let filler = "x".repeat(20_000);
    let mut rng = Rng(if strict {
        0x2545_f491_4f6c_dd1d
    } else {
        0x9e37_79b9_7f4a_7c15
    });
    let mut created = Vec::new();
    let lagged_before = LAGGED.load(std::sync::atomic::Ordering::Relaxed);

    // Act + assert
    let mut checks = 0;
    for step in 0..70 {
        let writer = if rng.below(2) == 0 { &a } else { &b };
        let what = random_write(
            &mut rng,
            writer,
            step,
            &genres,
            &mut created,
            &mut popularity,
        )
        .await;
        for _ in 0..3 {
            redis.command(&["SET", &format!("filler:{}", rng.below(1_000_000)), &filler]);
        }
        for reader in [&a, &b] {
            check_reads(&mut rng, reader, &what, &popularity).await;
            checks += 1;
        }
    }
    let evicted = redis.evicted_keys();
    let lagged = LAGGED.load(std::sync::atomic::Ordering::Relaxed) - lagged_before;
    println!(
        "{}: {checks} reads checked over {:?}; {lagged} rankings lagged behind the members counts (within {:?}); Redis evicted {evicted} keys",
        if strict { "strict" } else { "relaxed" },
        started.elapsed(),
        popularity.max_lag,
    );
    assert!(evicted > 0, "the storm did not force any eviction");
    if !strict {
        assert!(
            started.elapsed() > MAX_LAG,
            "the storm was too short for rankings to expire during it"
        );
    }
}

#[tokio::test]
async fn field_writes_of_every_kind_under_eviction_never_serve_stale_data() {
    storm(true).await;
}

#[tokio::test]
async fn field_writes_of_every_kind_let_only_rankings_by_members_lag_within_their_ttl() {
    storm(false).await;
}
