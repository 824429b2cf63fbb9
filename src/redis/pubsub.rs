//! Pub/sub for the invalidation bus: publishing, and the dedicated
//! subscriber connection. Sharded on a cluster (SPUBLISH/SSUBSCRIBE), so a
//! publish reaches, and counts, every subscriber of its channel. Neither
//! counts toward the breaker.

use fred::clients::SubscriberClient;
use fred::prelude::*;

use super::RedisStore;
use super::breaker::Guard;

impl RedisStore {
    /// Publishes `message` on `channel`; returns how many subscribers
    /// received it. On a cluster SPUBLISH, to the node owning the channel's
    /// slot, where every [`RedisStore::subscribe`]r of it is connected, so
    /// the count covers all of them.
    pub async fn publish(&self, channel: &str, message: &str) -> Result<u64, Error> {
        let client = self.client.with_options(&self.admin_options());
        let publish = async {
            let receivers: i64 = if self.client.is_clustered() {
                client.spublish(channel, message).await?
            } else {
                client.publish(channel, message).await?
            };
            Ok(u64::try_from(receivers).unwrap_or_default())
        };
        self.breaker.guarded("PUBLISH", Guard::Admin, publish).await
    }

    /// A dedicated pub/sub connection to the same server(s), with the same
    /// timeouts and reconnect policy, subscribed to `channels` (and
    /// resubscribing after reconnects). On a cluster each channel is an
    /// SSUBSCRIBE of its own (the channels may hash to different slots).
    pub async fn subscribe(&self, channels: Vec<String>) -> Result<SubscriberClient, Error> {
        let subscribe = async {
            let subscriber = self.builder.build_subscriber_client()?;
            // The connection task runs until `quit`; it reconnects forever.
            drop(subscriber.connect());
            if !subscriber.is_clustered() {
                drop(subscriber.manage_subscriptions());
                subscriber.wait_for_connect().await?;
                subscriber.subscribe(channels).await?;
                return Ok(subscriber);
            }
            // Our own renewal instead of fred 10.1's manage_subscriptions,
            // which proved unreliable for shard channels on a cluster (tried
            // in tests/it/topologies.rs: after killed connections it
            // sometimes never resubscribed, and sometimes subscribed extra
            // connections, which inflates the SPUBLISH count that writes
            // wait for). SSUBSCRIBE of a channel already subscribed is a
            // no-op, so every reconnect of any node simply renews them all.
            let resubscriber = subscriber.clone();
            let shard_channels = channels.clone();
            // Ends when the client quits (the reconnect channel closes).
            drop(tokio::spawn(async move {
                let mut reconnects = resubscriber.reconnect_rx();
                loop {
                    match reconnects.recv().await {
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    }
                    for channel in &shard_channels {
                        if let Err(err) = resubscriber.ssubscribe(channel.as_str()).await {
                            tracing::debug!(channel, error = %err, "Resubscribing failed");
                        }
                    }
                }
            }));
            subscriber.wait_for_connect().await?;
            for channel in channels {
                subscriber.ssubscribe(channel).await?;
            }
            Ok(subscriber)
        };
        self.breaker
            .guarded("SUBSCRIBE", Guard::Admin, subscribe)
            .await
    }
}
