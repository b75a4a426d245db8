//! Operator commands beyond `release`: release health (`stats`), `pause`/`resume`, and
//! per-device overrides. They run against either backend through `OperatorStores`.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde::Serialize;

use crate::backend::OperatorStores;
use crate::cli::output::{Report, table};
use crate::cli::releases::{require_app, require_channel};
use crate::domain::device::ChannelSource;
use crate::domain::health::{Health, wilson_lower_bound};
use crate::domain::release::{AttrValue, Target, release_sk};
use crate::domain::stats::{ActionCounts, CounterKey, failures, installs};
use crate::store::{PauseRequest, ResumeRequest};

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One row of `updraft stats`.
#[derive(Debug, Serialize)]
pub struct ReleaseHealth {
    pub channel: String,
    pub version: String,
    /// Platforms whose release item serves this version now (`all`, `ios`, …).
    pub serving: Vec<String>,
    pub installs: u64,
    pub failures: u64,
    pub failure_rate: f64,
    /// Wilson 95% lower bound of the failure rate, what auto-pause compares.
    pub failure_rate_lower_bound: f64,
    pub paused: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_reason: Option<String>,
    pub actions: ActionCounts,
}

/// `updraft stats --app`: every release with counts, and every serving release.
pub async fn stats(stores: &OperatorStores, app_id: &str) -> anyhow::Result<Report> {
    let (snap, counts) = tokio::join!(require_app(stores, app_id), stores.stats.app_counts(app_id));
    stats_of(app_id, Some(&snap?), counts?)
}

/// `updraft stats` of an app and counters already read.
pub fn stats_of(
    app_id: &str,
    snap: Option<&crate::domain::release::AppSnapshot>,
    counts: Vec<(CounterKey, ActionCounts)>,
) -> anyhow::Result<Report> {
    let mut rows: BTreeMap<(String, String), ReleaseHealth> = BTreeMap::new();
    fn row<'r>(
        rows: &'r mut BTreeMap<(String, String), ReleaseHealth>,
        channel: &str,
        version: &str,
    ) -> &'r mut ReleaseHealth {
        rows.entry((channel.to_owned(), version.to_owned()))
            .or_insert_with(|| ReleaseHealth {
                channel: channel.to_owned(),
                version: version.to_owned(),
                serving: Vec::new(),
                installs: 0,
                failures: 0,
                failure_rate: 0.0,
                failure_rate_lower_bound: 0.0,
                paused: false,
                pause_reason: None,
                actions: ActionCounts::new(),
            })
    }
    for (
        CounterKey {
            channel, version, ..
        },
        actions,
    ) in counts
    {
        let r = row(&mut rows, &channel, &version);
        r.installs = installs(&actions);
        r.failures = failures(&actions);
        let attempts = r.installs + r.failures;
        if attempts > 0 {
            r.failure_rate = r.failures as f64 / attempts as f64;
            r.failure_rate_lower_bound = wilson_lower_bound(r.failures, attempts);
        }
        r.actions = actions;
    }
    if let Some(snap) = snap {
        for (channel, releases) in &snap.channels {
            for (target, release) in releases.targets() {
                let Ok(release) = release else { continue };
                let r = row(&mut rows, channel, &release.version_text);
                r.serving.push(target.as_str().to_owned());
                r.paused |= release.paused;
                if release.paused {
                    r.pause_reason = release.pause_reason.clone().or(r.pause_reason.take());
                }
            }
        }
    }
    let rows: Vec<ReleaseHealth> = rows.into_values().collect();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let state = match (&r.serving.is_empty(), r.paused) {
                (_, true) => format!("paused: {}", r.pause_reason.as_deref().unwrap_or("")),
                (false, false) => "live".to_owned(),
                (true, false) => "-".to_owned(),
            };
            vec![
                r.channel.clone(),
                r.version.clone(),
                if r.serving.is_empty() {
                    "-".to_owned()
                } else {
                    r.serving.join(",")
                },
                r.installs.to_string(),
                r.failures.to_string(),
                format!("{:.1}%", r.failure_rate * 100.0),
                state,
            ]
        })
        .collect();
    let text = if rows.is_empty() {
        format!("No releases or events for {app_id}.")
    } else {
        table(
            &[
                "CHANNEL", "VERSION", "SERVING", "INSTALLS", "FAILURES", "FAIL%", "STATE",
            ],
            &cells,
        )
    };
    Report::new(&rows, text)
}

/// The version `channel`/`target` serves, or a one-sentence error naming what exists.
async fn release_version(
    stores: &OperatorStores,
    app_id: &str,
    channel: &str,
    target: Target,
) -> anyhow::Result<String> {
    let snap = require_app(stores, app_id).await?;
    require_channel(&snap, app_id, channel)?;
    let sk = release_sk(channel, target);
    let item = stores.items.get_item(app_id, &sk).await?.with_context(|| {
        format!(
            "channel {channel} of {app_id} serves nothing on {} (see `updraft channel list --app {app_id}`)",
            target.as_str()
        )
    })?;
    match item.get("version") {
        Some(AttrValue::S(v)) => Ok(v.clone()),
        _ => bail!("the release item {sk} of {app_id} has no version"),
    }
}

/// What `pause` and `resume` did.
#[derive(Debug, Serialize)]
pub struct PauseState {
    pub app_id: String,
    pub channel: String,
    pub platform: String,
    pub version: String,
    pub paused: bool,
    /// False when there was nothing to do (already paused).
    pub changed: bool,
}

