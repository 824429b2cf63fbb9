//! [`Database`]: the server's one handle on the database. It holds the pool
//! and the [`Breaker`], and implements sea-orm's `ConnectionTrait` and
//! `TransactionTrait`, so a repository runs its queries on `&Database`
//! exactly as on a bare pool, and every statement of the server (reads,
//! writes, readiness) passes the same guard:
//!
//! 1. while the breaker is open, fail at once with [`rejected_error`];
//! 2. otherwise run it, abandoned after acquire + statement timeout plus a
//!    little grace (PostgreSQL's own `statement_timeout` fires first when
//!    the server answers at all; this bound covers a frozen server and
//!    SQLite);
//! 3. tell the breaker how it went ([`classify`] decides which errors are
//!    the database's and which are the statement's own).
//!
//! Migrations and seeding do not use it: they run on a connection of their
//! own, without the request statement timeout (see `db::startup`).

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sea_orm::sqlx;
use sea_orm::{
    AccessMode, ConnAcquireErr, ConnectionTrait, DatabaseConnection, DatabaseTransaction,
    DbBackend, DbErr, ExecResult, IsolationLevel, QueryResult, RuntimeErr, Statement,
    TransactionError, TransactionOptions, TransactionTrait,
};
use tokio::sync::watch;

use super::breaker::{Breaker, BreakerState, Failure, FailureKind};
use crate::config::{DatabaseConfig, Secret};

/// Added to acquire + statement timeout for the client-side bound, so that
/// PostgreSQL's `statement_timeout` (a clean error, the connection kept)
/// wins the race whenever the server is answering at all.
const CLIENT_BOUND_GRACE: Duration = Duration::from_millis(250);

/// The message of [`rejected_error`] (log only; clients see their code).
const REJECTED: &str = "database unavailable: circuit breaker open, failing fast";

