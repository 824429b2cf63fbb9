//! The only code that formats cache keys:
//! `{namespace}:{version}:{prefix}:{params}`, e.g.
//! `anigo:v4:popular:limit=20`.
//!
//! The namespace (`CACHE_NAMESPACE`, default `anigo`) keeps our keys apart
//! from anything else in the same Redis. [`VALUE_VERSION`] changes whenever
//! the stored JSON's shape changes, so a deploy never reads entries written
//! by an older build. Parameters come in a fixed order.

use super::policy::Resolver;

/// Version of the stored value format. Bump it when a cached type's JSON
/// shape changes (a field added, renamed or retyped). v2: values wrapped
/// in the generation envelope (`envelope.rs`). v3: anime are
/// `{"anime": {row}, "genres": [names]}` (`db::AnimeRecord`; genres are
/// rows of their own) and the row has `title_original` and `age_rating`.
/// v4: the binary envelope with one generation per tag and lz4 payloads
/// (`envelope.rs`); anime are entities (the row alone) and lists hold ids.
pub const VALUE_VERSION: &str = "v4";

/// Default namespace.
pub const DEFAULT_NAMESPACE: &str = "anigo";

/// Builds keys for one namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySpace {
    /// `{namespace}:{version}:`, computed once.
    versioned_prefix: String,
    namespace: String,
}

impl KeySpace {
    /// A key space for `namespace`, which must pass [`is_valid_namespace`].
    pub fn new(namespace: &str) -> Self {
        Self {
            versioned_prefix: format!("{namespace}:{VALUE_VERSION}:"),
            namespace: namespace.to_owned(),
        }
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The key for `resolver` with `params` (already in fixed order).
    pub fn key(&self, resolver: Resolver, params: &str) -> String {
        let prefix = resolver.prefix();
        let mut key =
            String::with_capacity(self.versioned_prefix.len() + prefix.len() + params.len() + 1);
        key.push_str(&self.versioned_prefix);
        key.push_str(prefix);
        key.push(':');
        key.push_str(params);
        key
    }
}

impl KeySpace {
    /// The key holding the current generation token of `tag`.
    pub fn generation_key(&self, tag: &str) -> String {
        format!("{}gen:{tag}", self.versioned_prefix)
    }

    /// The lease key guarding the fill of `key` across instances.
    pub fn lease_key(&self, key: &str) -> String {
        let rest = key
            .strip_prefix(self.versioned_prefix.as_str())
            .unwrap_or(key);
        format!("{}lease:{rest}", self.versioned_prefix)
    }

    /// The counter of entries of `resolver` written in budget window
    /// `window` (`cache::admission`).
    pub fn admission_key(&self, resolver: Resolver, window: u64) -> String {
        format!(
            "{}admitted:{}:{window}",
            self.versioned_prefix,
            resolver.prefix()
        )
    }

    /// The key holding the text of an automatic persisted query, by the
    /// hex SHA-256 of that text.
    pub fn persisted_query_key(&self, sha256_hex: &str) -> String {
        format!("{}apq:{sha256_hex}", self.versioned_prefix)
    }

    /// The key holding compression dictionary `id` (`cache::dictionary`).
    pub fn dictionary_key(&self, id: u32) -> String {
        format!("{}dict:{id:08x}", self.versioned_prefix)
    }

    /// The key naming the dictionary new values are compressed with.
    pub fn current_dictionary_key(&self) -> String {
        format!("{}dict:current", self.versioned_prefix)
    }

    /// The pub/sub channel carrying invalidations between instances.
    pub fn invalidation_channel(&self) -> String {
        format!("{}:invalidate", self.namespace)
    }

    /// The pub/sub channel on which instances acknowledge invalidations.
    pub fn acknowledgement_channel(&self) -> String {
        format!("{}:invalidate:ack", self.namespace)
    }

