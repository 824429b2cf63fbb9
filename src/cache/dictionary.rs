//! The compression dictionary of a namespace (`codec`): trained once from
//! the catalogue's own entries, shared by every instance through Redis,
//! and checked in the background.
//!
//! Redis holds `{ns}:{version}:dict:{id}` (the dictionary) and
//! `{ns}:{version}:dict:current` (the id new values are compressed with),
//! both with a week's TTL that every check renews. A check:
//!
//! 1. fetches the dictionaries of values this process could not decode
//!    (written by an instance with a newer or older dictionary);
//! 2. installs the current dictionary if it is not this instance's one;
//!    if the id is there but the dictionary was evicted or cleared, and
//!    this instance has it, puts it back;
//! 3. without a current dictionary (a new namespace, or after
//!    `clearAllCache`), trains one from samples of the catalogue (the
//!    service provides them) and offers it with `SET NX`: the first
//!    instance to do so wins and every other installs the winner's.
//!
//! Nothing here is on a request path: until a dictionary is installed,
//! values are compressed with plain zstd, and a value whose dictionary is
//! not known yet is a miss.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::codec::{self, Codec, Dictionary, known};
use super::remote::RedisTier;
use crate::error::AppError;
use crate::redis::Op;

/// Samples of what the cache stores most (serialized anime), to train on.
pub type Samples =
    Arc<dyn Fn() -> BoxFuture<'static, Result<Vec<Vec<u8>>, AppError>> + Send + Sync>;

/// Largest dictionary trained: zstd's own default, enough for the field
/// names and the common phrasing of a catalogue; larger ones gained little
/// on our records (`docs/performance.md`, "Memory").
pub const DICTIONARY_BYTES: usize = 64 * 1024;

/// Too little to learn from below this many sample bytes: checked again
/// later (the catalogue grows).
const MIN_SAMPLE_BYTES: usize = 32 * 1024;

/// How long Redis keeps a dictionary and the current id without a check
/// renewing them.
const DICTIONARY_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Between checks once a dictionary is installed: a new instance or a
/// clear is noticed within this long.
const CHECK_EVERY: Duration = Duration::from_secs(60);

/// Between checks while none is installed yet (Redis away, or too few
/// samples).
const RETRY_EVERY: Duration = Duration::from_secs(5);

/// Keeps one namespace's dictionary.
pub(super) struct DictionaryKeeper {
    remote: Arc<RedisTier>,
    codec: Arc<Codec>,
    samples: Samples,
}

impl DictionaryKeeper {
    pub(super) fn new(remote: Arc<RedisTier>, codec: Arc<Codec>, samples: Samples) -> Self {
        Self {
            remote,
            codec,
            samples,
        }
    }

    /// Checks now and then every [`CHECK_EVERY`], until the process ends.
    pub(super) fn start(self) {
        tokio::spawn(async move {
            loop {
                let is_installed = match self.check().await {
                    Ok(is_installed) => is_installed,
                    Err(err) => {
                        tracing::debug!(error = %err, "Compression dictionary check failed; retrying");
                        false
                    }
                };
                let pause = if is_installed {
                    CHECK_EVERY
                } else {
                    RETRY_EVERY
                };
                tokio::time::sleep(pause).await;
            }
        });
    }

