//! The release contract of design.md §3: items as DynamoDB and the embedded store hold them,
//! and their typed form. Parsing is here, once, so both stores read items the same way and a
//! hand-written item (`aws dynamodb put-item`) gets the same checks as one written by the CLI.

use std::collections::HashMap;

use semver::Version;

use crate::domain::health::Health;
pub use crate::domain::item::{AttrValue, Item};
use crate::domain::protocol::Platform;
use crate::domain::version::ReleaseVersion;

/// Sort key of the app settings item.
pub const APP_SK: &str = "app";
/// Sort key of the marker item in an app's partition that says some device of the app has a
/// channel override (see `AppSnapshot::device_overrides`).
pub const DEVICE_OVERRIDES_SK: &str = "device_overrides";
/// The marker's one attribute: unix seconds of the app's first device override.
pub const DEVICE_OVERRIDES_SINCE: &str = "since";

/// Whether the items an app's snapshot is read from describe an app: a `device_overrides`
/// marker alone does not (the app has no items an update check could serve).
pub fn describes_an_app<'a>(mut sks: impl Iterator<Item = &'a str>) -> bool {
    sks.any(|sk| sk != DEVICE_OVERRIDES_SK)
}
/// The channel an app serves when nothing else is set.
pub const DEFAULT_CHANNEL: &str = "production";

/// Sort key of a release item: `release#<channel>#<platform>`.
pub fn release_sk(channel: &str, target: Target) -> String {
    format!("release#{channel}#{}", target.as_str())
}

/// The channel and target of a release item's sort key.
pub fn parse_release_sk(sk: &str) -> Option<(&str, Target)> {
    let (channel, target) = sk.strip_prefix("release#")?.rsplit_once('#')?;
    Some((channel, Target::parse(target)?)).filter(|(c, _)| !c.is_empty())
}

/// Sort key of a bundle item: `bundle#<version>`.
pub fn bundle_sk(version: &str) -> String {
    format!("bundle#{version}")
}

/// The `app` item attribute naming a platform's own default channel.
pub fn default_channel_attr(platform: Platform) -> &'static str {
    match platform {
        Platform::Android => "default_channel_android",
        Platform::Ios => "default_channel_ios",
        Platform::Electron => "default_channel_electron",
    }
}

fn platform_slot(platform: Platform) -> usize {
    match platform {
        Platform::Android => 0,
        Platform::Ios => 1,
        Platform::Electron => 2,
    }
}

/// What a release item targets: one platform, or `all` as the fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    Platform(Platform),
    All,
}

impl Target {
    pub fn parse(s: &str) -> Option<Self> {
        if s == "all" {
            Some(Self::All)
        } else {
            Platform::parse(s).map(Self::Platform)
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Platform(p) => p.as_str(),
        }
    }
}

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
    pub rollout: Option<Result<crate::domain::rollout::Rollout, ItemError>>,
}