    /// SCAN pattern for every key of this namespace, all versions.
    pub fn namespace_pattern(&self) -> String {
        format!("{}:*", self.namespace)
    }

    /// `{namespace}:{version}:`, the start of every current key.
    pub fn versioned_prefix(&self) -> &str {
        &self.versioned_prefix
    }

    /// Turns an operator's pattern, relative to `{namespace}:{version}:`,
    /// into the SCAN pattern. The result always starts with that literal
    /// prefix, so no pattern can match keys outside it; patterns that look
    /// like an attempt to (`..`, `/`, escapes) or that repeat the prefix
    /// are refused with a message saying what to send instead.
    pub fn scoped_pattern(&self, relative: &str) -> Result<String, String> {
        let pattern = relative.trim();
        if pattern.is_empty() {
            return Err(format!(
                "pattern must not be empty: send e.g. \"popular:*\" (relative to {}), \"*\" for every current key, or use clearAllCache",
                self.versioned_prefix
            ));
        }
        if pattern.len() > MAX_PATTERN_LEN {
            return Err(format!(
                "pattern is longer than {MAX_PATTERN_LEN} characters"
            ));
        }
        if pattern.contains("..") || !pattern.bytes().all(is_pattern_byte) {
            return Err(
                "pattern may contain only letters, digits and _ - . : = * ? (no '..', '/', '\\', spaces or brackets); it is always relative to the service's namespace"
                    .to_owned(),
            );
        }
        if pattern.starts_with(&format!("{}:", self.namespace)) {
            return Err(format!(
                "patterns are relative to {}: drop that prefix (e.g. \"popular:*\")",
                self.versioned_prefix
            ));
        }
        Ok(format!("{}{pattern}", self.versioned_prefix))
    }
}

/// Longest accepted clear pattern.
const MAX_PATTERN_LEN: usize = 200;

fn is_pattern_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'=' | b'*' | b'?')
}

/// Namespaces are short identifiers: they appear in every key and in
/// SCAN patterns, so glob characters and the `:` separator are refused.
pub fn is_valid_namespace(namespace: &str) -> bool {
    (1..=64).contains(&namespace.len())
        && namespace
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_documented_format() {
        let keys = KeySpace::new("anigo");
        assert_eq!(
            keys.key(Resolver::PopularAnime, "limit=20"),
            "anigo:v4:popular:limit=20"
        );
        assert_eq!(
            keys.key(Resolver::AnimePage, "page=3:per_page=20"),
            "anigo:v4:anime_paginated:page=3:per_page=20"
        );
        assert_eq!(
            keys.key(Resolver::AnimeCount, "all"),
            "anigo:v4:anime_count:all"
        );
    }

    #[test]
    fn patterns_stay_inside_the_namespace_and_version() {
        let keys = KeySpace::new("anigo");
        assert_eq!(
            keys.scoped_pattern("popular:*").as_deref(),
            Ok("anigo:v4:popular:*")
        );
        assert_eq!(keys.scoped_pattern("*").as_deref(), Ok("anigo:v4:*"));
        assert_eq!(
            keys.scoped_pattern("*:*:*").as_deref(),
            Ok("anigo:v4:*:*:*")
        );
        for bad in [
            "",
            "  ",
            "../*",
            "popular/*",
            "a\\*",
            "[a-z]*",
            "anigo:v4:popular:*",
            "x y",
            "é*",
        ] {
            assert!(keys.scoped_pattern(bad).is_err(), "{bad:?} accepted");
        }
        assert!(keys.scoped_pattern(&"a".repeat(201)).is_err());
    }

    #[test]
    fn namespaces_reject_glob_and_separator_characters() {
        assert!(is_valid_namespace("anigo"));
        assert!(is_valid_namespace("anigo-test_1.x"));
        for bad in ["", "a:b", "a*", "a?", "a[b]", "a b", "ä"] {
            assert!(!is_valid_namespace(bad), "{bad:?} accepted");
        }
    }
}