/// The guarded database handle. Cheap to clone: clones share the pool, the
/// breaker and its prober.
#[derive(Clone, Debug)]
pub struct Database {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The request pool (with `statement_timeout` on PostgreSQL).
    conn: DatabaseConnection,
    breaker: Breaker,
    /// Client-side bound of one call.
    call_timeout: Duration,
    /// Turns true on [`Database::close`]; stops the prober.
    stop: watch::Sender<bool>,
    /// The prober task, taken and awaited by [`Database::close`].
    prober: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Database {
    /// Guards `conn` (the request pool for `config`) with a breaker whose
    /// prober connects to `config.url` directly. Spawns the prober, so it
    /// must be called inside the Tokio runtime.
    pub fn new(conn: DatabaseConnection, config: &DatabaseConfig) -> Self {
        let breaker = Breaker::new();
        let (stop, stopped) = watch::channel(false);
        let url = config.url.clone();
        let prober = breaker.clone();
        let task = tokio::spawn(async move {
            prober
                .run_prober(
                    || probe(url.clone(), super::breaker::PROBE_TIMEOUT),
                    stopped,
                )
                .await;
        });
        Self {
            inner: Arc::new(Inner {
                conn,
                breaker,
                call_timeout: config.acquire_timeout
                    + config.statement_timeout
                    + CLIENT_BOUND_GRACE,
                stop,
                prober: Mutex::new(Some(task)),
            }),
        }
    }

    /// The breaker's state.
    pub fn breaker_state(&self) -> BreakerState {
        self.inner.breaker.state()
    }

    /// Calls refused by the open breaker since start.
    pub fn rejected_calls(&self) -> u64 {
        self.inner.breaker.rejected()
    }

    /// Round-trips `SELECT 1` through the guard (for readiness); fails at
    /// once while the breaker is open.
    pub async fn ping(&self) -> Result<Duration, DbErr> {
        let started = Instant::now();
        self.execute_unprepared("SELECT 1").await?;
        Ok(started.elapsed())
    }

    /// Stops the prober and closes the pool (at shutdown).
    pub async fn close(&self) -> Result<(), DbErr> {
        let _ = self.inner.stop.send(true);
        let task = self
            .inner
            .prober
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
        self.inner.conn.clone().close().await
    }

    /// Runs one call through the guard (see the module doc).
    async fn guard<T>(&self, call: impl Future<Output = Result<T, DbErr>>) -> Result<T, DbErr> {
        let breaker = &self.inner.breaker;
        if breaker.admit().is_err() {
            return Err(rejected_error());
        }
        match tokio::time::timeout(self.inner.call_timeout, call).await {
            Ok(Ok(value)) => {
                breaker.record_success();
                Ok(value)
            }
            Ok(Err(err)) => {
                match classify(&err) {
                    Some(failure) => breaker.record_failure(failure),
                    // The database answered; the error is the statement's.
                    None => breaker.record_success(),
                }
                Err(err)
            }
            Err(_) => {
                let err = timed_out_error(self.inner.call_timeout);
                breaker.record_failure(Failure::new(FailureKind::Timeout, err.to_string()));
                Err(err)
            }
        }
    }

    /// Runs a transaction-level call through the guard.
    async fn guard_transaction<T, E>(
        &self,
        call: impl Future<Output = Result<T, TransactionError<E>>>,
    ) -> Result<T, TransactionError<E>> {
        let breaker = &self.inner.breaker;
        if breaker.admit().is_err() {
            return Err(TransactionError::Connection(rejected_error()));
        }
        let result = call.await;
        match &result {
            Err(TransactionError::Connection(err)) => match classify(err) {
                Some(failure) => breaker.record_failure(failure),
                None => breaker.record_success(),
            },
            // The callback's own error: the database answered.
            Ok(_) | Err(TransactionError::Transaction(_)) => breaker.record_success(),
        }
        result
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for Database {
    fn get_database_backend(&self) -> DbBackend {
        self.inner.conn.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.guard(self.inner.conn.execute_raw(stmt)).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.guard(self.inner.conn.execute_unprepared(sql)).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.guard(self.inner.conn.query_one_raw(stmt)).await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.guard(self.inner.conn.query_all_raw(stmt)).await
    }

    fn support_returning(&self) -> bool {
        self.inner.conn.support_returning()
    }
}

/// Transactions: `BEGIN` (where a pooled connection is acquired) passes the
/// guard; statements inside a transaction run on its own connection, bounded
/// by PostgreSQL's `statement_timeout` but not counted by the breaker.
#[async_trait::async_trait]
impl TransactionTrait for Database {
    type Transaction = DatabaseTransaction;

    async fn begin(&self) -> Result<DatabaseTransaction, DbErr> {
        self.guard(self.inner.conn.begin()).await
    }

    async fn begin_with_config(
        &self,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<DatabaseTransaction, DbErr> {
        self.guard(
            self.inner
                .conn
                .begin_with_config(isolation_level, access_mode),
        )
        .await
    }

    async fn begin_with_options(
        &self,
        options: TransactionOptions,
    ) -> Result<DatabaseTransaction, DbErr> {
        self.guard(self.inner.conn.begin_with_options(options))
            .await
    }

    async fn transaction<F, T, E>(&self, callback: F) -> Result<T, TransactionError<E>>
    where
        F: for<'c> FnOnce(
                &'c DatabaseTransaction,
            ) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
            + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        self.guard_transaction(self.inner.conn.transaction(callback))
            .await
    }

    async fn transaction_with_config<F, T, E>(
        &self,
        callback: F,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<T, TransactionError<E>>
    where
        F: for<'c> FnOnce(
                &'c DatabaseTransaction,
            ) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
            + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        self.guard_transaction(self.inner.conn.transaction_with_config(
            callback,
            isolation_level,
            access_mode,
        ))
        .await
    }
}

/// The error of a call refused by the open breaker.
pub fn rejected_error() -> DbErr {
    DbErr::Conn(RuntimeErr::Internal(REJECTED.to_owned()))
}

/// The error of a call abandoned after `bound`.
fn timed_out_error(bound: Duration) -> DbErr {
    DbErr::Conn(RuntimeErr::Internal(format!(
        "no answer from the database within {} ms",
        bound.as_millis()
    )))
}

/// Whether `err` is the open breaker's refusal (already logged once per
/// outage, so callers need not log it again).
pub fn is_rejected(err: &DbErr) -> bool {
    matches!(err, DbErr::Conn(RuntimeErr::Internal(message)) if message == REJECTED)
}

/// Whether `err` says the database is unavailable (unreachable, too slow,
/// out of resources, or the breaker open) rather than that the statement
/// was wrong: the same request may succeed later.
pub fn is_unavailable(err: &DbErr) -> bool {
    classify(err).is_some()
}

/// What `err` says about the database: `None` when it is the statement's
/// own error (a constraint violation, a decoding error, a missing row), so
/// the database itself answered.
pub fn classify(err: &DbErr) -> Option<Failure> {
    let kind = match err {
        DbErr::ConnectionAcquire(ConnAcquireErr::Timeout) => FailureKind::Timeout,
        DbErr::ConnectionAcquire(_) => FailureKind::Connection,
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => classify_sqlx(e)?,
        // sea-orm's own connection errors, and ours (breaker, bound).
        DbErr::Conn(_) => FailureKind::Connection,
        _ => return None,
    };
    Some(Failure::new(kind, err.to_string()))
}

/// What a driver error says about the database.
pub(crate) fn classify_sqlx(err: &sqlx::Error) -> Option<FailureKind> {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => Some(FailureKind::Connection),
        sqlx::Error::PoolTimedOut => Some(FailureKind::Timeout),
        sqlx::Error::Database(db) => {
            if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                classify_sqlstate(pg.code())
            } else {
                let code = db.code()?.parse::<i32>().ok()?;
                classify_sqlite(code)
            }
        }
        _ => None,
    }
}

