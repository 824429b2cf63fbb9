//! `migration` — apply or inspect the AniGo schema without the server binary.
//!
//! Usage: `DATABASE_URL=postgres://… cargo run -p migration -- [up|down|status|fresh]`.
//! The server offers the same through `anigo migrate …`; this binary exists so
//! a deploy can migrate with the smallest possible tool.

use migration::{Migrator, MigratorTrait};
use sea_orm_migration::sea_orm::Database;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let action = std::env::args().nth(1).unwrap_or_else(|| "up".to_owned());
    let Ok(url) = std::env::var("DATABASE_URL") else {
        eprintln!("DATABASE_URL is not set: expected a postgres:// or sqlite:// URL");
        return std::process::ExitCode::from(2);
    };
    let result = async {
        let db = Database::connect(&url).await?;
        match action.as_str() {
            "up" => Migrator::up(&db, None).await,
            "down" => Migrator::down(&db, Some(1)).await,
            "status" => Migrator::status(&db).await,
            "fresh" => Migrator::fresh(&db).await,
            other => Err(sea_orm_migration::DbErr::Custom(format!(
                "unknown action {other:?}: expected up, down, status or fresh"
            ))),
        }
    }
    .await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("migration {action} failed: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
