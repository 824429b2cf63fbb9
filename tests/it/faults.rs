//! The fault suite: steady load from a small client while Redis or
//! PostgreSQL fail, or the server is told to stop. Every response is
//! recorded; the figures are printed and written to `docs/reliability/`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::common::{Backend, TestApp, TestSettings};
use crate::support::{PostgresServer, RedisServer};

/// Concurrent clients of the load.
const CLIENTS: usize = 8;

/// The cached query the load sends.
const CACHED: &str = "{ popularAnime(limit: 10) { id } animeCount }";

#[derive(Clone, Debug)]
struct Sample {
    at: Duration,
    latency: Duration,
    /// `None`: the request failed at the HTTP level.
    body: Option<Value>,
    /// The request never reached the server (connection refused).
    was_refused: bool,
}

impl Sample {
    fn is_ok(&self) -> bool {
        self.body
            .as_ref()
            .is_some_and(|b| b.get("errors").is_none() && !b["data"].is_null())
    }

    fn is_hit(&self) -> bool {
        self.body.as_ref().is_some_and(|b| {
            b["extensions"]["cache"].as_array().is_some_and(|entries| {
                !entries.is_empty() && entries.iter().all(|e| e["status"] == "HIT")
            })
        })
    }
}

/// Steady load until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    started: Instant,
}

impl Load {
    fn start(app: &TestApp, query: &'static str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let tasks = (0..CLIENTS)
            .map(|_| {
                let (stop, samples) = (Arc::clone(&stop), Arc::clone(&samples));
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .expect("client");
                let url = app.url("/graphql");
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let sent = Instant::now();
                        let (body, was_refused) = match client
                            .post(&url)
                            .header("x-anigo-cache-debug", "1")
                            .json(&json!({ "query": query }))
                            .send()
                            .await
                        {
                            Ok(response) => (response.json::<Value>().await.ok(), false),
                            Err(err) => (None, err.is_connect()),
                        };
                        samples.lock().await.push(Sample {
                            at: sent - started,
                            latency: sent.elapsed(),
                            body,
                            was_refused,
                        });
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                })
            })
            .collect();
        Self {
            stop,
            samples,
            tasks,
            started,
        }
    }

    fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    async fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
        let mut samples = self.samples.lock().await.clone();
        samples.sort_by_key(|s| s.at);
        samples
    }
}

fn worst(samples: &[Sample], from: Duration, to: Duration) -> Duration {
    samples
        .iter()
        .filter(|s| s.at >= from && s.at < to)
        .map(|s| s.latency)
        .max()
        .unwrap_or_default()
}

/// Seconds after `from` until the hit ratio over a 500 ms window exceeds 90 %.
fn recovery(samples: &[Sample], from: Duration) -> Option<Duration> {
    let window = Duration::from_millis(500);
    let mut t = from;
    while t < from + Duration::from_secs(10) {
        let slice: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.at >= t && s.at < t + window)
            .collect();
        if slice.len() >= 5 && slice.iter().filter(|s| s.is_hit()).count() * 10 > slice.len() * 9 {
            return Some(t - from);
        }
        t += Duration::from_millis(100);
    }
    None
}

fn report(name: &str, lines: &[String]) {
    let text = format!(
        "## {name}\n\n{}\n",
        lines.iter().map(|l| format!("- {l}\n")).collect::<String>()
    );
    println!("{text}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/reliability");
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join(format!("{}.md", name.replace(' ', "_"))), text);
    }
}

async fn app_on(redis: &RedisServer, postgres: Option<&PostgresServer>) -> TestApp {
    let mut settings = TestSettings::new(Backend::Postgres);
    settings.redis_url = Some(redis.url());
    if let Some(postgres) = postgres {
        settings.database_url = Some(postgres.create_database());
    }
    settings
        .vars
        .push(("DATABASE_CONNECT_TIMEOUT_SECS", "1".to_owned()));
    TestApp::spawn_with(settings).await
}

/// How Redis fails in an outage test.
#[derive(Clone, Copy)]
enum Outage {
    /// SIGKILL, then a restart on the same port (empty).
    Kill,
    /// SIGSTOP, then SIGCONT: the connection stays open, nothing answers.
    Freeze,
}

