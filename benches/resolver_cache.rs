//! Database path vs cache hit, per cached resolver, in one run.
//!
//! Starts a throwaway PostgreSQL (seeded with 20,000 anime) and a throwaway
//! redis-server (the same support code the tests use), then two instances of
//! the real app on them: one with every cache TTL set to 0 (each read goes
//! to PostgreSQL) and one with the default policies, warmed first (each read
//! is a Redis hit). Each resolver is timed over HTTP, sequentially, on both,
//! and the medians are compared.
//!
//! Run: `cargo bench --bench resolver_cache` (optionally `-- <iterations>`).

mod common;
#[path = "../tests/it/support/mod.rs"]
mod support;

use common::{Running, SEEDED, start};

use std::time::{Duration, Instant};

use serde_json::{Value, json};

const DEFAULT_ITERATIONS: usize = 400;

/// One resolver's request body for iteration `i` (pages rotate over 1..=50).
fn body(resolver: &str, i: usize) -> Value {
    let query = match resolver {
        "popularAnime" => "{ popularAnime(limit: 20) { id title titleEnglish format episodes status season year score popularity genres pictureUrl synopsis } }".to_owned(),
        "animePage" => format!(
            "{{ animePage(page: {}, perPage: 20) {{ total hasNextPage items {{ id title popularity genres synopsis }} }} }}",
            i % 50 + 1
        ),
        "animeCount" => "{ animeCount }".to_owned(),
        "anime" => format!("{{ anime(id: \"{}\") {{ id title synopsis genres }} }}", i % 500 + 1),
        "__typename" => "{ __typename }".to_owned(),
        other => unreachable!("unknown resolver {other}"),
    };
    json!({ "query": query })
}

async fn time(
    http: &reqwest::Client,
    url: &str,
    resolver: &str,
    iterations: usize,
) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..iterations {
        let started = Instant::now();
        let response = http
            .post(url)
            .json(&body(resolver, i))
            .send()
            .await
            .expect("request");
        let json: Value = response.json().await.expect("JSON");
        samples.push(started.elapsed());
        assert!(json.get("errors").is_none(), "{resolver}: {json}");
    }
    samples.sort();
    samples
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let iterations: usize = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse().ok())
        .unwrap_or(DEFAULT_ITERATIONS);
    let postgres = support::PostgresServer::start();
    let redis = support::RedisServer::start();
    let database_url = postgres.create_database();

    let seeding = Instant::now();
    let cached = start(&database_url, &redis.url(), &[]).await;
    println!(
        "seeded {SEEDED} anime into PostgreSQL in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );
    let uncached = start(
        &database_url,
        &redis.url(),
        &[
            ("CACHE_TTL_POPULAR", "0"),
            ("CACHE_TTL_ANIME_PAGINATED", "0"),
            ("CACHE_TTL_ANIME_COUNT", "0"),
            ("CACHE_TTL_ANIME", "0"),
        ],
    )
    .await;
    let http = reqwest::Client::new();

    println!("{iterations} sequential HTTP requests per resolver and path; latency in ms");
    println!(
        "{:<14} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>9}",
        "resolver", "db p50", "db p90", "db p99", "hit p50", "hit p90", "hit p99", "p50 ratio"
    );
    let floor = time(&http, &cached.url, "__typename", iterations).await;
    println!(
        "{:<14} {:>10} {:>10} {:>10}   (HTTP + GraphQL with no resolver: the floor)",
        "__typename",
        ms(percentile(&floor, 0.5)),
        ms(percentile(&floor, 0.9)),
        ms(percentile(&floor, 0.99))
    );
    for resolver in ["popularAnime", "animePage", "animeCount", "anime"] {
        // Warm both paths (connection pools, PostgreSQL buffers) and fill
        // the cache with every key the timed loop reads.
        time(&http, &uncached.url, resolver, 50).await;
        time(&http, &cached.url, resolver, 500).await;
        tokio::time::sleep(Duration::from_millis(200)).await;

        let db = time(&http, &uncached.url, resolver, iterations).await;
        let hit = time(&http, &cached.url, resolver, iterations).await;
        let ratio = percentile(&db, 0.5).as_secs_f64() / percentile(&hit, 0.5).as_secs_f64();
        println!(
            "{:<14} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8.1}x",
            resolver,
            ms(percentile(&db, 0.5)),
            ms(percentile(&db, 0.9)),
            ms(percentile(&db, 0.99)),
            ms(percentile(&hit, 0.5)),
            ms(percentile(&hit, 0.9)),
            ms(percentile(&hit, 0.99)),
            ratio
        );
    }
    service_level(&cached, &uncached, iterations).await;
}

/// The same comparison one layer down: `AnimeService::get` through the
/// cache facade, no HTTP or GraphQL.
async fn service_level(cached: &Running, uncached: &Running, iterations: usize) {
    use anigo::service::PageRequest;
    println!("service level (cache facade, no HTTP): latency in µs");
    println!(
        "{:<14} {:>10} {:>10} {:>9}",
        "resolver", "db p50", "hit p50", "ratio"
    );
    macro_rules! row {
        ($name:expr, $make:expr) => {{
            let mut db = Vec::with_capacity(iterations);
            let mut hit = Vec::with_capacity(iterations);
            for (running, samples) in [(uncached, &mut db), (cached, &mut hit)] {
                let service = &running.state.anime;
                for i in 0..(iterations + 50) {
                    let query = $make(service, i);
                    let started = Instant::now();
                    service.get(query).await.expect("service read");
                    if i >= 50 {
                        samples.push(started.elapsed());
                    }
                }
                samples.sort();
            }
            let (db50, hit50) = (percentile(&db, 0.5), percentile(&hit, 0.5));
            println!(
                "{:<14} {:>10.0} {:>10.0} {:>8.1}x",
                $name,
                db50.as_secs_f64() * 1e6,
                hit50.as_secs_f64() * 1e6,
                db50.as_secs_f64() / hit50.as_secs_f64()
            );
        }};
    }
    row!("popularAnime", |s: &anigo::service::AnimeService,
                          _i: usize| s
        .popular(20));
    row!("animePage", |s: &anigo::service::AnimeService, i: usize| s
        .page(PageRequest {
            page: (i % 50 + 1) as u64,
            per_page: 20
        }));
    row!("animeCount", |s: &anigo::service::AnimeService,
                        _i: usize| s.count());
    row!("anime", |s: &anigo::service::AnimeService, i: usize| s
        .by_id((i % 500 + 1) as i32));
}
