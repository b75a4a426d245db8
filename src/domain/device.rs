//! What the server remembers about one device (design.md §3, devices table): a channel
//! override and the versions that failed on it.

use std::collections::BTreeSet;

/// Who chose a device's channel override.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelSource {
    /// `updraft device set-channel` (e.g. QA devices on `beta`).
    Operator,
    /// The device itself, with `setChannel` from a plugin older than 7.34 (newer plugins keep
    /// their choice on the device and send it as `defaultChannel`).
    Device,
}

impl ChannelSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelSource::Operator => "operator",
            ChannelSource::Device => "device",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "operator" => Some(Self::Operator),
            "device" => Some(Self::Device),
            _ => None,
        }
    }
}

/// One device's item.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DeviceState {
    pub channel: Option<String>,
    pub channel_source: Option<ChannelSource>,
    /// Versions that failed deterministically on this device (`update_fail`, `checksum_fail`,
    /// …): never offered to it again.
    pub failed_versions: BTreeSet<String>,
    /// Unix seconds of the last failure the device reported.
    pub last_seen: Option<u64>,
}

/// How long a device item lives after its last write, unless `UPDRAFT_DEVICE_TTL` says
/// otherwise: 90 days, then DynamoDB's TTL (or the embedded store's sweep) removes it.
pub const DEFAULT_DEVICE_TTL_SECS: u64 = 90 * 24 * 3600;
