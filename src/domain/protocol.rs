//! The plugin's wire types (protocol.md §1–2): what `@capgo/capacitor-updater` POSTs to
//! `updateUrl`, the validated form the decision works on, and the two answer shapes.
//!
//! Parsing borrows from the request body where it can (`Cow`), because this runs on every app
//! start of every device.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::domain::version::normalize_native_version;

/// What `decide_update` can refuse with: Capgo's error codes, so dashboards and the plugin's
/// `updateCheckResult` events read the same as with Capgo's cloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalCode {
    NoNewVersionAvailable,
    AlreadyOnBuiltin,
    NoChannel,
    AppNotFound,
    ReleasePaused,
    DisableAutoUpdateToMajor,
    DisableAutoUpdateToMinor,
    DisableAutoUpdateToPatch,
    DisableAutoUpdateToMetadata,
    DisableAutoUpdateUnderNative,
    MisconfiguredChannel,
    DisableProdBuild,
    DisableDevBuild,
    DisableDevice,
    DisableEmulator,
    KeyIdMismatch,
    VersionFailedOnDevice,
    InvalidRelease,
    ServiceUnavailable,
}

/// protocol.md §2.1 `kind`: how the plugin files a refusal. `failed` sends a `download_fail`
/// stat and a `downloadFailed` event on every check, so it is kept for real faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    UpToDate,
    Blocked,
    Failed,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::UpToDate => "up_to_date",
            Kind::Blocked => "blocked",
            Kind::Failed => "failed",
        }
    }
}

impl RefusalCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoNewVersionAvailable => "no_new_version_available",
            Self::AlreadyOnBuiltin => "already_on_builtin",
            Self::NoChannel => "no_channel",
            Self::AppNotFound => "app_not_found",
            Self::ReleasePaused => "release_paused",
            Self::DisableAutoUpdateToMajor => "disable_auto_update_to_major",
            Self::DisableAutoUpdateToMinor => "disable_auto_update_to_minor",
            Self::DisableAutoUpdateToPatch => "disable_auto_update_to_patch",
            Self::DisableAutoUpdateToMetadata => "disable_auto_update_to_metadata",
            Self::DisableAutoUpdateUnderNative => "disable_auto_update_under_native",
            Self::MisconfiguredChannel => "misconfigured_channel",
            Self::DisableProdBuild => "disable_prod_build",
            Self::DisableDevBuild => "disable_dev_build",
            Self::DisableDevice => "disable_device",
            Self::DisableEmulator => "disable_emulator",
            Self::KeyIdMismatch => "key_id_mismatch",
            Self::VersionFailedOnDevice => "version_failed_on_device",
            Self::InvalidRelease => "invalid_release",
            Self::ServiceUnavailable => "service_unavailable",
        }
    }

    /// The §2.3 map from Capgo's cloud: up-to-date and policy blocks never count as failures.
    pub fn kind(self) -> Kind {
        match self {
            Self::NoNewVersionAvailable | Self::AlreadyOnBuiltin => Kind::UpToDate,
            Self::ReleasePaused
            | Self::DisableAutoUpdateToMajor
            | Self::DisableAutoUpdateToMinor
            | Self::DisableAutoUpdateToPatch
            | Self::DisableAutoUpdateToMetadata
            | Self::DisableAutoUpdateUnderNative
            | Self::DisableProdBuild
            | Self::DisableDevBuild
            | Self::DisableDevice
            | Self::DisableEmulator
            | Self::KeyIdMismatch
            | Self::VersionFailedOnDevice => Kind::Blocked,
            Self::NoChannel
            | Self::AppNotFound
            | Self::MisconfiguredChannel
            | Self::InvalidRelease
            | Self::ServiceUnavailable => Kind::Failed,
        }
    }
}

/// What `setChannel` can be refused with (protocol.md §6): Capgo's codes, HTTP 200, never
/// with `kind` (setChannel would read it as success).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelRefusal {
    /// The channel does not exist for the device's platform.
    NotFound,
    /// The channel does not allow devices to choose it.
    NotAllowed,
    /// An old plugin asked the server to remember its choice, for an app that did not opt in.
    NotStored,
}

