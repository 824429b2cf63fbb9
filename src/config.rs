//! Configuration: the only module that reads the environment.
//!
//! [`Config::from_env`] loads an optional `.env` (dotenvy), then parses every
//! variable into a typed value once, at start-up. A bad value stops start-up
//! with one line naming the variable, the value and what was expected
//! ([`ConfigError`]). Everything else receives `Config` or one of its
//! sections; tests build them directly or through [`Config::from_lookup`].
//!
//! Every variable read here is listed, with the same text, in `.env.example`
//! (a test checks that none is missing).

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use crate::cache::codec::Compression;
use crate::cache::policy::Resolver;
use crate::cache::{CacheConfig, key};
use crate::service::tags::{InvalidationPolicy, ListField, Mode};

/// The embedded default database: a SQLite file in the working directory,
/// created when missing (`mode=rwc`).
pub const DEFAULT_DATABASE_URL: &str = "sqlite://anigo.db?mode=rwc";

/// Demo anime inserted into an empty database when running on the embedded
/// default, so `cargo run` shows data at once.
pub const DEFAULT_DEMO_SEED_COUNT: u64 = 1_000;

/// Default pool acquire and statement timeouts: an API request that waited
/// a second for the database has already lost its client's patience, and a
/// catalogue query that runs longer is broken, not slow.
pub const DEFAULT_DATABASE_TIMEOUT_MS: u64 = 1_000;

/// The whole service configuration, grouped by concern.
#[derive(Clone, Debug)]
pub struct Config {
    /// HTTP listener and request handling.
    pub http: HttpConfig,
    /// The relational database.
    pub database: DatabaseConfig,
    /// The Redis connection.
    pub redis: RedisConfig,
    /// Cache policies and batching.
    pub cache: CacheConfig,
    /// What cached reads depend on and what writes invalidate
    /// (`CACHE_INVALIDATION`, `CACHE_RELAXED_FIELDS`).
    pub invalidation: InvalidationPolicy,
    /// Cache administration access.
    pub admin: AdminConfig,
    /// GraphQL execution limits.
    pub graphql: GraphqlConfig,
    /// Logging.
    pub log: LogConfig,
}

/// HTTP listener and request handling.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// `BIND_ADDR`: address the server listens on. Port 0 picks a free port.
    pub bind_addr: SocketAddr,
    /// `SHUTDOWN_TIMEOUT_SECS`: how long in-flight requests may run after a
    /// shutdown signal before they are dropped.
    pub shutdown_timeout: Duration,
    /// `CORS_ALLOWED_ORIGINS`: comma-separated browser origins allowed to
    /// call the API cross-site (empty: none).
    pub cors_allowed_origins: Vec<String>,
    /// `CORS_ALLOWED_HEADERS`: comma-separated request headers allowed
    /// cross-site in addition to the defaults (`content-type`,
    /// `authorization`, Apollo Client's `apollographql-client-name`,
    /// `apollographql-client-version`, `apollo-require-preflight`,
    /// `x-apollo-operation-name`, `cache-control`, `pragma`,
    /// `x-request-id`, `x-anigo-cache-debug`).
    pub cors_allowed_headers: Vec<axum::http::HeaderName>,
}

/// The relational database.
#[derive(Clone, Debug)]
pub struct DatabaseConfig {
    /// `DATABASE_URL`: `postgres://…` or `sqlite://…`. May hold a password, so
    /// it is kept as a [`Secret`] and logged without credentials.
    pub url: Secret,
    /// `DATABASE_MAX_CONNECTIONS`: pool size.
    pub max_connections: u32,
    /// `DATABASE_ACQUIRE_TIMEOUT_MS`: how long a request waits for a pooled
    /// connection (connecting included) before the call fails; also the
    /// bound of each start-up connection attempt.
    pub acquire_timeout: Duration,
    /// `DATABASE_STATEMENT_TIMEOUT_MS`: the longest one statement of a
    /// request may run. PostgreSQL enforces it (`statement_timeout` of the
    /// server's pool); every call is also abandoned client-side after
    /// acquire + statement timeout, which covers a frozen server and SQLite.
    /// Migrations and seeding run on their own connection, without it.
    pub statement_timeout: Duration,
    /// `DATABASE_STARTUP_TIMEOUT_SECS`: how long start-up keeps retrying an
    /// unreachable database (with backoff) before it gives up.
    pub startup_timeout: Duration,
    /// Whether the deprecated `DATABASE_CONNECT_TIMEOUT_SECS` set
    /// [`DatabaseConfig::acquire_timeout`] (start-up logs a warning).
    pub uses_deprecated_connect_timeout: bool,
    /// `DATABASE_AUTO_MIGRATE`: apply pending migrations on start-up.
    pub auto_migrate: bool,
    /// `DEMO_SEED_COUNT`: demo anime inserted on start-up when the table is
    /// empty. Defaults to 1000 on the embedded SQLite default, 0 otherwise.
    pub demo_seed_count: u64,
}

