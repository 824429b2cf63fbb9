//! The API-boundary error and its GraphQL error codes.
//!
//! [`AppError`] is what services return. Some variants are errors a client can
//! act on; the others are opaque. [`AppError::extend`] (via
//! `async_graphql::ErrorExtensions`) is the one place where an `AppError`
//! becomes a GraphQL error: internal variants are logged there, once, with
//! their cause chain, and the client gets a generic message and code
//! `INTERNAL`; a database that is down or too slow is `DATABASE_UNAVAILABLE`
//! instead, with a fixed message and `retryable: true`.
//! [`AppError::into_field_error`] is the same conversion for a resolver that
//! can report several input problems at once (one GraphQL error each). The
//! request id is attached to internal errors by
//! `graphql::errors::attach_request_id`; `graphql::errors::shape` gives
//! async-graphql's own parse and validation errors a code, and
//! `graphql::values` and `graphql::limits` build the errors of the checks
//! made before execution.

use async_graphql::ErrorExtensions;

/// Result alias for services and repositories.
pub type Result<T, E = AppError> = std::result::Result<T, E>;

/// Stable `extensions.code` values clients can match on.
pub mod code {
    /// An argument, input field or variable value is outside its allowed
    /// range, of the wrong type, or missing. `extensions.argument` (for an
    /// argument written in the document, or checked by a resolver) or
    /// `extensions.variable` names it, with a dotted path into an input
    /// object (`input.year`, `input.genres.2`); one error per wrong value.
    pub const BAD_USER_INPUT: &str = "BAD_USER_INPUT";
    /// The thing asked for does not exist.
    pub const NOT_FOUND: &str = "NOT_FOUND";
    /// An admin field was called without credentials.
    pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
    /// An admin field was called with wrong credentials, or admin access is
    /// disabled.
    pub const FORBIDDEN: &str = "FORBIDDEN";
    /// A cache administration command could not reach Redis.
    pub const CACHE_UNAVAILABLE: &str = "CACHE_UNAVAILABLE";
    /// The database is down, unreachable or too slow right now, and the
    /// field needed it (an uncached read, or a write). Nothing was changed.
    /// Retryable (`extensions.retryable` is `true`): send the same request
    /// again after a pause (with backoff); `/readyz` says when the database
    /// is back. Cached fields of the same request may still have answered.
    pub const DATABASE_UNAVAILABLE: &str = "DATABASE_UNAVAILABLE";
    /// Something failed on our side; details are in the log under the
    /// request id.
    pub const INTERNAL: &str = "INTERNAL";
    /// The document is not valid GraphQL syntax. The message is one line
    /// (what is wrong, at which line and column); `extensions.details`
    /// holds the parser's diagnostic with the offending line marked.
    pub const GRAPHQL_PARSE_FAILED: &str = "GRAPHQL_PARSE_FAILED";
    /// The document does not fit the schema.
    pub const GRAPHQL_VALIDATION_FAILED: &str = "GRAPHQL_VALIDATION_FAILED";
    /// The document is too deep, too complex or uses too many aliases.
    pub const QUERY_TOO_COMPLEX: &str = "QUERY_TOO_COMPLEX";
    /// The document has more lexical tokens than `GRAPHQL_MAX_TOKENS`
    /// (counted before it is parsed), or more fields than that once its
    /// fragments are expanded: nothing was parsed or validated further.
    pub const QUERY_TOO_LARGE: &str = "QUERY_TOO_LARGE";
    /// A batched body holds more requests than allowed.
    pub const BATCH_TOO_LARGE: &str = "BATCH_TOO_LARGE";
    /// The request ran longer than `REQUEST_TIMEOUT_SECS`.
    pub const TIMEOUT: &str = "TIMEOUT";
    /// The request's HTTP shape is refused (content type, method).
    pub const BAD_REQUEST: &str = "BAD_REQUEST";
    /// The `Accept` header allows neither `application/graphql-response+json`
    /// nor `application/json` (HTTP 406).
    pub const NOT_ACCEPTABLE: &str = "NOT_ACCEPTABLE";
    /// An automatic persisted query hash this server does not know: send
    /// the same request again with the full `query` text.
    pub const PERSISTED_QUERY_NOT_FOUND: &str = "PERSISTED_QUERY_NOT_FOUND";
}

