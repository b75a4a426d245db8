//! Bundles on the laptop: zips under `<data>/bundles/`, served by `updraft serve` at
//! `/bundles/<key>?expires=…&signature=…`. The signature is an HMAC over the key and expiry
//! with a secret kept in the data folder, so a URL works only for its key and its lifetime,
//! like an S3 presigned URL.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;

use async_trait::async_trait;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::bundles::{BundleError, BundleStore, ObjectReader, UrlSigner, is_valid_key, sha256_hex};

type HmacSha256 = Hmac<Sha256>;

/// A folder of bundles and the secret that signs their URLs.
#[derive(Clone)]
pub struct LocalBundles {
    root: PathBuf,
    secret: [u8; 32],
    ttl: Duration,
    clock: Arc<dyn Clock>,
}

/// Why a bundle URL is refused (all HTTP 403, except a missing file).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefusal {
    #[error("this download URL is not signed")]
    Unsigned,
    #[error("this download URL has expired")]
    Expired,
    #[error("this download URL's signature is not valid")]
    BadSignature,
}

fn unavailable(e: impl std::fmt::Display) -> BundleError {
    BundleError::Unavailable(e.to_string())
}

impl LocalBundles {
    /// Opens `<data>/bundles`, creating the signing secret (`<data>/url-secret`, mode 0600) once.
    pub fn open(data_dir: &Path, ttl: Duration) -> Result<Self, BundleError> {
        crate::store::embedded::files::private_dir(data_dir)
            .map_err(|e| unavailable(format!("{}: {e}", data_dir.display())))?;
        let root = data_dir.join("bundles");
        std::fs::create_dir_all(&root).map_err(unavailable)?;
        let secret = load_or_create_secret(&data_dir.join("url-secret"))?;
        Ok(LocalBundles {
            root,
            secret,
            ttl,
            clock: crate::clock::system(),
        })
    }

    /// The file behind a key, if the key is well-formed.
    pub fn path_of(&self, key: &str) -> Option<PathBuf> {
        is_valid_key(key).then(|| self.root.join(key))
    }

    /// The file behind a key if it is a regular file reached without any symbolic link (the
    /// bundles folder included): a link planted in the folder never leads a download outside.
    pub fn regular_file(&self, key: &str) -> Option<PathBuf> {
        let path = self.path_of(key)?;
        let mut at = self.root.clone();
        if !std::fs::symlink_metadata(&at).ok()?.is_dir() {
            return None;
        }
        let segments: Vec<&str> = key.split('/').collect();
        for (i, seg) in segments.iter().enumerate() {
            at.push(seg);
            let meta = std::fs::symlink_metadata(&at).ok()?;
            let last = i + 1 == segments.len();
            if (last && !meta.file_type().is_file()) || (!last && !meta.file_type().is_dir()) {
                return None;
            }
        }
        Some(path)
    }

    /// How long a signed URL stays valid.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The URL-signing secret, also used for the short delta-file URLs.
    pub fn secret(&self) -> [u8; 32] {
        self.secret
    }

