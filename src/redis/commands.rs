//! The cache's data commands: reads (one MGET, or one per hash slot on a
//! cluster), pipelined writes ([`Op`]), generation set-up, counters and
//! leases. Each counts toward the breaker.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fred::prelude::*;
use fred::types::{Expiration, Key, SetOptions, Value};

use super::RedisStore;
use super::breaker::Guard;

/// One pipelined command.
#[derive(Debug)]
pub enum Op {
    /// `SET key value PX ttl`.
    Set {
        /// Key.
        key: Key,
        /// Value bytes.
        value: Vec<u8>,
        /// Expiry.
        ttl: Duration,
    },
    /// `PEXPIRE key ttl`.
    Expire {
        /// Key.
        key: Key,
        /// New expiry.
        ttl: Duration,
    },
    /// `DEL key`.
    Delete {
        /// Key.
        key: Key,
    },
}

fn millis(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1)
}

impl RedisStore {
    /// Reads `keys` in one MGET (on a cluster, one per hash slot, sent
    /// together). `None` where a key is absent.
    pub async fn mget(&self, keys: Vec<Key>) -> Result<Vec<Option<Value>>, Error> {
        let groups = if self.client.is_clustered() {
            slot_groups(&keys)
        } else {
            Vec::new()
        };
        // One MGET is bounded by its options (`fast_options`); the per-slot
        // pipeline, which fred bounds only command by command, as a whole.
        let values = if groups.len() > 1 {
            let within = Guard::CacheWithin(self.command_timeout);
            let read = self.mget_by_slot(keys, groups);
            self.breaker.guarded("MGET", within, read).await?
        } else {
            let read = self.mget_one(keys);
            self.breaker.guarded("MGET", Guard::Cache, read).await?
        };
        Ok(values
            .into_iter()
            .map(|value| (!value.is_null()).then_some(value))
            .collect())
    }

    /// One MGET, its reply checked to hold one value per key.
    async fn mget_one(&self, keys: Vec<Key>) -> Result<Vec<Value>, Error> {
        let count = keys.len();
        let reply: Value = self
            .client
            .with_options(&self.fast_options())
            .mget(keys)
            .await?;
        mget_values(reply, count)
    }

    /// A cluster refuses an MGET whose keys span hash slots (CROSSSLOT), and
    /// a value key and its generation key rarely share one. So: one MGET
    /// per slot (`groups`, from [`slot_groups`]), pipelined (fred writes
    /// each to the node owning its slot, and the nodes answer
    /// concurrently), the values put back in `keys` order. Any failing slot
    /// fails the whole read, which is then a miss.
    async fn mget_by_slot(
        &self,
        keys: Vec<Key>,
        groups: Vec<Vec<usize>>,
    ) -> Result<Vec<Value>, Error> {
        let pipeline = self.client.with_options(&self.fast_options()).pipeline();
        for group in &groups {
            let slot_keys: Vec<Key> = group.iter().map(|&i| keys[i].clone()).collect();
            // Only queues the command; the round trip is `all()`.
            let _: () = pipeline.mget(slot_keys).await?;
        }
        let replies = pipeline.all::<Vec<Value>>().await?;
        if replies.len() != groups.len() {
            return Err(Error::new(
                fred::error::ErrorKind::Protocol,
                format!("{} MGET replies for {} slots", replies.len(), groups.len()),
            ));
        }
        let mut values = vec![Value::Null; keys.len()];
        for (group, reply) in groups.iter().zip(replies) {
            for (&index, value) in group.iter().zip(mget_values(reply, group.len())?) {
                values[index] = value;
            }
        }
        Ok(values)
    }

    /// Runs `ops` in one pipelined round trip (cache write-backs, generation
    /// bumps). Bounded by the command timeout per command and as a whole.
    pub async fn pipeline(&self, ops: Vec<Op>) -> Result<(), Error> {
        let pipeline = self.client.pipeline();
        for op in ops {
            // Each call only queues the command; the round trip is `all()`.
            let _: () = match op {
                Op::Set { key, value, ttl } => {
                    pipeline
                        .set(
                            key,
                            value.as_slice(),
                            Some(Expiration::PX(millis(ttl))),
                            None,
                            false,
                        )
                        .await?
                }
                Op::Expire { key, ttl } => pipeline.pexpire(key, millis(ttl), None).await?,
                Op::Delete { key } => pipeline.del(key).await?,
            };
        }
        let started = Instant::now();
        let within = Guard::CacheWithin(self.command_timeout * 4);
        let result = self
            .breaker
            .guarded("pipeline", within, pipeline.all::<Value>())
            .await;
        metrics::histogram!(crate::metrics::REDIS_COMMAND_SECONDS, "command" => "pipeline")
            .record(started.elapsed().as_secs_f64());
        result.map(drop)
    }

