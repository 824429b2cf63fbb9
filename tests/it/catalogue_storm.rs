//! The randomized write storm under eviction, over the catalogue: two
//! instances on one PostgreSQL and a tiny Redis that evicts anything, random
//! writes of every kind (list-ordering fields, titles, genres, themes,
//! studios, players, creates, deletes, genre and theme renames) on either
//! instance, each followed by reads on both of every catalogue query
//! (filtered and sorted lists, filtered counts, the taxonomy with counts,
//! genre pages, relations, searches), every answer checked against the
//! database read directly.

use anigo::db::{
    AnimeFilter, AnimeOrder, AnimeRepo, AnimeSort, SortDirection, Taxonomy, YearRange,
};
use serde_json::{Value, json};

use crate::common::{TestApp, id_of};
use crate::support::RedisServer;
use crate::two_tier::{BEARER, STRICT, two_instances};

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

const SORTS: [(&str, AnimeSort); 5] = [
    ("POPULARITY", AnimeSort::Popularity),
    ("SCORE", AnimeSort::Score),
    ("YEAR", AnimeSort::Year),
    ("TITLE", AnimeSort::Title),
    ("ID", AnimeSort::Id),
];

async fn write(app: &TestApp, mutation: &str) -> Value {
    let body = app
        .admin(&format!("mutation {{ {mutation} }}"), Some(BEARER))
        .await;
    assert!(body.get("errors").is_none(), "{mutation}: {body}");
    body["data"].clone()
}

fn ids(list: &Value) -> Vec<i64> {
    list.as_array().expect("a list").iter().map(id_of).collect()
}

fn slugs(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|t| t["slug"].as_str().expect("slug").to_owned())
        .collect()
}

