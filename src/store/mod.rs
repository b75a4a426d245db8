//! Where release items live. Small traits, one capability each, with an embedded (SQLite)
//! implementation here and a DynamoDB one for AWS; the cache in front of reads is shared.

pub mod cache;
pub mod dynamo;
pub mod dynamo_devices;
pub mod dynamo_history;
pub mod dynamo_stats;
pub mod embedded;
pub mod embedded_device_side;
pub mod embedded_history;

use async_trait::async_trait;

use crate::domain::device::{ChannelSource, DeviceState};
use crate::domain::evidence::{Evidence, EvidenceKey, EvidenceMark};
use crate::domain::health::Health;
use crate::domain::history::{Expected, HistoryAction, HistoryEntry};
use crate::domain::hourly::HourlyCount;
use crate::domain::release::{AppSnapshot, Item, parse_release_sk};
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
///
/// An existing file is only chmod-ed, never opened: closing any descriptor of the database
/// drops every POSIX lock this process holds on it, including the shared lock each WAL
/// connection keeps. Another process closing its last connection would then believe it was
/// the last one, delete the WAL index, and leave this process's readers on a stale snapshot.
pub fn private_file(path: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        if !path.exists() {
            let mut open = std::fs::OpenOptions::new();
            open.write(true).create(true).truncate(false).mode(0o600);
            drop(open.open(path)?);
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    if !path.exists() {
        drop(
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .open(path)?,
        );
    }
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
    /// Writes the `device_overrides` marker of every app with a device override (overrides
    /// written before the marker existed); the apps, sorted. Reads every device item: for
    /// operators, never on the serving path.
    async fn mark_existing_overrides(&self) -> Result<Vec<String>, StoreError>;
}

/// Where device events land: per-release action counters (sharded on DynamoDB) and the
/// devices' failed versions.
#[async_trait]
pub trait StatsSink: Send + Sync {
    /// Writes a whole batch or nothing, so the plugin can resend a batch that got a 503
    /// without double counting; a batch already applied (same `id`) is not applied again.
    async fn record(&self, batch: &StatsBatch) -> Result<(), StoreError>;
    /// Records evidence marks: each (release, kind, device) counts once, and only while its
    /// network has counted fewer than `network_cap` devices of that kind; each counted mark
    /// also adds to its version's count of this hour (`domain::hourly`). Returns the evidence
    /// of each release for which this call counted a new failure (only those can pause).
    async fn record_evidence(
        &self,
        marks: &[EvidenceMark],
    ) -> Result<Vec<(EvidenceKey, Evidence)>, StoreError>;
    /// The evidence recorded so far for one release (zero when none): what a rollout's health
    /// gate reads.
    async fn evidence(&self, key: &EvidenceKey) -> Result<Evidence, StoreError>;
    /// The action counts of one release.
    async fn counts(&self, key: &CounterKey) -> Result<ActionCounts, StoreError>;
    /// The action counts of every release of an app.
    async fn app_counts(&self, app_id: &str)
    -> Result<Vec<(CounterKey, ActionCounts)>, StoreError>;
    /// The hourly evidence counts of every release item of an app, from `since_hour` on (at
    /// most `HOURLY_KEEP_SECS` back), in hour order: the dashboard's curves.
    async fn hourly(&self, app_id: &str, since_hour: u64) -> Result<Vec<HourlyCount>, StoreError>;
}

/// Pausing and resuming release items, with conditions so that a pause never lands on a
/// release that changed meanwhile. Each writes its history entry in the same atomic write.
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
    /// towards the next automatic pause. `false` when there is no such release item or it no
    /// longer serves `resume.version`.
    async fn resume_release(
        &self,
        app_id: &str,
        sk: &str,
        resume: &ResumeRequest,
    ) -> Result<bool, StoreError>;
}

