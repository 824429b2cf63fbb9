//! Gives every error in a GraphQL response a stable `extensions.code`.
//!
//! Resolver errors get theirs from [`crate::error::AppError`]. async-graphql's
//! own parse and validation errors carry none, so [`ErrorShaping`] tags them:
//! `GRAPHQL_PARSE_FAILED`, `BAD_USER_INPUT` for a bad argument or variable
//! value (at validation or, for values no integer type holds, at
//! execution), `GRAPHQL_VALIDATION_FAILED` for the rest. [`attach_request_id`]
//! adds the request id to internal errors, so a user's report leads to the
//! log lines with the details.

use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextValidation,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Response, ServerError, ServerResult, ValidationResult, Value, Variables};

use crate::error::code;

/// Extension factory that tags parse and validation errors with codes.
pub struct ErrorShaping;

impl ExtensionFactory for ErrorShaping {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ErrorShapingExtension)
    }
}

struct ErrorShapingExtension;

#[async_graphql::async_trait::async_trait]
impl Extension for ErrorShapingExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        next.run(ctx, query, variables)
            .await
            .map_err(|err| with_code(err, code::GRAPHQL_PARSE_FAILED))
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let mut response = next.run(ctx, operation_name).await;
        // Argument values that pass validation but not coercion (a number
        // too large for any integer type) fail inside execution without a
        // code. Once per request, not per field.
        for err in &mut response.errors {
            if err.message.starts_with("Failed to parse") {
                set_code(err, code::BAD_USER_INPUT);
            }
        }
        response
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx).await.map_err(|errors| {
            errors
                .into_iter()
                .map(|err| {
                    let code = if is_bad_value(&err.message) {
                        code::BAD_USER_INPUT
                    } else if is_limit(&err.message) {
                        code::QUERY_TOO_COMPLEX
                    } else {
                        code::GRAPHQL_VALIDATION_FAILED
                    };
                    with_code(err, code)
                })
                .collect()
        })
    }
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

fn with_code(mut err: ServerError, code: &'static str) -> ServerError {
    set_code(&mut err, code);
    err
}

/// A request-level error (no path, no location) with `code`.
pub fn coded_error(message: impl Into<String>, code: &'static str) -> ServerError {
    with_code(ServerError::new(message, None), code)
}

/// Sets `extensions.code` unless the error already has one.
fn set_code(err: &mut ServerError, code: &'static str) {
    let extensions = err.extensions.get_or_insert_with(Default::default);
    if extensions.get("code").is_none() {
        extensions.set("code", code);
    }
}

/// Adds `extensions.requestId` to every `INTERNAL` error of a response.
pub fn attach_request_id(response: &mut Response, request_id: &str) {
    for err in &mut response.errors {
        let Some(extensions) = err.extensions.as_mut() else {
            continue;
        };
        if matches!(extensions.get("code"), Some(Value::String(c)) if c == code::INTERNAL) {
            extensions.set("requestId", request_id);
        }
    }
}
