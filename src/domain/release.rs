//! The release contract of design.md §3 in its typed form: a release item (what a channel
//! serves on a platform, with its policy) and the staged rollout it may carry. Parsing is
//! here, once, so both stores read items the same way and a hand-written item (`aws dynamodb
//! put-item`) gets the same checks as one written by the CLI.

use semver::Version;

use crate::domain::health::Health;
use crate::domain::item::{Item, ItemError, ItemExt, attr};
use crate::domain::share::{parse_percent, parse_steps};
use crate::domain::version::ReleaseVersion;

/// `disable_auto_update`: how far from the native build a bundle may move on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisableAutoUpdate {
    None,
    Patch,
    Minor,
    Major,
    VersionNumber,
}

impl DisableAutoUpdate {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "none" => Self::None,
            "patch" => Self::Patch,
            "minor" => Self::Minor,
            "major" => Self::Major,
            "version_number" => Self::VersionNumber,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Patch => "patch",
            Self::Minor => "minor",
            Self::Major => "major",
            Self::VersionNumber => "version_number",
        }
    }
}

/// A release item (what one channel serves on one platform), with design.md's defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Release {
    pub version: ReleaseVersion,
    /// `version` as written, which is what the plugin compares and stores.
    pub version_text: String,
    pub bundle: Option<String>,
    /// Object key of the bundle's manifest (delta updates), copied from its bundle item.
    pub manifest: Option<String>,
    pub url: Option<String>,
    pub checksum: Option<String>,
    pub session_key: Option<String>,
    pub key_id: Option<String>,
    pub disable_auto_update: DisableAutoUpdate,
    pub disable_auto_update_under_native: bool,
    pub min_update_version: Option<Version>,
    pub allow_emulator: bool,
    pub allow_device: bool,
    pub allow_dev: bool,
    pub allow_prod: bool,
    pub allow_self_assign: bool,
    pub paused: bool,
    pub pause_reason: Option<String>,
    pub link: Option<String>,
    pub comment: Option<String>,
    /// When `updraft resume` last lifted a pause (unix seconds).
    pub resumed_at: Option<u64>,
    /// Counts recorded at that resume: only later events count towards the next auto-pause.
    pub baseline: Health,
    /// The item as stored, for settings read outside the hot path (auto-pause policy).
    pub item: Item,
    /// A staged rollout of another version on this item (`rollout_*` attributes), if any.
    pub rollout: Option<Result<Rollout, ItemError>>,
}

/// True for the plugin's plain checksum: SHA-256, lowercase hex (protocol.md §3).
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// True for the checksum of an encrypted bundle: 256 RSA-encrypted bytes, as hex (the Capgo
/// CLI's current form) or base64 (its legacy form).
pub fn is_encrypted_checksum(s: &str) -> bool {
    use base64::Engine;
    if s.len() == 512 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return true;
    }
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .is_ok_and(|bytes| bytes.len() == 256)
}

/// `session_key` as the plugin accepts it: `<ivB64>:<encKeyB64>`, both parts non-empty.
pub fn is_valid_session_key(s: &str) -> bool {
    let mut parts = s.split(':');
    matches!((parts.next(), parts.next(), parts.next()), (Some(a), Some(b), None) if !a.is_empty() && !b.is_empty())
}

/// An absolute http(s) URL the plugin's `java.net.URL` / `URL(string:)` will parse.
pub fn is_valid_download_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    match rest {
        Some(rest) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            !host.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    }
}

