//! Driving staged rollouts against the stores: an operator's change of a rollout (`rollout
//! set|pause|resume|abort|complete`, the dashboard's buttons), a rollout's status with the
//! gate's next verdict, and the pass of the health gate over every rollout (`rollout tick`,
//! `serve`'s timer, the Lambda's scheduled event). The decisions are the pure ones of
//! `domain::rollout`; every change is one revision-conditioned write with its history entry.

use std::fmt;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::domain::evidence::{Evidence, EvidenceKey};
use crate::domain::health::{AutoPausePolicy, wilson_lower_bound, wilson_upper_bound};
use crate::domain::history::{AUTOMATIC, Expected, HistoryAction, HistoryEntry};
use crate::domain::item::{Item, ItemExt, attr};
use crate::domain::keys::{Target, release_sk};
use crate::domain::release::{Gate, Release, Rollout, RolloutState};
use crate::domain::rollout::{self, Change, Verdict};
use crate::domain::share::percent_text;
use crate::domain::snapshot::AppSnapshot;
use crate::ops::OperatorStores;
use crate::ops::apps::{require_app, require_channel};
use crate::store::StoreError;

/// The history action of a rollout change.
pub fn action_of(change: &Change) -> HistoryAction {
    match change {
        Change::SetShare(_) => HistoryAction::RolloutStep,
        Change::Pause(_) => HistoryAction::RolloutPause,
        Change::Resume => HistoryAction::RolloutResume,
        Change::Abort(_) => HistoryAction::RolloutAbort,
        Change::Complete => HistoryAction::RolloutComplete,
    }
}

/// The rollout of a release item, or the one-sentence reason there is none to change.
pub fn rollout_of(item: &Item, what: &str) -> anyhow::Result<(Release, Rollout)> {
    let release =
        Release::from_item(item).map_err(|e| anyhow::anyhow!("{what} is invalid: {e}"))?;
    let rollout = match &release.rollout {
        None => {
            bail!("{what} has no rollout; start one with `updraft release … --rollout PERCENT`")
        }
        Some(Err(e)) => bail!("the rollout of {what} is invalid: {e}"),
        Some(Ok(r)) => r.clone(),
    };
    Ok((release, rollout))
}

/// What one rollout change wrote.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutWrite {
    pub revision: u64,
    pub entry: HistoryEntry,
}

