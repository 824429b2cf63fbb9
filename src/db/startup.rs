//! Reaching the database at start-up: attempts with exponential backoff up
//! to `DATABASE_STARTUP_TIMEOUT_SECS`, each logged with the driver's real
//! cause.
//!
//! sqlx's pool retries a refused connection by itself until its acquire
//! timeout and then reports only "pool timed out", so each attempt first
//! connects directly (`database::connect_directly`), which fails with the
//! actual error ("Connection refused (os error 111)", a DNS failure, "the
//! database system is starting up"). Errors that no retry can fix (a wrong
//! password, a missing database, a failing migration) stop start-up at once.

use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;
use sea_orm::DatabaseConnection;
use tokio::time::Instant;

use super::database::{self, connect_directly};
use crate::config::{DatabaseConfig, redact_url};

/// The first pause after a failed attempt; it doubles from there. Short,
/// because a database that is starting (compose, a restart) is usually up
/// within a second.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(250);

/// The longest pause between attempts: a database that is down for long is
/// still noticed within seconds of coming back.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// Why one attempt failed.
pub(crate) enum AttemptError {
    /// The database could not be reached (or answered "not now"): retry.
    Unreachable(String),
    /// Anything else: stop.
    Fatal(anyhow::Error),
}

impl AttemptError {
    /// Sorts a database error from a step of an attempt.
    pub(crate) fn from_db(err: anyhow::Error) -> Self {
        let is_unavailable = err
            .chain()
            .filter_map(|cause| cause.downcast_ref::<sea_orm::DbErr>())
            .any(database::is_unavailable);
        if is_unavailable {
            Self::Unreachable(format!("{err:#}"))
        } else {
            Self::Fatal(err)
        }
    }
}

/// Checks with one direct connection that the database answers; the error
/// carries the driver's own cause.
pub(crate) async fn reach(config: &DatabaseConfig) -> Result<(), AttemptError> {
    let url = config.url.expose();
    match connect_directly(url, config.acquire_timeout).await {
        Ok(()) => Ok(()),
        Err(err) if err.kind().is_some() => Err(AttemptError::Unreachable(err.to_string())),
        Err(err) => Err(AttemptError::Fatal(
            anyhow::Error::new(err)
                .context(format!("connecting to the database at {}", redact_url(url))),
        )),
    }
}

/// Runs `attempt` until it succeeds, fails fatally, or
/// `config.startup_timeout` has passed, sleeping 250 ms, 500 ms, … (at most
/// 5 s) between attempts. Each failed attempt is logged at warn with its
/// cause; the final error names the URL (without password), the time spent
/// and the last cause.
pub(crate) async fn with_retries<T, F, Fut>(
    config: &DatabaseConfig,
    mut attempt: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, AttemptError>>,
{
    let started = Instant::now();
    let deadline = started + config.startup_timeout;
    let mut delay = FIRST_RETRY_DELAY;
    let mut number = 0u32;
    loop {
        number += 1;
        let cause = match attempt().await {
            Ok(value) => {
                if number > 1 {
                    tracing::info!(
                        attempts = number,
                        waited_ms = started.elapsed().as_millis() as u64,
                        "Database reachable: starting"
                    );
                }
                return Ok(value);
            }
            Err(AttemptError::Fatal(err)) => return Err(err),
            Err(AttemptError::Unreachable(cause)) => cause,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            anyhow::bail!(
                "the database at {} was unreachable for {} s ({number} attempts, DATABASE_STARTUP_TIMEOUT_SECS={}); last error: {cause}",
                redact_url(config.url.expose()),
                started.elapsed().as_secs(),
                config.startup_timeout.as_secs()
            );
        }
        let pause = delay.min(left);
        tracing::warn!(
            attempt = number,
            cause = %cause,
            retry_in_ms = pause.as_millis() as u64,
            "Database unreachable at start-up: retrying"
        );
        tokio::time::sleep(pause).await;
        delay = (delay * 2).min(MAX_RETRY_DELAY);
    }
}

/// A pool for maintenance (migrations, seeding): no statement timeout, so
/// a migration or a 100k-row seed is never cut off; reached with retries.
pub async fn connect_for_maintenance(
    config: &DatabaseConfig,
) -> anyhow::Result<DatabaseConnection> {
    with_retries(config, || async {
        reach(config).await?;
        open(config, super::Purpose::Maintenance).await
    })
    .await
}

/// Opens a pool for `purpose`, sorting its error.
pub(crate) async fn open(
    config: &DatabaseConfig,
    purpose: super::Purpose,
) -> Result<DatabaseConnection, AttemptError> {
    sea_orm::Database::connect(super::connect_options(config, purpose))
        .await
        .with_context(|| {
            format!(
                "connecting to the database at {}",
                redact_url(config.url.expose())
            )
        })
        .map_err(AttemptError::from_db)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn config(startup_timeout: Duration) -> DatabaseConfig {
        DatabaseConfig {
            url: Secret::new("postgres://anigo:hunter2@127.0.0.1:1/anigo"),
            max_connections: 1,
            acquire_timeout: Duration::from_millis(100),
            statement_timeout: Duration::from_millis(100),
            startup_timeout,
            uses_deprecated_connect_timeout: false,
            auto_migrate: false,
            demo_seed_count: 0,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_back_off_until_an_attempt_succeeds() {
        let attempts = AtomicU32::new(0);
        let started = Instant::now();

        let value = with_retries(&config(Duration::from_secs(30)), || async {
            match attempts.fetch_add(1, Ordering::Relaxed) {
                0..3 => Err(AttemptError::Unreachable("Connection refused".into())),
                _ => Ok(7),
            }
        })
        .await
        .expect("the fourth attempt succeeds");

        assert_eq!(value, 7);
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(250 + 500 + 1_000),
            "pauses double"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_deadline_the_error_names_the_cause_without_the_password() {
        let started = Instant::now();

        let err = with_retries(&config(Duration::from_secs(10)), || async {
            Err::<(), _>(AttemptError::Unreachable(
                "error communicating with database: Connection refused (os error 111)".into(),
            ))
        })
        .await
        .expect_err("never reachable");

        assert_eq!(
            started.elapsed(),
            Duration::from_secs(10),
            "stops at the deadline"
        );
        let text = format!("{err:#}");
        assert!(text.contains("Connection refused (os error 111)"), "{text}");
        assert!(text.contains("unreachable for 10 s"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_fatal_error_stops_at_once() {
        let attempts = AtomicU32::new(0);

        let err = with_retries(&config(Duration::from_secs(30)), || async {
            attempts.fetch_add(1, Ordering::Relaxed);
            Err::<(), _>(AttemptError::Fatal(anyhow::anyhow!(
                "password authentication failed"
            )))
        })
        .await
        .expect_err("fatal");

        assert_eq!(attempts.load(Ordering::Relaxed), 1);
        assert!(err.to_string().contains("password"));
    }
}
