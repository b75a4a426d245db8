//! Device events sent to `statsUrl` (protocol.md §5): parsing both shapes the plugin POSTs
//! (an array, or one object), validating every event before anything is stored, and folding a
//! batch into per-release action counts, so a release-day burst costs a few counter writes per
//! request rather than one per event.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::domain::evidence::{EvidenceKey, EvidenceKind, EvidenceMark};
use crate::domain::health::AutoPausePolicy;
use crate::domain::protocol::{
    Platform, RequestError, is_valid_app_id, lowercase_uuid, parse_json_body,
};
use crate::domain::release::{AppSnapshot, Release, Target, release_sk};

/// Actions that mean "this bundle is broken", whatever the network did: they count as
/// failures for auto-pause, and the device is never offered that version again.
/// `download_fail` is missing on purpose: it is transient (network, disk) and retried.
pub const FAILURE_ACTIONS: &[&str] = &[
    "update_fail",
    "checksum_fail",
    "decrypt_fail",
    "unzip_fail",
    "set_fail",
    "windows_path_fail",
    "canonical_path_fail",
    "directory_path_fail",
    "manifest_path_fail",
    "download_manifest_checksum_fail",
];

/// The action that means a device installed a bundle.
pub const INSTALL_ACTION: &str = "set";

/// Largest batch read: the plugin queues at most 200 events. Events past it are skipped
/// without being kept in memory, and the answer says how many.
pub const MAX_EVENTS: usize = 200;

/// Characters kept of one metadata value: the plugin's own cap of `stack` (`message` is 1,024).
pub const MAX_METADATA_VALUE_CHARS: usize = 2048;
/// Characters kept of a metadata key.
pub const MAX_METADATA_KEY_CHARS: usize = 128;
/// Metadata keys kept per event; a WebView error fills up to 16.
pub const MAX_METADATA_KEYS: usize = 32;
/// Characters kept of the other text fields (versions, channel, plugin version).
pub const MAX_FIELD_CHARS: usize = 256;
/// Characters kept of an action name in logs (counters use `counted_action`).
pub const MAX_ACTION_CHARS: usize = 64;

/// The actions counted under their own name (the plugin's, protocol.md §5); any other
/// lands in the `other` counter, so a forged batch cannot mint counter attributes.
pub const COUNTED_ACTIONS: &[&str] = &[
    "set",
    "set_fail",
    "set_next",
    "reset",
    "delete",
    "update_fail",
    "download_fail",
    "finish_download_fail",
    "download_0",
    "download_10",
    "download_20",
    "download_30",
    "download_40",
    "download_50",
    "download_60",
    "download_70",
    "download_80",
    "download_90",
    "download_complete",
    "download_zip_start",
    "download_zip_complete",
    "download_manifest_start",
    "download_manifest_complete",
    "download_manifest_file_fail",
    "download_manifest_checksum_fail",
    "download_manifest_brotli_fail",
    "manifest_path_fail",
    "decrypt_fail",
    "checksum_fail",
    "checksum_required",
    "session_key_required",
    "unzip_fail",
    "windows_path_fail",
    "canonical_path_fail",
    "directory_path_fail",
    "low_mem_fail",
    "insufficient_disk_space",
    "rate_limit_reached",
    "blocked_by_server_url",
    "app_moved_to_foreground",
    "app_moved_to_background",
    "app_launch_start",
    "app_launch_ready",
    "app_launch_timeout",
    "os_version_changed",
    "native_app_version_changed",
    "app_crash",
    "app_crash_native",
    "app_anr",
    "app_killed_low_memory",
    "app_killed_excessive_resource_usage",
    "app_initialization_failure",
    "app_memory_warning",
    "webview_javascript_error",
    "webview_unhandled_rejection",
    "webview_resource_error",
    "webview_security_policy_violation",
    "webview_unclean_restart",
    "webview_render_process_gone",
    "webview_content_process_terminated",
    "webview_dom_content_loaded",
    "webview_page_loaded",
];

/// The counter for actions outside `COUNTED_ACTIONS`.
pub const OTHER_ACTION: &str = "other";

pub fn is_failure(action: &str) -> bool {
    FAILURE_ACTIONS.contains(&action)
}

/// The counter an action is counted under: its own name when allow-listed, else `other`.
pub fn counted_action(action: &str) -> &'static str {
    COUNTED_ACTIONS
        .iter()
        .find(|a| **a == action)
        .copied()
        .unwrap_or(OTHER_ACTION)
}

