//! Parsing what the plugin POSTs to `statsUrl` (protocol.md §5): both shapes (an array of
//! events, or one object), every event validated before anything is stored, with bounded
//! memory whatever the body holds. What the plugin legitimately sends is never refused:
//! long values are clipped.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;

use crate::domain::protocol::{RequestError, is_valid_app_id, lowercase_uuid, parse_json_body};

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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::stats::actions::{OTHER_ACTION, counted_action};

    pub(crate) const EVENT: &str = r#"{"platform":"android","device_id":"6A1F0B3E-1111-4222-8333-9C2D00000000","app_id":"com.example.app",
        "custom_id":"","version_build":"1.0.0","version_code":"1","version_os":"14","version_name":"1.0.1",
        "old_version_name":"","plugin_version":"8.51.23","is_emulator":false,"is_prod":true,"install_source":"",
        "defaultChannel":"","action":"set","timestamp":1795910400000,"metadata":{"k":"v"}}"#;

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
}
