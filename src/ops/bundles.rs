//! `updraft bundles list | delete`: the uploaded bundles of an app, which channels serve them,
//! and removing one that nothing serves.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::bundles::BundleStore;
use crate::bundles::manifests::parse_manifest;
use crate::domain::history::rfc3339;
use crate::domain::item::{Item, ItemExt, attr};
use crate::domain::keys::{BUNDLE_SK_PREFIX, bundle_sk};
use crate::domain::manifest::Manifest;
use crate::domain::snapshot::AppSnapshot;
use crate::ops::OperatorStores;
use crate::ops::apps::require_app;

/// One row of `bundles list`.
#[derive(Debug, Clone, Serialize)]
pub struct BundleRow {
    pub version: String,
    /// Object key in the bundle store.
    pub bundle: Option<String>,
    pub size: Option<u64>,
    /// What devices verify (sha256, or the encrypted checksum).
    pub checksum: Option<String>,
    pub sha256: Option<String>,
    /// RFC 3339, UTC.
    pub uploaded_at: Option<String>,
    /// `channel/platform` items that serve this version.
    pub served_by: Vec<String>,
    /// Delta updates: files in the manifest (absent without one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<u64>,
    /// Bytes a device on `previous` downloads (all files' bytes when there is no previous).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta_bytes: Option<u64>,
    /// The stored version just below this one (by semver) that `delta_bytes` is counted from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
}

/// Reads the manifest object a bundle item names.
async fn read_manifest(bundles: &dyn BundleStore, item: &Item) -> anyhow::Result<Option<Manifest>> {
    let Some(key) = item.text(attr::MANIFEST) else {
        return Ok(None);
    };
    let Some(bytes) = bundles.get_object(key).await? else {
        return Ok(None);
    };
    Ok(Some(parse_manifest(key, &bytes)?))
}

fn text(item: &Item, name: &str) -> Option<String> {
    item.text(name).map(str::to_owned)
}

/// `channel/platform` of every release item serving `version`.
fn served_by(snap: &AppSnapshot, version: &str) -> Vec<String> {
    let mut out: Vec<String> = snap
        .channels
        .iter()
        .flat_map(|(name, c)| {
            c.targets().filter_map(move |(t, r)| {
                let r = r.as_ref().ok()?;
                (r.version_text == version).then(|| format!("{name}/{}", t.as_str()))
            })
        })
        .collect();
    out.sort();
    out
}

/// `updraft bundles list`.
pub async fn list(stores: &OperatorStores, app_id: &str) -> anyhow::Result<Vec<BundleRow>> {
    let snap = require_app(stores, app_id).await?;
    let items = stores
        .query
        .query_prefix(app_id, BUNDLE_SK_PREFIX, false, None)
        .await?;
    let mut manifests = BTreeMap::new();
    if items
        .iter()
        .any(|(_, item)| item.contains_key(attr::MANIFEST))
    {
        let bundles = stores.bundles()?;
        for (sk, item) in &items {
            if let (Ok(v), Some(m)) = (
                semver::Version::parse(sk.trim_start_matches(BUNDLE_SK_PREFIX)),
                read_manifest(bundles, item).await?,
            ) {
                manifests.insert(v, (sk.trim_start_matches(BUNDLE_SK_PREFIX).to_owned(), m));
            }
        }
    }
    let rows: Vec<BundleRow> = items
        .iter()
        .map(|(sk, item)| {
            let version = sk.trim_start_matches(BUNDLE_SK_PREFIX).to_owned();
            let (mut files, mut delta_bytes, mut previous) = (None, None, None);
            if let Ok(v) = semver::Version::parse(&version)
                && let Some((_, m)) = manifests.get(&v)
            {
                let prev = manifests.range(..v).next_back().map(|(_, p)| p);
                files = Some(m.files.len() as u64);
                delta_bytes = Some(m.download_bytes_from(prev.map(|(_, p)| p)));
                previous = prev.map(|(name, _)| name.clone());
            }
            BundleRow {
                served_by: served_by(&snap, &version),
                version,
                bundle: text(item, attr::BUNDLE),
                size: item.whole(attr::SIZE),
                checksum: text(item, attr::CHECKSUM),
                sha256: text(item, attr::SHA256),
                uploaded_at: item.whole(attr::CREATED_AT).map(|t| rfc3339(t * 1_000_000)),
                files,
                delta_bytes,
                previous,
            }
        })
        .collect();
    Ok(rows)
}