    fn mac(&self, key: &str, expires: u64) -> HmacSha256 {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.secret)
            .expect("HMAC takes any key length");
        mac.update(b"GET\n");
        mac.update(key.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    /// The query string that makes a URL for `key` valid until `expires` (unix seconds).
    pub fn sign(&self, key: &str, expires: u64) -> String {
        let sig = hex::encode(self.mac(key, expires).finalize().into_bytes());
        format!("expires={expires}&signature={sig}")
    }

    /// Checks a request's `expires` and `signature` for `key`, in constant time.
    pub fn verify(
        &self,
        key: &str,
        expires: Option<&str>,
        signature: Option<&str>,
    ) -> Result<(), UrlRefusal> {
        let (Some(expires), Some(signature)) = (expires, signature) else {
            return Err(UrlRefusal::Unsigned);
        };
        let expires: u64 = expires.parse().map_err(|_| UrlRefusal::BadSignature)?;
        let sig = hex::decode(signature).map_err(|_| UrlRefusal::BadSignature)?;
        self.mac(key, expires)
            .verify_slice(&sig)
            .map_err(|_| UrlRefusal::BadSignature)?;
        if expires < self.clock.now() {
            return Err(UrlRefusal::Expired);
        }
        Ok(())
    }
}

fn load_or_create_secret(path: &Path) -> Result<[u8; 32], BundleError> {
    let parse = |text: &str| -> Option<[u8; 32]> { hex::decode(text.trim()).ok()?.try_into().ok() };
    if let Ok(text) = std::fs::read_to_string(path) {
        return parse(&text)
            .ok_or_else(|| unavailable(format!("{} is not a 64-hex secret", path.display())));
    }
    let secret: [u8; 32] = rand::random();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(path) {
        Ok(mut f) => {
            f.write_all(hex::encode(secret).as_bytes())
                .and_then(|_| f.sync_all())
                .map_err(unavailable)?;
            Ok(secret)
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(path).map_err(unavailable)?;
            parse(&text)
                .ok_or_else(|| unavailable(format!("{} is not a 64-hex secret", path.display())))
        }
        Err(e) => Err(unavailable(format!("{}: {e}", path.display()))),
    }
}

#[async_trait]
impl UrlSigner for LocalBundles {
    async fn download_url(&self, key: &str, origin: &str) -> Result<String, BundleError> {
        if !is_valid_key(key) {
            return Err(BundleError::InvalidKey(key.to_owned()));
        }
        let expires = self.clock.now() + self.ttl.as_secs();
        Ok(format!(
            "{origin}/bundles/{key}?{}",
            self.sign(key, expires)
        ))
    }
}

#[async_trait]
impl ObjectReader for LocalBundles {
    async fn get_object(&self, key: &str) -> Result<Option<Vec<u8>>, BundleError> {
        let Some(path) = self.regular_file(key) else {
            if !is_valid_key(key) {
                return Err(BundleError::InvalidKey(key.to_owned()));
            }
            return Ok(None);
        };
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }
}

#[async_trait]
impl BundleStore for LocalBundles {
    async fn put_verified(&self, key: &str, bytes: &[u8], sha256: &str) -> Result<(), BundleError> {
        let path = self
            .path_of(key)
            .ok_or_else(|| BundleError::InvalidKey(key.to_owned()))?;
        let dir = path.parent().expect("a key has a file name").to_path_buf();
        std::fs::create_dir_all(&dir).map_err(unavailable)?;
        // Write beside, sync, then rename: a reader never sees a half-written zip.
        let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(unavailable)?;
        tmp.write_all(bytes)
            .and_then(|_| tmp.as_file().sync_all())
            .map_err(unavailable)?;
        tmp.persist(&path).map_err(unavailable)?;
        let stored = std::fs::read(&path).map_err(unavailable)?;
        if stored.len() != bytes.len() || sha256_hex(&stored) != sha256 {
            return Err(BundleError::Mismatch {
                key: key.to_owned(),
                why: "size or sha256 differs".into(),
            });
        }
        Ok(())
    }

    async fn exists(&self, key: &str) -> Result<bool, BundleError> {
        let path = self
            .path_of(key)
            .ok_or_else(|| BundleError::InvalidKey(key.to_owned()))?;
        Ok(path.is_file())
    }

    async fn delete(&self, key: &str) -> Result<(), BundleError> {
        let path = self
            .path_of(key)
            .ok_or_else(|| BundleError::InvalidKey(key.to_owned()))?;
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(unavailable(e)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn signed_urls_verify_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBundles::open(dir.path(), Duration::from_secs(60)).unwrap();
        let url = b
            .download_url("com.example.app/1.0.0/x.zip", "http://h:1")
            .await
            .unwrap();
        let query = url.split_once('?').unwrap().1;
        let (e, s) = query.split_once('&').unwrap();
        let e = e.strip_prefix("expires=").unwrap();
        let s = s.strip_prefix("signature=").unwrap();
        assert_eq!(
            b.verify("com.example.app/1.0.0/x.zip", Some(e), Some(s)),
            Ok(())
        );
        assert_eq!(
            b.verify("com.example.app/1.0.0/y.zip", Some(e), Some(s)),
            Err(UrlRefusal::BadSignature)
        );
        let later = (e.parse::<u64>().unwrap() + 1000).to_string();
        assert_eq!(
            b.verify("com.example.app/1.0.0/x.zip", Some(&later), Some(s)),
            Err(UrlRefusal::BadSignature)
        );
        assert_eq!(
            b.verify("com.example.app/1.0.0/x.zip", None, Some(s)),
            Err(UrlRefusal::Unsigned)
        );
        let past = crate::clock::SystemClock.now() - 5;
        let q = b.sign("k", past);
        let sig = q.split_once("signature=").unwrap().1;
        assert_eq!(
            b.verify("k", Some(&past.to_string()), Some(sig)),
            Err(UrlRefusal::Expired)
        );
        // The secret persists: a second opener signs the same way.
        let again = LocalBundles::open(dir.path(), Duration::from_secs(60)).unwrap();
        assert_eq!(again.sign("k", 5), b.sign("k", 5));
    }

    #[tokio::test]
    async fn put_is_atomic_and_verified() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBundles::open(dir.path(), Duration::from_secs(60)).unwrap();
        let sum = sha256_hex(b"zip");
        b.put_verified("a.b/1.0.0/z.zip", b"zip", &sum)
            .await
            .unwrap();
        assert_eq!(
            std::fs::read(b.path_of("a.b/1.0.0/z.zip").unwrap()).unwrap(),
            b"zip"
        );
        assert!(matches!(
            b.put_verified("a.b/1.0.0/z.zip", b"zip", &"0".repeat(64))
                .await,
            Err(BundleError::Mismatch { .. })
        ));
        assert!(matches!(
            b.put_verified("../evil", b"zip", &sum).await,
            Err(BundleError::InvalidKey(_))
        ));
    }
}