/// Applies `decide`'s change to the rollout of `channel`/`target`, conditioned on the revision
/// it read, with its history entry in the same atomic write. `decide` sees the rollout as
/// stored now and returns the change and the history detail, or `None` for nothing to do.
pub async fn change_rollout(
    stores: &OperatorStores,
    app_id: &str,
    channel: &str,
    target: Target,
    who: &str,
    decide: impl FnOnce(&Rollout) -> anyhow::Result<Option<(Change, String)>>,
) -> anyhow::Result<Option<RolloutWrite>> {
    let sk = release_sk(channel, target);
    let what = format!("{channel}/{target} of {app_id}");
    let current = stores.items.get_item(app_id, &sk).await?.with_context(|| {
        format!("{what} serves nothing (see `updraft channel list --app {app_id}`)")
    })?;
    let (release, rollout) = rollout_of(&current, &what)?;
    let Some((change, detail)) = decide(&rollout)? else {
        return Ok(None);
    };
    let expected = Expected::of(Some(&current));
    let mut next = rollout::apply(&current, &change, stores.clock.now());
    Release::from_item(&next)
        .map_err(|e| anyhow::anyhow!("the release item would be invalid: {e}"))?;
    next.set_whole(attr::REVISION, expected.next());
    let entry = HistoryEntry {
        at_micros: stores.clock.now_micros(),
        action: action_of(&change),
        channel: channel.to_owned(),
        platform: target,
        from_version: Some(release.version_text.clone()),
        to_version: Some(rollout.version().to_owned()),
        who: who.to_owned(),
        detail: Some(detail),
    };
    stores
        .history
        .change_with_history(app_id, &sk, expected, &next, &entry)
        .await?;
    Ok(Some(RolloutWrite {
        revision: expected.next(),
        entry,
    }))
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

impl RolloutAction {
    pub fn name(self) -> &'static str {
        match self {
            RolloutAction::Set(_) => "set",
            RolloutAction::Pause => "pause",
            RolloutAction::Resume => "resume",
            RolloutAction::Abort => "abort",
            RolloutAction::Complete => "complete",
        }
    }

    /// The change this action makes to `r` and its history detail; `None` when the rollout is
    /// already so.
    fn decide(self, r: &Rollout) -> anyhow::Result<Option<(Change, String)>> {
        let share = percent_text(r.basis_points);
        let aborted = "the rollout was aborted; start a new one with `updraft release … --rollout`";
        Ok(match (self, r.state) {
            (RolloutAction::Set(_), RolloutState::Aborted) => bail!("{aborted}"),
            (RolloutAction::Set(bp), _) => (r.basis_points != bp).then(|| {
                let to = percent_text(bp);
                (
                    Change::SetShare(bp),
                    format!("share {share} -> {to} by hand"),
                )
            }),
            (RolloutAction::Pause, RolloutState::Active) => {
                Some((Change::Pause(None), format!("paused at {share} by hand")))
            }
            (RolloutAction::Pause, RolloutState::Paused) => None,
            (RolloutAction::Pause, RolloutState::Aborted) => {
                bail!("the rollout was aborted; there is nothing to pause")
            }
            (RolloutAction::Resume, RolloutState::Paused) => Some((
                Change::Resume,
                format!("resumed at {share}; the gate's evidence starts afresh"),
            )),
            (RolloutAction::Resume, RolloutState::Active) => None,
            (RolloutAction::Resume, RolloutState::Aborted) => bail!("{aborted}"),
            (RolloutAction::Abort, RolloutState::Aborted) => None,
            (RolloutAction::Abort, _) => Some((
                Change::Abort(None),
                format!("aborted at {share} by hand: everyone is offered the stable version"),
            )),
            (RolloutAction::Complete, RolloutState::Aborted) => bail!(
                "the rollout was aborted; release {} again to serve it",
                r.version()
            ),
            (RolloutAction::Complete, _) => Some((
                Change::Complete,
                format!(
                    "completed at {share} by hand: {} is the stable version",
                    r.version()
                ),
            )),
        })
    }
}

/// What an operator's rollout change did.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutChanged {
    pub app_id: String,
    pub channel: String,
    pub platform: Target,
    pub action: &'static str,
    pub changed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl fmt::Display for RolloutChanged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = format!("{} {}/{}", self.app_id, self.channel, self.platform);
        match (&self.changed, &self.detail) {
            (true, detail) => write!(f, "{place}: {}.", detail.as_deref().unwrap_or(self.action)),
            (false, _) => write!(f, "{place}: nothing to change (the rollout is already so)."),
        }
    }
}

/// One operator change of the rollout of `channel`/`target`, with its history entry naming
/// the operator.
pub async fn rollout_change(
    stores: &OperatorStores,
    app_id: &str,
    channel: &str,
    target: Target,
    action: RolloutAction,
) -> anyhow::Result<RolloutChanged> {
    let snap = require_app(stores, app_id).await?;
    require_channel(&snap, app_id, channel)?;
    let who = stores.who().await?;
    let changed =
        change_rollout(stores, app_id, channel, target, &who, |r| action.decide(r)).await?;
    Ok(RolloutChanged {
        app_id: app_id.to_owned(),
        channel: channel.to_owned(),
        platform: target,
        action: action.name(),
        changed: changed.is_some(),
        revision: changed.as_ref().map(|c| c.revision),
        detail: changed.and_then(|c| c.entry.detail),
    })
}

/// The evidence key of a rollout's version on release item `sk`.
pub fn evidence_key(app_id: &str, sk: &str, r: &Rollout) -> EvidenceKey {
    EvidenceKey {
        app_id: app_id.to_owned(),
        sk: sk.to_owned(),
        version: r.version().to_owned(),
        epoch: r.epoch(),
    }
}