/// `updraft pause`.
pub async fn pause(
    stores: &OperatorStores,
    app_id: &str,
    channel: &str,
    target: Target,
    reason: &str,
) -> anyhow::Result<Report> {
    let sk = release_sk(channel, target);
    let version = release_version(stores, app_id, channel, target).await?;
    let req = PauseRequest {
        version: version.clone(),
        reason: reason.to_owned(),
        now: now_unix(),
        cooldown_secs: 0,
        who: Some(stores.identity.who().await?),
    };
    let changed = stores.control.pause_release(app_id, &sk, &req).await?;
    let text = if changed {
        format!(
            "Paused {app_id} {version} on {channel}/{}.",
            target.as_str()
        )
    } else {
        format!(
            "{app_id} {version} on {channel}/{} is already paused.",
            target.as_str()
        )
    };
    Report::new(
        &PauseState {
            app_id: app_id.to_owned(),
            channel: channel.to_owned(),
            platform: target.as_str().to_owned(),
            version,
            paused: true,
            changed,
        },
        text,
    )
}

/// `updraft resume`: lifts the pause and records the counts so far as the new baseline.
pub async fn resume(
    stores: &OperatorStores,
    app_id: &str,
    channel: &str,
    target: Target,
) -> anyhow::Result<Report> {
    let sk = release_sk(channel, target);
    let version = release_version(stores, app_id, channel, target).await?;
    let key = CounterKey {
        app_id: app_id.to_owned(),
        channel: channel.to_owned(),
        version: version.clone(),
    };
    let counts = stores.stats.counts(&key).await?;
    let baseline = Health {
        installs: installs(&counts),
        failures: failures(&counts),
    };
    let resume = ResumeRequest {
        version: version.clone(),
        now: now_unix(),
        baseline,
        who: stores.identity.who().await?,
    };
    if !stores.control.resume_release(app_id, &sk, &resume).await? {
        bail!(
            "{channel}/{} of {app_id} changed while resuming (it no longer serves {version}); see `updraft channel list --app {app_id}`",
            target.as_str()
        );
    }
    let text = format!(
        "Resumed {app_id} {version} on {channel}/{} (counting failures from now: {} installs, {} failures so far).",
        target.as_str(),
        baseline.installs,
        baseline.failures
    );
    Report::new(
        &PauseState {
            app_id: app_id.to_owned(),
            channel: channel.to_owned(),
            platform: target.as_str().to_owned(),
            version,
            paused: false,
            changed: true,
        },
        text,
    )
}

/// What `updraft device …` does.
pub enum DeviceAction<'a> {
    SetChannel(&'a str),
    UnsetChannel,
    Show,
}

/// `updraft device set-channel | unset-channel | show`.
/// `updraft device mark-overrides`: the `device_overrides` marker of every app that has a
/// device override, for overrides written before updraft kept the marker.
pub async fn mark_overrides(stores: &OperatorStores) -> anyhow::Result<Report> {
    let apps = stores.devices.mark_existing_overrides().await?;
    #[derive(Serialize)]
    struct Marked<'a> {
        apps: &'a [String],
    }
    let text = if apps.is_empty() {
        "No device has a channel override: nothing to mark.".to_owned()
    } else {
        format!(
            "Marked {} app(s) with device overrides: {}. Their update checks read the device's item again from the next cache refresh.",
            apps.len(),
            apps.join(", ")
        )
    };
    Report::new(&Marked { apps: &apps }, text)
}

pub async fn device(
    stores: &OperatorStores,
    app_id: &str,
    device_id: &str,
    action: DeviceAction<'_>,
) -> anyhow::Result<Report> {
    let device_id = device_id.to_ascii_lowercase();
    anyhow::ensure!(
        uuid::Uuid::parse_str(&device_id).is_ok(),
        "--device must be the device's UUID (the plugin's device_id)"
    );
    let snap = require_app(stores, app_id).await?;
    #[derive(Serialize)]
    struct DeviceChannel<'a> {
        app_id: &'a str,
        device_id: &'a str,
        channel: Option<&'a str>,
    }
    match action {
        DeviceAction::SetChannel(channel) => {
            require_channel(&snap, app_id, channel)?;
            stores
                .devices
                .set_channel(app_id, &device_id, channel, ChannelSource::Operator)
                .await?;
            Report::new(
                &DeviceChannel {
                    app_id,
                    device_id: &device_id,
                    channel: Some(channel),
                },
                format!(
                    "Device {device_id} of {app_id} now gets channel {channel}, whatever it asks for."
                ),
            )
        }
        DeviceAction::UnsetChannel => {
            stores
                .devices
                .unset_channel(app_id, &device_id, None)
                .await?;
            Report::new(
                &DeviceChannel {
                    app_id,
                    device_id: &device_id,
                    channel: None,
                },
                format!("Device {device_id} of {app_id} follows its own channel again."),
            )
        }
        DeviceAction::Show => {
            let device = stores.devices.get_device(app_id, &device_id).await?;
            let text = if let Some(d) = &device {
                let channel = match (&d.channel, d.channel_source) {
                    (Some(c), Some(src)) => format!("{c} (set by {})", src.as_str()),
                    (Some(c), None) => c.clone(),
                    _ => "none (follows defaultChannel / the app's default)".to_owned(),
                };
                let failed: Vec<&str> = d.failed_versions.iter().map(String::as_str).collect();
                format!(
                    "device:          {device_id}\nchannel:         {channel}\nfailed versions: {}\nlast failure:    {}",
                    if failed.is_empty() {
                        "none".to_owned()
                    } else {
                        failed.join(", ")
                    },
                    d.last_seen
                        .map_or("never".to_owned(), |s| format!("{s} (unix)"))
                )
            } else {
                format!("The server knows nothing about device {device_id} of {app_id}.")
            };
            Report::new(&device, text)
        }
    }
}
