//! Gives every error in a GraphQL response a stable `extensions.code` and
//! a message that reads well in a UI.
//!
//! Resolver errors get theirs from [`crate::error::AppError`]. A document
//! that does not parse gets [`parse_error`]: one line saying what is wrong
//! and where (the parser's multi-line diagnostic goes to
//! `extensions.details`). async-graphql's own validation errors carry no
//! code, so [`shape`] tags them once the request has run:
//! `BAD_USER_INPUT` for a bad argument or variable value (at validation or,
//! for values no integer type holds, at execution), `QUERY_TOO_COMPLEX` for
//! the depth and complexity limits, `GRAPHQL_PARSE_FAILED` for the document
//! checks async-graphql makes as part of parsing, `GRAPHQL_VALIDATION_FAILED`
//! for the rest. [`attach_request_id`] adds the request id to internal and
//! database-unavailable errors, so a user's report leads to the log lines
//! with the details.
//!
//! Most bad values never reach async-graphql: `values` checks argument
//! literals and variables first and reports every bad one. What still
//! arrives twice is the argument parse that async-graphql's complexity
//! computation repeats for `limit` and `perPage`: [`shape`] drops that copy
//! when the rule that found the same problem reported it.
//!
//! This is done after execution rather than in an async-graphql extension:
//! any extension makes async-graphql wrap every field resolution in hooks
//! (a boxed future and formatted type names per field), which measured as
//! the largest single cost of a 20-item list query.

use async_graphql::parser::Error as ParseError;
use async_graphql::{Pos, Response, ServerError, Value};

use super::document::token_at;
use crate::error::code;

