//! GraphQL documents before execution: normalization and hashing (the keys
//! of the response fast path and of the parsed-document cache), the token
//! count that bounds a document before it is parsed, the bounded cache of
//! parsed documents (each checked once against the document limits and for
//! bad argument values), and what an operation is allowed to do (mutation?
//! cacheable?).
//!
//! Normalization is lexical, so it costs one pass over the text and no
//! parse: comments and insignificant whitespace and commas are dropped, and
//! one space is kept only where two tokens would otherwise merge. Strings
//! and block strings are copied verbatim. `{ animeCount }`,
//! `{animeCount}` and `{\n  animeCount # total\n}` share one key.

use std::mem::{align_of, size_of};
use std::sync::Arc;

use async_graphql::parser::types::{
    BaseType, Directive, DocumentOperations, ExecutableDocument, FragmentDefinition,
    OperationDefinition, OperationType, Selection, SelectionSet, Type, VariableDefinition,
};
use async_graphql::{Name, Positioned, ServerError, Value as ConstValue};
use async_graphql_value::Value;
use moka::future::Cache as Moka;
use sha2::{Digest as _, Sha256};

use super::errors::{coded_error, parse_error};
use super::limits::{alias_count, check_aliases, check_expanded_fields, expanded_field_count};
use super::values;
use crate::cache::ResponseKey;
use crate::config::GraphqlConfig;
use crate::error::code;

/// Budget of the parsed-document cache, weighed by what each parsed
/// document holds ([`Parsed::weight`]). A client sending endless distinct
/// documents only evicts others. 4 MiB keeps several hundred typical
/// documents (5-10 KB parsed each), far more than a frontend sends.
pub const DOCUMENT_BUDGET_BYTES: u64 = 4 * 1024 * 1024;

/// What the cache spends per document besides the document itself: the
/// key, moka's per-entry bookkeeping and the `Arc`'s counts (see
/// `cache::local::ENTRY_OVERHEAD_BYTES` for how moka's share was measured).
const DOCUMENT_ENTRY_BYTES: usize = size_of::<DocumentHash>()
    + crate::cache::local::ENTRY_OVERHEAD_BYTES as usize
    + ARC_COUNTS_BYTES;

/// The strong and weak counts in front of an `Arc`'s value.
const ARC_COUNTS_BYTES: usize = 2 * size_of::<usize>();

/// Longest document kept parsed; longer ones are parsed per request.
const MAX_CACHED_DOCUMENT_BYTES: usize = 16 * 1024;

/// SHA-256 of a normalized document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DocumentHash(pub [u8; 32]);

impl DocumentHash {
    /// The hash of `query` after normalization.
    pub fn of(query: &str) -> Self {
        Self(Sha256::digest(normalize(query).as_bytes()).into())
    }

    /// The response-cache key of this document run as `operation_name` with
    /// `variables` (canonical JSON: sorted keys, no whitespace; an absent,
    /// null or empty variables object is `{}`).
    pub fn response_key(&self, operation_name: Option<&str>, variables: &[u8]) -> ResponseKey {
        let mut hasher = Sha256::new();
        hasher.update(b"anigo-response-v1\0");
        hasher.update(self.0);
        match operation_name {
            Some(name) => {
                hasher.update([1]);
                hasher.update(name.as_bytes());
            }
            None => hasher.update([0]),
        }
        hasher.update([0]);
        hasher.update(variables);
        ResponseKey(hasher.finalize().into())
    }
}

/// `query` without comments or insignificant whitespace and commas.
pub fn normalize(query: &str) -> String {
    let bytes = query.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut pending_space = false;
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        match byte {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => {
                pending_space = true;
                i += 1;
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
                pending_space = true;
            }
            // A byte-order mark is insignificant too.
            0xEF if bytes[i..].starts_with(&[0xEF, 0xBB, 0xBF]) => {
                pending_space = true;
                i += 3;
            }
            b'"' => {
                separate(&mut out, &mut pending_space, byte);
                let end = string_end(bytes, i);
                out.extend_from_slice(&bytes[i..end]);
                i = end;
            }
            _ => {
                separate(&mut out, &mut pending_space, byte);
                out.push(byte);
                i += 1;
            }
        }
    }
    // Only whole ASCII bytes were dropped or inserted, so the text is still
    // UTF-8; the fallback is never taken.
    String::from_utf8(out)
        .unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into_owned())
}

