//! Where items live. Small traits, one capability each, each with a DynamoDB implementation
//! (`dynamo/`) and an embedded SQLite one (`embedded/`), the same file name per capability in
//! both folders; the cache in front of the update check's reads (`cache`) is shared.
//!
//! | trait | capability | file |
//! |---|---|---|
//! | `ReleaseStore` | an app's settings and release items, in one round trip | `releases.rs` |
//! | `ItemWriter`, `ItemQuery` | operators' item reads, writes, listings, deletes | `items.rs` |
//! | `HistoryStore` | a conditional change with its history entry, atomically | `history.rs` |
//! | `DeviceStore` | per-device channel overrides and failed versions | `devices.rs` |
//! | `StatsSink` | per-release action counters, a batch at a time | `stats.rs` |
//! | `EvidenceStore` | devices and networks that attempted or failed a release | `evidence.rs` |

pub mod cache;
pub mod dynamo;
pub mod embedded;

use async_trait::async_trait;

use crate::domain::device::{ChannelSource, DeviceState};
use crate::domain::evidence::{Evidence, EvidenceKey, EvidenceMark};
use crate::domain::history::{Expected, HistoryEntry};
use crate::domain::hourly::HourlyCount;
use crate::domain::item::Item;
use crate::domain::snapshot::AppSnapshot;
use crate::domain::stats::fold::{ActionCounts, CounterKey, StatsBatch};

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

/// Where device events are counted: per-release action counters (sharded on DynamoDB) and
/// the devices' failed versions.
#[async_trait]
pub trait StatsSink: Send + Sync {
    /// Writes a whole batch or nothing, so the plugin can resend a batch that got a 503
    /// without double counting; a batch already applied (same `id`) is not applied again.
    async fn record(&self, batch: &StatsBatch) -> Result<(), StoreError>;
    /// The action counts of one release.
    async fn counts(&self, key: &CounterKey) -> Result<ActionCounts, StoreError>;
    /// The action counts of every release of an app.
    async fn app_counts(&self, app_id: &str)
    -> Result<Vec<(CounterKey, ActionCounts)>, StoreError>;
}

/// The evidence about releases that one client cannot fake (`domain::evidence`): which
/// devices, from which networks, attempted or failed each release.
#[async_trait]
pub trait EvidenceStore: Send + Sync {
    /// Records evidence marks at time `now` (unix seconds): each (release, kind, device)
    /// counts once, and only while its network has counted fewer than `network_cap` devices
    /// of that kind; each counted mark also adds to its version's count of `now`'s hour
    /// (`domain::hourly`). Returns the evidence of each release for which this call counted a
    /// new failure (only those can pause).
    async fn record_evidence(
        &self,
        marks: &[EvidenceMark],
        now: u64,
    ) -> Result<Vec<(EvidenceKey, Evidence)>, StoreError>;
    /// The evidence recorded so far for one release (zero when none): what a rollout's health
    /// gate reads.
    async fn evidence(&self, key: &EvidenceKey) -> Result<Evidence, StoreError>;
    /// The hourly evidence counts of every release item of an app, from `since_hour` on (at
    /// most `HOURLY_KEEP_SECS` back), in hour order: the dashboard's curves.
    async fn hourly(&self, app_id: &str, since_hour: u64) -> Result<Vec<HourlyCount>, StoreError>;
}

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
