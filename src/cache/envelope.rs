//! The stored value format: a value's bytes wrapped with what makes it
//! safe to serve. Binary, little-endian:
//!
//! ```text
//! byte 0        format of the payload (`codec`): as it is, lz4, zstd,
//!               or zstd with a dictionary
//! byte 1        n, the number of generations (one per tag of the entry)
//! 8 × n bytes   the generation token of each tag when the entry was filled
//! 8 bytes       logical expiry, unix ms
//! 4 bytes       how long the load took, ms
//! byte          r, the number of ranged tags, then for each:
//!   byte          its index among the entry's tags
//!   4 bytes       the length of its log when the fill started
//!   byte          k, the number of spans, then k × 24 bytes: low, high,
//!                 and where an absent value sits (three f64)
//! the rest      the payload (the value's JSON, compressed or not)
//! ```
//!
//! - generations: an entry depends on one or more invalidation tags (an
//!   anime on its own tag; a list on the tags of the fields it is ordered
//!   and filtered by). A read serves the entry only if every tag's
//!   generation key still holds the token recorded here; a write replaces
//!   the tokens of the tags it changed, so every entry that depends on one
//!   of them becomes a miss at once, and a lost (evicted) generation key
//!   can only cause misses.
//! - ranged tags (`ranged`): the entry also records what it covers of the
//!   values the tag's log speaks of, and stays valid while no change
//!   logged since its fill overlaps that.
//! - expiry: the Redis TTL is longer by the stale windows, so an expired
//!   value can still be served while revalidating or when the database
//!   fails.
//! - load time: for probabilistic early refresh (XFetch).
//!
//! Payloads are compressed where it pays (`codec`).

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use super::codec::{self, Codec, CodecError};
use super::ranged::Span;

/// Most tags an entry may depend on (the count is one byte).
pub const MAX_TAGS: usize = u8::MAX as usize;

/// A generation token: random, 63 bits. Stored in its generation key as a
/// decimal number, which Redis keeps as an integer (72 bytes a key
/// instead of 104 for 16 hex digits, by `MEMORY USAGE`).
pub type Generation = u64;

/// What an entry recorded of one of its ranged tags when it was filled.
#[derive(Clone, Debug, PartialEq)]
pub struct RangedStamp {
    /// The tag's index among the entry's tags.
    pub tag: u8,
    /// How long the tag's log was when the fill started: later changes are
    /// checked against `spans`.
    pub offset: u32,
    /// The values the entry covers (none recorded: any change drops it).
    pub spans: Vec<Span>,
}

/// What the cache needs to know about a stored value besides the value.
#[derive(Clone, Debug, PartialEq)]
pub struct Meta {
    /// The generation of each of the entry's tags, in the entry's tag
    /// order, when it was filled.
    pub generations: Vec<Generation>,
    /// What it covers of its ranged tags.
    pub ranges: Vec<RangedStamp>,
    /// Logical expiry, unix milliseconds.
    pub expires_at_ms: u64,
    /// Database load time in milliseconds.
    pub load_ms: u32,
}

