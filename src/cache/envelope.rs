//! The stored value format: the value's JSON wrapped with what makes it safe
//! to serve.
//!
//! `{"g":"<generation>","e":<expires unix ms>,"d":<load ms>,"v":<value>}`
//!
//! - `g`: the generation token of the entry's tag when it was filled. A read
//!   serves the entry only if the tag's generation key still holds this token;
//!   a write replaces the token, so every older entry becomes a miss at once,
//!   and a lost (evicted) generation key can only cause misses.
//! - `e`: logical expiry. The Redis TTL is longer by the stale windows, so an
//!   expired value can still be served while revalidating or when the
//!   database fails.
//! - `d`: how long the load took, for probabilistic early refresh (XFetch).

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;

/// What the cache needs to know about a stored value besides the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    /// Generation token the value was filled under.
    pub generation: String,
    /// Logical expiry, unix milliseconds.
    pub expires_at_ms: u64,
    /// Database load time in milliseconds.
    pub load_ms: u32,
}

/// The envelope as read back; `v` stays typed by the caller.
#[derive(Deserialize)]
pub(crate) struct Envelope<T> {
    pub(crate) g: String,
    pub(crate) e: u64,
    pub(crate) d: u32,
    pub(crate) v: T,
}

impl<T> Envelope<T> {
    pub(crate) fn split(self) -> (Meta, T) {
        (
            Meta {
                generation: self.g,
                expires_at_ms: self.e,
                load_ms: self.d,
            },
            self.v,
        )
    }
}

/// Wraps already-serialized value JSON without re-serializing it.
pub fn wrap(meta: &Meta, value_json: &[u8]) -> Vec<u8> {
    // The generation token is hex, so it needs no JSON escaping.
    let head = format!(
        "{{\"g\":\"{}\",\"e\":{},\"d\":{},\"v\":",
        meta.generation, meta.expires_at_ms, meta.load_ms
    );
    let mut out = Vec::with_capacity(head.len() + value_json.len() + 1);
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(value_json);
    out.push(b'}');
    out
}

/// A fresh random generation token (64 bits, hex).
pub fn new_generation() -> String {
    format!("{:016x}", rand::random::<u64>())
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

    #[test]
    fn wrapped_values_read_back() {
        let meta = Meta {
            generation: new_generation(),
            expires_at_ms: 1_700_000_000_000,
            load_ms: 3,
        };
        let bytes = wrap(&meta, br#"[1,2,3]"#);
        let envelope: Envelope<Vec<u32>> = serde_json::from_slice(&bytes).expect("valid JSON");
        let (read, value) = envelope.split();
        assert_eq!(read, meta);
        assert_eq!(value, vec![1, 2, 3]);
    }
}