impl Release {
    /// Reads a release item, applying defaults and refusing what the plugin could not use.
    pub fn from_item(item: &Item) -> Result<Self, ItemError> {
        let text = |name: &'static str| -> Result<Option<String>, ItemError> {
            Ok(item.get_text(name)?.map(str::to_owned))
        };
        let version_text = item
            .get_text(attr::VERSION)?
            .ok_or(ItemError::Missing(attr::VERSION))?;
        let version = ReleaseVersion::parse(version_text).ok_or_else(|| {
            ItemError::invalid(
                attr::VERSION,
                format!("{version_text:?} is neither semver nor builtin"),
            )
        })?;
        let bundle = text(attr::BUNDLE)?;
        let url = text(attr::URL)?;
        let checksum = text(attr::CHECKSUM)?;
        let session_key = text(attr::SESSION_KEY)?;
        if version != ReleaseVersion::Builtin {
            check_download(
                bundle.as_deref(),
                url.as_deref(),
                checksum.as_deref(),
                session_key.as_deref(),
            )?;
        }
        if let Some(sk) = &session_key
            && !is_valid_session_key(sk)
        {
            return Err(ItemError::invalid(
                attr::SESSION_KEY,
                "must be <ivBase64>:<keyBase64>",
            ));
        }
        if let Some(u) = &url
            && !is_valid_download_url(u)
        {
            return Err(ItemError::invalid(
                attr::URL,
                "must be an absolute http(s) URL",
            ));
        }
        let disable_auto_update = match item.get_text(attr::DISABLE_AUTO_UPDATE)? {
            None => DisableAutoUpdate::Major,
            Some(s) => DisableAutoUpdate::parse(s).ok_or_else(|| {
                ItemError::invalid(
                    attr::DISABLE_AUTO_UPDATE,
                    "must be none, patch, minor, major or version_number",
                )
            })?,
        };
        let min_update_version = match item.get_text(attr::MIN_UPDATE_VERSION)? {
            None => None,
            Some(s) => Some(
                crate::domain::version::normalize_native_version(s).ok_or_else(|| {
                    ItemError::invalid(attr::MIN_UPDATE_VERSION, format!("{s:?} is not semver"))
                })?,
            ),
        };
        Ok(Release {
            version,
            version_text: version_text.to_owned(),
            bundle,
            manifest: text(attr::MANIFEST)?,
            url,
            checksum,
            session_key,
            key_id: text(attr::KEY_ID)?,
            disable_auto_update,
            disable_auto_update_under_native: item
                .get_flag(attr::DISABLE_AUTO_UPDATE_UNDER_NATIVE, true)?,
            min_update_version,
            allow_emulator: item.get_flag(attr::ALLOW_EMULATOR, true)?,
            allow_device: item.get_flag(attr::ALLOW_DEVICE, true)?,
            allow_dev: item.get_flag(attr::ALLOW_DEV, true)?,
            allow_prod: item.get_flag(attr::ALLOW_PROD, true)?,
            allow_self_assign: item.get_flag(attr::ALLOW_SELF_ASSIGN, false)?,
            paused: item.get_flag(attr::PAUSED, false)?,
            pause_reason: text(attr::PAUSE_REASON)?,
            link: text(attr::LINK)?,
            comment: text(attr::COMMENT)?,
            resumed_at: item.get_whole(attr::RESUMED_AT)?,
            baseline: Health {
                installs: item.get_whole(attr::PAUSE_BASELINE_INSTALLS)?.unwrap_or(0),
                failures: item.get_whole(attr::PAUSE_BASELINE_FAILURES)?.unwrap_or(0),
            },
            item: item.clone(),
            rollout: parse_rollout(item),
        })
    }
}

/// What a bundle release needs to be downloadable: a bundle or URL, and the checksum the
/// plugin can verify (plain SHA-256, or the 512-hex encrypted one with a session key).
fn check_download(
    bundle: Option<&str>,
    url: Option<&str>,
    checksum: Option<&str>,
    session_key: Option<&str>,
) -> Result<(), ItemError> {
    if bundle.is_none() && url.is_none() {
        return Err(ItemError::Missing("bundle (or url)"));
    }
    let checksum = checksum.ok_or(ItemError::Missing(attr::CHECKSUM))?;
    if session_key.is_some() {
        if !is_encrypted_checksum(checksum) {
            return Err(ItemError::invalid(
                attr::CHECKSUM,
                "an encrypted bundle needs the 512-hex checksum printed by `capgo bundle encrypt`",
            ));
        }
    } else if !is_sha256_hex(checksum) {
        return Err(ItemError::invalid(
            attr::CHECKSUM,
            "must be the SHA-256 of the zip as 64 lowercase hex digits",
        ));
    }
    Ok(())
}

impl Release {
    /// True when this item serves `version` to some devices: its stable version, or the
    /// version of its rollout.
    pub fn serves(&self, version: &str) -> bool {
        self.version_text == version
            || matches!(&self.rollout, Some(Ok(r)) if r.version() == version)
    }

