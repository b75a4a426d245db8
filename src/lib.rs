//! Updraft: a self-hosted, serverless live-update server for Capacitor apps that use
//! `@capgo/capacitor-updater`. See README.md for the contracts.
//!
//! The tree shows the core and its adapters: `domain` has no I/O (wire types, the decision,
//! items, policy, health); `store` and `bundles` keep items and objects (embedded and AWS);
//! `api` is the HTTP router, `cli` the operator commands, `lambda` the Lambda entrypoint, and
//! `backend` wires a store and bundle storage from flags or the environment, `logging`
//! sets up logs.

pub mod api;
pub mod aws;
pub mod backend;
pub mod bundle_files;
pub mod bundle_zip;
pub mod bundles;
pub mod cli;
pub mod dashboard;
pub mod domain;
pub mod lambda;
pub mod logging;
pub mod metrics;
pub mod rollouts;
pub mod store;
