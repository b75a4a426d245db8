//! What every handler shares, built once per process by the runtime (`runtime::backend`) from
//! the store traits and bundle storage: the handlers never know which backend they run on.

use std::sync::Arc;

use crate::bundles::UrlSigner;
use crate::bundles::file_urls::FileUrls;
use crate::bundles::local::LocalBundles;
use crate::bundles::manifests::CachedManifests;
use crate::clock::Clock;
use crate::store::cache::CachedReleases;
use crate::store::{DeviceStore, EvidenceStore, HistoryStore, ItemWriter, StatsSink};

/// Where update checks are counted: CloudWatch metrics on Lambda (`runtime::emf`), nowhere
/// locally (`serve`'s operators read the log lines).
pub trait CheckCounter: Send + Sync {
    /// Counts one check by app, channel, version and decision (labels of stored items only).
    fn count(&self, app: &str, channel: &str, version: &str, decision: &'static str);
}

/// Counts nothing.
pub struct NoCheckCounts;

impl CheckCounter for NoCheckCounts {
    #[inline]
    fn count(&self, _: &str, _: &str, _: &str, _: &'static str) {}
}

/// What every handler shares.
pub struct AppState {
    pub releases: CachedReleases,
    pub devices: Arc<dyn DeviceStore>,
    pub stats: Arc<dyn StatsSink>,
    pub evidence: Arc<dyn EvidenceStore>,
    /// The automatic pause reads the release item and writes it with its history entry.
    pub items: Arc<dyn ItemWriter>,
    pub history: Arc<dyn HistoryStore>,
    pub signer: Arc<dyn UrlSigner>,
    /// Set when this process serves bundles itself (embedded mode).
    pub local_bundles: Option<LocalBundles>,
    /// The origin devices reach this server at; when unset, taken from each request's Host.
    pub public_url: Option<String>,
    /// Delta updates: manifests and short file URLs (`None`: zip-only answers).
    pub delta: Option<Delta>,
    /// Update-check counts (CloudWatch metrics on Lambda).
    pub metrics: Arc<dyn CheckCounter>,
    pub clock: Arc<dyn Clock>,
}

/// What delta answers need: the manifest cache and the signer of `/f/` URLs.
pub struct Delta {
    pub manifests: CachedManifests,
    pub urls: FileUrls,
}
