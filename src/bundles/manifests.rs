//! Manifests for update answers, read from the object store at most once per cache period per
//! manifest (they are immutable: the key names the zip's SHA-256), never once per check.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::bundles::{BundleError, ObjectReader};
use crate::domain::manifest::Manifest;

/// Largest manifest object read (a 100,000-file bundle's manifest is about 20 MB).
pub const MAX_MANIFEST_BYTES: usize = 32 << 20;
/// Manifests a process remembers; beyond that the oldest are dropped.
const MAX_MANIFESTS: usize = 256;

type Entry = (Instant, Arc<Manifest>);

/// The manifest cache in front of an object store.
pub struct CachedManifests {
    reader: Arc<dyn ObjectReader>,
    ttl: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

/// Parses a stored manifest object.
pub fn parse_manifest(key: &str, bytes: &[u8]) -> Result<Manifest, BundleError> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(BundleError::Mismatch {
            key: key.to_owned(),
            why: format!("manifest larger than {MAX_MANIFEST_BYTES} bytes"),
        });
    }
    serde_json::from_slice(bytes).map_err(|e| BundleError::Mismatch {
        key: key.to_owned(),
        why: format!("not a manifest: {e}"),
    })
}

impl CachedManifests {
    pub fn new(reader: Arc<dyn ObjectReader>, ttl: Duration) -> Self {
        CachedManifests {
            reader,
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The manifest stored under `key`; `None` when the object is missing.
    pub async fn get(&self, key: &str) -> Result<Option<Arc<Manifest>>, BundleError> {
        let now = Instant::now();
        if let Some((at, m)) = self.lock().get(key)
            && now.duration_since(*at) < self.ttl
        {
            return Ok(Some(m.clone()));
        }
        let Some(bytes) = self.reader.get_object(key).await? else {
            return Ok(None);
        };
        let manifest = Arc::new(parse_manifest(key, &bytes)?);
        if !self.ttl.is_zero() {
            let mut entries = self.lock();
            if entries.len() >= MAX_MANIFESTS {
                let ttl = self.ttl;
                entries.retain(|_, (at, _)| now.duration_since(*at) < ttl);
                if entries.len() >= MAX_MANIFESTS {
                    entries.clear();
                }
            }
            entries.insert(key.to_owned(), (now, manifest.clone()));
        }
        Ok(Some(manifest))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting(AtomicUsize);

    #[async_trait]
    impl ObjectReader for Counting {
        async fn get_object(&self, key: &str) -> Result<Option<Vec<u8>>, BundleError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok((key == "m").then(|| br#"{"files":[]}"#.to_vec()))
        }
    }

    #[tokio::test]
    async fn one_read_per_cache_period() {
        let reader = Arc::new(Counting(AtomicUsize::new(0)));
        let cache = CachedManifests::new(reader.clone(), Duration::from_secs(60));
        for _ in 0..5 {
            assert!(cache.get("m").await.unwrap().is_some());
        }
        assert_eq!(reader.0.load(Ordering::SeqCst), 1);
        assert!(cache.get("missing").await.unwrap().is_none());
        let uncached = CachedManifests::new(reader.clone(), Duration::ZERO);
        uncached.get("m").await.unwrap();
        uncached.get("m").await.unwrap();
        assert_eq!(reader.0.load(Ordering::SeqCst), 4);
    }
}