/// The Redis connection. The service runs without Redis (only slower) unless
/// [`RedisConfig::is_required`] is set.
#[derive(Clone, Debug)]
pub struct RedisConfig {
    /// `REDIS_URL`, or the old backend's `REDIS_HOST`, `REDIS_PORT`,
    /// `REDIS_DB`, `REDIS_PASSWORD` when it is unset. Already checked by
    /// fred's parser: [`RedisConfig::client_config`] cannot fail on it.
    pub url: Secret,
    /// `host:port` for logs and `/readyz` (never the URL, which may hold a
    /// password): for a cluster or sentinels every seed node, comma
    /// separated, then `(cluster)` or `(sentinel <service>)`; `(tls)` when
    /// the connection is encrypted.
    pub display_addr: String,
    /// `REDIS_TIMEOUT_MS`: the longest any cache command may take before it
    /// counts as failed and the request goes on without Redis.
    pub command_timeout: Duration,
    /// `REDIS_CONNECT_TIMEOUT_MS`: how long start-up waits for the first
    /// connection before it goes on without Redis (reconnecting in the
    /// background), and the TCP connect timeout of each attempt.
    pub connect_timeout: Duration,
    /// `REDIS_REQUIRED`: refuse to start when Redis is unreachable.
    pub is_required: bool,
}

/// GraphQL execution limits: what a single request may ask for.
#[derive(Clone, Debug)]
pub struct GraphqlConfig {
    /// `GRAPHQL_INTROSPECTION`: serve `__schema`/`__type` (GraphiQL's docs).
    pub is_introspection_enabled: bool,
    /// `GRAPHQL_MAX_DEPTH`: deepest selection nesting. 15 by default: the
    /// introspection query GraphiQL sends for its Docs and completion nests
    /// 15 levels as async-graphql counts them (our own queries need 3);
    /// the complexity budget bounds the cost either way.
    pub max_depth: usize,
    /// `GRAPHQL_MAX_COMPLEXITY`: fields times list sizes, summed. 10,000
    /// by default: a list of anime counts its `limit`/`perPage` times its
    /// selection, and a relation list its most entries per anime (10
    /// genres, themes or studios, 20 players) times its own, so the
    /// frontend's largest page, 100 anime with a dozen fields and their
    /// genres, themes, studios and players, costs about 7,500; two such
    /// pages, an episode list for every anime of a page, or relations
    /// nested in relations do not fit.
    pub max_complexity: usize,
    /// `GRAPHQL_MAX_ALIASES`: aliased fields in one document.
    pub max_aliases: usize,
    /// `GRAPHQL_MAX_TOKENS`: lexical tokens in one document, counted before
    /// it is parsed; also the most fields it may hold once its fragments
    /// are expanded. 15,000 by default, as Apollo Router's parser (the
    /// full introspection query has under 200); parsing is most of what
    /// a document at the limit costs (about 17 ms of CPU in a release
    /// build), so a lower limit makes the worst document cheaper in
    /// proportion.
    pub max_tokens: usize,
    /// `GRAPHQL_MAX_BATCH`: requests in one JSON-array body.
    pub max_batch: usize,
    /// `REQUEST_TIMEOUT_SECS`: longest a GraphQL request may run.
    pub request_timeout: Duration,
}

/// Cache administration access.
#[derive(Clone, Debug, Default)]
pub struct AdminConfig {
    /// `ADMIN_TOKEN`: bearer token for `cacheStats`, `clearCache` and
    /// `clearAllCache`; unset disables them.
    pub token: Option<Secret>,
    /// `CACHE_DEBUG_PUBLIC`: honour `x-anigo-cache-debug: 1` from every
    /// client (development). Off by default: then only a request carrying
    /// the admin token gets the trace, because it shows cache keys and
    /// takes the request off the response fast path.
    pub is_cache_debug_public: bool,
}

impl RedisConfig {
    /// fred's configuration for [`RedisConfig::url`]: the server, cluster
    /// seed nodes or sentinels, ACL user and password, database and TLS
    /// (rustls with the system's root certificates).
    pub fn client_config(&self) -> Result<fred::types::config::Config, ConfigError> {
        parse_redis_url(self.url.expose()).map(|(config, _)| config)
    }
}

/// The `REDIS_URL` forms, for error messages.
const REDIS_URL_FORMS: &str = "redis://[user:password@]host[:port][/db], \
rediss://… (the same over TLS), \
redis-cluster://[user:password@]host:port[?node=host:port&node=…] \
or redis-sentinel://[user:password@]host[:port][/db]?sentinelServiceName=name[&node=host:port…] \
(rediss-cluster:// and rediss-sentinel:// for TLS)";

/// Shortest accepted admin token: guessing 16 random characters is not a
/// practical attack, and the constant-time comparison only leaks length.
const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// Logging.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// `LOG_FORMAT`: `pretty` for people, `json` for log collectors.
    pub format: LogFormat,
    /// `RUST_LOG`: tracing filter directives.
    pub filter: String,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// A value that must not appear in logs: `Debug` prints `[redacted]` and
/// there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A configuration value that could not be used. Displays as one line that
/// names the variable, the value and what is expected.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {var}={value:?}: expected {expected}")]
pub struct ConfigError {
    /// The environment variable.
    pub var: &'static str,
    /// The value found (passwords are never echoed: see `REDIS_PASSWORD`).
    pub value: String,
    /// What would have been accepted.
    pub expected: String,
}

