//! Staged rollouts: a release item serves its stable version to everyone and, while a rollout
//! runs, a second version (`rollout_*` attributes of the same item) to a share of devices.
//! Which devices are in is a stateless, sticky function of (device id, rollout id); health-gated
//! steps advance the share on a schedule, and halt it when the rollout version fails. Keeping
//! the rollout on the release item means the update check reads it with the item (no extra
//! round trip) and every rollout change is one conditional write with its history entry.

use sha2::{Digest, Sha256};

use crate::domain::evidence::Evidence;
use crate::domain::health::{wilson_lower_bound, wilson_upper_bound};
use crate::domain::item::{AttrValue, Item};
use crate::domain::release::{ItemError, Release};

/// Shares are counted in basis points: 0.01 % steps.
pub const FULL: u32 = 10_000;

/// The attributes that say what a release item serves; a rollout carries its own copy of each
/// as `rollout_<name>` (the channel's policy is shared by both versions).
pub const SERVED_ATTRS: &[&str] = &[
    "version",
    "bundle",
    "url",
    "checksum",
    "session_key",
    "key_id",
    "link",
    "comment",
    "manifest",
];

/// Attributes that belong to the stable version's life (pause state, its evidence epoch), not
/// to the rollout version.
const STABLE_ONLY_ATTRS: &[&str] = &[
    "paused",
    "pause_reason",
    "paused_at",
    "resumed_at",
    "pause_baseline_installs",
    "pause_baseline_failures",
    "released_at",
];

pub const ROLLOUT_ID: &str = "rollout_id";
pub const ROLLOUT_VERSION: &str = "rollout_version";
pub const ROLLOUT_PERCENT: &str = "rollout_percent";
pub const ROLLOUT_STATE: &str = "rollout_state";
pub const ROLLOUT_STARTED_AT: &str = "rollout_started_at";
pub const ROLLOUT_STEPPED_AT: &str = "rollout_stepped_at";
pub const ROLLOUT_RESUMED_AT: &str = "rollout_resumed_at";
pub const ROLLOUT_STEPS: &str = "rollout_steps";
pub const ROLLOUT_STEP_EVERY: &str = "rollout_step_every";
pub const ROLLOUT_MAX_FAILURE_RATE: &str = "rollout_max_failure_rate";
pub const ROLLOUT_MIN_DEVICES: &str = "rollout_min_devices";
pub const ROLLOUT_ON_FAILURE: &str = "rollout_on_failure";
pub const ROLLOUT_HALT_REASON: &str = "rollout_halt_reason";

/// Defaults of the gate, documented in README.
pub const DEFAULT_STEP_EVERY_SECS: u64 = 3600;
pub const DEFAULT_MAX_FAILURE_RATE: f64 = 0.05;
pub const DEFAULT_MIN_DEVICES: u64 = 100;

/// `rollout_<name>`.
pub fn rollout_attr(name: &str) -> String {
    format!("rollout_{name}")
}

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RolloutState {
    /// Devices in the cohort get the rollout version.
    Active,
    /// No device enters; those already on the rollout version stay on it.
    Paused,
    /// Everyone is offered the stable version again.
    Aborted,
}

impl RolloutState {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active" => Self::Active,
            "paused" => Self::Paused,
            "aborted" => Self::Aborted,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Paused => "paused",
            Self::Aborted => "aborted",
        }
    }
}

/// What a failing rollout does to itself (`rollout_on_failure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    Pause,
    Abort,
}

impl OnFailure {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pause" => Some(Self::Pause),
            "abort" => Some(Self::Abort),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Abort => "abort",
        }
    }
}

/// The health gate of a rollout, with README's defaults.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Gate {
    /// Shares to advance through, ascending, in basis points (`rollout_steps`); empty for a
    /// rollout moved only by hand.
    pub steps: Vec<u32>,
    pub step_every_secs: u64,
    pub max_failure_rate: f64,
    pub min_devices: u64,
    pub on_failure: OnFailure,
}

