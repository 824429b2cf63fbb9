//! Invalidation: what a write does to the cache, on every instance.
//!
//! Each cached entry carries one tag (`popular`, `anime_paginated`,
//! `anime_count`, `anime:{id}`). Invalidating a tag replaces its generation
//! token in Redis (one `SET` per tag: O(affected tags), never a scan), which
//! turns every entry filled under the old token into a miss for every
//! instance at once. The local tiers are told through pub/sub on
//! `{namespace}:invalidate`; an instance that reconnects drops its local tier
//! because it may have missed messages.
//!
//! If Redis cannot take a bump (down, timing out), the bump is kept and
//! retried, and until it lands no read trusts Redis: its entries may be ones
//! the write replaced.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use fred::interfaces::EventInterface;
use serde::{Deserialize, Serialize};

use super::envelope::new_generation;
use super::redis::Op;
use super::{Cache, GENERATION_TTL};
use crate::error::AppError;

/// How often pending generation bumps are retried while Redis is away.
const BUMP_RETRY: Duration = Duration::from_millis(250);

/// A message on the invalidation channel.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Message {
    /// Drop local entries carrying these tags.
    Tags(Vec<String>),
    /// Drop every local entry (after a clear).
    All,
}

impl Cache {
    /// Invalidates `tags` everywhere: this instance's local tier at once,
    /// Redis entries through their generations, other instances' local tiers
    /// through pub/sub. Returns the number of tags invalidated.
    pub async fn invalidate(&self, tags: Vec<String>) -> Result<u64, AppError> {
        let inner = &*self.inner;
        inner.local.invalidate_tags(&tags);
        let count = tags.len() as u64;
        let bumped = if inner.redis.is_connected() {
            inner.redis.pipeline(bump_ops(self, &tags)).await.is_ok()
        } else {
            false
        };
        if bumped {
            self.broadcast(&Message::Tags(tags)).await;
        } else {
            tracing::warn!(
                tags = ?tags,
                "Redis did not take an invalidation: reads skip Redis until it does"
            );
            self.defer_bumps(tags);
        }
        Ok(count)
    }

    /// Tells every instance to drop its whole local tier (after a clear).
    pub(crate) async fn broadcast_clear(&self) {
        self.inner.local.invalidate_all();
        self.broadcast(&Message::All).await;
    }

    async fn broadcast(&self, message: &Message) {
        let channel = self.inner.keys.invalidation_channel();
        let payload = serde_json::to_string(message).unwrap_or_default();
        if let Err(err) = self.inner.redis.publish(&channel, &payload).await {
            tracing::warn!(error = %err, "Publishing an invalidation failed: other instances' local tiers expire it by TTL");
        }
    }

    /// Keeps bumps Redis did not take and retries them until it does.
    fn defer_bumps(&self, tags: Vec<String>) {
        let is_first = {
            let mut pending = self
                .inner
                .pending_bumps
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let was_empty = pending.is_empty();
            pending.extend(tags);
            was_empty
        };
        if !is_first {
            return;
        }
        let cache = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(BUMP_RETRY).await;
                if !cache.inner.redis.is_connected() {
                    continue;
                }
                let tags: Vec<String> = cache
                    .inner
                    .pending_bumps
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                if cache
                    .inner
                    .redis
                    .pipeline(bump_ops(&cache, &tags))
                    .await
                    .is_ok()
                {
                    let is_done = {
                        let mut pending = cache
                            .inner
                            .pending_bumps
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner);
                        let applied = tags.len().min(pending.len());
                        pending.drain(..applied);
                        pending.is_empty()
                    };
                    cache.broadcast(&Message::Tags(tags)).await;
                    tracing::info!("Deferred invalidations applied; Redis is trusted again");
                    if is_done {
                        return;
                    }
                }
            }
        });
    }

    /// Subscribes to the invalidation channel and applies what arrives to
    /// this instance's local tier. Runs in the background; the subscriber
    /// connection reconnects (and resubscribes) on its own, dropping the
    /// local tier each time.
    pub fn listen_for_invalidations(&self) {
        if !self.inner.local.is_enabled() {
            return;
        }
        let cache = self.clone();
        tokio::spawn(async move {
            let channel = cache.inner.keys.invalidation_channel();
            let subscriber = match cache.inner.redis.subscribe(&channel).await {
                Ok(subscriber) => subscriber,
                Err(err) => {
                    // Without the channel the local tier cannot hear other
                    // instances' writes: switch it off rather than serve them stale.
                    tracing::warn!(error = %err, "Cannot subscribe to invalidations: local tier disabled");
                    cache.inner.local.disable();
                    return;
                }
            };
            let on_reconnect = cache.clone();
            drop(subscriber.on_reconnect(move |_| {
                on_reconnect.inner.local.invalidate_all();
                async { Ok(()) }
            }));
            let mut messages = subscriber.message_rx();
            while let Ok(message) = messages.recv().await {
                let Some(text) = message.value.as_str() else {
                    continue;
                };
                match serde_json::from_str::<Message>(&text) {
                    Ok(Message::Tags(tags)) => cache.inner.local.invalidate_tags(&tags),
                    Ok(Message::All) => cache.inner.local.invalidate_all(),
                    Err(_) => tracing::debug!("Ignoring an unknown invalidation message"),
                }
            }
        });
    }

    /// A reconnect of the main client may follow a period in which
    /// invalidations were missed: drop the local tier.
    pub(super) fn drop_local_tier_on_reconnect(&self) {
        let cache = Arc::downgrade(&self.inner);
        drop(self.inner.redis.client().on_reconnect(move |_| {
            if let Some(inner) = cache.upgrade() {
                inner.local.invalidate_all();
            }
            async { Ok(()) }
        }));
    }
}

fn bump_ops(cache: &Cache, tags: &[String]) -> Vec<Op> {
    tags.iter()
        .map(|tag| Op::Set {
            key: cache.inner.keys.generation_key(tag).into(),
            value: new_generation().into_bytes(),
            ttl: GENERATION_TTL,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let message = Message::Tags(vec!["popular".to_owned(), "anime:7".to_owned()]);
        let text = serde_json::to_string(&message).expect("serializes");
        assert_eq!(text, r#"{"tags":["popular","anime:7"]}"#);
        assert_eq!(
            serde_json::from_str::<Message>(&text).expect("parses"),
            message
        );
        assert_eq!(
            serde_json::to_string(&Message::All).expect("serializes"),
            r#""all""#
        );
    }
}