impl Config {
    /// Loads `.env` when present, then reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        // A missing .env is normal; a malformed one is reported by parsing
        // the variables it would have set.
        let _ = dotenvy::dotenv();
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds the configuration from any variable source (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        let database_url = env.get("DATABASE_URL");
        let is_embedded_default = database_url.is_none();
        let database_url = database_url.unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        if !(database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://")
            || database_url.starts_with("sqlite:"))
        {
            return Err(ConfigError {
                var: "DATABASE_URL",
                value: redact_url(&database_url),
                expected: "a postgres://, postgresql:// or sqlite:// URL".to_owned(),
            });
        }

        let (redis_url, display_addr) = redis_url(&env)?;
        let (acquire_timeout, uses_deprecated_connect_timeout) = acquire_timeout(&env)?;

        Ok(Self {
            http: HttpConfig {
                bind_addr: env.parse(
                    "BIND_ADDR",
                    "127.0.0.1:8000".parse().expect("literal address is valid"),
                    "host:port such as 127.0.0.1:8000",
                )?,
                shutdown_timeout: Duration::from_secs(env.parse(
                    "SHUTDOWN_TIMEOUT_SECS",
                    10,
                    "whole seconds",
                )?),
                cors_allowed_origins: cors_origins(&env)?,
                cors_allowed_headers: cors_headers(&env)?,
            },
            database: DatabaseConfig {
                url: Secret::new(database_url),
                max_connections: env.parse(
                    "DATABASE_MAX_CONNECTIONS",
                    10,
                    "a positive whole number",
                )?,
                acquire_timeout,
                statement_timeout: Duration::from_millis(env.parse_positive(
                    "DATABASE_STATEMENT_TIMEOUT_MS",
                    DEFAULT_DATABASE_TIMEOUT_MS,
                    "milliseconds, such as 1000 (at least 1)",
                )?),
                startup_timeout: Duration::from_secs(env.parse(
                    "DATABASE_STARTUP_TIMEOUT_SECS",
                    30,
                    "whole seconds (0: one attempt, no retry)",
                )?),
                uses_deprecated_connect_timeout,
                auto_migrate: env.parse_bool("DATABASE_AUTO_MIGRATE", true)?,
                demo_seed_count: env.parse(
                    "DEMO_SEED_COUNT",
                    if is_embedded_default {
                        DEFAULT_DEMO_SEED_COUNT
                    } else {
                        0
                    },
                    "a whole number of anime",
                )?,
            },
            redis: RedisConfig {
                url: Secret::new(redis_url),
                display_addr,
                command_timeout: Duration::from_millis(env.parse(
                    "REDIS_TIMEOUT_MS",
                    50,
                    "milliseconds, such as 50",
                )?),
                connect_timeout: Duration::from_millis(env.parse(
                    "REDIS_CONNECT_TIMEOUT_MS",
                    1_000,
                    "milliseconds, such as 1000",
                )?),
                is_required: env.parse_bool("REDIS_REQUIRED", false)?,
            },
            cache: cache_config(&env)?,
            invalidation: invalidation_policy(&env)?,
            graphql: GraphqlConfig {
                is_introspection_enabled: env.parse_bool("GRAPHQL_INTROSPECTION", true)?,
                max_depth: env.parse("GRAPHQL_MAX_DEPTH", 15, "a whole number of levels")?,
                max_complexity: env.parse("GRAPHQL_MAX_COMPLEXITY", 10_000, "a whole number")?,
                max_aliases: env.parse("GRAPHQL_MAX_ALIASES", 30, "a whole number")?,
                max_tokens: env.parse("GRAPHQL_MAX_TOKENS", 15_000, "a whole number of tokens")?,
                max_batch: env.parse("GRAPHQL_MAX_BATCH", 10, "a whole number of requests")?,
                request_timeout: Duration::from_secs(env.parse(
                    "REQUEST_TIMEOUT_SECS",
                    10,
                    "whole seconds",
                )?),
            },
            admin: AdminConfig {
                token: match env.get("ADMIN_TOKEN") {
                    None => None,
                    Some(token) if token.trim().len() >= MIN_ADMIN_TOKEN_LEN => {
                        Some(Secret::new(token.trim()))
                    }
                    Some(_) => {
                        return Err(ConfigError {
                            var: "ADMIN_TOKEN",
                            value: "(hidden)".to_owned(),
                            expected: format!(
                                "at least {MIN_ADMIN_TOKEN_LEN} characters, e.g. from `openssl rand -hex 32`"
                            ),
                        });
                    }
                },
                is_cache_debug_public: env.parse_bool("CACHE_DEBUG_PUBLIC", false)?,
            },
            log: LogConfig {
                format: match env.get("LOG_FORMAT").as_deref() {
                    None | Some("pretty") => LogFormat::Pretty,
                    Some("json") => LogFormat::Json,
                    Some(other) => {
                        return Err(ConfigError {
                            var: "LOG_FORMAT",
                            value: other.to_owned(),
                            expected: "pretty or json".to_owned(),
                        });
                    }
                },
                filter: env
                    .get("RUST_LOG")
                    .unwrap_or_else(|| "info,sqlx=warn,sea_orm=warn,fred=warn".to_owned()),
            },
        })
    }
}

/// The variable source, with typed accessors that produce [`ConfigError`]s.
struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    /// A variable's value; empty counts as unset, as in most `.env` tooling.
    fn get(&self, var: &str) -> Option<String> {
        (self.0)(var).filter(|value| !value.trim().is_empty())
    }

    fn parse<T: FromStr>(
        &self,
        var: &'static str,
        default: T,
        expected: &str,
    ) -> Result<T, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(value) => value.trim().parse().map_err(|_| ConfigError {
                var,
                value,
                expected: expected.to_owned(),
            }),
        }
    }

    /// Like [`Env::parse`], refusing zero.
    fn parse_positive(
        &self,
        var: &'static str,
        default: u64,
        expected: &str,
    ) -> Result<u64, ConfigError> {
        match self.parse(var, default, expected)? {
            0 => Err(ConfigError {
                var,
                value: "0".to_owned(),
                expected: expected.to_owned(),
            }),
            value => Ok(value),
        }
    }

    fn parse_bool(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(var).as_deref().map(str::trim) {
            None => Ok(default),
            Some("1" | "true" | "yes" | "on") => Ok(true),
            Some("0" | "false" | "no" | "off") => Ok(false),
            Some(other) => Err(ConfigError {
                var,
                value: other.to_owned(),
                expected: "true or false".to_owned(),
            }),
        }
    }
}

