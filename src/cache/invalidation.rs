//! Invalidation: what a write does to the cache, on every instance.
//!
//! Each cached entry carries one tag (`popular`, `anime_paginated`,
//! `anime_count`, `anime:{id}`). Invalidating a tag replaces its generation
//! token in Redis (one `SET` per tag: O(affected tags), never a scan), which
//! turns every entry filled under the old token into a miss for every
//! instance at once.
//!
//! The local tiers are told through pub/sub on `{namespace}:invalidate`.
//! Every instance applies the message and then acknowledges it on
//! `{namespace}:invalidate:ack`; the writer learns from PUBLISH how many
//! instances received it and returns once that many have acknowledged (or
//! after [`ACK_WAIT`]), so when a write returns, every live instance's local
//! tier has already dropped what it changed. An instance that reconnects
//! drops its whole local tier, because it may have missed messages; while
//! its subscription is down it does not use its local tier at all.
//!
//! If Redis cannot take a bump (down, timing out), the bump is kept and
//! retried, and until it lands no read trusts Redis: its entries may be ones
//! the write replaced.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use fred::interfaces::{ClientLike, EventInterface};
use serde::{Deserialize, Serialize};

use super::envelope::new_generation;
use super::{Cache, GENERATION_TTL};
use crate::error::AppError;
use crate::redis::Op;

/// How often pending generation bumps are retried while Redis is away.
const BUMP_RETRY: Duration = Duration::from_millis(250);

/// How often an unanswered subscription probe is published again.
const PROBE_RETRY: Duration = Duration::from_millis(250);

/// Delay between attempts to subscribe while Redis is away.
const SUBSCRIBE_RETRY: Duration = Duration::from_secs(1);

/// The longest a write waits for the other instances to acknowledge its
/// invalidation. An instance that does not answer in time (frozen, or its
/// subscriber just reconnecting and so dropping everything anyway) does not
/// hold writes up for longer.
pub const ACK_WAIT: Duration = Duration::from_millis(200);

/// Acknowledgements awaited by a write.
pub(super) struct AckWait {
    received: u64,
    expected: Option<u64>,
    done: Option<tokio::sync::oneshot::Sender<()>>,
}

impl AckWait {
    fn settle(&mut self) {
        if self
            .expected
            .is_some_and(|expected| self.received >= expected)
            && let Some(done) = self.done.take()
        {
            let _ = done.send(());
        }
    }
}

/// A message on the invalidation channel.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Message {
    /// Random id, so the sender recognises its own echo.
    id: String,
    /// What to drop.
    drop: Scope,
}

