//! `updraft rollout status|set|pause|resume|abort|complete|tick` and `updraft explain`: the
//! operator's side of staged rollouts, and "why did this device (not) get it?" answered by the
//! update check's own decision function on the live store.

use anyhow::{Context, bail};
use serde::Serialize;

use crate::backend::OperatorStores;
use crate::cli::output::{Report, table};
use crate::cli::releases::{require_app, require_channel};
use crate::cli::{ExplainArgs, ReleaseRef, RolloutCommand, target_of};
use crate::domain::decide::{Decision, decide_traced};
use crate::domain::health::{AutoPausePolicy, wilson_lower_bound, wilson_upper_bound};
use crate::domain::protocol::parse_update_request;
use crate::domain::release::{AppSnapshot, Item, Target, release_sk};
use crate::domain::rollout::{
    self, Change, RolloutState, Verdict, parse_percent, percent_text, steps_text,
};
use crate::domain::trace::{Trace, TraceStep};
use crate::rollouts::{change_rollout, evidence_key, now_unix, rollout_of, tick, tick_text};

/// Runs one `updraft rollout` subcommand.
pub async fn run(command: &RolloutCommand, stores: &OperatorStores) -> anyhow::Result<Report> {
    async fn on(
        stores: &OperatorStores,
        r: &ReleaseRef,
        action: RolloutAction,
    ) -> anyhow::Result<Report> {
        rollout_change(
            stores,
            &r.app.app,
            &r.channel,
            target_of(r.platform),
            action,
        )
        .await
    }
    match command {
        RolloutCommand::Status(r) => {
            rollout_status(stores, &r.app.app, &r.channel, target_of(r.platform)).await
        }
        RolloutCommand::Set(a) => {
            let bp = parse_percent(a.percent).map_err(|e| anyhow::anyhow!("--percent {e}"))?;
            on(stores, &a.release, RolloutAction::Set(bp)).await
        }
        RolloutCommand::Pause(r) => on(stores, r, RolloutAction::Pause).await,
        RolloutCommand::Resume(r) => on(stores, r, RolloutAction::Resume).await,
        RolloutCommand::Abort(r) => on(stores, r, RolloutAction::Abort).await,
        RolloutCommand::Complete(r) => on(stores, r, RolloutAction::Complete).await,
        RolloutCommand::Tick(a) => {
            let rows = tick(stores, a.app.as_deref(), now_unix()).await?;
            let text = tick_text(&rows);
            Report::new(&rows, text)
        }
    }
}

/// What an operator does to a rollout (`updraft rollout set|pause|resume|abort|complete`,
/// and the dashboard's buttons).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutAction {
    /// Set the share, in basis points (0.01 %).
    Set(u32),
    Pause,
    Resume,
    Abort,
    Complete,
}

/// One operator change of the rollout of `channel`/`target`, with its history entry naming
/// the operator.
pub async fn rollout_change(
    stores: &OperatorStores,
    app_id: &str,
    channel: &str,
    target: Target,
    action: RolloutAction,
) -> anyhow::Result<Report> {
    match action {
        RolloutAction::Set(bp) => change(stores, app_id, channel, target, "set", move |r| {
            if r.state == RolloutState::Aborted {
                bail!(
                    "the rollout was aborted; start a new one with `updraft release … --rollout`"
                );
            }
            Ok((r.basis_points != bp).then(|| {
                (
                    Change::SetShare(bp),
                    format!(
                        "share {} -> {} by hand",
                        percent_text(r.basis_points),
                        percent_text(bp)
                    ),
                )
            }))
        })
        .await,
        RolloutAction::Pause => {
            change(stores, app_id, channel, target, "pause", |ro| {
                match ro.state {
                    RolloutState::Active => Ok(Some((
                        Change::Pause(None),
                        format!("paused at {} by hand", percent_text(ro.basis_points)),
                    ))),
                    RolloutState::Paused => Ok(None),
                    RolloutState::Aborted => {
                        bail!("the rollout was aborted; there is nothing to pause")
                    }
                }
            })
            .await
        }
        RolloutAction::Resume => change(stores, app_id, channel, target, "resume", |ro| {
            match ro.state {
                RolloutState::Paused => Ok(Some((
                    Change::Resume,
                    format!(
                        "resumed at {}; the gate's evidence starts afresh",
                        percent_text(ro.basis_points)
                    ),
                ))),
                RolloutState::Active => Ok(None),
                RolloutState::Aborted => bail!(
                    "the rollout was aborted; start a new one with `updraft release … --rollout`"
                ),
            }
        })
        .await,
        RolloutAction::Abort => {
            change(stores, app_id, channel, target, "abort", |ro| {
                match ro.state {
                    RolloutState::Aborted => Ok(None),
                    _ => Ok(Some((
                        Change::Abort(None),
                        format!(
                            "aborted at {} by hand: everyone is offered the stable version",
                            percent_text(ro.basis_points)
                        ),
                    ))),
                }
            })
            .await
        }
        RolloutAction::Complete => {
            change(stores, app_id, channel, target, "complete", |ro| {
                if ro.state == RolloutState::Aborted {
                    bail!(
                        "the rollout was aborted; release {} again to serve it",
                        ro.version()
                    );
                }
                Ok(Some((
                    Change::Complete,
                    format!(
                        "completed at {} by hand: {} is the stable version",
                        percent_text(ro.basis_points),
                        ro.version()
                    ),
                )))
            })
            .await
        }
    }
}