/// `DATABASE_ACQUIRE_TIMEOUT_MS`, or the deprecated
/// `DATABASE_CONNECT_TIMEOUT_SECS` when only that is set (it meant the same
/// wait, in seconds); whether the deprecated one was used.
fn acquire_timeout(env: &Env<'_>) -> Result<(Duration, bool), ConfigError> {
    if env.get("DATABASE_ACQUIRE_TIMEOUT_MS").is_none()
        && env.get("DATABASE_CONNECT_TIMEOUT_SECS").is_some()
    {
        let secs = env.parse_positive(
            "DATABASE_CONNECT_TIMEOUT_SECS",
            1,
            "whole seconds, at least 1 (deprecated: use DATABASE_ACQUIRE_TIMEOUT_MS)",
        )?;
        return Ok((Duration::from_secs(secs), true));
    }
    let ms = env.parse_positive(
        "DATABASE_ACQUIRE_TIMEOUT_MS",
        DEFAULT_DATABASE_TIMEOUT_MS,
        "milliseconds, such as 1000 (at least 1)",
    )?;
    Ok((Duration::from_millis(ms), false))
}

/// `CORS_ALLOWED_ORIGINS`: each origin must be `scheme://host[:port]`.
fn cors_origins(env: &Env<'_>) -> Result<Vec<String>, ConfigError> {
    let Some(list) = env.get("CORS_ALLOWED_ORIGINS") else {
        return Ok(Vec::new());
    };
    list.split(',')
        .map(str::trim)
        .filter(|origin| !origin.is_empty())
        .map(|origin| {
            let is_origin = url::Url::parse(origin).is_ok_and(|u| {
                matches!(u.scheme(), "http" | "https") && u.host().is_some() && u.path() == "/" && !origin.ends_with('/')
            });
            if is_origin {
                Ok(origin.to_owned())
            } else {
                Err(ConfigError {
                    var: "CORS_ALLOWED_ORIGINS",
                    value: origin.to_owned(),
                    expected: "comma-separated origins such as http://localhost:3000 (no path, no trailing slash)".to_owned(),
                })
            }
        })
        .collect()
}

/// `CORS_ALLOWED_HEADERS`: each a valid header name (stored lowercase).
fn cors_headers(env: &Env<'_>) -> Result<Vec<axum::http::HeaderName>, ConfigError> {
    let Some(list) = env.get("CORS_ALLOWED_HEADERS") else {
        return Ok(Vec::new());
    };
    list.split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(|name| {
            axum::http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).map_err(|_| {
                ConfigError {
                    var: "CORS_ALLOWED_HEADERS",
                    value: name.to_owned(),
                    expected: "comma-separated header names such as x-client-version".to_owned(),
                }
            })
        })
        .collect()
}

/// `CACHE_*`: namespace, per-resolver TTLs, batching and write-back bounds.
fn cache_config(env: &Env<'_>) -> Result<CacheConfig, ConfigError> {
    let defaults = CacheConfig::default();
    let namespace = env.get("CACHE_NAMESPACE").unwrap_or(defaults.namespace);
    if !key::is_valid_namespace(&namespace) {
        return Err(ConfigError {
            var: "CACHE_NAMESPACE",
            value: namespace,
            expected: "1-64 letters, digits, '_', '-' or '.' (no ':' or glob characters)"
                .to_owned(),
        });
    }
    let mut policies = defaults.policies;
    for resolver in Resolver::ALL {
        let seconds = env.parse(
            resolver.ttl_var(),
            resolver.default_ttl().as_secs(),
            "whole seconds (0 disables caching for this resolver)",
        )?;
        policies = policies.with_ttl(resolver, Duration::from_secs(seconds));
    }
    let max_pending_writes = env.parse(
        "CACHE_MAX_PENDING_WRITES",
        defaults.max_pending_writes,
        "a positive whole number",
    )?;
    if max_pending_writes == 0 {
        return Err(ConfigError {
            var: "CACHE_MAX_PENDING_WRITES",
            value: "0".to_owned(),
            expected: "a positive whole number".to_owned(),
        });
    }
    Ok(CacheConfig {
        namespace,
        policies,
        not_found_ttl: Duration::from_secs(env.parse(
            "CACHE_TTL_NOT_FOUND",
            defaults.not_found_ttl.as_secs(),
            "whole seconds",
        )?),
        local_max_bytes: env.parse(
            "CACHE_LOCAL_MAX_BYTES",
            defaults.local_max_bytes,
            "bytes (0 disables the in-process tier)",
        )?,
        response_max_bytes: if env.parse_bool("CACHE_RESPONSES", true)? {
            env.parse(
                "CACHE_RESPONSE_MAX_BYTES",
                defaults.response_max_bytes,
                "bytes (0 turns the response fast path off)",
            )?
        } else {
            0
        },
        stale_while_revalidate: Duration::from_secs(env.parse(
            "CACHE_STALE_WHILE_REVALIDATE",
            defaults.stale_while_revalidate.as_secs(),
            "whole seconds (0 disables)",
        )?),
        stale_if_error: Duration::from_secs(env.parse(
            "CACHE_STALE_IF_ERROR",
            defaults.stale_if_error.as_secs(),
            "whole seconds (0 disables)",
        )?),
        batch_window: Duration::from_micros(env.parse(
            "CACHE_BATCH_WINDOW_US",
            defaults.batch_window.as_micros() as u64,
            "microseconds, such as 50",
        )?),
        max_pending_writes,
        is_client_directives_enabled: env.parse_bool(
            "CACHE_CLIENT_DIRECTIVES",
            defaults.is_client_directives_enabled,
        )?,
        search_max_entries: env.parse(
            "CACHE_SEARCH_MAX_ENTRIES",
            defaults.search_max_entries,
            "a whole number of entries (0: searches are never stored)",
        )?,
        compression: match env.get("CACHE_COMPRESSION") {
            None => defaults.compression,
            Some(name) => Compression::parse(name.trim()).ok_or(ConfigError {
                var: "CACHE_COMPRESSION",
                value: name.clone(),
                expected: "zstd-dictionary, zstd, lz4 or none".to_owned(),
            })?,
        },
    })
}

