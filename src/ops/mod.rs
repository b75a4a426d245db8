//! The operations layer: what operators do to releases, as functions over the store traits
//! that return typed results. `cli/` (text and `--json`), `dashboard/` (HTML) and the
//! scheduled rollout pass only call these and render what they return; nothing here knows
//! how it is shown. The one write-with-history step every change goes through is
//! `change::change_item`.
//!
//! - `apps`: reading an app as operators see it; `app set`, `app list`
//! - `change`: the revision-conditioned write of an item with its history entry
//! - `channels`: `channel set`, `channel list`
//! - `history`: history entries, newest first
//! - `publish`: `release` (check, upload, point a channel at it; start a rollout)
//! - `repoint`: `rollback`, `promote` (no upload)
//! - `pauses`: `pause`, `resume`, and the automatic pause of the stats path
//! - `health`: release health (`stats`)
//! - `devices`: per-device overrides and state
//! - `rollouts`: operators' rollout changes, `rollout status`, the gate's pass (`tick`)
//! - `explain`: the update check's decision for one device, with its trace
//! - `bundles`: stored bundles, and deleting what nothing serves
//! - `errors`: an error as one sentence with a hint

pub mod apps;
pub mod bundles;
pub mod change;
pub mod channels;
pub mod devices;
pub mod errors;
pub mod explain;
pub mod health;
pub mod history;
pub mod pauses;
pub mod publish;
pub mod repoint;
pub mod rollouts;

use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;

use crate::bundles::BundleStore;
use crate::clock::Clock;
use crate::store::{
    DeviceStore, EvidenceStore, HistoryStore, ItemQuery, ItemWriter, ReleaseStore, StatsSink,
};

/// Who history names for an operator's change.
#[async_trait]
pub trait Identity: Send + Sync {
    /// The OS user locally, the principal ARN on AWS.
    async fn who(&self) -> anyhow::Result<String>;
}

/// What operations read and write, opened once per command (or per dashboard, or per Lambda
/// instance for the scheduled pass).
pub struct OperatorStores {
    pub releases: Arc<dyn ReleaseStore>,
    pub items: Arc<dyn ItemWriter>,
    pub query: Arc<dyn ItemQuery>,
    pub history: Arc<dyn HistoryStore>,
    pub devices: Arc<dyn DeviceStore>,
    pub stats: Arc<dyn StatsSink>,
    pub evidence: Arc<dyn EvidenceStore>,
    /// `None` on AWS without `--bucket`: only commands that touch bundles need it.
    pub bundles: Option<Arc<dyn BundleStore>>,
    pub identity: Arc<dyn Identity>,
    pub clock: Arc<dyn Clock>,
}

impl OperatorStores {
    /// The bundle storage, or the one-sentence reason it is missing.
    pub fn bundles(&self) -> anyhow::Result<&dyn BundleStore> {
        self.bundles
            .as_deref()
            .context("--backend aws needs --bucket (or UPDRAFT_BUCKET) for bundles")
    }

    /// Who the change is made by.
    pub async fn who(&self) -> anyhow::Result<String> {
        self.identity.who().await
    }
}
