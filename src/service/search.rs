//! Title search through the cache: `searchAnime(query, limit)`.
//!
//! A search text is checked and normalized once, here ([`SearchText`]),
//! before it reaches a key or the database: so `"  FOO   bar "` and
//! `"foo bar"` are one search, one key and one entry.
//!
//! # Validation
//!
//! - at most [`MAX_RAW_BYTES`] bytes as sent (nothing larger is even
//!   normalized);
//! - no control characters, except tab, line feed and carriage return,
//!   which are whitespace a pasted text may hold and are normalized like
//!   spaces; every other C0 control (U+0000 to U+001F), DEL (U+007F) and
//!   the C1 controls (U+0080 to U+009F, NEL included) are refused;
//! - after normalization (`db::anime_query::normalize_search`: trimmed,
//!   whitespace runs made one space, lowercased) 1 to [`MAX_CHARS`]
//!   characters, counted as Unicode scalar values (Rust `char`s), so a
//!   text of only whitespace is refused.
//!
//! Each failure is a `BAD_USER_INPUT` naming `query`.
//!
//! # Key
//!
//! `anime_search:q={text}:limit={limit}`. The normalized text keeps
//! `a-z` and `0-9`, writes a space as `+` and every other byte of its
//! UTF-8 as `%XX` (upper-case hex): `q=sora+no+kanata`,
//! `q=a%3Ab%2A%3F%5Bx%5D`, `q=%E3%81%AE`. So no client byte outside
//! `[a-z0-9]` reaches the key as itself (no `:`, `*`, `?`, `[`, `]`,
//! spaces or controls), and the encoding is injective. When the encoded
//! text is longer than [`MAX_KEY_TEXT`] bytes, the key keeps its first
//! [`KEY_PREFIX_TEXT`] bytes (whole escapes only) for readability, then `~`
//! and the first 32 hex digits (128 bits) of the SHA-256 of the normalized
//! text: `q=…~3f2a…`. Every key is thus at most about 150 bytes long.
//!
//! # Caching
//!
//! A result holds ids (the anime are entities of their own) and depends on
//! the `search` tag (`service::tags`): title changes, creates and deletes
//! drop every search; other edits reach results through the entities. Search keys are free client input, so their misses
//! pass the cache's admission (`cache::admission`): stored the second time a
//! text misses, and only within the `CACHE_SEARCH_MAX_ENTRIES` budget.

use sha2::{Digest as _, Sha256};

use crate::cache::admission::Admission;
use crate::cache::{CachedQuery, Resolver};
use crate::db::AnimeRepo;
use crate::db::anime_query::normalize_search;
use crate::error::{AppError, Result};

use super::AnimeService;
use super::tags::InvalidationPolicy;

/// Longest search text accepted as sent, in bytes.
pub const MAX_RAW_BYTES: usize = 1_024;

/// Longest normalized search text, in characters (Unicode scalar values).
pub const MAX_CHARS: usize = 100;

/// Longest encoded text kept whole in a key, in bytes.
pub const MAX_KEY_TEXT: usize = 120;

/// Bytes of the encoded text a key keeps before the hash of a longer one.
pub const KEY_PREFIX_TEXT: usize = 80;

/// A checked, normalized search text (module doc).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SearchText(String);

impl SearchText {
    /// Checks and normalizes `raw` (module doc); a `BAD_USER_INPUT` naming
    /// `query` when it is refused.
    pub fn parse(raw: &str) -> Result<Self> {
        if raw.len() > MAX_RAW_BYTES {
            return Err(AppError::bad_input(
                "query",
                format!(
                    "query must be at most {MAX_CHARS} characters (got {} bytes)",
                    raw.len()
                ),
            ));
        }
        if let Some(control) = raw
            .chars()
            .find(|&c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        {
            return Err(AppError::bad_input(
                "query",
                format!(
                    "query must not contain control characters (found U+{:04X})",
                    u32::from(control)
                ),
            ));
        }
        let Some(text) = normalize_search(raw) else {
            return Err(AppError::bad_input(
                "query",
                "query must contain at least one character other than whitespace",
            ));
        };
        let chars = text.chars().count();
        if chars > MAX_CHARS {
            return Err(AppError::bad_input(
                "query",
                format!(
                    "query must be at most {MAX_CHARS} characters after trimming and collapsing spaces (got {chars})"
                ),
            ));
        }
        Ok(Self(text))
    }

    /// The normalized text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text as it appears in a key (module doc).
    pub fn key_text(&self) -> String {
        let encoded = encode(&self.0);
        if encoded.len() <= MAX_KEY_TEXT {
            return encoded;
        }
        // Cut before an escape that would not fit whole.
        let mut cut = KEY_PREFIX_TEXT;
        while let Some(at) = encoded[..cut].rfind('%') {
            if cut - at >= 3 {
                break;
            }
            cut = at;
        }
        let digest = Sha256::digest(self.0.as_bytes());
        format!(
            "{}~{}",
            &encoded[..cut],
            crate::cache::response::hex(&digest[..16])
        )
    }
}

/// `text` with everything but `a-z`, `0-9` escaped: a space as `+`, any
/// other byte as `%XX`.
fn encode(text: &str) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'a'..=b'z' | b'0'..=b'9' => out.push(char::from(byte)),
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(char::from(DIGITS[usize::from(byte >> 4)]));
                out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
            }
        }
    }
    out
}

