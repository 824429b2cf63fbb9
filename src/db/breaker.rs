//! The database circuit breaker: whether calls may go to the database at
//! all, and the background prober that decides when they may again.
//!
//! States:
//!
//! - **closed**: calls go through. A connection-level failure (refused,
//!   reset, the server shutting down) opens the breaker at once;
//!   [`FAILURE_THRESHOLD`] consecutive timeouts or server-side failures open
//!   it too. A timeout also asks the prober for a diagnosis: one probe on a
//!   fresh connection, which opens the breaker when it cannot connect (the
//!   pool itself only ever says "timed out", however the server failed).
//! - **open**: calls fail at once, without waiting for a pooled
//!   connection. The prober tries the database every [`PROBE_INTERVAL`].
//! - **probing**: a probe is in flight; calls still fail at once. A probe
//!   that succeeds closes the breaker.
//!
//! The breaker knows nothing of SQL: `db::database` says what a failure is
//! and supplies the probe. It logs once per outage (warn, when it opens,
//! with the cause the prober found) and once when it closes (info); nothing
//! per call.

use std::future::Future;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

/// Consecutive timeouts or server-side failures that open the breaker. One
/// slow statement is not an outage; three in a row, with no success in
/// between, are (under load they arrive within one timeout of each other).
pub const FAILURE_THRESHOLD: u32 = 3;

/// Pause between probes while the breaker is open. With [`PROBE_TIMEOUT`]
/// this closes the breaker well within 2 s of the database answering again,
/// at the cost of a few connection attempts a second during an outage.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// The longest one probe (connect and `SELECT 1`) may take: a healthy
/// database connects in a few milliseconds, a frozen one never answers.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const PROBING: u8 = 2;

/// Where the breaker stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go to the database.
    Closed,
    /// Calls fail at once; the prober waits for its next attempt.
    Open,
    /// Calls fail at once; a probe is in flight.
    Probing,
}

impl BreakerState {
    /// `closed`, `open` or `probing`, as `/readyz` reports it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::Probing => "probing",
        }
    }

    /// Whether calls fail at once.
    pub fn is_open(self) -> bool {
        self != Self::Closed
    }
}

/// How a database call failed, as far as the breaker is concerned. Errors
/// that are the statement's own (a unique violation, bad data) are not
/// failures of the database and never reach the breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The database cannot be reached or dropped the connection: opens the
    /// breaker at once.
    Connection,
    /// No answer in time (pool acquire, statement timeout, client-side
    /// bound): counts toward [`FAILURE_THRESHOLD`] and asks for a diagnosis.
    Timeout,
    /// The server answered but is failing itself (out of resources, I/O
    /// errors): counts toward [`FAILURE_THRESHOLD`].
    Server,
}

/// A failure of the database, with its cause for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// What kind of failure.
    pub kind: FailureKind,
    /// The driver's message (never sent to clients).
    pub cause: String,
}

impl Failure {
    /// A failure of `kind` because of `cause`.
    pub fn new(kind: FailureKind, cause: impl Into<String>) -> Self {
        Self {
            kind,
            cause: cause.into(),
        }
    }
}

/// The call was refused because the breaker is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejected;

/// The circuit breaker. Cheap to clone: clones share one state.
#[derive(Clone, Debug, Default)]
pub struct Breaker {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    /// [`CLOSED`], [`OPEN`] or [`PROBING`]: read on every call without a lock.
    state: AtomicU8,
    /// Timeouts and server failures since the last success while closed.
    consecutive_failures: AtomicU32,
    /// Calls refused since start.
    rejected: AtomicU64,
    /// Wakes the prober: the breaker opened, or a diagnosis is wanted.
    wake: Notify,
    /// Transitions and what the log lines need; held for a few field
    /// updates, never across an await (a std mutex is fine).
    outage: Mutex<Outage>,
}

