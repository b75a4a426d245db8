//! Driving rollouts against a store: one conditional change of a release item's rollout with
//! its history entry, and the pass of the health gate over every rollout (`updraft rollout
//! tick`, the timer of `updraft serve`, the scheduled event on Lambda). The decisions are the
//! pure ones of `domain::rollout`; this module only reads and writes.

use anyhow::{Context, bail};
use serde::Serialize;

use crate::backend::OperatorStores;
use crate::domain::evidence::{Evidence, EvidenceKey};
use crate::domain::health::AutoPausePolicy;
use crate::domain::history::{Expected, HistoryAction, HistoryEntry, REVISION_ATTR};
use crate::domain::release::{AttrValue, Item, Release, Target, release_sk};
use crate::domain::rollout::{self, Change, Rollout, RolloutState, Verdict, percent_text};
use crate::store::{AUTOMATIC, StoreError, now_micros};

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    now_micros() / 1_000_000
}

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
pub struct Changed {
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
    now: u64,
    decide: impl FnOnce(&Rollout) -> anyhow::Result<Option<(Change, String)>>,
) -> anyhow::Result<Option<Changed>> {
    let sk = release_sk(channel, target);
    let what = format!("{channel}/{} of {app_id}", target.as_str());
    let current = stores.items.get_item(app_id, &sk).await?.with_context(|| {
        format!("{what} serves nothing (see `updraft channel list --app {app_id}`)")
    })?;
    let (release, rollout) = rollout_of(&current, &what)?;
    let Some((change, detail)) = decide(&rollout)? else {
        return Ok(None);
    };
    let expected = Expected::of(Some(&current));
    let mut next = rollout::apply(&current, &change, now);
    Release::from_item(&next)
        .map_err(|e| anyhow::anyhow!("the release item would be invalid: {e}"))?;
    next.insert(REVISION_ATTR.into(), AttrValue::N(expected.next().into()));
    let entry = HistoryEntry {
        at_micros: now_micros(),
        action: action_of(&change),
        channel: channel.to_owned(),
        platform: target.as_str().to_owned(),
        from_version: Some(release.version_text.clone()),
        to_version: Some(rollout.version().to_owned()),
        who: who.to_owned(),
        detail: Some(detail),
    };
    stores
        .history
        .change_with_history(app_id, &sk, expected, &next, &entry)
        .await?;
    Ok(Some(Changed {
        revision: expected.next(),
        entry,
    }))
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

/// One rollout as a pass of the gate saw it.
#[derive(Debug, Clone, Serialize)]
pub struct TickRow {
    pub app_id: String,
    pub channel: String,
    pub platform: String,
    pub stable_version: String,
    pub rollout_version: String,
    /// The share before this pass, in percent.
    pub percent: f64,
    pub state: RolloutState,
    /// `hold`, `step`, `complete`, `pause`, `abort`, or `conflict` (changed meanwhile).
    pub action: String,
    pub why: String,
    pub devices: u64,
    pub failures: u64,
    pub failing_networks: u64,
}

/// One pass of the gate over every rollout of every app (or of `app_id`): each step that is
/// due and healthy advances, each failing rollout halts. Rollouts that are not active are
/// listed as held.
pub async fn tick(
    stores: &OperatorStores,
    app_id: Option<&str>,
    now: u64,
) -> anyhow::Result<Vec<TickRow>> {
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
                let sk = release_sk(channel, target);
                let evidence = if r.state == RolloutState::Active {
                    stores.stats.evidence(&evidence_key(&app, &sk, r)).await?
                } else {
                    Evidence::default()
                };
                let min_networks =
                    AutoPausePolicy::from_items(&r.release.item, Some(&snap.app_item)).min_networks;
                let verdict = rollout::judge(r, evidence, min_networks, now);
                let mut row = TickRow {
                    app_id: app.clone(),
                    channel: channel.clone(),
                    platform: target.as_str().to_owned(),
                    stable_version: release.version_text.clone(),
                    rollout_version: r.version().to_owned(),
                    percent: f64::from(r.basis_points) / 100.0,
                    state: r.state,
                    action: "hold".into(),
                    why: String::new(),
                    devices: evidence.attempts,
                    failures: evidence.failures,
                    failing_networks: evidence.failing_networks,
                };
                let (change, why) = match verdict {
                    Verdict::Hold(why) => {
                        row.why = why;
                        rows.push(row);
                        continue;
                    }
                    Verdict::Advance { change, why } | Verdict::Halt { change, why } => {
                        (change, why)
                    }
                };
                row.action = match &change {
                    Change::SetShare(_) => "step",
                    Change::Complete => "complete",
                    Change::Pause(_) => "pause",
                    Change::Abort(_) => "abort",
                    Change::Resume => "resume",
                }
                .into();
                row.why = why.clone();
                let id = r.id.clone();
                let (share, state) = (r.basis_points, r.state);
                let result = change_rollout(stores, &app, channel, target, AUTOMATIC, now, |cur| {
                    // Only if nobody changed the rollout since it was judged.
                    Ok(
                        (cur.id == id && cur.basis_points == share && cur.state == state)
                            .then_some((change, why)),
                    )
                })
                .await;
                match result {
                    Ok(Some(_)) => {
                        tracing::warn!(app_id = %app, channel = %channel, platform = target.as_str(), action = %row.action, why = %row.why, "rollout changed by its gate");
                    }
                    Ok(None) => row.action = "conflict".into(),
                    Err(e)
                        if e.downcast_ref::<StoreError>()
                            .is_some_and(|s| matches!(s, StoreError::Conflict(_))) =>
                    {
                        row.action = "conflict".into()
                    }
                    Err(e) => return Err(e),
                }
                rows.push(row);
            }
        }
    }
    Ok(rows)
}

/// A pass as one line per rollout, for people and logs.
pub fn tick_text(rows: &[TickRow]) -> String {
    if rows.is_empty() {
        return "No rollouts.".to_owned();
    }
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
                r.action,
                if r.why.is_empty() {
                    String::new()
                } else {
                    format!(" — {}", r.why)
                }
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
