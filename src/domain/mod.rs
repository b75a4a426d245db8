//! The core, without I/O: what the plugin sends and gets (`protocol`), what a device gets
//! (`decide`), the item contract (`item`, `release`), release health (`health`) and its hourly counts (`hourly`), device events
//! (`stats`), device state (`device`), version rules (`version`), channel policy (`policy`), staged rollouts
//! (`rollout`), the decision's trace (`trace`), the dashboard's curves (`chart`),
//! update-check counts for metrics (`metrics`)
//! and the change history (`history`). Nothing here imports an
//! adapter (store, bundles, api, cli, lambda).

pub mod chart;
pub mod decide;
pub mod device;
pub mod evidence;
pub mod health;
pub mod history;
pub mod hourly;
pub mod item;
pub mod manifest;
pub mod metrics;
pub mod policy;
pub mod protocol;
pub mod release;
pub mod rollout;
pub mod stats;
pub mod trace;
pub mod version;
