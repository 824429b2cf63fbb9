//! `TestApp`: the real application on `127.0.0.1:0` with a fresh database,
//! plus typed helpers for the queries the tests send.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anigo::{App, AppState, Config};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::support;

/// Anime seeded into every test database: 12 full pages of 20 and a last
/// page of 10, so paging arithmetic has an uneven end.
pub(crate) const SEEDED: u64 = 250;

/// Statements of one database load of a list of anime (`popularAnime`, a
/// page): the ids, then the rows and their genre, theme and studio ids.
pub(crate) const LIST_LOAD_STATEMENTS: u64 = 3;

/// Which database the app runs on.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Backend {
    /// A fresh database on the throwaway PostgreSQL server.
    Postgres,
    /// A fresh SQLite file in a temp dir (the embedded default's driver).
    Sqlite,
}

/// Builder-style settings for [`TestApp::spawn_with`].
pub(crate) struct TestSettings {
    pub(crate) backend: Backend,
    /// Redis URL; `None` uses the shared throwaway Redis.
    pub(crate) redis_url: Option<String>,
    /// Database URL; `None` creates a fresh one for `backend`.
    pub(crate) database_url: Option<String>,
    /// Extra environment-style variables.
    pub(crate) vars: Vec<(&'static str, String)>,
}

impl TestSettings {
    pub(crate) fn new(backend: Backend) -> Self {
        Self {
            backend,
            redis_url: None,
            database_url: None,
            vars: Vec::new(),
        }
    }
}

/// A running application and an HTTP client for it.
pub(crate) struct TestApp {
    pub(crate) addr: SocketAddr,
    pub(crate) http: reqwest::Client,
    pub(crate) state: AppState,
    /// The database the app runs on (a second instance can share it).
    pub(crate) database_url: String,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    /// Keeps the SQLite file alive for the app's lifetime.
    _dir: tempfile::TempDir,
}

impl TestApp {
    /// The app on `backend`, seeded with [`SEEDED`] anime, using the shared
    /// throwaway Redis.
    pub(crate) async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(TestSettings::new(backend)).await
    }

