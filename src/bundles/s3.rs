//! Bundles in S3 (`UPDRAFT_BUCKET`): operators upload zips, devices download them straight from
//! S3 through presigned GET URLs, so bundle bytes never pass through Lambda.

use std::io::IsTerminal;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;

use crate::bundles::{BundleError, BundleStore, ObjectReader, UrlSigner, is_valid_key};

/// Zips at least this large go up in parts: a failed part is retried alone, not the whole zip.
pub const MULTIPART_THRESHOLD: usize = 16 * 1024 * 1024;
/// Size of each part but the last (S3 needs at least 5 MiB).
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts in flight at once: enough to fill an uplink, few enough to keep memory bounded.
const PARTS_IN_FLIGHT: usize = 4;

/// Zips as zips, manifests as JSON, delta files as bytes (their type is not the plugin's concern).
fn content_type(key: &str) -> &'static str {
    if key.ends_with(".zip") {
        "application/zip"
    } else if key.ends_with(".json") {
        "application/json"
    } else {
        "application/octet-stream"
    }
}

/// A bucket of bundle zips and the lifetime of the download URLs handed to devices.
#[derive(Debug, Clone)]
pub struct S3Bundles {
    client: Client,
    bucket: String,
    ttl: Duration,
    quiet: bool,
}

fn unavailable(what: &str, e: impl std::error::Error) -> BundleError {
    BundleError::Unavailable(format!("S3 {what}: {}", DisplayErrorContext(e)))
}

impl S3Bundles {
    /// `ttl` is how long a download URL stays valid (at most 7 days, SigV4's limit).
    pub fn new(client: Client, bucket: impl Into<String>, ttl: Duration) -> Self {
        S3Bundles {
            client,
            bucket: bucket.into(),
            ttl,
            quiet: false,
        }
    }

    /// No progress bar (for `--json` output and scripts).
    pub fn quiet(mut self, quiet: bool) -> Self {
        self.quiet = quiet;
        self
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn progress(&self, key: &str, len: u64) -> ProgressBar {
        if self.quiet || !std::io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let style = ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr())
            .with_style(style)
            .with_message(format!("uploading {key}"))
    }

    async fn put_whole(&self, key: &str, bytes: &[u8]) -> Result<(), BundleError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type(key))
            .content_length(bytes.len() as i64)
            .body(ByteStream::from(bytes.to_vec()))
            .send()
            .await
            .map_err(|e| unavailable("PutObject", e))?;
        Ok(())
    }

    /// Multipart upload; any failure aborts it, so no invisible parts stay billed.
    async fn put_multipart(
        &self,
        key: &str,
        bytes: &[u8],
        bar: &ProgressBar,
    ) -> Result<(), BundleError> {
        let upload_id = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type(key))
            .send()
            .await
            .map_err(|e| unavailable("CreateMultipartUpload", e))?
            .upload_id
            .ok_or_else(|| {
                BundleError::Unavailable("S3 CreateMultipartUpload returned no upload id".into())
            })?;
        let result = self.upload_parts(key, &upload_id, bytes, bar).await;
        let result = match result {
            Ok(parts) => self
                .client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map(|_| ())
                .map_err(|e| unavailable("CompleteMultipartUpload", e)),
            Err(e) => Err(e),
        };
        if result.is_err() {
            let aborted = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
            if let Err(e) = aborted {
                tracing::warn!(
                    bucket = %self.bucket, key, upload_id,
                    error = %DisplayErrorContext(e),
                    "could not abort the multipart upload; a bucket lifecycle rule will have to"
                );
            }
        }
        result
    }

    async fn upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        bytes: &[u8],
        bar: &ProgressBar,
    ) -> Result<Vec<CompletedPart>, BundleError> {
        let mut chunks = bytes.chunks(PART_SIZE).zip(1i32..);
        let mut in_flight = JoinSet::new();
        let mut done = Vec::new();
        loop {
            while in_flight.len() < PARTS_IN_FLIGHT {
                let Some((chunk, number)) = chunks.next() else {
                    break;
                };
                let request = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(number)
                    .content_length(chunk.len() as i64)
                    .body(ByteStream::from(chunk.to_vec()));
                let len = chunk.len() as u64;
                in_flight.spawn(async move { (number, len, request.send().await) });
            }
            // Dropping the set on error cancels the other parts before the abort.
            let Some(joined) = in_flight.join_next().await else {
                break;
            };
            let (number, len, sent) =
                joined.map_err(|e| BundleError::Unavailable(format!("S3 UploadPart task: {e}")))?;
            let out = sent.map_err(|e| unavailable(&format!("UploadPart {number}"), e))?;
            let etag = out.e_tag.ok_or_else(|| {
                BundleError::Unavailable(format!("S3 UploadPart {number} returned no ETag"))
            })?;
            done.push(
                CompletedPart::builder()
                    .part_number(number)
                    .e_tag(etag)
                    .build(),
            );
            bar.inc(len);
        }
        done.sort_by_key(|p| p.part_number);
        Ok(done)
    }

    /// Reads the object back: its size and SHA-256 must be what was uploaded.
    async fn verify(&self, key: &str, len: usize, sha256_hex: &str) -> Result<(), BundleError> {
        let mismatch = |why: String| BundleError::Mismatch {
            key: key.to_owned(),
            why,
        };
        let head = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| unavailable("HeadObject", e))?;
        if head.content_length != Some(len as i64) {
            return Err(mismatch(format!(
                "size {:?}, uploaded {len}",
                head.content_length
            )));
        }
        let mut body = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| unavailable("GetObject", e))?
            .body;
        let mut hasher = Sha256::new();
        let mut read = 0usize;
        while let Some(chunk) = body
            .try_next()
            .await
            .map_err(|e| unavailable("GetObject body", e))?
        {
            read += chunk.len();
            hasher.update(&chunk);
        }
        let stored = hex::encode(hasher.finalize());
        if read != len {
            return Err(mismatch(format!("read back {read} bytes, uploaded {len}")));
        }
        if stored != sha256_hex {
            return Err(mismatch(format!("sha256 {stored}, expected {sha256_hex}")));
        }
        Ok(())
    }
}