/// Two seconds of Redis outage in the middle of steady load: zero failed
/// responses, bounded latency, hits back within 5 s.
async fn redis_outage_under_load(outage: Outage) {
    let mut redis = RedisServer::start();
    let app = app_on(&redis, None).await;
    let load = Load::start(&app, CACHED);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let broken_at = load.elapsed();
    match outage {
        Outage::Kill => redis.kill(),
        Outage::Freeze => redis.freeze(),
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let healed_at = load.elapsed();
    match outage {
        Outage::Kill => redis.restart(),
        Outage::Freeze => redis.thaw(),
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    let samples = load.finish().await;

    let failed = samples.iter().filter(|s| !s.is_ok()).count();
    let outage_worst = worst(&samples, broken_at, healed_at);
    let back = recovery(&samples, healed_at);
    let (name, how, healed) = match outage {
        Outage::Kill => ("Redis killed under load", "down", "restart"),
        Outage::Freeze => ("Redis frozen under load", "frozen (SIGSTOP)", "thaw"),
    };
    report(
        name,
        &[
            format!("{} responses, {failed} failed", samples.len()),
            format!("worst latency while Redis was {how}: {outage_worst:?}"),
            format!("hit ratio back above 90 % after: {back:?} (from the {healed})"),
        ],
    );
    assert_eq!(failed, 0, "failed responses while Redis was {how}");
    assert!(
        outage_worst < Duration::from_millis(1_000),
        "worst {outage_worst:?}"
    );
    assert!(
        back.is_some_and(|d| d <= Duration::from_secs(5)),
        "hits did not recover: {back:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_then_restarted_under_load() {
    redis_outage_under_load(Outage::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_frozen_then_thawed_under_load() {
    redis_outage_under_load(Outage::Freeze).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_under_load() {
    let redis = RedisServer::start();
    let mut postgres = PostgresServer::start();
    let app = app_on(&redis, Some(&postgres)).await;
    let load = Load::start(&app, CACHED);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let stopped_at = load.elapsed();
    postgres.stop();
    // Uncached reads fail promptly with INTERNAL while it is down.
    let started = Instant::now();
    let uncached = app
        .graphql("{ animePage(page: 7, perPage: 3) { total } }", json!({}))
        .await;
    let uncached_time = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let restarted_at = load.elapsed();
    postgres.start_again();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = app
        .graphql("{ animePage(page: 8, perPage: 3) { total } }", json!({}))
        .await;
    let samples = load.finish().await;

    let outage: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at >= stopped_at && s.at < restarted_at)
        .collect();
    let failed = outage.iter().filter(|s| !s.is_ok()).count();
    report(
        "PostgreSQL stopped under load",
        &[
            format!(
                "{} cached responses during the outage, {failed} failed",
                outage.len()
            ),
            format!("an uncached read answered INTERNAL in {uncached_time:?}"),
            format!(
                "uncached reads work again after the restart: {}",
                after.get("errors").is_none()
            ),
        ],
    );
    assert_eq!(failed, 0, "cached reads failed while PostgreSQL was down");
    assert_eq!(
        uncached["errors"][0]["extensions"]["code"],
        json!("INTERNAL"),
        "{uncached}"
    );
    assert!(
        uncached_time < Duration::from_secs(3),
        "uncached error took {uncached_time:?}"
    );
    assert!(after.get("errors").is_none(), "no recovery: {after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_completes_every_accepted_request() {
    let redis = RedisServer::start();
    let app = app_on(&redis, None).await;
    let url = app.url("/graphql");
    let load = Load::start(
        &app,
        "{ animePage(page: 2, perPage: 50) { items { id title synopsis } } }",
    );
    tokio::time::sleep(Duration::from_secs(1)).await;

    let stopped = app.stop();
    let stop_result = stopped.await;
    let samples = load.finish().await;

    // A request either completed or was never accepted (connection refused
    // after the listener closed); none may be cut off mid-way.
    let completed = samples.iter().filter(|s| s.is_ok()).count();
    let refused = samples.iter().filter(|s| s.was_refused).count();
    let probe = reqwest::Client::new()
        .post(&url)
        .json(&json!({"query": "{ animeCount }"}))
        .send()
        .await;
    report(
        "SIGTERM under load",
        &[
            format!("{completed} requests completed, {refused} refused after the listener closed"),
            format!("clean shutdown: {}", stop_result.is_ok()),
        ],
    );
    assert!(stop_result.is_ok());
    assert!(
        probe.as_ref().is_err_and(|e| e.is_connect()),
        "still accepting: {probe:?}"
    );
    for sample in samples.iter().filter(|s| !s.is_ok()) {
        assert!(
            sample.body.is_none(),
            "a failed answer instead of a refusal: {:?}",
            sample.body
        );
    }
}
