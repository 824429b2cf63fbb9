//! AniGo API: a GraphQL anime catalogue whose hot resolvers are cached.
//!
//! # Layout
//!
//! A read flows **HTTP → kept response? → resolver → local tier →
//! DataLoader → Redis → repository**:
//!
//! 0. `server::front` (the connection loop, below axum) answers a request
//!    whose exact bytes led to a kept response before, with one lookup of
//!    the bytes and one of the response: no routing, middleware or parse;
//! 1. `server::graphql` answers a repeated public query from its kept
//!    response (`cache::response`) without executing anything; otherwise
//!    it takes the parsed document from `graphql::document`'s cache (a new
//!    one is bounded by its tokens before parsing, and checked once for
//!    its limits and argument values), checks the variables, and
//!    executes, keeping the response if every value in it was fresh;
//! 2. the resolver checks its arguments and asks the service for a
//!    `CachedQuery` (policy + key parameters + tag + database load);
//! 3. the in-process tier answers if it holds the value (no network);
//! 4. otherwise the schema-wide `CacheLoader` (async-graphql DataLoader)
//!    collects the keys of one request, and of concurrent requests, for a
//!    short window, and the cache facade reads them with one MGET, checking
//!    each entry's generation; misses load from the repository once per
//!    process and once across instances, and are written back in the
//!    background unless a write invalidated them meanwhile;
//! 5. when Redis is down, erroring or slow, step 4 skips it (and the local
//!    tier, which cannot hear invalidations then);
//! 6. when the database is known to be down, the repository's calls fail
//!    at once (`db::Database`'s breaker) and step 4 serves expired values
//!    where it has them (stale-if-error).
//!
//! A request with `Cache-Control: no-cache` (`cache::directive`) is
//! answered from none of these tiers: its fields load from the repository
//! and are stored before it answers; `no-store` stores nothing
//! (`CACHE_CLIENT_DIRECTIVES=false` ignores both).
//!
//! A write (`service::anime_write`, `service::taxonomy_write`) commits to
//! the database, then bumps the generations of the tags it changed
//! (`service::tags` says which) and waits until every instance has
//! dropped them from its local tier and kept responses.
//!
//! | module | owns |
//! |---|---|
//! | [`cli`] | subcommands: `serve`, `migrate`, `seed`, `schema` |
//! | [`config`] | every environment variable, parsed and validated once |
//! | [`telemetry`] | the tracing subscriber (pretty or JSON) |
//! | [`state`] | `AppState`: the handles every request handler needs; a leaf any layer may import |
//! | [`app`] | start-up (`App::build`) and graceful shutdown |
//! | [`server`] | the connection loop and exact-bytes front door; axum routes (`/graphql`, `/healthz`, `/readyz`, `/metrics`, GraphiQL) and middleware; `Accept` negotiation; the `/graphql` request path |
//! | [`ceiling`] | the benchmark ceiling: bare hyper serving fixed bytes (`anigo ceiling`, hidden) |
//! | [`graphql`] | schema; the query fields (`query`: the anime reads; `catalogue`: lists and filtered counts; `taxonomy`: genres, themes, studios; `search`), API types with the relation fields (`types`), writes (`write`, `taxonomy_write`), cache loader, document limits and value checks before execution, error codes |
//! | [`service`] | use cases and their cached queries, independent of GraphQL: anime reads, catalogue lists, taxonomy, search, relations; writes and the invalidation tags |
//! | [`cache`] | policies, keys, batching, single-flight, admission of free-input keys (searches), stats |
//! | [`redis`] | the Redis connection (fred) and every command the cache sends: timeouts, reconnects, the breaker every command goes through, per-slot MGET, SCAN, sharded pub/sub, server stats |
//! | [`db`] | connecting (with start-up retries), migrating, the guarded `Database` handle (circuit breaker, timeouts) every query goes through, and every SQL query (`AnimeRepo`: records with genres, batch relation loaders, the catalogue list, count and search, taxonomies) |
//! | [`entities`] | sea-orm entities: anime, genres, themes, studios and their links, players, episodes |
//! | [`error`] | `AppError` and the GraphQL error codes |
//! | [`metrics`] | Prometheus metric names and `/metrics` rendering |
//! | [`seed`] | deterministic demo data: anime with genres, themes, studios, players and episodes |

pub mod app;
pub mod cache;
pub mod ceiling;
pub mod cli;
pub mod config;
pub mod db;
pub mod entities;
pub mod error;
pub mod graphql;
pub mod metrics;
pub mod redis;
pub mod seed;
pub mod server;
pub mod service;
pub mod state;
pub mod telemetry;

pub use app::App;
pub use config::Config;
pub use state::AppState;
