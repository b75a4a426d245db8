//! Updraft: a self-hosted, serverless live-update server for Capacitor apps that use
//! `@capgo/capacitor-updater`. README.md holds the public contracts; docs/design.md and
//! docs/protocol.md the design and the plugin's wire protocol that the code cites.
//!
//! The tree shows the core and its adapters (arrows point inwards only):
//!
//! - `domain`: the core, without I/O: wire types, the update decision, items, policy, release
//!   health, rollouts, history
//! - `ops`: what operators do (release, rollback, pause, rollouts, …), as functions over the
//!   store traits that return typed results
//! - `store`: where items live: small traits, a DynamoDB and an embedded implementation
//! - `bundles`: where bundles live (S3 or a folder), their download URLs, zips and delta files
//! - `api`: the HTTP API the plugin talks to (one axum router)
//! - `cli`: the `updraft` command line; `dashboard`: the operator's web page
//! - `runtime`: the process's wiring: the Lambda entrypoint, backend selection, AWS
//!   configuration, logging, metrics
//! - `clock`: the one clock, injectable in tests

pub mod api;
pub mod bundles;
pub mod cli;
pub mod clock;
pub mod dashboard;
pub mod domain;
pub mod ops;
pub mod runtime;
pub mod store;
