//! Counters of the warm-process template cache, for the stats route and the logs.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

#[derive(Default)]
pub(crate) struct Counters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub refreshes: AtomicU64,
    pub listings: AtomicU64,
    pub not_modified: AtomicU64,
    pub bodies_fetched: AtomicU64,
    pub invalidations: AtomicU64,
    pub last_refresh: Mutex<Option<SystemTime>>,
}

impl Counters {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn refreshed(&self) {
        if let Ok(mut last) = self.last_refresh.lock() {
            *last = Some(SystemTime::now());
        }
    }

    pub fn snapshot(&self, entries: usize, files: usize, ttl_secs: u64, instance_type_calls: u64) -> CacheStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let last_refresh = self.last_refresh.lock().ok().and_then(|last| *last);
        CacheStats {
            hits: load(&self.hits),
            misses: load(&self.misses),
            refreshes: load(&self.refreshes),
            listings: load(&self.listings),
            not_modified: load(&self.not_modified),
            bodies_fetched: load(&self.bodies_fetched),
            invalidations: load(&self.invalidations),
            instance_type_calls,
            entries,
            files,
            ttl_secs,
            last_refresh_epoch: last_refresh.and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_secs()),
        }
    }
}

/// Cache statistics (`GET /api/v1/templates/cache`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheStats {
    /// Listings answered from the cache within the TTL.
    pub hits: u64,
    /// Listings of a provider instance not cached yet.
    pub misses: u64,
    /// Listings that revalidated an expired (or force-refreshed) entry.
    pub refreshes: u64,
    /// Listings of the location revalidations made (S3 ListObjectsV2 of the prefix, or a
    /// directory read): one per miss or refresh.
    pub listings: u64,
    /// Files a revalidation did not read because the listing shows the version held (S3 ETag,
    /// folder modification time and length).
    pub not_modified: u64,
    /// Files read whole (new, or changed since the version held).
    pub bodies_fetched: u64,
    /// Cache drops after a write.
    pub invalidations: u64,
    /// `DescribeInstanceTypes` calls made for attribute derivation.
    pub instance_type_calls: u64,
    /// Provider instances cached.
    pub entries: usize,
    /// Files cached.
    pub files: usize,
    pub ttl_secs: u64,
    /// Seconds since the epoch of the last revalidation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_refresh_epoch: Option<u64>,
}