/// Writes the one space two tokens need between them, if they need it:
/// two name or number characters would merge into one token, and dots are
/// kept apart so that `. ..` never becomes a spread.
fn separate(out: &mut Vec<u8>, pending_space: &mut bool, next: u8) {
    if std::mem::take(pending_space)
        && let Some(&last) = out.last()
    {
        let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80;
        if (is_word(last) && is_word(next)) || last == b'.' || next == b'.' || last == b'"' {
            out.push(b' ');
        }
    }
}

/// The index just past the string starting at `start` (a `"`): a block
/// string `"""…"""` (where `\"""` escapes) or a plain string with `\`
/// escapes. An unterminated string runs to the end.
fn string_end(bytes: &[u8], start: usize) -> usize {
    if bytes[start..].starts_with(b"\"\"\"") {
        let mut i = start + 3;
        while i < bytes.len() {
            if bytes[i..].starts_with(b"\\\"\"\"") {
                i += 4;
            } else if bytes[i..].starts_with(b"\"\"\"") {
                return i + 3;
            } else {
                i += 1;
            }
        }
        return bytes.len();
    }
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// Tokens in `query` as a GraphQL lexer sees them (names, numbers,
/// strings, punctuators; `...` is one token; comments, whitespace, commas
/// and byte-order marks are none), counted up to `stop_after + 1`: the pass
/// ends as soon as the limit is passed. A byte no token starts with counts
/// as one (the parser refuses it anyway).
pub fn count_tokens(query: &str, stop_after: usize) -> usize {
    let bytes = query.as_bytes();
    let is_name = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut count = 0;
    let mut i = 0;
    while i < bytes.len() && count <= stop_after {
        match bytes[i] {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
                continue;
            }
            0xEF if bytes[i..].starts_with(&[0xEF, 0xBB, 0xBF]) => {
                i += 3;
                continue;
            }
            b'"' => i = string_end(bytes, i),
            b'.' if bytes[i..].starts_with(b"...") => i += 3,
            b'-' | b'0'..=b'9' => {
                // -?digits(.digits)?([eE][+-]?digits)? as one token.
                i += 1;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
                if bytes.get(i) == Some(&b'.') && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                    while i < bytes.len() && bytes[i].is_ascii_digit() {
                        i += 1;
                    }
                }
                if matches!(bytes.get(i), Some(b'e' | b'E')) {
                    let digits = i + 1 + usize::from(matches!(bytes.get(i + 1), Some(b'+' | b'-')));
                    if bytes.get(digits).is_some_and(u8::is_ascii_digit) {
                        i = digits;
                        while i < bytes.len() && bytes[i].is_ascii_digit() {
                            i += 1;
                        }
                    }
                }
            }
            b if is_name(b) => {
                while i < bytes.len() && is_name(bytes[i]) {
                    i += 1;
                }
            }
            _ => i += 1,
        }
        count += 1;
    }
    count
}

