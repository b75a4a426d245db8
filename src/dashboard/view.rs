//! What an app's page shows, from the operations' own typed results (`channel list`,
//! `history`, `rollout status`) plus each version's evidence and the hourly counts, as the
//! values the templates render. Curves are drawn here (`dashboard::chart`).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::dashboard::chart::{BOTTOM, Frame, HEIGHT, LEFT, RIGHT, TOP, WIDTH, nice_max};
use crate::domain::evidence::{Evidence, EvidenceKey};
use crate::domain::health::{wilson_lower_bound, wilson_upper_bound};
use crate::domain::history::rfc3339;
use crate::domain::hourly::{
    HOUR_SECS, HOURLY_KEEP_SECS, HourlyCount, HourlySeries, hour_of, series,
};
use crate::domain::keys::{Target, release_sk};
use crate::domain::share::{percent_text, steps_text};
use crate::domain::snapshot::AppSnapshot;
use crate::ops::OperatorStores;
use crate::ops::apps::require_app;
use crate::ops::channels::{ChannelRow, channel_rows};
use crate::ops::history::{HistoryRow, history_entries};
use crate::ops::rollouts::{RolloutStatus, rollout_status_of};

/// History entries the page lists (and marks on the curves).
const HISTORY_ROWS: usize = 30;

/// The live part of an app's page.
#[derive(Debug, Serialize)]
pub struct Live {
    pub app_id: String,
    /// RFC 3339.
    pub now: String,
    pub cards: Vec<Card>,
    pub history: Vec<HistoryRow>,
}

/// One release item (channel × platform): what it serves, its rollout, its health and curves.
#[derive(Debug, Serialize)]
pub struct Card {
    pub channel: String,
    pub platform: Target,
    pub version: Option<String>,
    pub paused: bool,
    pub pause_reason: Option<String>,
    pub default_for: Vec<String>,
    pub error: Option<String>,
    pub rollout: Option<RolloutView>,
    /// The share the rollout's next step would set, in percent.
    pub next_percent: Option<f64>,
    pub next_percent_text: Option<String>,
    pub percent_text: Option<String>,
    pub steps_text: Option<String>,
    pub health: Vec<HealthRow>,
    pub chart: Chart,
    /// The app's other channels (promote targets).
    pub others: BTreeSet<String>,
}

/// A rollout's status, or why it could not be read.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum RolloutView {
    Status(Box<RolloutStatus>),
    Failed { error: String },
}

/// One row of a card's version table: a version's evidence and its failure rate's 95% bounds.
#[derive(Debug, Serialize)]
pub struct HealthRow {
    pub version: String,
    /// `stable` or `rollout`.
    pub role: &'static str,
    pub devices: u64,
    pub failures: u64,
    pub failing_networks: u64,
    pub failure_rate: f64,
    pub lower: f64,
    pub upper: f64,
}

impl HealthRow {
    fn new(version: &str, role: &'static str, e: Evidence) -> Self {
        HealthRow {
            version: version.to_owned(),
            role,
            devices: e.attempts,
            failures: e.failures,
            failing_networks: e.failing_networks,
            failure_rate: if e.attempts == 0 {
                0.0
            } else {
                e.failures as f64 / e.attempts as f64
            },
            lower: wilson_lower_bound(e.failures, e.attempts),
            upper: wilson_upper_bound(e.failures, e.attempts),
        }
    }
}

