//! Folding a batch of validated events into what one request may write: the counters of the
//! app's known releases, the batch device's failed versions and its evidence marks. A
//! release-day burst costs a few counter writes per request rather than one per event.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use crate::domain::evidence::{EvidenceKey, EvidenceKind, EvidenceMark};
use crate::domain::health::AutoPausePolicy;
use crate::domain::keys::{Target, release_sk};
use crate::domain::protocol::Platform;
use crate::domain::release::Release;
use crate::domain::snapshot::AppSnapshot;
use crate::domain::stats::actions::{FAILURE_ACTIONS, INSTALL_ACTION, counted_action, is_failure};
use crate::domain::stats::events::StatsEvent;

/// The release a counter belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct CounterKey {
    pub app_id: String,
    pub channel: String,
    pub version: String,
}

/// Counts per action for one release.
pub type ActionCounts = BTreeMap<String, u64>;

/// Installs and failures of a release, from its action counts.
pub fn installs(counts: &ActionCounts) -> u64 {
    counts.get(INSTALL_ACTION).copied().unwrap_or(0)
}

pub fn failures(counts: &ActionCounts) -> u64 {
    FAILURE_ACTIONS
        .iter()
        .map(|a| counts.get(*a).copied().unwrap_or(0))
        .sum()
}

/// What one request writes, all or nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatsBatch {
    /// A digest of the request body: a batch the plugin resends after a failure carries the
    /// same id, which lets stores apply it once.
    pub id: String,
    pub counts: BTreeMap<CounterKey, ActionCounts>,
    /// `(app_id, device_id, version)` of deterministic failures.
    pub device_failures: BTreeSet<(String, String, String)>,
    /// `(app_id, device_id)` of the devices whose item this batch writes (`last_seen`, TTL):
    /// only those that reported a failure. All of an app's devices share one partition key in
    /// the devices table, so writing every device on every batch would make a release-day
    /// burst of one app throttle there, for information nothing reads.
    pub devices_seen: BTreeSet<(String, String)>,
}

impl StatsBatch {
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty() && self.device_failures.is_empty() && self.devices_seen.is_empty()
    }
}

/// Most distinct counter items (channel × version) one request writes; a device's batch
/// names one to three.
pub const MAX_COUNTERS_PER_BATCH: usize = 16;
/// Most evidence marks one request records (a device's batch: one release, attempt and
/// failure).
pub const MAX_MARKS_PER_BATCH: usize = 4;
/// Failed versions remembered per device: the newest.
pub const MAX_FAILED_VERSIONS: usize = 20;

/// Why an event was not counted (it is still logged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// The batch is about another app: one app per batch.
    OtherApp,
    /// No release item names this version (and it is not `builtin`).
    UnknownVersion,
    /// The batch already names `MAX_COUNTERS_PER_BATCH` releases.
    TooManyReleases,
}

impl Dropped {
    pub fn as_str(self) -> &'static str {
        match self {
            Dropped::OtherApp => "another app than the batch's first event",
            Dropped::UnknownVersion => "no release serves this version",
            Dropped::TooManyReleases => "too many releases in one batch",
        }
    }
}

/// What one request writes, and the evidence it brings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Folded {
    pub batch: StatsBatch,
    pub marks: Vec<EvidenceMark>,
    /// Index and reason of every event not counted.
    pub dropped: Vec<(usize, Dropped)>,
}

/// The channel whose release an event's version belongs to: the device's channel, the app's
/// default, or any channel serving that version; else the app's default. Only channels the
/// app has: a made-up `defaultChannel` never names a counter.
pub fn channel_of(snap: &AppSnapshot, e: &StatsEvent<'_>) -> String {
    let platform = Platform::parse(&e.platform);
    let version = e.version();
    let serves = |channel: &str| {
        snap.channels.get(channel).is_some_and(|c| match platform {
            Some(p) => c
                .for_platform(p)
                .is_some_and(|r| r.as_ref().is_ok_and(|r| r.serves(version))),
            None => c
                .targets()
                .any(|(_, r)| r.as_ref().is_ok_and(|r| r.serves(version))),
        })
    };
    if let Some(c) = e.default_channel.as_deref().filter(|c| serves(c)) {
        return c.to_owned();
    }
    if serves(&snap.default_channel) {
        return snap.default_channel.clone();
    }
    let mut names: Vec<&String> = snap.channels.keys().collect();
    names.sort();
    if let Some(c) = names.into_iter().find(|c| serves(c)) {
        return c.clone();
    }
    match e.default_channel.as_deref() {
        Some(c) if snap.channels.contains_key(c) => c.to_owned(),
        _ => snap.default_channel.clone(),
    }
}

/// True when some release item of the app (paused or not) names `version`.
fn is_served(snap: &AppSnapshot, version: &str) -> bool {
    snap.channels.values().any(|c| {
        c.targets()
            .any(|(_, r)| r.as_ref().is_ok_and(|r| r.serves(version)))
    })
}

