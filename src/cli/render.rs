//! The text the commands print for the operations' results: tables for listings, a few lines
//! for a status. (Changes print their one sentence, the result's `Display`.)

use crate::cli::output::{Report, table};
use crate::domain::item::Item;
use crate::domain::policy::describe_policy;
use crate::domain::share::{percent_text, steps_text};
use crate::ops::apps::AppRow;
use crate::ops::bundles::BundleRow;
use crate::ops::channels::{ChannelRow, ChannelSetRow};
use crate::ops::devices::DeviceShown;
use crate::ops::explain::Explained;
use crate::ops::health::ReleaseHealth;
use crate::ops::history::HistoryRow;
use crate::ops::rollouts::{RolloutStatus, TickRow};

/// `channel set`: one sentence per changed item.
pub fn channel_set(rows: &[ChannelSetRow]) -> anyhow::Result<Report> {
    let text: Vec<String> = rows.iter().map(ToString::to_string).collect();
    Report::new(&rows, text.join("\n"))
}

/// `channel list`.
pub fn channel_list(rows: &[ChannelRow]) -> anyhow::Result<Report> {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let policy: Item = r.policy.clone().into_iter().collect();
            vec![
                r.channel.clone(),
                r.platform.to_string(),
                r.version.clone().unwrap_or_else(|| "invalid".into()),
                if r.paused { "paused" } else { "live" }.into(),
                if r.default_for.is_empty() {
                    "-".into()
                } else {
                    r.default_for.join(",")
                },
                match &r.error {
                    Some(e) => e.clone(),
                    None => describe_policy(&policy),
                },
            ]
        })
        .collect();
    let header = [
        "CHANNEL", "PLATFORM", "VERSION", "STATE", "DEFAULT", "POLICY",
    ];
    Report::new(&rows, table(&header, &cells))
}

/// `app list`.
pub fn app_list(rows: &[AppRow]) -> anyhow::Result<Report> {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut default = r.default_channel.clone();
            for (p, c) in &r.platform_default_channels {
                default.push_str(&format!(" ({p}: {c})"));
            }
            vec![r.app_id.clone(), default, r.channels.join(", ")]
        })
        .collect();
    let text = if rows.is_empty() {
        "No apps yet; release one with `updraft release`.".to_owned()
    } else {
        table(&["APP", "DEFAULT CHANNEL", "CHANNELS"], &cells)
    };
    Report::new(&rows, text)
}

/// `history`, newest first.
pub fn history(app_id: &str, rows: &[HistoryRow]) -> anyhow::Result<Report> {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let change = match (&r.from_version, &r.to_version) {
                (Some(a), Some(b)) if a == b => a.clone(),
                (a, Some(b)) => format!("{} -> {b}", a.as_deref().unwrap_or("(none)")),
                _ => "-".to_owned(),
            };
            vec![
                r.at.clone(),
                r.action.as_str().to_owned(),
                format!("{}/{}", r.channel, r.platform),
                change,
                r.who.clone(),
                r.detail.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let text = if rows.is_empty() {
        format!("No history for {app_id} yet.")
    } else {
        let header = ["TIME", "ACTION", "CHANNEL", "VERSION", "WHO", "DETAIL"];
        table(&header, &cells)
    };
    Report::new(&rows, text)
}

/// `stats`.
pub fn stats(app_id: &str, rows: &[ReleaseHealth]) -> anyhow::Result<Report> {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let state = match (r.serving.is_empty(), r.paused) {
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
        let header = [
            "CHANNEL", "VERSION", "SERVING", "INSTALLS", "FAILURES", "FAIL%", "STATE",
        ];
        table(&header, &cells)
    };
    Report::new(&rows, text)
}

/// `device show`.
pub fn device(shown: &DeviceShown) -> anyhow::Result<Report> {
    let (app_id, device_id) = (&shown.app_id, &shown.device_id);
    let text = if let Some(d) = &shown.state {
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
    Report::new(shown, text)
}

/// `rollout status`.
pub fn rollout_status(s: &RolloutStatus) -> anyhow::Result<Report> {
    let steps = if s.gate.steps.is_empty() {
        "by hand".to_owned()
    } else {
        format!(
            "{} every {} s",
            steps_text(&s.gate.steps),
            s.gate.step_every_secs
        )
    };
    let mut text = format!(
        "{} {}/{}: {} at {} of devices ({}), stable {}\nsteps: {steps}; max failure rate {}, min devices {}, on failure {}\nevidence: {} devices, {} failed, from {} networks (failure rate {:.2}%–{:.2}% at 95%)\nnext: {}",
        s.app_id,
        s.channel,
        s.platform,
        s.rollout_version,
        percent_text(s.basis_points),
        s.state.as_str(),
        s.stable_version,
        s.gate.max_failure_rate,
        s.gate.min_devices,
        s.gate.on_failure.as_str(),
        s.devices,
        s.failures,
        s.failing_networks,
        s.failure_rate_lower_bound * 100.0,
        s.failure_rate_upper_bound * 100.0,
        s.next
    );
    if let Some(why) = &s.halt_reason {
        text.push_str(&format!("\nhalted: {why}"));
    }
    Report::new(s, text)
}

/// A pass of the gate, one line per rollout.
pub fn tick(rows: &[TickRow]) -> anyhow::Result<Report> {
    let text = if rows.is_empty() {
        "No rollouts.".to_owned()
    } else {
        rows.iter()
            .map(|r| {
                format!(
                    "{} {}/{}: {} at {} ({}): {}{}",
                    r.app_id,
                    r.channel,
                    r.platform,
                    r.rollout_version,
                    percent_text((r.percent * 100.0).round() as u32),
                    r.state.as_str(),
                    r.action.as_str(),
                    if r.why.is_empty() {
                        String::new()
                    } else {
                        format!(" — {}", r.why)
                    }
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    Report::new(&rows, text)
}

/// `explain`: the decision and the rules it went through.
pub fn explain(
    app_id: &str,
    device_id: &str,
    platform: &str,
    out: &Explained,
) -> anyhow::Result<Report> {
    let rows: Vec<Vec<String>> = out
        .trace
        .iter()
        .map(|s| vec![s.rule.to_owned(), s.outcome.clone()])
        .collect();
    let text = format!(
        "{app_id} {device_id} on {platform}: {}\n{}",
        out.headline(),
        table(&["RULE", "OUTCOME"], &rows)
    );
    Report::new(out, text)
}

/// `bundles list`.
pub fn bundles(app_id: &str, rows: &[BundleRow]) -> anyhow::Result<Report> {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.version.clone(),
                r.size.map_or("?".into(), |b| b.to_string()),
                r.checksum
                    .as_deref()
                    .map_or("?".into(), |c| c.chars().take(12).collect()),
                r.uploaded_at.clone().unwrap_or_else(|| "?".into()),
                r.files.map_or("-".into(), |f| f.to_string()),
                match (r.delta_bytes, &r.previous) {
                    (Some(b), Some(p)) => format!("{b} from {p}"),
                    (Some(b), None) => b.to_string(),
                    _ => "-".into(),
                },
                if r.served_by.is_empty() {
                    "-".into()
                } else {
                    r.served_by.join(", ")
                },
            ]
        })
        .collect();
    let text = if rows.is_empty() {
        format!("No bundles stored for {app_id}.")
    } else {
        let header = [
            "VERSION",
            "BYTES",
            "CHECKSUM",
            "UPLOADED",
            "FILES",
            "DELTA BYTES",
            "SERVED BY",
        ];
        table(&header, &cells)
    };
    Report::new(&rows, text)
}
