//! Update-check counts per app, channel, version and decision, kept in the process and written
//! as CloudWatch Embedded Metric Format lines once per interval (instead of a log line per
//! check). No I/O and no clock here: the caller says what time it is.
//!
//! Every label comes from the app's stored items (a forged app id, channel or version never
//! makes a key of its own: the caller passes only values of the snapshot), and the number of
//! keys is capped, so a flood of checks cannot grow the map.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

/// What the metrics are filed under in CloudWatch.
pub const NAMESPACE: &str = "Updraft";
/// The metric: update checks answered.
pub const METRIC: &str = "UpdateChecks";
/// The dimensions of the metric. `version` is a property of each line (searchable in Logs
/// Insights), not a dimension: each distinct set of dimension values is a billed metric.
pub const DIMENSIONS: [&str; 3] = ["app", "channel", "decision"];
/// Keys counted before new ones fold into `OTHER`.
pub const MAX_KEYS: usize = 1000;
/// The label of an app that is not in the store, of a check without channel or version, and
/// of keys beyond `MAX_KEYS`.
pub const NONE: &str = "-";
pub const OTHER: &str = "(other)";

/// One counted combination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountKey {
    pub app: String,
    pub channel: String,
    pub version: String,
    pub decision: &'static str,
}

/// Counts since the last flush. Counting a key already seen allocates nothing.
#[derive(Debug)]
pub struct DecisionCounts {
    hasher: RandomState,
    /// By the hash of the labels; a collision shares the bucket.
    buckets: HashMap<u64, Vec<(CountKey, u64)>>,
    keys: usize,
    /// When the counts were last flushed (caller's clock, milliseconds).
    last_flush_ms: u64,
}

impl DecisionCounts {
    pub fn new(now_ms: u64) -> Self {
        DecisionCounts {
            hasher: RandomState::new(),
            buckets: HashMap::new(),
            keys: 0,
            last_flush_ms: now_ms,
        }
    }

    /// Counts one check.
    pub fn count(&mut self, app: &str, channel: &str, version: &str, decision: &'static str) {
        if self.bump(app, channel, version, decision) {
            return;
        }
        let (app, channel, version) = if self.keys < MAX_KEYS {
            (app, channel, version)
        } else {
            (OTHER, OTHER, OTHER)
        };
        if self.bump(app, channel, version, decision) {
            return;
        }
        let hash = self.hash(app, channel, version, decision);
        self.keys += 1;
        self.buckets.entry(hash).or_default().push((
            CountKey {
                app: app.to_owned(),
                channel: channel.to_owned(),
                version: version.to_owned(),
                decision,
            },
            1,
        ));
    }

    fn bump(&mut self, app: &str, channel: &str, version: &str, decision: &'static str) -> bool {
        let hash = self.hash(app, channel, version, decision);
        let Some(bucket) = self.buckets.get_mut(&hash) else {
            return false;
        };
        match bucket.iter_mut().find(|(k, _)| {
            k.decision == decision && k.app == app && k.channel == channel && k.version == version
        }) {
            Some((_, n)) => {
                *n += 1;
                true
            }
            None => false,
        }
    }

    fn hash(&self, app: &str, channel: &str, version: &str, decision: &str) -> u64 {
        self.hasher.hash_one((app, channel, version, decision))
    }

    /// The counts, when `interval_ms` has passed since the last flush (and there are any);
    /// counting then starts again from zero.
    pub fn take_due(&mut self, now_ms: u64, interval_ms: u64) -> Option<Vec<(CountKey, u64)>> {
        if now_ms.saturating_sub(self.last_flush_ms) < interval_ms {
            return None;
        }
        self.take(now_ms)
    }

    /// The counts now, whatever the interval (`None` when there are none).
    pub fn take(&mut self, now_ms: u64) -> Option<Vec<(CountKey, u64)>> {
        self.last_flush_ms = now_ms;
        if self.keys == 0 {
            return None;
        }
        self.keys = 0;
        let mut out: Vec<(CountKey, u64)> = self.buckets.drain().flat_map(|(_, b)| b).collect();
        out.sort_by(|a, b| {
            (&a.0.app, &a.0.channel, &a.0.version, a.0.decision).cmp(&(
                &b.0.app,
                &b.0.channel,
                &b.0.version,
                b.0.decision,
            ))
        });
        Some(out)
    }
}

/// One Embedded Metric Format line (without its newline) for one key's count at `unix_ms`.
pub fn emf_line(key: &CountKey, n: u64, unix_ms: u64) -> String {
    serde_json::json!({
        "_aws": {
            "Timestamp": unix_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [DIMENSIONS],
                "Metrics": [{"Name": METRIC, "Unit": "Count"}],
            }],
        },
        "app": key.app,
        "channel": key.channel,
        "version": key.version,
        "decision": key.decision,
        METRIC: n,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_key_and_flushes_once_per_interval() {
        let mut c = DecisionCounts::new(0);
        for _ in 0..3 {
            c.count("a", "production", "1.0.1", "no_new_version_available");
        }
        c.count("a", "production", "1.0.1", "offer");
        assert!(c.take_due(59_999, 60_000).is_none());
        let out = c.take_due(60_000, 60_000).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].0.decision, "no_new_version_available");
        assert_eq!(out[0].1, 3);
        assert_eq!(out[1].1, 1);
        // Counting starts again; nothing to flush is no line at all.
        assert!(c.take_due(120_000, 60_000).is_none());
        c.count("a", "production", "1.0.1", "offer");
        assert!(c.take_due(150_000, 60_000).is_none());
        assert_eq!(c.take_due(180_000, 60_000).unwrap()[0].1, 1);
    }

    #[test]
    fn keys_beyond_the_cap_fold_into_other() {
        let mut c = DecisionCounts::new(0);
        for i in 0..MAX_KEYS + 500 {
            c.count(&format!("app{i}"), "c", "v", "offer");
        }
        c.count("app0", "c", "v", "offer");
        let out = c.take(1).unwrap();
        assert_eq!(out.len(), MAX_KEYS + 1);
        let other = out.iter().find(|(k, _)| k.app == OTHER).unwrap();
        assert_eq!(other.1, 500);
        assert_eq!(
            out.iter().map(|(_, n)| n).sum::<u64>(),
            MAX_KEYS as u64 + 501
        );
    }

    #[test]
    fn an_emf_line_is_one_json_object_with_its_metric_declared() {
        let key = CountKey {
            app: "com.example.app".into(),
            channel: "beta\n\"x".into(),
            version: "1.0.1".into(),
            decision: "offer",
        };
        let line = emf_line(&key, 42, 1_700_000_000_000);
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["UpdateChecks"], 42);
        assert_eq!(v["channel"], "beta\n\"x");
        assert_eq!(v["_aws"]["Timestamp"], 1_700_000_000_000u64);
        let decl = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(decl["Namespace"], NAMESPACE);
        assert_eq!(
            decl["Dimensions"][0],
            serde_json::json!(["app", "channel", "decision"])
        );
        assert_eq!(decl["Metrics"][0]["Name"], METRIC);
    }
}