/// `updraft rollout status`: a rollout, its gate, its evidence and the gate's next verdict.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutStatus {
    pub app_id: String,
    pub channel: String,
    pub platform: Target,
    pub id: String,
    pub stable_version: String,
    pub rollout_version: String,
    pub percent: f64,
    /// The share in basis points (0.01 %), as the gate counts it.
    #[serde(skip)]
    pub basis_points: u32,
    pub state: RolloutState,
    pub started_at: u64,
    pub stepped_at: u64,
    pub gate: Gate,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub halt_reason: Option<String>,
    pub devices: u64,
    pub failures: u64,
    pub failing_networks: u64,
    pub failure_rate_lower_bound: f64,
    pub failure_rate_upper_bound: f64,
    /// What the next pass of the gate would do, and why.
    pub next: String,
}

impl RolloutStatus {
    /// The evidence the gate reads.
    pub fn evidence(&self) -> Evidence {
        Evidence {
            attempts: self.devices,
            failures: self.failures,
            failing_networks: self.failing_networks,
        }
    }

    /// The share the next step would set, in basis points (`None` at the last step, without
    /// steps, or once aborted).
    pub fn next_step(&self) -> Option<u32> {
        if self.state == RolloutState::Aborted {
            return None;
        }
        self.gate
            .steps
            .iter()
            .copied()
            .find(|bp| *bp > self.basis_points)
    }
}

