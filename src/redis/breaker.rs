//! The breaker in front of Redis, and [`Breaker::guarded`], the one door
//! every command goes through.
//!
//! After [`BREAKER_THRESHOLD`] consecutive failures of cache commands, Redis
//! is skipped for [`BREAKER_OPEN_FOR`] ([`RedisStore::is_available`] says
//! so); the first request after that probes it again. Failures are logged
//! at most once per [`FAILURE_LOG_INTERVAL`]. Which commands count, and
//! what bounds each, is the [`Guard`] it is sent with.
//!
//! [`RedisStore::is_available`]: super::RedisStore::is_available

use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fred::error::{Error, ErrorKind};

/// Consecutive command failures that open the breaker.
const BREAKER_THRESHOLD: u32 = 3;

/// How long an open breaker skips Redis before one request probes it again.
/// Long enough that a frozen Redis costs one timeout per second, not one
/// per request; short enough that a recovered Redis is used again at once.
const BREAKER_OPEN_FOR: Duration = Duration::from_secs(1);

/// At most one "Redis command failed" warning per this interval, so an
/// outage does not flood the log.
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// What a command counts for, and what bounds it besides its fred options.
#[derive(Clone, Copy, Debug)]
pub(super) enum Guard {
    /// A cache read or write bounded by its own options (`fast_options`):
    /// a success resets the failure count, a failure counts toward the
    /// breaker and is logged (throttled).
    Cache,
    /// A cache read or write sent as one pipeline, whose round trip is
    /// bounded as a whole by this timeout (fred bounds each command of it,
    /// not the pipeline). Counted and logged like [`Guard::Cache`]; the
    /// timeout fails it as "`command` timed out".
    CacheWithin(Duration),
    /// An administrative, readiness or pub/sub command, bounded by its own
    /// options (`admin_options`, `fast_options`): neither counted nor
    /// logged here (its caller reports the error), so a slow admin scan or
    /// a failed publish never opens the breaker for requests.
    Admin,
}

/// A small circuit breaker: after [`BREAKER_THRESHOLD`] consecutive
/// failures, Redis is skipped for [`BREAKER_OPEN_FOR`]; the first request
/// after that probes it again. Also throttles failure logs.
#[derive(Debug)]
pub(super) struct Breaker {
    consecutive_failures: AtomicU32,
    /// Milliseconds since `epoch` until which Redis is skipped.
    open_until_ms: AtomicU64,
    /// Milliseconds since `epoch` before which no failure is logged.
    next_log_ms: AtomicU64,
    /// Failures not logged since the last warning.
    suppressed: AtomicU64,
    epoch: Instant,
    /// `host:port` of the server, for the failure log.
    addr: String,
}

impl Breaker {
    /// A closed breaker for the server at `addr`.
    pub(super) fn new(addr: &str) -> Self {
        Self {
            consecutive_failures: AtomicU32::new(0),
            open_until_ms: AtomicU64::new(0),
            next_log_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
            epoch: Instant::now(),
            addr: addr.to_owned(),
        }
    }

