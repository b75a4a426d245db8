//! What the dashboard shows, read through the operator commands' own functions (`channel
//! list`, `history`, `rollout status`, `bundles list`) plus each version's evidence and the
//! hourly counts, and turned into one JSON value for the templates. Curves are drawn here (`domain::chart`).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::backend::OperatorStores;
use crate::cli::releases::{channel_list_of, history_entries, history_report, require_app};
use crate::cli::rollout::rollout_status_of;
use crate::domain::chart::{BOTTOM, Frame, HEIGHT, LEFT, RIGHT, TOP, WIDTH, nice_max};
use crate::domain::evidence::{Evidence, EvidenceKey};
use crate::domain::health::{wilson_lower_bound, wilson_upper_bound};
use crate::domain::history::rfc3339;
use crate::domain::hourly::{
    HOUR_SECS, HOURLY_KEEP_SECS, HourlyCount, HourlySeries, hour_of, series,
};
use crate::domain::release::{Target, release_sk};
use crate::domain::rollout::{percent_text, steps_text};
use crate::rollouts::now_unix;

/// History entries the page lists (and marks on the curves).
const HISTORY_ROWS: usize = 30;

/// The live part of an app's page: its channels, their rollouts, curves and history.
pub async fn app_live(stores: &OperatorStores, app_id: &str) -> anyhow::Result<Value> {
    let now = now_unix();
    let since = hour_of(now.saturating_sub(HOURLY_KEEP_SECS));
    // One read each of the app's items, its counters, its history and its hourly window;
    // then the operator commands' own reports are made from them.
    let (snap, entries, hourly) = tokio::join!(
        require_app(stores, app_id),
        history_entries(stores, app_id, None, Some(HISTORY_ROWS)),
        stores.stats.hourly(app_id, since),
    );
    let (snap, entries, hourly) = (snap?, entries?, hourly?);
    let channels = channel_list_of(&snap)?.json;
    let hist = history_report(app_id, entries)?.json;
    // Each item's stable version is counted as the gate counts its rollout: its evidence
    // (distinct devices, each network capped), under the key devices' reports are filed under.
    let mut stable_keys = Vec::new();
    for (channel, releases) in &snap.channels {
        for (target, release) in releases.targets() {
            if let Ok(r) = release {
                let epoch = r.serving(&r.version_text).map_or(0, |(_, e)| e);
                stable_keys.push(EvidenceKey {
                    app_id: app_id.to_owned(),
                    sk: release_sk(channel, target),
                    version: r.version_text.clone(),
                    epoch,
                });
            }
        }
    }
    let read = stable_keys.iter().map(|k| stores.stats.evidence(k));
    let mut stable_evidence = BTreeMap::new();
    for (key, e) in stable_keys
        .iter()
        .zip(futures_util::future::join_all(read).await)
    {
        stable_evidence.insert(key.sk.clone(), (key.version.clone(), e?));
    }
    // The items with a rollout get its status (one read of its evidence each).
    let mut statuses = BTreeMap::new();
    for (channel, releases) in &snap.channels {
        for (target, release) in releases.targets() {
            if let Ok(r) = release
                && r.rollout.is_some()
            {
                let status = match rollout_status_of(
                    stores, &snap, app_id, channel, target, &r.item,
                )
                .await
                {
                    Ok(report) => report.json,
                    Err(e) => json!({ "error": format!("{e:#}") }),
                };
                statuses.insert(release_sk(channel, target), status);
            }
        }
    }
    let history_rows = hist.as_array().cloned().unwrap_or_default();
    let mut cards = Vec::new();
    for row in channels.as_array().into_iter().flatten() {
        let channel = row["channel"].as_str().unwrap_or_default();
        let platform = row["platform"].as_str().unwrap_or("all");
        let target = Target::parse(platform).unwrap_or(Target::All);
        let sk = release_sk(channel, target);
        let rollout = statuses.get(&sk).cloned();
        let mut versions: Vec<String> = row["version"]
            .as_str()
            .map(str::to_owned)
            .into_iter()
            .collect();
        if let Some(v) = rollout.as_ref().and_then(|r| r["rollout_version"].as_str())
            && !versions.iter().any(|x| x == v)
        {
            versions.push(v.to_owned());
        }
        // The stable version, then the rollout's: the figures the gate's line shows.
        let mut health: Vec<Value> = stable_evidence
            .get(&sk)
            .map(|(v, e)| health_row(v, "stable", *e))
            .into_iter()
            .collect();
        if let Some(r) = rollout.as_ref()
            && let Some(v) = r["rollout_version"].as_str()
        {
            let e = Evidence {
                attempts: r["devices"].as_u64().unwrap_or(0),
                failures: r["failures"].as_u64().unwrap_or(0),
                failing_networks: r["failing_networks"].as_u64().unwrap_or(0),
            };
            health.push(health_row(v, "rollout", e));
        }
        let counts: Vec<&HourlyCount> = hourly.iter().filter(|c| c.sk == sk).collect();
        let marks: Vec<&Value> = history_rows
            .iter()
            .filter(|h| h["channel"] == channel && h["platform"] == platform)
            .collect();
        let next_percent = rollout.as_ref().and_then(next_step);
        let share = |p: f64| percent_text((p * 100.0).round() as u32);
        let percent_text = rollout
            .as_ref()
            .and_then(|r| r["percent"].as_f64())
            .map(share);
        let steps_text = rollout.as_ref().and_then(|r| {
            let steps: Vec<u32> = r["gate"]["steps"]
                .as_array()?
                .iter()
                .filter_map(|s| s.as_u64().map(|s| s as u32))
                .collect();
            (!steps.is_empty()).then(|| steps_text(&steps))
        });
        cards.push(json!({
            "channel": channel,
            "platform": platform,
            "version": row["version"],
            "paused": row["paused"],
            "pause_reason": row["pause_reason"],
            "default_for": row["default_for"],
            "error": row["error"],
            "rollout": rollout,
            "next_percent": next_percent,
            "next_percent_text": next_percent.map(share),
            "percent_text": percent_text,
            "steps_text": steps_text,
            "health": health,
            "chart": chart(&counts, &versions, rollout.as_ref(), &marks, now),
            "others": channels.as_array().into_iter().flatten()
                .filter_map(|r| r["channel"].as_str())
                .filter(|c| *c != channel)
                .collect::<std::collections::BTreeSet<_>>(),
        }));
    }
    // The channels devices get by default first, the rest by name.
    cards.sort_by_key(|c| c["default_for"].as_array().is_none_or(|a| a.is_empty()));
    Ok(json!({
        "app_id": app_id,
        "now": rfc3339(now * 1_000_000),
        "cards": cards,
        "history": history_rows,
    }))
}

