//! AniGo API: a GraphQL anime catalogue whose hot resolvers are cached.
//!
//! # Layout
//!
//! A read flows **HTTP → resolver → service → repository**, with the cache
//! joining between service and repository.
//!
//! | module | owns |
//! |---|---|
//! | [`cli`] | subcommands: `serve`, `migrate`, `seed`, `schema` |
//! | [`config`] | every environment variable, parsed and validated once |
//! | [`telemetry`] | the tracing subscriber (pretty or JSON) |
//! | [`app`] | `AppState`, start-up (`App::build`) and graceful shutdown |
//! | [`server`] | axum routes (`/graphql`, `/healthz`, `/readyz`) and middleware |
//! | [`graphql`] | schema, query root, API types, error codes |
//! | [`service`] | use cases, independent of GraphQL |
//! | [`cache`] | the Redis connection (fred) |
//! | [`db`] | connecting, migrating, health, and every SQL query (`AnimeRepo`) |
//! | [`entities`] | sea-orm entities |
//! | [`error`] | `AppError` and the GraphQL error codes |
//! | [`seed`] | deterministic demo data |

pub mod app;
pub mod cache;
pub mod cli;
pub mod config;
pub mod db;
pub mod entities;
pub mod error;
pub mod graphql;
pub mod seed;
pub mod server;
pub mod service;
pub mod telemetry;

pub use app::{App, AppState};
pub use config::Config;