    /// Runs one command (`fut`, named `command` in logs and timeout
    /// errors) as `guard` says: bounds it, then records its outcome on the
    /// breaker and logs a failure (throttled). Every command `RedisStore`
    /// sends goes through here.
    pub(super) async fn guarded<T>(
        &self,
        command: &'static str,
        guard: Guard,
        fut: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let result = match guard {
            Guard::Admin => return fut.await,
            Guard::Cache => fut.await,
            Guard::CacheWithin(timeout) => match tokio::time::timeout(timeout, fut).await {
                Ok(result) => result,
                Err(_elapsed) => {
                    let details = format!("{command} timed out");
                    Err(Error::new(ErrorKind::Timeout, details))
                }
            },
        };
        match &result {
            Ok(_) => self.record_success(),
            Err(err) => self.report_failure(command, err),
        }
        result
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether commands may be sent: not within a pause after repeated
    /// failures.
    pub(super) fn is_closed(&self) -> bool {
        self.now_ms() >= self.open_until_ms.load(Ordering::Relaxed)
    }

    fn record_success(&self) {
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
    }

    /// Counts a failed command toward the breaker and logs it, at most once
    /// per [`FAILURE_LOG_INTERVAL`] (with how many were not logged).
    fn report_failure(&self, command: &str, error: &Error) {
        self.record_failure();
        if let Some(suppressed) = self.take_log_permit() {
            tracing::warn!(
                redis_addr = %self.addr,
                command,
                error = %error,
                suppressed,
                "Redis command failed: serving from the database"
            );
        }
    }

    fn record_failure(&self) {
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= BREAKER_THRESHOLD {
            let until = self.now_ms() + BREAKER_OPEN_FOR.as_millis() as u64;
            self.open_until_ms.store(until, Ordering::Relaxed);
        }
    }

    /// `Some(suppressed count)` when a warning may be logged now.
    fn take_log_permit(&self) -> Option<u64> {
        let now = self.now_ms();
        let next = self.next_log_ms.load(Ordering::Relaxed);
        let interval = FAILURE_LOG_INTERVAL.as_millis() as u64;
        if now >= next
            && self
                .next_log_ms
                .compare_exchange(next, now + interval, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_after_repeated_failures_and_success_resets_the_count() {
        let breaker = Breaker::new("test");
        breaker.record_failure();
        breaker.record_failure();
        assert!(breaker.is_closed(), "two failures are tolerated");
        breaker.record_success();
        breaker.record_failure();
        breaker.record_failure();
        assert!(breaker.is_closed(), "success reset the count");
        breaker.record_failure();
        assert!(!breaker.is_closed(), "third consecutive failure opens it");
    }

    fn refused() -> Error {
        Error::new(ErrorKind::IO, "connection refused")
    }

    #[tokio::test]
    async fn cache_commands_count_toward_the_breaker_and_admin_commands_do_not() {
        let breaker = Breaker::new("test");
        for _ in 0..BREAKER_THRESHOLD {
            let failed = breaker
                .guarded("SCAN", Guard::Admin, async { Err::<(), _>(refused()) })
                .await;
            assert!(failed.is_err(), "the error reaches the caller");
        }
        assert!(breaker.is_closed(), "admin failures are not counted");
        for _ in 0..BREAKER_THRESHOLD {
            let failed = breaker
                .guarded("MGET", Guard::Cache, async { Err::<(), _>(refused()) })
                .await;
            assert!(failed.is_err());
        }
        assert!(!breaker.is_closed(), "cache failures open it");
        let ok = breaker
            .guarded("MGET", Guard::Cache, async { Ok::<_, Error>(7) })
            .await;
        assert_eq!(ok.ok(), Some(7));
        assert_eq!(breaker.consecutive_failures.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_pipeline_past_its_timeout_fails_as_a_counted_timeout() {
        let breaker = Breaker::new("test");
        let slow = std::future::pending::<Result<(), Error>>();
        let err = breaker
            .guarded(
                "pipeline",
                Guard::CacheWithin(Duration::from_millis(1)),
                slow,
            )
            .await
            .expect_err("timed out");
        assert_eq!(*err.kind(), ErrorKind::Timeout);
        assert_eq!(err.details(), "pipeline timed out");
        assert_eq!(breaker.consecutive_failures.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn failure_logs_are_throttled() {
        let breaker = Breaker::new("test");
        assert_eq!(breaker.take_log_permit(), Some(0));
        assert_eq!(breaker.take_log_permit(), None);
        assert_eq!(breaker.take_log_permit(), None);
        breaker.next_log_ms.store(0, Ordering::Relaxed);
        assert_eq!(
            breaker.take_log_permit(),
            Some(2),
            "reports what it suppressed"
        );
    }
}
