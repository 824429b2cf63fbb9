//! GraphQL documents before execution: normalization and hashing (the keys
//! of the response fast path and of the parsed-document cache), the
//! bounded cache of parsed documents, and what an operation is allowed to
//! do (mutation? cacheable?).
//!
//! Normalization is lexical, so it costs one pass over the text and no
//! parse: comments and insignificant whitespace and commas are dropped, and
//! one space is kept only where two tokens would otherwise merge. Strings
//! and block strings are copied verbatim. `{ animeCount }`,
//! `{animeCount}` and `{\n  animeCount # total\n}` share one key.

use std::sync::Arc;

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationType, Selection, SelectionSet,
};
use moka::future::Cache as Moka;
use sha2::{Digest as _, Sha256};

use super::limits::alias_count;
use crate::cache::{Resolver, ResponseKey};

/// Budget of the parsed-document cache, weighed by document text length
/// (the parsed form takes a few times more). A client sending endless
/// distinct documents only evicts others.
const DOCUMENT_BUDGET_BYTES: u64 = 4 * 1024 * 1024;

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

/// Parsed documents by [`DocumentHash`], so a document sent again is not
/// parsed again. Only documents that parse are kept.
#[derive(Clone)]
pub struct DocumentCache {
    documents: Moka<DocumentHash, Parsed>,
}

/// A parsed document and what is worth computing about it once.
#[derive(Clone)]
pub struct Parsed {
    /// The document.
    pub document: Arc<ExecutableDocument>,
    /// Its aliased fields (see `limits`).
    pub aliases: usize,
    /// Length of its text: its weight in the cache.
    length: u32,
}

impl Default for DocumentCache {
    fn default() -> Self {
        Self {
            documents: Moka::builder()
                .max_capacity(DOCUMENT_BUDGET_BYTES)
                .weigher(|_hash: &DocumentHash, parsed: &Parsed| parsed.length.saturating_add(64))
                .build(),
        }
    }
}

impl DocumentCache {
    /// The parsed form of `query` (whose normalized hash is `hash`), from
    /// the cache or parsed now. `None` when it does not parse: the executor
    /// then reports the error in its usual shape.
    pub async fn get_or_parse(&self, hash: DocumentHash, query: &str) -> Option<Parsed> {
        if let Some(parsed) = self.documents.get(&hash).await {
            return Some(parsed);
        }
        let document = async_graphql::parser::parse_query(query).ok()?;
        let parsed = Parsed {
            aliases: alias_count(&document),
            document: Arc::new(document),
            length: u32::try_from(query.len()).unwrap_or(u32::MAX),
        };
        if query.len() <= MAX_CACHED_DOCUMENT_BYTES {
            self.documents.insert(hash, parsed.clone()).await;
        }
        Some(parsed)
    }
}

/// The operation `operation_name` selects in `document` (the only one when
/// no name is given), as async-graphql picks it.
fn operation<'d>(
    document: &'d ExecutableDocument,
    operation_name: Option<&str>,
) -> Option<(OperationType, &'d SelectionSet)> {
    let operation = match (&document.operations, operation_name) {
        (DocumentOperations::Single(operation), _) => operation,
        (DocumentOperations::Multiple(operations), Some(name)) => operations.get(name)?,
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => {
            operations.values().next()?
        }
        (DocumentOperations::Multiple(_), None) => return None,
    };
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
            name == "__typename" || Resolver::ALL.iter().any(|r| r.name() == name)
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

    #[tokio::test]
    async fn a_document_sent_again_is_not_parsed_again() {
        let cache = DocumentCache::default();
        let query = "{ animeCount }";
        let first = cache.get_or_parse(DocumentHash::of(query), query).await;
        let again = cache
            .get_or_parse(DocumentHash::of("{animeCount}"), "{animeCount}")
            .await;
        assert!(Arc::ptr_eq(
            &first.expect("parses").document,
            &again.expect("parses").document
        ));
        let broken = "{ animeCount";
        assert!(
            cache
                .get_or_parse(DocumentHash::of(broken), broken)
                .await
                .is_none()
        );
    }

    fn parse(query: &str) -> ExecutableDocument {
        async_graphql::parser::parse_query(query).expect("parses")
    }

    #[test]
    fn only_public_cached_queries_are_cacheable() {
        let cacheable = [
            "{ animeCount }",
            "{ __typename popularAnime(limit: 3) { id } }",
            "query Q { ...F } fragment F on QueryRoot { animeCount anime(id: 1) { id } }",
            "{ ... on QueryRoot { animePage { items { id } } } }",
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