/// At most `max` characters (not bytes) of `s`; borrowed when nothing is cut.
pub fn clip(s: Cow<'_, str>, max: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => s,
        Some((end, _)) => match s {
            Cow::Borrowed(b) => Cow::Borrowed(&b[..end]),
            Cow::Owned(mut o) => {
                o.truncate(end);
                Cow::Owned(o)
            }
        },
    }
}

/// An event's `metadata`: a map of strings, read with bounded memory. Keys past
/// `MAX_METADATA_KEYS` are skipped, long keys and values are clipped: never a refusal, since
/// the plugin drops a refused batch with its `set` and `update_fail` events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata(pub BTreeMap<String, String>);

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Metadata;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of strings")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Metadata, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    if out.len() >= MAX_METADATA_KEYS {
                        map.next_value::<serde::de::IgnoredAny>()?;
                        continue;
                    }
                    let value = map.next_value::<Cow<'de, str>>()?;
                    out.insert(
                        clip(key, MAX_METADATA_KEY_CHARS).into_owned(),
                        clip(value, MAX_METADATA_VALUE_CHARS).into_owned(),
                    );
                }
                Ok(Metadata(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl serde::Serialize for Metadata {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

#[derive(Debug, Deserialize)]
struct RawStatsEvent<'a> {
    #[serde(borrow)]
    app_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    device_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    platform: Option<Cow<'a, str>>,
    #[serde(borrow)]
    action: Option<Cow<'a, str>>,
    #[serde(borrow)]
    version_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    old_version_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    version_os: Option<Cow<'a, str>>,
    #[serde(borrow)]
    version_build: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "defaultChannel")]
    default_channel: Option<Cow<'a, str>>,
    #[serde(borrow)]
    plugin_version: Option<Cow<'a, str>>,
    is_prod: Option<bool>,
    is_emulator: Option<bool>,
    timestamp: Option<u64>,
    metadata: Option<Metadata>,
}

/// One validated event.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StatsEvent<'a> {
    pub app_id: Cow<'a, str>,
    pub device_id: Cow<'a, str>,
    pub platform: Cow<'a, str>,
    pub action: Cow<'a, str>,
    pub version_name: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_version_name: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_os: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_build: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_channel: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin_version: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_prod: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_emulator: Option<bool>,
    /// Epoch milliseconds, when the plugin sent one (batched events do).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
}

impl StatsEvent<'_> {
    /// The bundle version the event is about: manifest failures name `<version>:<file>`.
    pub fn version(&self) -> &str {
        self.version_name.split(':').next().unwrap_or_default()
    }
}

fn bad(index: Option<usize>, why: &str) -> RequestError {
    match index {
        Some(i) => RequestError::InvalidJsonBody(format!("event {i}: {why}")),
        None => RequestError::InvalidJsonBody(why.to_owned()),
    }
}

/// A required text field: present, not empty, no control characters; clipped to `max`.
fn required_text(s: Option<Cow<'_, str>>, max: usize) -> Option<Cow<'_, str>> {
    s.filter(|s| !s.is_empty() && !s.chars().any(char::is_control))
        .map(|s| clip(s, max))
}

fn field(v: Option<Cow<'_, str>>) -> Option<Cow<'_, str>> {
    v.map(|v| clip(v, MAX_FIELD_CHARS))
}

fn validate_event(
    raw: RawStatsEvent<'_>,
    index: Option<usize>,
) -> Result<StatsEvent<'_>, RequestError> {
    let device_id = raw
        .device_id
        .filter(|s| !s.is_empty())
        .ok_or(RequestError::MissingDeviceId)?;
    let app_id = raw
        .app_id
        .filter(|s| !s.is_empty())
        .ok_or(RequestError::MissingAppId)?;
    if !is_valid_app_id(&app_id) {
        return Err(bad(
            index,
            "app_id must be a reverse-domain identifier such as com.example.app",
        ));
    }
    let device_id =
        lowercase_uuid(device_id).ok_or_else(|| bad(index, "device_id must be a UUID"))?;
    let platform =
        required_text(raw.platform, 32).ok_or_else(|| bad(index, "platform is missing"))?;
    let action = raw
        .action
        .filter(|a| !a.is_empty())
        .map(|a| clip(a, MAX_ACTION_CHARS))
        .ok_or_else(|| bad(index, "action is missing"))?;
    let version_name = required_text(raw.version_name, MAX_FIELD_CHARS)
        .ok_or_else(|| bad(index, "version_name is missing"))?;
    Ok(StatsEvent {
        app_id,
        device_id,
        platform,
        action,
        version_name,
        old_version_name: field(raw.old_version_name),
        version_os: field(raw.version_os),
        version_build: field(raw.version_build),
        default_channel: field(raw.default_channel).filter(|c| !c.is_empty()),
        plugin_version: field(raw.plugin_version),
        is_prod: raw.is_prod,
        is_emulator: raw.is_emulator,
        timestamp: raw.timestamp,
        metadata: raw.metadata,
    })
}

/// A parsed stats body.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedStats<'a> {
    pub events: Vec<StatsEvent<'a>>,
    /// The body was an array (the batched path).
    pub array: bool,
    /// Events past `MAX_EVENTS`, skipped unread.
    pub skipped: usize,
}