/// A release item that cannot be served as written. The message names the attribute, so an
/// operator can fix the item; devices only see that the release is misconfigured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ItemError {
    #[error("attribute {0} is required")]
    Missing(&'static str),
    #[error("attribute {name} must be {expected}")]
    WrongType {
        name: String,
        expected: &'static str,
    },
    #[error("attribute {name} is invalid: {why}")]
    Invalid { name: &'static str, why: String },
}

fn get_s<'a>(item: &'a Item, name: &'static str) -> Result<Option<&'a str>, ItemError> {
    match item.get(name) {
        None => Ok(None),
        Some(AttrValue::S(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(ItemError::WrongType {
            name: name.into(),
            expected: "a string (S)",
        }),
    }
}

fn get_bool(item: &Item, name: &'static str, default: bool) -> Result<bool, ItemError> {
    match item.get(name) {
        None => Ok(default),
        Some(AttrValue::Bool(b)) => Ok(*b),
        Some(_) => Err(ItemError::WrongType {
            name: name.into(),
            expected: "a boolean (BOOL)",
        }),
    }
}

fn get_u64(item: &Item, name: &'static str) -> Result<Option<u64>, ItemError> {
    match item.get(name) {
        None => Ok(None),
        Some(AttrValue::N(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .map(Some)
            .ok_or_else(|| invalid(name, "must be a non-negative number")),
        Some(_) => Err(ItemError::WrongType {
            name: name.into(),
            expected: "a number (N)",
        }),
    }
}

fn invalid(name: &'static str, why: impl Into<String>) -> ItemError {
    ItemError::Invalid {
        name,
        why: why.into(),
    }
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
        let version_text = get_s(item, "version")?.ok_or(ItemError::Missing("version"))?;
        let version = ReleaseVersion::parse(version_text).ok_or_else(|| {
            invalid(
                "version",
                format!("{version_text:?} is neither semver nor builtin"),
            )
        })?;
        let bundle = get_s(item, "bundle")?.map(str::to_owned);
        let url = get_s(item, "url")?.map(str::to_owned);
        let manifest = get_s(item, "manifest")?.map(str::to_owned);
        let checksum = get_s(item, "checksum")?.map(str::to_owned);
        let session_key = get_s(item, "session_key")?.map(str::to_owned);
        let key_id = get_s(item, "key_id")?.map(str::to_owned);

        if version == ReleaseVersion::Builtin {
            // A reset needs nothing to download.
        } else {
            if bundle.is_none() && url.is_none() {
                return Err(ItemError::Missing("bundle (or url)"));
            }
            let checksum = checksum.as_deref().ok_or(ItemError::Missing("checksum"))?;
            if session_key.is_some() {
                if !is_encrypted_checksum(checksum) {
                    return Err(invalid(
                        "checksum",
                        "an encrypted bundle needs the 512-hex checksum printed by `capgo bundle encrypt`",
                    ));
                }
            } else if !is_sha256_hex(checksum) {
                return Err(invalid(
                    "checksum",
                    "must be the SHA-256 of the zip as 64 lowercase hex digits",
                ));
            }
        }
        if let Some(sk) = &session_key
            && !is_valid_session_key(sk)
        {
            return Err(invalid("session_key", "must be <ivBase64>:<keyBase64>"));
        }
        if let Some(u) = &url
            && !is_valid_download_url(u)
        {
            return Err(invalid("url", "must be an absolute http(s) URL"));
        }
        let disable_auto_update = match get_s(item, "disable_auto_update")? {
            None => DisableAutoUpdate::Major,
            Some(s) => DisableAutoUpdate::parse(s).ok_or_else(|| {
                invalid(
                    "disable_auto_update",
                    "must be none, patch, minor, major or version_number",
                )
            })?,
        };
        let min_update_version = match get_s(item, "min_update_version")? {
            None => None,
            Some(s) => Some(
                crate::domain::version::normalize_native_version(s)
                    .ok_or_else(|| invalid("min_update_version", format!("{s:?} is not semver")))?,
            ),
        };
        Ok(Release {
            version,
            version_text: version_text.to_owned(),
            bundle,
            manifest,
            url,
            checksum,
            session_key,
            key_id,
            disable_auto_update,
            disable_auto_update_under_native: get_bool(
                item,
                "disable_auto_update_under_native",
                true,
            )?,
            min_update_version,
            allow_emulator: get_bool(item, "allow_emulator", true)?,
            allow_device: get_bool(item, "allow_device", true)?,
            allow_dev: get_bool(item, "allow_dev", true)?,
            allow_prod: get_bool(item, "allow_prod", true)?,
            allow_self_assign: get_bool(item, "allow_self_assign", false)?,
            paused: get_bool(item, "paused", false)?,
            pause_reason: get_s(item, "pause_reason")?.map(str::to_owned),
            link: get_s(item, "link")?.map(str::to_owned),
            comment: get_s(item, "comment")?.map(str::to_owned),
            resumed_at: get_u64(item, "resumed_at")?,
            baseline: Health {
                installs: get_u64(item, "pause_baseline_installs")?.unwrap_or(0),
                failures: get_u64(item, "pause_baseline_failures")?.unwrap_or(0),
            },
            item: item.clone(),
            rollout: crate::domain::rollout::parse_rollout(item),
        })
    }
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

/// The release items of one channel, one slot per target.
#[derive(Debug, Clone, Default)]
pub struct ChannelReleases {
    pub android: Option<Result<Release, ItemError>>,
    pub ios: Option<Result<Release, ItemError>>,
    pub electron: Option<Result<Release, ItemError>>,
    pub all: Option<Result<Release, ItemError>>,
}

impl ChannelReleases {
    fn slot_mut(&mut self, target: Target) -> &mut Option<Result<Release, ItemError>> {
        match target {
            Target::All => &mut self.all,
            Target::Platform(Platform::Android) => &mut self.android,
            Target::Platform(Platform::Ios) => &mut self.ios,
            Target::Platform(Platform::Electron) => &mut self.electron,
        }
    }

    /// Every item of the channel with its target.
    pub fn targets(&self) -> impl Iterator<Item = (Target, &Result<Release, ItemError>)> {
        [
            (Target::Platform(Platform::Android), &self.android),
            (Target::Platform(Platform::Ios), &self.ios),
            (Target::Platform(Platform::Electron), &self.electron),
            (Target::All, &self.all),
        ]
        .into_iter()
        .filter_map(|(t, slot)| Some((t, slot.as_ref()?)))
    }

    /// The item serving `platform`: its own, else `all`.
    pub fn for_platform(&self, platform: Platform) -> Option<&Result<Release, ItemError>> {
        let own = match platform {
            Platform::Android => &self.android,
            Platform::Ios => &self.ios,
            Platform::Electron => &self.electron,
        };
        own.as_ref().or(self.all.as_ref())
    }
}

/// Everything an update check needs to know about one app, read in one go and cached.
#[derive(Debug, Clone, Default)]
pub struct AppSnapshot {
    pub default_channel: String,
    /// `legacy_channel_self` on the `app` item: a plugin older than 7.34 may store its own
    /// `setChannel` choice on the server. Off by default, because such a request names a device
    /// id that anyone can forge (protocol.md §6).
    pub legacy_channel_self: bool,
    /// `default_channel_<platform>` (android, ios, electron): overrides `default_channel` for
    /// devices of that platform (Capgo's one public channel per platform).
    pub platform_default_channels: [Option<String>; 3],
    /// The `app` item as stored (app-wide settings such as auto-pause defaults).
    pub app_item: Item,
    pub channels: HashMap<String, ChannelReleases>,
    /// Some device of this app has (or had) a channel override: the `device_overrides` item,
    /// written in the same atomic write as every override. Without it, an update check needs
    /// no device read to apply an override (`decide_without_device`).
    pub device_overrides: bool,
    /// Items that could not be read at all (an unknown platform in `sk`, a bad `app` item):
    /// logged by the store, never shown to devices.
    pub problems: Vec<String>,
}

impl AppSnapshot {
    /// Builds a snapshot from the app's `app`, `release#…` and `device_overrides` items (other
    /// items are ignored).
    pub fn from_items<'a>(items: impl IntoIterator<Item = (&'a str, &'a Item)>) -> Self {
        let mut snap = AppSnapshot {
            default_channel: DEFAULT_CHANNEL.to_owned(),
            ..Default::default()
        };
        for (sk, item) in items {
            if sk == APP_SK {
                snap.app_item = item.clone();
                match get_s(item, "default_channel") {
                    Ok(Some(c)) if !c.is_empty() => snap.default_channel = c.to_owned(),
                    Ok(_) => {}
                    Err(e) => snap.problems.push(format!("item app: {e}")),
                }
                match get_bool(item, "legacy_channel_self", false) {
                    Ok(b) => snap.legacy_channel_self = b,
                    Err(e) => snap.problems.push(format!("item app: {e}")),
                }
                for platform in Platform::ALL {
                    match get_s(item, default_channel_attr(platform)) {
                        Ok(Some(c)) if !c.is_empty() => {
                            snap.platform_default_channels[platform_slot(platform)] =
                                Some(c.to_owned())
                        }
                        Ok(_) => {}
                        Err(e) => snap.problems.push(format!("item app: {e}")),
                    }
                }
            } else if sk == DEVICE_OVERRIDES_SK {
                snap.device_overrides = true;
            } else if let Some(rest) = sk.strip_prefix("release#") {
                let parsed = rest
                    .rsplit_once('#')
                    .and_then(|(c, t)| Some((c, Target::parse(t)?)));
                match parsed {
                    Some((channel, target)) if !channel.is_empty() => {
                        let slot = snap
                            .channels
                            .entry(channel.to_owned())
                            .or_default()
                            .slot_mut(target);
                        *slot = Some(Release::from_item(item));
                    }
                    _ => snap.problems.push(format!(
                        "item {sk}: sort key is not release#<channel>#<platform>"
                    )),
                }
            }
        }
        snap
    }

    /// Whether a device's stored channel override applies: always an operator's; a device's own
    /// (an old plugin's setChannel) only while the app has `legacy_channel_self`.
    pub fn honours_override(&self, device: &crate::domain::device::DeviceState) -> bool {
        self.legacy_channel_self
            || device.channel_source != Some(crate::domain::device::ChannelSource::Device)
    }

    /// The channel devices of `platform` get when they ask for none: `default_channel_<platform>`,
    /// else `default_channel`.
    pub fn default_channel_for(&self, platform: Platform) -> &str {
        self.platform_default_channels[platform_slot(platform)]
            .as_deref()
            .unwrap_or(&self.default_channel)
    }

    /// `default_channel_<platform>`, when the app item sets it.
    pub fn platform_default_channel(&self, platform: Platform) -> Option<&str> {
        self.platform_default_channels[platform_slot(platform)].as_deref()
    }

    /// The release for a channel and platform, if the channel serves that platform.
    pub fn release(
        &self,
        channel: &str,
        platform: Platform,
    ) -> Option<&Result<Release, ItemError>> {
        self.channels.get(channel)?.for_platform(platform)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

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
    fn the_overrides_marker_is_read_but_alone_is_no_app() {
        let marker = Item::new();
        let snap = AppSnapshot::from_items([(DEVICE_OVERRIDES_SK, &marker)]);
        assert!(snap.device_overrides);
        assert!(!AppSnapshot::default().device_overrides);
        assert!(!describes_an_app([DEVICE_OVERRIDES_SK].into_iter()));
        assert!(describes_an_app([DEVICE_OVERRIDES_SK, "app"].into_iter()));
        assert!(!describes_an_app(std::iter::empty()));
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

    #[test]
    fn snapshot_groups_items() {
        let rel = item(&[
            ("version", s("1.0.3")),
            ("bundle", s("k")),
            ("checksum", s(SUM)),
        ]);
        let app = item(&[("default_channel", s("stable"))]);
        let bundle = item(&[("checksum", s(SUM))]);
        let snap = AppSnapshot::from_items([
            ("app", &app),
            ("release#stable#all", &rel),
            ("release#beta#ios", &rel),
            ("release#x#windows", &rel),
            ("bundle#1.0.3", &bundle),
        ]);
        assert_eq!(snap.default_channel, "stable");
        assert!(snap.release("stable", Platform::Android).is_some());
        assert!(snap.release("beta", Platform::Ios).is_some());
        assert!(snap.release("beta", Platform::Android).is_none());
        assert_eq!(snap.problems.len(), 1);
        assert!(!snap.legacy_channel_self);
        assert_eq!(AppSnapshot::from_items([]).default_channel, "production");
        assert_eq!(snap.default_channel_for(Platform::Ios), "stable");
        let app = item(&[
            ("default_channel", s("stable")),
            ("default_channel_ios", s("ios-public")),
        ]);
        let snap = AppSnapshot::from_items([("app", &app)]);
        assert_eq!(snap.default_channel_for(Platform::Ios), "ios-public");
        assert_eq!(snap.default_channel_for(Platform::Android), "stable");
        let app = item(&[("legacy_channel_self", AttrValue::Bool(true))]);
        assert!(AppSnapshot::from_items([("app", &app)]).legacy_channel_self);
        let app = item(&[("legacy_channel_self", s("yes"))]);
        let snap = AppSnapshot::from_items([("app", &app)]);
        assert!(!snap.legacy_channel_self && snap.problems.len() == 1);
    }
}
