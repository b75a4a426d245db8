//! `updraft release`: check a bundle, upload it, then point a channel at it. The object and
//! the bundle item are written before the release item, so a release that fails half-way
//! changes nothing devices see; a version is never re-released with different bytes.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::bundles::delta_files::prepare_files;
use crate::bundles::zip_layout::{LayoutError, check_layout, zip_folder};
use crate::bundles::{BundleError, BundleStore, bundle_key, sha256_hex};
use crate::domain::history::{HistoryAction, HistoryEntry, revision_of};
use crate::domain::item::{Item, ItemExt, attr};
use crate::domain::keys::{APP_SK, Target, bundle_sk, is_valid_channel, release_sk};
use crate::domain::manifest::{Manifest, manifest_key};
use crate::domain::policy::keep_policy;
use crate::domain::protocol::is_valid_app_id;
use crate::domain::release::{Gate, Release, is_sha256_hex};
use crate::domain::version::ReleaseVersion;
use crate::ops::OperatorStores;
use crate::ops::change::{EntryOf, change_item, entry};
use crate::store::{ItemWriter, StoreError};

/// Where the bundle comes from.
#[derive(Debug, Clone)]
pub enum BundleSource {
    /// A built web folder, zipped here.
    Dir(PathBuf),
    /// A zip made elsewhere (e.g. `capgo bundle zip`, or `capgo bundle encrypt`).
    Zip(PathBuf),
    /// A zip hosted elsewhere, served as is.
    ExternalUrl(String),
    /// Nothing to download: a `builtin` release.
    None,
}

/// Values the Capgo CLI printed for an encrypted zip (`bundle encrypt --json`).
#[derive(Debug, Clone, Default)]
pub struct Encryption {
    pub session_key: String,
    pub key_id: Option<String>,
}

impl Encryption {
    /// Sets `session_key` (and `key_id`) on a release or bundle item.
    fn write(&self, item: &mut Item) {
        item.set_text(attr::SESSION_KEY, &self.session_key);
        if let Some(k) = &self.key_id {
            item.set_text(attr::KEY_ID, k);
        }
    }
}

/// Everything `updraft release` was asked to do.
#[derive(Debug, Clone)]
pub struct ReleaseSpec {
    pub app_id: String,
    pub version: String,
    pub channel: String,
    pub target: Target,
    pub source: BundleSource,
    /// The checksum to serve: required for encrypted zips and external URLs; for a plain zip,
    /// it must equal the computed SHA-256.
    pub checksum: Option<String>,
    pub encryption: Option<Encryption>,
    /// Policy attributes of the release item (`disable_auto_update`, `allow_*`, `link`, …).
    pub policy: Item,
    /// Refuse bundles in which no code calls `notifyAppReady()`.
    pub code_check: bool,
    /// Write only if the release item is still at this revision (`--expect-revision`).
    pub expect_revision: Option<u64>,
    /// Delta (manifest) updates for this release; `None` takes the app's `delta` (default on).
    pub delta: Option<bool>,
    /// Start a staged rollout of this version next to what the channel serves (`--rollout`).
    pub rollout: Option<RolloutSpec>,
}

/// A staged rollout to start: its share and its gate.
#[derive(Debug, Clone)]
pub struct RolloutSpec {
    pub basis_points: u32,
    pub gate: Gate,
}

/// What was released, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Published {
    pub app_id: String,
    pub version: String,
    pub channel: String,
    pub platform: Target,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bundle: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// True when this exact bundle had been uploaded before and was reused.
    pub reused_bundle: bool,
    /// The version the channel served there before, if any.
    pub previous_version: Option<String>,
    /// Policy attributes kept from the release item this one replaced, as `name=value`.
    pub kept_policy: Vec<String>,
    /// The release item's revision after this release.
    pub revision: u64,
    /// Object key of the bundle's manifest when devices get delta updates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    /// Files in the manifest, and how many of them were new to the store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files_uploaded: Option<u64>,
    /// The rollout this release started (`--rollout`), as history describes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<String>,
}

