//! `POST /stats` (protocol.md §5): events validated as they are read (at most `MAX_EVENTS`),
//! folded into what one request may write (one app, its known releases, one device's state
//! and evidence), the batch stored whole or not at all (a 503 makes the plugin keep the batch
//! and send it again), then the evidence recorded and auto-pause decided.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;

use crate::api::body::read_body;
use crate::api::error::{ApiError, json_response};
use crate::api::source::source_ip;
use crate::api::state::AppState;
use crate::domain::evidence::network_of;
use crate::domain::stats::events::{StatsEvent, parse_stats_body};
use crate::domain::stats::fold::fold_batch;
use crate::ops::pauses::auto_pause;

/// A full plugin batch (200 events of ~600 bytes, or of up to ~6 KB with WebView error
/// metadata) with room to spare.
pub const STATS_BODY_LIMIT: usize = 1 << 20;

pub(super) async fn stats(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let network = network_of(source_ip(&parts.extensions));
    let body = read_body(&parts.headers, body, STATS_BODY_LIMIT).await?;
    let parsed = parse_stats_body(&body)
        .inspect_err(|e| tracing::info!(error = e.code(), "bad stats batch"))?;
    for e in &parsed.events {
        log_event(e, &network);
    }
    if parsed.skipped > 0 {
        tracing::warn!(
            skipped = parsed.skipped,
            network,
            "stats batch over the event limit; the rest was skipped"
        );
    }
    let answer = |accepted: usize| {
        let body =
            serde_json::json!({ "status": "ok", "accepted": accepted, "skipped": parsed.skipped });
        json_response(StatusCode::OK, body.to_string().into_bytes())
    };
    let Some(app_id) = parsed.events.first().map(|e| e.app_id.as_ref()) else {
        return Ok(answer(0));
    };
    // The app's releases say what may be counted; an unknown app creates nothing.
    // A store failure answers 503: the plugin keeps the batch and sends it again.
    let snap = state.releases.get(app_id).await?;
    let Some(snap) = snap else {
        tracing::info!(
            app_id,
            events = parsed.events.len(),
            "stats for an unknown app dropped"
        );
        return Ok(answer(0));
    };
    let folded = fold_batch(&body, &parsed.events, &snap, &network);
    for (i, why) in &folded.dropped {
        let e = &parsed.events[*i];
        tracing::info!(app_id = %e.app_id, device_id = %e.device_id, version_name = %e.version_name, action = %e.action, why = why.as_str(), "stats event not counted");
    }
    state.stats.record(&folded.batch).await?;
    if !folded.marks.is_empty() {
        let now = state.clock.now_micros();
        match state
            .evidence
            .record_evidence(&folded.marks, now / 1_000_000)
            .await
        {
            Ok(evidence) => auto_pause(&*state.items, &*state.history, &snap, &evidence, now).await,
            // The events are safe; losing one device's evidence only delays a pause.
            Err(e) => tracing::warn!(app_id, error = %e, "evidence not recorded"),
        }
    }
    Ok(answer(parsed.events.len() - folded.dropped.len()))
}

/// One JSON line per event for CloudWatch Logs Insights (target `updraft::event`).
fn log_event(e: &StatsEvent<'_>, network: &str) {
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
        network,
        metadata = %e.metadata.as_ref().map(|m| serde_json::to_string(m).unwrap_or_default()).unwrap_or_default(),
    );
}