/// The release item that serves `version` to this event's device on `channel`, if any: its
/// sort key, the release (the item's stable one or its rollout's) and its evidence epoch.
fn serving_item<'s>(
    snap: &'s AppSnapshot,
    channel: &str,
    e: &StatsEvent<'_>,
) -> Option<(String, &'s Release, u64)> {
    let c = snap.channels.get(channel)?;
    let platform = Platform::parse(&e.platform)?;
    let target = match &c.for_platform(platform) {
        Some(_) if c.targets().any(|(t, _)| t == Target::Platform(platform)) => {
            Target::Platform(platform)
        }
        Some(_) => Target::All,
        None => return None,
    };
    let release = c.for_platform(platform)?.as_ref().ok()?;
    let (release, epoch) = release.serving(e.version())?;
    Some((release_sk(channel, target), release, epoch))
}

/// Folds the events of a request into what it may write: counters of the app's known
/// releases (allow-listed actions, the rest as `other`), and, for the batch's device only
/// (the first event's: a plugin's batch comes from one device), its failed versions and its
/// evidence marks from `network`. Everything else is dropped, with a reason.
pub fn fold_batch(
    body: &[u8],
    events: &[StatsEvent<'_>],
    snap: &AppSnapshot,
    network: &str,
) -> Folded {
    let mut out = Folded {
        batch: StatsBatch {
            id: hex::encode(&Sha256::digest(body)[..16]),
            ..Default::default()
        },
        ..Default::default()
    };
    let Some(first) = events.first() else {
        return out;
    };
    let (app_id, device_id) = (first.app_id.as_ref(), first.device_id.as_ref());
    let mut marks = BTreeSet::new();
    for (i, e) in events.iter().enumerate() {
        if e.app_id != app_id {
            out.dropped.push((i, Dropped::OtherApp));
            continue;
        }
        let version = e.version();
        if version != "builtin" && !is_served(snap, version) {
            out.dropped.push((i, Dropped::UnknownVersion));
            continue;
        }
        let channel = channel_of(snap, e);
        let key = CounterKey {
            app_id: app_id.to_owned(),
            channel,
            version: version.to_owned(),
        };
        if !out.batch.counts.contains_key(&key) && out.batch.counts.len() >= MAX_COUNTERS_PER_BATCH
        {
            out.dropped.push((i, Dropped::TooManyReleases));
            continue;
        }
        let failure = is_failure(&e.action);
        if e.device_id == device_id && version != "builtin" {
            if failure {
                out.batch
                    .devices_seen
                    .insert((app_id.to_owned(), device_id.to_owned()));
                out.batch.device_failures.insert((
                    app_id.to_owned(),
                    device_id.to_owned(),
                    version.to_owned(),
                ));
            }
            if (failure || e.action == INSTALL_ACTION)
                && let Some((sk, release, epoch)) = serving_item(snap, &key.channel, e)
            {
                let key = EvidenceKey {
                    app_id: app_id.to_owned(),
                    sk,
                    version: version.to_owned(),
                    epoch,
                };
                let kinds: &[EvidenceKind] = if failure {
                    &[EvidenceKind::Attempt, EvidenceKind::Failure]
                } else {
                    &[EvidenceKind::Attempt]
                };
                for kind in kinds {
                    let mark = EvidenceMark {
                        key: key.clone(),
                        kind: *kind,
                        device_id: device_id.to_owned(),
                        network: network.to_owned(),
                        network_cap: AutoPausePolicy::from_items(
                            &release.item,
                            Some(&snap.app_item),
                        )
                        .devices_per_network,
                    };
                    if marks.len() < MAX_MARKS_PER_BATCH || marks.contains(&mark) {
                        marks.insert(mark);
                    }
                }
            }
        }
        *out.batch
            .counts
            .entry(key)
            .or_default()
            .entry(counted_action(&e.action).to_owned())
            .or_default() += 1;
    }
    // Attempts before failures: a device's failure always finds its attempt counted.
    out.marks = marks.into_iter().collect();
    out.marks
        .sort_by(|a, b| (&a.key, a.kind).cmp(&(&b.key, b.kind)));
    out
}

/// A device's failed versions, the newest `MAX_FAILED_VERSIONS` (semver order; anything
/// that is not semver counts as oldest).
pub fn newest_failed_versions(versions: BTreeSet<String>) -> BTreeSet<String> {
    if versions.len() <= MAX_FAILED_VERSIONS {
        return versions;
    }
    let mut sorted: Vec<(Option<semver::Version>, String)> = versions
        .into_iter()
        .map(|v| (semver::Version::parse(&v).ok(), v))
        .collect();
    sorted.sort();
    sorted
        .into_iter()
        .rev()
        .take(MAX_FAILED_VERSIONS)
        .map(|(_, v)| v)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::item::Item;
    use crate::domain::release::tests::{SUM, item, s};
    use crate::domain::stats::actions::OTHER_ACTION;
    use crate::domain::stats::events::parse_stats_body;
    use crate::domain::stats::events::tests::EVENT;

    fn snapshot(items: &[(&str, &str)]) -> AppSnapshot {
        let items: Vec<(String, Item)> = items
            .iter()
            .map(|(sk, v)| {
                (
                    sk.to_string(),
                    item(&[
                        ("version", s(v)),
                        ("url", s("https://x.test/b.zip")),
                        ("checksum", s(SUM)),
                    ]),
                )
            })
            .collect();
        AppSnapshot::from_items(items.iter().map(|(k, v)| (k.as_str(), v)))
    }

    #[test]
    fn folds_counts_failures_and_marks() {
        let snap = snapshot(&[("release#production#all", "1.0.1")]);
        let fail = EVENT.replace("\"set\"", "\"update_fail\"");
        let manifest = EVENT
            .replace("\"set\"", "\"download_manifest_checksum_fail\"")
            .replace("\"1.0.1\"", "\"1.0.1:app.js\"");
        let transient = EVENT.replace("\"set\"", "\"download_fail\"");
        let odd = EVENT.replace("\"set\"", "\"made_up\"");
        let body = format!("[{EVENT},{EVENT},{fail},{manifest},{transient},{odd}]");
        let parsed = parse_stats_body(body.as_bytes()).unwrap();
        let folded = fold_batch(body.as_bytes(), &parsed.events, &snap, "10.0.0.0/24");
        let key = CounterKey {
            app_id: "com.example.app".into(),
            channel: "production".into(),
            version: "1.0.1".into(),
        };
        let counts = &folded.batch.counts[&key];
        assert_eq!(installs(counts), 2);
        assert_eq!(
            failures(counts),
            2,
            "update_fail and the manifest checksum failure; not download_fail"
        );
        assert_eq!((counts["download_fail"], counts[OTHER_ACTION]), (1, 1));
        assert_eq!(folded.batch.device_failures.len(), 1);
        assert_eq!(folded.batch.devices_seen.len(), 1);
        assert_eq!(folded.batch.id.len(), 32);
        let kinds: Vec<_> = folded.marks.iter().map(|m| m.kind).collect();
        assert_eq!(kinds, [EvidenceKind::Attempt, EvidenceKind::Failure]);
        assert_eq!(folded.marks[0].key.sk, "release#production#all");
        assert_eq!(folded.marks[0].network_cap, 10);
        assert!(folded.dropped.is_empty());
    }

    #[test]
    fn a_batch_changes_one_device_of_one_app_and_known_releases() {
        let snap = snapshot(&[
            ("release#production#all", "1.0.1"),
            ("release#production#android", "1.0.2"),
            ("release#beta#all", "2.0.0"),
        ]);
        let mut events = Vec::new();
        for i in 0..200 {
            let mut e: serde_json::Value = serde_json::from_str(EVENT).unwrap();
            e["device_id"] = format!("00000000-0000-4000-8000-{i:012}").into();
            e["action"] = "update_fail".into();
            e["version_name"] = ["1.0.2", "9.9.9", "2.0.0", "builtin"][i % 4].into();
            e["defaultChannel"] = ["", "made-up", "beta", "production"][i % 4].into();
            if i % 10 == 9 {
                e["app_id"] = format!("com.forged.app{i}").into();
            }
            events.push(e);
        }
        let body = serde_json::to_vec(&events).unwrap();
        let parsed = parse_stats_body(&body).unwrap();
        let folded = fold_batch(&body, &parsed.events, &snap, "10.0.0.0/24");
        let keys: Vec<(String, String)> = folded
            .batch
            .counts
            .keys()
            .map(|k| (k.channel.clone(), k.version.clone()))
            .collect();
        assert_eq!(
            keys,
            [
                ("beta".into(), "2.0.0".into()),
                ("production".into(), "1.0.2".into()),
                ("production".into(), "builtin".into())
            ],
            "only known channels and versions"
        );
        assert!(
            folded
                .batch
                .counts
                .keys()
                .all(|k| k.app_id == "com.example.app")
        );
        let first = "00000000-0000-4000-8000-000000000000";
        assert!(
            folded
                .batch
                .device_failures
                .iter()
                .all(|(_, d, _)| d == first)
        );
        assert!(folded.batch.devices_seen.iter().all(|(_, d)| d == first));
        assert!(folded.marks.iter().all(|m| m.device_id == first));
        assert_eq!(folded.marks[0].key.sk, "release#production#android");
        assert!(folded.dropped.iter().any(|(_, d)| *d == Dropped::OtherApp));
        assert!(
            folded
                .dropped
                .iter()
                .any(|(_, d)| *d == Dropped::UnknownVersion)
        );
    }

    #[test]
    fn failed_versions_keep_the_newest() {
        let many: BTreeSet<String> = (0..30)
            .map(|i| format!("1.{i}.0"))
            .chain(["x".into()])
            .collect();
        let kept = newest_failed_versions(many);
        assert_eq!(kept.len(), MAX_FAILED_VERSIONS);
        assert!(kept.contains("1.29.0") && kept.contains("1.10.0") && !kept.contains("1.9.0"));
        assert!(!kept.contains("x"));
    }
}