/// The live part of an app's page: its channels, their rollouts, curves and history.
pub async fn app_live(stores: &OperatorStores, app_id: &str) -> anyhow::Result<Live> {
    let now = stores.clock.now();
    let since = hour_of(now.saturating_sub(HOURLY_KEEP_SECS));
    // One read each of the app's items, its history and its hourly window; then the
    // operations' own reports are made from them.
    let (snap, entries, hourly) = tokio::join!(
        require_app(stores, app_id),
        history_entries(stores, app_id, None, Some(HISTORY_ROWS)),
        stores.evidence.hourly(app_id, since),
    );
    let (snap, entries, hourly) = (snap?, entries?, hourly?);
    let history: Vec<HistoryRow> = entries.into_iter().map(HistoryRow::from).collect();
    let stable = stable_evidence(stores, &snap, app_id).await?;
    let statuses = rollout_statuses(stores, &snap, app_id).await;
    let rows = channel_rows(&snap);
    let names: BTreeSet<&str> = rows.iter().map(|r| r.channel.as_str()).collect();
    let mut cards: Vec<Card> = rows
        .iter()
        .map(|row| {
            let sk = release_sk(&row.channel, row.platform);
            let rollout = statuses.get(&sk);
            let marks: Vec<&HistoryRow> = history
                .iter()
                .filter(|h| h.channel == row.channel && h.platform == row.platform)
                .collect();
            let counts: Vec<&HourlyCount> = hourly.iter().filter(|c| c.sk == sk).collect();
            let others = names
                .iter()
                .filter(|c| **c != row.channel)
                .map(|c| (*c).to_owned())
                .collect();
            card(row, stable.get(&sk), rollout, &counts, &marks, others, now)
        })
        .collect();
    // The channels devices get by default first, the rest by name.
    cards.sort_by_key(|c| c.default_for.is_empty());
    Ok(Live {
        app_id: app_id.to_owned(),
        now: rfc3339(now * 1_000_000),
        cards,
        history,
    })
}

/// Each item's stable version counted as the gate counts its rollout: its evidence (distinct
/// devices, each network capped), under the key devices' reports are filed under.
async fn stable_evidence(
    stores: &OperatorStores,
    snap: &AppSnapshot,
    app_id: &str,
) -> anyhow::Result<BTreeMap<String, (String, Evidence)>> {
    let mut keys = Vec::new();
    for (channel, releases) in &snap.channels {
        for (target, release) in releases.targets() {
            if let Ok(r) = release {
                let epoch = r.serving(&r.version_text).map_or(0, |(_, e)| e);
                keys.push(EvidenceKey {
                    app_id: app_id.to_owned(),
                    sk: release_sk(channel, target),
                    version: r.version_text.clone(),
                    epoch,
                });
            }
        }
    }
    let reads = keys.iter().map(|k| stores.evidence.evidence(k));
    let mut out = BTreeMap::new();
    for (key, e) in keys.iter().zip(futures_util::future::join_all(reads).await) {
        out.insert(key.sk.clone(), (key.version.clone(), e?));
    }
    Ok(out)
}

/// The status of every item with a rollout (one read of its evidence each).
async fn rollout_statuses(
    stores: &OperatorStores,
    snap: &AppSnapshot,
    app_id: &str,
) -> BTreeMap<String, RolloutView> {
    let mut out = BTreeMap::new();
    for (channel, releases) in &snap.channels {
        for (target, release) in releases.targets() {
            if let Ok(r) = release
                && r.rollout.is_some()
            {
                let status =
                    rollout_status_of(stores, snap, app_id, channel, target, &r.item).await;
                let view = match status {
                    Ok(s) => RolloutView::Status(Box::new(s)),
                    Err(e) => RolloutView::Failed {
                        error: format!("{e:#}"),
                    },
                };
                out.insert(release_sk(channel, target), view);
            }
        }
    }
    out
}

fn card(
    row: &ChannelRow,
    stable: Option<&(String, Evidence)>,
    rollout: Option<&RolloutView>,
    counts: &[&HourlyCount],
    marks: &[&HistoryRow],
    others: BTreeSet<String>,
    now: u64,
) -> Card {
    let status = match rollout {
        Some(RolloutView::Status(s)) => Some(s.as_ref()),
        _ => None,
    };
    let mut versions: Vec<String> = row.version.iter().cloned().collect();
    if let Some(s) = status
        && !versions.contains(&s.rollout_version)
    {
        versions.push(s.rollout_version.clone());
    }
    // The stable version, then the rollout's: the figures the gate's line shows.
    let mut health: Vec<HealthRow> = stable
        .map(|(v, e)| HealthRow::new(v, "stable", *e))
        .into_iter()
        .collect();
    if let Some(s) = status {
        health.push(HealthRow::new(&s.rollout_version, "rollout", s.evidence()));
    }
    let next = status.and_then(RolloutStatus::next_step);
    Card {
        channel: row.channel.clone(),
        platform: row.platform,
        version: row.version.clone(),
        paused: row.paused,
        pause_reason: row.pause_reason.clone(),
        default_for: row.default_for.clone(),
        error: row.error.clone(),
        rollout: rollout.cloned(),
        next_percent: next.map(|bp| f64::from(bp) / 100.0),
        next_percent_text: next.map(percent_text),
        percent_text: status.map(|s| percent_text(s.basis_points)),
        steps_text: status
            .filter(|s| !s.gate.steps.is_empty())
            .map(|s| steps_text(&s.gate.steps)),
        health,
        chart: chart(counts, &versions, status, marks, now),
        others,
    }
}