/// `CACHE_INVALIDATION` (`precise`, the default, or `coarse`) and
/// `CACHE_RELAXED_FIELDS` (comma-separated `popularity`, `score`, `year`,
/// `title`, or `none`; default `popularity`). See `service::tags`.
fn invalidation_policy(env: &Env<'_>) -> Result<InvalidationPolicy, ConfigError> {
    let mode = match env.get("CACHE_INVALIDATION").as_deref().map(str::trim) {
        None | Some("precise") => Mode::Precise,
        Some("coarse") => Mode::Coarse,
        Some(other) => {
            return Err(ConfigError {
                var: "CACHE_INVALIDATION",
                value: other.to_owned(),
                expected: "precise or coarse".to_owned(),
            });
        }
    };
    let relaxed = match env.get("CACHE_RELAXED_FIELDS") {
        None => InvalidationPolicy::default().relaxed(),
        Some(list) if list.trim() == "none" => Vec::new(),
        Some(list) => {
            let mut fields = Vec::new();
            for name in list
                .split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
            {
                let Some(field) = ListField::parse(name) else {
                    return Err(ConfigError {
                        var: "CACHE_RELAXED_FIELDS",
                        value: list.clone(),
                        expected:
                            "a comma-separated list of popularity, score, year, title, or none"
                                .to_owned(),
                    });
                };
                fields.push(field);
            }
            fields
        }
    };
    Ok(InvalidationPolicy::new(mode, &relaxed))
}

/// Resolves the Redis URL and its `host:port` for logs: `REDIS_URL` wins,
/// otherwise the old backend's variables are assembled into a URL.
fn redis_url(env: &Env<'_>) -> Result<(String, String), ConfigError> {
    if let Some(url) = env.get("REDIS_URL") {
        let url = url.trim().to_owned();
        let (_, display_addr) = parse_redis_url(&url)?;
        return Ok((url, display_addr));
    }

    let host = env
        .get("REDIS_HOST")
        .unwrap_or_else(|| "127.0.0.1".to_owned());
    if host.contains(['/', '@', ' ']) {
        return Err(ConfigError {
            var: "REDIS_HOST",
            value: host,
            expected: "a host name or IP address".to_owned(),
        });
    }
    let port: u16 = env.parse("REDIS_PORT", 6379, "a port number from 1 to 65535")?;
    if port == 0 {
        return Err(ConfigError {
            var: "REDIS_PORT",
            value: "0".to_owned(),
            expected: "a port number from 1 to 65535".to_owned(),
        });
    }
    let db: u8 = env.parse("REDIS_DB", 0, "a database number from 0 to 15")?;
    if db > 15 {
        return Err(ConfigError {
            var: "REDIS_DB",
            value: db.to_string(),
            expected: "a database number from 0 to 15".to_owned(),
        });
    }
    let username = env.get("REDIS_USERNAME");
    let password = env.get("REDIS_PASSWORD");
    let mut url =
        url::Url::parse(&format!("redis://{host}:{port}/{db}")).map_err(|_| ConfigError {
            var: "REDIS_HOST",
            value: host.clone(),
            expected: "a host name or IP address".to_owned(),
        })?;
    // `set_username`/`set_password` percent-encode, so any password works.
    if let Some(password) = password {
        let _ = url.set_username(username.as_deref().unwrap_or("default"));
        let _ = url.set_password(Some(&password));
    }
    let url = String::from(url);
    // The same checks as REDIS_URL; what fails here can only be the host.
    let (_, display_addr) = parse_redis_url(&url).map_err(|_| ConfigError {
        var: "REDIS_HOST",
        value: host.clone(),
        expected: "a host name or IP address".to_owned(),
    })?;
    Ok((url, display_addr))
}