    /// Makes sure each generation key exists (creating it with the proposed
    /// token when absent, `SET … NX`) and returns the tokens now in place, in
    /// one pipelined round trip.
    pub async fn ensure_generations(
        &self,
        keys: Vec<Key>,
        proposed: Vec<String>,
        ttl: Duration,
    ) -> Result<Vec<Option<String>>, Error> {
        let pipeline = self.client.pipeline();
        for (key, token) in keys.iter().zip(&proposed) {
            let _: () = pipeline
                .set(
                    key.clone(),
                    token.as_str(),
                    Some(Expiration::PX(millis(ttl))),
                    Some(SetOptions::NX),
                    false,
                )
                .await?;
        }
        // One MGET of them all; on a cluster one GET each, since the keys
        // may live in different hash slots.
        let is_per_key = self.client.is_clustered();
        if is_per_key {
            for key in &keys {
                let _: () = pipeline.get(key.clone()).await?;
            }
        } else {
            let _: () = pipeline.mget(keys.clone()).await?;
        }
        let count = keys.len();
        let round_trip = async {
            let replies = pipeline.all::<Vec<Value>>().await?;
            generation_tokens(replies, count, is_per_key)
        };
        let within = Guard::CacheWithin(self.command_timeout);
        self.breaker
            .guarded("generation setup", within, round_trip)
            .await
    }

    /// For each (key, fresh value, entry): `SET key fresh NX PX ttl` (the
    /// key exists afterwards) then `APPEND key entry`, all in one pipelined
    /// round trip; the length of each key's value after its append
    /// (ranged tags' change logs, `cache::ranged`).
    pub async fn append_logs(
        &self,
        entries: &[(String, String, String)],
        ttl: Duration,
    ) -> Result<Vec<usize>, Error> {
        let pipeline = self.client.pipeline();
        for (key, fresh, entry) in entries {
            let _: () = pipeline
                .set(
                    key.as_str(),
                    fresh.as_str(),
                    Some(Expiration::PX(millis(ttl))),
                    Some(SetOptions::NX),
                    false,
                )
                .await?;
            let _: () = pipeline.append(key.as_str(), entry.as_str()).await?;
        }
        let count = entries.len();
        let round_trip = async {
            let replies = pipeline.all::<Vec<Value>>().await?;
            if replies.len() != count * 2 {
                return Err(Error::new(
                    fred::error::ErrorKind::Protocol,
                    format!("{} replies to {count} appends", replies.len()),
                ));
            }
            Ok(replies
                .iter()
                .skip(1)
                .step_by(2)
                .map(|length| {
                    length
                        .as_u64()
                        .and_then(|n| usize::try_from(n).ok())
                        .unwrap_or(usize::MAX)
                })
                .collect())
        };
        let within = Guard::CacheWithin(self.command_timeout * 4);
        self.breaker.guarded("APPEND", within, round_trip).await
    }

    /// `INCRBY key by` and `PEXPIRE key ttl` in one round trip: the
    /// counter's value after adding `by` (admission budgets).
    pub async fn incr_by(&self, key: &str, by: u64, ttl: Duration) -> Result<u64, Error> {
        let pipeline = self.client.pipeline();
        let by = i64::try_from(by).unwrap_or(i64::MAX);
        let _: () = pipeline.incr_by(key, by).await?;
        let _: () = pipeline.pexpire(key, millis(ttl), None).await?;
        let round_trip = async {
            let replies = pipeline.all::<Vec<Value>>().await?;
            replies
                .first()
                .and_then(Value::as_u64)
                .ok_or_else(|| Error::new(fred::error::ErrorKind::Protocol, "INCRBY reply"))
        };
        let within = Guard::CacheWithin(self.command_timeout);
        self.breaker.guarded("INCRBY", within, round_trip).await
    }

    /// `SET key owner NX PX ttl`: whether this caller now holds the lease.
    pub async fn try_lease(&self, key: &str, owner: &str, ttl: Duration) -> Result<bool, Error> {
        let client = self.client.with_options(&self.fast_options());
        let set = client.set::<Value, _, _>(
            key,
            owner,
            Some(Expiration::PX(millis(ttl))),
            Some(SetOptions::NX),
            false,
        );
        let reply = self.breaker.guarded("SET NX", Guard::Cache, set).await?;
        Ok(!reply.is_null())
    }

