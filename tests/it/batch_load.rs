//! Batch loads: the misses of one batch of a resolver that loads in
//! batches (`CachedQuery::LOADS_IN_BATCHES`) reach the database with one
//! `load_many`, hits with none, and a partial hit loads only what Redis did
//! not have. The cache facade of a real app, on the shared Redis.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anigo::cache::{CacheStatus, CachedQuery, QueryKey, Resolver};
use anigo::error::AppError;

use crate::common::{Backend, TestApp};
use crate::two_tier::until;

/// `n²`, loaded in batches; counts its `load_many` calls and their keys.
struct Square {
    n: u64,
    counts: Arc<Counts>,
}

#[derive(Default)]
struct Counts {
    batches: AtomicUsize,
    keys: AtomicUsize,
    singles: AtomicUsize,
}

impl CachedQuery for Square {
    type Output = u64;
    const RESOLVER: Resolver = Resolver::Anime;
    const LOADS_IN_BATCHES: bool = true;

    fn params(&self) -> String {
        format!("square={}", self.n)
    }

    fn tags(&self) -> Vec<String> {
        vec![format!("square:{}", self.n)]
    }

    async fn load(&self) -> Result<u64, AppError> {
        self.counts.singles.fetch_add(1, Ordering::SeqCst);
        Ok(self.n * self.n)
    }

    async fn load_many(queries: &[&Self]) -> Result<Vec<u64>, AppError> {
        if let Some(first) = queries.first() {
            first.counts.batches.fetch_add(1, Ordering::SeqCst);
            first.counts.keys.fetch_add(queries.len(), Ordering::SeqCst);
        }
        Ok(queries.iter().map(|query| query.n * query.n).collect())
    }
}

fn keys(app: &TestApp, numbers: impl Iterator<Item = u64>, counts: &Arc<Counts>) -> Vec<QueryKey> {
    numbers
        .map(|n| {
            app.state.cache.query_key(Square {
                n,
                counts: Arc::clone(counts),
            })
        })
        .collect()
}

/// (statuses by n, values by n) of one `fetch_many`.
async fn fetch(app: &TestApp, keys: &[QueryKey]) -> Vec<(CacheStatus, u64)> {
    let fetched = app.state.cache.fetch_many(keys).await;
    keys.iter()
        .map(|key| {
            let result = &fetched[key];
            let value = result.typed::<u64>().map(|v| *v).expect("a value");
            (result.status, value)
        })
        .collect()
}

#[tokio::test]
async fn a_batch_of_misses_loads_once_and_a_partial_hit_loads_only_what_is_missing() {
    // Arrange
    let app = TestApp::spawn(Backend::Sqlite).await;
    let counts = Arc::new(Counts::default());
    let hundred = keys(&app, 1..=100, &counts);

    // Act 1: 100 cold keys.
    let cold = fetch(&app, &hundred).await;

    // Assert 1: one batch load for all of them, the right values.
    assert!(cold.iter().all(|(status, _)| *status == CacheStatus::Miss));
    assert_eq!(cold[6].1, 49);
    assert_eq!(counts.batches.load(Ordering::SeqCst), 1);
    assert_eq!(counts.keys.load(Ordering::SeqCst), 100);
    assert_eq!(counts.singles.load(Ordering::SeqCst), 0);

    // Act 2: once the write-back landed (one pipeline), the same 100.
    let redis = crate::support::shared_redis();
    until("write-back", Duration::from_secs(5), async || {
        hundred
            .iter()
            .all(|key| redis.command(&["EXISTS", key.key()]).trim() == "1")
    })
    .await;
    let warm = fetch(&app, &hundred).await;

    // Assert 2: all hits, no load.
    assert!(warm.iter().all(|(status, _)| *status == CacheStatus::Hit));
    assert_eq!(counts.batches.load(Ordering::SeqCst), 1);

    // Act 3: ten invalidated, plus ten new keys, among the hundred.
    app.state
        .cache
        .invalidate((1..=10).map(|n| format!("square:{n}")).collect())
        .await
        .expect("invalidate");
    let mixed = keys(&app, 1..=110, &counts);
    let partial = fetch(&app, &mixed).await;

    // Assert 3: one more batch, of exactly the twenty that were missing.
    assert_eq!(counts.batches.load(Ordering::SeqCst), 2);
    assert_eq!(counts.keys.load(Ordering::SeqCst), 120);
    let misses = partial
        .iter()
        .filter(|(status, _)| *status == CacheStatus::Miss)
        .count();
    assert_eq!(misses, 20);
    assert_eq!(partial[104].1, 105 * 105);
    assert_eq!(counts.singles.load(Ordering::SeqCst), 0);
}
