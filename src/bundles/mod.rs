//! Where bundle zips live and how devices get them: an object store (S3 or a local folder) and
//! a signer that hands out expiring download URLs.

pub mod delta_files;
pub mod file_urls;
pub mod local;
pub mod manifests;
pub mod s3;
pub mod zip_layout;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

/// A bundle store failure; the detail is for logs and operators, never for devices.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("the bundle store is unavailable: {0}")]
    Unavailable(String),
    #[error("the stored object {key} does not match what was uploaded ({why})")]
    Mismatch { key: String, why: String },
    #[error("invalid bundle key {0:?}")]
    InvalidKey(String),
}

/// Reads a stored object whole (manifests: small, read once per cache period).
#[async_trait]
pub trait ObjectReader: Send + Sync {
    /// The object's bytes, `None` when nothing is stored under `key`.
    async fn get_object(&self, key: &str) -> Result<Option<Vec<u8>>, BundleError>;
}

/// Uploads bundle objects (operators only).
#[async_trait]
pub trait BundleStore: ObjectReader {
    /// Stores `bytes` under `key`, then reads back its size and SHA-256 to prove it landed whole.
    async fn put_verified(
        &self,
        key: &str,
        bytes: &[u8],
        sha256_hex: &str,
    ) -> Result<(), BundleError>;
    /// True when an object is stored under `key` (rollback and promote refuse missing ones).
    async fn exists(&self, key: &str) -> Result<bool, BundleError>;
    /// Removes the object under `key` (a missing one is not an error).
    async fn delete(&self, key: &str) -> Result<(), BundleError>;
}

/// Makes the `url` of an update answer for a stored bundle.
#[async_trait]
pub trait UrlSigner: Send + Sync {
    /// An expiring GET URL for `key`. `origin` is how the device reached this server
    /// (`http://10.0.2.2:8080`), for signers that serve bundles themselves.
    async fn download_url(&self, key: &str, origin: &str) -> Result<String, BundleError>;
}

/// SHA-256 as the plugin compares it: lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The object key of a bundle: content-addressed, so an upload can never overwrite the bytes a
/// live release points at.
pub fn bundle_key(app_id: &str, version: &str, sha256_hex: &str) -> String {
    format!("{app_id}/{version}/{sha256_hex}.zip")
}

/// Keys are `/`-separated segments of URL-safe characters, with no `.`/`..` segment.
pub fn is_valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 512
        && key.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        let k = bundle_key("com.example.app", "1.0.3+build.5", &"a".repeat(64));
        assert!(is_valid_key(&k));
        for bad in [
            "",
            "../x",
            "a//b",
            "a/./b",
            "/a",
            "a/b c",
            "a\\b",
            "a/%2e%2e/b",
        ] {
            assert!(!is_valid_key(bad), "{bad}");
        }
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