/// Reads an array one event at a time: validates each as it comes, keeps at most
/// `MAX_EVENTS`, and only checks the syntax of the rest, so memory stays bounded whatever the
/// body holds. The first invalid event is the answer (the rest is skipped).
struct EventsVisitor;

type Events<'a> = (Result<Vec<StatsEvent<'a>>, RequestError>, usize);

impl<'de> serde::de::Visitor<'de> for EventsVisitor {
    type Value = Events<'de>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of events")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Events<'de>, A::Error> {
        let mut events = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_EVENTS));
        let mut failed = None;
        let mut skipped = 0;
        let mut index = 0;
        loop {
            if failed.is_some() || index >= MAX_EVENTS {
                match seq.next_element::<serde::de::IgnoredAny>()? {
                    Some(_) => skipped += usize::from(failed.is_none()),
                    None => break,
                }
                continue;
            }
            let Some(raw) = seq.next_element::<RawStatsEvent<'de>>()? else {
                break;
            };
            match validate_event(raw, Some(index)) {
                Ok(e) => events.push(e),
                Err(e) => failed = Some(e),
            }
            index += 1;
        }
        Ok((failed.map_or(Ok(events), Err), skipped))
    }
}

fn json_error(e: serde_json::Error) -> RequestError {
    match e.classify() {
        serde_json::error::Category::Data => {
            let s = e.to_string();
            let s = s.find(" at line ").map_or(s.as_str(), |i| &s[..i]);
            RequestError::InvalidJsonBody(format!("the request body has the wrong shape: {s}"))
        }
        _ => RequestError::InvalidJsonParseBody,
    }
}

