//! Delta updates (protocol.md §4): the manifest of a bundle, one entry per file, stored as an
//! object beside the zip (a 3,000-file manifest is over DynamoDB's 400 KB item limit), and the
//! plugin versions that understand it.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

/// One file of a bundle as stored: what the plugin gets (`file_name`, `file_hash`) and where
/// its bytes are (`key`, `size` stored bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Path under the web root; ends in `.br` when the stored body is Brotli (the plugin
    /// decompresses it and writes the file without `.br`).
    pub file_name: String,
    /// SHA-256 (lowercase hex) of the final file, after Brotli decoding.
    pub file_hash: String,
    /// Object key of the stored body (content-addressed: `<app>/files/<sha256>[.br]`).
    pub key: String,
    /// Stored (downloaded) bytes.
    pub size: u64,
}

/// The manifest object: `{"files":[…]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub files: Vec<ManifestFile>,
}

impl Manifest {
    /// Bytes a device holding `previous`'s files downloads for this bundle: the stored size of
    /// every file whose hash `previous` lacks (the plugin skips a file whose SHA-256 it has).
    pub fn download_bytes_from(&self, previous: Option<&Manifest>) -> u64 {
        let held: HashSet<&str> = previous
            .map(|p| p.files.iter().map(|f| f.file_hash.as_str()).collect())
            .unwrap_or_default();
        self.files
            .iter()
            .filter(|f| !held.contains(f.file_hash.as_str()))
            .map(|f| f.size)
            .sum()
    }

    /// Sum of the stored sizes of all files.
    pub fn stored_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// Object key of a stored file: its SHA-256, with `.br` when the body is Brotli.
pub fn file_key(app_id: &str, sha256_hex: &str, brotli: bool) -> String {
    format!(
        "{app_id}/files/{sha256_hex}{}",
        if brotli { ".br" } else { "" }
    )
}

/// Object key of a bundle's manifest, beside its zip.
pub fn manifest_key(app_id: &str, version: &str, zip_sha256: &str) -> String {
    format!("{app_id}/{version}/{zip_sha256}.manifest.json")
}

/// Capgo's gate for manifest downloads: 5.10.0, 6.25.0, 7.0.35 or 8.0.0 and up on each major
/// line; older plugins (and unparsable versions) get the zip only.
pub fn plugin_supports_manifest(plugin_version: Option<&str>) -> bool {
    let Some(v) = plugin_version.and_then(|v| semver::Version::parse(v.trim()).ok()) else {
        return false;
    };
    let floor = match v.major {
        0..=4 => return false,
        5 => (10, 0),
        6 => (25, 0),
        7 => (0, 35),
        _ => return true,
    };
    (v.minor, v.patch) >= floor
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capgo_gate_per_major() {
        for yes in [
            "5.10.0", "5.11.3", "6.25.0", "6.30.1", "7.0.35", "7.1.0", "8.0.0", "8.51.23", "9.0.0",
        ] {
            assert!(plugin_supports_manifest(Some(yes)), "{yes}");
        }
        for no in [
            "4.99.0", "5.9.9", "6.24.9", "7.0.34", "7.0.0", "garbage", "", "8", "8.0.0-",
        ] {
            assert!(!plugin_supports_manifest(Some(no)), "{no}");
        }
        assert!(!plugin_supports_manifest(None));
        // Prereleases of a supported version count as that line.
        assert!(plugin_supports_manifest(Some("8.0.0-beta.1")));
    }

    fn f(name: &str, hash: &str, size: u64) -> ManifestFile {
        ManifestFile {
            file_name: name.into(),
            file_hash: hash.into(),
            key: file_key("a.b", hash, false),
            size,
        }
    }

    #[test]
    fn download_bytes_count_only_missing_hashes() {
        let v1 = Manifest {
            files: vec![f("index.html", "aa", 10), f("a.js", "bb", 20)],
        };
        let v2 = Manifest {
            files: vec![
                f("index.html", "aa", 10),
                f("a.js", "cc", 25),
                f("b.js", "bb", 20),
            ],
        };
        assert_eq!(v2.download_bytes_from(Some(&v1)), 25);
        assert_eq!(v2.download_bytes_from(None), 55);
        assert_eq!(v2.stored_bytes(), 55);
        assert_eq!(file_key("a.b", "ff", true), "a.b/files/ff.br");
    }
}