/// `updraft rollout status` of `channel`/`target`.
pub async fn rollout_status(
    stores: &OperatorStores,
    app_id: &str,
    channel: &str,
    target: Target,
) -> anyhow::Result<RolloutStatus> {
    let snap = require_app(stores, app_id).await?;
    require_channel(&snap, app_id, channel)?;
    let sk = release_sk(channel, target);
    let item = stores.items.get_item(app_id, &sk).await?.with_context(|| {
        format!("{channel}/{target} of {app_id} serves nothing (see `updraft channel list --app {app_id}`)")
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
) -> anyhow::Result<RolloutStatus> {
    let sk = release_sk(channel, target);
    let (stable, ro) = rollout_of(item, &format!("{channel}/{target} of {app_id}"))?;
    let e = stores
        .evidence
        .evidence(&evidence_key(app_id, &sk, &ro))
        .await?;
    let min_networks =
        AutoPausePolicy::from_items(&ro.release.item, Some(&snap.app_item)).min_networks;
    let next = match rollout::judge(&ro, e, min_networks, stores.clock.now()) {
        Verdict::Hold(why) => format!("hold: {why}"),
        Verdict::Advance { why, .. } => format!("advance: {why}"),
        Verdict::Halt { why, .. } => format!("halt: {why}"),
    };
    Ok(RolloutStatus {
        app_id: app_id.to_owned(),
        channel: channel.to_owned(),
        platform: target,
        id: ro.id.clone(),
        stable_version: stable.version_text.clone(),
        rollout_version: ro.version().to_owned(),
        percent: f64::from(ro.basis_points) / 100.0,
        basis_points: ro.basis_points,
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
    })
}

/// What a pass of the gate did to one rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TickAction {
    /// Nothing to do now (`why` says what it waits for).
    Hold,
    /// Advanced to the next step.
    Step,
    /// The last step was healthy: the rollout version is now the stable one.
    Complete,
    /// Halted by pausing it.
    Pause,
    /// Halted by aborting it.
    Abort,
    /// Changed by someone else between the pass's read and its write: judged again next pass.
    Conflict,
}

impl TickAction {
    fn of(change: &Change) -> Self {
        match change {
            Change::SetShare(_) => TickAction::Step,
            Change::Complete => TickAction::Complete,
            Change::Pause(_) => TickAction::Pause,
            Change::Abort(_) => TickAction::Abort,
            // The gate never resumes a rollout; an operator does.
            Change::Resume => TickAction::Conflict,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TickAction::Hold => "hold",
            TickAction::Step => "step",
            TickAction::Complete => "complete",
            TickAction::Pause => "pause",
            TickAction::Abort => "abort",
            TickAction::Conflict => "conflict",
        }
    }

    /// True when the pass changed the rollout.
    pub fn changed(self) -> bool {
        !matches!(self, TickAction::Hold | TickAction::Conflict)
    }
}

/// One rollout as a pass of the gate saw it.
#[derive(Debug, Clone, Serialize)]
pub struct TickRow {
    pub app_id: String,
    pub channel: String,
    pub platform: Target,
    pub stable_version: String,
    pub rollout_version: String,
    /// The share before this pass, in percent.
    pub percent: f64,
    pub state: RolloutState,
    pub action: TickAction,
    pub why: String,
    pub devices: u64,
    pub failures: u64,
    pub failing_networks: u64,
}

/// One pass of the gate over every rollout of every app (or of `app_id`): each step that is
/// due and healthy advances, each failing rollout halts. Rollouts that are not active are
/// listed as held.
pub async fn tick(stores: &OperatorStores, app_id: Option<&str>) -> anyhow::Result<Vec<TickRow>> {
    let apps = match app_id {
        Some(a) => vec![a.to_owned()],
        None => stores.query.app_ids().await?,
    };
    let mut rows = Vec::new();
    for app in apps {
        let Some(snap) = stores.releases.load_app(&app).await? else {
            continue;
        };
        let mut channels: Vec<_> = snap.channels.iter().collect();
        channels.sort_by(|a, b| a.0.cmp(b.0));
        for (channel, releases) in channels {
            for (target, release) in releases.targets() {
                let Ok(release) = release else { continue };
                let Some(Ok(r)) = &release.rollout else {
                    continue;
                };
                rows.push(judge_one(stores, &snap, &app, channel, target, release, r).await?);
            }
        }
    }
    Ok(rows)
}

/// One rollout's verdict, carried out: a change only if nobody changed the rollout since it
/// was judged.
async fn judge_one(
    stores: &OperatorStores,
    snap: &AppSnapshot,
    app: &str,
    channel: &str,
    target: Target,
    release: &Release,
    r: &Rollout,
) -> anyhow::Result<TickRow> {
    let sk = release_sk(channel, target);
    let evidence = if r.state == RolloutState::Active {
        stores.evidence.evidence(&evidence_key(app, &sk, r)).await?
    } else {
        Evidence::default()
    };
    let min_networks =
        AutoPausePolicy::from_items(&r.release.item, Some(&snap.app_item)).min_networks;
    let verdict = rollout::judge(r, evidence, min_networks, stores.clock.now());
    let mut row = TickRow {
        app_id: app.to_owned(),
        channel: channel.to_owned(),
        platform: target,
        stable_version: release.version_text.clone(),
        rollout_version: r.version().to_owned(),
        percent: f64::from(r.basis_points) / 100.0,
        state: r.state,
        action: TickAction::Hold,
        why: String::new(),
        devices: evidence.attempts,
        failures: evidence.failures,
        failing_networks: evidence.failing_networks,
    };
    let (change, why) = match verdict {
        Verdict::Hold(why) => {
            row.why = why;
            return Ok(row);
        }
        Verdict::Advance { change, why } | Verdict::Halt { change, why } => (change, why),
    };
    row.action = TickAction::of(&change);
    row.why = why.clone();
    let (id, share, state) = (r.id.clone(), r.basis_points, r.state);
    let result = change_rollout(stores, app, channel, target, AUTOMATIC, |cur| {
        Ok(
            (cur.id == id && cur.basis_points == share && cur.state == state)
                .then_some((change, why)),
        )
    })
    .await;
    match result {
        Ok(Some(_)) => {
            tracing::warn!(app_id = %app, channel = %channel, platform = target.as_str(), action = row.action.as_str(), why = %row.why, "rollout changed by its gate");
        }
        Ok(None) => row.action = TickAction::Conflict,
        Err(e)
            if e.downcast_ref::<StoreError>()
                .is_some_and(|s| matches!(s, StoreError::Conflict(_))) =>
        {
            row.action = TickAction::Conflict
        }
        Err(e) => return Err(e),
    }
    Ok(row)
}
