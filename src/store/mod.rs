//! Where release items live. Small traits, one capability each, with an embedded (SQLite)
//! implementation here and a DynamoDB one for AWS; the cache in front of reads is shared.

pub mod cache;
pub mod dynamo;
pub mod dynamo_devices;
pub mod dynamo_stats;
pub mod embedded;
pub mod embedded_device_side;

use async_trait::async_trait;

use crate::domain::device::{ChannelSource, DeviceState};
use crate::domain::evidence::{Evidence, EvidenceKey, EvidenceMark};
use crate::domain::health::Health;
use crate::domain::release::{AppSnapshot, Item};
use crate::domain::stats::{ActionCounts, CounterKey, StatsBatch};

/// Creates the data folder (and its parents) and makes it private to this user (0700): it
/// holds the database and the secret that signs download URLs.
pub fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Makes a file readable and writable by this user only (0600), creating it empty if needed,
/// before anything is written to it. SQLite gives its `-wal` and `-shm` files the same mode.
pub fn private_file(path: &std::path::Path) -> std::io::Result<()> {
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        open.mode(0o600);
        drop(open.open(path)?);
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    drop(open.open(path)?);
    Ok(())
}

/// A store failure. The detail is for logs; devices only learn that the service is unavailable.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the release store is unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Conflict(String),
}

/// Reads what an update check needs: the app's settings and release items, in one round trip.
#[async_trait]
pub trait ReleaseStore: Send + Sync {
    /// `None` when the app has no items at all.
    async fn load_app(&self, app_id: &str) -> Result<Option<AppSnapshot>, StoreError>;
}

/// Writes items, for operators (`updraft release`); never reachable from the public API.
#[async_trait]
pub trait ItemWriter: Send + Sync {
    async fn get_item(&self, app_id: &str, sk: &str) -> Result<Option<Item>, StoreError>;
    /// Writes an item unless one with that key exists; `false` when it did.
    async fn put_item_if_absent(
        &self,
        app_id: &str,
        sk: &str,
        item: &Item,
    ) -> Result<bool, StoreError>;
    /// Writes (or replaces) an item.
    async fn put_item(&self, app_id: &str, sk: &str, item: &Item) -> Result<(), StoreError>;
}

/// Per-device state: channel overrides and failed versions (the devices table).
#[async_trait]
pub trait DeviceStore: Send + Sync {
    /// One device's item; `None` for a device never written.
    async fn get_device(
        &self,
        app_id: &str,
        device_id: &str,
    ) -> Result<Option<DeviceState>, StoreError>;
    /// Sets the device's channel override. A device's own choice (`ChannelSource::Device`)
    /// never replaces an operator's assignment: it is then ignored.
    async fn set_channel(
        &self,
        app_id: &str,
        device_id: &str,
        channel: &str,
        source: ChannelSource,
    ) -> Result<(), StoreError>;
    /// Removes the override; with `only`, only an override set by that source (an old plugin's
    /// unsetChannel must not undo an operator's assignment).
    async fn unset_channel(
        &self,
        app_id: &str,
        device_id: &str,
        only: Option<ChannelSource>,
    ) -> Result<(), StoreError>;
}

/// Where device events land: per-release action counters (sharded on DynamoDB) and the
/// devices' failed versions.
#[async_trait]
pub trait StatsSink: Send + Sync {
    /// Writes a whole batch or nothing, so the plugin can resend a batch that got a 503
    /// without double counting; a batch already applied (same `id`) is not applied again.
    async fn record(&self, batch: &StatsBatch) -> Result<(), StoreError>;
    /// Records evidence marks: each (release, kind, device) counts once, and only while its
    /// network has counted fewer than `network_cap` devices of that kind. Returns the evidence
    /// of each release for which this call counted a new failure (only those can pause).
    async fn record_evidence(
        &self,
        marks: &[EvidenceMark],
    ) -> Result<Vec<(EvidenceKey, Evidence)>, StoreError>;
    /// The action counts of one release.
    async fn counts(&self, key: &CounterKey) -> Result<ActionCounts, StoreError>;
    /// The action counts of every release of an app.
    async fn app_counts(&self, app_id: &str)
    -> Result<Vec<(CounterKey, ActionCounts)>, StoreError>;
}

/// Pausing and resuming release items, with conditions so that a pause never lands on a
/// release that changed meanwhile.
#[async_trait]
pub trait ReleaseControl: Send + Sync {
    /// Pauses the release item `sk` if it still serves `version`, is not paused, and was not
    /// resumed less than `cooldown_secs` ago. `true` when it paused it.
    async fn pause_release(
        &self,
        app_id: &str,
        sk: &str,
        pause: &PauseRequest,
    ) -> Result<bool, StoreError>;
    /// Lifts a pause, recording the counts at this moment so that only later events count
    /// towards the next automatic pause. `false` when there is no such release item.
    async fn resume_release(
        &self,
        app_id: &str,
        sk: &str,
        now: u64,
        baseline: Health,
    ) -> Result<bool, StoreError>;
}

/// A conditional pause.
#[derive(Debug, Clone, PartialEq)]
pub struct PauseRequest {
    pub version: String,
    pub reason: String,
    pub now: u64,
    pub cooldown_secs: u64,
}