impl ChannelRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "channel_not_found",
            Self::NotAllowed => "channel_self_set_not_allowed",
            Self::NotStored => "channel_self_set_not_stored",
        }
    }
}

impl Serialize for RefusalCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The update check body exactly as the plugin sends it (protocol.md §1). Every field is
/// optional here so that validation, not serde, decides which error a device gets.
#[derive(Debug, Default, Deserialize)]
pub struct RawUpdateRequest<'a> {
    #[serde(borrow)]
    pub platform: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub device_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub app_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub custom_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub version_build: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub version_code: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub version_os: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub version_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub plugin_version: Option<Cow<'a, str>>,
    pub is_emulator: Option<bool>,
    pub is_prod: Option<bool>,
    #[serde(borrow)]
    pub install_source: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "defaultChannel")]
    pub default_channel: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub key_id: Option<Cow<'a, str>>,
}

/// Platforms a release item can target (design.md §3); `all` is not a device platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Platform {
    Android,
    Ios,
    Electron,
}

impl Platform {
    /// Every platform the plugin runs on.
    pub const ALL: [Platform; 3] = [Platform::Android, Platform::Ios, Platform::Electron];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "android" => Some(Self::Android),
            "ios" => Some(Self::Ios),
            "electron" => Some(Self::Electron),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Android => "android",
            Self::Ios => "ios",
            Self::Electron => "electron",
        }
    }
}

/// A validated, normalised update check: what `decide_update` reads.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateRequest<'a> {
    pub app_id: Cow<'a, str>,
    /// Lowercased UUID.
    pub device_id: Cow<'a, str>,
    pub platform: Platform,
    /// The native build's version, normalised (`1.0` → `1.0.0`, `builtin` → `0.0.0`).
    pub version_build: semver::Version,
    /// `version_name` as sent: `builtin` when the device runs the store build's assets.
    pub version_name_raw: Cow<'a, str>,
    pub is_emulator: bool,
    pub is_prod: bool,
    /// `defaultChannel`, `None` when absent or empty.
    pub default_channel: Option<Cow<'a, str>>,
    pub key_id: Option<Cow<'a, str>>,
    pub custom_id: Option<Cow<'a, str>>,
    pub plugin_version: Option<Cow<'a, str>>,
}

impl UpdateRequest<'_> {
    /// True when the device runs the assets shipped in the store build.
    pub fn on_builtin(&self) -> bool {
        self.version_name_raw == "builtin"
    }

    /// The bundle version the device runs: the native version when on builtin (protocol.md
    /// §9 trap 9), so a release equal to the store build is not served again.
    pub fn running_version(&self) -> Cow<'_, str> {
        if self.on_builtin() {
            Cow::Owned(self.version_build.to_string())
        } else {
            Cow::Borrowed(&self.version_name_raw)
        }
    }
}

/// Why a request was refused before any decision (design.md §4.1); all HTTP 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("the request body is not valid JSON")]
    InvalidJsonParseBody,
    #[error("{0}")]
    InvalidJsonBody(String),
    #[error("device_id is missing")]
    MissingDeviceId,
    #[error("app_id is missing")]
    MissingAppId,
    #[error("version_build {0:?} is not a semantic version")]
    SemverError(String),
}

impl RequestError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidJsonParseBody => "invalid_json_parse_body",
            Self::InvalidJsonBody(_) => "invalid_json_body",
            Self::MissingDeviceId => "missing_device_id",
            Self::MissingAppId => "missing_app_id",
            Self::SemverError(_) => "semver_error",
        }
    }
}

/// Parses a body as JSON, telling "not JSON at all" from "JSON of the wrong shape".
pub fn parse_json_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, RequestError> {
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => RequestError::InvalidJsonBody(format!(
            "the request body has the wrong shape: {}",
            trim_serde(&e)
        )),
        _ => RequestError::InvalidJsonParseBody,
    })
}

