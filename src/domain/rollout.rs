//! Staged rollouts: a release item serves its stable version to everyone and, while a rollout
//! runs, a second version (`rollout_*` attributes of the same item, read by
//! `domain::release`) to a share of devices. Which devices are in is a stateless, sticky
//! function of (device id, rollout id); health-gated steps advance the share on a schedule,
//! and halt it when the rollout version fails. Keeping the rollout on the release item means
//! the update check reads it with the item (no extra round trip) and every rollout change is
//! one conditional write with its history entry.

use sha2::{Digest, Sha256};

use crate::domain::evidence::Evidence;
use crate::domain::health::{wilson_lower_bound, wilson_upper_bound};
use crate::domain::item::{AttrValue, Item};
use crate::domain::release::{
    Gate, OnFailure, ROLLOUT_HALT_REASON, ROLLOUT_ID, ROLLOUT_MAX_FAILURE_RATE,
    ROLLOUT_MIN_DEVICES, ROLLOUT_ON_FAILURE, ROLLOUT_PERCENT, ROLLOUT_RESUMED_AT,
    ROLLOUT_STARTED_AT, ROLLOUT_STATE, ROLLOUT_STEP_EVERY, ROLLOUT_STEPPED_AT, ROLLOUT_STEPS,
    Rollout, RolloutState, SERVED_ATTRS, rollout_attr, rollout_release_item,
};
use crate::domain::share::{FULL, percent_number, percent_text, steps_text};

impl Rollout {
    /// Whether this device id is in the cohort at the current share.
    pub fn includes(&self, device_id: &str) -> bool {
        bucket(&self.id, device_id).is_some_and(|b| b < self.basis_points)
    }
}