/// `updraft bundles delete`: refused while any channel serves the version.
pub async fn delete(
    stores: &OperatorStores,
    app_id: &str,
    version: &str,
) -> anyhow::Result<Deleted> {
    let snap = require_app(stores, app_id).await?;
    let sk = bundle_sk(version);
    let item = stores.items.get_item(app_id, &sk).await?.with_context(|| {
        format!("no bundle {version} of {app_id}; see `updraft bundles list --app {app_id}`")
    })?;
    let serving = served_by(&snap, version);
    if !serving.is_empty() {
        bail!(
            "bundle {version} of {app_id} is served by {}; release, roll back or promote another version there first",
            serving.join(", ")
        );
    }
    let key = text(&item, attr::BUNDLE);
    let bundles = stores.bundles()?;
    // The item first: once it is gone, nothing can roll back or promote to this version.
    stores.query.delete_item(app_id, &sk).await?;
    if let Some(key) = &key {
        bundles.delete(key).await?;
    }
    let files_deleted = delete_unreferenced_files(stores, bundles, app_id, &item).await?;
    Ok(Deleted {
        app_id: app_id.to_owned(),
        version: version.to_owned(),
        bundle: key,
        files_deleted,
    })
}

/// What `bundles delete` deleted.
#[derive(Debug, Clone, Serialize)]
pub struct Deleted {
    pub app_id: String,
    pub version: String,
    pub bundle: Option<String>,
    /// Delta files no remaining bundle names, deleted with it.
    pub files_deleted: u64,
}

impl fmt::Display for Deleted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Deleted bundle {} of {}", self.version, self.app_id)?;
        if let Some(k) = &self.bundle {
            write!(f, " ({k})")?;
        }
        if self.files_deleted > 0 {
            write!(
                f,
                " and {} delta files no other bundle uses",
                self.files_deleted
            )?;
        }
        write!(f, ".")
    }
}

/// Deletes the deleted bundle's manifest and every file of it that no remaining bundle's
/// manifest names. A release running at the same time that reuses such a file re-uploads it
/// only if it checks after this deletes: run deletes and releases of one app one at a time.
async fn delete_unreferenced_files(
    stores: &OperatorStores,
    bundles: &dyn BundleStore,
    app_id: &str,
    deleted: &Item,
) -> anyhow::Result<u64> {
    let Some(gone) = read_manifest(bundles, deleted).await? else {
        return Ok(0);
    };
    let mut kept = HashSet::new();
    for (_, item) in stores
        .query
        .query_prefix(app_id, BUNDLE_SK_PREFIX, false, None)
        .await?
    {
        if item.text(attr::MANIFEST).is_some() {
            let m = read_manifest(bundles, &item).await?.with_context(|| {
                format!(
                    "the manifest {:?} is missing; nothing deleted beyond the zip",
                    item.text(attr::MANIFEST)
                )
            })?;
            kept.extend(m.files.into_iter().map(|f| f.key));
        }
    }
    let mut deleted_files = 0;
    let mut seen = HashSet::new();
    for f in &gone.files {
        if !kept.contains(&f.key) && seen.insert(f.key.as_str()) {
            bundles.delete(&f.key).await?;
            deleted_files += 1;
        }
    }
    if let Some(m) = deleted.text(attr::MANIFEST) {
        bundles.delete(m).await?;
    }
    Ok(deleted_files)
}