/// serde's message without the line/column suffix, which says nothing useful to a device.
fn trim_serde(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.find(" at line ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

/// Parses and validates an update check body in the order of design.md §4.1.
pub fn parse_update_request(body: &[u8]) -> Result<UpdateRequest<'_>, RequestError> {
    let raw: RawUpdateRequest<'_> = parse_json_body(body)?;
    validate_update_request(raw)
}

/// Validation and normalisation of a parsed body (design.md §4.1), in its order.
pub fn validate_update_request(
    raw: RawUpdateRequest<'_>,
) -> Result<UpdateRequest<'_>, RequestError> {
    let device_id = non_empty(raw.device_id).ok_or(RequestError::MissingDeviceId)?;
    let app_id = non_empty(raw.app_id).ok_or(RequestError::MissingAppId)?;
    let version_build_raw = raw.version_build.unwrap_or(Cow::Borrowed(""));
    let version_build = normalize_native_version(&version_build_raw)
        .ok_or_else(|| RequestError::SemverError(clip(&version_build_raw)))?;

    if !is_valid_app_id(&app_id) {
        return Err(RequestError::InvalidJsonBody(
            "app_id must be a reverse-domain identifier such as com.example.app".into(),
        ));
    }
    let device_id = lowercase_uuid(device_id)
        .ok_or_else(|| RequestError::InvalidJsonBody("device_id must be a UUID".into()))?;
    let platform = raw
        .platform
        .as_deref()
        .and_then(Platform::parse)
        .ok_or_else(|| {
            RequestError::InvalidJsonBody("platform must be ios, android or electron".into())
        })?;
    let version_name_raw = non_empty(raw.version_name)
        .ok_or_else(|| RequestError::InvalidJsonBody("version_name is missing or empty".into()))?;
    if version_name_raw.len() > 256 {
        return Err(RequestError::InvalidJsonBody(
            "version_name is too long".into(),
        ));
    }

    Ok(UpdateRequest {
        app_id,
        device_id,
        platform,
        version_build,
        version_name_raw,
        is_emulator: raw.is_emulator.unwrap_or(false),
        is_prod: raw.is_prod.unwrap_or(true),
        default_channel: non_empty(raw.default_channel),
        key_id: non_empty(raw.key_id),
        custom_id: non_empty(raw.custom_id),
        plugin_version: non_empty(raw.plugin_version),
    })
}

fn non_empty(s: Option<Cow<'_, str>>) -> Option<Cow<'_, str>> {
    s.filter(|s| !s.is_empty())
}

/// The longest error message sent back, in characters: enough for a sentence that quotes a
/// value, never an echo of a stranger's 60 KB body.
pub const MESSAGE_LIMIT: usize = 256;

/// An error message cut to `MESSAGE_LIMIT` characters (with `…` when it was longer).
pub fn clip_message(s: &str) -> Cow<'_, str> {
    match s.char_indices().nth(MESSAGE_LIMIT) {
        None => Cow::Borrowed(s),
        Some((end, _)) => Cow::Owned(format!("{}…", &s[..end])),
    }
}

/// Error messages quote the offending value; a stranger's megabyte string is cut short.
fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Reverse-domain identifiers as Capacitor accepts them: two or more dot-separated segments of
/// letters, digits, `_` and `-`, starting with a letter (or `_`), 255 bytes at most.
pub fn is_valid_app_id(app_id: &str) -> bool {
    if app_id.is_empty() || app_id.len() > 255 {
        return false;
    }
    let mut segments = 0;
    for seg in app_id.split('.') {
        segments += 1;
        let mut chars = seg.chars();
        match chars.next() {
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
            _ => return false,
        }
        if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return false;
        }
    }
    segments >= 2
}

/// Checks a device id is a hyphenated UUID and lowercases it, borrowing when already lowercase.
pub fn lowercase_uuid(id: Cow<'_, str>) -> Option<Cow<'_, str>> {
    let b = id.as_bytes();
    if b.len() != 36 {
        return None;
    }
    for (i, &c) in b.iter().enumerate() {
        let ok = match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        };
        if !ok {
            return None;
        }
    }
    if b.iter().any(|c| c.is_ascii_uppercase()) {
        Some(Cow::Owned(id.to_ascii_lowercase()))
    } else {
        Some(id)
    }
}