/// Errors at the API boundary.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Code `BAD_USER_INPUT`: an argument is out of range or malformed. The
    /// message names the argument and what is allowed.
    #[error("{message}")]
    BadUserInput {
        /// The GraphQL argument at fault, as the client spelled it.
        argument: &'static str,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// Code `BAD_USER_INPUT` on each: several arguments or input fields
    /// are wrong at once. Every element is a `BadUserInput` (see
    /// [`AppError::all`]); [`AppError::into_field_error`] reports each as a
    /// GraphQL error of its own.
    #[error("{}", join_messages(.0))]
    BadUserInputs(Vec<AppError>),
    /// Code `NOT_FOUND`.
    #[error("{0} not found")]
    NotFound(String),
    /// Code `UNAUTHENTICATED`: no usable `Authorization: Bearer` header.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// Code `FORBIDDEN`: wrong token, or admin access disabled.
    #[error("{0}")]
    Forbidden(&'static str),
    /// Code `CACHE_UNAVAILABLE`: Redis did not answer an admin command.
    /// Nothing was changed that the caller can rely on; the cause is logged.
    #[error(
        "Redis is unreachable or did not answer in time; try again when /readyz reports redis up"
    )]
    CacheUnavailable(#[source] fred::error::Error),
    /// Code `DATABASE_UNAVAILABLE`: the database could not be reached, did
    /// not answer in time, or is known to be down (its circuit breaker is
    /// open). Retryable; the cause is logged (once per outage for calls the
    /// breaker refused), never sent.
    #[error("the database is unavailable; retry later")]
    DatabaseUnavailable(#[source] sea_orm::DbErr),
    /// Code `INTERNAL`: the database failed on this statement. The cause is
    /// logged, never sent.
    #[error("database error")]
    Database(#[source] sea_orm::DbErr),
    /// Code `INTERNAL`: anything else that should not happen.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl From<sea_orm::DbErr> for AppError {
    /// `DatabaseUnavailable` when the error is about the database rather
    /// than the statement (see `db::database::classify`), else `Database`.
    fn from(err: sea_orm::DbErr) -> Self {
        if crate::db::database::is_unavailable(&err) {
            Self::DatabaseUnavailable(err)
        } else {
            Self::Database(err)
        }
    }
}

impl AppError {
    /// A `BAD_USER_INPUT` error for `argument`.
    pub fn bad_input(argument: &'static str, message: impl Into<String>) -> Self {
        Self::BadUserInput {
            argument,
            message: message.into(),
        }
    }

    /// `Ok` when `problems` is empty, else the one problem, or all of them
    /// as [`AppError::BadUserInputs`].
    pub fn all(problems: Vec<AppError>) -> Result<()> {
        let mut flat = Vec::with_capacity(problems.len());
        for problem in problems {
            match problem {
                Self::BadUserInputs(inner) => flat.extend(inner),
                other => flat.push(other),
            }
        }
        match flat.len() {
            0 => Ok(()),
            1 => Err(flat.remove(0)),
            _ => Err(Self::BadUserInputs(flat)),
        }
    }

    /// The `extensions.code` the client sees.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadUserInput { .. } | Self::BadUserInputs(_) => code::BAD_USER_INPUT,
            Self::NotFound(_) => code::NOT_FOUND,
            Self::Unauthenticated(_) => code::UNAUTHENTICATED,
            Self::Forbidden(_) => code::FORBIDDEN,
            Self::CacheUnavailable(_) => code::CACHE_UNAVAILABLE,
            Self::DatabaseUnavailable(_) => code::DATABASE_UNAVAILABLE,
            Self::Database(_) | Self::Internal(_) => code::INTERNAL,
        }
    }

    /// Whether this error hides its cause from the client.
    pub fn is_internal(&self) -> bool {
        self.code() == code::INTERNAL
    }

    /// Whether the database's circuit breaker refused the call (the outage
    /// is logged once by the breaker, not per error).
    pub fn is_refused_by_breaker(&self) -> bool {
        matches!(self, Self::DatabaseUnavailable(cause) if crate::db::database::is_rejected(cause))
    }

    /// Whether the same request may succeed later without any change
    /// (`extensions.retryable`).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::DatabaseUnavailable(_))
    }

    /// The full cause chain, for the log only.
    fn cause_chain(&self) -> String {
        match self {
            Self::Database(err) | Self::DatabaseUnavailable(err) => err.to_string(),
            Self::Internal(err) => format!("{err:#}"),
            other => other.to_string(),
        }
    }
}