/// The token of `query` at `pos` (or the first one after it, past
/// whitespace and comments), for a parse error: `"{"` quoted, `an
/// unterminated string`, or `the end of the document`. Long tokens are cut.
pub(super) fn token_at(query: &str, pos: async_graphql::Pos) -> String {
    /// Characters of a token echoed back at most.
    const MAX_ECHO: usize = 20;
    let mut line_start = 0;
    for _ in 1..pos.line {
        match query[line_start..].find('\n') {
            Some(at) => line_start += at + 1,
            None => line_start = query.len(),
        }
    }
    let line = query[line_start..].split('\n').next().unwrap_or_default();
    let column = line
        .char_indices()
        .nth(pos.column.saturating_sub(1))
        .map_or(line.len(), |(at, _)| at);
    let bytes = query.as_bytes();
    let mut start = (line_start + column).min(bytes.len());
    while start < bytes.len() {
        match bytes[start] {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => start += 1,
            b'#' => {
                while start < bytes.len() && bytes[start] != b'\n' && bytes[start] != b'\r' {
                    start += 1;
                }
            }
            _ => break,
        }
    }
    let rest = &query[start..];
    let end = match rest.as_bytes().first() {
        None => return "the end of the document".to_owned(),
        Some(b'"') => {
            let end = string_end(bytes, start) - start;
            let closed = if rest.starts_with("\"\"\"") {
                end >= 6 && rest[..end].ends_with("\"\"\"")
            } else {
                end >= 2 && rest[..end].ends_with('"')
            };
            if !closed {
                return "an unterminated string".to_owned();
            }
            end
        }
        Some(_) if rest.starts_with("...") => 3,
        Some(&first) if first.is_ascii_alphanumeric() || first == b'_' || first == b'-' => {
            // A name, or a number with its fraction and exponent.
            let is_number = first == b'-' || first.is_ascii_digit();
            rest.char_indices()
                .skip(1)
                .find(|&(_, c)| {
                    !(c.is_ascii_alphanumeric()
                        || c == '_'
                        || (is_number && matches!(c, '.' | '+' | '-')))
                })
                .map_or(rest.len(), |(at, _)| at)
        }
        Some(_) => rest.chars().next().map_or(1, char::len_utf8),
    };
    let token = &rest[..end];
    match token.char_indices().nth(MAX_ECHO) {
        Some((cut, _)) => format!("\"{}…\"", &token[..cut]),
        None => format!("\"{token}\""),
    }
}

/// Parsed documents by [`DocumentHash`], so a document sent again is not
/// parsed again. Only documents that parse and pass the document checks
/// are kept.
#[derive(Clone)]
pub struct DocumentCache {
    documents: Moka<DocumentHash, Parsed>,
}

/// A parsed document that passed the document checks.
#[derive(Clone)]
pub struct Parsed {
    /// The document.
    pub document: Arc<ExecutableDocument>,
    /// Its weight in the cache: [`held_bytes`] of the document plus the
    /// entry's own cost.
    weight: u32,
}

impl Parsed {
    /// Checks the `variables` of one request against the variable
    /// definitions of the operation it runs (see `values`); may fill a
    /// missing nullable variable with the default of the arguments it
    /// feeds.
    pub fn check_variables(
        &self,
        operation_name: Option<&str>,
        variables: &mut serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), Vec<ServerError>> {
        values::check_variables(&self.document, operation_name, variables)
    }
}

impl Default for DocumentCache {
    fn default() -> Self {
        Self {
            documents: Moka::builder()
                .max_capacity(DOCUMENT_BUDGET_BYTES)
                .weigher(|_hash: &DocumentHash, parsed: &Parsed| parsed.weight)
                .build(),
        }
    }
}

/// The `QUERY_TOO_LARGE` error when `query` has more than `max_tokens`
/// tokens. A text of at most `max_tokens` bytes cannot have more (a token
/// is at least one byte), so only longer ones are counted; the count stops
/// one past the limit.
pub fn check_tokens(query: &str, max_tokens: usize) -> Result<(), ServerError> {
    if query.len() <= max_tokens || count_tokens(query, max_tokens) <= max_tokens {
        return Ok(());
    }
    Err(coded_error(
        format!("the document has more than {max_tokens} tokens; send a smaller one"),
        code::QUERY_TOO_LARGE,
    ))
}