#[async_trait]
impl UrlSigner for S3Bundles {
    /// A presigned GET; `origin` is unused because devices download from S3 directly.
    async fn download_url(&self, key: &str, _origin: &str) -> Result<String, BundleError> {
        if !is_valid_key(key) {
            return Err(BundleError::InvalidKey(key.to_owned()));
        }
        let presigning = PresigningConfig::expires_in(self.ttl)
            .map_err(|e| BundleError::Unavailable(format!("URL lifetime: {e}")))?;
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(presigning)
            .await
            .map_err(|e| unavailable("presign GetObject", e))?;
        Ok(request.uri().to_owned())
    }
}

#[async_trait]
impl ObjectReader for S3Bundles {
    async fn get_object(&self, key: &str) -> Result<Option<Vec<u8>>, BundleError> {
        if !is_valid_key(key) {
            return Err(BundleError::InvalidKey(key.to_owned()));
        }
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|se| se.is_no_such_key()) => {
                return Ok(None);
            }
            Err(e) => return Err(unavailable("GetObject", e)),
        };
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| unavailable("GetObject body", e))?;
        Ok(Some(bytes.to_vec()))
    }
}

#[async_trait]
impl BundleStore for S3Bundles {
    async fn put_verified(
        &self,
        key: &str,
        bytes: &[u8],
        sha256_hex: &str,
    ) -> Result<(), BundleError> {
        if !is_valid_key(key) {
            return Err(BundleError::InvalidKey(key.to_owned()));
        }
        let bar = self.progress(key, bytes.len() as u64);
        let uploaded = if bytes.len() < MULTIPART_THRESHOLD {
            self.put_whole(key, bytes)
                .await
                .inspect(|_| bar.set_position(bytes.len() as u64))
        } else {
            self.put_multipart(key, bytes, &bar).await
        };
        match uploaded {
            Ok(()) => bar.finish_and_clear(),
            Err(e) => {
                bar.abandon();
                return Err(e);
            }
        }
        self.verify(key, bytes.len(), sha256_hex).await
    }

    async fn exists(&self, key: &str) -> Result<bool, BundleError> {
        if !is_valid_key(key) {
            return Err(BundleError::InvalidKey(key.to_owned()));
        }
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|se| se.is_not_found()) => Ok(false),
            Err(e) => Err(unavailable("HeadObject", e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), BundleError> {
        if !is_valid_key(key) {
            return Err(BundleError::InvalidKey(key.to_owned()));
        }
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| unavailable("DeleteObject", e))?;
        Ok(())
    }
}
