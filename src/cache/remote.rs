//! The Redis tier of the cache: entries and the generations of their tags,
//! read and written in batches. It knows the key space and the envelope;
//! it knows nothing of fills, the in-process tiers or the pub/sub bus.
//!
//! A lookup is one MGET of the entries and the generation keys of all
//! their tags (on a cluster, one MGET per hash slot, pipelined: see
//! `redis`). An entry is served only if every one of its tags' generations
//! is still the one it was filled under.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fred::types::{Key, Value};

use super::codec::Codec;
use super::deps::Tag;
use super::envelope::{
    self, Generation, Meta, RangedStamp, generation_text, now_ms, parse_generation,
};
use super::key::KeySpace;
use super::query::{QueryKey, SharedValue};
use super::ranged::{self, Log};
use crate::redis::{Op, RedisStore};

/// Generation keys live a day and are refreshed by every write-back that
/// uses them; if one still expires or is evicted, its entries become
/// misses.
pub const GENERATION_TTL: Duration = Duration::from_secs(24 * 3600);

/// How a Redis entry looked at lookup time.
pub(super) enum Found {
    /// Valid and before its logical expiry (with the length of its JSON).
    Fresh(SharedValue, Meta, usize),
    /// Valid, expired less than the stale-while-revalidate window ago.
    Revalidate(SharedValue),
    /// Valid but expired longer ago; kept as a stale-if-error fallback.
    Expired(SharedValue, Meta),
    /// Absent, invalidated or undecodable.
    Missing,
}

/// A tag's state as its generation key holds it: the token, and for a
/// ranged tag the log of changes after it (`cache::ranged`).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct TagState {
    pub(super) token: Generation,
    pub(super) log: Option<Arc<[u8]>>,
}

impl TagState {
    /// Parses the value of the generation key of `tag` (`None`: absent, or
    /// not in the tag's format).
    pub(super) fn parse(tag: &str, value: &[u8]) -> Option<Self> {
        if ranged::is_ranged(tag) {
            let log = Log::parse(value)?;
            Some(Self {
                token: log.token,
                log: Some(Arc::from(log.entries)),
            })
        } else {
            Some(Self {
                token: parse_generation(value)?,
                log: None,
            })
        }
    }

    /// For a ranged tag, the length of its log now: where a fill starting
    /// now records its changes start.
    pub(super) fn offset(&self) -> u32 {
        self.log
            .as_ref()
            .map_or(0, |log| u32::try_from(log.len()).unwrap_or(u32::MAX))
    }

    /// Whether an entry stamped with `token` (and, for a ranged tag, with
    /// `stamp`) is still valid under this state.
    pub(super) fn admits(&self, token: Generation, stamp: Option<&RangedStamp>) -> bool {
        if self.token != token {
            return false;
        }
        match (&self.log, stamp) {
            (None, None) => true,
            (Some(log), Some(stamp)) => self
                .changes_since(log, stamp.offset)
                .is_some_and(|changes| ranged::survives(&stamp.spans, &changes)),
            // A ranged tag without a stamp, or a stamp for a plain tag:
            // written under another format.
            _ => false,
        }
    }

    fn changes_since(&self, log: &[u8], offset: u32) -> Option<Vec<ranged::Change>> {
        Log {
            token: self.token,
            entries: log,
        }
        .changes_since(offset)
    }
}

/// One key's lookup: what was found, and the current state of each of its
/// tags (`None`: absent), which a fill of it commits under.
pub(super) struct Looked {
    pub(super) generations: Vec<Option<TagState>>,
    pub(super) found: Found,
}

/// Entries and generations in Redis.
pub(super) struct RedisTier {
    redis: RedisStore,
    keys: KeySpace,
    /// Compresses what is stored.
    codec: Arc<Codec>,
    /// How long past expiry a value is served while one refresh runs.
    stale_while_revalidate: Duration,
    /// How long past expiry a value may stand in for a failed load.
    stale_if_error: Duration,
}

impl RedisTier {
    pub(super) fn new(
        redis: RedisStore,
        keys: KeySpace,
        codec: Arc<Codec>,
        stale_while_revalidate: Duration,
        stale_if_error: Duration,
    ) -> Self {
        Self {
            redis,
            keys,
            codec,
            stale_while_revalidate,
            stale_if_error,
        }
    }

    pub(super) fn redis(&self) -> &RedisStore {
        &self.redis
    }

    pub(super) fn keys(&self) -> &KeySpace {
        &self.keys
    }

