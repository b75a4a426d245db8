//! Device events sent to `statsUrl` (protocol.md §5).
//!
//! - `events`: parsing and validating a stats body, with bounded memory
//! - `actions`: which actions are failures, installs, or counted under their own name
//! - `fold`: what one request may write: counters, a device's failed versions, evidence

pub mod actions;
pub mod events;
pub mod fold;