impl DocumentCache {
    /// The parsed form of `query` (whose normalized hash is `hash`), from
    /// the cache or parsed and checked now. `Err` when it is refused before
    /// execution, with coded errors: more than `max_tokens` tokens (counted
    /// before parsing), a syntax error (see `errors::parse_error`), or once
    /// parsed too many aliases, too many fields with its fragments
    /// expanded, or argument values of the wrong type (every one reported;
    /// see `values`).
    pub async fn get_or_parse(
        &self,
        hash: DocumentHash,
        query: &str,
        limits: &GraphqlConfig,
    ) -> Result<Parsed, Vec<ServerError>> {
        if let Some(parsed) = self.documents.get(&hash).await {
            return Ok(parsed);
        }
        check_tokens(query, limits.max_tokens).map_err(|err| vec![err])?;
        let document = async_graphql::parser::parse_query(query)
            .map_err(|err| vec![parse_error(query, &err)])?;
        check_aliases(alias_count(&document), limits.max_aliases).map_err(|err| vec![err])?;
        check_expanded_fields(expanded_field_count(&document), limits.max_tokens)
            .map_err(|err| vec![err])?;
        let bad_values = values::check_document(&document);
        if !bad_values.is_empty() {
            return Err(bad_values);
        }
        let weight = held_bytes(&document) + DOCUMENT_ENTRY_BYTES;
        let parsed = Parsed {
            document: Arc::new(document),
            weight: u32::try_from(weight).unwrap_or(u32::MAX),
        };
        if query.len() <= MAX_CACHED_DOCUMENT_BYTES {
            self.documents.insert(hash, parsed.clone()).await;
        }
        Ok(parsed)
    }
}

/// Heap bytes a parsed document holds, read off the tree itself: the
/// document, every vector and map at its capacity (the parser grows them
/// by doubling, so up to half a vector may be spare room), and every name
/// (an `Arc<str>` of its own per occurrence). The parsed form is 24 to 67
/// times its text (a 165-byte `anime(id)` query with 15 fields holds 6.2
/// KB), so weighing documents by their text let a 4 MiB budget hold some
/// 100 MiB. Requested sizes: what the allocator rounds up on top is
/// not counted. The test `the_weight_is_what_a_parsed_document_holds`
/// checks the sum against a counting allocator.
pub fn held_bytes(document: &ExecutableDocument) -> usize {
    let operations = match &document.operations {
        DocumentOperations::Single(operation) => operation_bytes(&operation.node),
        DocumentOperations::Multiple(operations) => {
            table_bytes::<(Name, Positioned<OperationDefinition>)>(operations.capacity())
                + operations
                    .iter()
                    .map(|(name, operation)| name_bytes(name) + operation_bytes(&operation.node))
                    .sum::<usize>()
        }
    };
    let fragments =
        table_bytes::<(Name, Positioned<FragmentDefinition>)>(document.fragments.capacity())
            + document
                .fragments
                .iter()
                .map(|(name, fragment)| {
                    name_bytes(name)
                        + name_bytes(&fragment.node.type_condition.node.on.node)
                        + directives_bytes(&fragment.node.directives)
                        + selections_bytes(&fragment.node.selection_set.node)
                })
                .sum::<usize>();
    size_of::<ExecutableDocument>() + operations + fragments
}

/// A name's shared string: the `Arc`'s counts and the bytes, padded to
/// the counts' alignment.
fn name_bytes(name: &Name) -> usize {
    (ARC_COUNTS_BYTES + name.len()).next_multiple_of(align_of::<usize>())
}

/// A hash table of `capacity` slots of `T` (std's, and the index of an
/// `IndexMap`): one control byte per bucket plus a group of 16, buckets a
/// power of two at most 7/8 full.
fn table_bytes<T>(capacity: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    let buckets = (capacity + capacity / 7 + 1).next_power_of_two();
    buckets * (size_of::<T>() + 1) + 16
}

fn operation_bytes(operation: &OperationDefinition) -> usize {
    operation.variable_definitions.capacity() * size_of::<Positioned<VariableDefinition>>()
        + operation
            .variable_definitions
            .iter()
            .map(|definition| {
                let definition = &definition.node;
                name_bytes(&definition.name.node)
                    + type_bytes(&definition.var_type.node)
                    + directives_bytes(&definition.directives)
                    + definition
                        .default_value
                        .as_ref()
                        .map_or(0, |value| const_value_bytes(&value.node))
            })
            .sum::<usize>()
        + directives_bytes(&operation.directives)
        + selections_bytes(&operation.selection_set.node)
}

