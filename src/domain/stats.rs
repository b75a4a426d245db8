//! Device events sent to `statsUrl` (protocol.md §5): parsing both shapes the plugin POSTs
//! (an array, or one object), validating every event before anything is stored, and folding a
//! batch into per-release action counts, so a release-day burst costs a few counter writes per
//! request rather than one per event.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::domain::protocol::{RequestError, is_valid_app_id, lowercase_uuid, parse_json_body};

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

/// Largest batch accepted; the plugin queues at most 200 events.
pub const MAX_EVENTS: usize = 1000;

pub fn is_failure(action: &str) -> bool {
    FAILURE_ACTIONS.contains(&action)
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
    metadata: Option<BTreeMap<String, String>>,
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
    pub metadata: Option<BTreeMap<String, String>>,
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

fn short_text(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && !s.chars().any(char::is_control)
}

/// Actions are the plugin's snake_case names; unknown ones are welcome, odd characters are not
/// (they become counter names).
fn is_valid_action(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
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
    let platform = raw
        .platform
        .filter(|p| short_text(p, 32))
        .ok_or_else(|| bad(index, "platform is missing"))?;
    let action = raw.action.ok_or_else(|| bad(index, "action is missing"))?;
    if !is_valid_action(&action) {
        return Err(bad(
            index,
            "action must be 1 to 64 letters, digits, _ - or .",
        ));
    }
    let version_name = raw
        .version_name
        .filter(|v| short_text(v, 256))
        .ok_or_else(|| bad(index, "version_name is missing"))?;
    for (name, value) in [
        ("old_version_name", &raw.old_version_name),
        ("version_os", &raw.version_os),
        ("version_build", &raw.version_build),
        ("defaultChannel", &raw.default_channel),
        ("plugin_version", &raw.plugin_version),
    ] {
        if value.as_ref().is_some_and(|v| v.len() > 256) {
            return Err(bad(index, &format!("{name} is too long")));
        }
    }
    if let Some(m) = &raw.metadata
        && (m.len() > 64 || m.iter().any(|(k, v)| k.len() > 128 || v.len() > 1024))
    {
        return Err(bad(index, "metadata is too large"));
    }
    Ok(StatsEvent {
        app_id,
        device_id,
        platform,
        action,
        version_name,
        old_version_name: raw.old_version_name,
        version_os: raw.version_os,
        version_build: raw.version_build,
        default_channel: raw.default_channel.filter(|c| !c.is_empty()),
        plugin_version: raw.plugin_version,
        is_prod: raw.is_prod,
        is_emulator: raw.is_emulator,
        timestamp: raw.timestamp,
        metadata: raw.metadata,
    })
}

/// Parses a stats body: one event object or an array of them. Every event must be valid, or
/// the whole batch is refused (and so nothing of it is stored).
pub fn parse_stats_body(body: &[u8]) -> Result<(Vec<StatsEvent<'_>>, bool), RequestError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        Some(b'[') => {
            let raws: Vec<RawStatsEvent<'_>> = parse_json_body(body)?;
            if raws.len() > MAX_EVENTS {
                return Err(bad(
                    None,
                    &format!("a batch has at most {MAX_EVENTS} events"),
                ));
            }
            let events = raws
                .into_iter()
                .enumerate()
                .map(|(i, raw)| validate_event(raw, Some(i)))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((events, true))
        }
        _ => {
            let raw: RawStatsEvent<'_> = parse_json_body(body)?;
            Ok((vec![validate_event(raw, None)?], false))
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

/// Folds events into counter increments. `channel_of` names the channel whose release the
/// event's version belongs to.
pub fn aggregate<'e>(
    body: &[u8],
    events: &'e [StatsEvent<'e>],
    mut channel_of: impl FnMut(&StatsEvent<'e>) -> String,
) -> StatsBatch {
    let mut batch = StatsBatch {
        id: hex::encode(&Sha256::digest(body)[..16]),
        ..Default::default()
    };
    for e in events {
        let version = e.version().to_owned();
        let key = CounterKey {
            app_id: e.app_id.to_string(),
            channel: channel_of(e),
            version: version.clone(),
        };
        *batch
            .counts
            .entry(key)
            .or_default()
            .entry(e.action.to_string())
            .or_default() += 1;
        if is_failure(&e.action) && version != "builtin" && !version.is_empty() {
            batch
                .devices_seen
                .insert((e.app_id.to_string(), e.device_id.to_string()));
            batch
                .device_failures
                .insert((e.app_id.to_string(), e.device_id.to_string(), version));
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: &str = r#"{"platform":"android","device_id":"6A1F0B3E-1111-4222-8333-9C2D00000000","app_id":"com.example.app",
        "custom_id":"","version_build":"1.0.0","version_code":"1","version_os":"14","version_name":"1.0.1",
        "old_version_name":"","plugin_version":"8.51.23","is_emulator":false,"is_prod":true,"install_source":"",
        "defaultChannel":"","action":"set","timestamp":1795910400000,"metadata":{"k":"v"}}"#;

    #[test]
    fn parses_object_and_array() {
        let (events, array) = parse_stats_body(EVENT.as_bytes()).unwrap();
        assert!(!array);
        assert_eq!(events[0].device_id, "6a1f0b3e-1111-4222-8333-9c2d00000000");
        assert_eq!(events[0].action, "set");
        let body = format!(
            "[{EVENT},{}]",
            EVENT.replace("\"set\"", "\"some_future_action\"")
        );
        let (events, array) = parse_stats_body(body.as_bytes()).unwrap();
        assert!(array);
        assert_eq!(events.len(), 2);
        assert_eq!(parse_stats_body(b"[]").unwrap().0.len(), 0);
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
        let bad_action = EVENT.replace("\"set\"", "\"drop table; --\"");
        assert_eq!(
            parse_stats_body(bad_action.as_bytes()).unwrap_err().code(),
            "invalid_json_body"
        );
        let bad_os = EVENT.replace("\"14\"", "14");
        assert_eq!(
            parse_stats_body(bad_os.as_bytes()).unwrap_err().code(),
            "invalid_json_body"
        );
    }

    #[test]
    fn aggregates_counts_and_failures() {
        let fail = EVENT.replace("\"set\"", "\"update_fail\"");
        let manifest = EVENT
            .replace("\"set\"", "\"download_manifest_checksum_fail\"")
            .replace("\"1.0.1\"", "\"1.0.1:app.js\"");
        let transient = EVENT.replace("\"set\"", "\"download_fail\"");
        let body = format!("[{EVENT},{EVENT},{fail},{manifest},{transient}]");
        let (events, _) = parse_stats_body(body.as_bytes()).unwrap();
        let batch = aggregate(body.as_bytes(), &events, |_| "production".into());
        let key = CounterKey {
            app_id: "com.example.app".into(),
            channel: "production".into(),
            version: "1.0.1".into(),
        };
        let counts = &batch.counts[&key];
        assert_eq!(installs(counts), 2);
        assert_eq!(
            failures(counts),
            2,
            "update_fail and the manifest checksum failure; not download_fail"
        );
        assert_eq!(counts["download_fail"], 1);
        assert_eq!(batch.device_failures.len(), 1);
        assert_eq!(batch.devices_seen.len(), 1);
        assert_eq!(batch.id.len(), 32);
        assert_eq!(
            aggregate(body.as_bytes(), &events, |_| "x".into()).id,
            batch.id,
            "same body, same id"
        );
    }
}
