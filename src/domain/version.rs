//! Version strings as devices and operators write them.

use semver::Version;

/// Normalises a native `version_build` the way Capgo does (design.md §4.1): `1.0` → `1.0.0`,
/// `2` → `2.0.0`, `builtin`/`unknown` → `0.0.0`; pre-release and build suffixes are kept.
pub fn normalize_native_version(s: &str) -> Option<Version> {
    if s == "builtin" || s == "unknown" {
        return Some(Version::new(0, 0, 0));
    }
    if s.len() > 128 {
        return None;
    }
    if let Ok(v) = Version::parse(s) {
        return Some(v);
    }
    let split = s.find(['-', '+']).unwrap_or(s.len());
    let (core, rest) = s.split_at(split);
    let padded = match core.matches('.').count() {
        0 => format!("{core}.0.0{rest}"),
        1 => format!("{core}.0{rest}"),
        _ => return None,
    };
    Version::parse(&padded).ok()
}

/// The version a release item names: a semver bundle, or `builtin` (send devices back to the
/// store build's assets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseVersion {
    Builtin,
    Bundle(Version),
}

impl ReleaseVersion {
    pub fn parse(s: &str) -> Option<Self> {
        if s == "builtin" {
            Some(Self::Builtin)
        } else {
            Version::parse(s).ok().map(Self::Bundle)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_native_versions() {
        let v = |s: &str| normalize_native_version(s).map(|v| v.to_string());
        assert_eq!(v("1.0").as_deref(), Some("1.0.0"));
        assert_eq!(v("2").as_deref(), Some("2.0.0"));
        assert_eq!(v("1.2.3").as_deref(), Some("1.2.3"));
        assert_eq!(v("1.2-beta.1").as_deref(), Some("1.2.0-beta.1"));
        assert_eq!(v("1+77").as_deref(), Some("1.0.0+77"));
        assert_eq!(v("builtin").as_deref(), Some("0.0.0"));
        assert_eq!(v("unknown").as_deref(), Some("0.0.0"));
        for bad in ["", "x", "1.2.3.4", "1..2", "01.2.3", "1.2.3 (45)", "v1.2.3"] {
            assert_eq!(v(bad), None, "{bad}");
        }
    }

    #[test]
    fn release_versions() {
        assert_eq!(
            ReleaseVersion::parse("builtin"),
            Some(ReleaseVersion::Builtin)
        );
        assert_eq!(
            ReleaseVersion::parse("1.0.3"),
            Some(ReleaseVersion::Bundle(Version::new(1, 0, 3)))
        );
        assert_eq!(
            ReleaseVersion::parse("1.0"),
            None,
            "release versions are strict semver"
        );
    }
}