    pub(super) fn codec(&self) -> &Arc<Codec> {
        &self.codec
    }

    /// How long an entry stays in Redis past its logical expiry: the longer
    /// of the stale windows.
    pub(super) fn stale_window(&self) -> Duration {
        self.stale_while_revalidate.max(self.stale_if_error)
    }

    /// The stale-if-error window.
    pub(super) fn stale_if_error(&self) -> Duration {
        self.stale_if_error
    }

    /// One MGET for the entries of `keys` and the generations of all their
    /// tags; one [`Looked`] per key. `Err` when Redis failed.
    pub(super) async fn lookup(&self, keys: &[&QueryKey]) -> Result<Vec<Looked>, ()> {
        let mut generation_index: HashMap<&str, usize> = HashMap::new();
        let mut names: Vec<Key> = keys.iter().map(|key| key.key().into()).collect();
        for key in keys {
            for generation_key in key.generation_keys() {
                let next = keys.len() + generation_index.len();
                generation_index
                    .entry(&**generation_key)
                    .or_insert_with(|| {
                        names.push((&**generation_key).into());
                        next
                    });
            }
        }
        let values = self.redis.mget(names).await.map_err(drop)?;
        let state_at = |tag: &str, index: usize| {
            values
                .get(index)
                .and_then(|value| value.as_ref()?.as_bytes())
                .and_then(|bytes| TagState::parse(tag, bytes))
        };
        let now = now_ms();
        let revalidate_ms = as_ms(self.stale_while_revalidate);
        let stale_ms = as_ms(self.stale_if_error);
        Ok(keys
            .iter()
            .enumerate()
            .map(|(i, key)| {
                let generations: Vec<Option<TagState>> = key
                    .tags()
                    .iter()
                    .zip(key.generation_keys())
                    .map(|(tag, name)| state_at(tag, generation_index[&**name]))
                    .collect();
                let found = match values.get(i).and_then(|value| value.as_ref()) {
                    Some(value) => {
                        self.classify(key, value, &generations, now, revalidate_ms, stale_ms)
                    }
                    None => Found::Missing,
                };
                Looked { generations, found }
            })
            .collect())
    }

    fn classify(
        &self,
        key: &QueryKey,
        value: &Value,
        generations: &[Option<TagState>],
        now: u64,
        revalidate_ms: u64,
        stale_ms: u64,
    ) -> Found {
        let Some(bytes) = value.as_bytes() else {
            return Found::Missing;
        };
        let (meta, value, json_len) = match key.decode(bytes) {
            Ok(decoded) => decoded,
            Err(err) => {
                // Garbage or an old shape under our key: a miss, and the
                // fresh value overwrites it.
                tracing::warn!(
                    resolver = key.resolver().name(),
                    key = key.key(),
                    error = %err,
                    "Undecodable cache entry: reloading and overwriting it"
                );
                return Found::Missing;
            }
        };
        let is_current = meta.generations.len() == generations.len()
            && meta.generations.iter().zip(generations).enumerate().all(
                |(index, (stored, current))| {
                    let stamp = meta
                        .ranges
                        .iter()
                        .find(|range| usize::from(range.tag) == index);
                    current
                        .as_ref()
                        .is_some_and(|current| current.admits(*stored, stamp))
                },
            );
        if !is_current {
            // Invalidated by a write, or a generation key was lost: never
            // served.
            return Found::Missing;
        }
        if now < meta.expires_at_ms {
            Found::Fresh(value, meta, json_len)
        } else if now < meta.expires_at_ms + revalidate_ms {
            Found::Revalidate(value)
        } else if now < meta.expires_at_ms + stale_ms {
            Found::Expired(value, meta)
        } else {
            Found::Missing
        }
    }

    /// Makes sure the generation key of each of `tags` (tag, key name)
    /// exists (creating absent ones with a fresh random token and, for a
    /// ranged tag, an empty log: `SET NX`) and returns each one's state;
    /// `None` for all when Redis did not answer.
    pub(super) async fn ensure_generations(
        &self,
        tags: &[(&str, &str)],
    ) -> Option<Vec<Option<TagState>>> {
        let keys = tags.iter().map(|(_, name)| (*name).into()).collect();
        let proposed = tags.iter().map(|(tag, _)| fresh_value(tag)).collect();
        let values = self
            .redis
            .ensure_generations(keys, proposed, GENERATION_TTL)
            .await
            .ok()?;
        Some(
            tags.iter()
                .zip(values)
                .map(|((tag, _), value)| TagState::parse(tag, value?.as_bytes()))
                .collect(),
        )
    }