    /// The release (stable, or the rollout's) that serves `version`, with its evidence epoch.
    pub fn serving(&self, version: &str) -> Option<(&Release, u64)> {
        if self.version_text == version {
            return Some((self, self.resumed_at.unwrap_or(0)));
        }
        match &self.rollout {
            Some(Ok(r)) if r.version() == version => Some((&r.release, r.epoch())),
            _ => None,
        }
    }
}

/// The attributes that say what a release item serves; a rollout carries its own copy of each
/// as `rollout_<name>` (the channel's policy is shared by both versions).
pub const SERVED_ATTRS: &[&str] = &[
    attr::VERSION,
    attr::BUNDLE,
    attr::URL,
    attr::CHECKSUM,
    attr::SESSION_KEY,
    attr::KEY_ID,
    attr::LINK,
    attr::COMMENT,
    attr::MANIFEST,
];

/// Attributes that belong to the stable version's life (pause state, its evidence epoch), not
/// to the rollout version.
const STABLE_ONLY_ATTRS: &[&str] = &[
    attr::PAUSED,
    attr::PAUSE_REASON,
    attr::PAUSED_AT,
    attr::RESUMED_AT,
    attr::PAUSE_BASELINE_INSTALLS,
    attr::PAUSE_BASELINE_FAILURES,
    attr::RELEASED_AT,
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
    let id = item
        .get_text(ROLLOUT_ID)?
        .filter(|s| !s.is_empty())
        .ok_or(ItemError::Missing(ROLLOUT_ID))?;
    let release = Release::from_item(&rollout_release_item(item)).map_err(|e| match e {
        ItemError::Missing(name) => {
            ItemError::invalid(ROLLOUT_VERSION, format!("rollout_{name} is required"))
        }
        other => ItemError::invalid(ROLLOUT_VERSION, format!("the rollout version: {other}")),
    })?;
    let basis_points = match item.get_number(ROLLOUT_PERCENT)? {
        None => return Err(ItemError::Missing(ROLLOUT_PERCENT)),
        Some(p) => parse_percent(p).map_err(|why| ItemError::invalid(ROLLOUT_PERCENT, why))?,
    };
    let state = match item.get_text(ROLLOUT_STATE)? {
        None => RolloutState::Active,
        Some(s) => RolloutState::parse(s).ok_or_else(|| {
            ItemError::invalid(ROLLOUT_STATE, "must be active, paused or aborted")
        })?,
    };
    let started_at = item.get_whole(ROLLOUT_STARTED_AT)?.unwrap_or(0);
    let steps = match item.get_text(ROLLOUT_STEPS)? {
        None => Vec::new(),
        Some(s) => parse_steps(s).map_err(|why| ItemError::invalid(ROLLOUT_STEPS, why))?,
    };
    let max_failure_rate = match item.get_number(ROLLOUT_MAX_FAILURE_RATE)? {
        None => DEFAULT_MAX_FAILURE_RATE,
        Some(r) if r > 0.0 && r < 1.0 => r,
        Some(_) => {
            return Err(ItemError::invalid(
                ROLLOUT_MAX_FAILURE_RATE,
                "must be between 0 and 1",
            ));
        }
    };
    let on_failure = match item.get_text(ROLLOUT_ON_FAILURE)? {
        None => OnFailure::Pause,
        Some(s) => OnFailure::parse(s)
            .ok_or_else(|| ItemError::invalid(ROLLOUT_ON_FAILURE, "must be pause or abort"))?,
    };
    Ok(Rollout {
        id: id.to_owned(),
        release: Box::new(release),
        basis_points,
        state,
        started_at,
        stepped_at: item.get_whole(ROLLOUT_STEPPED_AT)?.unwrap_or(started_at),
        resumed_at: item.get_whole(ROLLOUT_RESUMED_AT)?,
        gate: Gate {
            steps,
            step_every_secs: item
                .get_whole(ROLLOUT_STEP_EVERY)?
                .unwrap_or(DEFAULT_STEP_EVERY_SECS),
            max_failure_rate,
            min_devices: item
                .get_whole(ROLLOUT_MIN_DEVICES)?
                .unwrap_or(DEFAULT_MIN_DEVICES),
            on_failure,
        },
        halt_reason: item.get_text(ROLLOUT_HALT_REASON)?.map(str::to_owned),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    pub use crate::domain::item::AttrValue;

    pub const SUM: &str = "6bb619125ffc6b696964190e3fac054b407d64d6e40423d2ec888e9f720afef5";

    pub fn item(pairs: &[(&str, AttrValue)]) -> Item {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    pub fn s(v: &str) -> AttrValue {
        AttrValue::S(v.into())
    }

    #[test]
    fn defaults_follow_design() {
        let r = Release::from_item(&item(&[
            ("version", s("1.0.3")),
            ("bundle", s("k")),
            ("checksum", s(SUM)),
        ]))
        .unwrap();
        assert_eq!(r.disable_auto_update, DisableAutoUpdate::Major);
        assert!(r.disable_auto_update_under_native);
        assert!(r.allow_emulator && r.allow_device && r.allow_dev && r.allow_prod);
        assert!(!r.allow_self_assign && !r.paused);
        assert_eq!(r.min_update_version, None);
    }

    #[test]
    fn refuses_what_the_plugin_cannot_use() {
        let bad =
            |pairs: &[(&str, AttrValue)]| Release::from_item(&item(pairs)).unwrap_err().to_string();
        assert!(bad(&[("bundle", s("k"))]).contains("version"));
        assert!(
            bad(&[
                ("version", s("1.0")),
                ("bundle", s("k")),
                ("checksum", s(SUM))
            ])
            .contains("semver")
        );
        assert!(bad(&[("version", s("1.0.0")), ("checksum", s(SUM))]).contains("bundle"));
        assert!(bad(&[("version", s("1.0.0")), ("bundle", s("k"))]).contains("checksum"));
        let upper = SUM.to_uppercase();
        assert!(
            bad(&[
                ("version", s("1.0.0")),
                ("bundle", s("k")),
                ("checksum", s(&upper))
            ])
            .contains("lowercase")
        );
        assert!(
            bad(&[
                ("version", s("1.0.0")),
                ("bundle", s("k")),
                ("checksum", s("1a2b3c4d"))
            ])
            .contains("SHA-256")
        );
        let enc = &[
            ("version", s("1.0.0")),
            ("bundle", s("k")),
            ("checksum", s(SUM)),
            ("session_key", s("a:b")),
        ];
        assert!(bad(enc).contains("512-hex"));
        let enc = &[
            ("version", s("1.0.0")),
            ("bundle", s("k")),
            ("checksum", s(&"ab".repeat(256))),
            ("session_key", s("nocolon")),
        ];
        assert!(bad(enc).contains("session_key"));
        assert!(
            bad(&[
                ("version", s("1.0.0")),
                ("url", s("ftp://x/y.zip")),
                ("checksum", s(SUM))
            ])
            .contains("url")
        );
        assert!(bad(&[("version", AttrValue::Bool(true))]).contains("string"));
        let wrong = &[
            ("version", s("1.0.0")),
            ("bundle", s("k")),
            ("checksum", s(SUM)),
            ("paused", s("true")),
        ];
        assert!(bad(wrong).contains("BOOL"));
        let wrong = &[
            ("version", s("1.0.0")),
            ("bundle", s("k")),
            ("checksum", s(SUM)),
            ("disable_auto_update", s("all")),
        ];
        assert!(bad(wrong).contains("disable_auto_update"));
    }

    #[test]
    fn builtin_needs_no_bundle_and_encrypted_passes() {
        assert_eq!(
            Release::from_item(&item(&[("version", s("builtin"))]))
                .unwrap()
                .version,
            ReleaseVersion::Builtin
        );
        let enc = &[
            ("version", s("1.0.0")),
            ("bundle", s("k")),
            ("checksum", s(&"ab".repeat(256))),
            ("session_key", s("aXY=:a2V5")),
            ("key_id", s("MIIBCgKCAQEA3it9ioh6")),
        ];
        let r = Release::from_item(&item(enc)).unwrap();
        assert_eq!(r.session_key.as_deref(), Some("aXY=:a2V5"));
    }
}
