//! The keys of the item contract: what a release item targets (`Target`) and the sort keys of
//! an app's partition: `app`, `device_overrides`, `release#<channel>#<platform>` and
//! `bundle#<version>`.

use crate::domain::protocol::Platform;

/// Sort key of the app settings item.
pub const APP_SK: &str = "app";
/// Sort key of the marker item in an app's partition that says some device of the app has a
/// channel override (see `AppSnapshot::device_overrides`); its one attribute is `since`.
pub const DEVICE_OVERRIDES_SK: &str = "device_overrides";
/// Prefix of release items' sort keys.
pub const RELEASE_SK_PREFIX: &str = "release#";
/// Prefix of bundle items' sort keys.
pub const BUNDLE_SK_PREFIX: &str = "bundle#";

/// What a release item targets: one platform, or `all` as the fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Target::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!("{s:?} is not all, android, ios or electron"))
        })
    }
}

/// Channel names go into sort keys (`release#<channel>#…`): no `#`, nothing exotic.
pub fn is_valid_channel(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Sort key of a release item: `release#<channel>#<platform>`.
pub fn release_sk(channel: &str, target: Target) -> String {
    format!("{RELEASE_SK_PREFIX}{channel}#{}", target.as_str())
}

/// The channel and target of a release item's sort key.
pub fn parse_release_sk(sk: &str) -> Option<(&str, Target)> {
    let (channel, target) = sk.strip_prefix(RELEASE_SK_PREFIX)?.rsplit_once('#')?;
    Some((channel, Target::parse(target)?)).filter(|(c, _)| !c.is_empty())
}

/// Sort key of a bundle item: `bundle#<version>`.
pub fn bundle_sk(version: &str) -> String {
    format!("{BUNDLE_SK_PREFIX}{version}")
}

/// The `app` item attribute naming a platform's own default channel.
pub fn default_channel_attr(platform: Platform) -> &'static str {
    match platform {
        Platform::Android => "default_channel_android",
        Platform::Ios => "default_channel_ios",
        Platform::Electron => "default_channel_electron",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_keys_round_trip() {
        let sk = release_sk("beta", Target::Platform(Platform::Ios));
        assert_eq!(sk, "release#beta#ios");
        assert_eq!(
            parse_release_sk(&sk),
            Some(("beta", Target::Platform(Platform::Ios)))
        );
        assert_eq!(parse_release_sk("release##all"), None);
        assert_eq!(parse_release_sk("release#x#windows"), None);
        assert_eq!(
            serde_json::to_string(&Target::All).unwrap(),
            "\"all\"".to_owned()
        );
        assert_eq!(
            serde_json::from_str::<Target>("\"android\"").unwrap(),
            Target::Platform(Platform::Android)
        );
    }
}
