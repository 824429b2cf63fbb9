//! The only code that formats cache keys:
//! `{namespace}:{version}:{prefix}:{params}`, e.g.
//! `anigo:v1:popular:limit=20`.
//!
//! The namespace (`CACHE_NAMESPACE`, default `anigo`) keeps our keys apart
//! from anything else in the same Redis. [`VALUE_VERSION`] changes whenever
//! the stored JSON's shape changes, so a deploy never reads entries written
//! by an older build. Parameters come in a fixed order.

use super::policy::Resolver;

/// Version of the stored value format. Bump it when a cached type's JSON
/// shape changes (a field added, renamed or retyped).
pub const VALUE_VERSION: &str = "v1";

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
            "anigo:v1:popular:limit=20"
        );
        assert_eq!(
            keys.key(Resolver::AnimePage, "page=3:per_page=20"),
            "anigo:v1:anime_paginated:page=3:per_page=20"
        );
        assert_eq!(
            keys.key(Resolver::AnimeCount, "all"),
            "anigo:v1:anime_count:all"
        );
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