/// A card's charts.
#[derive(Debug, Serialize)]
pub struct Chart {
    pub width: f64,
    pub height: f64,
    pub left: f64,
    pub right: f64,
    pub top: f64,
    pub bottom: f64,
    pub from: String,
    pub to: String,
    pub from_label: String,
    pub to_label: String,
    pub max: f64,
    pub max_label: String,
    pub lines: Vec<Line>,
    pub versions: String,
    pub legend: Vec<LegendEntry>,
    pub empty: bool,
    pub marks: Vec<Mark>,
    pub rate: Option<RateChart>,
}

/// One curve: a version's installs or failures per hour.
#[derive(Debug, Serialize)]
pub struct Line {
    pub version: String,
    /// `installs` or `failures`.
    pub series: &'static str,
    pub class: String,
    pub points: String,
    pub n: usize,
    pub total: u64,
}

#[derive(Debug, Serialize)]
pub struct LegendEntry {
    pub version: String,
    pub class: String,
    pub installs: u64,
    pub failures: u64,
    pub empty: bool,
}

/// A history entry on the time axis.
#[derive(Debug, Serialize)]
pub struct Mark {
    pub x: String,
    pub label: String,
}

/// One release item's curves: devices that installed and failed each version per hour, from
/// the first counted hour (or the rollout's start) to now, with history marked; and for a
/// rollout, the failure-rate bounds of its version against the gate's threshold.
fn chart(
    counts: &[&HourlyCount],
    versions: &[String],
    rollout: Option<&RolloutStatus>,
    history: &[&HistoryRow],
    now: u64,
) -> Chart {
    let to = hour_of(now);
    let oldest = hour_of(now.saturating_sub(HOURLY_KEEP_SECS));
    let mut from = counts.iter().map(|c| c.hour).min().unwrap_or(to);
    if let Some(r) = rollout {
        from = from.min(hour_of(r.started_at));
    }
    let from = from.max(oldest);
    let mut names: Vec<String> = versions.to_vec();
    for c in counts {
        if !names.contains(&c.version) {
            names.push(c.version.clone());
        }
    }
    let per_version: Vec<(String, HourlySeries)> = names
        .iter()
        .map(|v| {
            let mine: Vec<HourlyCount> = counts
                .iter()
                .filter(|c| &c.version == v)
                .map(|c| (*c).clone())
                .collect();
            (v.clone(), series(&mine, from, to))
        })
        .collect();
    let top = per_version
        .iter()
        .flat_map(|(_, s)| s.iter().map(|(_, a, f)| (*a).max(*f)))
        .max()
        .unwrap_or(0);
    let frame = Frame::new(from, to, nice_max(top as f64));
    let lines: Vec<Line> = per_version
        .iter()
        .enumerate()
        .flat_map(|(i, (v, s))| {
            let installs: Vec<(u64, f64)> = s.iter().map(|(h, a, _)| (*h, *a as f64)).collect();
            let failures: Vec<(u64, f64)> = s.iter().map(|(h, _, f)| (*h, *f as f64)).collect();
            [
                Line {
                    version: v.clone(),
                    series: "installs",
                    class: format!("v{}", i % 4),
                    points: frame.points(&installs),
                    n: installs.len(),
                    total: s.iter().map(|p| p.1).sum(),
                },
                Line {
                    version: v.clone(),
                    series: "failures",
                    class: format!("v{} fail", i % 4),
                    points: frame.points(&failures),
                    n: failures.len(),
                    total: s.iter().map(|p| p.2).sum(),
                },
            ]
        })
        .collect();
    let marks: Vec<Mark> = history
        .iter()
        .filter_map(|h| {
            let hour = h.at_micros as f64 / 1e6 / HOUR_SECS as f64;
            (hour >= frame.from_hour as f64).then(|| Mark {
                x: format!("{:.1}", frame.x(hour)),
                label: format!(
                    "{} {}",
                    h.action.as_str(),
                    h.detail.as_deref().unwrap_or("")
                ),
            })
        })
        .collect();
    // The legend: one entry per version, saying so when it has no counted device yet.
    let legend: Vec<LegendEntry> = lines
        .chunks(2)
        .map(|pair| LegendEntry {
            version: pair[0].version.clone(),
            class: pair[0].class.clone(),
            installs: pair[0].total,
            failures: pair[1].total,
            empty: pair[0].total == 0 && pair[1].total == 0,
        })
        .collect();
    let empty = legend.iter().all(|l| l.empty);
    let rate = rollout.and_then(|r| rate_chart(&per_version, r, frame));
    Chart {
        width: WIDTH,
        height: HEIGHT,
        left: LEFT,
        right: WIDTH - RIGHT,
        top: TOP,
        bottom: HEIGHT - BOTTOM,
        from: rfc3339(frame.from_hour * HOUR_SECS * 1_000_000),
        to: rfc3339(frame.to_hour * HOUR_SECS * 1_000_000),
        from_label: hour_label(frame.from_hour, frame.to_hour - frame.from_hour > 24),
        to_label: format!("{} UTC", hour_label(frame.to_hour, false)),
        max: frame.max,
        max_label: format!("{}", frame.max),
        lines,
        versions: names.join(", "),
        legend,
        empty,
        marks,
        rate,
    }
}