/// Checks a Redis URL with fred's own parser (so start-up refuses what the
/// client would misread) plus what fred would silently ignore, and returns
/// fred's configuration and the address to log. Errors name `REDIS_URL`
/// and never echo a password.
fn parse_redis_url(raw: &str) -> Result<(fred::types::config::Config, String), ConfigError> {
    use fred::types::config::ServerConfig;

    let error = |problem: Option<&str>| ConfigError {
        var: "REDIS_URL",
        value: redact_url(raw),
        expected: match problem {
            Some(problem) => format!("{REDIS_URL_FORMS}; here: {problem}"),
            None => REDIS_URL_FORMS.to_owned(),
        },
    };
    let url = url::Url::parse(raw).map_err(|_| error(None))?;
    let (is_tls, kind) = match url.scheme() {
        "redis" => (false, ""),
        "rediss" => (true, ""),
        "redis-cluster" => (false, "cluster"),
        "rediss-cluster" => (true, "cluster"),
        "redis-sentinel" => (false, "sentinel"),
        "rediss-sentinel" => (true, "sentinel"),
        _ => return Err(error(None)),
    };
    if url.host_str().is_none_or(str::is_empty) {
        return Err(error(Some("no host")));
    }
    let has_nodes = url.query_pairs().any(|(name, _)| name == "node");
    if has_nodes && kind.is_empty() {
        return Err(error(Some(
            "node= lists other cluster nodes or sentinels: use redis-cluster:// or redis-sentinel://",
        )));
    }
    if kind == "cluster" && !matches!(url.path(), "" | "/" | "/0") {
        return Err(error(Some("a cluster has only database 0")));
    }
    let config = fred::types::config::Config::from_url(raw)
        .map_err(|err| error(Some(err.details().trim_end_matches('.'))))?;
    if config.database.is_some_and(|db| db > 15) {
        return Err(error(Some("database numbers go from 0 to 15")));
    }

    let node = |server: &fred::types::config::Server| format!("{}:{}", server.host, server.port);
    let mut display = match &config.server {
        ServerConfig::Centralized { server } => node(server),
        // fred puts the URL's own host last; show it first, as written.
        ServerConfig::Clustered { hosts, .. } => {
            let mut nodes: Vec<String> = hosts.iter().map(node).collect();
            nodes.rotate_right(1);
            format!("{} (cluster)", nodes.join(","))
        }
        ServerConfig::Sentinel {
            hosts,
            service_name,
            ..
        } => {
            let mut nodes: Vec<String> = hosts.iter().map(node).collect();
            nodes.rotate_right(1);
            format!("{} (sentinel {service_name})", nodes.join(","))
        }
    };
    if is_tls {
        display.push_str(" (tls)");
    }
    Ok((config, display))
}

