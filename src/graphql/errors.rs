//! Gives every error in a GraphQL response a stable `extensions.code`.
//!
//! Resolver errors get theirs from [`crate::error::AppError`]. async-graphql's
//! own parse and validation errors carry none, so [`shape`] tags them once
//! the request has run: `GRAPHQL_PARSE_FAILED`, `BAD_USER_INPUT` for a bad
//! argument or variable value (at validation or, for values no integer
//! type holds, at execution), `QUERY_TOO_COMPLEX` for the depth and
//! complexity limits, `GRAPHQL_VALIDATION_FAILED` for the rest.
//! [`attach_request_id`] adds the request id to internal and
//! database-unavailable errors, so a
//! user's report leads to the log lines with the details.
//!
//! This is done after execution rather than in an async-graphql extension:
//! any extension makes async-graphql wrap every field resolution in hooks
//! (a boxed future and formatted type names per field), which measured as
//! the largest single cost of a 20-item list query.

use async_graphql::{Response, ServerError, Value};

use crate::error::code;

/// Tags the errors of `response` that have no code. `parsed`: whether the
/// document parsed (otherwise its request errors are parse errors).
pub fn shape(response: &mut Response, parsed: bool) {
    let is_request_error = response.data == Value::Null;
    for err in &mut response.errors {
        let code = if !err.path.is_empty() || !is_request_error {
            // Argument values that pass validation but not coercion (a
            // number too large for any integer type) fail inside execution.
            if err.message.starts_with("Failed to parse") {
                code::BAD_USER_INPUT
            } else {
                continue;
            }
        } else if !parsed || is_document_limit(&err.message) {
            code::GRAPHQL_PARSE_FAILED
        } else if is_bad_value(&err.message) {
            code::BAD_USER_INPUT
        } else if is_limit(&err.message) {
            code::QUERY_TOO_COMPLEX
        } else {
            code::GRAPHQL_VALIDATION_FAILED
        };
        set_code(err, code);
    }
}

/// async-graphql's checks on the parsed document's nesting and directives,
/// which it reports as part of parsing.
fn is_document_limit(message: &str) -> bool {
    message.starts_with("The recursion depth of the query")
        || message.starts_with("The number of directives on the field")
}

/// Whether a validation message is about a value the client supplied (an
/// argument or variable of the wrong type) rather than the document's shape.
fn is_bad_value(message: &str) -> bool {
    message.starts_with("Invalid value for argument")
        || message.starts_with("Invalid value for variable")
        || message.contains("is required but not provided")
}

/// Whether a validation message is async-graphql's depth or complexity
/// limit.
fn is_limit(message: &str) -> bool {
    message.starts_with("Query is nested too deep") || message.starts_with("Query is too complex")
}

/// A request-level error (no path, no location) with `code`.
pub fn coded_error(message: impl Into<String>, code: &'static str) -> ServerError {
    let mut err = ServerError::new(message, None);
    set_code(&mut err, code);
    err
}

/// Sets `extensions.code` unless the error already has one.
fn set_code(err: &mut ServerError, code: &'static str) {
    let extensions = err.extensions.get_or_insert_with(Default::default);
    if extensions.get("code").is_none() {
        extensions.set("code", code);
    }
}

/// Adds `extensions.requestId` to every `INTERNAL` and
/// `DATABASE_UNAVAILABLE` error of a response (their causes are in the log
/// under that id).
pub fn attach_request_id(response: &mut Response, request_id: &str) {
    for err in &mut response.errors {
        let Some(extensions) = err.extensions.as_mut() else {
            continue;
        };
        if matches!(extensions.get("code"), Some(Value::String(c)) if c == code::INTERNAL || c == code::DATABASE_UNAVAILABLE)
        {
            extensions.set("requestId", request_id);
        }
    }
}
