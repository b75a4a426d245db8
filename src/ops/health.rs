//! Release health (`updraft stats`): installs, failures and pause state of every release of
//! an app, from its counters and its release items.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::domain::health::wilson_lower_bound;
use crate::domain::snapshot::AppSnapshot;
use crate::domain::stats::fold::{ActionCounts, CounterKey, failures, installs};
use crate::ops::OperatorStores;
use crate::ops::apps::require_app;

/// One row of `updraft stats`: a channel's version.
#[derive(Debug, Clone, Serialize)]
pub struct ReleaseHealth {
    pub channel: String,
    pub version: String,
    /// Platforms whose release item serves this version now (`all`, `ios`, …).
    pub serving: Vec<String>,
    pub installs: u64,
    pub failures: u64,
    pub failure_rate: f64,
    /// Wilson 95% lower bound of the failure rate, what auto-pause compares.
    pub failure_rate_lower_bound: f64,
    pub paused: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_reason: Option<String>,
    pub actions: ActionCounts,
}

impl ReleaseHealth {
    fn new(channel: &str, version: &str) -> Self {
        ReleaseHealth {
            channel: channel.to_owned(),
            version: version.to_owned(),
            serving: Vec::new(),
            installs: 0,
            failures: 0,
            failure_rate: 0.0,
            failure_rate_lower_bound: 0.0,
            paused: false,
            pause_reason: None,
            actions: ActionCounts::new(),
        }
    }
}

/// `updraft stats --app`: every release with counts, and every serving release.
pub async fn stats(stores: &OperatorStores, app_id: &str) -> anyhow::Result<Vec<ReleaseHealth>> {
    let (snap, counts) = tokio::join!(require_app(stores, app_id), stores.stats.app_counts(app_id));
    Ok(release_health(Some(&snap?), counts?))
}

/// Release health from an app and its counters already read, by channel and version.
pub fn release_health(
    snap: Option<&AppSnapshot>,
    counts: Vec<(CounterKey, ActionCounts)>,
) -> Vec<ReleaseHealth> {
    let mut rows: BTreeMap<(String, String), ReleaseHealth> = BTreeMap::new();
    fn row<'r>(
        rows: &'r mut BTreeMap<(String, String), ReleaseHealth>,
        channel: &str,
        version: &str,
    ) -> &'r mut ReleaseHealth {
        rows.entry((channel.to_owned(), version.to_owned()))
            .or_insert_with(|| ReleaseHealth::new(channel, version))
    }
    for (key, actions) in counts {
        let r = row(&mut rows, &key.channel, &key.version);
        r.installs = installs(&actions);
        r.failures = failures(&actions);
        let attempts = r.installs + r.failures;
        if attempts > 0 {
            r.failure_rate = r.failures as f64 / attempts as f64;
            r.failure_rate_lower_bound = wilson_lower_bound(r.failures, attempts);
        }
        r.actions = actions;
    }
    for (channel, releases) in snap.iter().flat_map(|s| &s.channels) {
        for (target, release) in releases.targets() {
            let Ok(release) = release else { continue };
            let r = row(&mut rows, channel, &release.version_text);
            r.serving.push(target.as_str().to_owned());
            r.paused |= release.paused;
            if release.paused {
                r.pause_reason = release.pause_reason.clone().or(r.pause_reason.take());
            }
        }
    }
    rows.into_values().collect()
}