/// Parses a stats body: one event object or an array of them. Every event kept must be
/// valid, or the whole batch is refused (and so nothing of it is stored).
pub fn parse_stats_body(body: &[u8]) -> Result<ParsedStats<'_>, RequestError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        Some(b'[') => {
            use serde::Deserializer as _;
            let mut de = serde_json::Deserializer::from_slice(body);
            let (events, skipped) = (&mut de)
                .deserialize_seq(EventsVisitor)
                .map_err(json_error)?;
            de.end().map_err(json_error)?;
            Ok(ParsedStats {
                events: events?,
                array: true,
                skipped,
            })
        }
        _ => {
            let raw: RawStatsEvent<'_> = parse_json_body(body)?;
            Ok(ParsedStats {
                events: vec![validate_event(raw, None)?],
                array: false,
                skipped: 0,
            })
        }
    }
}

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
    use crate::domain::release::Item;
    use crate::domain::release::tests::{SUM, item, s};

    const EVENT: &str = r#"{"platform":"android","device_id":"6A1F0B3E-1111-4222-8333-9C2D00000000","app_id":"com.example.app",
        "custom_id":"","version_build":"1.0.0","version_code":"1","version_os":"14","version_name":"1.0.1",
        "old_version_name":"","plugin_version":"8.51.23","is_emulator":false,"is_prod":true,"install_source":"",
        "defaultChannel":"","action":"set","timestamp":1795910400000,"metadata":{"k":"v"}}"#;

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
    fn parses_object_and_array() {
        let parsed = parse_stats_body(EVENT.as_bytes()).unwrap();
        assert!(!parsed.array);
        assert_eq!(
            parsed.events[0].device_id,
            "6a1f0b3e-1111-4222-8333-9c2d00000000"
        );
        assert_eq!(parsed.events[0].action, "set");
        let body = format!(
            "[{EVENT},{}]",
            EVENT.replace("\"set\"", "\"some_future_action\"")
        );
        let parsed = parse_stats_body(body.as_bytes()).unwrap();
        assert!(parsed.array);
        assert_eq!(parsed.events.len(), 2);
        assert_eq!(parse_stats_body(b"[]").unwrap().events.len(), 0);
        assert_eq!(
            parse_stats_body(b" [] x").unwrap_err().code(),
            "invalid_json_parse_body",
            "trailing bytes"
        );
    }

    #[test]
    fn arrays_stop_at_the_event_limit() {
        let body = format!("[{}]", vec![EVENT; MAX_EVENTS + 7].join(","));
        let parsed = parse_stats_body(body.as_bytes()).unwrap();
        assert_eq!((parsed.events.len(), parsed.skipped), (MAX_EVENTS, 7));
        // Past the limit, only the syntax is read: a broken tail is still a parse error.
        let broken = format!("[{},{{]", vec![EVENT; MAX_EVENTS].join(","));
        assert_eq!(
            parse_stats_body(broken.as_bytes()).unwrap_err().code(),
            "invalid_json_parse_body"
        );
        let empties = format!("[{}]", vec!["{}"; 10_000].join(","));
        assert_eq!(
            parse_stats_body(empties.as_bytes()).unwrap_err().code(),
            "missing_device_id"
        );
    }

    #[test]
    fn long_values_are_clipped_never_refused() {
        let stack = "at x (app.js:1:1)\n".repeat(200);
        let message = "é".repeat(1024);
        let mut meta = serde_json::Map::new();
        meta.insert("stack".into(), stack.clone().into());
        meta.insert("message".into(), message.clone().into());
        for i in 0..14 {
            meta.insert(format!("key{i}"), "v".repeat(150).into());
        }
        meta.insert("huge".into(), "ü".repeat(5000).into());
        for i in 0..40 {
            meta.insert(format!("z{i:02}"), "v".into());
        }
        let mut e: serde_json::Value = serde_json::from_str(EVENT).unwrap();
        e["metadata"] = serde_json::Value::Object(meta);
        e["version_name"] = format!("1.0.1:{}", "d/".repeat(300)).into();
        e["plugin_version"] = "8".repeat(300).into();
        e["action"] = "x".repeat(100).into();
        let body = serde_json::to_vec(&e).unwrap();
        let parsed = parse_stats_body(&body).unwrap();
        let ev = &parsed.events[0];
        let m = &ev.metadata.as_ref().unwrap().0;
        assert_eq!(
            m["stack"],
            stack[..stack.char_indices().nth(2048).unwrap().0]
        );
        assert_eq!(
            m["message"], message,
            "1,024 non-ASCII characters are kept whole"
        );
        assert_eq!(m["huge"].chars().count(), MAX_METADATA_VALUE_CHARS);
        assert_eq!(m.len(), MAX_METADATA_KEYS);
        assert_eq!(ev.version_name.chars().count(), MAX_FIELD_CHARS);
        assert_eq!(ev.version(), "1.0.1");
        assert_eq!(ev.plugin_version.as_ref().unwrap().len(), MAX_FIELD_CHARS);
        assert_eq!(ev.action.len(), MAX_ACTION_CHARS);
        assert_eq!(counted_action(&ev.action), OTHER_ACTION);
    }

    #[test]
    fn one_bad_event_refuses_the_batch() {
        let body = format!("[{EVENT},{}]", EVENT.replace("\"android\"", "\"\""));
        let e = parse_stats_body(body.as_bytes()).unwrap_err();
        assert!(e.to_string().starts_with("event 1:"), "{e}");
        assert_eq!(
            parse_stats_body(b"{}").unwrap_err().code(),
            "missing_device_id"
        );
        assert_eq!(
            parse_stats_body(b"nope").unwrap_err().code(),
            "invalid_json_parse_body"
        );
        let bad_meta = EVENT.replace(r#"{"k":"v"}"#, r#"{"k":1}"#);
        assert_eq!(
            parse_stats_body(bad_meta.as_bytes()).unwrap_err().code(),
            "invalid_json_body"
        );
        let bad_os = EVENT.replace("\"14\"", "14");
        assert_eq!(
            parse_stats_body(bad_os.as_bytes()).unwrap_err().code(),
            "invalid_json_body"
        );
        let odd_action = EVENT.replace("\"set\"", "\"drop table; --\"");
        let parsed = parse_stats_body(odd_action.as_bytes()).unwrap();
        assert_eq!(counted_action(&parsed.events[0].action), OTHER_ACTION);
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
