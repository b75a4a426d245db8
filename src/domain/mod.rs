//! The core, without I/O: no store, no network, no clock (callers pass `now`). Nothing here
//! imports an adapter (`store`, `bundles`, `api`, `ops`, `cli`, `dashboard`, `runtime`).
//!
//! - `protocol`: the plugin's wire types, request validation, answer shapes
//! - `decide`: what a device gets (`decide_update`), and `trace` for `updraft explain`
//! - `version`: version strings as devices and operators write them
//! - `item`: attribute values, the contract's attribute names, typed reads and writes
//! - `keys`: sort keys and what a release item targets
//! - `release`: a release item and its rollout, parsed; `snapshot`: an app's items, grouped
//! - `share`: rollout shares in 0.01 % steps; `rollout`: cohorts, the gate, rollout changes
//! - `policy`: which attributes are channel policy and how releases keep them
//! - `pause`: the pause rule and what pause and resume write
//! - `history`: change entries, revisions, what rollback goes back to
//! - `health`: the auto-pause rule; `evidence`: the devices and networks it counts;
//!   `hourly`: evidence counted per hour
//! - `stats`: device events: parsing, the actions counted, folding a batch
//! - `device`: what the server keeps about a device
//! - `manifest`: delta-update manifests and the plugin's manifest gate
//! - `check_counts`: update-check counts for metrics

pub mod check_counts;
pub mod decide;
pub mod device;
pub mod evidence;
pub mod health;
pub mod history;
pub mod hourly;
pub mod item;
pub mod keys;
pub mod manifest;
pub mod pause;
pub mod policy;
pub mod protocol;
pub mod release;
pub mod rollout;
pub mod share;
pub mod snapshot;
pub mod stats;
pub mod trace;
pub mod version;
