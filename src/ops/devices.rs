//! Per-device state for operators: channel overrides (QA devices on `beta`), what the server
//! knows about a device, and marking apps whose overrides predate the `device_overrides`
//! marker.

use std::fmt;

use serde::Serialize;

use crate::domain::device::{ChannelSource, DeviceState};
use crate::ops::OperatorStores;
use crate::ops::apps::{require_app, require_channel};

/// The device id as the plugin sends it (a lowercase UUID), or a one-sentence error.
fn device_id(id: &str) -> anyhow::Result<String> {
    let id = id.to_ascii_lowercase();
    anyhow::ensure!(
        uuid::Uuid::parse_str(&id).is_ok(),
        "--device must be the device's UUID (the plugin's device_id)"
    );
    Ok(id)
}

/// A device's channel override after `set_channel` / `unset_channel`.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceChannel {
    pub app_id: String,
    pub device_id: String,
    pub channel: Option<String>,
}

impl fmt::Display for DeviceChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (app, device) = (&self.app_id, &self.device_id);
        match &self.channel {
            Some(c) => write!(
                f,
                "Device {device} of {app} now gets channel {c}, whatever it asks for."
            ),
            None => write!(f, "Device {device} of {app} follows its own channel again."),
        }
    }
}

/// `updraft device set-channel`: the device gets `channel` whatever it asks for.
pub async fn set_channel(
    stores: &OperatorStores,
    app_id: &str,
    device: &str,
    channel: &str,
) -> anyhow::Result<DeviceChannel> {
    let device_id = device_id(device)?;
    let snap = require_app(stores, app_id).await?;
    require_channel(&snap, app_id, channel)?;
    stores
        .devices
        .set_channel(app_id, &device_id, channel, ChannelSource::Operator)
        .await?;
    Ok(DeviceChannel {
        app_id: app_id.to_owned(),
        device_id,
        channel: Some(channel.to_owned()),
    })
}

/// `updraft device unset-channel`: removes any override of the device.
pub async fn unset_channel(
    stores: &OperatorStores,
    app_id: &str,
    device: &str,
) -> anyhow::Result<DeviceChannel> {
    let device_id = device_id(device)?;
    require_app(stores, app_id).await?;
    stores
        .devices
        .unset_channel(app_id, &device_id, None)
        .await?;
    Ok(DeviceChannel {
        app_id: app_id.to_owned(),
        device_id,
        channel: None,
    })
}

/// What the server knows about one device (`None`: nothing).
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct DeviceShown {
    pub state: Option<DeviceState>,
    #[serde(skip)]
    pub app_id: String,
    #[serde(skip)]
    pub device_id: String,
}

/// `updraft device show`.
pub async fn show(
    stores: &OperatorStores,
    app_id: &str,
    device: &str,
) -> anyhow::Result<DeviceShown> {
    let device_id = device_id(device)?;
    require_app(stores, app_id).await?;
    let state = stores.devices.get_device(app_id, &device_id).await?;
    Ok(DeviceShown {
        state,
        app_id: app_id.to_owned(),
        device_id,
    })
}

/// The apps `mark-overrides` marked.
#[derive(Debug, Clone, Serialize)]
pub struct MarkedOverrides {
    pub apps: Vec<String>,
}

impl fmt::Display for MarkedOverrides {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.apps.is_empty() {
            return write!(f, "No device has a channel override: nothing to mark.");
        }
        write!(
            f,
            "Marked {} app(s) with device overrides: {}. Their update checks read the device's item again from the next cache refresh.",
            self.apps.len(),
            self.apps.join(", ")
        )
    }
}

/// `updraft device mark-overrides`: the `device_overrides` marker of every app that has a
/// device override, for overrides written before updraft kept the marker.
pub async fn mark_overrides(stores: &OperatorStores) -> anyhow::Result<MarkedOverrides> {
    Ok(MarkedOverrides {
        apps: stores.devices.mark_existing_overrides().await?,
    })
}
