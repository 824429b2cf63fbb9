//! Command line: `anigo [serve]`, `anigo migrate …`, `anigo seed …`,
//! `anigo schema`. Configuration comes from the environment (see
//! `config`); the command line only chooses what to do. `anigo ceiling` is
//! hidden: it serves fixed bytes for `scripts/bench`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use migration::{Migrator, MigratorTrait};

use crate::app::{App, shutdown_signal};
use crate::config::Config;
use crate::{ceiling, db, graphql, seed};

/// AniGo API: a GraphQL anime catalogue with a per-resolver Redis cache.
#[derive(Debug, Parser)]
#[command(name = "anigo", version, about)]
pub struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve GraphQL over HTTP (the default).
    Serve,
    /// Apply, revert or inspect database migrations on DATABASE_URL.
    Migrate {
        /// Migration action.
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Insert deterministic demo anime into DATABASE_URL (migrating first).
    Seed {
        /// How many anime to insert.
        #[arg(long, default_value_t = 1_000)]
        count: u64,
        /// Random seed: the same seed and count give the same anime.
        #[arg(long, default_value_t = seed::DEFAULT_SEED)]
        seed: u64,
    },
    /// Print the GraphQL schema (SDL), as committed in schema.graphql.
    Schema,
    /// Benchmark ceiling for `scripts/bench`: bare hyper on the same runtime
    /// answering every request with the bytes of `--body` from memory (no
    /// axum, middleware, GraphQL, cache or database), to measure what the
    /// machine allows.
    #[command(hide = true)]
    Ceiling {
        /// File whose bytes every answer carries (a saved GraphQL response).
        #[arg(long)]
        body: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8001")]
        bind: SocketAddr,
    },
}

/// Migration actions.
#[derive(Debug, Subcommand)]
pub enum MigrateAction {
    /// Apply all pending migrations.
    Up,
    /// Revert the last applied migration.
    Down,
    /// List migrations and whether each is applied.
    Status,
    /// Drop everything and apply all migrations again (destroys data).
    Fresh,
}

impl Cli {
    /// Runs the chosen command to completion.
    pub async fn run(self, config: Config) -> anyhow::Result<()> {
        match self.command.unwrap_or(Command::Serve) {
            Command::Serve => {
                let app = App::build(config).await?;
                app.run_until_stopped(shutdown_signal()).await
            }
            Command::Migrate { action } => {
                let conn = db::connect_for_maintenance(&config.database).await?;
                match action {
                    MigrateAction::Up => Migrator::up(&conn, None).await,
                    MigrateAction::Down => Migrator::down(&conn, Some(1)).await,
                    MigrateAction::Status => Migrator::status(&conn).await,
                    MigrateAction::Fresh => Migrator::fresh(&conn).await,
                }
                .with_context(|| format!("migrate {action:?}"))?;
                tracing::info!(?action, "Migration finished");
                Ok(())
            }
            Command::Seed { count, seed } => {
                let conn = db::connect_for_maintenance(&config.database).await?;
                Migrator::up(&conn, None)
                    .await
                    .context("applying migrations before seeding")?;
                let started = Instant::now();
                let counts = seed::insert(&conn, count, seed)
                    .await
                    .context("inserting anime")?;
                tracing::info!(
                    inserted = counts.anime,
                    genre_links = counts.anime_genres,
                    theme_links = counts.anime_themes,
                    studio_links = counts.anime_studios,
                    players = counts.players,
                    episodes = counts.episodes,
                    seed,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "Seed finished"
                );
                Ok(())
            }
            Command::Schema => {
                print!("{}", graphql::sdl());
                Ok(())
            }
            Command::Ceiling { body, bind } => ceiling::run(&body, bind).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn seed_takes_count_and_seed() {
        let cli =
            Cli::try_parse_from(["anigo", "seed", "--count", "5", "--seed", "9"]).expect("parses");
        assert!(matches!(
            cli.command,
            Some(Command::Seed { count: 5, seed: 9 })
        ));
    }

    #[test]
    fn ceiling_is_hidden_from_help() {
        let help = Cli::command().render_help().to_string();
        let cli = Cli::try_parse_from(["anigo", "ceiling", "--body", "r.json"]).expect("parses");

        assert!(!help.contains("ceiling"), "{help}");
        assert!(matches!(cli.command, Some(Command::Ceiling { .. })));
    }
}