    /// The app with custom settings.
    pub(crate) async fn spawn_with(settings: TestSettings) -> Self {
        let dir = tempfile::tempdir().expect("creating a temp dir");
        let database_url = settings
            .database_url
            .unwrap_or_else(|| match settings.backend {
                Backend::Postgres => support::fresh_database_url(),
                Backend::Sqlite => format!("sqlite://{}/anigo.db?mode=rwc", dir.path().display()),
            });
        let redis_url = settings.redis_url.unwrap_or_else(support::shared_redis_url);
        let mut vars: HashMap<&'static str, String> = HashMap::from([
            ("DATABASE_URL", database_url.clone()),
            ("REDIS_URL", redis_url),
            ("BIND_ADDR", "127.0.0.1:0".to_owned()),
            ("DEMO_SEED_COUNT", SEEDED.to_string()),
            ("REDIS_CONNECT_TIMEOUT_MS", "500".to_owned()),
            ("SHUTDOWN_TIMEOUT_SECS", "5".to_owned()),
            // Each app its own namespace, so tests sharing a Redis never
            // see each other's keys.
            ("CACHE_NAMESPACE", unique_namespace()),
            // Most tests read the per-field cache trace without the admin
            // token; `tests/it/http.rs` checks the default (admin only).
            ("CACHE_DEBUG_PUBLIC", "true".to_owned()),
            // No dictionary training in the background (it reads the
            // database and Redis at a moment of its own, which statement
            // and command counts would see); `tests/it/dictionary.rs` and
            // `tests/it/memory.rs` turn it on.
            ("CACHE_COMPRESSION", "zstd".to_owned()),
        ]);
        vars.extend(settings.vars);
        let config =
            Config::from_lookup(|name| vars.get(name).cloned()).expect("valid test configuration");

        let app = App::build(config).await.expect("building the app");
        let addr = app.local_addr();
        let state = app.state().clone();
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async move {
            let _ = rx.await;
        }));
        Self {
            addr,
            http: reqwest::Client::new(),
            state,
            database_url,
            shutdown: Some(tx),
            server: Some(server),
            _dir: dir,
        }
    }

    /// `http://addr` + `path`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POSTs a GraphQL request and returns the response.
    pub(crate) async fn post(&self, query: &str, variables: Value) -> reqwest::Response {
        self.http
            .post(self.url("/graphql"))
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("sending the GraphQL request")
    }

    /// POSTs a GraphQL request with `x-anigo-cache-debug: 1` and returns the
    /// JSON body (with `extensions.cache`).
    pub(crate) async fn graphql_debug(&self, query: &str) -> Value {
        self.http
            .post(self.url("/graphql"))
            .header("x-anigo-cache-debug", "1")
            .json(&json!({ "query": query }))
            .send()
            .await
            .expect("sending the GraphQL request")
            .json()
            .await
            .expect("GraphQL response is JSON")
    }

    /// POSTs a GraphQL request with an optional `Authorization` header value.
    pub(crate) async fn admin(&self, query: &str, authorization: Option<&str>) -> Value {
        let mut request = self
            .http
            .post(self.url("/graphql"))
            .json(&json!({ "query": query }));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        request
            .send()
            .await
            .expect("sending the admin request")
            .json()
            .await
            .expect("GraphQL response is JSON")
    }

    /// The full Redis key for `prefix:params` in this app's namespace.
    pub(crate) fn key(&self, rest: &str) -> String {
        format!(
            "{}:{}:{rest}",
            self.state.cache.keys().namespace(),
            anigo::cache::key::VALUE_VERSION
        )
    }

    /// Statements the app has sent to the database so far.
    pub(crate) fn db_queries(&self) -> u64 {
        self.state.db_stats.queries()
    }

    /// POSTs a GraphQL request and returns the JSON body.
    pub(crate) async fn graphql(&self, query: &str, variables: Value) -> Value {
        self.post(query, variables)
            .await
            .json()
            .await
            .expect("GraphQL response is JSON")
    }

    /// Runs a query that must succeed and returns its `data`.
    pub(crate) async fn data(&self, query: &str, variables: Value) -> Value {
        let body = self.graphql(query, variables).await;
        assert!(body.get("errors").is_none(), "unexpected errors: {body}");
        body["data"].clone()
    }

    /// `popularAnime(limit)` → (id, popularity) pairs.
    pub(crate) async fn popular(&self, limit: i64) -> Vec<(i64, i64)> {
        let data = self
            .data(
                "query($limit: Int) { popularAnime(limit: $limit) { id popularity } }",
                json!({ "limit": limit }),
            )
            .await;
        data["popularAnime"]
            .as_array()
            .expect("list")
            .iter()
            .map(|a| (id_of(a), a["popularity"].as_i64().expect("popularity")))
            .collect()
    }

    /// `animePage(page, perPage)` → the page object.
    pub(crate) async fn page(&self, page: i64, per_page: i64) -> Value {
        self.data(
            "query($page: Int, $perPage: Int) { animePage(page: $page, perPage: $perPage) { total page perPage hasNextPage items { id } } }",
            json!({ "page": page, "perPage": per_page }),
        )
        .await["animePage"]
            .clone()
    }

    /// `animeCount`.
    pub(crate) async fn count(&self) -> i64 {
        self.data("{ animeCount }", json!({})).await["animeCount"]
            .as_i64()
            .expect("count")
    }

    /// GET `path` → (status, JSON body).
    pub(crate) async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self.http.get(self.url(path)).send().await.expect("GET");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON body"))
    }

    /// Signals shutdown and waits for `run_until_stopped` to return.
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.server.take() {
            Some(handle) => handle.await.expect("server task panicked"),
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A namespace no other test uses.
fn unique_namespace() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "t{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The numeric id of an anime JSON object (`id` is a GraphQL `ID` string).
pub(crate) fn id_of(anime: &Value) -> i64 {
    anime["id"]
        .as_str()
        .expect("id is a string")
        .parse()
        .expect("id is numeric")
}

/// `extensions.code` of the first error.
pub(crate) fn first_error_code(body: &Value) -> String {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A cache entry as stored in `redis` under `key`: its envelope's meta and
/// its payload as JSON; `None` when absent or unreadable.
pub(crate) fn stored_entry(
    redis: &crate::support::RedisServer,
    key: &str,
) -> Option<(anigo::cache::envelope::Meta, Value)> {
    let bytes = redis.get_bytes(key)?;
    let (meta, payload) = anigo::cache::envelope::unwrap(&bytes).ok()?;
    Some((meta, serde_json::from_slice(&payload).ok()?))
}

/// The value inside the entry stored under `key` (`Null` when absent or
/// unreadable).
pub(crate) fn stored_value(redis: &crate::support::RedisServer, key: &str) -> Value {
    stored_entry(redis, key).map_or(Value::Null, |(_, value)| value)
}
