//! Updraft: a self-hosted, serverless live-update server for Capacitor apps that use
//! `@capgo/capacitor-updater`. See README.md and design.md for the contracts.

pub mod api;
pub mod aws;
pub mod backend;
pub mod bundle_zip;
pub mod bundles;
pub mod cli;
pub mod decide;
pub mod device;
pub mod health;
pub mod lambda;
pub mod operator;
pub mod protocol;
pub mod publish;
pub mod release;
pub mod stats;
pub mod store;
pub mod version;