/// What a message drops from local tiers.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Scope {
    /// Entries carrying these tags.
    Tags(Vec<String>),
    /// Every entry (after a clear).
    All,
    /// Nothing: an instance checking that its own subscription works.
    Probe,
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
            self.broadcast(Scope::Tags(tags)).await;
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
        self.broadcast(Scope::All).await;
    }

    /// Publishes `drop` and waits until every instance that received it has
    /// applied it (at most [`ACK_WAIT`]).
    async fn broadcast(&self, drop: Scope) {
        let message = Message {
            id: new_generation(),
            drop,
        };
        let (done, acknowledged) = tokio::sync::oneshot::channel();
        self.acks().insert(
            message.id.clone(),
            AckWait {
                received: 0,
                expected: None,
                done: Some(done),
            },
        );
        let channel = self.inner.keys.invalidation_channel();
        let payload = serde_json::to_string(&message).unwrap_or_default();
        // Acknowledgements arrive on our own subscription; without one (the
        // local tier is off here, or the subscription is down) there is
        // nothing to wait on, and waiting would only stall the write.
        let can_hear_acks = self.is_listening();
        match self.inner.redis.publish(&channel, &payload).await {
            Ok(_) if !can_hear_acks => {}
            Ok(receivers) => {
                if let Some(wait) = self.acks().get_mut(&message.id) {
                    wait.expected = Some(receivers);
                    wait.settle();
                }
                if tokio::time::timeout(ACK_WAIT, acknowledged).await.is_err() {
                    tracing::warn!(
                        receivers,
                        "Not every instance acknowledged an invalidation in time; the rest drop it when they read it"
                    );
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "Publishing an invalidation failed: other instances' local tiers expire it by TTL");
            }
        }
        self.acks().remove(&message.id);
    }

    fn acks(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, AckWait>> {
        self.inner
            .acks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
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
                    cache.broadcast(Scope::Tags(tags)).await;
                    tracing::info!("Deferred invalidations applied; Redis is trusted again");
                    if is_done {
                        return;
                    }
                }
            }
        });
    }

    /// Subscribes to the invalidation channel and applies what arrives to
    /// this instance's local tier, in the background. The local tier is used
    /// only while this subscription is connected (it would miss other
    /// instances' writes otherwise); the subscriber reconnects and
    /// resubscribes on its own, and each reconnect drops the local tier.
    pub fn listen_for_invalidations(&self) {
        if !self.inner.local.is_enabled() && !self.inner.local.responses_enabled() {
            return;
        }
        let cache = self.clone();
        tokio::spawn(async move {
            let channel = cache.inner.keys.invalidation_channel();
            let ack_channel = cache.inner.keys.acknowledgement_channel();
            let subscriber = loop {
                match cache
                    .inner
                    .redis
                    .subscribe(vec![channel.clone(), ack_channel.clone()])
                    .await
                {
                    Ok(subscriber) => break subscriber,
                    Err(err) => {
                        tracing::debug!(error = %err, "Subscribing to invalidations failed; retrying");
                        tokio::time::sleep(SUBSCRIBE_RETRY).await;
                    }
                }
            };
            // Any trouble on the subscription: stop trusting the local tier
            // until a probe proves the (re)subscription delivers again.
            let on_reconnect = cache.clone();
            drop(subscriber.on_reconnect(move |_| {
                on_reconnect.restart_probe();
                async { Ok(()) }
            }));
            let on_error = cache.clone();
            drop(subscriber.on_error(move |_| {
                on_error
                    .inner
                    .is_listener_alive
                    .store(false, std::sync::atomic::Ordering::Release);
                on_error.inner.local.invalidate_all();
                async { Ok(()) }
            }));
            let mut messages = subscriber.message_rx();
            let _ = cache.inner.subscriber.set(subscriber);
            cache.restart_probe();
            loop {
                let message = match messages.recv().await {
                    Ok(message) => message,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                        // Messages were dropped before we read them: some
                        // invalidations may be among them.
                        tracing::warn!(
                            missed,
                            "Invalidation listener fell behind: dropping the local tier"
                        );
                        cache.inner.local.invalidate_all();
                        continue;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                };
                let Some(text) = message.value.as_str() else {
                    continue;
                };
                if &*message.channel == ack_channel.as_str() {
                    // Someone applied invalidation `text`.
                    if let Some(wait) = cache.acks().get_mut(text.as_ref()) {
                        wait.received += 1;
                        wait.settle();
                    }
                    continue;
                }
                let Ok(message) = serde_json::from_str::<Message>(&text) else {
                    tracing::debug!("Ignoring an unknown invalidation message");
                    continue;
                };
                match &message.drop {
                    Scope::Tags(tags) => cache.inner.local.invalidate_tags(tags),
                    Scope::All => cache.inner.local.invalidate_all(),
                    Scope::Probe => {
                        cache.confirm_probe(&message.id);
                        continue;
                    }
                }
                // Applied: tell the writer, off this loop so a slow PUBLISH
                // does not delay the next message.
                let acker = cache.clone();
                let ack_channel = ack_channel.clone();
                tokio::spawn(async move {
                    if let Err(err) = acker.inner.redis.publish(&ack_channel, &message.id).await {
                        tracing::debug!(error = %err, "Acknowledging an invalidation failed");
                    }
                });
            }
            // The message stream ended: stop trusting the local tier.
            cache
                .inner
                .is_listener_alive
                .store(false, std::sync::atomic::Ordering::Release);
            cache.inner.local.invalidate_all();
        });
    }

    /// Distrusts the local tier (dropping it) and proves the subscription
    /// anew: the tier is used again only once this instance hears its own
    /// probe, which shows that messages published from now on reach it.
    fn restart_probe(&self) {
        self.inner
            .is_listener_alive
            .store(false, std::sync::atomic::Ordering::Release);
        self.inner.local.invalidate_all();
        let id = new_generation();
        *self
            .inner
            .probe
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(id.clone());
        let cache = self.clone();
        tokio::spawn(async move {
            let channel = cache.inner.keys.invalidation_channel();
            let payload = serde_json::to_string(&Message {
                id: id.clone(),
                drop: Scope::Probe,
            })
            .unwrap_or_default();
            // Until heard (or superseded by a newer probe), publish again.
            loop {
                let is_current = cache
                    .inner
                    .probe
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .as_deref()
                    == Some(id.as_str());
                if !is_current {
                    return;
                }
                let _ = cache.inner.redis.publish(&channel, &payload).await;
                tokio::time::sleep(PROBE_RETRY).await;
            }
        });
    }

    fn confirm_probe(&self, id: &str) {
        let mut probe = self
            .inner
            .probe
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if probe.as_deref() == Some(id) {
            *probe = None;
            self.inner
                .is_listener_alive
                .store(true, std::sync::atomic::Ordering::Release);
        }
    }

    /// Whether this instance hears other instances' invalidations now (and
    /// so may use its in-process tier): subscribed, connected, and its own
    /// probe heard since the last trouble on the subscription.
    pub fn is_listening(&self) -> bool {
        self.inner
            .is_listener_alive
            .load(std::sync::atomic::Ordering::Acquire)
            && self
                .inner
                .subscriber
                .get()
                .is_some_and(|s| s.is_connected())
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
        let message = Message {
            id: "ab12".to_owned(),
            drop: Scope::Tags(vec!["popular".to_owned(), "anime:7".to_owned()]),
        };
        let text = serde_json::to_string(&message).expect("serializes");
        assert_eq!(
            text,
            r#"{"id":"ab12","drop":{"tags":["popular","anime:7"]}}"#
        );
        assert_eq!(
            serde_json::from_str::<Message>(&text).expect("parses"),
            message
        );
    }
}