/// The current (or last) outage.
#[derive(Debug, Default)]
struct Outage {
    opened_at: Option<Instant>,
    /// What opened the breaker.
    trigger: Option<Failure>,
    /// `rejected` when it opened, to report the outage's own count.
    rejected_at_open: u64,
    /// Whether the outage's warning has been logged.
    is_announced: bool,
    /// A timeout asked the prober to look while closed.
    is_diagnosis_wanted: bool,
}

impl Breaker {
    /// A closed breaker.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        match self.shared.state.load(Ordering::Acquire) {
            CLOSED => BreakerState::Closed,
            PROBING => BreakerState::Probing,
            _ => BreakerState::Open,
        }
    }

    /// Calls refused since start.
    pub fn rejected(&self) -> u64 {
        self.shared.rejected.load(Ordering::Relaxed)
    }

    /// Admits a call, or refuses it at once (counted) while open.
    pub fn admit(&self) -> Result<(), Rejected> {
        if self.shared.state.load(Ordering::Acquire) == CLOSED {
            return Ok(());
        }
        self.shared.rejected.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(crate::metrics::DB_FAST_FAILED_TOTAL).increment(1);
        Err(Rejected)
    }

    /// A call the database answered: resets the failure count.
    pub fn record_success(&self) {
        // Read first: the common case (no failures) writes nothing shared.
        if self.shared.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.shared.consecutive_failures.store(0, Ordering::Relaxed);
        }
    }

    /// A call that failed because of the database. Ignored while open (calls
    /// admitted just before it opened report late).
    pub fn record_failure(&self, failure: Failure) {
        if self.state() != BreakerState::Closed {
            return;
        }
        if failure.kind == FailureKind::Connection {
            self.open(failure);
            return;
        }
        let failures = self
            .shared
            .consecutive_failures
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        if failures >= FAILURE_THRESHOLD {
            self.open(failure);
        } else if failure.kind == FailureKind::Timeout {
            self.lock().is_diagnosis_wanted = true;
            self.shared.wake.notify_one();
        }
    }

    /// Opens the breaker unless it already is; whether this call opened it.
    fn open(&self, trigger: Failure) -> bool {
        let mut outage = self.lock();
        if self
            .shared
            .state
            .compare_exchange(CLOSED, OPEN, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        *outage = Outage {
            opened_at: Some(Instant::now()),
            trigger: Some(trigger),
            rejected_at_open: self.rejected(),
            is_announced: false,
            is_diagnosis_wanted: false,
        };
        self.shared.consecutive_failures.store(0, Ordering::Relaxed);
        drop(outage);
        metrics::counter!(crate::metrics::DB_BREAKER_OPENED_TOTAL).increment(1);
        self.shared.wake.notify_one();
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Outage> {
        self.shared
            .outage
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The background prober: sleeps until the breaker opens or a diagnosis
    /// is wanted, then probes (each attempt bounded by [`PROBE_TIMEOUT`])
    /// until the database answers. Returns once `shutdown` turns true or
    /// its sender is dropped.
    pub async fn run_prober<P, F>(&self, probe: P, mut shutdown: watch::Receiver<bool>)
    where
        P: Fn() -> F,
        F: Future<Output = Result<(), Failure>>,
    {
        let probe_once = || async {
            match tokio::time::timeout(PROBE_TIMEOUT, probe()).await {
                Ok(result) => result,
                Err(_) => Err(Failure::new(
                    FailureKind::Timeout,
                    format!("no answer within {} ms", PROBE_TIMEOUT.as_millis()),
                )),
            }
        };
        loop {
            tokio::select! {
                () = self.shared.wake.notified() => {}
                _ = shutdown.wait_for(|stopped| *stopped) => return,
            }
            if self.state() == BreakerState::Closed {
                let is_wanted = std::mem::take(&mut self.lock().is_diagnosis_wanted);
                if !is_wanted {
                    continue;
                }
                match probe_once().await {
                    // The database answers: the timeout was a slow
                    // statement or a busy pool, not an outage.
                    Ok(()) => continue,
                    Err(failure) => {
                        if !self.open(failure.clone()) {
                            continue;
                        }
                        self.announce(&failure);
                    }
                }
            }
            loop {
                self.shared.state.store(PROBING, Ordering::Release);
                match probe_once().await {
                    Ok(()) => {
                        self.close();
                        break;
                    }
                    Err(failure) => {
                        self.shared.state.store(OPEN, Ordering::Release);
                        tracing::debug!(cause = %failure.cause, "Database probe failed");
                        self.announce(&failure);
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(PROBE_INTERVAL) => {}
                    _ = shutdown.wait_for(|stopped| *stopped) => return,
                }
            }
        }
    }

    /// Logs the outage's warning once, with the prober's own finding as
    /// the cause (the calls' errors often only say "pool timed out").
    fn announce(&self, found: &Failure) {
        let mut outage = self.lock();
        if outage.is_announced {
            return;
        }
        outage.is_announced = true;
        let trigger = outage.trigger.as_ref().map_or("", |t| t.cause.as_str());
        tracing::warn!(
            cause = %found.cause,
            trigger = %trigger,
            "Database unavailable: failing database calls fast until it answers"
        );
    }

    fn close(&self) {
        let mut outage = self.lock();
        if !outage.is_announced {
            // Opened and healed before a probe could fail: still one pair
            // of lines per outage.
            outage.is_announced = true;
            let trigger = outage.trigger.as_ref().map_or("", |t| t.cause.as_str());
            tracing::warn!(
                cause = %trigger,
                trigger = %trigger,
                "Database unavailable: failing database calls fast until it answers"
            );
        }
        let down_ms = outage.opened_at.map_or(0, |at| {
            u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX)
        });
        let rejected = self.rejected().saturating_sub(outage.rejected_at_open);
        self.shared.consecutive_failures.store(0, Ordering::Relaxed);
        self.shared.state.store(CLOSED, Ordering::Release);
        drop(outage);
        tracing::info!(
            down_ms,
            rejected,
            "Database reachable again: serving database calls"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    fn timeout() -> Failure {
        Failure::new(FailureKind::Timeout, "pool timed out")
    }

    fn refused() -> Failure {
        Failure::new(FailureKind::Connection, "Connection refused (os error 111)")
    }

    /// A prober whose probe fails until `healthy` is set, counting probes.
    fn spawn_prober(
        breaker: &Breaker,
        healthy: &Arc<AtomicBool>,
        probes: &Arc<AtomicU32>,
    ) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let (stop, stopped) = watch::channel(false);
        let (breaker, healthy, probes) = (breaker.clone(), Arc::clone(healthy), Arc::clone(probes));
        let task = tokio::spawn(async move {
            breaker
                .run_prober(
                    || {
                        let (healthy, probes) = (Arc::clone(&healthy), Arc::clone(&probes));
                        async move {
                            probes.fetch_add(1, Ordering::Relaxed);
                            if healthy.load(Ordering::Relaxed) {
                                Ok(())
                            } else {
                                Err(refused())
                            }
                        }
                    },
                    stopped,
                )
                .await;
        });
        (stop, task)
    }

    #[test]
    fn a_refused_connection_opens_at_once_and_calls_are_refused_and_counted() {
        let breaker = Breaker::new();
        assert_eq!(breaker.admit(), Ok(()));

        breaker.record_failure(refused());

        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(breaker.admit(), Err(Rejected));
        assert_eq!(breaker.admit(), Err(Rejected));
        assert_eq!(breaker.rejected(), 2);
    }

    #[test]
    fn consecutive_timeouts_open_it_and_a_success_resets_the_count() {
        let breaker = Breaker::new();
        breaker.record_failure(timeout());
        breaker.record_failure(timeout());
        breaker.record_success();
        breaker.record_failure(timeout());
        breaker.record_failure(Failure::new(FailureKind::Server, "disk full"));
        assert_eq!(
            breaker.state(),
            BreakerState::Closed,
            "a success in between resets the count"
        );

        breaker.record_failure(timeout());

        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(breaker.lock().trigger, Some(timeout()));
    }

    #[test]
    fn failures_reported_while_open_change_nothing() {
        let breaker = Breaker::new();
        breaker.record_failure(refused());
        breaker.record_failure(timeout());
        assert_eq!(
            breaker.lock().trigger,
            Some(refused()),
            "the first cause stays"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_prober_closes_the_breaker_soon_after_the_database_answers() {
        // Arrange: open, with a database that stays down for 3 s.
        let breaker = Breaker::new();
        let healthy = Arc::new(AtomicBool::new(false));
        let probes = Arc::new(AtomicU32::new(0));
        let (_stop, _task) = spawn_prober(&breaker, &healthy, &probes);
        breaker.record_failure(refused());
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(breaker.state().is_open());
        let during_outage = probes.load(Ordering::Relaxed);
        assert!(
            (10..=14).contains(&during_outage),
            "about one probe per {PROBE_INTERVAL:?}: {during_outage}"
        );

        // Act: the database answers again.
        healthy.store(true, Ordering::Relaxed);
        let back = Instant::now();
        while breaker.state().is_open() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        // Assert
        assert!(
            back.elapsed() <= PROBE_INTERVAL,
            "closed after {:?}",
            back.elapsed()
        );
        assert_eq!(breaker.admit(), Ok(()));
        let after = probes.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            probes.load(Ordering::Relaxed),
            after,
            "no probes while closed"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_that_never_answers_counts_as_failed_after_the_probe_timeout() {
        let breaker = Breaker::new();
        let (_stop, stopped) = watch::channel(false);
        let probes = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&probes);
        let prober = breaker.clone();
        tokio::spawn(async move {
            prober
                .run_prober(
                    || {
                        counted.fetch_add(1, Ordering::Relaxed);
                        std::future::pending::<Result<(), Failure>>()
                    },
                    stopped,
                )
                .await;
        });

        breaker.record_failure(refused());
        tokio::time::sleep(PROBE_TIMEOUT + PROBE_INTERVAL + Duration::from_millis(10)).await;

        assert_eq!(
            probes.load(Ordering::Relaxed),
            2,
            "the hung probe was abandoned"
        );
        assert!(breaker.state().is_open());
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_asks_for_a_diagnosis_that_opens_on_a_refused_connection() {
        let breaker = Breaker::new();
        let healthy = Arc::new(AtomicBool::new(false));
        let probes = Arc::new(AtomicU32::new(0));
        let (_stop, _task) = spawn_prober(&breaker, &healthy, &probes);

        breaker.record_failure(timeout());
        tokio::time::sleep(Duration::from_millis(1)).await;

        assert!(
            breaker.state().is_open(),
            "one timeout and a failed diagnosis"
        );
        assert_eq!(
            breaker.lock().trigger,
            Some(refused()),
            "the diagnosis is the cause"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_diagnosis_that_connects_leaves_the_breaker_closed() {
        let breaker = Breaker::new();
        let healthy = Arc::new(AtomicBool::new(true));
        let probes = Arc::new(AtomicU32::new(0));
        let (_stop, _task) = spawn_prober(&breaker, &healthy, &probes);

        breaker.record_failure(timeout());
        tokio::time::sleep(Duration::from_secs(1)).await;

        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(
            probes.load(Ordering::Relaxed),
            1,
            "one diagnosis, no probing"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_prober_stops_on_shutdown_even_while_open() {
        let breaker = Breaker::new();
        let healthy = Arc::new(AtomicBool::new(false));
        let probes = Arc::new(AtomicU32::new(0));
        let (stop, task) = spawn_prober(&breaker, &healthy, &probes);
        breaker.record_failure(refused());
        tokio::time::sleep(Duration::from_secs(1)).await;

        stop.send(true).expect("prober listening");

        tokio::time::timeout(PROBE_INTERVAL * 2, task)
            .await
            .expect("prober stopped")
            .expect("prober did not panic");
    }
}