/// PostgreSQL SQLSTATE classes that are the server's trouble, not the
/// statement's.
fn classify_sqlstate(code: &str) -> Option<FailureKind> {
    match code {
        // query_canceled: our statement_timeout (or an operator's cancel).
        "57014" => Some(FailureKind::Timeout),
        // admin_shutdown, crash_shutdown, cannot_connect_now (starting up).
        "57P01" | "57P02" | "57P03" => Some(FailureKind::Connection),
        // Connection exceptions.
        c if c.starts_with("08") => Some(FailureKind::Connection),
        // Insufficient resources (too many connections, disk full, out of
        // memory) and system errors (I/O).
        c if c.starts_with("53") || c.starts_with("58") => Some(FailureKind::Server),
        _ => None,
    }
}

/// SQLite result codes (extended; the primary code is the low byte) that
/// are the database file's trouble, not the statement's.
fn classify_sqlite(code: i32) -> Option<FailureKind> {
    const BUSY: i32 = 5;
    const LOCKED: i32 = 6;
    const NOMEM: i32 = 7;
    const IOERR: i32 = 10;
    const FULL: i32 = 13;
    const CANTOPEN: i32 = 14;
    match code & 0xff {
        BUSY | LOCKED => Some(FailureKind::Timeout),
        CANTOPEN => Some(FailureKind::Connection),
        NOMEM | IOERR | FULL => Some(FailureKind::Server),
        _ => None,
    }
}

/// One connection made directly (not through the pool, which hides every
/// connect error behind "pool timed out") and `SELECT 1` on it, within
/// `timeout`. The error is the driver's own, e.g. "error communicating
/// with database: Connection refused (os error 111)".
pub(crate) async fn connect_directly(url: &str, timeout: Duration) -> Result<(), DirectError> {
    use sqlx::{ConnectOptions as _, Connection as _};

    let attempt = async {
        if url.starts_with("sqlite:") {
            let mut conn = sqlx::sqlite::SqliteConnectOptions::from_str(url)?
                .connect()
                .await?;
            sqlx::raw_sql("SELECT 1").execute(&mut conn).await?;
            conn.close().await
        } else {
            let mut conn = sqlx::postgres::PgConnectOptions::from_str(url)?
                .connect()
                .await?;
            sqlx::raw_sql("SELECT 1").execute(&mut conn).await?;
            conn.close().await
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(DirectError::Driver(err)),
        Err(_) => Err(DirectError::TimedOut(timeout)),
    }
}

/// Why [`connect_directly`] failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DirectError {
    /// The driver's error.
    #[error("{0}")]
    Driver(sqlx::Error),
    /// Nothing answered in time (a frozen server, a dropped SYN).
    #[error("no answer within {} ms", .0.as_millis())]
    TimedOut(Duration),
}