/// One random write; returns what it did, for failure messages.
async fn random_write(
    rng: &mut Rng,
    app: &TestApp,
    step: usize,
    genres: &[String],
    created: &mut Vec<i64>,
) -> String {
    let id = rng.below(30) + 1;
    let names = |rng: &mut Rng, pool: &[String]| {
        let n = rng.below(3) as usize + 1;
        let picked: Vec<String> = (0..n).map(|_| format!("{:?}", rng.pick(pool))).collect();
        picked.join(", ")
    };
    let mutation = match rng.below(9) {
        0 => format!(
            "updateAnime(id: \"{id}\", input: {{ popularity: {} }}) {{ id }}",
            rng.below(5_000_000)
        ),
        1 => format!(
            "updateAnime(id: \"{id}\", input: {{ score: {}, year: {} }}) {{ id }}",
            rng.below(100) as f64 / 10.0,
            1990 + rng.below(35)
        ),
        2 => format!(
            "updateAnime(id: \"{id}\", input: {{ title: \"Storm Title {step}\" }}) {{ id }}"
        ),
        3 => format!(
            "updateAnime(id: \"{id}\", input: {{ genres: [{}] }}) {{ id }}",
            names(rng, genres)
        ),
        4 => {
            let pool = [
                "School".to_owned(),
                "Space".to_owned(),
                "Storm Theme".to_owned(),
            ];
            let studios = ["Storm Studio".to_owned(), "Other Studio".to_owned()];
            format!(
                "updateAnime(id: \"{id}\", input: {{ themes: [{}], studios: [{}] }}) {{ id }}",
                names(rng, &pool),
                names(rng, &studios)
            )
        }
        5 => format!(
            "updateAnime(id: \"{id}\", input: {{ players: [{{ embedUrl: \"https://v.example/{step}\", quality: \"720p\" }}] }}) {{ id }}"
        ),
        6 => {
            let data = write(
                app,
                &format!(
                    "createAnime(input: {{ title: \"Storm Created {step}\", format: TV, status: ONGOING, year: 2020, score: 7.5, popularity: {}, genres: [{}], themes: [\"Storm Theme\"], pictureUrl: \"https://img.example/s.webp\", synopsis: \"s\" }}) {{ id }}",
                    rng.below(5_000_000),
                    names(rng, genres)
                ),
            )
            .await;
            created.push(id_of(&data["createAnime"]));
            return format!("step {step}: created {}", data["createAnime"]["id"]);
        }
        7 if !created.is_empty() => {
            let victim = created.remove(rng.below(created.len() as u64) as usize);
            format!("deleteAnime(id: \"{victim}\")")
        }
        _ => {
            // Renames keep the slug: the name toggles.
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

async fn check_reads(rng: &mut Rng, reader: &TestApp, what: &str) {
    let repo = AnimeRepo::new(reader.state.db.clone());
    // A filtered, sorted list page and its count.
    let genre = *rng.pick(&["action", "drama", "comedy", "fantasy", "romance"]);
    let (sort_name, sort) = *rng.pick(&SORTS);
    let descending = rng.below(2) == 0;
    let years = (rng.below(2) == 0).then_some(YearRange {
        from: 2000,
        to: 2100,
    });
    let filter = AnimeFilter {
        genre: (rng.below(3) > 0).then(|| genre.to_owned()),
        years,
        ..AnimeFilter::default()
    };
    let order = AnimeOrder {
        sort,
        direction: if descending {
            SortDirection::Desc
        } else {
            SortDirection::Asc
        },
    };
    let mut filter_arg = Vec::new();
    if let Some(genre) = &filter.genre {
        filter_arg.push(format!("genre: \"{genre}\""));
    }
    if years.is_some() {
        filter_arg.push("yearFrom: 2000".to_owned());
    }
    let filter_arg = filter_arg.join(", ");
    let direction = if descending { "DESC" } else { "ASC" };
    let page = rng.below(3) + 1;
    let probe = rng.below(30) + 1;
    let search = *rng.pick(&["storm", "a", "sky", "the"]);
    let body = reader
        .graphql_debug(&format!(
            r#"{{
              animeList(filter: {{ {filter_arg} }}, sort: {sort_name}, order: {direction}, page: {page}, perPage: 10) {{ total items {{ id genres }} }}
              animeCount(filter: {{ {filter_arg} }})
              genres {{ slug animeCount }}
              themes {{ slug animeCount }}
              genre(slug: "{genre}") {{ name animeCount anime(perPage: 5) {{ total items {{ id }} }} }}
              one: anime(id: "{probe}") {{ title genres genreList {{ slug }} themes {{ slug }} studios {{ slug }} players {{ embedUrl }} }}
              searchAnime(query: "{search}", limit: 10) {{ id }}
            }}"#
        ))
        .await;
    assert!(body.get("errors").is_none(), "{what}: {body}");
    let data = &body["data"];

    let offset = (page - 1) * 10;
    let expected: Vec<i64> = repo
        .list(&filter, order, offset, 10)
        .await
        .expect("list")
        .iter()
        .map(|r| i64::from(r.anime.id))
        .collect();
    assert_eq!(
        ids(&data["animeList"]["items"]),
        expected,
        "{what}: stale list ({filter:?}, {order:?}): {body}"
    );
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

    for (field, kind) in [("genres", Taxonomy::Genre), ("themes", Taxonomy::Theme)] {
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

    let entry = repo
        .taxon_by_slug(Taxonomy::Genre, genre)
        .await
        .expect("genre");
    match entry {
        Some(entry) => {
            assert_eq!(
                data["genre"]["name"],
                json!(entry.taxon.name),
                "{what}: stale genre name"
            );
            assert_eq!(
                data["genre"]["animeCount"],
                json!(entry.anime_count),
                "{what}: stale genre count"
            );
            assert_eq!(
                data["genre"]["anime"]["total"],
                json!(entry.anime_count),
                "{what}: stale genre page"
            );
        }
        None => assert_eq!(data["genre"], Value::Null),
    }

    let record = repo.by_id(probe as i32).await.expect("by id");
    match record {
        None => assert_eq!(data["one"], Value::Null, "{what}"),
        Some(record) => {
            let one = &data["one"];
            assert_eq!(
                one["title"],
                json!(record.anime.title),
                "{what}: stale title {probe}"
            );
            assert_eq!(
                one["genres"],
                json!(record.genres),
                "{what}: stale genre names {probe}"
            );
            let id = [probe as i32];
            let of = |map: std::collections::HashMap<i32, Vec<anigo::db::Taxon>>| -> Vec<String> {
                map.get(&id[0])
                    .map(|taxa| taxa.iter().map(|t| t.slug.clone()).collect())
                    .unwrap_or_default()
            };
            assert_eq!(
                slugs(&one["genreList"]),
                of(repo.genres_of(&id).await.expect("genres")),
                "{what}: stale genreList {probe}"
            );
            assert_eq!(
                slugs(&one["themes"]),
                of(repo.themes_of(&id).await.expect("themes")),
                "{what}: stale themes {probe}"
            );
            assert_eq!(
                slugs(&one["studios"]),
                of(repo.studios_of(&id).await.expect("studios")),
                "{what}: stale studios {probe}"
            );
            let players: Vec<String> = repo
                .players_of(&id)
                .await
                .expect("players")
                .remove(&id[0])
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
            assert_eq!(got, players, "{what}: stale players {probe}");
        }
    }

    let expected: Vec<i64> = repo
        .search(search, 10)
        .await
        .expect("search")
        .iter()
        .map(|r| i64::from(r.anime.id))
        .collect();
    assert_eq!(
        ids(&data["searchAnime"]),
        expected,
        "{what}: stale search {search:?} {}",
        body["extensions"]
    );
}

#[tokio::test]
async fn a_catalogue_write_storm_under_eviction_never_serves_stale_data() {
    // Arrange: a tiny Redis that evicts anything, two instances.
    let redis = RedisServer::start();
    redis.command(&["CONFIG", "SET", "maxmemory", "4mb"]);
    redis.command(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
    let (a, b) = two_instances(&redis, STRICT).await;
    let genres: Vec<String> = a.data("{ genres { name } }", json!({})).await["genres"]
        .as_array()
        .expect("genres")
        .iter()
        .map(|g| g["name"].as_str().expect("name").to_owned())
        .collect();
    let filler = "x".repeat(20_000);
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut created = Vec::new();

    // Act + assert
    let mut checks = 0;
    for step in 0..80 {
        let writer = if rng.below(2) == 0 { &a } else { &b };
        let what = random_write(&mut rng, writer, step, &genres, &mut created).await;
        for _ in 0..3 {
            redis.command(&["SET", &format!("filler:{}", rng.below(1_000_000)), &filler]);
        }
        for reader in [&a, &b] {
            check_reads(&mut rng, reader, &what).await;
            checks += 1;
        }
    }
    let evicted = redis.evicted_keys();
    println!("{checks} catalogue reads checked against the database; Redis evicted {evicted} keys");
    assert!(evicted > 0, "the storm did not force any eviction");
}
