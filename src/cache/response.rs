//! The response tier: whole serialized GraphQL responses, kept in memory so
//! that a repeated public query is answered without parsing, validating or
//! executing anything.
//!
//! A response is kept only when every value it was built from came fresh
//! from the per-resolver cache or the database (a hit, partial hit, miss
//! or refresh; never stale, bypassed or failed). It lives until the
//! earliest logical expiry among those values, and it depends on all their
//! invalidation tags (a list's, and each anime's it shows): a write or a
//! clear on any instance (delivered by the same pub/sub fan-out) drops
//! exactly the responses that depend on a tag it changed, found through
//! the dependency index (`deps`) in O(those responses), and a response
//! whose execution overlapped an invalidation of one of its tags is never
//! stored.
//!
//! The tier is per instance on purpose: a response is rebuilt from the
//! shared per-resolver entries in Redis in one execution, so sharing the
//! bytes through Redis as well would add a second round trip per hit and a
//! second copy of every value to keep coherent, for little gain.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::HeaderValue;
use moka::Expiry;
use moka::future::Cache as Moka;
use moka::notification::RemovalCause;

use super::deps::{Dependents, Epoch, Invalidations, REGISTRATION_BYTES, Tag};
use super::envelope::now_ms;
use super::local::ENTRY_OVERHEAD_BYTES;
use super::query::{CacheStatus, Fetched};

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
    tags: Box<[Tag]>,
    /// When its execution started, against the invalidation log.
    start: Epoch,
}

impl StoredResponse {
    /// Whole seconds until expiry (for `Cache-Control: max-age`).
    pub fn max_age_secs(&self) -> u64 {
        self.expires_at_ms.saturating_sub(now_ms()) / 1_000
    }
}

/// What one request's execution read through the cache, collected by the
/// loader (present in the request data only when the response could be
/// kept).
#[derive(Default)]
pub struct Dependencies(Mutex<Collected>);

#[derive(Default)]
struct Collected {
    tags: HashSet<Tag>,
    /// The earliest expiry among fresh reads (`None`: no fresh read yet).
    expires_at_ms: Option<u64>,
    /// Whether any read was stale, bypassed or failed.
    is_spoiled: bool,
}