/// What a rollout change did.
#[derive(Debug, Serialize)]
struct ChangeResult {
    app_id: String,
    channel: String,
    platform: String,
    action: &'static str,
    changed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    revision: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

async fn change(
    stores: &OperatorStores,
    app_id: &str,
    channel: &str,
    target: Target,
    action: &'static str,
    decide: impl FnOnce(&rollout::Rollout) -> anyhow::Result<Option<(Change, String)>>,
) -> anyhow::Result<Report> {
    let snap = require_app(stores, app_id).await?;
    require_channel(&snap, app_id, channel)?;
    let who = stores.identity.who().await?;
    let changed = change_rollout(stores, app_id, channel, target, &who, now_unix(), decide).await?;
    let place = format!("{app_id} {channel}/{}", target.as_str());
    let text = match &changed {
        Some(c) => format!("{place}: {}.", c.entry.detail.as_deref().unwrap_or(action)),
        None => format!("{place}: nothing to change (the rollout is already so)."),
    };
    Report::new(
        &ChangeResult {
            app_id: app_id.to_owned(),
            channel: channel.to_owned(),
            platform: target.as_str().to_owned(),
            action,
            changed: changed.is_some(),
            revision: changed.as_ref().map(|c| c.revision),
            detail: changed.and_then(|c| c.entry.detail),
        },
        text,
    )
}

/// `updraft rollout status`.
#[derive(Debug, Serialize)]
struct Status {
    app_id: String,
    channel: String,
    platform: String,
    id: String,
    stable_version: String,
    rollout_version: String,
    percent: f64,
    state: RolloutState,
    started_at: u64,
    stepped_at: u64,
    gate: rollout::Gate,
    #[serde(skip_serializing_if = "Option::is_none")]
    halt_reason: Option<String>,
    devices: u64,
    failures: u64,
    failing_networks: u64,
    failure_rate_lower_bound: f64,
    failure_rate_upper_bound: f64,
    /// What the next pass of the gate would do, and why.
    next: String,
}

/// `updraft rollout status` of `channel`/`target`.
pub async fn rollout_status(
    stores: &OperatorStores,
    app_id: &str,
    channel: &str,
    target: Target,
) -> anyhow::Result<Report> {
    let snap = require_app(stores, app_id).await?;
    require_channel(&snap, app_id, channel)?;
    let sk = release_sk(channel, target);
    let what = format!("{channel}/{} of {app_id}", target.as_str());
    let item = stores.items.get_item(app_id, &sk).await?.with_context(|| {
        format!("{what} serves nothing (see `updraft channel list --app {app_id}`)")
    })?;
    rollout_status_of(stores, &snap, app_id, channel, target, &item).await
}

/// `rollout status` of a release item already read (`item`, of `snap`): reads only its
/// evidence.
pub async fn rollout_status_of(
    stores: &OperatorStores,
    snap: &AppSnapshot,
    app_id: &str,
    channel: &str,
    target: Target,
    item: &Item,
) -> anyhow::Result<Report> {
    let sk = release_sk(channel, target);
    let what = format!("{channel}/{} of {app_id}", target.as_str());
    let (stable, ro) = rollout_of(item, &what)?;
    let e = stores
        .stats
        .evidence(&evidence_key(app_id, &sk, &ro))
        .await?;
    let min_networks =
        AutoPausePolicy::from_items(&ro.release.item, Some(&snap.app_item)).min_networks;
    let next = match rollout::judge(&ro, e, min_networks, now_unix()) {
        Verdict::Hold(why) => format!("hold: {why}"),
        Verdict::Advance { why, .. } => format!("advance: {why}"),
        Verdict::Halt { why, .. } => format!("halt: {why}"),
    };
    let s = Status {
        app_id: app_id.to_owned(),
        channel: channel.to_owned(),
        platform: target.as_str().to_owned(),
        id: ro.id.clone(),
        stable_version: stable.version_text.clone(),
        rollout_version: ro.version().to_owned(),
        percent: f64::from(ro.basis_points) / 100.0,
        state: ro.state,
        started_at: ro.started_at,
        stepped_at: ro.stepped_at,
        gate: ro.gate.clone(),
        halt_reason: ro.halt_reason.clone(),
        devices: e.attempts,
        failures: e.failures,
        failing_networks: e.failing_networks,
        failure_rate_lower_bound: wilson_lower_bound(e.failures, e.attempts),
        failure_rate_upper_bound: wilson_upper_bound(e.failures, e.attempts),
        next,
    };
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
        "{app_id} {}/{}: {} at {} of devices ({}), stable {}\nsteps: {steps}; max failure rate {}, min devices {}, on failure {}\nevidence: {} devices, {} failed, from {} networks (failure rate {:.2}%–{:.2}% at 95%)\nnext: {}",
        s.channel,
        s.platform,
        s.rollout_version,
        percent_text(ro.basis_points),
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
    Report::new(&s, text)
}

/// `updraft explain --json`.
#[derive(Debug, Serialize)]
struct Explained<'a> {
    /// `offer`, `reset`, or the refusal's kind (`up_to_date`, `blocked`, `failed`).
    decision: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    trace: Vec<TraceStep>,
}