    /// `SET key value NX PX ttl` off the request path (admin timeout, not
    /// counted by the breaker): whether the value was set.
    pub async fn set_if_absent(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, Error> {
        let client = self.client.with_options(&self.admin_options());
        let set = client.set::<Value, _, _>(
            key,
            value,
            Some(Expiration::PX(millis(ttl))),
            Some(SetOptions::NX),
            false,
        );
        let reply = self.breaker.guarded("SET NX", Guard::Admin, set).await?;
        Ok(!reply.is_null())
    }

    /// `GET key` off the request path (admin timeout, not counted by the
    /// breaker): its bytes, `None` when absent.
    pub async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        let client = self.client.with_options(&self.admin_options());
        let reply: Value = self
            .breaker
            .guarded("GET", Guard::Admin, client.get::<Value, _>(key))
            .await?;
        Ok(reply.as_bytes().map(<[u8]>::to_vec))
    }
}

/// The values of an MGET reply for `count` keys.
fn mget_values(reply: Value, count: usize) -> Result<Vec<Value>, Error> {
    match reply {
        Value::Array(values) if values.len() == count => Ok(values),
        // MGET of one key may come back unwrapped on some proxies.
        value if count == 1 && !matches!(value, Value::Array(_)) => Ok(vec![value]),
        other => Err(Error::new(
            fred::error::ErrorKind::Protocol,
            format!("MGET returned {:?} for {count} keys", other.kind()),
        )),
    }
}

/// The generation tokens from the replies to `count` `SET … NX` followed
/// by one MGET of the keys, or (`is_per_key`) by one GET each.
fn generation_tokens(
    mut replies: Vec<Value>,
    count: usize,
    is_per_key: bool,
) -> Result<Vec<Option<String>>, Error> {
    let tokens = match replies.pop() {
        Some(last) if is_per_key && replies.len() + 1 == count * 2 => {
            let mut tokens = replies.split_off(count);
            tokens.push(last);
            tokens
        }
        Some(Value::Array(tokens)) if !is_per_key && tokens.len() == count => tokens,
        other => {
            return Err(Error::new(
                fred::error::ErrorKind::Protocol,
                format!("unexpected reply to reading {count} generations: {other:?}"),
            ));
        }
    };
    Ok(tokens
        .into_iter()
        .map(|token| token.as_str().map(|t| t.into_owned()))
        .collect())
}

/// Indexes of `keys` grouped by cluster hash slot, each group in `keys`
/// order (the order of the groups does not matter).
fn slot_groups(keys: &[Key]) -> Vec<Vec<usize>> {
    let mut by_slot: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
    for (index, key) in keys.iter().enumerate() {
        by_slot
            .entry(fred::util::redis_keyslot(key.as_bytes()))
            .or_default()
            .push(index);
    }
    by_slot.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_grouped_by_hash_slot_in_their_original_order() {
        let keys: Vec<Key> = ["{a}:1", "b", "{a}:2", "c", "{a}:3", "b"]
            .into_iter()
            .map(Key::from)
            .collect();
        let mut groups = slot_groups(&keys);
        groups.sort();
        // "b" and "c" differ in slot from each other and from "{a}".
        assert_eq!(groups, vec![vec![0, 2, 4], vec![1, 5], vec![3]]);
        assert!(slot_groups(&[]).is_empty());
    }

    #[test]
    fn generation_tokens_come_from_the_mget_or_the_gets() {
        let ok = || Value::from("OK");
        let token = |t: &str| Value::from(t);
        let mget = vec![
            ok(),
            Value::Null,
            Value::Array(vec![token("g1"), token("g2")]),
        ];
        let expected = vec![Some("g1".to_owned()), Some("g2".to_owned())];
        assert_eq!(generation_tokens(mget, 2, false).expect("mget"), expected);
        let gets = vec![ok(), Value::Null, token("g1"), token("g2")];
        assert_eq!(generation_tokens(gets, 2, true).expect("gets"), expected);
        let gets = vec![ok(), Value::Null, token("g1"), Value::Null];
        assert_eq!(
            generation_tokens(gets, 2, true).expect("one evicted"),
            vec![Some("g1".to_owned()), None]
        );
        assert!(generation_tokens(vec![ok(), token("g1")], 2, true).is_err());
        assert!(generation_tokens(vec![ok(), Value::Array(vec![])], 1, false).is_err());
    }

    #[test]
    fn mget_replies_must_hold_one_value_per_key() {
        let two = Value::Array(vec![Value::Null, Value::from("x")]);
        assert_eq!(mget_values(two.clone(), 2).expect("two").len(), 2);
        assert!(mget_values(two, 3).is_err());
        assert_eq!(
            mget_values(Value::from("x"), 1).expect("unwrapped single"),
            vec![Value::from("x")]
        );
    }
}
