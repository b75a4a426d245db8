//! Short download URLs for delta files: `<origin>/f/<app>/<sha256>[.br]?e=<expiry>&s=<sig>`,
//! signed with a truncated HMAC. A presigned S3 URL signed with Lambda's role credentials
//! carries a ~1 KB session token; thousands of those make an answer bigger than the changed
//! files. The `/f/` route checks the signature, then serves the file (locally) or redirects to
//! a presigned object (on AWS).

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::bundles::is_valid_key;
use crate::bundles::local::UrlRefusal;

type HmacSha256 = Hmac<Sha256>;

/// Signature bytes kept: 128 bits, 22 characters of base64url.
const SIG_BYTES: usize = 16;
/// Expiries are rounded up to this step, so the answers of a few minutes share one value.
const EXPIRY_STEP: u64 = 300;
/// The route prefix.
pub const ROUTE_PREFIX: &str = "/f/";

/// Signs and checks delta-file URLs.
#[derive(Clone)]
pub struct FileUrls {
    key: [u8; 32],
    ttl: Duration,
    clock: Arc<dyn Clock>,
}

/// `<app>/<name>` of the route ↔ the object key `<app>/files/<name>`: only delta files are
/// reachable through it, never zips or manifests.
pub fn object_key(route_path: &str) -> Option<String> {
    let (app, name) = route_path.split_once('/')?;
    let key = format!("{app}/files/{name}");
    (!name.contains('/') && is_valid_key(&key)).then_some(key)
}

impl FileUrls {
    /// `secret`: any bytes kept private (hashed into the HMAC key). `ttl`: URL lifetime.
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        FileUrls {
            key: Sha256::digest(secret).into(),
            ttl,
            clock: crate::clock::system(),
        }
    }

    /// The same signer, with `clock` for expiries.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The expiry every URL signed now carries.
    pub fn expiry(&self) -> u64 {
        (self.clock.now() + self.ttl.as_secs()).div_ceil(EXPIRY_STEP) * EXPIRY_STEP
    }

    fn mac(&self, key: &str, expires: u64) -> HmacSha256 {
        let mut mac =
            <HmacSha256 as KeyInit>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(b"file\n");
        mac.update(key.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    /// The URL of the object `key` (`<app>/files/<name>`), valid until `expires`; `None` for a
    /// key outside the files namespace.
    pub fn url(&self, origin: &str, key: &str, expires: u64) -> Option<String> {
        let (app, name) = key.split_once("/files/")?;
        let sig = self.mac(key, expires).finalize().into_bytes();
        Some(format!(
            "{origin}{ROUTE_PREFIX}{app}/{name}?e={expires}&s={}",
            URL_SAFE_NO_PAD.encode(&sig[..SIG_BYTES])
        ))
    }

    /// Checks `e` and `s` of a request for `key`, in constant time.
    pub fn verify(&self, key: &str, e: Option<&str>, s: Option<&str>) -> Result<(), UrlRefusal> {
        let (Some(e), Some(s)) = (e, s) else {
            return Err(UrlRefusal::Unsigned);
        };
        let expires: u64 = e.parse().map_err(|_| UrlRefusal::BadSignature)?;
        let sig = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| UrlRefusal::BadSignature)?;
        if sig.len() != SIG_BYTES {
            return Err(UrlRefusal::BadSignature);
        }
        self.mac(key, expires)
            .verify_truncated_left(&sig)
            .map_err(|_| UrlRefusal::BadSignature)?;
        if expires < self.clock.now() {
            return Err(UrlRefusal::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(url: &str) -> (String, String, String) {
        let (path, q) = url.split_once('?').unwrap();
        let route = path.split_once(ROUTE_PREFIX).unwrap().1;
        let (e, s) = q.split_once('&').unwrap();
        (
            object_key(route).unwrap(),
            e.strip_prefix("e=").unwrap().into(),
            s.strip_prefix("s=").unwrap().into(),
        )
    }

    #[test]
    fn short_urls_verify_for_their_key_and_lifetime_only() {
        let urls = FileUrls::new(b"secret", Duration::from_secs(600));
        let key = format!("com.example.app/files/{}.br", "a".repeat(64));
        let exp = urls.expiry();
        assert!(exp >= crate::clock::SystemClock.now() + 600 && exp.is_multiple_of(EXPIRY_STEP));
        let url = urls.url("https://h", &key, exp).unwrap();
        assert!(url.len() < 140, "{url}");
        let (k, e, s) = parts(&url);
        assert_eq!(k, key);
        assert_eq!(urls.verify(&k, Some(&e), Some(&s)), Ok(()));
        let other = format!("com.example.app/files/{}", "b".repeat(64));
        assert_eq!(
            urls.verify(&other, Some(&e), Some(&s)),
            Err(UrlRefusal::BadSignature)
        );
        let later = (exp + 300).to_string();
        assert_eq!(
            urls.verify(&k, Some(&later), Some(&s)),
            Err(UrlRefusal::BadSignature)
        );
        assert_eq!(urls.verify(&k, Some(&e), None), Err(UrlRefusal::Unsigned));
        let other_secret = FileUrls::new(b"other", Duration::from_secs(600));
        assert_eq!(
            other_secret.verify(&k, Some(&e), Some(&s)),
            Err(UrlRefusal::BadSignature)
        );
        let past = crate::clock::SystemClock.now() - 1;
        let (_, e, s) = parts(&urls.url("https://h", &key, past).unwrap());
        assert_eq!(
            urls.verify(&k, Some(&e), Some(&s)),
            Err(UrlRefusal::Expired)
        );
        // Only delta files: never a zip or a manifest.
        assert_eq!(object_key("com.example.app/1.0.0/x.zip"), None);
        assert_eq!(object_key("com.example.app/../x"), None);
        assert!(
            urls.url("https://h", "com.example.app/1.0.0/x.zip", exp)
                .is_none()
        );
    }
}