/// A URL with its passwords replaced (the user-info one and any query
/// parameter named like `password`, e.g. `sentinelPassword`), safe for error
/// messages and logs.
pub fn redact_url(raw: &str) -> String {
    let Ok(mut url) = url::Url::parse(raw) else {
        return "(unparseable URL)".to_owned();
    };
    if url.password().is_some() {
        let _ = url.set_password(Some("****"));
    }
    let is_secret = |name: &str| name.to_ascii_lowercase().contains("password");
    if url.query_pairs().any(|(name, _)| is_secret(&name)) {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(name, value)| {
                let value = if is_secret(&name) {
                    "****".to_owned()
                } else {
                    value.into_owned()
                };
                (name.into_owned(), value)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use fred::types::config::ServerConfig;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_use_embedded_sqlite_and_local_redis() {
        let config = config(&[]).expect("defaults are valid");
        assert_eq!(config.database.url.expose(), DEFAULT_DATABASE_URL);
        assert_eq!(config.database.demo_seed_count, DEFAULT_DEMO_SEED_COUNT);
        assert_eq!(config.redis.url.expose(), "redis://127.0.0.1:6379/0");
        assert_eq!(config.redis.display_addr, "127.0.0.1:6379");
        assert_eq!(config.http.bind_addr.to_string(), "127.0.0.1:8000");
        assert_eq!(config.redis.command_timeout, Duration::from_millis(50));
        assert_eq!(config.log.format, LogFormat::Pretty);
    }

    #[test]
    fn explicit_database_disables_demo_seed() {
        let config = config(&[("DATABASE_URL", "postgres://u@h/db")]).expect("valid");
        assert_eq!(config.database.demo_seed_count, 0);
    }

    #[test]
    fn old_redis_variables_build_a_url_with_an_encoded_password() {
        let config = config(&[
            ("REDIS_HOST", "cache.internal"),
            ("REDIS_PORT", "6380"),
            ("REDIS_DB", "2"),
            ("REDIS_PASSWORD", "p@ss/word"),
        ])
        .expect("valid");
        assert_eq!(
            config.redis.url.expose(),
            "redis://default:p%40ss%2Fword@cache.internal:6380/2"
        );
        assert_eq!(config.redis.display_addr, "cache.internal:6380");
        assert!(
            !format!("{config:?}").contains("p@ss"),
            "Debug must not show the password"
        );
    }

    #[test]
    fn redis_url_wins_over_old_variables() {
        let config = config(&[
            ("REDIS_URL", "rediss://h:7000/1"),
            ("REDIS_HOST", "ignored"),
        ])
        .expect("valid");
        assert_eq!(config.redis.display_addr, "h:7000 (tls)");
    }

    /// fred's configuration for a `REDIS_URL`, and its display address.
    fn redis(url: &str) -> (fred::types::config::Config, String) {
        let parsed = config(&[("REDIS_URL", url)]).expect("valid REDIS_URL");
        let client = parsed.redis.client_config().expect("parses again");
        (client, parsed.redis.display_addr)
    }

    fn server(host: &str, port: u16) -> fred::types::config::Server {
        fred::types::config::Server::new(host, port)
    }

    #[test]
    fn a_redis_url_names_one_server_its_acl_user_and_database() {
        let (client, display) = redis("redis://anigo:s%40cret@cache.internal:6380/3");
        assert_eq!(
            client.server,
            ServerConfig::Centralized {
                server: server("cache.internal", 6380)
            }
        );
        assert_eq!(client.username.as_deref(), Some("anigo"));
        assert_eq!(
            client.password.as_deref(),
            Some("s@cret"),
            "percent-decoded"
        );
        assert_eq!(client.database, Some(3));
        assert!(client.tls.is_none());
        assert_eq!(display, "cache.internal:6380");

        let (client, _) = redis("redis://:only-a-password@cache.internal");
        assert_eq!(client.username, None, "AUTH <password> as the default user");
        assert_eq!(client.password.as_deref(), Some("only-a-password"));
        assert_eq!(
            client.server,
            ServerConfig::Centralized {
                server: server("cache.internal", 6379)
            }
        );
    }

    #[test]
    fn a_rediss_url_connects_over_rustls() {
        let (client, display) = redis("rediss://anigo:secret@cache.example.com:6380/1");
        assert_eq!(
            client.server,
            ServerConfig::Centralized {
                server: server("cache.example.com", 6380)
            }
        );
        assert!(client.uses_rustls(), "TLS through rustls");
        assert_eq!(client.database, Some(1));
        assert_eq!(display, "cache.example.com:6380 (tls)");
    }

    #[test]
    fn a_redis_cluster_url_lists_every_seed_node() {
        let (client, display) = redis(
            "redis-cluster://anigo:secret@10.0.0.1:7000?node=10.0.0.2:7001&node=10.0.0.3:7002",
        );
        let ServerConfig::Clustered { mut hosts, .. } = client.server else {
            panic!("not clustered: {:?}", client.server);
        };
        hosts.sort_by_key(|host| host.port);
        assert_eq!(
            hosts,
            vec![
                server("10.0.0.1", 7000),
                server("10.0.0.2", 7001),
                server("10.0.0.3", 7002)
            ]
        );
        assert_eq!(client.username.as_deref(), Some("anigo"));
        assert_eq!(client.password.as_deref(), Some("secret"));
        assert_eq!(
            display,
            "10.0.0.1:7000,10.0.0.2:7001,10.0.0.3:7002 (cluster)"
        );

        let (client, display) = redis("rediss-cluster://h:7000");
        assert!(matches!(client.server, ServerConfig::Clustered { .. }));
        assert!(client.uses_rustls());
        assert_eq!(display, "h:7000 (cluster) (tls)");
    }

    #[test]
    fn a_redis_sentinel_url_names_the_sentinels_and_the_service() {
        let (client, display) = redis(
            "redis-sentinel://anigo:secret@s1:26379/2?sentinelServiceName=mymaster&node=s2:26380&sentinelUsername=watcher&sentinelPassword=sentinel-secret",
        );
        let ServerConfig::Sentinel {
            mut hosts,
            service_name,
            username,
            password,
        } = client.server
        else {
            panic!("not sentinel: {:?}", client.server);
        };
        hosts.sort_by_key(|host| host.port);
        assert_eq!(hosts, vec![server("s1", 26379), server("s2", 26380)]);
        assert_eq!(service_name, "mymaster");
        assert_eq!(username.as_deref(), Some("watcher"), "sentinel ACL user");
        assert_eq!(password.as_deref(), Some("sentinel-secret"));
        assert_eq!(
            client.username.as_deref(),
            Some("anigo"),
            "the primary's user"
        );
        assert_eq!(client.password.as_deref(), Some("secret"));
        assert_eq!(client.database, Some(2));
        assert_eq!(display, "s1:26379,s2:26380 (sentinel mymaster)");

        let (client, _) = redis("redis-sentinel://s1?sentinelServiceName=mymaster");
        let ServerConfig::Sentinel { hosts, .. } = client.server else {
            panic!("not sentinel");
        };
        assert_eq!(hosts, vec![server("s1", 26379)], "the sentinel port");
    }

    #[test]
    fn unusable_redis_urls_are_one_line_naming_redis_url_without_passwords() {
        for (url, hint) in [
            ("http://h:6379", "redis-cluster://"),
            (
                "redis+unix://:hunter2@x/tmp/redis.sock",
                "redis-sentinel://",
            ),
            ("valkey://:hunter2@h:6379", "rediss://"),
            ("not a url", "redis://"),
            ("redis://:hunter2@h:6379?node=h2:6379", "node= lists"),
            ("redis-cluster://:hunter2@h:7000/3", "only database 0"),
            (
                "redis-cluster://:hunter2@h:7000?node=h2",
                "Invalid host:port",
            ),
            ("redis-sentinel://:hunter2@h:26379", "sentinel service name"),
            (
                "redis-sentinel://h:26379?sentinelServiceName=m&sentinelPassword=hunter2&node=x",
                "Invalid host:port",
            ),
            ("redis://:hunter2@h:6379/16", "0 to 15"),
            ("redis://:hunter2@h:6379/x", "REDIS_URL"),
            ("redis://:hunter2@h:99999", "REDIS_URL"),
            ("redis://:hunter2@:6379", "REDIS_URL"),
        ] {
            let err = config(&[("REDIS_URL", url)]).expect_err(url);
            let line = err.to_string();
            assert_eq!(err.var, "REDIS_URL", "{line}");
            assert!(line.contains(hint), "{url}: {line}");
            assert!(
                line.contains("redis-sentinel://"),
                "lists the forms: {line}"
            );
            assert!(!line.contains("hunter2"), "{line}");
            assert!(!line.contains('\n'), "one line: {line}");
        }
    }

    #[test]
    fn bad_values_name_the_variable_the_value_and_the_expectation() {
        let err = config(&[("REDIS_PORT", "abc")]).expect_err("port abc is invalid");
        assert_eq!(err.var, "REDIS_PORT");
        assert_eq!(
            err.to_string(),
            "invalid configuration: REDIS_PORT=\"abc\": expected a port number from 1 to 65535"
        );

        let err = config(&[("REDIS_URL", "http://x")]).expect_err("scheme");
        assert_eq!(err.var, "REDIS_URL");
        let err = config(&[("DATABASE_URL", "mysql://x")]).expect_err("scheme");
        assert_eq!(err.var, "DATABASE_URL");
        let err = config(&[("BIND_ADDR", "localhost")]).expect_err("no port");
        assert_eq!(err.var, "BIND_ADDR");
        let err = config(&[("LOG_FORMAT", "xml")]).expect_err("format");
        assert_eq!(err.var, "LOG_FORMAT");
        let err = config(&[("REDIS_REQUIRED", "maybe")]).expect_err("bool");
        assert_eq!(err.var, "REDIS_REQUIRED");
        let err = config(&[("REDIS_DB", "16")]).expect_err("db");
        assert_eq!(err.var, "REDIS_DB");
    }

    #[test]
    fn cache_ttls_can_be_overridden_and_disabled() {
        let parsed =
            config(&[("CACHE_TTL_POPULAR", "90"), ("CACHE_TTL_ANIME", "0")]).expect("valid");
        let policies = &parsed.cache.policies;
        assert_eq!(
            policies.ttl(Resolver::PopularAnime),
            Duration::from_secs(90)
        );
        assert!(!policies.is_enabled(Resolver::Anime));
        assert_eq!(policies.ttl(Resolver::AnimeCount), Duration::from_secs(600));
        let err = config(&[("CACHE_TTL_ANIME_COUNT", "-1")]).expect_err("negative");
        assert_eq!(err.var, "CACHE_TTL_ANIME_COUNT");
        let err = config(&[("CACHE_NAMESPACE", "a:*")]).expect_err("glob");
        assert_eq!(err.var, "CACHE_NAMESPACE");
    }

    #[test]
    fn client_cache_directives_are_honoured_unless_switched_off() {
        assert!(
            config(&[])
                .expect("defaults")
                .cache
                .is_client_directives_enabled
        );
        let off = config(&[("CACHE_CLIENT_DIRECTIVES", "false")]).expect("valid");
        assert!(!off.cache.is_client_directives_enabled);
        let err = config(&[("CACHE_CLIENT_DIRECTIVES", "sometimes")]).expect_err("bool");
        assert_eq!(err.var, "CACHE_CLIENT_DIRECTIVES");
    }

    #[test]
    fn short_admin_tokens_are_refused_without_echoing_them() {
        let err = config(&[("ADMIN_TOKEN", "hunter2")]).expect_err("short");
        assert_eq!(err.var, "ADMIN_TOKEN");
        assert!(!err.to_string().contains("hunter2"));
        let parsed = config(&[("ADMIN_TOKEN", "0123456789abcdef")]).expect("valid");
        assert!(parsed.admin.token.is_some());
    }

    #[test]
    fn extra_cors_headers_are_header_names() {
        let parsed =
            config(&[("CORS_ALLOWED_HEADERS", "X-Client-Version, x-tenant")]).expect("valid");
        let names: Vec<&str> = parsed
            .http
            .cors_allowed_headers
            .iter()
            .map(axum::http::HeaderName::as_str)
            .collect();
        assert_eq!(names, ["x-client-version", "x-tenant"]);
        let err = config(&[("CORS_ALLOWED_HEADERS", "x-ok, bad header")]).expect_err("space");
        assert_eq!(err.var, "CORS_ALLOWED_HEADERS");
        assert_eq!(err.value, "bad header");
    }

    #[test]
    fn database_timeouts_default_to_one_second_and_can_be_set() {
        let defaults = config(&[]).expect("defaults");
        assert_eq!(defaults.database.acquire_timeout, Duration::from_secs(1));
        assert_eq!(defaults.database.statement_timeout, Duration::from_secs(1));
        assert_eq!(defaults.database.startup_timeout, Duration::from_secs(30));
        assert!(!defaults.database.uses_deprecated_connect_timeout);

        let set = config(&[
            ("DATABASE_ACQUIRE_TIMEOUT_MS", "250"),
            ("DATABASE_STATEMENT_TIMEOUT_MS", "4000"),
            ("DATABASE_STARTUP_TIMEOUT_SECS", "0"),
        ])
        .expect("valid");
        assert_eq!(set.database.acquire_timeout, Duration::from_millis(250));
        assert_eq!(set.database.statement_timeout, Duration::from_secs(4));
        assert_eq!(set.database.startup_timeout, Duration::ZERO);

        for var in [
            "DATABASE_ACQUIRE_TIMEOUT_MS",
            "DATABASE_STATEMENT_TIMEOUT_MS",
        ] {
            let err = config(&[(var, "0")]).expect_err("zero would fail every call");
            assert_eq!(err.var, var);
        }
    }

    #[test]
    fn the_deprecated_connect_timeout_still_sets_the_acquire_timeout() {
        let old = config(&[("DATABASE_CONNECT_TIMEOUT_SECS", "3")]).expect("valid");
        assert_eq!(old.database.acquire_timeout, Duration::from_secs(3));
        assert!(old.database.uses_deprecated_connect_timeout);

        let both = config(&[
            ("DATABASE_CONNECT_TIMEOUT_SECS", "3"),
            ("DATABASE_ACQUIRE_TIMEOUT_MS", "500"),
        ])
        .expect("valid");
        assert_eq!(
            both.database.acquire_timeout,
            Duration::from_millis(500),
            "the new variable wins"
        );
        assert!(!both.database.uses_deprecated_connect_timeout);
    }

    #[test]
    fn passwords_in_database_urls_are_not_echoed() {
        let err = config(&[("DATABASE_URL", "mysql://u:hunter2@h/db")]).expect_err("scheme");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