/// Tags the errors of `response` that have no code and drops the copies
/// async-graphql's complexity computation makes of validation errors.
/// `parsed`: whether the document parsed (otherwise its request errors are
/// parse errors).
pub fn shape(response: &mut Response, parsed: bool) {
    let is_request_error = response.data == Value::Null;
    if is_request_error
        && parsed
        && response
            .errors
            .iter()
            .any(|err| err.path.is_empty() && !is_argument_parse_failure(&err.message))
    {
        response
            .errors
            .retain(|err| !err.path.is_empty() || !is_argument_parse_failure(&err.message));
    }
    for err in &mut response.errors {
        let code = if !err.path.is_empty() || !is_request_error {
            // Argument values that pass validation but not coercion (a
            // number too large for any integer type) fail inside execution.
            if is_argument_parse_failure(&err.message) {
                code::BAD_USER_INPUT
            } else {
                continue;
            }
        } else if !parsed || is_document_limit(&err.message) {
            code::GRAPHQL_PARSE_FAILED
        } else if is_bad_value(&err.message) || is_argument_parse_failure(&err.message) {
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

/// Whether a message is async-graphql's failure to turn an argument value
/// into its Rust type. In validation it comes only from the complexity
/// computation, which parses the arguments of `limit`/`perPage` fields
/// again after the rules have judged them.
fn is_argument_parse_failure(message: &str) -> bool {
    message.starts_with("Failed to parse")
        || message.starts_with("Expected input type")
        || (message.starts_with("Variable ") && message.ends_with(" is not defined."))
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

/// The `GRAPHQL_PARSE_FAILED` error for `query`, which failed to parse with
/// `err`: one line (`Syntax error: expected a name, found "{" at line 1,
/// column 25.`), the parser's locations, and its multi-line diagnostic in
/// `extensions.details`.
pub fn parse_error(query: &str, err: &ParseError) -> ServerError {
    let positions: Vec<Pos> = err.positions().collect();
    let at = |pos: Pos| format!("at line {}, column {}", pos.line, pos.column);
    let message = match (err, positions.first()) {
        (ParseError::Syntax { message, start, .. }, _) => {
            let what = match pest_expectation(message) {
                Some(expected) => {
                    let found = token_at(query, *start);
                    if expected.starts_with("unexpected") {
                        expected
                    } else {
                        format!("{expected}, found {found}")
                    }
                }
                // Not a grammar error: a number literal no float holds.
                None => message
                    .split(" at line ")
                    .next()
                    .unwrap_or(message)
                    .trim_start_matches("invalid number: ")
                    .to_owned(),
            };
            format!("Syntax error: {what} {}.", at(*start))
        }
        (ParseError::MultipleOperations { .. }, Some(&pos)) => format!(
            "The anonymous operation {} must be the only operation in the document.",
            at(pos)
        ),
        (ParseError::OperationDuplicated { operation, .. }, Some(&pos)) => {
            format!(
                "Operation \"{operation}\" is defined twice, again {}.",
                at(pos)
            )
        }
        (ParseError::FragmentDuplicated { fragment, .. }, Some(&pos)) => {
            format!(
                "Fragment \"{fragment}\" is defined twice, again {}.",
                at(pos)
            )
        }
        (ParseError::MissingOperation, _) => "The document holds no operation.".to_owned(),
        (ParseError::RecursionLimitExceeded, _) => {
            "The document nests selections too deeply to be parsed.".to_owned()
        }
        (other, Some(&pos)) => format!("{other} {}.", at(pos)),
        (other, None) => other.to_string(),
    };
    let mut error = ServerError::new(message, None);
    error.locations = positions;
    set_code(&mut error, code::GRAPHQL_PARSE_FAILED);
    if let ParseError::Syntax { message, .. } = err
        && let Some(extensions) = error.extensions.as_mut()
    {
        extensions.set("details", message.trim_start().to_owned());
    }
    error
}

/// What pest's diagnostic says was expected (its last line,
/// `  = expected name`), in words a frontend developer knows. `None` when
/// the message is not one of pest's.
fn pest_expectation(message: &str) -> Option<String> {
    if !message.trim_start().starts_with("-->") {
        return None;
    }
    let last = message.lines().last()?.trim_start().strip_prefix("= ")?;
    let mut out = String::with_capacity(last.len() * 2);
    let mut word = String::new();
    for c in last.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        if !word.is_empty() {
            out.push_str(&rule_in_words(&word));
            word.clear();
        }
        out.push(c);
    }
    Some(out.trim_end().to_owned())
}

/// A rule of async-graphql's GraphQL grammar, in words.
fn rule_in_words(rule: &str) -> String {
    let words = match rule {
        "EOI" => "the end of the document",
        "executable_definition" => "an operation or a fragment",
        "operation_definition" | "named_operation_definition" => "an operation",
        "fragment_definition" => "a fragment",
        "operation_type" => "query, mutation or subscription",
        "selection_set" => "a selection set",
        "selection" => "a selection",
        "field" => "a field",
        "alias" => "an alias",
        "name" => "a name",
        "variable" => "a variable",
        "variable_definitions" | "variable_definition" => "a variable definition",
        "type_" => "a type",
        "type_condition" => "a type condition",
        "value" | "const_value" => "a value",
        "default_value" => "a default value",
        "arguments" | "argument" | "const_arguments" | "const_argument" => "an argument",
        "directives" | "directive" | "const_directives" | "const_directive" => "a directive",
        "fragment_spread" => "a fragment spread",
        "inline_fragment" => "an inline fragment",
        "object_field" | "const_object_field" => "an input field",
        "list" | "const_list" => "a list",
        "object" | "const_object" => "an input object",
        "string" => "a string",
        "number" | "int" | "float" => "a number",
        // The words of pest's sentence ("expected", "or", …) and rules
        // without a better name.
        other => return other.replace('_', " "),
    };
    words.to_owned()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_message(query: &str) -> (String, Vec<Pos>, Option<String>) {
        let err = async_graphql::parser::parse_query(query).expect_err("does not parse");
        let error = parse_error(query, &err);
        let details = error
            .extensions
            .as_ref()
            .and_then(|e| e.get("details"))
            .and_then(|d| match d {
                Value::String(s) => Some(s.clone()),
                _ => None,
            });
        (error.message, error.locations, details)
    }

    #[test]
    fn syntax_errors_are_one_line_with_the_position() {
        let cases = [
            (
                "{ popularAnime(limit: 1 { id }",
                "Syntax error: expected a name, found \"{\" at line 1, column 25.",
            ),
            (
                "{ popularAnime(limit: 1) { id }",
                "Syntax error: expected a selection, found the end of the document at line 1, column 32.",
            ),
            (
                "{ animeCount } }",
                "Syntax error: expected the end of the document or an operation or a fragment, found \"}\" at line 1, column 16.",
            ),
            (
                "",
                "Syntax error: expected an operation or a fragment, found the end of the document at line 1, column 1.",
            ),
            (
                "{ anime(id: \"1) { id } }",
                "Syntax error: expected a value, found an unterminated string at line 1, column 13.",
            ),
            (
                "query {\n  popularAnime(limit: 1e400) { id }\n}",
                "Syntax error: number out of range at line 2, column 23.",
            ),
        ];
        for (query, expected) in cases {
            let (message, locations, _) = parse_message(query);
            assert_eq!(message, expected, "{query:?}");
            assert!(!message.contains('\n'));
            assert_eq!(locations.len(), 1, "{query:?}");
        }
        let (_, _, details) = parse_message("{ popularAnime(limit: 1 { id }");
        assert_eq!(
            details.as_deref(),
            Some(
                "--> 1:25\n  |\n1 | { popularAnime(limit: 1 { id }\n  |                         ^---\n  |\n  = expected name"
            )
        );
    }

    #[test]
    fn document_structure_errors_say_what_and_where() {
        assert_eq!(
            parse_message("{ a } { b }").0,
            "The anonymous operation at line 1, column 7 must be the only operation in the document."
        );
        assert_eq!(
            parse_message("query A { a }\nquery A { b }").0,
            "Operation \"A\" is defined twice, again at line 2, column 1."
        );
        assert_eq!(
            parse_message("{ ...F } fragment F on Query { a } fragment F on Query { b }").0,
            "Fragment \"F\" is defined twice, again at line 1, column 36."
        );
    }

    #[test]
    fn complexity_copies_of_validation_errors_are_dropped() {
        let mut response = Response::from_errors(vec![
            ServerError::new("Variable \"$limit\" is not defined", None),
            ServerError::new("Variable limit is not defined.", None),
        ]);
        shape(&mut response, true);
        assert_eq!(response.errors.len(), 1);
        assert_eq!(
            response.errors[0].message,
            "Variable \"$limit\" is not defined"
        );
        let mut alone = Response::from_errors(vec![ServerError::new(
            "Expected input type \"Int\", found null.",
            None,
        )]);
        shape(&mut alone, true);
        assert_eq!(alone.errors.len(), 1, "kept when it is the only one");
        assert_eq!(
            alone.errors[0]
                .extensions
                .as_ref()
                .and_then(|e| e.get("code")),
            Some(&Value::from(code::BAD_USER_INPUT))
        );
    }
}
