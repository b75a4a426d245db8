//! The `UPDRAFT_CACHE_TTL` cache in front of a `ReleaseStore`: a warm process reads an app's
//! releases at most once per TTL, so the update check usually costs no store round trip.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::domain::snapshot::AppSnapshot;
use crate::store::{ReleaseStore, StoreError};

/// How many apps a process remembers; strangers sending random app ids cannot grow it further.
const MAX_APPS: usize = 10_000;

/// When the store fails, a snapshot this much older than its TTL is still served rather than
/// answering every device with an error: the releases it names were valid moments ago.
const STALE_IF_ERROR: Duration = Duration::from_secs(300);

type Entry = (Instant, Option<Arc<AppSnapshot>>);

/// Caches each app's snapshot (or its absence) for `ttl`; `ttl` zero reads every time.
pub struct CachedReleases {
    inner: Arc<dyn ReleaseStore>,
    ttl: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

impl CachedReleases {
    pub fn new(inner: Arc<dyn ReleaseStore>, ttl: Duration) -> Self {
        CachedReleases {
            inner,
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The app's snapshot when the cache holds a fresh one (or its fresh absence); `None` when
    /// a `get` would go to the store.
    pub fn fresh(&self, app_id: &str) -> Option<Option<Arc<AppSnapshot>>> {
        let (at, snap) = self.lock().get(app_id).cloned()?;
        (Instant::now().duration_since(at) < self.ttl).then_some(snap)
    }

    /// The app's snapshot, from the cache when fresh, else from the store.
    pub async fn get(&self, app_id: &str) -> Result<Option<Arc<AppSnapshot>>, StoreError> {
        let now = Instant::now();
        let cached = self.lock().get(app_id).cloned();
        if let Some((at, snap)) = &cached
            && now.duration_since(*at) < self.ttl
        {
            return Ok(snap.clone());
        }
        match self.inner.load_app(app_id).await {
            Ok(snap) => {
                let snap = snap.map(Arc::new);
                if !self.ttl.is_zero() {
                    let mut entries = self.lock();
                    if entries.len() >= MAX_APPS && !entries.contains_key(app_id) {
                        let ttl = self.ttl;
                        entries.retain(|_, (at, _)| now.duration_since(*at) < ttl);
                        if entries.len() >= MAX_APPS {
                            entries.clear();
                        }
                    }
                    entries.insert(app_id.to_owned(), (now, snap.clone()));
                }
                Ok(snap)
            }
            Err(e) => match cached {
                Some((at, snap)) if now.duration_since(at) < self.ttl + STALE_IF_ERROR => {
                    tracing::warn!(app_id, error = %e, "release store failed; serving the cached releases");
                    Ok(snap)
                }
                _ => Err(e),
            },
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding this lock cannot leave the map half-updated, so poison is moot.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts reads and fails on demand, to observe the cache from outside.
    struct Counting {
        reads: AtomicUsize,
        fail: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl ReleaseStore for Counting {
        async fn load_app(&self, app_id: &str) -> Result<Option<AppSnapshot>, StoreError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            if self.fail.load(Ordering::SeqCst) {
                return Err(StoreError::Unavailable("down".into()));
            }
            Ok((app_id == "com.known.app").then(AppSnapshot::default))
        }
    }

    fn counting() -> Arc<Counting> {
        Arc::new(Counting {
            reads: AtomicUsize::new(0),
            fail: false.into(),
        })
    }

    #[tokio::test]
    async fn reads_once_per_ttl_and_remembers_absence() {
        let store = counting();
        let cache = CachedReleases::new(store.clone(), Duration::from_secs(60));
        assert!(cache.get("com.known.app").await.unwrap().is_some());
        assert!(cache.get("com.known.app").await.unwrap().is_some());
        assert!(cache.get("com.other.app").await.unwrap().is_none());
        assert!(cache.get("com.other.app").await.unwrap().is_none());
        assert_eq!(store.reads.load(Ordering::SeqCst), 2);
        assert!(cache.fresh("com.known.app").is_some_and(|s| s.is_some()));
        assert!(cache.fresh("com.other.app").is_some_and(|s| s.is_none()));
        assert!(cache.fresh("com.never.read").is_none());
        assert_eq!(store.reads.load(Ordering::SeqCst), 2, "fresh never reads");
    }

    #[tokio::test]
    async fn zero_ttl_always_reads_and_errors_pass_through_without_cache() {
        let store = counting();
        let cache = CachedReleases::new(store.clone(), Duration::ZERO);
        cache.get("com.known.app").await.unwrap();
        cache.get("com.known.app").await.unwrap();
        assert_eq!(store.reads.load(Ordering::SeqCst), 2);
        store.fail.store(true, Ordering::SeqCst);
        assert!(cache.get("com.known.app").await.is_err());
    }

    #[tokio::test]
    async fn serves_stale_snapshot_when_the_store_fails() {
        let store = counting();
        let cache = CachedReleases::new(store.clone(), Duration::from_millis(1));
        assert!(cache.get("com.known.app").await.unwrap().is_some());
        tokio::time::sleep(Duration::from_millis(5)).await;
        store.fail.store(true, Ordering::SeqCst);
        assert!(cache.get("com.known.app").await.unwrap().is_some());
        assert!(cache.get("com.never.seen").await.is_err());
    }
}
