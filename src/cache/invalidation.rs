//! Invalidation: what a write does to the cache, on every instance.
//!
//! Each cached entry depends on one or more tags (`anime:42`, the tags of
//! the fields a list is ordered and filtered by: the service's invalidation
//! policy names them). Invalidating a tag replaces its generation token in
//! Redis (one `SET` per tag: O(affected tags), never a scan), which turns
//! every entry filled under the old token into a miss for every instance at
//! once.
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

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::interfaces::{ClientLike, EventInterface};
use serde::{Deserialize, Serialize};

use super::deps::Tag;
use super::envelope::{generation_text, new_generation};
use super::local::LocalTier;
use super::ranged::Change;
use super::remote::RedisTier;

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
struct AckWait {
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

/// The invalidation bus of one instance: generation bumps (and the ones
/// Redis has not taken yet), the subscription that hears other instances'
/// writes, the probe that proves it delivers, and the acknowledgements a
/// write waits for. It also says whether Redis and this instance's memory
/// may be trusted now.
pub struct InvalidationBus {
    remote: Arc<RedisTier>,
    local: Arc<LocalTier>,
    /// Generation bumps that could not reach Redis; while any is pending,
    /// reads do not trust Redis (its entries may be ones a write replaced).
    pending_bumps: Mutex<Vec<String>>,
    /// The invalidation subscription, once established.
    subscriber: OnceLock<SubscriberClient>,
    /// Whether the subscription is proven to deliver (own probe heard since
    /// the last connection trouble) and the listener reads it.
    is_listener_alive: AtomicBool,
    /// The probe this instance is waiting to hear, if any.
    probe: Mutex<Option<String>>,
    /// Writes waiting for their invalidation to be acknowledged, by message
    /// id.
    acks: Mutex<HashMap<String, AckWait>>,
}

/// A message on the invalidation channel.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Message {
    /// Random id, so the sender recognises its own echo.
    id: String,
    /// What to drop.
    drop: Scope,
    /// Value changes logged against ranged tags: entries whose spans one
    /// touches are dropped too (`cache::ranged`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    changes: Vec<(String, Change)>,
}

/// What a message drops from local tiers.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Scope {
    /// Entries carrying these tags.
    Tags(Vec<String>),
    /// Every entry (after a clear).
    All,
    /// Nothing: an instance checking that its own subscription works.
    Probe,
}

impl InvalidationBus {
    pub(super) fn new(remote: Arc<RedisTier>, local: Arc<LocalTier>) -> Self {
        Self {
            remote,
            local,
            pending_bumps: Mutex::new(Vec::new()),
            subscriber: OnceLock::new(),
            is_listener_alive: AtomicBool::new(false),
            probe: Mutex::new(None),
            acks: Mutex::new(HashMap::new()),
        }
    }

    /// Whether Redis may be read now: connected, not paused by the breaker,
    /// and no generation bump waiting to be applied.
    pub fn is_redis_trusted(&self) -> bool {
        self.remote.redis().is_available() && self.pending_bumps().is_empty()
    }

    /// Whether this instance's memory (values and kept responses) may be
    /// used: it hears other instances' invalidations only through Redis, so
    /// both Redis and the subscription must be trusted.
    pub fn is_memory_trusted(&self) -> bool {
        self.is_redis_trusted() && self.is_listening()
    }