/// A rollout as a release item holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    /// Picks the cohort: two rollouts (two ids) pick independent cohorts.
    pub id: String,
    /// The rollout version as served, with the channel's policy.
    pub release: Box<Release>,
    pub basis_points: u32,
    pub state: RolloutState,
    pub started_at: u64,
    pub stepped_at: u64,
    pub resumed_at: Option<u64>,
    pub gate: Gate,
    pub halt_reason: Option<String>,
}

impl Rollout {
    /// Its evidence epoch: a resume starts the evidence afresh.
    pub fn epoch(&self) -> u64 {
        self.resumed_at.unwrap_or(self.started_at)
    }

    pub fn version(&self) -> &str {
        &self.release.version_text
    }

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

/// A share as people write it: 5, 0.25, 100 (percent, 0.01 steps).
pub fn percent_text(bp: u32) -> String {
    if bp.is_multiple_of(100) {
        format!("{}%", bp / 100)
    } else {
        let s = format!("{:.2}", f64::from(bp) / 100.0);
        format!("{}%", s.trim_end_matches('0'))
    }
}

/// A percentage (0–100, in 0.01 steps) as basis points.
pub fn parse_percent(p: f64) -> Result<u32, String> {
    let bp = (p * 100.0).round();
    if !(0.0..=f64::from(FULL)).contains(&bp) || !p.is_finite() {
        return Err(format!("{p} is not a percentage between 0 and 100"));
    }
    if (p * 100.0 - bp).abs() > 1e-6 {
        return Err(format!("{p} is finer than 0.01 %"));
    }
    Ok(bp as u32)
}

/// `1,5,25,100` as ascending basis points.
pub fn parse_steps(s: &str) -> Result<Vec<u32>, String> {
    let mut steps = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let p: f64 = part
            .trim_end_matches('%')
            .parse()
            .map_err(|_| format!("step {part:?} is not a percentage"))?;
        let bp = parse_percent(p)?;
        if bp == 0 || steps.last().is_some_and(|last| *last >= bp) {
            return Err("steps must be ascending percentages above 0, such as 1,5,25,100".into());
        }
        steps.push(bp);
    }
    Ok(steps)
}

pub fn steps_text(steps: &[u32]) -> String {
    steps
        .iter()
        .map(|bp| percent_text(*bp).trim_end_matches('%').to_owned())
        .collect::<Vec<_>>()
        .join(",")
}

fn s_attr<'a>(item: &'a Item, name: &'static str) -> Result<Option<&'a str>, ItemError> {
    match item.get(name) {
        None => Ok(None),
        Some(AttrValue::S(s)) => Ok(Some(s)),
        Some(_) => Err(ItemError::WrongType {
            name: name.into(),
            expected: "a string (S)",
        }),
    }
}

fn n_attr(item: &Item, name: &'static str) -> Result<Option<f64>, ItemError> {
    match item.get(name) {
        None => Ok(None),
        Some(AttrValue::N(n)) => n.as_f64().map(Some).ok_or(ItemError::Invalid {
            name,
            why: "must be a number".into(),
        }),
        Some(_) => Err(ItemError::WrongType {
            name: name.into(),
            expected: "a number (N)",
        }),
    }
}

fn invalid(name: &'static str, why: impl Into<String>) -> ItemError {
    ItemError::Invalid {
        name,
        why: why.into(),
    }
}