/// Why stored bytes could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Too short, or an unknown format byte.
    #[error("malformed cache entry: {0}")]
    Malformed(&'static str),
    /// The payload could not be decompressed.
    #[error(transparent)]
    Payload(#[from] CodecError),
}

/// Wraps `payload` (already serialized) with `meta`, compressed by `codec`
/// where that pays.
pub fn wrap(meta: &Meta, payload: &[u8], codec: &Codec) -> Vec<u8> {
    let (format, body) = codec.encode(payload);
    let header = 2 + 8 * meta.generations.len() + 8 + 4;
    let mut out = Vec::with_capacity(header + body.len());
    out.push(format);
    // Callers never pass more than MAX_TAGS (QueryKey::is_storable);
    // saturate rather than wrap if one ever did, which makes the entry
    // unreadable (a miss), never wrong.
    out.push(u8::try_from(meta.generations.len()).unwrap_or(u8::MAX));
    for generation in &meta.generations {
        out.extend_from_slice(&generation.to_le_bytes());
    }
    out.extend_from_slice(&meta.expires_at_ms.to_le_bytes());
    out.extend_from_slice(&meta.load_ms.to_le_bytes());
    out.push(u8::try_from(meta.ranges.len()).unwrap_or(u8::MAX));
    for range in meta.ranges.iter().take(usize::from(u8::MAX)) {
        out.push(range.tag);
        out.extend_from_slice(&range.offset.to_le_bytes());
        out.push(u8::try_from(range.spans.len()).unwrap_or(u8::MAX));
        for span in range.spans.iter().take(usize::from(u8::MAX)) {
            for value in [span.lo, span.hi, span.none_at] {
                out.extend_from_slice(&value.to_le_bytes());
            }
        }
    }
    out.extend_from_slice(&body);
    out
}

/// Reads `bytes` back: the meta and the payload (decompressed if it was).
pub fn unwrap(bytes: &[u8]) -> Result<(Meta, Cow<'_, [u8]>), DecodeError> {
    let (&format, rest) = bytes.split_first().ok_or(DecodeError::Malformed("empty"))?;
    let (&count, mut rest) = rest
        .split_first()
        .ok_or(DecodeError::Malformed("no generation count"))?;
    let mut take = |n: usize| -> Result<&[u8], DecodeError> {
        if rest.len() < n {
            return Err(DecodeError::Malformed("truncated header"));
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let mut generations = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        generations.push(u64::from_le_bytes(array(take(8)?)));
    }
    let expires_at_ms = u64::from_le_bytes(array(take(8)?));
    let load_ms = u32::from_le_bytes(array(take(4)?));
    let ranged = take(1)?[0];
    let mut ranges = Vec::with_capacity(usize::from(ranged));
    for _ in 0..ranged {
        let tag = take(1)?[0];
        let offset = u32::from_le_bytes(array(take(4)?));
        let count = take(1)?[0];
        let mut spans = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let lo = f64::from_le_bytes(array(take(8)?));
            let hi = f64::from_le_bytes(array(take(8)?));
            let none_at = f64::from_le_bytes(array(take(8)?));
            spans.push(Span { lo, hi, none_at });
        }
        ranges.push(RangedStamp { tag, offset, spans });
    }
    let payload = codec::decode(format, rest)?;
    Ok((
        Meta {
            generations,
            ranges,
            expires_at_ms,
            load_ms,
        },
        payload,
    ))
}

fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

/// A fresh random generation token.
pub fn new_generation() -> Generation {
    rand::random::<u64>() >> 1
}

/// A generation as its key stores it: decimal.
pub fn generation_text(generation: Generation) -> String {
    generation.to_string()
}

/// A generation key's value read back; `None` for anything that is not a
/// decimal number (never written by us: treated as absent).
pub fn parse_generation(text: &[u8]) -> Option<Generation> {
    if text.is_empty() || text.len() > 20 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// Now, in unix milliseconds (shared across instances, unlike `Instant`).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::codec::{Compression, PLAIN};

    fn meta(generations: Vec<u64>) -> Meta {
        Meta {
            generations,
            ranges: Vec::new(),
            expires_at_ms: 1_700_000_000_000,
            load_ms: 3,
        }
    }

    #[test]
    fn ranged_stamps_read_back() {
        let mut meta = meta(vec![1, 2]);
        meta.ranges = vec![RangedStamp {
            tag: 1,
            offset: 37,
            spans: vec![Span::between(8.5, 9.5, f64::NEG_INFINITY)],
        }];
        let bytes = wrap(&meta, b"[1]", &Codec::new(Compression::Zstd));
        assert_eq!(unwrap(&bytes).expect("valid").0, meta);
    }

    #[test]
    fn wrapped_values_read_back() {
        let meta = meta(vec![new_generation(), 7]);
        let bytes = wrap(&meta, br#"[1,2,3]"#, &Codec::new(Compression::Zstd));
        let (read, payload) = unwrap(&bytes).expect("valid");
        assert_eq!(read, meta);
        assert_eq!(&*payload, br#"[1,2,3]"#);
        assert_eq!(bytes[0], PLAIN, "short payloads are not compressed");
    }

    #[test]
    fn long_payloads_are_compressed_and_read_back() {
        let text = "In Kyoto, a girl finds a door that opens on the sea. ".repeat(20);
        let payload = serde_json::to_vec(&text).expect("json");
        for mode in [Compression::Lz4, Compression::Zstd] {
            let bytes = wrap(&meta(vec![1]), &payload, &Codec::new(mode));
            assert_ne!(bytes[0], PLAIN);
            assert!(bytes.len() < payload.len() / 2, "{} bytes", bytes.len());
            let (_, read) = unwrap(&bytes).expect("valid");
            assert_eq!(&*read, payload.as_slice());
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            &[1][..],
            &[1, 2, 0, 0][..],
            &[9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0][..],
            &[2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff][..],
            &[3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff][..],
            &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0][..],
            br#"{"g":"00","e":1,"d":1,"v":1}"#,
        ] {
            assert!(unwrap(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn generations_round_trip_as_decimal_below_2_63() {
        for _ in 0..100 {
            let generation = new_generation();
            assert!(generation < 1 << 63);
            let text = generation_text(generation);
            assert_eq!(parse_generation(text.as_bytes()), Some(generation));
        }
        assert_eq!(parse_generation(b"xyz"), None);
        assert_eq!(parse_generation(b""), None);
        assert_eq!(parse_generation(b"-1"), None);
        assert_eq!(parse_generation(b"99999999999999999999999"), None);
    }
}