/// `searchAnime(query, limit)`: up to `limit` anime whose title, English or
/// original title contains the text, most relevant first, then most
/// popular, then by id (`db::anime_query`).
pub struct SearchAnime {
    repo: AnimeRepo,
    policy: InvalidationPolicy,
    text: SearchText,
    limit: u64,
}

impl CachedQuery for SearchAnime {
    type Output = Vec<i32>;
    const RESOLVER: Resolver = Resolver::AnimeSearch;
    const ADMISSION: Admission = Admission::Bounded;

    fn params(&self) -> String {
        format!("q={}:limit={}", self.text.key_text(), self.limit)
    }

    fn tags(&self) -> Vec<String> {
        self.policy.search()
    }

    async fn load(&self) -> Result<Self::Output> {
        self.repo.search_ids(self.text.as_str(), self.limit).await
    }
}

impl AnimeService {
    /// Up to `limit` anime matching `text`, most relevant first.
    pub fn search(&self, text: SearchText, limit: u64) -> SearchAnime {
        SearchAnime {
            repo: self.repo.clone(),
            policy: self.policy,
            text,
            limit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_and_message(raw: &str) -> String {
        match SearchText::parse(raw) {
            Ok(text) => panic!("{raw:?} accepted as {text:?}"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn texts_are_trimmed_collapsed_and_lowercased() {
        let a = SearchText::parse("  FOO   bar ").expect("valid");
        let b = SearchText::parse("foo bar").expect("valid");
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "foo bar");
        // Tabs and newlines are whitespace, not refused controls.
        let c = SearchText::parse("foo\t\r\nBAR").expect("valid");
        assert_eq!(c, a);
    }

    #[test]
    fn controls_blank_and_long_texts_are_refused() {
        for raw in ["a\u{0}b", "a\u{1b}[31m", "a\u{7f}", "a\u{85}b", "\u{9f}"] {
            let message = code_and_message(raw);
            assert!(message.contains("control characters"), "{raw:?}: {message}");
            assert!(message.starts_with("query"), "{message}");
        }
        for raw in ["", "   ", "\t\n"] {
            assert!(code_and_message(raw).contains("other than whitespace"));
        }
        assert!(SearchText::parse(&"a".repeat(MAX_CHARS)).is_ok());
        // Counted after collapsing: 100 characters plus spaces around.
        assert!(SearchText::parse(&format!("   {}   ", "a".repeat(MAX_CHARS))).is_ok());
        let message = code_and_message(&"a".repeat(MAX_CHARS + 1));
        assert!(message.contains("(got 101)"), "{message}");
        // Characters, not bytes: 100 kana are 300 bytes.
        assert!(SearchText::parse(&"の".repeat(MAX_CHARS)).is_ok());
        assert!(code_and_message(&"の".repeat(MAX_CHARS + 1)).contains("(got 101)"));
        let message = code_and_message(&" ".repeat(MAX_RAW_BYTES + 1));
        assert!(message.contains("bytes"), "{message}");
        assert!(message.len() < 120);
    }

    #[test]
    fn keys_hold_only_safe_bytes_and_stay_short() {
        let key = |raw: &str| SearchText::parse(raw).expect("valid").key_text();
        assert_eq!(key("Sora no  Kanata"), "sora+no+kanata");
        assert_eq!(key("a:b*?[x]"), "a%3Ab%2A%3F%5Bx%5D");
        assert_eq!(key("の"), "%E3%81%AE");
        assert_eq!(key("100%+"), "100%25%2B");
        for raw in [
            "a:b*?[x]",
            "の".repeat(100).as_str(),
            "x%".repeat(50).as_str(),
            "\u{202e}evil\u{200b}",
        ] {
            let text = key(raw);
            assert!(text.len() <= KEY_PREFIX_TEXT + 1 + 32, "{text}");
            assert!(
                text.bytes().all(|b| b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'%' | b'+' | b'~' | b'A'..=b'F')),
                "{text}"
            );
        }
        let long = key(&"の".repeat(100));
        let (prefix, hash) = long.split_once('~').expect("hashed");
        assert!(prefix.starts_with("%E3%81%AE"), "{prefix}");
        assert_eq!(prefix.len() % 3, 0, "whole escapes only: {prefix}");
        assert_eq!(hash.len(), 32);
        // Distinct long texts with one prefix get distinct keys.
        assert_ne!(
            key(&format!("{}a", "の".repeat(99))),
            key(&format!("{}b", "の".repeat(99)))
        );
        // Short texts are kept whole.
        assert!(!key(&"a".repeat(100)).contains('~'));
    }
}
