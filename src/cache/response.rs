//! The response tier: whole serialized GraphQL responses, kept in memory so
//! that a repeated public query is answered without parsing, validating or
//! executing anything.
//!
//! A response is kept only when every value it was built from came fresh
//! from the per-resolver cache or the database (a hit, miss or refresh;
//! never stale, bypassed or failed). It lives until the earliest logical expiry among those values,
//! and it carries their invalidation tags: the same per-tag epochs that
//! guard the in-process value tier guard it, so a write or a clear on any
//! instance (delivered by the same pub/sub fan-out) drops it, and a response
//! whose execution overlapped an invalidation of one of its tags is never
//! stored.
//!
//! The tier is per instance on purpose: a response is rebuilt from the
//! shared per-resolver entries in Redis in one execution, so sharing the
//! bytes through Redis as well would add a second round trip per hit and a
//! second copy of every value to keep coherent, for little gain.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::HeaderValue;
use moka::Expiry;
use moka::future::Cache as Moka;
use sha2::{Digest as _, Sha256};

use super::Cache;
use super::envelope::now_ms;
use super::query::{CacheStatus, Fetched};
use super::stats::ResponseEvent;

/// What identifies a response: a SHA-256 over the normalized document, the
/// operation name and the canonical variables (see `graphql::document`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ResponseKey(pub [u8; 32]);

/// A response held in memory.
#[derive(Debug)]
pub struct StoredResponse {
    /// The serialized GraphQL response, exactly as sent.
    pub body: Bytes,
    /// Strong entity tags of `body`, quoted (`"…"`), one per media type
    /// the HTTP layer sends it as: `[0]` for
    /// `application/graphql-response+json`, `[1]` for `application/json`.
    /// Two representations need two tags (RFC 9110 8.8.3), or an HTTP cache
    /// could revalidate one with the other's. Built once when kept.
    pub etags: [HeaderValue; 2],
    /// Logical expiry (unix ms): the earliest among the values it was built
    /// from.
    pub expires_at_ms: u64,
    /// Invalidation tags of those values.
    tags: Box<[Arc<str>]>,
    /// The invalidation epoch its execution started in.
    epoch: u64,
}

impl StoredResponse {
    /// Whole seconds until expiry (for `Cache-Control: max-age`).
    pub fn max_age_secs(&self) -> u64 {
        self.expires_at_ms.saturating_sub(now_ms()) / 1_000
    }

    pub(super) fn tags(&self) -> &[Arc<str>] {
        &self.tags
    }

    pub(super) fn epoch(&self) -> u64 {
        self.epoch
    }
}

/// What one request's execution read through the cache, collected by the
/// loader (present in the request data only when the response could be
/// kept).
#[derive(Default)]
pub struct Dependencies(Mutex<Collected>);

#[derive(Default)]
struct Collected {
    tags: Vec<Arc<str>>,
    /// The earliest expiry among fresh reads (`None`: no fresh read yet).
    expires_at_ms: Option<u64>,
    /// Whether any read was stale, bypassed or failed.
    is_spoiled: bool,
}

impl Dependencies {
    /// Records one cached read.
    pub fn record(&self, tag: &Arc<str>, fetched: &Fetched) {
        let mut collected = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let is_fresh = matches!(
            fetched.status,
            CacheStatus::Hit | CacheStatus::Miss | CacheStatus::Refresh
        ) && fetched.value.is_ok()
            && fetched.expires_at_ms > 0;
        if !is_fresh {
            collected.is_spoiled = true;
            return;
        }
        if !collected.tags.contains(tag) {
            collected.tags.push(Arc::clone(tag));
        }
        collected.expires_at_ms = Some(
            collected
                .expires_at_ms
                .map_or(fetched.expires_at_ms, |at| at.min(fetched.expires_at_ms)),
        );
    }

    /// The tags and expiry a response built from these reads may be kept
    /// under, or `None` if it may not be kept (nothing read through the
    /// cache, or something read was not fresh).
    fn finish(&self) -> Option<(Vec<Arc<str>>, u64)> {
        let collected = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let expires_at_ms = collected.expires_at_ms?;
        (!collected.is_spoiled && expires_at_ms > now_ms())
            .then(|| (collected.tags.clone(), expires_at_ms))
    }
}

/// The bounded in-memory map of responses (moka), weighed by body size.
pub(super) struct ResponseStore {
    cache: Option<Moka<ResponseKey, Arc<StoredResponse>>>,
}

struct UntilExpiry;

impl Expiry<ResponseKey, Arc<StoredResponse>> for UntilExpiry {
    fn expire_after_create(
        &self,
        _key: &ResponseKey,
        value: &Arc<StoredResponse>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(Duration::from_millis(
            value.expires_at_ms.saturating_sub(now_ms()),
        ))
    }
}

impl ResponseStore {
    /// A store of at most `max_bytes` of bodies (0: off).
    pub(super) fn new(max_bytes: u64) -> Self {
        let cache = (max_bytes > 0).then(|| {
            Moka::builder()
                .max_capacity(max_bytes)
                .weigher(|_key: &ResponseKey, response: &Arc<StoredResponse>| {
                    u32::try_from(response.body.len() + 2 * response.etags[0].len() + 64)
                        .unwrap_or(u32::MAX)
                })
                .expire_after(UntilExpiry)
                .support_invalidation_closures()
                .build()
        });
        Self { cache }
    }

    pub(super) fn is_enabled(&self) -> bool {
        self.cache.is_some()
    }

    pub(super) async fn get(&self, key: &ResponseKey) -> Option<Arc<StoredResponse>> {
        let response = self.cache.as_ref()?.get(key).await?;
        (response.expires_at_ms > now_ms()).then_some(response)
    }