/// An hour as the charts' time axis shows it: `07:00`, or `12-02 07:00` for windows longer
/// than a day.
fn hour_label(hour: u64, with_day: bool) -> String {
    let t = rfc3339(hour * HOUR_SECS * 1_000_000);
    // rfc3339: `2026-12-02T07:00:00Z`.
    match (t.get(5..10), t.get(11..16)) {
        (Some(day), Some(time)) if with_day => format!("{day} {time}"),
        (_, Some(time)) => time.to_owned(),
        _ => t,
    }
}

/// A rate (a fraction) as a short percentage: `5%`, `62%`, `0.5%`.
fn percent_label(rate: f64) -> String {
    let p = rate * 100.0;
    if p >= 10.0 || p == p.round() {
        format!("{p:.0}%")
    } else {
        format!("{p:.1}%")
    }
}

/// The rollout version's failure rate bounds over the window, against the gate's threshold.
#[derive(Debug, Serialize)]
pub struct RateChart {
    pub version: String,
    pub threshold: f64,
    pub threshold_y: String,
    pub threshold_label_y: String,
    pub threshold_label: String,
    pub max: f64,
    pub max_label: String,
    pub empty: bool,
    pub lower: String,
    pub upper: String,
    pub n: usize,
}

/// The rollout version's failure rate, cumulative over the window, as the Wilson 95% bounds
/// the gate compares (lower: halts above the threshold; upper: steps on below it), with the
/// threshold drawn across.
fn rate_chart(
    per_version: &[(String, HourlySeries)],
    rollout: &RolloutStatus,
    counts_frame: Frame,
) -> Option<RateChart> {
    let version = &rollout.rollout_version;
    let threshold = rollout.gate.max_failure_rate;
    let (_, s) = per_version.iter().find(|(v, _)| v == version)?;
    let (mut attempts, mut failures) = (0u64, 0u64);
    let mut lower = Vec::with_capacity(s.len());
    let mut upper = Vec::with_capacity(s.len());
    for (h, a, f) in s {
        attempts += a;
        failures += f;
        lower.push((*h, wilson_lower_bound(failures, attempts.max(failures))));
        upper.push((
            *h,
            if attempts == 0 {
                1.0
            } else {
                wilson_upper_bound(failures, attempts.max(failures))
            },
        ));
    }
    // Rates are fractions: the frame's top is the larger of the threshold and the bounds.
    let top = upper
        .iter()
        .map(|p| p.1)
        .chain([threshold * 2.0])
        .fold(0.0f64, f64::max)
        .min(1.0);
    let mut frame = counts_frame;
    frame.max = if top > 0.0 { top } else { 1.0 };
    Some(RateChart {
        version: version.clone(),
        threshold,
        threshold_y: format!("{:.1}", frame.y(threshold)),
        threshold_label_y: format!("{:.1}", (frame.y(threshold) - 3.0).max(TOP + 8.0)),
        threshold_label: format!("gate threshold {}", percent_label(threshold)),
        max: frame.max,
        max_label: percent_label(frame.max),
        empty: attempts == 0,
        lower: frame.points(&lower),
        upper: frame.points(&upper),
        n: lower.len(),
    })
}
