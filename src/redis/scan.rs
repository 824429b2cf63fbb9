//! Administrative commands over many keys: SCAN (bounded pages, every
//! primary of a cluster; never KEYS), UNLINK and STRLEN, for pattern clears
//! and the admin report. None counts toward the breaker.

use std::pin::Pin;

use fred::prelude::*;
use fred::types::Key;
use fred::types::scan::{ScanResult, Scanner};
use futures_util::{Stream, StreamExt};

use super::RedisStore;
use super::breaker::Guard;

/// Keys examined per SCAN page: large enough that 200k keys take a few
/// hundred round trips, small enough that each page is a sub-millisecond
/// command that never blocks other clients noticeably.
const SCAN_PAGE: u32 = 1_000;

/// SCAN pages of `pattern`: on a cluster, of every primary.
type Pages<'a> = Pin<Box<dyn Stream<Item = Result<ScanResult, Error>> + Send + 'a>>;

impl RedisStore {
    /// The SCAN pages of keys matching `pattern`, [`SCAN_PAGE`] keys
    /// examined per page, on every primary of a cluster.
    fn scan_pages<'a>(&'a self, pattern: &'a str) -> Pages<'a> {
        if self.client.is_clustered() {
            Box::pin(self.client.scan_cluster(pattern, Some(SCAN_PAGE), None))
        } else {
            Box::pin(self.client.scan(pattern, Some(SCAN_PAGE), None))
        }
    }

    /// Deletes every key matching `pattern` with SCAN (bounded COUNT) and
    /// UNLINK in batches, on every primary of a cluster; never KEYS. Returns
    /// how many keys were deleted (SCAN may report a key twice; UNLINK
    /// counts each key once, so the total is exact).
    pub async fn delete_matching(&self, pattern: &str) -> Result<u64, Error> {
        let clear = async {
            let mut deleted = 0u64;
            let is_cluster = self.client.is_clustered();
            let mut pages = self.scan_pages(pattern);
            let client = self.client.with_options(&self.admin_options());
            while let Some(page) = pages.next().await {
                let mut page = page?;
                let keys = page.take_results().unwrap_or_default();
                // Dropping the page asks for the next one while we delete.
                drop(page);
                if keys.is_empty() {
                    continue;
                }
                if is_cluster {
                    // Keys of one page may live in different slots: one UNLINK
                    // each, pipelined, so each goes to its own node.
                    let pipeline = client.pipeline();
                    for key in keys {
                        let _: () = pipeline.unlink(key).await?;
                    }
                    let counts: Vec<u64> = pipeline.all().await?;
                    deleted += counts.iter().sum::<u64>();
                } else {
                    let count: u64 = client.unlink(keys).await?;
                    deleted += count;
                }
            }
            Ok(deleted)
        };
        self.breaker
            .guarded("SCAN/UNLINK", Guard::Admin, clear)
            .await
    }

    /// Up to `limit` keys matching `pattern`, from SCAN, and whether the
    /// scan finished (all matching keys seen) before the limit.
    pub async fn scan_keys(&self, pattern: &str, limit: usize) -> Result<(Vec<Key>, bool), Error> {
        let scan = async {
            let mut found = Vec::new();
            let mut pages = self.scan_pages(pattern);
            while let Some(page) = pages.next().await {
                let mut page = page?;
                found.extend(page.take_results().unwrap_or_default());
                if found.len() >= limit {
                    page.cancel();
                    found.truncate(limit);
                    return Ok((found, false));
                }
            }
            Ok((found, true))
        };
        self.breaker.guarded("SCAN", Guard::Admin, scan).await
    }

    /// Value sizes (STRLEN) of `keys`, in one pipelined round trip.
    pub async fn value_sizes(&self, keys: &[Key]) -> Result<Vec<u64>, Error> {
        let pipeline = self.client.with_options(&self.admin_options()).pipeline();
        for key in keys {
            let _: () = pipeline.strlen(key.clone()).await?;
        }
        self.breaker
            .guarded("STRLEN", Guard::Admin, pipeline.all())
            .await
    }
}