    /// The current states of `tags` (tag, key name; `None` for absent ones).
    pub(super) async fn generations(
        &self,
        tags: &[(Tag, Arc<str>)],
    ) -> Result<Vec<Option<TagState>>, ()> {
        let keys: Vec<Key> = tags.iter().map(|(_, name)| (&**name).into()).collect();
        let values = self.redis.mget(keys).await.map_err(drop)?;
        Ok(tags
            .iter()
            .zip(&values)
            .map(|((tag, _), value)| TagState::parse(tag, value.as_ref()?.as_bytes()?))
            .collect())
    }

    /// The operations that store `payload` under `key` filled under
    /// `meta`: the entry (its Redis TTL longer than its logical one by the
    /// stale window), a refreshed TTL for each generation key, and the
    /// release of the fill lease.
    pub(super) fn store_ops(
        &self,
        key: &QueryKey,
        meta: &Meta,
        payload: &[u8],
        ttl: Duration,
    ) -> Vec<Op> {
        let mut ops = Vec::with_capacity(2 + key.generation_keys().len());
        ops.push(Op::Set {
            key: key.key().into(),
            value: envelope::wrap(meta, payload, &self.codec),
            ttl: ttl + self.stale_window(),
        });
        for generation_key in key.generation_keys() {
            ops.push(Op::Expire {
                key: (&**generation_key).into(),
                ttl: GENERATION_TTL,
            });
        }
        ops.push(self.release_op(key));
        ops
    }

    /// The operation that frees the fill lease of `key`.
    pub(super) fn release_op(&self, key: &QueryKey) -> Op {
        Op::Delete {
            key: self.keys.lease_key(key.key()).into(),
        }
    }

    /// Runs `ops` in one pipeline.
    pub(super) async fn run(&self, ops: Vec<Op>) -> Result<(), ()> {
        if ops.is_empty() {
            return Ok(());
        }
        self.redis.pipeline(ops).await.map_err(drop)
    }

    /// `SET lease owner NX PX ttl` for `key`: whether this caller holds the
    /// fill lease now. `Err` when Redis failed.
    pub(super) async fn try_lease(
        &self,
        key: &QueryKey,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, ()> {
        self.redis
            .try_lease(&self.keys.lease_key(key.key()), owner, ttl)
            .await
            .map_err(drop)
    }

    /// The operations that give each of `tags` a new generation (a ranged
    /// one also an empty log): every entry depending on one of them becomes
    /// a miss for every instance.
    pub(super) fn bump_ops(&self, tags: &[impl AsRef<str>]) -> Vec<Op> {
        tags.iter()
            .map(|tag| Op::Set {
                key: self.keys.generation_key(tag.as_ref()).into(),
                value: fresh_value(tag.as_ref()).into_bytes(),
                ttl: GENERATION_TTL,
            })
            .collect()
    }

    /// Logs each change against its ranged tag (creating the tag first if
    /// it is absent), in one pipeline; tags whose log outgrew
    /// [`ranged::MAX_LOG_BYTES`] are reset (a new token: their entries
    /// miss). `Err` when Redis failed.
    pub(super) async fn log_changes(&self, changes: &[(String, ranged::Change)]) -> Result<(), ()> {
        if changes.is_empty() {
            return Ok(());
        }
        let entries: Vec<(String, String, String)> = changes
            .iter()
            .map(|(tag, change)| {
                (
                    self.keys.generation_key(tag),
                    fresh_value(tag),
                    change.log_entry(),
                )
            })
            .collect();
        let lengths = self
            .redis
            .append_logs(&entries, GENERATION_TTL)
            .await
            .map_err(drop)?;
        let full: Vec<&str> = changes
            .iter()
            .zip(lengths)
            .filter(|(_, length)| *length > ranged::MAX_LOG_BYTES)
            .map(|((tag, _), _)| tag.as_str())
            .collect();
        self.run(self.bump_ops(&full)).await
    }
}

/// A new value for the generation key of `tag`: a fresh token, and for a
/// ranged tag an empty log.
fn fresh_value(tag: &str) -> String {
    let token = envelope::new_generation();
    if ranged::is_ranged(tag) {
        ranged::fresh_value(token)
    } else {
        generation_text(token)
    }
}

pub(super) fn as_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
