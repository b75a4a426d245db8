//! `updraft bundles list | delete`: the uploaded bundles of an app, which channels serve them,
//! and removing one that nothing serves.

use anyhow::{Context, bail};
use serde::Serialize;

use crate::backend::OperatorStores;
use crate::cli::output::{Report, table};
use crate::cli::releases::require_app;
use crate::domain::history::rfc3339;
use crate::domain::release::{AppSnapshot, AttrValue, Item, bundle_sk};

/// One row of `bundles list`.
#[derive(Debug, Serialize)]
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
}

fn s(item: &Item, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttrValue::S(v)) => Some(v.clone()),
        _ => None,
    }
}

fn n(item: &Item, name: &str) -> Option<u64> {
    match item.get(name) {
        Some(AttrValue::N(v)) => v.as_u64(),
        _ => None,
    }
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
pub async fn list(stores: &OperatorStores, app_id: &str) -> anyhow::Result<Report> {
    let snap = require_app(stores, app_id).await?;
    let items = stores
        .query
        .query_prefix(app_id, "bundle#", false, None)
        .await?;
    let rows: Vec<BundleRow> = items
        .iter()
        .map(|(sk, item)| {
            let version = sk.trim_start_matches("bundle#").to_owned();
            BundleRow {
                served_by: served_by(&snap, &version),
                version,
                bundle: s(item, "bundle"),
                size: n(item, "size"),
                checksum: s(item, "checksum"),
                sha256: s(item, "sha256"),
                uploaded_at: n(item, "created_at").map(|t| rfc3339(t * 1_000_000)),
            }
        })
        .collect();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.version.clone(),
                r.size.map_or("?".into(), |b| b.to_string()),
                r.checksum
                    .as_deref()
                    .map_or("?".into(), |c| c.chars().take(12).collect()),
                r.uploaded_at.clone().unwrap_or_else(|| "?".into()),
                if r.served_by.is_empty() {
                    "-".into()
                } else {
                    r.served_by.join(", ")
                },
            ]
        })
        .collect();
    let text = if rows.is_empty() {
        format!("No bundles stored for {app_id}.")
    } else {
        table(
            &["VERSION", "BYTES", "CHECKSUM", "UPLOADED", "SERVED BY"],
            &cells,
        )
    };
    Report::new(&rows, text)
}

/// `updraft bundles delete`: refused while any channel serves the version.
pub async fn delete(
    stores: &OperatorStores,
    app_id: &str,
    version: &str,
) -> anyhow::Result<Report> {
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
    let key = s(&item, "bundle");
    let bundles = stores.bundles()?;
    // The item first: once it is gone, nothing can roll back or promote to this version.
    stores.query.delete_item(app_id, &sk).await?;
    if let Some(key) = &key {
        bundles.delete(key).await?;
    }
    #[derive(Serialize)]
    struct Deleted<'a> {
        app_id: &'a str,
        version: &'a str,
        bundle: Option<&'a str>,
    }
    let text = format!(
        "Deleted bundle {version} of {app_id}{}.",
        key.as_deref()
            .map(|k| format!(" ({k})"))
            .unwrap_or_default()
    );
    Report::new(
        &Deleted {
            app_id,
            version,
            bundle: key.as_deref(),
        },
        text,
    )
}
