//! History: an append-only record of every change of what a channel serves or how, written in
//! the same atomic write as the change. Entries live in their own partition
//! (`<app_id>#history`), so the update check's query of the app's partition never reads them.
//! Changes are conditioned on the changed item's `revision`, so two operators racing on one
//! channel cannot both win, and no entry is lost or doubled.

use serde::{Deserialize, Serialize};

use crate::domain::item::{Item, ItemExt, attr};
use crate::domain::keys::Target;

/// Who history names for automatic changes (auto-pause, the rollout gate).
pub const AUTOMATIC: &str = "updraft (automatic)";

/// The partition key of an app's history items.
pub fn history_partition(app_id: &str) -> String {
    format!("{app_id}#history")
}

/// True for a history partition key (so listings of apps skip it).
pub fn is_history_partition(pk: &str) -> bool {
    pk.ends_with("#history")
}

/// What changed. Serialized as the `action` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HistoryAction {
    Release,
    Rollback,
    Promote,
    ChannelSet,
    Pause,
    AutoPause,
    Resume,
    DefaultChannel,
    RolloutStart,
    RolloutStep,
    RolloutPause,
    RolloutResume,
    RolloutAbort,
    RolloutComplete,
}

impl HistoryAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Release => "release",
            Self::Rollback => "rollback",
            Self::Promote => "promote",
            Self::ChannelSet => "channel-set",
            Self::Pause => "pause",
            Self::AutoPause => "auto-pause",
            Self::Resume => "resume",
            Self::DefaultChannel => "default-channel",
            Self::RolloutStart => "rollout-start",
            Self::RolloutStep => "rollout-step",
            Self::RolloutPause => "rollout-pause",
            Self::RolloutResume => "rollout-resume",
            Self::RolloutAbort => "rollout-abort",
            Self::RolloutComplete => "rollout-complete",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Release,
            Self::Rollback,
            Self::Promote,
            Self::ChannelSet,
            Self::Pause,
            Self::AutoPause,
            Self::Resume,
            Self::DefaultChannel,
            Self::RolloutStart,
            Self::RolloutStep,
            Self::RolloutPause,
            Self::RolloutResume,
            Self::RolloutAbort,
            Self::RolloutComplete,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }

    /// True for actions that may change the served version (what rollback walks back over).
    pub fn moves_version(self) -> bool {
        matches!(
            self,
            Self::Release | Self::Rollback | Self::Promote | Self::RolloutComplete
        )
    }
}

/// One history entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When, in microseconds since the Unix epoch (also the order of entries).
    pub at_micros: u64,
    pub action: HistoryAction,
    pub channel: String,
    /// The release item's target; `all` for app-wide changes.
    pub platform: Target,
    /// The version served before; `None` when the channel served nothing there.
    pub from_version: Option<String>,
    /// The version served after.
    pub to_version: Option<String>,
    /// Who: the OS user locally, the caller's AWS principal ARN on AWS, `updraft` for
    /// automatic changes.
    pub who: String,
    /// What else changed (policy changes, pause reason, source channel of a promotion).
    pub detail: Option<String>,
}

impl HistoryEntry {
    /// The entry's sort key in the history partition: time first, so a Query reads newest first.
    pub fn sort_key(&self) -> String {
        format!(
            "{:016}#{}#{}",
            self.at_micros,
            self.channel,
            self.platform.as_str()
        )
    }

    /// The entry as item attributes (README's history item table).
    pub fn to_item(&self) -> Item {
        let mut item = Item::new();
        item.set_whole("at", self.at_micros / 1_000_000);
        item.set_whole("at_micros", self.at_micros);
        item.set_text("action", self.action.as_str());
        item.set_text("channel", &self.channel);
        item.set_text("platform", self.platform.as_str());
        item.set_text("who", &self.who);
        for (name, value) in [
            ("from_version", &self.from_version),
            ("to_version", &self.to_version),
            ("detail", &self.detail),
        ] {
            if let Some(v) = value {
                item.set_text(name, v);
            }
        }
        item
    }

