//! The fault suite: steady load from a small client while Redis or
//! PostgreSQL fail, or the server is told to stop. Every response is
//! recorded; the figures are printed and written to `docs/reliability/`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anigo::db::BreakerState;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::common::{Backend, TestApp, TestSettings};
use crate::support::{self, PostgresServer, RedisServer};

/// Concurrent clients of the load.
const CLIENTS: usize = 8;

/// The cached query the load sends.
const CACHED: &str = "{ popularAnime(limit: 10) { id } animeCount }";

/// An uncached read: `anime(id)` of an id nobody asked for before, so it
/// misses every cache tier and needs the database.
const UNCACHED: &str = "query($id: ID!) { anime(id: $id) { id } }";

/// The longest an uncached read or a write may take (p99) once the
/// database is known to be down.
const FAST_FAIL: Duration = Duration::from_millis(50);

/// The longest the breaker may take to close after the database answers.
const RECOVERY: Duration = Duration::from_secs(2);

/// Admin token of the database fault tests (writes need it).
const TOKEN: &str = "faults-admin-token-0123456789";

/// The request body client `client` sends as its `n`-th request.
type Requests = Arc<dyn Fn(usize, u64) -> Value + Send + Sync>;

#[derive(Clone, Debug)]
struct Sample {
    /// Which client sent it (see [`mixed`]: even clients read cached data).
    client: usize,
    at: Duration,
    latency: Duration,
    /// `None`: the request failed at the HTTP level.
    body: Option<Value>,
    /// The request never reached the server (connection refused).
    was_refused: bool,
}

impl Sample {
    fn code(&self) -> Option<&str> {
        self.body.as_ref()?["errors"][0]["extensions"]["code"].as_str()
    }

    fn is_cached_client(&self) -> bool {
        self.client.is_multiple_of(2)
    }

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
    /// Every client sends `query`.
    fn start(app: &TestApp, query: &'static str) -> Self {
        Self::start_with(app, Arc::new(move |_, _| json!({ "query": query })))
    }