    pub(super) async fn insert(&self, key: ResponseKey, response: Arc<StoredResponse>) {
        if let Some(cache) = &self.cache {
            cache.insert(key, response).await;
        }
    }

    /// Frees the memory of responses carrying one of `tags` (lazily;
    /// correctness comes from the epochs checked on every read).
    pub(super) fn invalidate_tags(&self, tags: &[String]) {
        if let Some(cache) = &self.cache {
            let tags: Vec<Arc<str>> = tags.iter().map(|t| Arc::from(t.as_str())).collect();
            if cache
                .invalidate_entries_if(move |_key, response| {
                    response.tags.iter().any(|tag| tags.contains(tag))
                })
                .is_err()
            {
                cache.invalidate_all();
            }
        }
    }

    pub(super) fn invalidate_all(&self) {
        if let Some(cache) = &self.cache {
            cache.invalidate_all();
        }
    }

    pub(super) async fn weighted_size(&self) -> (u64, u64) {
        match &self.cache {
            Some(cache) => {
                cache.run_pending_tasks().await;
                (cache.entry_count(), cache.weighted_size())
            }
            None => (0, 0),
        }
    }
}

impl Cache {
    /// Whether whole responses are kept (`CACHE_RESPONSES`).
    pub fn is_response_cache_enabled(&self) -> bool {
        self.inner.local.responses_enabled()
    }

    /// The invalidation epoch to read before executing a request whose
    /// response may be kept; pass it to [`Cache::store_response`].
    pub fn response_epoch(&self) -> u64 {
        self.inner.local.epoch()
    }

    /// The kept response for `key`, if there is a current one. Like the
    /// in-process value tier, it is trusted only while this instance hears
    /// other instances' invalidations and Redis holds every generation bump.
    pub async fn cached_response(&self, key: &ResponseKey) -> Option<Arc<StoredResponse>> {
        if !self.is_response_cache_enabled() {
            return None;
        }
        if !self.is_memory_trusted() {
            self.inner.stats.record_response(ResponseEvent::Bypass);
            return None;
        }
        let found = self.inner.local.get_response(key).await;
        self.inner.stats.record_response(if found.is_some() {
            ResponseEvent::Hit
        } else {
            ResponseEvent::Miss
        });
        found
    }

    /// Keeps `body` as the response for `key` if everything it was built
    /// from (`dependencies`) was fresh and no invalidation of it happened
    /// since `epoch`. Returns the kept response (for its `ETag` and
    /// `max-age`), or `None` when it may not be reused.
    pub async fn store_response(
        &self,
        key: ResponseKey,
        body: Bytes,
        dependencies: &Dependencies,
        epoch: u64,
    ) -> Option<Arc<StoredResponse>> {
        if !self.is_response_cache_enabled() || !self.is_memory_trusted() {
            return None;
        }
        let (tags, expires_at_ms) = dependencies.finish()?;
        let digest = hex(&Sha256::digest(&body)[..16]);
        let response = Arc::new(StoredResponse {
            etags: [
                HeaderValue::try_from(format!("\"{digest}\"")).ok()?,
                HeaderValue::try_from(format!("\"{digest}-json\"")).ok()?,
            ],
            body,
            expires_at_ms,
            tags: tags.into_boxed_slice(),
            epoch,
        });
        if !self
            .inner
            .local
            .insert_response(key, Arc::clone(&response))
            .await
        {
            return None;
        }
        self.inner.stats.record_response(ResponseEvent::Stored);
        Some(response)
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::query::Tier;

    fn fetched(status: CacheStatus, expires_at_ms: u64) -> Fetched {
        Fetched {
            value: Ok(Arc::new(1u64)),
            status,
            tier: Tier::Local,
            expires_at_ms,
        }
    }

    #[test]
    fn a_response_lives_until_its_earliest_value_expires() {
        let deps = Dependencies::default();
        let now = now_ms();
        deps.record(
            &Arc::from("popular"),
            &fetched(CacheStatus::Hit, now + 60_000),
        );
        deps.record(
            &Arc::from("anime_count"),
            &fetched(CacheStatus::Miss, now + 5_000),
        );
        deps.record(
            &Arc::from("popular"),
            &fetched(CacheStatus::Hit, now + 60_000),
        );
        // A refresh (`no-cache`) is as fresh as a miss.
        deps.record(
            &Arc::from("anime:1"),
            &fetched(CacheStatus::Refresh, now + 30_000),
        );
        let (tags, expires) = deps.finish().expect("reusable");
        assert_eq!(tags.len(), 3);
        assert_eq!(expires, now + 5_000);
    }

    #[test]
    fn anything_stale_bypassed_or_unread_keeps_it_out() {
        let now = now_ms();
        for status in [CacheStatus::Stale, CacheStatus::Bypass] {
            let deps = Dependencies::default();
            deps.record(
                &Arc::from("popular"),
                &fetched(CacheStatus::Hit, now + 60_000),
            );
            deps.record(&Arc::from("anime:1"), &fetched(status, now + 60_000));
            assert!(deps.finish().is_none(), "{status:?}");
        }
        assert!(Dependencies::default().finish().is_none());
        let failed = Dependencies::default();
        let mut error = fetched(CacheStatus::Miss, now + 60_000);
        error.value = Err(Arc::new(crate::error::AppError::Internal(anyhow::anyhow!(
            "x"
        ))));
        failed.record(&Arc::from("popular"), &error);
        assert!(failed.finish().is_none());
    }

    #[test]
    fn hex_is_lowercase_and_padded() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }
}
