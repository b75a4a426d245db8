//! `POST /stats` (protocol.md §5): every event validated, then the whole batch stored or none
//! of it (a 503 makes the plugin keep the batch and send it again), then auto-pause checks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::{ApiError, AppState, json_response, read_body};
use crate::domain::health::{AutoPausePolicy, Health, should_pause};
use crate::domain::protocol::Platform;
use crate::domain::release::{AppSnapshot, release_sk};
use crate::domain::stats::{
    StatsBatch, StatsEvent, aggregate, failures, installs, is_failure, parse_stats_body,
};
use crate::store::PauseRequest;

/// A full plugin batch (200 events of ~600 bytes) with room to spare.
pub const STATS_BODY_LIMIT: usize = 1 << 20;

pub(super) async fn stats(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(&headers, body, STATS_BODY_LIMIT).await?;
    let (events, _) = parse_stats_body(&body)
        .inspect_err(|e| tracing::info!(error = e.code(), "bad stats batch"))?;

    // Snapshots say which channel serves each event's version; one (cached) read per app.
    let mut snapshots: BTreeMap<&str, Option<Arc<AppSnapshot>>> = BTreeMap::new();
    for e in &events {
        if !snapshots.contains_key(e.app_id.as_ref()) {
            // Without releases, events are still counted, under the device's channel.
            let snap = state.releases.get(&e.app_id).await.unwrap_or(None);
            snapshots.insert(&e.app_id, snap);
        }
    }
    for e in &events {
        // One JSON line per event for CloudWatch Logs Insights (target `updraft::event`).
        tracing::info!(
            target: "updraft::event",
            app_id = %e.app_id,
            device_id = %e.device_id,
            platform = %e.platform,
            action = %e.action,
            version_name = %e.version_name,
            old_version_name = e.old_version_name.as_deref().unwrap_or(""),
            version_build = e.version_build.as_deref().unwrap_or(""),
            version_os = e.version_os.as_deref().unwrap_or(""),
            plugin_version = e.plugin_version.as_deref().unwrap_or(""),
            channel = e.default_channel.as_deref().unwrap_or(""),
            timestamp = e.timestamp.unwrap_or(0),
            metadata = %e.metadata.as_ref().map(|m| serde_json::to_string(m).unwrap_or_default()).unwrap_or_default(),
        );
    }
    let batch = aggregate(&body, &events, |e| {
        channel_of(
            snapshots.get(e.app_id.as_ref()).and_then(|s| s.as_deref()),
            e,
        )
    });
    state.stats.record(&batch).await.map_err(|e| {
        tracing::error!(error = %e, events = events.len(), "stats batch not stored; the plugin will resend it");
        ApiError::Unavailable
    })?;
    auto_pause(&state, &batch, &snapshots).await;
    let answer = serde_json::json!({ "status": "ok", "accepted": events.len() });
    Ok(json_response(
        StatusCode::OK,
        answer.to_string().into_bytes(),
    ))
}

/// The channel whose release an event's version belongs to: the device's channel, the app's
/// default, or any channel serving that version; else the channel the device follows.
pub(crate) fn channel_of(snap: Option<&AppSnapshot>, e: &StatsEvent<'_>) -> String {
    let requested = e.default_channel.as_deref();
    let Some(snap) = snap else {
        return requested.unwrap_or("unknown").to_owned();
    };
    let platform = Platform::parse(&e.platform);
    let version = e.version();
    let serves = |channel: &str| {
        snap.channels.get(channel).is_some_and(|c| match platform {
            Some(p) => c
                .for_platform(p)
                .is_some_and(|r| r.as_ref().is_ok_and(|r| r.version_text == version)),
            None => c
                .targets()
                .any(|(_, r)| r.as_ref().is_ok_and(|r| r.version_text == version)),
        })
    };
    if let Some(c) = requested.filter(|c| serves(c)) {
        return c.to_owned();
    }
    if serves(&snap.default_channel) {
        return snap.default_channel.clone();
    }
    let mut names: Vec<&String> = snap.channels.keys().collect();
    names.sort();
    if let Some(c) = names.into_iter().find(|c| serves(c)) {
        return c.clone();
    }
    requested.unwrap_or(&snap.default_channel).to_owned()
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// After failures were stored, pause the releases whose failure rate is now clearly too high.
/// Best effort: the events are already safe, so a failure here is only logged.
async fn auto_pause(
    state: &AppState,
    batch: &StatsBatch,
    snapshots: &BTreeMap<&str, Option<Arc<AppSnapshot>>>,
) {
    for (key, counts) in &batch.counts {
        if !counts.keys().any(|a| is_failure(a)) {
            continue;
        }
        let Some(Some(snap)) = snapshots.get(key.app_id.as_str()) else {
            continue;
        };
        let Some(channel) = snap.channels.get(&key.channel) else {
            continue;
        };
        let serving: Vec<_> = channel
            .targets()
            .filter_map(|(target, r)| Some((target, r.as_ref().ok()?)))
            .filter(|(_, r)| r.version_text == key.version && !r.paused)
            .collect();
        if serving.is_empty() {
            continue;
        }
        let totals = match state.stats.counts(key).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(app_id = %key.app_id, error = %e, "cannot read counters for auto-pause");
                continue;
            }
        };
        for (target, release) in serving {
            let policy = AutoPausePolicy::from_items(&release.item, Some(&snap.app_item));
            let health = Health {
                installs: installs(&totals).saturating_sub(release.baseline.installs),
                failures: failures(&totals).saturating_sub(release.baseline.failures),
            };
            let now = now_unix();
            let Some(reason) = should_pause(&policy, health, release.resumed_at, now) else {
                continue;
            };
            let sk = release_sk(&key.channel, target);
            let pause = PauseRequest {
                version: key.version.clone(),
                reason: reason.clone(),
                now,
                cooldown_secs: policy.cooldown_secs,
            };
            match state.control.pause_release(&key.app_id, &sk, &pause).await {
                Ok(true) => {
                    tracing::warn!(app_id = %key.app_id, channel = %key.channel, version = %key.version, sk, reason, "release auto-paused")
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(app_id = %key.app_id, sk, error = %e, "auto-pause failed")
                }
            }
        }
    }
}
