//! The stored value format: a value's bytes wrapped with what makes it
//! safe to serve. Binary, little-endian:
//!
//! ```text
//! byte 0        format: 1 = payload as it is, 2 = payload lz4-compressed
//! byte 1        n, the number of generations (one per tag of the entry)
//! 8 × n bytes   the generation token of each tag when the entry was filled
//! 8 bytes       logical expiry, unix ms
//! 4 bytes       how long the load took, ms
//! the rest      the payload (the value's JSON, or its lz4 block)
//! ```
//!
//! - generations: an entry depends on one or more invalidation tags (an
//!   anime on its own tag; a list on the tags of the fields it is ordered
//!   and filtered by). A read serves the entry only if every tag's
//!   generation key still holds the token recorded here; a write replaces
//!   the tokens of the tags it changed, so every entry that depends on one
//!   of them becomes a miss at once, and a lost (evicted) generation key
//!   can only cause misses.
//! - expiry: the Redis TTL is longer by the stale windows, so an expired
//!   value can still be served while revalidating or when the database
//!   fails.
//! - load time: for probabilistic early refresh (XFetch).
//!
//! Payloads of at least [`COMPRESS_MIN_BYTES`] are compressed with lz4
//! when that saves at least [`COMPRESS_MIN_SAVING`] of them (see
//! `docs/performance.md`, "Memory": a cached anime's JSON shrinks to
//! well under half).

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

/// Format byte: the payload follows as it is.
const PLAIN: u8 = 1;
/// Format byte: the payload is an lz4 block with its length prepended.
const LZ4: u8 = 2;

/// Payloads shorter than this are stored as they are: below it lz4 saves
/// little, and the header it needs eats most of that.
pub const COMPRESS_MIN_BYTES: usize = 256;

/// A compressed payload is kept only if it is at least this fraction
/// smaller than the plain one (otherwise decoding it would cost time for
/// nothing).
pub const COMPRESS_MIN_SAVING: f64 = 0.1;

/// Most tags an entry may depend on (the count is one byte).
pub const MAX_TAGS: usize = u8::MAX as usize;

/// A generation token: random, 64 bits. Stored in its generation key as 16
/// lowercase hex digits.
pub type Generation = u64;

/// What the cache needs to know about a stored value besides the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    /// The generation of each of the entry's tags, in the entry's tag
    /// order, when it was filled.
    pub generations: Vec<Generation>,
    /// Logical expiry, unix milliseconds.
    pub expires_at_ms: u64,
    /// Database load time in milliseconds.
    pub load_ms: u32,
}

/// Why stored bytes could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Too short, an unknown format byte, or a bad compressed block.
    #[error("malformed cache entry: {0}")]
    Malformed(&'static str),
}

/// Wraps `payload` (already serialized) with `meta`, compressing it where
/// that pays.
pub fn wrap(meta: &Meta, payload: &[u8]) -> Vec<u8> {
    let header = 2 + 8 * meta.generations.len() + 8 + 4;
    let compressed = (payload.len() >= COMPRESS_MIN_BYTES)
        .then(|| lz4_flex::compress_prepend_size(payload))
        .filter(|packed| {
            (packed.len() as f64) <= payload.len() as f64 * (1.0 - COMPRESS_MIN_SAVING)
        });
    let (format, body) = match &compressed {
        Some(packed) => (LZ4, packed.as_slice()),
        None => (PLAIN, payload),
    };
    let mut out = Vec::with_capacity(header + body.len());
    out.push(format);
    // Callers never pass more than MAX_TAGS (QueryKey checks); saturate
    // rather than wrap if one ever did, which makes the entry unreadable
    // (a miss), never wrong.
    out.push(u8::try_from(meta.generations.len()).unwrap_or(u8::MAX));
    for generation in &meta.generations {
        out.extend_from_slice(&generation.to_le_bytes());
    }
    out.extend_from_slice(&meta.expires_at_ms.to_le_bytes());
    out.extend_from_slice(&meta.load_ms.to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// Reads `bytes` back: the meta and the payload (decompressed if it was).
pub fn unwrap(bytes: &[u8]) -> Result<(Meta, Cow<'_, [u8]>), DecodeError> {
    let (&format, rest) = bytes
        .split_first()
        .ok_or(DecodeError::Malformed("empty"))?;
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
    let payload = match format {
        PLAIN => Cow::Borrowed(rest),
        LZ4 => Cow::Owned(
            lz4_flex::decompress_size_prepended(rest)
                .map_err(|_| DecodeError::Malformed("bad lz4 block"))?,
        ),
        _ => return Err(DecodeError::Malformed("unknown format")),
    };
    Ok((
        Meta {
            generations,
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
    rand::random::<u64>()
}

/// A generation as its key stores it: 16 lowercase hex digits.
pub fn generation_text(generation: Generation) -> String {
    format!("{generation:016x}")
}

/// A generation key's value read back; `None` for anything that is not 16
/// hex digits (never written by us: treated as absent).
pub fn parse_generation(text: &[u8]) -> Option<Generation> {
    if text.len() != 16 {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(text).ok()?, 16).ok()
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

    fn meta(generations: Vec<u64>) -> Meta {
        Meta {
            generations,
            expires_at_ms: 1_700_000_000_000,
            load_ms: 3,
        }
    }

    #[test]
    fn wrapped_values_read_back() {
        let meta = meta(vec![new_generation(), 7]);
        let bytes = wrap(&meta, br#"[1,2,3]"#);
        let (read, payload) = unwrap(&bytes).expect("valid");
        assert_eq!(read, meta);
        assert_eq!(&*payload, br#"[1,2,3]"#);
        assert_eq!(bytes[0], PLAIN, "short payloads are not compressed");
    }

    #[test]
    fn long_payloads_are_compressed_and_read_back() {
        let text = "In Kyoto, a girl finds a door that opens on the sea. ".repeat(20);
        let payload = serde_json::to_vec(&text).expect("json");
        let bytes = wrap(&meta(vec![1]), &payload);
        assert_eq!(bytes[0], LZ4);
        assert!(bytes.len() < payload.len() / 2, "{} bytes", bytes.len());
        let (_, read) = unwrap(&bytes).expect("valid");
        assert_eq!(&*read, payload.as_slice());
    }

    #[test]
    fn incompressible_payloads_stay_plain() {
        let noise: Vec<u8> = (0..600).map(|_| rand::random::<u8>()).collect();
        let bytes = wrap(&meta(vec![]), &noise);
        assert_eq!(bytes[0], PLAIN);
        assert_eq!(&*unwrap(&bytes).expect("valid").1, noise.as_slice());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            &[1][..],
            &[1, 2, 0, 0][..],
            &[9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0][..],
            &[2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff][..],
            br#"{"g":"00","e":1,"d":1,"v":1}"#,
        ] {
            assert!(unwrap(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn generations_round_trip_as_hex() {
        let generation = new_generation();
        let text = generation_text(generation);
        assert_eq!(text.len(), 16);
        assert_eq!(parse_generation(text.as_bytes()), Some(generation));
        assert_eq!(parse_generation(b"xyz"), None);
        assert_eq!(parse_generation(b"0123456789abcdeg"), None);
    }
}