fn type_bytes(ty: &Type) -> usize {
    match &ty.base {
        BaseType::Named(name) => name_bytes(name),
        BaseType::List(inner) => size_of::<Type>() + type_bytes(inner),
    }
}

fn selections_bytes(set: &SelectionSet) -> usize {
    set.items.capacity() * size_of::<Positioned<Selection>>()
        + set
            .items
            .iter()
            .map(|selection| match &selection.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    field
                        .alias
                        .as_ref()
                        .map_or(0, |alias| name_bytes(&alias.node))
                        + name_bytes(&field.name.node)
                        + arguments_bytes(&field.arguments)
                        + directives_bytes(&field.directives)
                        + selections_bytes(&field.selection_set.node)
                }
                Selection::FragmentSpread(spread) => {
                    name_bytes(&spread.node.fragment_name.node)
                        + directives_bytes(&spread.node.directives)
                }
                Selection::InlineFragment(fragment) => {
                    fragment
                        .node
                        .type_condition
                        .as_ref()
                        .map_or(0, |condition| name_bytes(&condition.node.on.node))
                        + directives_bytes(&fragment.node.directives)
                        + selections_bytes(&fragment.node.selection_set.node)
                }
            })
            .sum::<usize>()
}

fn directives_bytes(directives: &Vec<Positioned<Directive>>) -> usize {
    directives.capacity() * size_of::<Positioned<Directive>>()
        + directives
            .iter()
            .map(|directive| {
                name_bytes(&directive.node.name.node) + arguments_bytes(&directive.node.arguments)
            })
            .sum::<usize>()
}

fn arguments_bytes(arguments: &Vec<(Positioned<Name>, Positioned<Value>)>) -> usize {
    arguments.capacity() * size_of::<(Positioned<Name>, Positioned<Value>)>()
        + arguments
            .iter()
            .map(|(name, value)| name_bytes(&name.node) + value_bytes(&value.node))
            .sum::<usize>()
}

fn value_bytes(value: &Value) -> usize {
    match value {
        Value::Variable(name) | Value::Enum(name) => name_bytes(name),
        Value::String(text) => text.capacity(),
        Value::Binary(bytes) => bytes.len(),
        Value::List(items) => {
            items.capacity() * size_of::<Value>() + items.iter().map(value_bytes).sum::<usize>()
        }
        Value::Object(fields) => {
            // An `IndexMap`: its entries (hash, key, value) in a vector,
            // and a hash table of their indices.
            fields.capacity() * (size_of::<usize>() + size_of::<(Name, Value)>())
                + table_bytes::<usize>(fields.capacity())
                + fields
                    .iter()
                    .map(|(name, value)| name_bytes(name) + value_bytes(value))
                    .sum::<usize>()
        }
        Value::Null | Value::Number(_) | Value::Boolean(_) => 0,
    }
}

fn const_value_bytes(value: &ConstValue) -> usize {
    match value {
        ConstValue::Enum(name) => name_bytes(name),
        ConstValue::String(text) => text.capacity(),
        ConstValue::Binary(bytes) => bytes.len(),
        ConstValue::List(items) => {
            items.capacity() * size_of::<ConstValue>()
                + items.iter().map(const_value_bytes).sum::<usize>()
        }
        ConstValue::Object(fields) => {
            fields.capacity() * (size_of::<usize>() + size_of::<(Name, ConstValue)>())
                + table_bytes::<usize>(fields.capacity())
                + fields
                    .iter()
                    .map(|(name, value)| name_bytes(name) + const_value_bytes(value))
                    .sum::<usize>()
        }
        ConstValue::Null | ConstValue::Number(_) | ConstValue::Boolean(_) => 0,
    }
}

/// The operation `operation_name` selects in `document` (the only one when
/// no name is given), as async-graphql picks it: a name never selects the
/// anonymous operation.
pub(super) fn selected_operation<'d>(
    document: &'d ExecutableDocument,
    operation_name: Option<&str>,
) -> Option<&'d Positioned<OperationDefinition>> {
    match (&document.operations, operation_name) {
        (DocumentOperations::Single(operation), None) => Some(operation),
        (DocumentOperations::Single(_), Some(_)) => None,
        (DocumentOperations::Multiple(operations), Some(name)) => operations.get(name),
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => {
            operations.values().next()
        }
        (DocumentOperations::Multiple(_), None) => None,
    }
}

