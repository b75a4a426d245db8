//! `POST /updates`, the update check (protocol.md §1–2): parse → read the (cached) releases,
//! and the device's item only when the answer could depend on it → decide → answer. It runs
//! on every app start of every device: at most one store round trip, no work the answer
//! does not need.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use crate::api::body::SmallBody;
use crate::api::delta;
use crate::api::error::{ApiError, json_response};
use crate::api::origin::request_origin;
use crate::api::state::AppState;
use crate::domain::check_counts::NONE;
use crate::domain::decide::{Decision, NeedsDevice, decide_update, decide_without_device};
use crate::domain::manifest::Manifest;
use crate::domain::protocol::{
    RefusalAnswer, RefusalCode, ResetAnswer, UpdateAnswer, UpdateRequest, clip_message,
    parse_update_request,
};

/// `POST /updates`.
pub async fn updates(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    SmallBody(body): SmallBody,
) -> Result<Response, ApiError> {
    let origin = request_origin(&state, &headers);
    let answer = update_check(&state, &body, &origin).await?;
    Ok(json_response(StatusCode::OK, answer))
}

/// One update check: parse → read the (cached) releases → decide → answer. The JSON bytes of
/// the answer, or the error the router turns into HTTP.
pub async fn update_check(
    state: &AppState,
    body: &[u8],
    origin: &str,
) -> Result<Vec<u8>, ApiError> {
    let started = Instant::now();
    let req = parse_update_request(body).inspect_err(|e| {
        tracing::info!(error = e.code(), "bad update check");
        state.metrics.count(NONE, NONE, NONE, e.code());
    })?;
    let unavailable = |_: &ApiError| {
        let code = RefusalCode::ServiceUnavailable.as_str();
        state.metrics.count(NONE, NONE, NONE, code);
    };
    // The releases usually come from the cache, and then the device's item is read only when
    // the answer could depend on it (`decide_without_device`): most checks make no store
    // call. On a cold cache both are read at once, so a check never waits on two round trips.
    let (snapshot, prefetched) = match state.releases.fresh(&req.app_id) {
        Some(snapshot) => (snapshot, None),
        None => {
            let (snapshot, device) = tokio::join!(
                state.releases.get(&req.app_id),
                state.devices.get_device(&req.app_id, &req.device_id)
            );
            let snapshot = snapshot.map_err(ApiError::from).inspect_err(unavailable)?;
            (snapshot, Some(device))
        }
    };
    let decision = match decide_without_device(&req, snapshot.as_deref()) {
        Ok(decision) => decision,
        Err(NeedsDevice) => {
            let device = match prefetched {
                Some(device) => device,
                None => state.devices.get_device(&req.app_id, &req.device_id).await,
            };
            let device = device.map_err(ApiError::from).inspect_err(unavailable)?;
            decide_update(&req, snapshot.as_deref(), device.as_ref())
        }
    };
    let manifest = match (&decision, &snapshot) {
        (Decision::Offer { release, .. }, Some(snap)) => {
            delta::manifest_for(state, &req, snap, release).await
        }
        _ => None,
    };
    let answer = answer(state, &decision, manifest, origin).await?;
    let counted = Counted {
        app: snapshot.is_some().then_some(req.app_id.as_ref()),
        decision: &decision,
    };
    counted.count(state);
    counted.log(&req, started);
    Ok(answer)
}

/// The answer's JSON bytes.
async fn answer(
    state: &AppState,
    decision: &Decision<'_>,
    manifest: Option<(Arc<Manifest>, u64)>,
    origin: &str,
) -> Result<Vec<u8>, ApiError> {
    let bytes = match decision {
        Decision::Offer { release, .. } => {
            let url = match (&release.url, &release.bundle) {
                (Some(url), _) => Cow::Borrowed(url.as_str()),
                (None, Some(key)) => Cow::Owned(
                    state
                        .signer
                        .download_url(key, origin)
                        .await
                        .map_err(ApiError::unavailable)?,
                ),
                (None, None) => return Err(ApiError::Internal),
            };
            serde_json::to_vec(&UpdateAnswer {
                version: &release.version_text,
                url,
                checksum: release.checksum.as_deref().unwrap_or_default(),
                session_key: release.session_key.as_deref(),
                link: release.link.as_deref(),
                comment: release.comment.as_deref(),
                manifest: manifest
                    .as_ref()
                    .map(|(m, expires)| delta::entries(state, m, origin, *expires)),
            })
        }
        Decision::Reset { .. } => serde_json::to_vec(&ResetAnswer { version: "builtin" }),
        Decision::Refuse(r) => serde_json::to_vec(&RefusalAnswer {
            error: r.code,
            message: clip_message(&r.message),
            kind: r.code.kind(),
            version: r.version,
            old: r.old.as_ref().map(ToString::to_string),
            major: (r.code == RefusalCode::DisableAutoUpdateToMajor).then_some(true),
        }),
    };
    bytes.map_err(|_| ApiError::Internal)
}

/// A decided check, as metrics and the log count it. Every label comes from the app's items
/// (an unknown app is `-`), so forged values never make a metric of their own.
struct Counted<'a> {
    /// The app, when the store has it.
    app: Option<&'a str>,
    decision: &'a Decision<'a>,
}

impl Counted<'_> {
    fn version(&self) -> Option<&str> {
        match self.decision {
            Decision::Offer { release, .. } => Some(release.version_text.as_str()),
            Decision::Refuse(r) => r.version,
            Decision::Reset { .. } => Some("builtin"),
        }
    }

    fn count(&self, state: &AppState) {
        state.metrics.count(
            self.app.unwrap_or(NONE),
            self.decision.channel().unwrap_or(NONE),
            self.version().unwrap_or(NONE),
            self.decision.label(),
        );
    }

    /// A line per check only at `debug`; checks that change something (or fail) at `info`.
    fn log(&self, req: &UpdateRequest<'_>, started: Instant) {
        macro_rules! check_line {
            ($level:expr) => {
                tracing::event!(
                    $level,
                    app_id = %req.app_id,
                    device_id = %req.device_id,
                    platform = req.platform.as_str(),
                    version_build = %req.version_build,
                    version_name = %req.version_name_raw,
                    channel = self.decision.channel().unwrap_or(""),
                    decision = self.decision.label(),
                    version = self.version().unwrap_or(""),
                    micros = started.elapsed().as_micros() as u64,
                    "update check"
                )
            };
        }
        if is_up_to_date(self.decision) {
            check_line!(tracing::Level::DEBUG);
        } else {
            check_line!(tracing::Level::INFO);
        }
    }
}

/// The device already has what it should run: the nine checks in ten that change nothing.
fn is_up_to_date(decision: &Decision<'_>) -> bool {
    matches!(decision, Decision::Refuse(r) if matches!(r.code, RefusalCode::NoNewVersionAvailable | RefusalCode::AlreadyOnBuiltin))
}