    fn pending_bumps(&self) -> MutexGuard<'_, Vec<String>> {
        self.pending_bumps
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn acks(&self) -> MutexGuard<'_, HashMap<String, AckWait>> {
        self.acks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Invalidates `tags` everywhere, and logs `changes` against their
    /// ranged tags: this instance's in-process tiers at once, Redis entries
    /// through their generations and logs, other instances' in-process
    /// tiers through pub/sub (waiting for their acknowledgements). Returns
    /// the number of tags invalidated or changed.
    pub(super) async fn invalidate(
        self: &Arc<Self>,
        tags: Vec<String>,
        changes: Vec<(String, Change)>,
    ) -> u64 {
        let shared: Vec<Tag> = tags.iter().map(|tag| Tag::from(tag.as_str())).collect();
        let shared_changes: Vec<(Tag, Change)> = changes
            .iter()
            .map(|(tag, change)| (Tag::from(tag.as_str()), *change))
            .collect();
        self.local.invalidate(&shared, &shared_changes).await;
        let count = (tags.len() + changes.len()) as u64;
        let is_applied = self.remote.redis().is_connected()
            && self.remote.run(self.remote.bump_ops(&tags)).await.is_ok()
            && self.remote.log_changes(&changes).await.is_ok();
        if is_applied {
            self.broadcast_changes(Scope::Tags(tags), changes).await;
        } else {
            tracing::warn!(
                tags = tags.len() + changes.len(),
                first = tags.first().map(String::as_str).unwrap_or_default(),
                "Redis did not take an invalidation: reads skip Redis until it does"
            );
            // A change that may not have been logged is made a bump of its
            // tag: every entry depending on it misses, which is safe.
            let mut bumps = tags;
            bumps.extend(changes.into_iter().map(|(tag, _)| tag));
            bumps.sort_unstable();
            bumps.dedup();
            self.defer_bumps(bumps);
        }
        count
    }

    /// Tells every instance to drop its whole in-process tiers (after a
    /// clear).
    pub(super) async fn broadcast_clear(&self) {
        self.local.invalidate_all();
        self.broadcast(Scope::All).await;
    }

    /// Publishes `drop` and waits until every instance that received it has
    /// applied it (at most [`ACK_WAIT`]).
    async fn broadcast(&self, drop: Scope) {
        self.broadcast_changes(drop, Vec::new()).await;
    }

    /// Publishes `drop` with `changes` and waits until every instance that
    /// received it has applied it (at most [`ACK_WAIT`]).
    async fn broadcast_changes(&self, drop: Scope, changes: Vec<(String, Change)>) {
        let message = Message {
            id: generation_text(new_generation()),
            drop,
            changes,
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
        let channel = self.remote.keys().invalidation_channel();
        let payload = serde_json::to_string(&message).unwrap_or_default();
        // Acknowledgements arrive on our own subscription; without one (the
        // local tier is off here, or the subscription is down) there is
        // nothing to wait on, and waiting would only stall the write.
        let can_hear_acks = self.is_listening();
        match self.remote.redis().publish(&channel, &payload).await {
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

    /// Keeps bumps Redis did not take and retries them until it does.
    fn defer_bumps(self: &Arc<Self>, tags: Vec<String>) {
        let is_first = {
            let mut pending = self.pending_bumps();
            let was_empty = pending.is_empty();
            pending.extend(tags);
            was_empty
        };
        if !is_first {
            return;
        }
        let bus = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(BUMP_RETRY).await;
                if !bus.remote.redis().is_connected() {
                    continue;
                }
                let tags: Vec<String> = bus.pending_bumps().clone();
                if bus.remote.run(bus.remote.bump_ops(&tags)).await.is_ok() {
                    let is_done = {
                        let mut pending = bus.pending_bumps();
                        let applied = tags.len().min(pending.len());
                        pending.drain(..applied);
                        pending.is_empty()
                    };
                    bus.broadcast(Scope::Tags(tags)).await;
                    tracing::info!("Deferred invalidations applied; Redis is trusted again");
                    if is_done {
                        return;
                    }
                }
            }
        });
    }