/// The rollout version's item: the release item without its rollout and stable-only
/// attributes, with the `rollout_*` served attributes in their place.
pub fn rollout_release_item(item: &Item) -> Item {
    let mut out: Item = item
        .iter()
        .filter(|(k, _)| {
            !k.starts_with("rollout_")
                && !SERVED_ATTRS.contains(&k.as_str())
                && !STABLE_ONLY_ATTRS.contains(&k.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for name in SERVED_ATTRS {
        if let Some(v) = item.get(&rollout_attr(name)) {
            out.insert((*name).to_owned(), v.clone());
        }
    }
    out
}

/// Reads the rollout of a release item; `None` when it has none (`rollout_version` absent).
pub fn parse_rollout(item: &Item) -> Option<Result<Rollout, ItemError>> {
    item.contains_key(ROLLOUT_VERSION).then(|| read(item))
}

fn read(item: &Item) -> Result<Rollout, ItemError> {
    let id = s_attr(item, ROLLOUT_ID)?
        .filter(|s| !s.is_empty())
        .ok_or(ItemError::Missing(ROLLOUT_ID))?;
    let release = Release::from_item(&rollout_release_item(item)).map_err(|e| match e {
        ItemError::Missing(name) => invalid(ROLLOUT_VERSION, format!("rollout_{name} is required")),
        other => invalid(ROLLOUT_VERSION, format!("the rollout version: {other}")),
    })?;
    let basis_points = match n_attr(item, ROLLOUT_PERCENT)? {
        None => return Err(ItemError::Missing(ROLLOUT_PERCENT)),
        Some(p) => parse_percent(p).map_err(|why| invalid(ROLLOUT_PERCENT, why))?,
    };
    let state = match s_attr(item, ROLLOUT_STATE)? {
        None => RolloutState::Active,
        Some(s) => RolloutState::parse(s)
            .ok_or_else(|| invalid(ROLLOUT_STATE, "must be active, paused or aborted"))?,
    };
    let secs = |name: &'static str| -> Result<Option<u64>, ItemError> {
        match n_attr(item, name)? {
            Some(n) if n >= 0.0 => Ok(Some(n as u64)),
            Some(_) => Err(invalid(name, "must be a non-negative number")),
            None => Ok(None),
        }
    };
    let started_at = secs(ROLLOUT_STARTED_AT)?.unwrap_or(0);
    let steps = match s_attr(item, ROLLOUT_STEPS)? {
        None => Vec::new(),
        Some(s) => parse_steps(s).map_err(|why| invalid(ROLLOUT_STEPS, why))?,
    };
    let max_failure_rate = match n_attr(item, ROLLOUT_MAX_FAILURE_RATE)? {
        None => DEFAULT_MAX_FAILURE_RATE,
        Some(r) if r > 0.0 && r < 1.0 => r,
        Some(_) => return Err(invalid(ROLLOUT_MAX_FAILURE_RATE, "must be between 0 and 1")),
    };
    let on_failure = match s_attr(item, ROLLOUT_ON_FAILURE)? {
        None => OnFailure::Pause,
        Some(s) => OnFailure::parse(s)
            .ok_or_else(|| invalid(ROLLOUT_ON_FAILURE, "must be pause or abort"))?,
    };
    Ok(Rollout {
        id: id.to_owned(),
        release: Box::new(release),
        basis_points,
        state,
        started_at,
        stepped_at: secs(ROLLOUT_STEPPED_AT)?.unwrap_or(started_at),
        resumed_at: secs(ROLLOUT_RESUMED_AT)?,
        gate: Gate {
            steps,
            step_every_secs: secs(ROLLOUT_STEP_EVERY)?.unwrap_or(DEFAULT_STEP_EVERY_SECS),
            max_failure_rate,
            min_devices: secs(ROLLOUT_MIN_DEVICES)?.unwrap_or(DEFAULT_MIN_DEVICES),
            on_failure,
        },
        halt_reason: s_attr(item, ROLLOUT_HALT_REASON)?.map(str::to_owned),
    })
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

/// A share as the number `rollout_percent` holds.
pub fn percent_number(bp: u32) -> AttrValue {
    if bp.is_multiple_of(100) {
        AttrValue::N((bp / 100).into())
    } else {
        AttrValue::N(serde_json::Number::from_f64(f64::from(bp) / 100.0).unwrap_or(0.into()))
    }
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
    fn percentages() {
        assert_eq!(parse_percent(5.0), Ok(500));
        assert_eq!(parse_percent(0.01), Ok(1));
        assert_eq!(parse_percent(0.07), Ok(7));
        assert!(parse_percent(0.001).is_err());
        assert!(parse_percent(101.0).is_err());
        assert!(parse_percent(-1.0).is_err());
        assert_eq!(percent_text(25), "0.25%");
        assert_eq!(percent_text(500), "5%");
        assert_eq!(percent_text(50), "0.5%");
        assert_eq!(parse_steps("1,5,25,100"), Ok(vec![100, 500, 2500, FULL]));
        assert!(parse_steps("5,1").is_err());
        assert_eq!(steps_text(&[100, 25, FULL]), "1,0.25,100");
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