/// A real update (protocol.md §2.3): never `error` or `kind`, never `null`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpdateAnswer<'a> {
    pub version: &'a str,
    pub url: Cow<'a, str>,
    pub checksum: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<&'a str>,
    /// Delta download (protocol.md §4): present only with at least one entry, never `[]`/null.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Vec<ManifestEntry<'a>>>,
}

/// One file of a delta download as the plugin reads it (`ManifestEntry`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ManifestEntry<'a> {
    pub file_name: &'a str,
    pub file_hash: &'a str,
    pub download_url: String,
}

/// The reset answer: the plugin goes back to the store build's assets.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResetAnswer {
    pub version: &'static str,
}

/// A refusal the plugin understands: HTTP 200 with `error`, `message` and `kind`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RefusalAnswer<'a> {
    pub error: RefusalCode,
    pub message: Cow<'a, str>,
    pub kind: Kind,
    /// The version that was held back (policy blocks), as Capgo sends it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<&'a str>,
    /// The native version it was compared with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub major: Option<bool>,
}

/// An error answer for malformed input or unknown routes: `{error, message}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorAnswer<'a> {
    pub error: &'a str,
    pub message: Cow<'a, str>,
}

#[cfg(test)]
mod tests {
    /// Parses a test body that lives for the whole test.
    fn leak_parse(body: impl Into<String>) -> crate::domain::protocol::UpdateRequest<'static> {
        crate::domain::protocol::parse_update_request(
            Box::leak(body.into().into_boxed_str()).as_bytes(),
        )
        .unwrap()
    }

    use super::*;

    #[test]
    fn messages_are_clipped_on_a_character_boundary() {
        assert_eq!(clip_message("short"), "short");
        let long = "é".repeat(MESSAGE_LIMIT + 10);
        let clipped = clip_message(&long);
        assert_eq!(clipped.chars().count(), MESSAGE_LIMIT + 1);
        assert!(clipped.ends_with('…'));
        assert_eq!(
            clip_message(&"x".repeat(MESSAGE_LIMIT)).len(),
            MESSAGE_LIMIT
        );
    }

    const GOOD: &str = r#"{"platform":"android","device_id":"6A1F0B3E-1111-4222-8333-9C2D00000000",
        "app_id":"com.example.app","custom_id":"","version_build":"1.2","version_code":"12",
        "version_os":"14","version_name":"builtin","plugin_version":"8.51.23","is_emulator":false,
        "is_prod":true,"install_source":"google_play","defaultChannel":"","key_id":"MIIBCgKCAQEA3it9ioh6",
        "some_future_field":{"a":1}}"#;

    #[test]
    fn parses_the_plugin_body_and_normalises() {
        let r = leak_parse(GOOD);
        assert_eq!(r.app_id, "com.example.app");
        assert_eq!(r.device_id, "6a1f0b3e-1111-4222-8333-9c2d00000000");
        assert_eq!(r.platform, Platform::Android);
        assert_eq!(r.version_build, semver::Version::new(1, 2, 0));
        assert!(r.on_builtin());
        assert_eq!(r.running_version(), "1.2.0");
        assert_eq!(
            r.default_channel, None,
            "empty defaultChannel is no channel"
        );
        assert_eq!(r.custom_id, None);
        assert_eq!(r.key_id.as_deref(), Some("MIIBCgKCAQEA3it9ioh6"));
        assert!(r.is_prod && !r.is_emulator);
    }

    fn err(body: &str) -> RequestError {
        parse_update_request(body.as_bytes()).unwrap_err()
    }

    fn with(field: &str, value: &str) -> String {
        let mut v: serde_json::Value = serde_json::from_str(GOOD).unwrap();
        let value: serde_json::Value = serde_json::from_str(value).unwrap();
        if value.is_null() {
            v.as_object_mut().unwrap().remove(field);
        } else {
            v[field] = value;
        }
        v.to_string()
    }

    #[test]
    fn validation_order_and_codes() {
        assert_eq!(err("not json").code(), "invalid_json_parse_body");
        assert_eq!(err("").code(), "invalid_json_parse_body");
        assert_eq!(err("{\"a\":").code(), "invalid_json_parse_body");
        assert_eq!(err("[1,2]").code(), "invalid_json_body");
        assert_eq!(err("42").code(), "invalid_json_body");
        assert_eq!(err("{}").code(), "missing_device_id");
        assert_eq!(err(r#"{"device_id":""}"#).code(), "missing_device_id");
        assert_eq!(err(r#"{"device_id":"x"}"#).code(), "missing_app_id");
        assert_eq!(
            err(r#"{"device_id":"x","app_id":"a.b"}"#).code(),
            "semver_error"
        );
        assert_eq!(
            err(&with("version_build", r#""banana""#)).code(),
            "semver_error"
        );
        assert_eq!(
            err(&with("app_id", r#""not an id""#)).code(),
            "invalid_json_body"
        );
        assert_eq!(
            err(&with("app_id", r#""single""#)).code(),
            "invalid_json_body"
        );
        assert_eq!(
            err(&with("device_id", r#""1234""#)).code(),
            "invalid_json_body"
        );
        assert_eq!(
            err(&with("platform", r#""windows""#)).code(),
            "invalid_json_body"
        );
        assert_eq!(err(&with("platform", "null")).code(), "invalid_json_body");
        assert_eq!(
            err(&with("version_name", r#""""#)).code(),
            "invalid_json_body"
        );
        assert_eq!(
            err(&with("version_name", "null")).code(),
            "invalid_json_body"
        );
        assert_eq!(
            err(&with("is_prod", r#""yes""#)).code(),
            "invalid_json_body"
        );
        assert_eq!(err(&with("device_id", "12")).code(), "invalid_json_body");
    }

    #[test]
    fn defaults_and_special_versions() {
        let r = leak_parse(with("is_prod", "null"));
        assert!(r.is_prod, "is_prod defaults to true");
        let r = leak_parse(with("is_emulator", "null"));
        assert!(!r.is_emulator, "is_emulator defaults to false");
        for v in ["builtin", "unknown"] {
            let body = with("version_build", &format!("\"{v}\""));
            let r = leak_parse(body);
            assert_eq!(r.version_build, semver::Version::new(0, 0, 0));
        }
        let body = with("version_name", r#""1.0.3""#);
        let r = leak_parse(body);
        assert!(!r.on_builtin());
        assert_eq!(r.running_version(), "1.0.3");
        let body = with("defaultChannel", r#""beta""#);
        assert_eq!(leak_parse(body).default_channel.as_deref(), Some("beta"));
    }

    #[test]
    fn app_ids() {
        for ok in [
            "com.example.app",
            "io.ionic.starter",
            "com.my_co.app-1",
            "a.b",
        ] {
            assert!(is_valid_app_id(ok), "{ok}");
        }
        for bad in [
            "",
            "com",
            "com..app",
            ".com.app",
            "com.app.",
            "com.1app",
            "com.app/x",
            "com.ap p",
        ] {
            assert!(!is_valid_app_id(bad), "{bad}");
        }
    }

    #[test]
    fn answers_serialise_without_nulls() {
        let a = UpdateAnswer {
            version: "1.0.3",
            url: "https://x/b.zip".into(),
            checksum: "ab",
            session_key: None,
            link: None,
            comment: Some("hi"),
            manifest: None,
        };
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"{"version":"1.0.3","url":"https://x/b.zip","checksum":"ab","comment":"hi"}"#
        );
        let r = RefusalAnswer {
            error: RefusalCode::NoNewVersionAvailable,
            message: "No new version available".into(),
            kind: RefusalCode::NoNewVersionAvailable.kind(),
            version: None,
            old: None,
            major: None,
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"error":"no_new_version_available","message":"No new version available","kind":"up_to_date"}"#
        );
    }
}