    /// Subscribes to the invalidation channel and applies what arrives to
    /// this instance's in-process tiers, in the background. They are used
    /// only while this subscription is connected (they would miss other
    /// instances' writes otherwise); the subscriber reconnects and
    /// resubscribes on its own, and each reconnect drops them.
    pub(super) fn listen(self: &Arc<Self>) {
        if !self.local.is_enabled() && !self.local.responses_enabled() {
            return;
        }
        let bus = Arc::clone(self);
        tokio::spawn(async move {
            let channel = bus.remote.keys().invalidation_channel();
            let ack_channel = bus.remote.keys().acknowledgement_channel();
            let subscriber = loop {
                match bus
                    .remote
                    .redis()
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
            let on_reconnect = Arc::clone(&bus);
            drop(subscriber.on_reconnect(move |_| {
                on_reconnect.restart_probe();
                async { Ok(()) }
            }));
            let on_error = Arc::clone(&bus);
            drop(subscriber.on_error(move |_| {
                on_error.is_listener_alive.store(false, Ordering::Release);
                on_error.local.invalidate_all();
                async { Ok(()) }
            }));
            let mut messages = subscriber.message_rx();
            let _ = bus.subscriber.set(subscriber);
            bus.restart_probe();
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
                        bus.local.invalidate_all();
                        continue;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                };
                let Some(text) = message.value.as_str() else {
                    continue;
                };
                if &*message.channel == ack_channel.as_str() {
                    // Someone applied invalidation `text`.
                    if let Some(wait) = bus.acks().get_mut(text.as_ref()) {
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
                    Scope::Tags(tags) => {
                        let tags: Vec<Tag> =
                            tags.iter().map(|tag| Tag::from(tag.as_str())).collect();
                        let changes: Vec<(Tag, Change)> = message
                            .changes
                            .iter()
                            .map(|(tag, change)| (Tag::from(tag.as_str()), *change))
                            .collect();
                        bus.local.invalidate(&tags, &changes).await;
                    }
                    Scope::All => bus.local.invalidate_all(),
                    Scope::Probe => {
                        bus.confirm_probe(&message.id);
                        continue;
                    }
                }
                // Applied: tell the writer, off this loop so a slow PUBLISH
                // does not delay the next message.
                let acker = Arc::clone(&bus);
                let ack_channel = ack_channel.clone();
                tokio::spawn(async move {
                    if let Err(err) = acker
                        .remote
                        .redis()
                        .publish(&ack_channel, &message.id)
                        .await
                    {
                        tracing::debug!(error = %err, "Acknowledging an invalidation failed");
                    }
                });
            }
            // The message stream ended: stop trusting the local tier.
            bus.is_listener_alive.store(false, Ordering::Release);
            bus.local.invalidate_all();
        });
    }

    /// Distrusts the local tier (dropping it) and proves the subscription
    /// anew: the tier is used again only once this instance hears its own
    /// probe, which shows that messages published from now on reach it.
    fn restart_probe(self: &Arc<Self>) {
        self.is_listener_alive.store(false, Ordering::Release);
        self.local.invalidate_all();
        let id = generation_text(new_generation());
        *self.probe.lock().unwrap_or_else(PoisonError::into_inner) = Some(id.clone());
        let bus = Arc::clone(self);
        tokio::spawn(async move {
            let channel = bus.remote.keys().invalidation_channel();
            let payload = serde_json::to_string(&Message {
                id: id.clone(),
                drop: Scope::Probe,
                changes: Vec::new(),
            })
            .unwrap_or_default();
            // Until heard (or superseded by a newer probe), publish again.
            loop {
                let is_current = bus
                    .probe
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .as_deref()
                    == Some(id.as_str());
                if !is_current {
                    return;
                }
                let _ = bus.remote.redis().publish(&channel, &payload).await;
                tokio::time::sleep(PROBE_RETRY).await;
            }
        });
    }

    fn confirm_probe(&self, id: &str) {
        let mut probe = self.probe.lock().unwrap_or_else(PoisonError::into_inner);
        if probe.as_deref() == Some(id) {
            *probe = None;
            self.is_listener_alive.store(true, Ordering::Release);
        }
    }

    /// Whether this instance hears other instances' invalidations now (and
    /// so may use its in-process tiers): subscribed, connected, and its own
    /// probe heard since the last trouble on the subscription.
    pub fn is_listening(&self) -> bool {
        self.is_listener_alive.load(Ordering::Acquire)
            && self.subscriber.get().is_some_and(|s| s.is_connected())
    }

    /// A reconnect of the main client may follow a period in which
    /// invalidations were missed: drop the in-process tiers.
    pub(super) fn drop_local_tier_on_reconnect(&self) {
        let local = Arc::downgrade(&self.local);
        drop(self.remote.redis().client().on_reconnect(move |_| {
            if let Some(local) = local.upgrade() {
                local.invalidate_all();
            }
            async { Ok(()) }
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let message = Message {
            id: "ab12".to_owned(),
            drop: Scope::Tags(vec!["popular".to_owned(), "anime:7".to_owned()]),
            changes: Vec::new(),
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