    /// Reads a history item; `None` for one this version cannot read.
    pub fn from_item(item: &Item) -> Option<Self> {
        let text = |name: &str| item.text(name).map(str::to_owned);
        Some(HistoryEntry {
            at_micros: item.whole("at_micros")?,
            action: HistoryAction::parse(item.text("action")?)?,
            channel: text("channel")?,
            platform: Target::parse(item.text("platform")?)?,
            from_version: text("from_version"),
            to_version: text("to_version"),
            who: text("who").unwrap_or_default(),
            detail: text("detail"),
        })
    }
}

/// An item's revision: 0 for an item written before revisions existed (or by hand).
pub fn revision_of(item: &Item) -> u64 {
    item.whole(attr::REVISION).unwrap_or(0)
}

/// What a conditional change expects of the item it replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// There is no such item yet.
    Absent,
    /// The item exists with this revision (0: without a `revision` attribute).
    Revision(u64),
}

impl Expected {
    /// What replacing `current` expects.
    pub fn of(current: Option<&Item>) -> Self {
        current.map_or(Expected::Absent, |i| Expected::Revision(revision_of(i)))
    }

    /// The revision the replacing item carries.
    pub fn next(self) -> u64 {
        match self {
            Expected::Absent => 1,
            Expected::Revision(r) => r + 1,
        }
    }
}

/// The version a channel/platform served before `current`, from its history (newest first):
/// the `from_version` of the newest version-moving entry that put `current` there.
pub fn version_before<'a>(
    entries: impl IntoIterator<Item = &'a HistoryEntry>,
    current: &str,
) -> Option<&'a str> {
    entries
        .into_iter()
        .find(|e| e.action.moves_version() && e.to_version.as_deref() == Some(current))
        .and_then(|e| e.from_version.as_deref())
}

/// RFC 3339 (UTC, seconds) of a time in microseconds, for people reading history.
pub fn rfc3339(at_micros: u64) -> String {
    let secs = (at_micros / 1_000_000) as i64;
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(at: u64, action: HistoryAction, from: Option<&str>, to: &str) -> HistoryEntry {
        HistoryEntry {
            at_micros: at,
            action,
            channel: "production".into(),
            platform: Target::All,
            from_version: from.map(str::to_owned),
            to_version: Some(to.to_owned()),
            who: "alice".into(),
            detail: None,
        }
    }

    #[test]
    fn items_round_trip_and_sort_by_time() {
        let e = entry(
            1_795_000_000_123_456,
            HistoryAction::Promote,
            Some("1.0.1"),
            "1.0.2",
        );
        assert_eq!(HistoryEntry::from_item(&e.to_item()), Some(e.clone()));
        let later = entry(1_795_000_000_123_457, HistoryAction::Pause, None, "1.0.2");
        assert!(later.sort_key() > e.sort_key());
        let early = entry(999, HistoryAction::Pause, None, "1.0.2");
        assert!(early.sort_key() < e.sort_key(), "zero-padded");
        assert_eq!(rfc3339(1_795_000_000_000_000), "2026-11-18T11:06:40Z");
    }

    #[test]
    fn rollback_target_is_what_served_before() {
        // newest first: 1.0.1 -> 1.0.2 (release), paused, then 1.0.0 -> 1.0.1 (release)
        let h = [
            entry(4, HistoryAction::Pause, Some("1.0.2"), "1.0.2"),
            entry(3, HistoryAction::Release, Some("1.0.1"), "1.0.2"),
            entry(2, HistoryAction::Release, Some("1.0.0"), "1.0.1"),
            entry(1, HistoryAction::Release, None, "1.0.0"),
        ];
        assert_eq!(version_before(&h, "1.0.2"), Some("1.0.1"));
        assert_eq!(version_before(&h, "1.0.1"), Some("1.0.0"));
        assert_eq!(version_before(&h, "1.0.0"), None);
        assert_eq!(Expected::of(None).next(), 1);
        let mut it = Item::new();
        assert_eq!(Expected::of(Some(&it)), Expected::Revision(0));
        it.set_whole(attr::REVISION, 7);
        assert_eq!(Expected::of(Some(&it)).next(), 8);
    }
}