/// The type and selection set of the operation [`selected_operation`] picks.
fn operation<'d>(
    document: &'d ExecutableDocument,
    operation_name: Option<&str>,
) -> Option<(OperationType, &'d SelectionSet)> {
    let operation = selected_operation(document, operation_name)?;
    Some((operation.node.ty, &operation.node.selection_set.node))
}

/// Whether running `document` as `operation_name` could change anything.
/// A document naming no single operation counts as a mutation if any of
/// its operations is one (the executor refuses it anyway).
pub fn is_mutation(document: &ExecutableDocument, operation_name: Option<&str>) -> bool {
    match operation(document, operation_name) {
        Some((ty, _)) => ty == OperationType::Mutation,
        None => match &document.operations {
            DocumentOperations::Single(operation) => operation.node.ty == OperationType::Mutation,
            DocumentOperations::Multiple(operations) => operations
                .values()
                .any(|operation| operation.node.ty == OperationType::Mutation),
        },
    }
}

/// The public query fields whose every read goes through the cache (and
/// whose responses may therefore be kept): the anime reads and the
/// catalogue's lists, taxonomy and search. `randomAnime` is not one.
pub const CACHED_ROOT_FIELDS: &[&str] = &[
    "popularAnime",
    "animePage",
    "animeCount",
    "anime",
    "animeList",
    "genres",
    "themes",
    "studios",
    "genre",
    "theme",
    "studio",
    "searchAnime",
];

/// Whether the response of `document` run as `operation_name` may be kept
/// and shared: a query whose every root field (through fragments) is a
/// cached public resolver or `__typename`. Admin fields, introspection and
/// anything else make it uncacheable.
pub fn is_cacheable(document: &ExecutableDocument, operation_name: Option<&str>) -> bool {
    match operation(document, operation_name) {
        Some((OperationType::Query, selection_set)) => {
            only_cached_fields(document, selection_set, 0)
        }
        _ => false,
    }
}