    fn start_with(app: &TestApp, requests: Requests) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let tasks = (0..CLIENTS)
            .map(|index| {
                let (stop, samples) = (Arc::clone(&stop), Arc::clone(&samples));
                let requests = Arc::clone(&requests);
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .expect("client");
                let url = app.url("/graphql");
                tokio::spawn(async move {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let body = requests(index, n);
                        n += 1;
                        let sent = Instant::now();
                        let (body, was_refused) = match client
                            .post(&url)
                            .header("x-anigo-cache-debug", "1")
                            .json(&body)
                            .send()
                            .await
                        {
                            Ok(response) => (response.json::<Value>().await.ok(), false),
                            Err(err) => (None, err.is_connect()),
                        };
                        samples.lock().await.push(Sample {
                            client: index,
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

async fn app_on(redis: &RedisServer) -> TestApp {
    let mut settings = TestSettings::new(Backend::Postgres);
    settings.redis_url = Some(redis.url());
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
    let app = app_on(&redis).await;
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

/// Even clients send the cached query; odd ones read `anime(id)` of ids no
/// one asked for before (so every one needs the database).
fn mixed() -> Requests {
    static NEXT_ID: AtomicU64 = AtomicU64::new(1_000_000);
    Arc::new(|client, _| {
        if client.is_multiple_of(2) {
            json!({ "query": CACHED })
        } else {
            let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
            json!({ "query": UNCACHED, "variables": { "id": id.to_string() } })
        }
    })
}

/// The app on a fresh database of `postgres`, the shared Redis, and an
/// admin token (for writes).
async fn app_on_postgres(postgres: &PostgresServer) -> TestApp {
    let mut settings = TestSettings::new(Backend::Postgres);
    settings.redis_url = Some(support::shared_redis_url());
    settings.database_url = Some(postgres.create_database());
    settings.vars.push(("ADMIN_TOKEN", TOKEN.to_owned()));
    TestApp::spawn_with(settings).await
}

/// Records the database breaker's state changes, timed like the load.
struct BreakerWatch {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<(Duration, BreakerState)>>,
}

impl BreakerWatch {
    fn start(app: &TestApp, load: &Load) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (db, started, stopped) = (app.state.db.clone(), load.started, Arc::clone(&stop));
        let task = tokio::spawn(async move {
            let mut changes = vec![(started.elapsed(), db.breaker_state())];
            while !stopped.load(Ordering::Relaxed) {
                let state = db.breaker_state();
                // Open and probing are one outage here.
                if state.is_open() != changes.last().is_some_and(|(_, s)| s.is_open()) {
                    changes.push((started.elapsed(), state));
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            changes
        });
        Self { stop, task }
    }

    async fn finish(self) -> Vec<(Duration, BreakerState)> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("breaker watch")
    }
}

/// When the breaker first opened at or after `from`, and when it next closed.
fn outage_window(
    changes: &[(Duration, BreakerState)],
    from: Duration,
) -> (Option<Duration>, Option<Duration>) {
    let opened = changes
        .iter()
        .find(|(at, state)| *at >= from && state.is_open())
        .map(|(at, _)| *at);
    let closed = opened.and_then(|opened| {
        changes
            .iter()
            .find(|(at, state)| *at > opened && !state.is_open())
            .map(|(at, _)| *at)
    });
    (opened, closed)
}

/// Waits (up to `limit`) until the breaker is in the wanted state.
async fn until_breaker(app: &TestApp, is_open: bool, limit: Duration) {
    let deadline = Instant::now() + limit;
    while app.state.db.breaker_state().is_open() != is_open {
        assert!(
            Instant::now() < deadline,
            "the breaker did not {} within {limit:?}",
            if is_open { "open" } else { "close" }
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The `p`-th percentile (0-100) of the latencies.
fn percentile(samples: &[&Sample], p: usize) -> Duration {
    let mut latencies: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
    latencies.sort();
    latencies
        .get((latencies.len() * p / 100).min(latencies.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

/// Requests made while the breaker is open: `/readyz`, a write, and the
/// same never-cached read five times (a failed load must not leave a fill
/// lease behind for the next one to wait on). Returns the report lines.
async fn probe_while_open(app: &TestApp) -> Vec<String> {
    let mut lines = Vec::new();
    let started = Instant::now();
    let (status, body) = app.get_json("/readyz").await;
    let ready_time = started.elapsed();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["database"]["status"], json!("down"), "{body}");
    assert_ne!(body["database"]["breaker"], json!("closed"), "{body}");
    assert!(ready_time < FAST_FAIL, "/readyz took {ready_time:?}");
    lines.push(format!(
        "`/readyz` answered 503 (database down, breaker {}) in {ready_time:?}",
        body["database"]["breaker"]
    ));

    let started = Instant::now();
    let write = app
        .admin(
            r#"mutation { createAnime(input: { title: "During the outage", format: TV, status: UPCOMING, pictureUrl: "https://img.example/o.webp", synopsis: "Never stored." }) { id } }"#,
            Some(&format!("Bearer {TOKEN}")),
        )
        .await;
    let write_time = started.elapsed();
    assert_eq!(
        write["errors"][0]["extensions"]["code"],
        json!("DATABASE_UNAVAILABLE"),
        "{write}"
    );
    assert_eq!(write["errors"][0]["extensions"]["retryable"], json!(true));
    assert!(write_time < FAST_FAIL, "the write took {write_time:?}");
    lines.push(format!(
        "a write (`createAnime`) failed with DATABASE_UNAVAILABLE in {write_time:?}"
    ));

    let mut worst = Duration::ZERO;
    for _ in 0..5 {
        let started = Instant::now();
        let body = app.graphql(UNCACHED, json!({ "id": "987654" })).await;
        worst = worst.max(started.elapsed());
        assert_eq!(
            body["errors"][0]["extensions"]["code"],
            json!("DATABASE_UNAVAILABLE"),
            "{body}"
        );
    }
    assert!(worst < FAST_FAIL, "a repeated uncached read took {worst:?}");
    lines.push(format!(
        "the same uncached read five times in a row: worst {worst:?}"
    ));
    lines
}

/// PostgreSQL stopped (fast shutdown) under load, then started again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_under_load() {
    // Arrange
    let mut postgres = PostgresServer::start();
    let app = app_on_postgres(&postgres).await;
    let load = Load::start_with(&app, mixed());
    let watch = BreakerWatch::start(&app, &load);
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Act: stop it, look around while the breaker is open, start it again.
    let stopped_at = load.elapsed();
    postgres = tokio::task::spawn_blocking(move || {
        postgres.stop();
        postgres
    })
    .await
    .expect("stopping PostgreSQL");
    until_breaker(&app, true, Duration::from_secs(5)).await;
    let while_open = probe_while_open(&app).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let restarting_at = load.elapsed();
    // Kept until the end: dropping the server stops it.
    let _postgres = tokio::task::spawn_blocking(move || {
        postgres.start_again();
        postgres
    })
    .await
    .expect("starting PostgreSQL again");
    let answering_at = load.elapsed();
    until_breaker(&app, false, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let changes = watch.finish().await;
    let samples = load.finish().await;

    // Assert
    let (opened_at, closed_at) = outage_window(&changes, stopped_at);
    let opened_at = opened_at.expect("the breaker opened");
    let closed_at = closed_at.expect("the breaker closed");
    let cached: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.is_cached_client() && s.at >= stopped_at && s.at < closed_at)
        .collect();
    let cached_failed = cached.iter().filter(|s| !s.is_ok()).count();
    let fast: Vec<&Sample> = samples
        .iter()
        .filter(|s| !s.is_cached_client() && s.at >= opened_at && s.at < restarting_at)
        .collect();
    let wrong_code = fast
        .iter()
        .filter(|s| s.code() != Some("DATABASE_UNAVAILABLE"))
        .count();
    let before_open: Vec<&Sample> = samples
        .iter()
        .filter(|s| !s.is_cached_client() && s.at >= stopped_at && s.at < opened_at)
        .collect();
    let first_ok = samples
        .iter()
        .filter(|s| !s.is_cached_client() && s.at >= answering_at && s.is_ok())
        .map(|s| s.at + s.latency)
        .min();
    let reads_back = first_ok.map(|at| at.saturating_sub(answering_at));
    let closed_after = closed_at.saturating_sub(answering_at);
    let (p50, p99) = (percentile(&fast, 50), percentile(&fast, 99));
    let mut lines = vec![
        format!(
            "breaker opened {:?} after the stop began; {} uncached reads before that, worst {:?}",
            opened_at - stopped_at,
            before_open.len(),
            percentile(&before_open, 100)
        ),
        format!(
            "{} uncached reads while it was open: {wrong_code} without DATABASE_UNAVAILABLE, p50 {p50:?}, p99 {p99:?}, worst {:?}",
            fast.len(),
            percentile(&fast, 100)
        ),
        format!(
            "{} cached responses during the outage, {cached_failed} failed",
            cached.len()
        ),
    ];
    lines.extend(while_open);
    lines.push(format!(
        "after the restart (PostgreSQL ready): breaker closed in {closed_after:?}, first uncached read answered in {}",
        reads_back.map_or_else(|| "(none)".to_owned(), |at| format!("{at:?}"))
    ));
    report("PostgreSQL stopped under load", &lines);
    assert_eq!(
        cached_failed, 0,
        "cached reads failed while PostgreSQL was down"
    );
    assert!(fast.len() >= 50, "too few samples: {}", fast.len());
    assert_eq!(
        wrong_code, 0,
        "uncached reads while open must say DATABASE_UNAVAILABLE"
    );
    assert!(p99 < FAST_FAIL, "uncached reads while open: p99 {p99:?}");
    assert!(
        closed_after <= RECOVERY,
        "the breaker closed {closed_after:?} after the restart"
    );
    assert!(
        reads_back.is_some_and(|d| d <= RECOVERY),
        "uncached reads back after {reads_back:?}"
    );
}

/// PostgreSQL frozen (SIGSTOP on every process of the cluster) under load,
/// then thawed: timeouts open the breaker instead of piling up requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_frozen_under_load() {
    // Arrange
    let postgres = PostgresServer::start();
    let app = app_on_postgres(&postgres).await;
    let load = Load::start_with(&app, mixed());
    let watch = BreakerWatch::start(&app, &load);
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Act
    let frozen_at = load.elapsed();
    postgres.freeze();
    until_breaker(&app, true, Duration::from_secs(6)).await;
    let while_open = probe_while_open(&app).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let thawed_at = load.elapsed();
    postgres.thaw();
    until_breaker(&app, false, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let changes = watch.finish().await;
    let samples = load.finish().await;

    // Assert
    let (opened_at, closed_at) = outage_window(&changes, frozen_at);
    let opened_at = opened_at.expect("the breaker opened");
    let closed_at = closed_at.expect("the breaker closed");
    let during: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at >= frozen_at && s.at < thawed_at)
        .collect();
    let worst = percentile(&during, 100);
    let cached_failed = samples
        .iter()
        .filter(|s| s.is_cached_client() && s.at >= frozen_at && s.at < closed_at)
        .filter(|s| !s.is_ok())
        .count();
    let fast: Vec<&Sample> = samples
        .iter()
        .filter(|s| !s.is_cached_client() && s.at >= opened_at && s.at < thawed_at)
        .collect();
    let wrong_code = fast
        .iter()
        .filter(|s| s.code() != Some("DATABASE_UNAVAILABLE"))
        .count();
    let first_ok = samples
        .iter()
        .filter(|s| !s.is_cached_client() && s.at >= thawed_at && s.is_ok())
        .map(|s| s.at + s.latency)
        .min();
    let reads_back = first_ok.map(|at| at.saturating_sub(thawed_at));
    let closed_after = closed_at.saturating_sub(thawed_at);
    let p99 = percentile(&fast, 99);
    let mut lines = vec![
        format!(
            "breaker opened {:?} after the freeze",
            opened_at - frozen_at
        ),
        format!("worst latency of any request while frozen: {worst:?}"),
        format!(
            "{} uncached reads while open: {wrong_code} without DATABASE_UNAVAILABLE, p50 {:?}, p99 {p99:?}",
            fast.len(),
            percentile(&fast, 50)
        ),
        format!("{cached_failed} cached responses failed"),
    ];
    lines.extend(while_open);
    lines.push(format!(
        "after the thaw: breaker closed in {closed_after:?}, first uncached read answered in {}",
        reads_back.map_or_else(|| "(none)".to_owned(), |at| format!("{at:?}"))
    ));
    report("PostgreSQL frozen under load", &lines);
    assert!(
        opened_at - frozen_at < Duration::from_secs(3),
        "the breaker took {:?} to open",
        opened_at - frozen_at
    );
    // The first requests wait for their timeouts (acquire 1 s, or acquire
    // + statement + grace for a statement already running); none longer.
    assert!(worst < Duration::from_millis(2_600), "worst {worst:?}");
    assert_eq!(cached_failed, 0);
    assert_eq!(wrong_code, 0);
    assert!(p99 < FAST_FAIL, "p99 {p99:?} while open");
    assert!(
        closed_after <= RECOVERY,
        "closed {closed_after:?} after the thaw"
    );
    assert!(
        reads_back.is_some_and(|d| d <= RECOVERY),
        "uncached reads back after {reads_back:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_completes_every_accepted_request() {
    let redis = RedisServer::start();
    let app = app_on(&redis).await;
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