/// One row of a card's version table: a version's evidence and its failure rate's 95% bounds.
fn health_row(version: &str, role: &str, e: Evidence) -> Value {
    json!({
        "version": version,
        "role": role,
        "devices": e.attempts,
        "failures": e.failures,
        "failing_networks": e.failing_networks,
        "failure_rate": if e.attempts == 0 { 0.0 } else { e.failures as f64 / e.attempts as f64 },
        "lower": wilson_lower_bound(e.failures, e.attempts),
        "upper": wilson_upper_bound(e.failures, e.attempts),
    })
}

/// The share the rollout's next step would set, in percent (`None` at the last step, without
/// steps, or once aborted).
fn next_step(status: &Value) -> Option<f64> {
    if status["state"] == "aborted" {
        return None;
    }
    let current = (status["percent"].as_f64()? * 100.0).round() as u64;
    status["gate"]["steps"]
        .as_array()?
        .iter()
        .filter_map(Value::as_u64)
        .find(|bp| *bp > current)
        .map(|bp| bp as f64 / 100.0)
}

/// One release item's curves: devices that installed and failed each version per hour, from
/// the first counted hour (or the rollout's start) to now, with history marked; and for a
/// rollout, the failure-rate bounds of its version against the gate's threshold.
fn chart(
    counts: &[&HourlyCount],
    versions: &[String],
    rollout: Option<&Value>,
    history: &[&Value],
    now: u64,
) -> Value {
    let to = hour_of(now);
    let oldest = hour_of(now.saturating_sub(HOURLY_KEEP_SECS));
    let mut from = counts.iter().map(|c| c.hour).min().unwrap_or(to);
    if let Some(started) = rollout.and_then(|r| r["started_at"].as_u64()) {
        from = from.min(hour_of(started));
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
    let lines: Vec<Value> = per_version
        .iter()
        .enumerate()
        .flat_map(|(i, (v, s))| {
            let installs: Vec<(u64, f64)> = s.iter().map(|(h, a, _)| (*h, *a as f64)).collect();
            let failures: Vec<(u64, f64)> = s.iter().map(|(h, _, f)| (*h, *f as f64)).collect();
            [
                json!({"version": v, "series": "installs", "class": format!("v{}", i % 4),
                       "points": frame.points(&installs), "n": installs.len(),
                       "total": s.iter().map(|p| p.1).sum::<u64>()}),
                json!({"version": v, "series": "failures", "class": format!("v{} fail", i % 4),
                       "points": frame.points(&failures), "n": failures.len(),
                       "total": s.iter().map(|p| p.2).sum::<u64>()}),
            ]
        })
        .collect();
    let marks: Vec<Value> = history
        .iter()
        .filter_map(|h| {
            let at = h["at_micros"].as_u64()? as f64 / 1e6;
            let hour = at / HOUR_SECS as f64;
            (hour >= frame.from_hour as f64).then(|| {
                json!({"x": format!("{:.1}", frame.x(hour)), "label": format!("{} {}", h["action"].as_str().unwrap_or(""), h["detail"].as_str().unwrap_or(""))})
            })
        })
        .collect();
    // The legend: one entry per version, saying so when it has no counted device yet.
    let legend: Vec<Value> = lines
        .chunks(2)
        .map(|pair| {
            json!({"version": pair[0]["version"], "class": pair[0]["class"],
                   "installs": pair[0]["total"], "failures": pair[1]["total"],
                   "empty": pair[0]["total"] == 0 && pair[1]["total"] == 0})
        })
        .collect();
    let empty = legend.iter().all(|l| l["empty"] == true);
    let rate = rollout.and_then(|r| rate_chart(&per_version, r, frame));
    json!({
        "width": WIDTH, "height": HEIGHT,
        "left": LEFT, "right": WIDTH - RIGHT, "top": TOP, "bottom": HEIGHT - BOTTOM,
        "from": rfc3339(frame.from_hour * HOUR_SECS * 1_000_000),
        "to": rfc3339(frame.to_hour * HOUR_SECS * 1_000_000),
        "from_label": hour_label(frame.from_hour, frame.to_hour - frame.from_hour > 24),
        "to_label": format!("{} UTC", hour_label(frame.to_hour, false)),
        "max": frame.max,
        "max_label": format!("{}", frame.max),
        "lines": lines,
        "versions": names.join(", "),
        "legend": legend,
        "empty": empty,
        "marks": marks,
        "rate": rate,
    })
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

/// The rollout version's failure rate, cumulative over the window, as the Wilson 95% bounds
/// the gate compares (lower: halts above the threshold; upper: steps on below it), with the
/// threshold drawn across.
fn rate_chart(
    per_version: &[(String, HourlySeries)],
    rollout: &Value,
    counts_frame: Frame,
) -> Option<Value> {
    let version = rollout["rollout_version"].as_str()?;
    let threshold = rollout["gate"]["max_failure_rate"].as_f64()?;
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
    Some(json!({
        "version": version,
        "threshold": threshold,
        "threshold_y": format!("{:.1}", frame.y(threshold)),
        "threshold_label_y": format!("{:.1}", (frame.y(threshold) - 3.0).max(TOP + 8.0)),
        "threshold_label": format!("gate threshold {}", percent_label(threshold)),
        "max": frame.max,
        "max_label": percent_label(frame.max),
        "empty": attempts == 0,
        "lower": frame.points(&lower),
        "upper": frame.points(&upper),
        "n": lower.len(),
    }))
}