/// The device's place in a rollout, 0..10000: SHA-256 of the rollout id and the device id's
/// 16 bytes (so case and format do not matter). Stateless and sticky: a device below a share
/// stays below every larger share. `None` for an empty or malformed device id (never in).
pub fn bucket(rollout_id: &str, device_id: &str) -> Option<u32> {
    let uuid = uuid::Uuid::try_parse(device_id).ok()?;
    let mut h = Sha256::new();
    h.update(rollout_id.as_bytes());
    h.update([0u8]);
    h.update(uuid.as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    Some((u64::from_be_bytes(first) % u64::from(FULL)) as u32)
}

/// Starts a rollout of `next` (a release item: the new version's served attributes and any
/// policy flags) on `current` (the item serving the stable version).
pub fn start(
    current: &Item,
    next: &Item,
    id: &str,
    basis_points: u32,
    gate: &Gate,
    now: u64,
) -> Item {
    let mut item: Item = current
        .iter()
        .filter(|(k, _)| !k.starts_with("rollout_"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in next {
        if SERVED_ATTRS.contains(&k.as_str()) {
            item.insert(rollout_attr(k), v.clone());
        } else if k != "released_at" {
            item.insert(k.clone(), v.clone());
        }
    }
    let n = |v: u64| AttrValue::N(v.into());
    item.insert(ROLLOUT_ID.into(), AttrValue::S(id.to_owned()));
    item.insert(ROLLOUT_PERCENT.into(), percent_number(basis_points));
    item.insert(ROLLOUT_STATE.into(), AttrValue::S("active".into()));
    item.insert(ROLLOUT_STARTED_AT.into(), n(now));
    item.insert(ROLLOUT_STEPPED_AT.into(), n(now));
    if !gate.steps.is_empty() {
        item.insert(ROLLOUT_STEPS.into(), AttrValue::S(steps_text(&gate.steps)));
    }
    item.insert(ROLLOUT_STEP_EVERY.into(), n(gate.step_every_secs));
    if let Some(r) = serde_json::Number::from_f64(gate.max_failure_rate) {
        item.insert(ROLLOUT_MAX_FAILURE_RATE.into(), AttrValue::N(r));
    }
    item.insert(ROLLOUT_MIN_DEVICES.into(), n(gate.min_devices));
    item.insert(
        ROLLOUT_ON_FAILURE.into(),
        AttrValue::S(gate.on_failure.as_str().into()),
    );
    item
}

/// One change of a rollout, by an operator or by the gate.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    SetShare(u32),
    Pause(Option<String>),
    Resume,
    Abort(Option<String>),
    /// The rollout version becomes the stable version.
    Complete,
}

/// The release item after `change`.
pub fn apply(item: &Item, change: &Change, now: u64) -> Item {
    let mut next = item.clone();
    let n = |v: u64| AttrValue::N(v.into());
    let state = |next: &mut Item, s: &str| {
        next.insert(ROLLOUT_STATE.into(), AttrValue::S(s.into()));
    };
    match change {
        Change::SetShare(bp) => {
            next.insert(ROLLOUT_PERCENT.into(), percent_number(*bp));
            next.insert(ROLLOUT_STEPPED_AT.into(), n(now));
        }
        Change::Pause(why) => {
            state(&mut next, "paused");
            if let Some(why) = why {
                next.insert(ROLLOUT_HALT_REASON.into(), AttrValue::S(why.clone()));
            }
        }
        Change::Resume => {
            state(&mut next, "active");
            next.remove(ROLLOUT_HALT_REASON);
            next.insert(ROLLOUT_RESUMED_AT.into(), n(now));
            next.insert(ROLLOUT_STEPPED_AT.into(), n(now));
        }
        Change::Abort(why) => {
            state(&mut next, "aborted");
            if let Some(why) = why {
                next.insert(ROLLOUT_HALT_REASON.into(), AttrValue::S(why.clone()));
            }
        }
        Change::Complete => {
            // The rollout version's item becomes the channel's item.
            next = rollout_release_item(item);
            next.insert("released_at".into(), n(now));
        }
    }
    next
}

/// What the gate makes of a rollout's evidence.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Nothing to do now, and why.
    Hold(String),
    /// Move to the next step (or complete, at the last), with the figures.
    Advance { change: Change, why: String },
    /// The rollout version fails: pause or abort, with the figures.
    Halt { change: Change, why: String },
}

/// The gate, on a rollout's evidence (counted by the evidence rule: each device once, each
/// network at most its cap). Halts as soon as the failure rate is above the threshold with 95%
/// confidence (Wilson lower bound) and the failures come from `min_networks` networks; advances
/// when the step's time is up, `min_devices` devices attempted it and the rate is below the
/// threshold with 95% confidence (Wilson upper bound).
pub fn judge(r: &Rollout, e: Evidence, min_networks: u64, now: u64) -> Verdict {
    if r.state != RolloutState::Active {
        return Verdict::Hold(format!("the rollout is {}", r.state.as_str()));
    }
    let g = &r.gate;
    let share = percent_text(r.basis_points);
    let rate = |b: f64| format!("{:.2}%", b * 100.0);
    let figures = match e.failures {
        0 => format!("0 of {} devices failed", e.attempts),
        n => format!(
            "{n} of {} devices failed, from {} networks",
            e.attempts, e.failing_networks
        ),
    };
    let lower = wilson_lower_bound(e.failures, e.attempts);
    if e.failing_networks >= min_networks.max(1) && lower > g.max_failure_rate {
        let why = format!(
            "step {share}: {figures}; failure rate at least {} (95% confidence) is above {}: {}",
            rate(lower),
            rate(g.max_failure_rate),
            match g.on_failure {
                OnFailure::Pause => "paused",
                OnFailure::Abort => "aborted",
            }
        );
        let change = match g.on_failure {
            OnFailure::Pause => Change::Pause(Some(why.clone())),
            OnFailure::Abort => Change::Abort(Some(why.clone())),
        };
        return Verdict::Halt { change, why };
    }
    if g.steps.is_empty() {
        return Verdict::Hold("no steps: the share changes only by hand".into());
    }
    let due = r.stepped_at.saturating_add(g.step_every_secs);
    if now < due {
        return Verdict::Hold(format!("step {share}: next step due in {} s", due - now));
    }
    if e.attempts < g.min_devices {
        return Verdict::Hold(format!(
            "step {share}: {} of the {} devices needed have tried it",
            e.attempts, g.min_devices
        ));
    }
    let upper = wilson_upper_bound(e.failures, e.attempts);
    if upper >= g.max_failure_rate {
        return Verdict::Hold(format!(
            "step {share}: {figures}; failure rate up to {} (95% confidence) is not yet below {}",
            rate(upper),
            rate(g.max_failure_rate)
        ));
    }
    let healthy = format!(
        "{figures}; failure rate at most {} (95% confidence), below {}",
        rate(upper),
        rate(g.max_failure_rate)
    );
    match g.steps.iter().find(|bp| **bp > r.basis_points) {
        Some(next) => Verdict::Advance {
            change: Change::SetShare(*next),
            why: format!("step {share} -> {}: {healthy}", percent_text(*next)),
        },
        None => Verdict::Advance {
            change: Change::Complete,
            why: format!("step {share} healthy, complete: {healthy}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::release::tests::{SUM, item, s};
    use crate::domain::release::{Release, parse_rollout};
    use crate::domain::share::parse_percent;

    fn device(i: u32) -> String {
        format!("6a1f0b3e-1111-4222-8333-{i:012x}")
    }

    fn rollout_item(percent: f64) -> Item {
        let mut it = item(&[
            ("version", s("1.0.1")),
            ("bundle", s("a/1.zip")),
            ("checksum", s(SUM)),
            ("paused", AttrValue::Bool(true)),
            ("allow_emulator", AttrValue::Bool(false)),
        ]);
        let next = item(&[
            ("version", s("1.0.2")),
            ("bundle", s("a/2.zip")),
            ("checksum", s(SUM)),
        ]);
        let gate = Gate {
            steps: vec![100, 500, 2500, FULL],
            step_every_secs: 60,
            max_failure_rate: 0.05,
            min_devices: 50,
            on_failure: OnFailure::Pause,
        };
        it = start(
            &it,
            &next,
            "r1",
            parse_percent(percent).unwrap(),
            &gate,
            1000,
        );
        it
    }

    #[test]
    fn buckets_are_sticky_uniform_and_independent() {
        assert_eq!(bucket("r", ""), None);
        assert_eq!(bucket("r", "not-a-uuid"), None);
        assert_eq!(
            bucket("r", &device(7).to_uppercase()),
            bucket("r", &device(7))
        );
        let n = 100_000;
        let a: Vec<u32> = (0..n).map(|i| bucket("a", &device(i)).unwrap()).collect();
        let b: Vec<u32> = (0..n).map(|i| bucket("b", &device(i)).unwrap()).collect();
        let in5 = a.iter().filter(|x| **x < 500).count();
        assert!((4500..=5500).contains(&in5), "{in5}");
        let both = a
            .iter()
            .zip(&b)
            .filter(|(x, y)| **x < 500 && **y < 500)
            .count();
        // Independent: 5 % of 5 % of n = 250.
        assert!((225..=275).contains(&both), "{both}");
    }

    #[test]
    fn rollout_items_round_trip() {
        let it = rollout_item(5.0);
        let r = parse_rollout(&it).unwrap().unwrap();
        assert_eq!(
            (r.version(), r.basis_points, r.state),
            ("1.0.2", 500, RolloutState::Active)
        );
        assert!(!r.release.paused, "the stable version's pause is its own");
        assert!(!r.release.allow_emulator, "policy is shared");
        assert_eq!(r.release.bundle.as_deref(), Some("a/2.zip"));
        let stable = Release::from_item(&it).unwrap();
        assert_eq!(stable.version_text, "1.0.1");
        let done = apply(&it, &Change::Complete, 2000);
        assert!(parse_rollout(&done).is_none());
        let done = Release::from_item(&done).unwrap();
        assert_eq!((done.version_text.as_str(), done.paused), ("1.0.2", false));
        assert_eq!(done.bundle.as_deref(), Some("a/2.zip"));
        let mut bad = it.clone();
        bad.insert(ROLLOUT_PERCENT.into(), AttrValue::S("5".into()));
        assert!(parse_rollout(&bad).unwrap().is_err());
        bad.remove(ROLLOUT_PERCENT);
        assert!(parse_rollout(&bad).unwrap().is_err());
    }

    #[test]
    fn gate_advances_healthy_and_halts_failing() {
        let r = parse_rollout(&rollout_item(1.0)).unwrap().unwrap();
        let e = |attempts, failures, failing_networks| Evidence {
            attempts,
            failures,
            failing_networks,
        };
        assert!(
            matches!(judge(&r, e(500, 0, 0), 3, 1030), Verdict::Hold(w) if w.contains("due in 30 s"))
        );
        assert!(
            matches!(judge(&r, e(20, 0, 0), 3, 1060), Verdict::Hold(w) if w.contains("20 of the 50"))
        );
        let Verdict::Advance { change, why } = judge(&r, e(200, 0, 0), 3, 1060) else {
            panic!()
        };
        assert_eq!(change, Change::SetShare(500));
        assert!(why.contains("step 1% -> 5%"), "{why}");
        // 5 of 100: the upper bound (11 %) is not below 5 %.
        assert!(matches!(judge(&r, e(100, 5, 5), 3, 1060), Verdict::Hold(_)));
        // 30 of 100 from 10 networks: halts, even before the step is due.
        let Verdict::Halt { change, why } = judge(&r, e(100, 30, 10), 3, 1001) else {
            panic!()
        };
        assert!(matches!(change, Change::Pause(Some(_))));
        assert!(
            why.contains("30 of 100 devices failed, from 10 networks") && why.contains("paused"),
            "{why}"
        );
        // Failures from one network never halt.
        assert!(!matches!(
            judge(&r, e(10, 10, 1), 3, 1001),
            Verdict::Halt { .. }
        ));
        let mut last = r.clone();
        last.basis_points = FULL;
        assert!(matches!(
            judge(&last, e(200, 0, 0), 3, 1060),
            Verdict::Advance {
                change: Change::Complete,
                ..
            }
        ));
        let mut paused = r.clone();
        paused.state = RolloutState::Paused;
        assert!(matches!(
            judge(&paused, e(100, 90, 90), 3, 1060),
            Verdict::Hold(_)
        ));
    }
}
