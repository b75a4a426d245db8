//! Hourly counts of a release's evidence: devices that attempted and that failed a version on
//! one release item, per hour, counted by the evidence rule (`domain::evidence`: each device
//! once, each network up to its cap). What the dashboard draws as curves. Kept
//! `HOURLY_KEEP_SECS`, so a release's history costs at most 336 small items per version.

use std::collections::BTreeMap;

use crate::domain::evidence::EvidenceKind;

/// How long an hour's counts are kept: 14 days.
pub const HOURLY_KEEP_SECS: u64 = 14 * 86_400;
/// Seconds in one bucket.
pub const HOUR_SECS: u64 = 3600;

/// The hour (seconds since the epoch / 3600) that `unix_secs` falls in.
pub fn hour_of(unix_secs: u64) -> u64 {
    unix_secs / HOUR_SECS
}

/// When an hour's counts expire: `HOURLY_KEEP_SECS` after the hour ends.
pub fn hour_expires_at(hour: u64) -> u64 {
    (hour + 1) * HOUR_SECS + HOURLY_KEEP_SECS
}

/// One hour of one version on one release item.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct HourlyCount {
    /// The release item's sort key, `release#<channel>#<platform>`.
    pub sk: String,
    pub version: String,
    pub hour: u64,
    /// Devices first counted as attempting the version in this hour.
    pub attempts: u64,
    /// Devices first counted as failing it in this hour.
    pub failures: u64,
}

/// The sort key of an hour's item on DynamoDB (`h#<hour, 10 digits>#<release sk>#<version>`):
/// hour first, so that a dashboard reads a time window with one key range.
pub fn hourly_sort_key(hour: u64, sk: &str, version: &str) -> String {
    format!("{}{hour:010}#{sk}#{version}", HOURLY_SK_PREFIX)
}

/// Prefix of the hourly items' sort keys.
pub const HOURLY_SK_PREFIX: &str = "h#";

/// The counted marks of one write, folded into one increment per (release item, version,
/// hour): what the stores add to the hourly items.
#[derive(Debug, Default)]
pub struct HourlyIncrements {
    pub by_bucket: BTreeMap<(String, String, u64), (u64, u64)>,
}

impl HourlyIncrements {
    /// Adds one counted mark.
    pub fn add(&mut self, sk: &str, version: &str, hour: u64, kind: EvidenceKind) {
        let e = self
            .by_bucket
            .entry((sk.to_owned(), version.to_owned(), hour))
            .or_default();
        match kind {
            EvidenceKind::Attempt => e.0 += 1,
            EvidenceKind::Failure => e.1 += 1,
        }
    }
}

/// `(hour, attempts, failures)` for consecutive hours.
pub type HourlySeries = Vec<(u64, u64, u64)>;

/// One version's hourly series over `[from_hour, to_hour]`, hours without counts as zeros
/// (the curve is continuous), in hour order.
pub fn series(counts: &[HourlyCount], from_hour: u64, to_hour: u64) -> HourlySeries {
    let mut by_hour: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for c in counts {
        if (from_hour..=to_hour).contains(&c.hour) {
            let e = by_hour.entry(c.hour).or_default();
            e.0 = e.0.saturating_add(c.attempts);
            e.1 = e.1.saturating_add(c.failures);
        }
    }
    (from_hour..=to_hour)
        .map(|h| {
            let (a, f) = by_hour.get(&h).copied().unwrap_or_default();
            (h, a, f)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(hour: u64, attempts: u64, failures: u64) -> HourlyCount {
        HourlyCount {
            sk: "release#production#all".into(),
            version: "1.0.1".into(),
            hour,
            attempts,
            failures,
        }
    }

    #[test]
    fn series_fills_empty_hours_and_clips_the_window() {
        let s = series(&[c(10, 3, 1), c(12, 2, 0), c(20, 9, 9)], 9, 13);
        assert_eq!(
            s,
            vec![(9, 0, 0), (10, 3, 1), (11, 0, 0), (12, 2, 0), (13, 0, 0)]
        );
    }

    #[test]
    fn keys_sort_by_hour_and_expire_after_the_window() {
        assert!(
            hourly_sort_key(9, "release#a#all", "1") < hourly_sort_key(10, "release#a#all", "0")
        );
        assert_eq!(hour_of(7199), 1);
        assert_eq!(hour_expires_at(1), 7200 + HOURLY_KEEP_SECS);
    }

    #[test]
    fn increments_fold_one_bucket_per_release_version_and_hour() {
        let mut inc = HourlyIncrements::default();
        inc.add("release#p#all", "1", 5, EvidenceKind::Attempt);
        inc.add("release#p#all", "1", 5, EvidenceKind::Failure);
        inc.add("release#p#all", "1", 6, EvidenceKind::Attempt);
        assert_eq!(inc.by_bucket.len(), 2);
        assert_eq!(
            inc.by_bucket[&("release#p#all".into(), "1".into(), 5)],
            (1, 1)
        );
    }
}