fn join_messages(errors: &[AppError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl AppError {
    /// This error as the error of the field `ctx` resolves. The problems of
    /// a [`AppError::BadUserInputs`] become one GraphQL error each (same
    /// path and location, each with its own `extensions.argument`), so a
    /// form can mark every wrong field at once; the others are added to the
    /// response through `ctx`, the last is returned.
    pub fn into_field_error(self, ctx: &async_graphql::Context<'_>) -> async_graphql::Error {
        let Self::BadUserInputs(mut problems) = self else {
            return self.extend();
        };
        let last = problems.pop();
        for problem in problems {
            ctx.add_error(ctx.set_error_path(problem.extend().into_server_error(ctx.item.pos)));
        }
        last.map_or_else(
            || Self::Internal(anyhow::anyhow!("an empty list of input problems")).extend(),
            |last| last.extend(),
        )
    }
}

/// Message shown to clients for every internal error.
pub const INTERNAL_MESSAGE: &str =
    "internal server error; quote the requestId extension when reporting it";

impl ErrorExtensions for AppError {
    fn extend(&self) -> async_graphql::Error {
        if self.is_internal() {
            // Logged here, once per failed field, inside the request's span
            // (which carries the request id); the client sees none of it.
            tracing::error!(error = %self.cause_chain(), "request failed");
            return async_graphql::Error::new(INTERNAL_MESSAGE)
                .extend_with(|_, ext| ext.set("code", code::INTERNAL));
        }
        if let Self::CacheUnavailable(cause) = self {
            tracing::warn!(error = %cause, "Cache administration failed: Redis unavailable");
        }
        if let Self::DatabaseUnavailable(cause) = self {
            // The breaker's refusals were announced once when it opened;
            // the failures that opened it are few and worth a line each.
            if self.is_refused_by_breaker() {
                tracing::debug!("Database unavailable: request failed fast");
            } else {
                tracing::warn!(error = %cause, "Database unavailable: request failed");
            }
            return async_graphql::Error::new(self.to_string()).extend_with(|_, ext| {
                ext.set("code", code::DATABASE_UNAVAILABLE);
                ext.set("retryable", true);
            });
        }
        // Where one error is all that can be returned, the first problem;
        // resolvers that check inputs use `into_field_error` instead.
        if let Self::BadUserInputs(problems) = self
            && let Some(first) = problems.first()
        {
            return first.extend();
        }
        let error = async_graphql::Error::new(self.to_string());
        match self {
            Self::BadUserInput { argument, .. } => error.extend_with(|_, ext| {
                ext.set("code", code::BAD_USER_INPUT);
                ext.set("argument", *argument);
            }),
            _ => error.extend_with(|_, ext| ext.set("code", self.code())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(err: &async_graphql::Error) -> String {
        err.extensions
            .as_ref()
            .and_then(|ext| ext.get("code"))
            .map(|value| value.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn database_errors_hide_their_text() {
        let err = AppError::from(sea_orm::DbErr::Custom("SELECT secret FROM t".into())).extend();
        assert_eq!(err.message, INTERNAL_MESSAGE);
        assert_eq!(code_of(&err), "\"INTERNAL\"");
        assert!(!format!("{err:?}").contains("secret"));
    }

    #[test]
    fn an_unavailable_database_is_retryable_and_hides_its_cause() {
        let cause = sea_orm::DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout);
        let app = AppError::from(cause);
        assert!(app.is_retryable());
        let err = app.extend();
        assert_eq!(code_of(&err), "\"DATABASE_UNAVAILABLE\"");
        let retryable = err.extensions.as_ref().and_then(|ext| ext.get("retryable"));
        assert_eq!(retryable, Some(&async_graphql::Value::Boolean(true)));
        assert!(!err.message.contains("pool"), "{}", err.message);

        let refused = AppError::from(crate::db::database::rejected_error()).extend();
        assert_eq!(code_of(&refused), "\"DATABASE_UNAVAILABLE\"");
        assert!(!refused.message.contains("breaker"), "{}", refused.message);
    }

    #[test]
    fn a_statement_error_stays_internal() {
        let err = AppError::from(sea_orm::DbErr::RecordNotFound("anime".into()));
        assert_eq!(err.code(), code::INTERNAL);
        assert!(!err.is_retryable());
    }

    #[test]
    fn several_problems_stay_separate() {
        assert!(AppError::all(Vec::new()).is_ok());
        let one = AppError::all(vec![AppError::bad_input("a", "a is wrong")]);
        assert!(matches!(
            one,
            Err(AppError::BadUserInput { argument: "a", .. })
        ));
        let nested = AppError::all(vec![
            AppError::bad_input("a", "a is wrong"),
            AppError::all(vec![
                AppError::bad_input("b", "b is wrong"),
                AppError::bad_input("c", "c is wrong"),
            ])
            .expect_err("two problems"),
        ]);
        let Err(AppError::BadUserInputs(problems)) = nested else {
            panic!("three problems");
        };
        assert_eq!(problems.len(), 3, "flattened");
        let all = AppError::BadUserInputs(problems);
        assert_eq!(all.to_string(), "a is wrong; b is wrong; c is wrong");
        assert_eq!(all.code(), code::BAD_USER_INPUT);
    }

    #[test]
    fn bad_input_names_the_argument() {
        let err = AppError::bad_input("limit", "limit must be between 1 and 100 (got 0)").extend();
        assert_eq!(err.message, "limit must be between 1 and 100 (got 0)");
        assert_eq!(code_of(&err), "\"BAD_USER_INPUT\"");
    }
}