impl DirectError {
    /// What this says about the database; `None` for errors no retry can
    /// fix (wrong password, no such database, a bad URL).
    pub(crate) fn kind(&self) -> Option<FailureKind> {
        match self {
            Self::Driver(err) => classify_sqlx(err),
            Self::TimedOut(_) => Some(FailureKind::Timeout),
        }
    }
}

/// The prober's probe: a direct connection, so it reports the real cause.
async fn probe(url: Secret, timeout: Duration) -> Result<(), Failure> {
    connect_directly(url.expose(), timeout)
        .await
        .map_err(|err| {
            // Errors no retry fixes (say, the password was changed) keep the
            // breaker open too: the pool could not connect either.
            Failure::new(
                err.kind().unwrap_or(FailureKind::Connection),
                err.to_string(),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_errors_are_outages_and_statement_errors_are_not() {
        let io = DbErr::Conn(RuntimeErr::SqlxError(Arc::new(sqlx::Error::Io(
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        ))));
        assert_eq!(classify(&io).map(|f| f.kind), Some(FailureKind::Connection));
        let pool = DbErr::ConnectionAcquire(ConnAcquireErr::Timeout);
        assert_eq!(classify(&pool).map(|f| f.kind), Some(FailureKind::Timeout));
        assert!(is_unavailable(&rejected_error()));
        assert!(is_rejected(&rejected_error()));
        assert!(!is_rejected(&pool));
        assert!(is_unavailable(&timed_out_error(Duration::from_secs(1))));

        let not_found = DbErr::RecordNotFound("anime 7".into());
        assert_eq!(classify(&not_found), None);
        let decode = DbErr::Query(RuntimeErr::SqlxError(Arc::new(sqlx::Error::RowNotFound)));
        assert_eq!(classify(&decode), None);
    }

    #[test]
    fn sqlstates_of_the_server_count_and_those_of_the_statement_do_not() {
        assert_eq!(classify_sqlstate("57014"), Some(FailureKind::Timeout));
        assert_eq!(classify_sqlstate("57P01"), Some(FailureKind::Connection));
        assert_eq!(classify_sqlstate("08006"), Some(FailureKind::Connection));
        assert_eq!(classify_sqlstate("53300"), Some(FailureKind::Server));
        // unique_violation, syntax error, serialization failure.
        assert_eq!(classify_sqlstate("23505"), None);
        assert_eq!(classify_sqlstate("42601"), None);
        assert_eq!(classify_sqlstate("40001"), None);
    }

    #[test]
    fn sqlite_codes_of_the_file_count_and_constraints_do_not() {
        assert_eq!(classify_sqlite(5), Some(FailureKind::Timeout));
        assert_eq!(classify_sqlite(14), Some(FailureKind::Connection));
        assert_eq!(
            classify_sqlite(266),
            Some(FailureKind::Server),
            "SQLITE_IOERR_READ"
        );
        assert_eq!(classify_sqlite(2067), None, "SQLITE_CONSTRAINT_UNIQUE");
    }

    #[tokio::test]
    async fn a_direct_connection_names_the_real_cause() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let url = format!("postgres://postgres@127.0.0.1:{port}/anigo");

        let err = connect_directly(&url, Duration::from_secs(1))
            .await
            .expect_err("nothing listens there");

        assert!(err.to_string().contains("Connection refused"), "{err}");
        assert_eq!(err.kind(), Some(FailureKind::Connection));
    }
}
