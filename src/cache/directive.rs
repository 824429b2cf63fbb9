//! What a request's own cache directives ask of the cache (RFC 9111
//! §5.2.1), parsed from its `Cache-Control` (or, without one, `Pragma`)
//! header.
//!
//! Two are honoured, on the public cached reads only (the cached resolvers
//! and the response fast path):
//!
//! - `no-cache` (also `max-age=0`, and HTTP/1.0's `Pragma: no-cache`): the
//!   read is answered from no cache tier; it loads from the database and
//!   stores the result as a miss would, so the next reader gets it too;
//! - `no-store`: nothing this request loads is stored in any tier; reads may
//!   still be answered from the cache.
//!
//! Other request directives (`max-age` above 0, `max-stale`, `min-fresh`,
//! `only-if-cached`, `no-transform`, extensions) are ignored: they would
//! only let a client accept more staleness than the policies allow, or ask
//! for behaviour no cached read here has. `CACHE_CLIENT_DIRECTIVES=false`
//! ignores the headers altogether ([`Cache::client_directives`]).

use axum::http::HeaderMap;
use axum::http::header::{CACHE_CONTROL, PRAGMA};

use super::Cache;

/// The directives of one request that the cache honours. The default is a
/// plain cached read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CacheDirectives {
    /// `no-cache`, `max-age=0` or `Pragma: no-cache`: skip every cache tier,
    /// load from the database, store the result (unless `no-store`).
    pub has_no_cache: bool,
    /// `no-store`: store nothing this request loads, in any tier.
    pub has_no_store: bool,
}

impl CacheDirectives {
    /// The directives in `headers`: every `Cache-Control` field (several
    /// fields are one comma-separated list), or `Pragma` when the request
    /// carries no `Cache-Control` directive (RFC 9111 §5.4). Costs two
    /// header lookups when neither header is present.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let mut directives = Self::default();
        let mut has_cache_control = false;
        for field in headers.get_all(CACHE_CONTROL) {
            for_each_directive(field.as_bytes(), |name, value| {
                has_cache_control = true;
                if name.eq_ignore_ascii_case(b"no-cache") {
                    // Only responses give `no-cache` a field list; in a
                    // request any form means "do not answer from a cache".
                    directives.has_no_cache = true;
                } else if name.eq_ignore_ascii_case(b"no-store") {
                    directives.has_no_store = true;
                } else if name.eq_ignore_ascii_case(b"max-age") && value.is_some_and(is_zero) {
                    // The client accepts nothing older than 0 s: only a
                    // fresh load will do.
                    directives.has_no_cache = true;
                }
            });
        }
        if !has_cache_control {
            for field in headers.get_all(PRAGMA) {
                for_each_directive(field.as_bytes(), |name, _| {
                    if name.eq_ignore_ascii_case(b"no-cache") {
                        directives.has_no_cache = true;
                    }
                });
            }
        }
        directives
    }

    /// Whether this is a plain cached read (nothing to honour).
    pub fn is_empty(self) -> bool {
        !self.has_no_cache && !self.has_no_store
    }
}

impl Cache {
    /// `sent` when client directives are honoured (`CACHE_CLIENT_DIRECTIVES`,
    /// the default), otherwise a plain cached read: a public deployment may
    /// not want any client to force database loads.
    pub fn client_directives(&self, sent: CacheDirectives) -> CacheDirectives {
        if self.inner.config.is_client_directives_enabled {
            sent
        } else {
            CacheDirectives::default()
        }
    }
}

/// Calls `each(name, value)` for every directive in one field value,
/// `1#( token [ "=" ( token / quoted-string ) ] )`: names as sent (compare
/// them case-insensitively), a quoted value without its quotes and with its
/// escapes left in. Commas inside quotes separate nothing; empty list
/// elements and names that are not tokens are skipped.
fn for_each_directive(field: &[u8], mut each: impl FnMut(&[u8], Option<&[u8]>)) {
    let mut rest = field;
    loop {
        rest = trim_start(rest);
        match rest.first() {
            None => return,
            Some(b',') => {
                rest = &rest[1..];
                continue;
            }
            Some(_) => {}
        }
        let name_end = rest
            .iter()
            .position(|&b| b == b'=' || b == b',')
            .unwrap_or(rest.len());
        let name = trim_end(&rest[..name_end]);
        rest = &rest[name_end..];
        let mut value = None;
        if rest.first() == Some(&b'=') {
            rest = trim_start(&rest[1..]);
            if rest.first() == Some(&b'"') {
                let end = closing_quote(rest);
                value = Some(&rest[1..end]);
                rest = &rest[(end + 1).min(rest.len())..];
                // Anything between the closing quote and the next comma is
                // malformed; skip it.
                let next = rest.iter().position(|&b| b == b',').unwrap_or(rest.len());
                rest = &rest[next..];
            } else {
                let end = rest.iter().position(|&b| b == b',').unwrap_or(rest.len());
                value = Some(trim_end(&rest[..end]));
                rest = &rest[end..];
            }
        }
        if !name.is_empty() && name.iter().all(|&b| is_tchar(b)) {
            each(name, value);
        }
    }
}

/// The index of the quote closing the quoted-string that starts at
/// `text[0]`, or `text.len()` when it is never closed.
fn closing_quote(text: &[u8]) -> usize {
    let mut i = 1;
    while i < text.len() {
        match text[i] {
            b'\\' => i += 2,
            b'"' => return i,
            _ => i += 1,
        }
    }
    text.len()
}