impl Dependencies {
    /// Records one cached read depending on `tags`.
    pub fn record(&self, tags: &[Tag], fetched: &Fetched) {
        let mut collected = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let is_fresh = matches!(
            fetched.status,
            CacheStatus::Hit | CacheStatus::Miss | CacheStatus::Refresh | CacheStatus::Partial
        ) && fetched.value.is_ok()
            && fetched.expires_at_ms > 0;
        if !is_fresh {
            collected.is_spoiled = true;
            return;
        }
        for tag in tags {
            if !collected.tags.contains(tag) {
                collected.tags.insert(Tag::clone(tag));
            }
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
    fn finish(&self) -> Option<(Vec<Tag>, u64)> {
        let collected = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let expires_at_ms = collected.expires_at_ms?;
        (!collected.is_spoiled && expires_at_ms > now_ms())
            .then(|| (collected.tags.iter().cloned().collect(), expires_at_ms))
    }

    /// `body` as a response to keep, built from these reads by an execution
    /// that started at `start`; `None` when it may not be kept. `digest`
    /// names the body in its entity tags.
    pub(super) fn to_response(
        &self,
        body: Bytes,
        digest: &str,
        start: Epoch,
    ) -> Option<StoredResponse> {
        let (tags, expires_at_ms) = self.finish()?;
        Some(StoredResponse {
            etags: [
                HeaderValue::try_from(format!("\"{digest}\"")).ok()?,
                HeaderValue::try_from(format!("\"{digest}-json\"")).ok()?,
            ],
            body,
            expires_at_ms,
            tags: tags.into_boxed_slice(),
            start,
        })
    }
}

/// A kept response and what tells it apart from a later one under the
/// same key.
#[derive(Clone)]
struct Held {
    response: Arc<StoredResponse>,
    id: u64,
}

/// The bounded in-memory map of responses (moka), weighed by what each
/// holds: body, tags, dependency registrations and moka's bookkeeping.
pub(super) struct ResponseStore {
    cache: Option<Moka<ResponseKey, Held>>,
    dependents: Arc<Dependents<ResponseKey>>,
    log: Arc<Invalidations>,
    next_id: AtomicU64,
}

struct UntilExpiry;

impl Expiry<ResponseKey, Held> for UntilExpiry {
    fn expire_after_create(
        &self,
        _key: &ResponseKey,
        held: &Held,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(Duration::from_millis(
            held.response.expires_at_ms.saturating_sub(now_ms()),
        ))
    }
}

/// Resident bytes per byte a kept response holds, in quarters. Bodies of
/// every size churn through the allocator's size classes, and pages
/// partly freed stay resident: `scripts/soak` (a flood of distinct
/// requests, the store full) measured 58.5 MiB of resident memory for
/// 32 MiB of content (1.83; the same soak without kept responses gives
/// the difference), so each byte weighs 2 (rounded up: the soak's peak
/// was within 3 MiB of its limit at 7/4) and the budget bounds what the
/// store costs, not only what it holds.
const RESIDENT_QUARTERS_PER_BYTE: usize = 8;

/// What a kept response weighs: its body, ETags, tag registrations and
/// bookkeeping, times [`RESIDENT_QUARTERS_PER_BYTE`] / 4.
fn weight(response: &StoredResponse) -> u32 {
    let tags: usize = response
        .tags
        .iter()
        .map(|tag| tag.len() + REGISTRATION_BYTES as usize + 16)
        .sum();
    let held = response.body.len()
        + 2 * response.etags[0].len()
        + tags
        + ENTRY_OVERHEAD_BYTES as usize
        + std::mem::size_of::<StoredResponse>();
    u32::try_from(held.saturating_mul(RESIDENT_QUARTERS_PER_BYTE) / 4).unwrap_or(u32::MAX)
}

impl ResponseStore {
    /// A store of at most `max_bytes` (0: off), checked against `log`.
    pub(super) fn new(max_bytes: u64, log: Arc<Invalidations>) -> Self {
        let dependents: Arc<Dependents<ResponseKey>> = Arc::default();
        let cache = (max_bytes > 0).then(|| {
            let registered = Arc::clone(&dependents);
            Moka::builder()
                .max_capacity(max_bytes)
                .weigher(|_key: &ResponseKey, held: &Held| weight(&held.response))
                .expire_after(UntilExpiry)
                .eviction_listener(move |key: Arc<ResponseKey>, held: Held, cause| {
                    if cause != RemovalCause::Replaced {
                        registered.remove(&held.response.tags, &key, held.id);
                    }
                })
                .build()
        });
        Self {
            cache,
            dependents,
            log,
            next_id: AtomicU64::new(0),
        }
    }

    pub(super) fn is_enabled(&self) -> bool {
        self.cache.is_some()
    }

    pub(super) async fn get(&self, key: &ResponseKey) -> Option<Arc<StoredResponse>> {
        let held = self.cache.as_ref()?.get(key).await?;
        (held.response.expires_at_ms > now_ms() && self.log.is_after_clear(held.response.start))
            .then_some(held.response)
    }

    /// Holds `response` unless one of its tags was invalidated since its
    /// execution started; whether it was kept.
    pub(super) async fn insert(&self, key: ResponseKey, response: Arc<StoredResponse>) -> bool {
        let Some(cache) = &self.cache else {
            return false;
        };
        if response.expires_at_ms <= now_ms()
            || !self.log.is_current(&response.tags, response.start)
        {
            return false;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.dependents.add(&response.tags, &key, id);
        let start = response.start;
        let tags = response.tags.clone();
        cache.insert(key, Held { response, id }).await;
        // See `deps`: an invalidation between the check and the insert.
        if !self.log.is_current(&tags, start) {
            cache.invalidate(&key).await;
            self.dependents.remove(&tags, &key, id);
            return false;
        }
        true
    }

    /// Drops the responses depending on one of `tags` (the caller recorded
    /// the invalidation in the shared log first).
    pub(super) async fn invalidate_tags(&self, tags: &[Tag]) {
        if let Some(cache) = &self.cache {
            for tag in tags {
                for key in self.dependents.take(tag) {
                    cache.invalidate(&key).await;
                }
            }
        }
    }

    pub(super) fn invalidate_all(&self) {
        self.dependents.clear();
        if let Some(cache) = &self.cache {
            cache.invalidate_all();
        }
    }

    pub(super) fn registrations(&self) -> usize {
        self.dependents.len()
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
            &[Tag::from("popular")],
            &fetched(CacheStatus::Hit, now + 60_000),
        );
        deps.record(
            &[Tag::from("anime_count")],
            &fetched(CacheStatus::Miss, now + 5_000),
        );
        deps.record(
            &[Tag::from("popular")],
            &fetched(CacheStatus::Hit, now + 60_000),
        );
        // A refresh (`no-cache`) is as fresh as a miss.
        deps.record(
            &[Tag::from("anime:1")],
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
                &[Tag::from("popular")],
                &fetched(CacheStatus::Hit, now + 60_000),
            );
            deps.record(&[Tag::from("anime:1")], &fetched(status, now + 60_000));
            assert!(deps.finish().is_none(), "{status:?}");
        }
        assert!(Dependencies::default().finish().is_none());
        let failed = Dependencies::default();
        let mut error = fetched(CacheStatus::Miss, now + 60_000);
        error.value = Err(Arc::new(crate::error::AppError::Internal(anyhow::anyhow!(
            "x"
        ))));
        failed.record(&[Tag::from("popular")], &error);
        assert!(failed.finish().is_none());
    }

    #[test]
    fn hex_is_lowercase_and_padded() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }
}
