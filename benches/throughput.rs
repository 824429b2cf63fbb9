//! Cache-hit throughput at 32 concurrent connections over HTTP, for
//! `popularAnime(limit: 20)`: the in-process tier on, off (every hit from
//! Redis), the database path (caching off), and a ceiling: a bare axum route
//! answering the same response bytes from memory.
//!
//! The load generator runs in this process on its own thread (32
//! connections, keep-alive), so the server and the generator share the
//! machine's cores; the ratios between rows are the meaningful figures.
//!
//! Run: `cargo bench --bench throughput` (optionally `-- <seconds per row>`).

mod common;
#[path = "../tests/it/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use axum::routing::post;
use common::{SEEDED, start};

const CONNECTIONS: usize = 32;
const QUERY: &str = r#"{"query":"{ popularAnime(limit: 20) { id title titleEnglish format episodes status season year score popularity genres pictureUrl synopsis } }"}"#;

struct Row {
    name: &'static str,
    requests: u64,
    seconds: f64,
    p50: Duration,
    p99: Duration,
}

impl Row {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
}

/// Drives `url` with `CONNECTIONS` keep-alive connections for `seconds`,
/// on a separate thread and runtime.
fn drive(name: &'static str, url: String, seconds: f64) -> Row {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("load runtime");
        runtime.block_on(async move {
            let deadline = Instant::now() + Duration::from_secs_f64(seconds);
            let workers = (0..CONNECTIONS).map(|_| {
                let url = url.clone();
                async move {
                    let client = reqwest::Client::builder()
                        .pool_max_idle_per_host(1)
                        .build()
                        .expect("client");
                    let mut latencies = Vec::new();
                    while Instant::now() < deadline {
                        let started = Instant::now();
                        let response = client
                            .post(&url)
                            .header("content-type", "application/json")
                            .body(QUERY)
                            .send()
                            .await
                            .expect("request");
                        let body = response.bytes().await.expect("body");
                        assert!(body.len() > 1_000, "short answer: {body:?}");
                        latencies.push(started.elapsed());
                    }
                    latencies
                }
            });
            let started = Instant::now();
            let mut all: Vec<Duration> = futures_util::future::join_all(workers)
                .await
                .into_iter()
                .flatten()
                .collect();
            let elapsed = started.elapsed().as_secs_f64();
            all.sort();
            let at = |p: f64| all[((all.len() - 1) as f64 * p) as usize];
            Row {
                name,
                requests: all.len() as u64,
                seconds: elapsed,
                p50: at(0.5),
                p99: at(0.99),
            }
        })
    })
    .join()
    .expect("load thread")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds: f64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3.0);
    let postgres = support::PostgresServer::start();
    let redis = support::RedisServer::start();
    let database_url = postgres.create_database();

    let local_on = start(&database_url, &redis.url(), &[]).await;
    let local_off = start(
        &database_url,
        &redis.url(),
        &[
            ("CACHE_LOCAL_MAX_BYTES", "0"),
            ("CACHE_NAMESPACE", "bench-redis"),
        ],
    )
    .await;
    let database = start(&database_url, &redis.url(), &[("CACHE_TTL_POPULAR", "0")]).await;

    // The ceiling answers the very bytes the service answers.
    let http = reqwest::Client::new();
    let bytes = http
        .post(&local_on.url)
        .header("content-type", "application/json")
        .body(QUERY)
        .send()
        .await
        .expect("sample")
        .bytes()
        .await
        .expect("sample body");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let ceiling_url = format!("http://{}/graphql", listener.local_addr().expect("addr"));
    let static_bytes = bytes.clone();
    let router = axum::Router::new().route(
        "/graphql",
        post(move || {
            let body = static_bytes.clone();
            async move {
                (
                    [("content-type", "application/graphql-response+json")],
                    body,
                )
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await });

    // Warm every path (pools, both cache tiers).
    for url in [&local_on.url, &local_off.url, &database.url] {
        for _ in 0..50 {
            let _ = http
                .post(url.as_str())
                .header("content-type", "application/json")
                .body(QUERY)
                .send()
                .await;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    println!(
        "popularAnime(limit: 20) over {SEEDED} anime, {} bytes per response, {CONNECTIONS} connections, {seconds} s per row",
        bytes.len()
    );
    let rows = [
        drive("static ceiling", ceiling_url, seconds),
        drive("local tier hit", local_on.url.clone(), seconds),
        drive("redis hit", local_off.url.clone(), seconds),
        drive("database", database.url.clone(), seconds),
    ];
    let served = local_on
        .state
        .cache
        .stats()
        .snapshot(anigo::cache::Resolver::PopularAnime);
    let redis_served = local_off
        .state
        .cache
        .stats()
        .snapshot(anigo::cache::Resolver::PopularAnime);
    println!(
        "(cache counters: local-tier instance {} hits / {} misses; Redis-only instance {} hits / {} misses)",
        served.hits, served.misses, redis_served.hits, redis_served.misses
    );
    let ceiling = rows[0].rate();
    let db = rows[3].rate();
    println!(
        "{:<16} {:>10} {:>10} {:>10} {:>12} {:>12}",
        "path", "req/s", "p50 ms", "p99 ms", "vs ceiling", "vs database"
    );
    for row in &rows {
        println!(
            "{:<16} {:>10.0} {:>10.3} {:>10.3} {:>11.2}x {:>11.1}x",
            row.name,
            row.rate(),
            row.p50.as_secs_f64() * 1e3,
            row.p99.as_secs_f64() * 1e3,
            row.rate() / ceiling,
            row.rate() / db
        );
    }
}
