//! Release health: when a release fails on enough devices from enough networks, pause it.
//! The decision is pure (evidence, policy, clock in; a reason out); stores carry it out with a
//! conditional write.

use crate::domain::evidence::Evidence;
use crate::domain::item::{Item, ItemExt, attr};

/// When to pause a release on its own (release item attributes, else the `app` item's, else
/// these defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AutoPausePolicy {
    /// `auto_pause` (BOOL).
    pub enabled: bool,
    /// `auto_pause_min_attempts` (N): no verdict before this many devices attempted it.
    pub min_attempts: u64,
    /// `auto_pause_min_networks` (N): no verdict before failures came from this many source
    /// networks (IPv4 /24, IPv6 /48): one network, whatever device ids it names, never pauses.
    pub min_networks: u64,
    /// `auto_pause_devices_per_network` (N): devices one network adds to the attempts and to
    /// the failures, at most.
    pub devices_per_network: u64,
    /// `auto_pause_threshold` (N, 0–1): pause when the failure rate is, with 95% confidence,
    /// above this.
    pub threshold: f64,
    /// `auto_pause_cooldown` (N, seconds): after `updraft resume`, no new pause this long.
    pub cooldown_secs: u64,
}

impl Default for AutoPausePolicy {
    fn default() -> Self {
        AutoPausePolicy {
            enabled: true,
            min_attempts: 20,
            min_networks: 30,
            devices_per_network: 10,
            threshold: 0.1,
            cooldown_secs: 3600,
        }
    }
}

impl AutoPausePolicy {
    /// The policy for a release: its own attributes first, then the app item's.
    pub fn from_items(release: &Item, app: Option<&Item>) -> Self {
        let d = AutoPausePolicy::default();
        let pick = |name: &str| {
            release
                .number(name)
                .or_else(|| app.and_then(|a| a.number(name)))
        };
        let enabled = release
            .flag(attr::AUTO_PAUSE)
            .or_else(|| app.and_then(|a| a.flag(attr::AUTO_PAUSE)))
            .unwrap_or(d.enabled);
        AutoPausePolicy {
            enabled,
            min_attempts: pick(attr::AUTO_PAUSE_MIN_ATTEMPTS)
                .filter(|n| *n >= 1.0)
                .map_or(d.min_attempts, |n| n as u64),
            min_networks: pick(attr::AUTO_PAUSE_MIN_NETWORKS)
                .filter(|n| *n >= 1.0)
                .map_or(d.min_networks, |n| n as u64),
            devices_per_network: pick(attr::AUTO_PAUSE_DEVICES_PER_NETWORK)
                .filter(|n| *n >= 1.0)
                .map_or(d.devices_per_network, |n| n as u64),
            threshold: pick(attr::AUTO_PAUSE_THRESHOLD)
                .filter(|n| (0.0..1.0).contains(n))
                .unwrap_or(d.threshold),
            cooldown_secs: pick(attr::AUTO_PAUSE_COOLDOWN)
                .filter(|n| *n >= 0.0)
                .map_or(d.cooldown_secs, |n| n as u64),
        }
    }
}

/// Wilson score interval's lower bound for `failures` out of `attempts` at 95% confidence: the
/// failure rate we can claim, which stays low while the sample is small (ten failures in ten
/// attempts is 0.72, not 1.0).
pub fn wilson_lower_bound(failures: u64, attempts: u64) -> f64 {
    if attempts == 0 {
        return 0.0;
    }
    const Z: f64 = 1.959_963_984_540_054;
    let n = attempts as f64;
    let p = (failures.min(attempts)) as f64 / n;
    let z2 = Z * Z;
    let centre = p + z2 / (2.0 * n);
    let margin = Z * ((p * (1.0 - p) + z2 / (4.0 * n)) / n).sqrt();
    ((centre - margin) / (1.0 + z2 / n)).max(0.0)
}

/// Wilson score interval's upper bound for `failures` out of `attempts` at 95% confidence: the
/// failure rate we can rule out (a rollout step advances only while this is below its
/// threshold). 1.0 without attempts: nothing is ruled out yet.
pub fn wilson_upper_bound(failures: u64, attempts: u64) -> f64 {
    if attempts == 0 {
        return 1.0;
    }
    const Z: f64 = 1.959_963_984_540_054;
    let n = attempts as f64;
    let p = (failures.min(attempts)) as f64 / n;
    let z2 = Z * Z;
    let centre = p + z2 / (2.0 * n);
    let margin = Z * ((p * (1.0 - p) + z2 / (4.0 * n)) / n).sqrt();
    ((centre + margin) / (1.0 + z2 / n)).min(1.0)
}