/// A conditional pause. The store writes the pause and its history entry in one atomic write.
#[derive(Debug, Clone, PartialEq)]
pub struct PauseRequest {
    pub version: String,
    pub reason: String,
    pub now: u64,
    pub cooldown_secs: u64,
    /// Who pauses: an operator (OS user or AWS principal), or `None` for the automatic pause.
    pub who: Option<String>,
}

/// A conditional resume: only while the item still serves `version`.
#[derive(Debug, Clone, PartialEq)]
pub struct ResumeRequest {
    pub version: String,
    pub now: u64,
    /// Counts at this moment: only later events count towards the next automatic pause.
    pub baseline: Health,
    pub who: String,
}

/// Who history names for automatic changes.
pub const AUTOMATIC: &str = "updraft (automatic)";

/// Operator listings: items by sort-key prefix, the apps a store holds, and deletes. Never on
/// the hot path.
#[async_trait]
pub trait ItemQuery: Send + Sync {
    /// Items of partition `pk` whose sort key starts with `prefix`, in sort-key order
    /// (reversed with `descending`), at most `limit`.
    async fn query_prefix(
        &self,
        pk: &str,
        prefix: &str,
        descending: bool,
        limit: Option<usize>,
    ) -> Result<Vec<(String, Item)>, StoreError>;
    /// Every app id that has items (history partitions excluded), sorted.
    async fn app_ids(&self) -> Result<Vec<String>, StoreError>;
    /// Deletes an item; `false` when there was none.
    async fn delete_item(&self, pk: &str, sk: &str) -> Result<bool, StoreError>;
}

/// Changes a release (or `app`) item and appends its history entry in one atomic write
/// (one SQLite transaction; one DynamoDB `TransactWriteItems`), conditioned on the item's
/// revision so that of two operators changing one channel at once exactly one wins.
#[async_trait]
pub trait HistoryStore: Send + Sync {
    /// Replaces item `sk` of `app_id` with `item` (which carries the next revision) and
    /// appends `entry`, only if the item is still as `expected`; `StoreError::Conflict`
    /// when it changed meanwhile.
    async fn change_with_history(
        &self,
        app_id: &str,
        sk: &str,
        expected: Expected,
        item: &Item,
        entry: &HistoryEntry,
    ) -> Result<(), StoreError>;
}

/// The sentence a lost race gets.
pub fn conflict(app_id: &str, sk: &str) -> StoreError {
    StoreError::Conflict(format!(
        "{sk} of {app_id} was changed by someone else while this command ran; see `updraft history --app {app_id}` and run it again"
    ))
}

/// The history entry of a pause (`who` `None`: the automatic pause).
pub fn pause_entry(sk: &str, pause: &PauseRequest, at_micros: u64) -> HistoryEntry {
    let (channel, platform) = channel_platform(sk);
    HistoryEntry {
        at_micros,
        action: if pause.who.is_some() {
            HistoryAction::Pause
        } else {
            HistoryAction::AutoPause
        },
        channel,
        platform,
        from_version: Some(pause.version.clone()),
        to_version: Some(pause.version.clone()),
        who: pause.who.clone().unwrap_or_else(|| AUTOMATIC.to_owned()),
        detail: Some(pause.reason.clone()),
    }
}

/// The history entry of a resume.
pub fn resume_entry(sk: &str, resume: &ResumeRequest, at_micros: u64) -> HistoryEntry {
    let (channel, platform) = channel_platform(sk);
    HistoryEntry {
        at_micros,
        action: HistoryAction::Resume,
        channel,
        platform,
        from_version: Some(resume.version.clone()),
        to_version: Some(resume.version.clone()),
        who: resume.who.clone(),
        detail: None,
    }
}

fn channel_platform(sk: &str) -> (String, String) {
    match parse_release_sk(sk) {
        Some((c, t)) => (c.to_owned(), t.as_str().to_owned()),
        None => (sk.to_owned(), "all".to_owned()),
    }
}

/// Microseconds since the Unix epoch: the time (and order) of history entries.
pub fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
