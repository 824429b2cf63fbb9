//! Shared by the benchmarks: start the real app in-process on throwaway
//! servers, seeded with 20,000 anime.

use std::collections::HashMap;

use anigo::{App, Config};

/// Anime seeded into the benchmark database.
pub(crate) const SEEDED: &str = "20000";

/// A running app: its GraphQL URL and state; stops when dropped.
pub(crate) struct Running {
    pub(crate) url: String,
    pub(crate) state: anigo::AppState,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Starts the app on `database_url` and `redis_url` with extra variables.
pub(crate) async fn start(
    database_url: &str,
    redis_url: &str,
    vars: &[(&'static str, &str)],
) -> Running {
    let mut env: HashMap<&'static str, String> = HashMap::from([
        ("DATABASE_URL", database_url.to_owned()),
        ("REDIS_URL", redis_url.to_owned()),
        ("BIND_ADDR", "127.0.0.1:0".to_owned()),
        ("DEMO_SEED_COUNT", SEEDED.to_owned()),
        ("CACHE_NAMESPACE", "bench".to_owned()),
        ("DATABASE_MAX_CONNECTIONS", "8".to_owned()),
    ]);
    env.extend(vars.iter().map(|(k, v)| (*k, (*v).to_owned())));
    // Let a run try other batching windows: CACHE_BATCH_WINDOW_US=… cargo bench
    if let Ok(window) = std::env::var("CACHE_BATCH_WINDOW_US") {
        env.insert("CACHE_BATCH_WINDOW_US", window);
    }
    let config = Config::from_lookup(|k| env.get(k).cloned()).expect("bench configuration");
    let app = App::build(config).await.expect("building the app");
    let url = format!("http://{}/graphql", app.local_addr());
    let state = app.state().clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async move {
        let _ = rx.await;
    }));
    Running {
        url,
        state,
        _stop: tx,
    }
}