fn only_cached_fields(document: &ExecutableDocument, set: &SelectionSet, depth: usize) -> bool {
    // Fragment cycles are a validation error; never loop on one here.
    if depth > 16 {
        return false;
    }
    set.items.iter().all(|selection| match &selection.node {
        Selection::Field(field) => {
            let name = field.node.name.node.as_str();
            name == "__typename" || CACHED_ROOT_FIELDS.contains(&name)
        }
        Selection::InlineFragment(fragment) => {
            only_cached_fields(document, &fragment.node.selection_set.node, depth + 1)
        }
        Selection::FragmentSpread(spread) => document
            .fragments
            .get(&spread.node.fragment_name.node)
            .is_some_and(|fragment| {
                only_cached_fields(document, &fragment.node.selection_set.node, depth + 1)
            }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_and_comments_do_not_change_the_key() {
        let forms = [
            "{ animeCount }",
            "{animeCount}",
            "{\n  animeCount # the total\n}\n",
            "  ,{ animeCount, } ",
            "\u{feff}{ animeCount }",
        ];
        for form in forms {
            assert_eq!(normalize(form), "{animeCount}", "{form:?}");
        }
        assert_eq!(
            normalize("query  Top($n: Int = 5) {\n popularAnime(limit: $n) { id title } }"),
            "query Top($n:Int=5){popularAnime(limit:$n){id title}}"
        );
    }

    #[test]
    fn strings_are_kept_verbatim() {
        assert_eq!(
            normalize(r#"{ anime(id: "a  #b, \"c\"") { id } }"#),
            r#"{anime(id:"a  #b, \"c\""){id}}"#
        );
        assert_eq!(
            normalize("{ a(s: \"\"\"x  \\\"\"\"  # y\"\"\") }"),
            "{a(s:\"\"\"x  \\\"\"\"  # y\"\"\")}"
        );
    }

    #[test]
    fn different_documents_stay_different() {
        assert_ne!(normalize("{ a b }"), normalize("{ ab }"));
        assert_ne!(
            normalize("{ ... on Q { a } }"),
            normalize("{ . .. on Q { a } }")
        );
        assert_ne!(normalize("{ a(x: 1 2) }"), normalize("{ a(x: 12) }"));
        assert_ne!(DocumentHash::of("{ a }"), DocumentHash::of("{ b }"));
        let doc = DocumentHash::of("{ a }");
        assert_ne!(
            doc.response_key(None, b"{}"),
            doc.response_key(Some(""), b"{}")
        );
        assert_ne!(
            doc.response_key(None, b"{}"),
            doc.response_key(None, b"{\"a\":1}")
        );
    }

    fn limits() -> GraphqlConfig {
        crate::Config::from_lookup(|_| None)
            .expect("the defaults are valid")
            .graphql
    }

    #[tokio::test]
    async fn a_document_sent_again_is_not_parsed_again() {
        let cache = DocumentCache::default();
        let query = "{ animeCount }";
        let first = cache
            .get_or_parse(DocumentHash::of(query), query, &limits())
            .await;
        let again = cache
            .get_or_parse(DocumentHash::of("{animeCount}"), "{animeCount}", &limits())
            .await;
        let (Ok(first), Ok(again)) = (first, again) else {
            panic!("both parse");
        };
        assert!(Arc::ptr_eq(&first.document, &again.document));
        let broken = "{ animeCount";
        let Err(errors) = cache
            .get_or_parse(DocumentHash::of(broken), broken, &limits())
            .await
        else {
            panic!("does not parse");
        };
        assert_eq!(
            errors[0].message,
            "Syntax error: expected a selection set, a selection, a directive, or an argument, found the end of the document at line 1, column 13."
        );
    }

    #[test]
    fn tokens_are_counted_as_a_lexer_sees_them() {
        let cases = [
            ("", 0),
            ("{ animeCount }", 3),
            ("{animeCount}", 3),
            ("  ,,{ animeCount, }\n# a comment { } ...\n", 3),
            ("\u{feff}{ __typename }", 3),
            ("{ ...F } fragment F on Query { a }", 11),
            ("query($v: Int! = -12) { a(x: $v) }", 19),
            ("{ a(x: 1.5e-3, y: -0, z: 12E+4) }", 14),
            (
                "{ a(s: \"x { y } # z\", b: \"\"\"block \\\"\"\" } \"\"\") }",
                11,
            ),
            ("{ a(s: \"unterminated) }", 6),
            ("{ a @skip(if: true) }", 10),
        ];
        for (query, tokens) in cases {
            assert_eq!(count_tokens(query, usize::MAX - 1), tokens, "{query:?}");
        }
    }

    #[test]
    fn counting_stops_once_the_limit_is_passed() {
        let many = "{ a }".repeat(1_000);
        assert_eq!(count_tokens(&many, 3_000), 3_000);
        assert_eq!(count_tokens(&many, 2_999), 3_000, "stops at limit + 1");
        assert_eq!(count_tokens(&many, 10), 11);
    }

    #[tokio::test]
    async fn a_document_over_the_token_limit_is_refused_before_parsing() {
        let cache = DocumentCache::default();
        let mut limits = limits();
        limits.max_tokens = 8;
        let at_limit = "{ a: animeCount b: __typename }";
        assert_eq!(count_tokens(at_limit, 100), 8);
        let over = "{ a: animeCount b: __typename c }";
        assert!(
            cache
                .get_or_parse(DocumentHash::of(at_limit), at_limit, &limits)
                .await
                .is_ok()
        );
        let Err(errors) = cache
            .get_or_parse(DocumentHash::of(over), over, &limits)
            .await
        else {
            panic!("refused");
        };
        assert_eq!(
            errors[0].message,
            "the document has more than 8 tokens; send a smaller one"
        );
    }

    fn parse(query: &str) -> ExecutableDocument {
        async_graphql::parser::parse_query(query).expect("parses")
    }

    /// Documents of every shape the estimate walks: bare fields, aliases,
    /// arguments of each value kind, variables with defaults and list
    /// types, directives, fragments and inline fragments, several
    /// operations, and a long one with many fields.
    fn weighed_documents() -> Vec<String> {
        let mut documents: Vec<String> = [
            "{ animeCount }",
            "query Op123 { anime(id: \"123\") { id title } }",
            "query Op123($id: ID!) { anime(id: $id) { id title titleEnglish format episodes status season year score popularity genres pictureUrl synopsis createdAt updatedAt } }",
            "query($page: Int! = 2) { animePage(page: $page, perPage: 20) { total page perPage hasNextPage items { id title pictureUrl score format year } } }",
            "{ animeList(filter: { genre: \"action\", yearFrom: 2000, yearTo: 2010, format: TV, minScore: 7.5 }, sort: SCORE, order: DESC, page: 3, perPage: 50) { total items { id f1: title f2: year } } }",
            "query Detail($id: ID!, $skip: Boolean = false) { anime(id: $id) { id title genreList @skip(if: $skip) { name slug } themes { name slug } studios { name slug } players { embedUrl translator quality } episodeList { number title airedOn } } }",
            "query A { ...F } fragment F on Query { animeCount popularAnime(limit: 3) { ...G } } fragment G on Anime { id title score }",
            "query A { animeCount } query B($ids: [ID!]! = [\"1\", \"2\"], $f: AnimeFilterInput = { genre: \"drama\" }) { ... on Query { a1: anime(id: \"1\") { id } a2: anime(id: \"2\") { ... @include(if: true) { title } } } }",
            "{ a1: anime(id: \"1\") { id title } a2: anime(id: \"2\") { id title } a3: anime(id: \"3\") { id title } a4: anime(id: \"4\") { id title } a5: anime(id: \"5\") { id title } }",
        ]
        .map(str::to_owned)
        .into();
        let fields: Vec<String> = (0..400).map(|i| format!("f{i}: title")).collect();
        documents.push(format!(
            "{{ popularAnime(limit: 100) {{ {} }} }}",
            fields.join(" ")
        ));
        documents
    }

    #[test]
    fn the_weight_is_what_a_parsed_document_holds() {
        for query in weighed_documents() {
            let mut held = None;
            // Counts this thread's allocations only: other tests running
            // meanwhile cannot disturb it.
            let measured = allocation_counter::measure(|| {
                held = Some(Arc::new(parse(&query)));
            });
            let document = held.expect("parsed");
            let measured = usize::try_from(measured.bytes_current).expect("the document is held");
            let estimated = held_bytes(&document) + ARC_COUNTS_BYTES;
            assert!(
                estimated >= measured && estimated <= measured + measured / 10,
                "estimated {estimated} bytes, measured {measured}: {query}"
            );
            assert!(measured > 20 * query.len(), "{measured} bytes for {query}");
        }
    }

    #[test]
    fn only_public_cached_queries_are_cacheable() {
        let cacheable = [
            "{ animeCount }",
            "{ __typename popularAnime(limit: 3) { id } }",
            "query Q { ...F } fragment F on Query { animeCount anime(id: 1) { id } }",
            "{ ... on Query { animePage { items { id } } } }",
        ];
        for query in cacheable {
            assert!(is_cacheable(&parse(query), None), "{query}");
        }
        let uncacheable = [
            "{ cacheStats { resolvers { name } } }",
            "{ animeCount cacheStats { redisConnected } }",
            "{ __schema { types { name } } }",
            "mutation { clearAllCache }",
            "query A { animeCount } query B { animeCount }",
            "{ ...Missing }",
        ];
        for query in uncacheable {
            assert!(!is_cacheable(&parse(query), None), "{query}");
        }
        let two = parse("query A { animeCount } mutation B { clearAllCache }");
        assert!(is_cacheable(&two, Some("A")));
        assert!(!is_cacheable(&two, Some("B")));
        assert!(is_mutation(&two, Some("B")));
        assert!(!is_mutation(&two, Some("A")));
        assert!(is_mutation(&two, None));
    }
}