/// `updraft explain`: the update check's decision for one device, from the live store (no
/// cache), with its trace. Reads only.
pub async fn explain(a: &ExplainArgs, stores: &OperatorStores) -> anyhow::Result<Report> {
    let platform = a.platform.platform();
    let body = serde_json::json!({
        "app_id": a.app.app,
        "device_id": a.device,
        "platform": platform.as_str(),
        "version_name": a.version_name,
        "version_build": a.version_build,
        "version_code": "",
        "version_os": "",
        "plugin_version": a.plugin_version.clone().unwrap_or_default(),
        "is_emulator": a.emulator,
        "is_prod": !a.dev,
        "defaultChannel": a.channel.clone().unwrap_or_default(),
        "custom_id": "",
    });
    let mut body = body;
    if let Some(k) = &a.key_id {
        body["key_id"] = serde_json::Value::String(k.clone());
    }
    let bytes = serde_json::to_vec(&body)?;
    let req = parse_update_request(&bytes).map_err(|e| {
        anyhow::anyhow!(
            "the server would refuse this request ({}): {e}; check --device (a UUID), --version-build and --app",
            e.code()
        )
    })?;
    let (snap, device) = tokio::join!(
        stores.releases.load_app(&req.app_id),
        stores.devices.get_device(&req.app_id, &req.device_id)
    );
    let (snap, device) = (snap?, device?);
    let mut trace = Trace::default();
    if let Some(d) = &device {
        trace.0.push(TraceStep {
            rule: "device",
            outcome: match (&d.channel, d.failed_versions.is_empty()) {
                (Some(c), _) => format!(
                    "override to channel {c}; failed versions: {:?}",
                    d.failed_versions
                ),
                (None, false) => format!("failed versions: {:?}", d.failed_versions),
                (None, true) => "known, without override".to_owned(),
            },
        });
    }
    let decision = decide_traced(&req, snap.as_ref(), device.as_ref(), &mut trace);
    let out = match &decision {
        Decision::Offer { channel, release } => Explained {
            decision: "offer".into(),
            version: Some(&release.version_text),
            error: None,
            message: None,
            channel: Some(channel),
            trace: trace.0,
        },
        Decision::Reset { channel } => Explained {
            decision: "reset".into(),
            version: Some("builtin"),
            error: None,
            message: None,
            channel: Some(channel),
            trace: trace.0,
        },
        Decision::Refuse(r) => Explained {
            decision: serde_json::to_value(r.code.kind())?
                .as_str()
                .unwrap_or("failed")
                .to_owned(),
            version: r.version,
            error: Some(r.code.as_str()),
            message: Some(r.message.to_string()),
            channel: r.channel,
            trace: trace.0,
        },
    };
    let headline = match (&out.decision[..], out.version, out.error) {
        ("offer", Some(v), _) => format!("offer {v}"),
        ("reset", _, _) => "reset to the builtin assets".to_owned(),
        (kind, _, Some(code)) => format!(
            "{kind}: {code} ({})",
            out.message.as_deref().unwrap_or_default()
        ),
        (kind, _, _) => kind.to_owned(),
    };
    let rows: Vec<Vec<String>> = out
        .trace
        .iter()
        .map(|s| vec![s.rule.to_owned(), s.outcome.clone()])
        .collect();
    let text = format!(
        "{} {} on {}: {headline}\n{}",
        a.app.app,
        a.device,
        platform.as_str(),
        table(&["RULE", "OUTCOME"], &rows)
    );
    Report::new(&out, text)
}
