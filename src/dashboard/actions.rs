//! The levers: each operator action the page offers, a confirmation page that says what it
//! does, and the POST that runs it through the operations (so history names the operator).

use std::sync::Arc;

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::dashboard::guard::{redirect, refuse, same};
use crate::dashboard::pages::render;
use crate::dashboard::state::Dashboard;
use crate::domain::keys::Target;
use crate::domain::share::parse_percent;
use crate::ops::OperatorStores;
use crate::ops::errors::explain;
use crate::ops::rollouts::{RolloutAction, rollout_change};
use crate::ops::{pauses, repoint};

/// An operator action the page offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DashboardAction {
    Pause,
    Resume,
    RolloutPause,
    RolloutResume,
    RolloutAbort,
    RolloutComplete,
    RolloutSet,
    Rollback,
    Promote,
}

/// One operator action as the confirmation page and `act` name it.
#[derive(Debug, Deserialize, Serialize)]
pub struct ActionForm {
    #[serde(default)]
    token: String,
    app: String,
    action: DashboardAction,
    #[serde(default)]
    channel: String,
    #[serde(default = "all")]
    platform: String,
    /// `rollout-set`: the share in percent.
    percent: Option<f64>,
    /// `promote`: the channel that will serve `channel`'s bundle.
    to: Option<String>,
    reason: Option<String>,
}

fn all() -> String {
    "all".to_owned()
}

/// What an action does, in words, for the confirmation page.
fn describe(a: &ActionForm) -> Option<String> {
    let place = format!("{}/{} of {}", a.channel, a.platform, a.app);
    Some(match a.action {
        DashboardAction::Pause => {
            format!("Pause {place}: devices get release_paused until it is resumed.")
        }
        DashboardAction::Resume => format!(
            "Resume {place}: only failures from now on count towards the next automatic pause."
        ),
        DashboardAction::RolloutPause => {
            format!("Pause the rollout of {place}: no new device enters it.")
        }
        DashboardAction::RolloutResume => {
            format!("Resume the rollout of {place}: the gate's evidence starts afresh.")
        }
        DashboardAction::RolloutAbort => {
            format!("Abort the rollout of {place}: everyone is offered the stable version.")
        }
        DashboardAction::RolloutComplete => {
            format!("Complete the rollout of {place}: its version becomes the stable one.")
        }
        DashboardAction::RolloutSet => {
            format!("Set the rollout of {place} to {}% of devices.", a.percent?)
        }
        DashboardAction::Rollback => format!("Roll {place} back to the version it served before."),
        DashboardAction::Promote => format!(
            "Promote {}'s bundle to {} on {} of {}.",
            a.channel,
            a.to.as_deref()?,
            a.platform,
            a.app
        ),
    })
}

pub(super) async fn confirm(
    State(d): State<Arc<Dashboard>>,
    query: Result<Query<ActionForm>, QueryRejection>,
) -> Response {
    let Some((a, what)) = query
        .ok()
        .and_then(|Query(a)| Some((describe(&a)?, a)).map(|(w, a)| (a, w)))
    else {
        return refuse(StatusCode::BAD_REQUEST, "unknown_action", "no such action");
    };
    render(
        &d,
        "confirm.html",
        json!({ "what": what, "form": a, "token": d.token }),
    )
}

/// Runs one confirmed action through the operations, then shows the app's page with what it
/// did.
pub(super) async fn act(State(d): State<Arc<Dashboard>>, body: Bytes) -> Response {
    let Ok(a) = serde_urlencoded::from_bytes::<ActionForm>(&body) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "bad_form",
            "the form is incomplete",
        );
    };
    if !same(&a.token, &d.token) {
        return refuse(
            StatusCode::FORBIDDEN,
            "missing_token",
            "changes are accepted only from the dashboard's own forms (they carry the token)",
        );
    }
    let back = |key: &str, text: &str| {
        redirect(&format!(
            "/app/{}?{}",
            urlencode(&a.app),
            serde_urlencoded::to_string([(key, text)]).unwrap_or_default()
        ))
    };
    match run_action(&d.stores, &a).await {
        Ok(done) => back("done", done.trim()),
        Err(e) => back("error", &explain(&e)),
    }
}

fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)])
        .unwrap_or_default()
        .trim_start_matches('=')
        .to_owned()
}

/// Runs the action; what it did, in one sentence.
async fn run_action(stores: &OperatorStores, a: &ActionForm) -> anyhow::Result<String> {
    let target = Target::parse(&a.platform).with_context(|| {
        format!(
            "{:?} is not a platform (all, android, ios, electron)",
            a.platform
        )
    })?;
    let (app, channel) = (a.app.as_str(), a.channel.as_str());
    let rollout = |action| rollout_change(stores, app, channel, target, action);
    Ok(match a.action {
        DashboardAction::Pause => {
            let reason = a.reason.as_deref().unwrap_or("paused from the dashboard");
            pauses::pause(stores, app, channel, target, reason)
                .await?
                .to_string()
        }
        DashboardAction::Resume => pauses::resume(stores, app, channel, target)
            .await?
            .to_string(),
        DashboardAction::RolloutPause => rollout(RolloutAction::Pause).await?.to_string(),
        DashboardAction::RolloutResume => rollout(RolloutAction::Resume).await?.to_string(),
        DashboardAction::RolloutAbort => rollout(RolloutAction::Abort).await?.to_string(),
        DashboardAction::RolloutComplete => rollout(RolloutAction::Complete).await?.to_string(),
        DashboardAction::RolloutSet => {
            let p = a.percent.context("the rollout's share is missing")?;
            let bp = parse_percent(p).map_err(|e| anyhow::anyhow!("the share {e}"))?;
            rollout(RolloutAction::Set(bp)).await?.to_string()
        }
        DashboardAction::Rollback => repoint::rollback(stores, app, channel, target, None)
            .await?
            .to_string(),
        DashboardAction::Promote => {
            let to =
                a.to.as_deref()
                    .context("promote needs the channel to promote to")?;
            repoint::promote(stores, app, channel, to, target)
                .await?
                .to_string()
        }
    })
}