/// `delta-seconds` equal to 0 (`0`, `00`, …).
fn is_zero(value: &[u8]) -> bool {
    !value.is_empty() && value.iter().all(|&b| b == b'0')
}

/// RFC 9110 `tchar`: the characters of a token.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn trim_start(text: &[u8]) -> &[u8] {
    let start = text
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(text.len());
    &text[start..]
}

fn trim_end(text: &[u8]) -> &[u8] {
    let end = text
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(0, |i| i + 1);
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use proptest::prelude::*;

    fn parse(fields: &[(&'static str, &'static str)]) -> CacheDirectives {
        let mut headers = HeaderMap::new();
        for (name, value) in fields {
            headers.append(*name, HeaderValue::from_static(value));
        }
        CacheDirectives::from_headers(&headers)
    }

    const NO_CACHE: CacheDirectives = CacheDirectives {
        has_no_cache: true,
        has_no_store: false,
    };
    const NO_STORE: CacheDirectives = CacheDirectives {
        has_no_cache: false,
        has_no_store: true,
    };
    const BOTH: CacheDirectives = CacheDirectives {
        has_no_cache: true,
        has_no_store: true,
    };

    #[test]
    fn a_request_without_either_header_is_a_plain_read() {
        assert!(parse(&[]).is_empty());
        assert!(parse(&[("accept", "application/json")]).is_empty());
    }

    #[test]
    fn directive_names_are_case_insensitive_and_whitespace_is_ignored() {
        assert_eq!(parse(&[("cache-control", "no-cache")]), NO_CACHE);
        assert_eq!(parse(&[("cache-control", "No-Cache")]), NO_CACHE);
        assert_eq!(parse(&[("cache-control", "NO-STORE")]), NO_STORE);
        assert_eq!(parse(&[("cache-control", " no-cache ,\tno-store ")]), BOTH);
        assert_eq!(parse(&[("cache-control", "no-store,no-cache")]), BOTH);
        assert_eq!(parse(&[("cache-control", ",, no-store ,")]), NO_STORE);
    }

    #[test]
    fn several_fields_form_one_list() {
        assert_eq!(
            parse(&[("cache-control", "no-cache"), ("cache-control", "no-store")]),
            BOTH
        );
        assert_eq!(
            parse(&[
                ("cache-control", "max-stale"),
                ("cache-control", "no-store")
            ]),
            NO_STORE
        );
    }

    #[test]
    fn max_age_zero_means_no_cache_and_other_ages_mean_nothing() {
        assert_eq!(parse(&[("cache-control", "max-age=0")]), NO_CACHE);
        assert_eq!(parse(&[("cache-control", "MAX-AGE=00")]), NO_CACHE);
        assert_eq!(parse(&[("cache-control", "max-age=\"0\"")]), NO_CACHE);
        assert_eq!(parse(&[("cache-control", "max-age = 0")]), NO_CACHE);
        for other in [
            "max-age=5",
            "max-age=",
            "max-age",
            "max-age=-0",
            "max-age=0x",
        ] {
            assert!(parse(&[("cache-control", other)]).is_empty(), "{other}");
        }
    }

    #[test]
    fn values_and_quotes_do_not_leak_into_names() {
        // A comma inside quotes separates nothing.
        assert!(parse(&[("cache-control", "foo=\"a, no-store\", max-age=10")]).is_empty());
        assert!(parse(&[("cache-control", "foo=\"a \\\" no-cache, b\"")]).is_empty());
        // `no-cache` with a value (a response form) still means no-cache.
        assert_eq!(parse(&[("cache-control", "no-cache=\"x, y\"")]), NO_CACHE);
        assert_eq!(parse(&[("cache-control", "private, no-cache=x")]), NO_CACHE);
        // Similar names are other directives.
        for other in ["no-cache-please", "xno-cache", "no_store", "no cache"] {
            assert!(parse(&[("cache-control", other)]).is_empty(), "{other}");
        }
        // Unterminated quotes and junk after a quote end the directive.
        assert!(parse(&[("cache-control", "foo=\"no-store")]).is_empty());
        assert_eq!(
            parse(&[("cache-control", "foo=\"x\"junk, no-store")]),
            NO_STORE
        );
    }

    #[test]
    fn pragma_counts_only_without_cache_control() {
        assert_eq!(parse(&[("pragma", "no-cache")]), NO_CACHE);
        assert_eq!(parse(&[("pragma", "No-Cache")]), NO_CACHE);
        assert_eq!(parse(&[("pragma", "x-foo=1, no-cache")]), NO_CACHE);
        assert!(parse(&[("pragma", "no-store")]).is_empty(), "not a pragma");
        assert!(
            parse(&[("pragma", "no-cache"), ("cache-control", "max-stale")]).is_empty(),
            "Cache-Control wins"
        );
        assert_eq!(
            parse(&[("pragma", "no-cache"), ("cache-control", "")]),
            NO_CACHE,
            "an empty Cache-Control holds no directive"
        );
    }

    proptest! {
        #[test]
        fn any_field_value_parses_without_panicking(value in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut count = 0;
            for_each_directive(&value, |name, _| {
                assert!(!name.is_empty());
                count += 1;
            });
            prop_assert!(count <= value.len());
        }

        #[test]
        fn a_directive_after_a_comma_is_seen_whatever_precedes_it(prefix in "[a-z0-9=, \t-]{0,24}") {
            // (Without quotes: an open quote rightly swallows the rest.)
            let field = format!("{prefix}, no-store");
            let mut seen = false;
            for_each_directive(field.as_bytes(), |name, _| seen |= name == b"no-store");
            prop_assert!(seen, "{field}");
        }
    }
}