/// Counts since the last `updraft resume` (the baseline it recorded is subtracted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Health {
    pub installs: u64,
    pub failures: u64,
}

impl Health {
    pub fn attempts(self) -> u64 {
        self.installs + self.failures
    }
}

/// Why to pause, or `None`. `resumed_at` is when the release was last resumed (unix seconds).
pub fn should_pause(
    policy: &AutoPausePolicy,
    evidence: Evidence,
    resumed_at: Option<u64>,
    now: u64,
) -> Option<String> {
    if !policy.enabled
        || evidence.attempts < policy.min_attempts
        || evidence.failing_networks < policy.min_networks
    {
        return None;
    }
    if resumed_at.is_some_and(|at| now < at.saturating_add(policy.cooldown_secs)) {
        return None;
    }
    let bound = wilson_lower_bound(evidence.failures, evidence.attempts);
    (bound > policy.threshold).then(|| {
        format!(
            "auto-paused: {} of {} devices failed, from {} networks (failure rate at least {:.1}% with 95% confidence, threshold {:.1}%)",
            evidence.failures,
            evidence.attempts,
            evidence.failing_networks,
            bound * 100.0,
            policy.threshold * 100.0
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::item::AttrValue;

    #[test]
    fn wilson_bound() {
        assert_eq!(wilson_lower_bound(0, 0), 0.0);
        assert!((wilson_lower_bound(10, 10) - 0.7225).abs() < 0.001);
        assert!((wilson_lower_bound(5, 100) - 0.0215).abs() < 0.001);
        assert!(wilson_lower_bound(0, 1000) < 1e-9);
        assert!(wilson_lower_bound(1, 1) < 0.21, "one failure proves little");
        assert_eq!(wilson_upper_bound(0, 0), 1.0);
        assert!((wilson_upper_bound(0, 100) - 0.037).abs() < 0.001);
        assert!((wilson_upper_bound(5, 100) - 0.1118).abs() < 0.001);
        assert!(wilson_upper_bound(5, 100) > wilson_lower_bound(5, 100));
    }

    #[test]
    fn pauses_only_with_enough_evidence() {
        let p = AutoPausePolicy::default();
        let e = |attempts, failures, failing_networks| Evidence {
            attempts,
            failures,
            failing_networks,
        };
        assert_eq!(
            should_pause(&p, e(10, 10, 10), None, 0),
            None,
            "below min attempts"
        );
        assert_eq!(
            should_pause(&p, e(200, 200, 1), None, 0),
            None,
            "one network never pauses"
        );
        assert_eq!(
            should_pause(&p, e(29, 29, 29), None, 0),
            None,
            "29 networks"
        );
        assert!(
            should_pause(&p, e(30, 30, 30), None, 0)
                .unwrap()
                .contains("30 of 30 devices failed, from 30 networks")
        );
        assert_eq!(
            should_pause(&p, e(1000, 40, 30), None, 0),
            None,
            "4% is within the 10% threshold"
        );
        assert!(should_pause(&p, e(100, 40, 30), None, 0).is_some());
        assert_eq!(
            should_pause(&p, e(100, 40, 30), Some(100), 200),
            None,
            "cooldown after resume"
        );
        assert!(should_pause(&p, e(100, 40, 30), Some(100), 100 + 3600).is_some());
        let off = AutoPausePolicy {
            enabled: false,
            ..p
        };
        assert_eq!(should_pause(&off, e(100, 100, 100), None, 0), None);
    }

    #[test]
    fn policy_from_items() {
        let mut release = Item::new();
        release.insert(
            "auto_pause_threshold".into(),
            AttrValue::N(serde_json::Number::from_f64(0.3).unwrap()),
        );
        let mut app = Item::new();
        app.insert("auto_pause_min_attempts".into(), AttrValue::N(50.into()));
        app.insert("auto_pause_min_networks".into(), AttrValue::N(3.into()));
        release.insert(
            "auto_pause_devices_per_network".into(),
            AttrValue::N(2.into()),
        );
        app.insert("auto_pause".into(), AttrValue::Bool(false));
        app.insert(
            "auto_pause_threshold".into(),
            AttrValue::N(serde_json::Number::from_f64(0.5).unwrap()),
        );
        let p = AutoPausePolicy::from_items(&release, Some(&app));
        assert_eq!(
            (p.enabled, p.min_attempts, p.threshold, p.cooldown_secs),
            (false, 50, 0.3, 3600)
        );
        assert_eq!((p.min_networks, p.devices_per_network), (3, 2));
        assert_eq!(
            AutoPausePolicy::from_items(&Item::new(), None),
            AutoPausePolicy::default()
        );
    }
}