    /// One check (module doc); whether a dictionary is installed after it.
    async fn check(&self) -> anyhow::Result<bool> {
        if !self.remote.redis().is_available() {
            return Ok(self.codec.current().is_some());
        }
        for id in known().wanted() {
            if let Some(dictionary) = self.fetch(id).await? {
                known().insert(dictionary);
            }
        }
        let current_key = self.remote.keys().current_dictionary_key();
        match self.get(&current_key).await? {
            Some(text) => {
                let id = parse_id(&text)?;
                let installed = self.codec.current().filter(|d| d.id() == id);
                let dictionary = match installed {
                    Some(dictionary) => Some(dictionary),
                    None => self.fetch(id).await?.or_else(|| known().get(id)),
                };
                let Some(dictionary) = dictionary else {
                    // The id without its dictionary, which nobody here has:
                    // start over.
                    self.remote
                        .run(vec![Op::Delete {
                            key: current_key.into(),
                        }])
                        .await
                        .ok();
                    return Ok(false);
                };
                self.renew(&dictionary).await;
                if self.codec.current().is_none_or(|d| d.id() != id) {
                    tracing::info!(dictionary = %format!("{id:08x}"), "Compression dictionary installed");
                    self.codec.install(dictionary);
                }
                Ok(true)
            }
            None => self.train_and_offer(&current_key).await,
        }
    }

    /// Trains a dictionary and offers it as the current one; installs
    /// whichever wins.
    async fn train_and_offer(&self, current_key: &str) -> anyhow::Result<bool> {
        let samples = (self.samples)().await?;
        let total: usize = samples.iter().map(Vec::len).sum();
        if total < MIN_SAMPLE_BYTES {
            tracing::debug!(
                bytes = total,
                "Too few samples to train a compression dictionary yet"
            );
            return Ok(false);
        }
        let trained =
            tokio::task::spawn_blocking(move || codec::train(&samples, DICTIONARY_BYTES)).await?;
        let Some(dictionary) = trained else {
            return Ok(false);
        };
        let id = dictionary.id();
        self.remote
            .run(vec![Op::Set {
                key: self.remote.keys().dictionary_key(id).into(),
                value: dictionary.bytes().to_vec(),
                ttl: DICTIONARY_TTL,
            }])
            .await
            .map_err(|()| anyhow::anyhow!("storing the dictionary failed"))?;
        let is_ours = self
            .remote
            .redis()
            .set_if_absent(current_key, &format!("{id:08x}"), DICTIONARY_TTL)
            .await?;
        if is_ours {
            tracing::info!(
                dictionary = %format!("{id:08x}"),
                bytes = dictionary.bytes().len(),
                samples_bytes = total,
                "Compression dictionary trained from the catalogue"
            );
            self.codec.install(dictionary);
            return Ok(true);
        }
        // Another instance offered one first: take theirs on the next
        // check (now).
        known().insert(dictionary);
        Box::pin(self.check()).await
    }

    /// Renews the TTLs of `dictionary` and the current id, and puts the
    /// dictionary back if Redis lost it.
    async fn renew(&self, dictionary: &Dictionary) {
        let keys = self.remote.keys();
        let ops = vec![
            Op::Set {
                key: keys.dictionary_key(dictionary.id()).into(),
                value: dictionary.bytes().to_vec(),
                ttl: DICTIONARY_TTL,
            },
            Op::Expire {
                key: keys.current_dictionary_key().into(),
                ttl: DICTIONARY_TTL,
            },
        ];
        if self.remote.run(ops).await.is_err() {
            tracing::debug!("Renewing the compression dictionary failed; the next check retries");
        }
    }

    /// The dictionary `id` from Redis, if it is there (and really is `id`).
    async fn fetch(&self, id: u32) -> anyhow::Result<Option<Arc<Dictionary>>> {
        let key = self.remote.keys().dictionary_key(id);
        let Some(bytes) = self.remote.redis().get_bytes(&key).await? else {
            return Ok(None);
        };
        let dictionary = Dictionary::new(bytes);
        Ok((dictionary.id() == id).then_some(dictionary))
    }

    async fn get(&self, key: &str) -> anyhow::Result<Option<String>> {
        Ok(self
            .remote
            .redis()
            .get_bytes(key)
            .await?
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }
}

fn parse_id(text: &str) -> anyhow::Result<u32> {
    u32::from_str_radix(text.trim(), 16)
        .map_err(|_| anyhow::anyhow!("unexpected current dictionary id {text:?}"))
}