impl fmt::Display for Published {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match (&self.bundle, &self.url) {
            (Some(b), _) => format!(
                "bundle {b} ({} bytes, sha256 {})",
                self.size.unwrap_or(0),
                self.checksum.as_deref().unwrap_or("")
            ),
            (_, Some(u)) => format!("external zip {u}"),
            _ => "a reset to the builtin assets".to_owned(),
        };
        let reused = if self.reused_bundle {
            " (bundle already uploaded, reused)"
        } else {
            ""
        };
        write!(
            f,
            "Released {} {} to channel {} on {}: {what}{reused}.",
            self.app_id, self.version, self.channel, self.platform
        )?;
        if let Some(prev) = &self.previous_version {
            write!(f, " It served {prev} before.")?;
        }
        if !self.kept_policy.is_empty() {
            write!(
                f,
                " Kept the channel's policy: {}.",
                self.kept_policy.join(", ")
            )?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("{0}")]
    Invalid(String),
    #[error("the bundle is not valid: {0}")]
    Layout(#[from] LayoutError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("cannot read {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error(transparent)]
    Change(anyhow::Error),
}

fn invalid(msg: impl Into<String>) -> ReleaseError {
    ReleaseError::Invalid(msg.into())
}

/// Releases a bundle: see the module docs for the order of writes.
pub async fn publish(
    stores: &OperatorStores,
    spec: ReleaseSpec,
) -> Result<Published, ReleaseError> {
    if !is_valid_app_id(&spec.app_id) {
        return Err(invalid(format!(
            "{:?} is not a reverse-domain app id such as com.example.app",
            spec.app_id
        )));
    }
    if !is_valid_channel(&spec.channel) {
        return Err(invalid(format!(
            "{:?} is not a valid channel name (letters, digits, . _ -)",
            spec.channel
        )));
    }
    let version = ReleaseVersion::parse(&spec.version).ok_or_else(|| {
        invalid(format!(
            "{:?} is not a semantic version (such as 1.0.3) or builtin",
            spec.version
        ))
    })?;

    let mut release = spec.policy.clone();
    release.set_text(attr::VERSION, &spec.version);
    release.set_whole(attr::RELEASED_AT, stores.clock.now());
    let mut published = Published {
        app_id: spec.app_id.clone(),
        version: spec.version.clone(),
        channel: spec.channel.clone(),
        platform: spec.target,
        bundle: None,
        url: None,
        checksum: None,
        size: None,
        reused_bundle: false,
        previous_version: None,
        kept_policy: Vec::new(),
        revision: 0,
        manifest: None,
        files: None,
        files_uploaded: None,
        rollout: None,
    };

    match (&version, &spec.source) {
        (ReleaseVersion::Builtin, BundleSource::None) => {}
        (ReleaseVersion::Builtin, _) => {
            return Err(invalid(
                "a builtin release takes no bundle (drop --dir/--zip/--url)",
            ));
        }
        (ReleaseVersion::Bundle(_), BundleSource::None) => {
            return Err(invalid("a bundle is required: pass --dir, --zip or --url"));
        }
        (ReleaseVersion::Bundle(_), BundleSource::ExternalUrl(url)) => {
            let checksum = spec
                .checksum
                .clone()
                .ok_or_else(|| invalid("--url needs --checksum"))?;
            release.set_text(attr::URL, url);
            release.set_text(attr::CHECKSUM, &checksum);
            published.url = Some(url.clone());
            published.checksum = Some(checksum);
        }
        (ReleaseVersion::Bundle(_), BundleSource::Dir(_) | BundleSource::Zip(_)) => {
            upload_zip(stores, &spec, &mut release, &mut published).await?;
        }
    }
    point_channel(stores, &spec, release, published).await
}

/// The channel's item now serves `release`: written with its history entry (or a rollout's
/// start), keeping the channel's policy.
async fn point_channel(
    stores: &OperatorStores,
    spec: &ReleaseSpec,
    mut release: Item,
    mut published: Published,
) -> Result<Published, ReleaseError> {
    // Policy belongs to the channel: keep what the replaced item set, unless a flag sets it.
    let sk = release_sk(&spec.channel, spec.target);
    let mut kept = Vec::new();
    let who = stores.who().await.map_err(ReleaseError::Change)?;
    let (now, at_micros) = (stores.clock.now(), stores.clock.now_micros());
    let changed = change_item(
        stores.items.as_ref(),
        stores.history.as_ref(),
        &spec.app_id,
        &sk,
        spec.expect_revision,
        |current| {
            kept = keep_policy(current, &mut release);
            // Never write an item the server could not serve.
            Release::from_item(&release)
                .map_err(|e| anyhow::anyhow!("the release would be invalid: {e}"))?;
            if let Some(ro) = &spec.rollout {
                let started = start_rollout(current, &release, ro, spec, &who, now, at_micros)?;
                return Ok(Some(started));
            }
            let of = EntryOf {
                action: HistoryAction::Release,
                channel: &spec.channel,
                target: spec.target,
                from: current,
                to: Some(&release),
            };
            let e = entry(of, &who, None, at_micros);
            Ok(Some((release, e)))
        },
    )
    .await
    .map_err(|e| match e.downcast::<StoreError>() {
        Ok(store) => ReleaseError::Store(store),
        Err(other) => ReleaseError::Change(other),
    })?
    .ok_or_else(|| invalid("nothing to release"))?;
    published.previous_version = changed.entry.from_version.clone();
    published.revision = revision_of(&changed.item);
    published.kept_policy = kept;
    if changed.entry.action == HistoryAction::RolloutStart {
        published.rollout = changed.entry.detail.clone();
    }
    Ok(published)
}

/// Checks the zip (or zips the folder), uploads it and its delta files, and records the
/// bundle item; sets what the release item serves.
async fn upload_zip(
    stores: &OperatorStores,
    spec: &ReleaseSpec,
    release: &mut Item,
    published: &mut Published,
) -> Result<(), ReleaseError> {
    let bytes = match &spec.source {
        BundleSource::Dir(dir) => zip_folder(dir)?,
        BundleSource::Zip(path) => {
            std::fs::read(path).map_err(|e| ReleaseError::Io(path.clone(), e))?
        }
        _ => unreachable!("matched above"),
    };
    let sha256 = sha256_hex(&bytes);
    let mut root = None;
    let checksum = match &spec.encryption {
        // An encrypted zip is ciphertext: its layout was checked by whoever encrypted it.
        Some(_) => spec.checksum.clone().ok_or_else(|| {
            invalid(
                "an encrypted zip needs --checksum (the value printed by `capgo bundle encrypt`)",
            )
        })?,
        None => {
            let layout = check_layout(&bytes)?;
            root = Some(layout.root.clone());
            if spec.code_check && !layout.calls_notify_app_ready {
                return Err(LayoutError::NoNotifyAppReady.into());
            }
            match &spec.checksum {
                Some(given) if given != &sha256 => {
                    let hint = if is_sha256_hex(&given.to_lowercase()) {
                        ""
                    } else {
                        " (expected 64 lowercase hex digits)"
                    };
                    return Err(invalid(format!(
                        "--checksum {given} does not match the zip's SHA-256 {sha256}{hint}"
                    )));
                }
                _ => sha256.clone(),
            }
        }
    };
    if let Some(enc) = &spec.encryption {
        enc.write(release);
    }
    // Encrypted zips stay zip-only: their files are ciphertext here.
    let delta = match (&root, spec.delta) {
        (None, _) | (_, Some(false)) => None,
        (Some(root), Some(true)) => Some(root.as_str()),
        (Some(root), None) => app_delta_default(stores.items.as_ref(), &spec.app_id)
            .await?
            .then_some(root.as_str()),
    };
    let stored = store_bundle(stores, spec, &bytes, &sha256, &checksum, delta).await?;
    let key = stored.key;
    let reused = stored.reused;
    if let (Some(_), Some(m)) = (delta, &stored.manifest) {
        release.set_text(attr::MANIFEST, m);
        published.manifest = Some(m.clone());
        published.files = stored.files;
        published.files_uploaded = Some(stored.files_uploaded);
    }
    release.set_text(attr::BUNDLE, &key);
    release.set_text(attr::CHECKSUM, &checksum);
    published.bundle = Some(key);
    published.checksum = Some(checksum);
    published.size = Some(bytes.len() as u64);
    published.reused_bundle = reused;
    Ok(())
}

/// Delta-file uploads in flight at once.
const FILES_IN_FLIGHT: usize = 16;

/// The app's `delta` attribute (BOOL; default true): whether releases get manifests.
async fn app_delta_default(items: &dyn ItemWriter, app_id: &str) -> Result<bool, ReleaseError> {
    match items.get_item(app_id, APP_SK).await? {
        None => Ok(true),
        Some(app) => app
            .get_flag(attr::DELTA, true)
            .map_err(|_| invalid("the app item's delta attribute must be a boolean (BOOL)")),
    }
}

/// What `store_bundle` stored or found.
struct StoredBundle {
    key: String,
    reused: bool,
    manifest: Option<String>,
    files: Option<u64>,
    files_uploaded: u64,
}

/// Stores every file of the zip by content (only those not stored yet), then the manifest
/// object beside the zip. Returns the manifest key, the file count and how many were new.
async fn store_files(
    bundles: &dyn BundleStore,
    spec: &ReleaseSpec,
    bytes: &[u8],
    sha256: &str,
    root: &str,
) -> Result<(String, u64, u64), ReleaseError> {
    use futures_util::stream::{self, StreamExt, TryStreamExt};
    let files = prepare_files(bytes, root, &spec.app_id)?;
    let mut seen = std::collections::HashSet::new();
    let unique: Vec<_> = files
        .iter()
        .filter(|f| seen.insert(f.entry.key.as_str()))
        .collect();
    // Only files not stored yet go up; a few requests in flight at once.
    let uploaded: u64 = stream::iter(unique)
        .map(|f| async move {
            if bundles.exists(&f.entry.key).await? {
                return Ok::<u64, BundleError>(0);
            }
            bundles
                .put_verified(&f.entry.key, &f.body, &sha256_hex(&f.body))
                .await?;
            Ok(1)
        })
        .buffer_unordered(FILES_IN_FLIGHT)
        .try_fold(0, |n, up| async move { Ok(n + up) })
        .await?;
    let manifest = Manifest {
        files: files.into_iter().map(|f| f.entry).collect(),
    };
    let json = serde_json::to_vec(&manifest).map_err(|e| invalid(e.to_string()))?;
    let key = manifest_key(&spec.app_id, &spec.version, sha256);
    bundles
        .put_verified(&key, &json, &sha256_hex(&json))
        .await?;
    Ok((key, manifest.files.len() as u64, uploaded))
}

fn manifest_of(item: &Item) -> (Option<String>, Option<u64>) {
    (
        item.text(attr::MANIFEST).map(str::to_owned),
        item.whole(attr::FILES),
    )
}

/// The release item with a rollout of `release` next to the stable version `current` serves.
fn start_rollout(
    current: Option<&Item>,
    release: &Item,
    ro: &RolloutSpec,
    spec: &ReleaseSpec,
    who: &str,
    now: u64,
    at_micros: u64,
) -> anyhow::Result<(Item, HistoryEntry)> {
    use crate::domain::rollout::start;
    use crate::domain::share::{percent_text, steps_text};
    let what = format!(
        "{}/{} of {}",
        spec.channel,
        spec.target.as_str(),
        spec.app_id
    );
    let Some(current) = current else {
        anyhow::bail!(
            "{what} serves nothing yet, so there is no stable version to roll out from; release without --rollout first"
        );
    };
    let stable = Release::from_item(current)
        .map_err(|e| anyhow::anyhow!("{what} is invalid, fix it before a rollout: {e}"))?;
    if stable.version_text == spec.version {
        anyhow::bail!("{what} already serves {} to everyone", spec.version);
    }
    let id = format!("{:016x}", rand::random::<u64>());
    let next = start(current, release, &id, ro.basis_points, &ro.gate, now);
    match Release::from_item(&next).map(|r| r.rollout) {
        Ok(Some(Ok(_))) => {}
        Ok(Some(Err(e))) | Err(e) => anyhow::bail!("the rollout would be invalid: {e}"),
        Ok(None) => anyhow::bail!("the rollout would be invalid"),
    }
    let g = &ro.gate;
    let plan = if g.steps.is_empty() {
        "share changed by hand".to_owned()
    } else {
        format!(
            "steps {} every {} s",
            steps_text(&g.steps),
            g.step_every_secs
        )
    };
    let detail = format!(
        "rollout {id} of {} at {} ({plan}; max failure rate {}, min devices {}, on failure {})",
        spec.version,
        percent_text(ro.basis_points),
        g.max_failure_rate,
        g.min_devices,
        g.on_failure.as_str()
    );
    let of = EntryOf {
        action: HistoryAction::RolloutStart,
        channel: &spec.channel,
        target: spec.target,
        from: Some(current),
        to: Some(release),
    };
    let mut e = entry(of, who, Some(detail), at_micros);
    e.from_version = Some(stable.version_text);
    Ok((next, e))
}

/// Uploads the object (content-addressed) and records the bundle item, refusing a version that
/// already exists with other bytes. With `delta` (the zip's root), the files and manifest too.
async fn store_bundle(
    stores: &OperatorStores,
    spec: &ReleaseSpec,
    bytes: &[u8],
    sha256: &str,
    checksum: &str,
    delta: Option<&str>,
) -> Result<StoredBundle, ReleaseError> {
    let (items, bundles) = (
        stores.items.as_ref(),
        stores.bundles().map_err(ReleaseError::Change)?,
    );
    let sk = bundle_sk(&spec.version);
    let same_bytes = |existing: &Item| -> Result<String, ReleaseError> {
        match (existing.text(attr::SHA256), existing.text(attr::BUNDLE)) {
            (Some(old), Some(key)) if old == sha256 => Ok(key.to_owned()),
            (Some(old), _) => Err(ReleaseError::Store(StoreError::Conflict(format!(
                "version {} of {} was already released with different bytes (sha256 {old}); release it under a new version",
                spec.version, spec.app_id
            )))),
            _ => Err(invalid(format!(
                "the existing item {sk} has no sha256/bundle; fix or remove it first"
            ))),
        }
    };
    if let Some(mut existing) = items.get_item(&spec.app_id, &sk).await? {
        let key = same_bytes(&existing)?;
        let (mut manifest, mut files) = manifest_of(&existing);
        let mut files_uploaded = 0;
        if let (Some(root), None) = (delta, &manifest) {
            // Released before without a manifest: add one now.
            let (m, n, up) = store_files(bundles, spec, bytes, sha256, root).await?;
            existing.set_text(attr::MANIFEST, &m);
            existing.set_whole(attr::FILES, n);
            items.put_item(&spec.app_id, &sk, &existing).await?;
            (manifest, files, files_uploaded) = (Some(m), Some(n), up);
        }
        return Ok(StoredBundle {
            key,
            reused: true,
            manifest,
            files,
            files_uploaded,
        });
    }
    let key = bundle_key(&spec.app_id, &spec.version, sha256);
    bundles.put_verified(&key, bytes, sha256).await?;
    let mut item = Item::new();
    let (mut manifest, mut files, mut files_uploaded) = (None, None, 0);
    if let Some(root) = delta {
        let (m, n, up) = store_files(bundles, spec, bytes, sha256, root).await?;
        item.set_text(attr::MANIFEST, &m);
        item.set_whole(attr::FILES, n);
        (manifest, files, files_uploaded) = (Some(m), Some(n), up);
    }
    item.set_text(attr::BUNDLE, &key);
    item.set_text(attr::SHA256, sha256);
    item.set_text(attr::CHECKSUM, checksum);
    item.set_whole(attr::SIZE, bytes.len() as u64);
    item.set_whole(attr::CREATED_AT, stores.clock.now());
    if let Some(enc) = &spec.encryption {
        enc.write(&mut item);
    }
    if !items.put_item_if_absent(&spec.app_id, &sk, &item).await? {
        // Someone released the same version meanwhile: fine only if it is the same bytes.
        let existing = items.get_item(&spec.app_id, &sk).await?.unwrap_or_default();
        let (manifest, files) = manifest_of(&existing);
        return Ok(StoredBundle {
            key: same_bytes(&existing)?,
            reused: true,
            manifest,
            files,
            files_uploaded,
        });
    }
    Ok(StoredBundle {
        key,
        reused: false,
        manifest,
        files,
        files_uploaded,
    })
}
