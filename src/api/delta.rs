//! Delta updates on the API (protocol.md §4): the `manifest` of an update answer, the `/f/`
//! route its short URLs point at, and `POST /updates/manifest_size`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::api::body::read_body;
use crate::api::error::{ApiError, json_response};
use crate::api::files::{query_values, serve_file};
use crate::api::origin::request_origin;
use crate::api::state::AppState;
use crate::bundles::file_urls::object_key;
use crate::bundles::local::UrlRefusal;
use crate::domain::item::{ItemExt, attr};
use crate::domain::manifest::{Manifest, ManifestFile, plugin_supports_manifest};
use crate::domain::protocol::{ManifestEntry, RequestError, UpdateRequest, is_valid_app_id};
use crate::domain::release::Release;
use crate::domain::snapshot::AppSnapshot;

/// Largest `manifest_size` body: a 10,000-entry manifest echoed back.
const MANIFEST_SIZE_BODY_LIMIT: usize = 4 << 20;

/// Whether the app turned delta updates off (`delta: false` on its `app` item).
fn app_delta_off(snap: &AppSnapshot) -> bool {
    snap.app_item.flag(attr::DELTA) == Some(false)
}

/// The manifest to offer with `release`, and the expiry of its URLs: only for plugins that
/// understand manifests, unencrypted bundles, and apps that did not turn delta off. A manifest
/// that cannot be read leaves the answer zip-only (the plugin downloads the zip instead).
pub(crate) async fn manifest_for(
    state: &AppState,
    req: &UpdateRequest<'_>,
    snap: &AppSnapshot,
    release: &Release,
) -> Option<(Arc<Manifest>, u64)> {
    let delta = state.delta.as_ref()?;
    let key = release.manifest.as_deref()?;
    if release.session_key.is_some()
        || app_delta_off(snap)
        || !plugin_supports_manifest(req.plugin_version.as_deref())
    {
        return None;
    }
    match delta.manifests.get(key).await {
        Ok(Some(m)) if !m.files.is_empty() => Some((m, delta.urls.expiry())),
        Ok(_) => {
            tracing::warn!(app_id = %req.app_id, key, "manifest missing or empty; answering with the zip only");
            None
        }
        Err(e) => {
            tracing::error!(app_id = %req.app_id, key, error = %e, "cannot read the manifest; answering with the zip only");
            None
        }
    }
}

/// The answer's entries: one short signed URL per file, all with the same expiry.
pub(crate) fn entries<'m>(
    state: &AppState,
    manifest: &'m Manifest,
    origin: &str,
    expires: u64,
) -> Vec<ManifestEntry<'m>> {
    let Some(delta) = &state.delta else {
        return Vec::new();
    };
    manifest
        .files
        .iter()
        .filter_map(|f| {
            Some(ManifestEntry {
                file_name: &f.file_name,
                file_hash: &f.file_hash,
                download_url: delta.urls.url(origin, &f.key, expires)?,
            })
        })
        .collect()
}

/// `GET /f/<app>/<file>?e=…&s=…`: checks the short signature, then serves the file (embedded)
/// or redirects to a presigned object URL (S3: the bytes never pass through Lambda).
pub(crate) async fn file(
    State(state): State<Arc<AppState>>,
    Path(path): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let delta = state.delta.as_ref().ok_or(ApiError::NotFound)?;
    let [e, s] = query_values(req.uri().query(), ["e", "s"]);
    if e.is_none() || s.is_none() {
        return Err(ApiError::UrlRefused(UrlRefusal::Unsigned));
    }
    let key = object_key(&path).ok_or(ApiError::NotFound)?;
    delta
        .urls
        .verify(&key, e, s)
        .inspect_err(|r| tracing::info!(key, refused = %r, "file download refused"))?;
    if let Some(local) = &state.local_bundles {
        let path = local.regular_file(&key).ok_or(ApiError::NotFound)?;
        return serve_file(path, req).await;
    }
    let origin = request_origin(&state, req.headers());
    let url = state
        .signer
        .download_url(&key, &origin)
        .await
        .map_err(ApiError::unavailable)?;
    let mut res = Response::new(Body::empty());
    *res.status_mut() = StatusCode::FOUND;
    let location = HeaderValue::from_str(&url).map_err(|_| ApiError::Internal)?;
    res.headers_mut().insert(header::LOCATION, location);
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

#[derive(Deserialize)]
struct SizeRequest {
    app_id: String,
    version: String,
    #[serde(default)]
    manifest: Option<Vec<SizeEntry>>,
}

#[derive(Deserialize)]
struct SizeEntry {
    #[serde(default)]
    file_hash: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SizeAnswer<'a> {
    total_size: u64,
    known_files: u64,
    unknown_files: u64,
    files: Vec<SizeFile<'a>>,
}

#[derive(Serialize)]
struct SizeFile<'a> {
    file_name: &'a str,
    file_hash: &'a str,
    size: u64,
}

/// `POST /updates/manifest_size`: the download size of a version's files (the ones the body's
/// `manifest` lists, else all), for the plugin's `getBundleDownloadSize`. Known files are those
/// this server stores; the plugin substitutes zeros on any failure.
pub(crate) async fn manifest_size(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(&headers, body, MANIFEST_SIZE_BODY_LIMIT).await?;
    let req: SizeRequest =
        serde_json::from_slice(&body).map_err(|_| RequestError::InvalidJsonParseBody)?;
    if !is_valid_app_id(&req.app_id) {
        return Err(ApiError::NotFound);
    }
    let delta = state.delta.as_ref().ok_or(ApiError::NotFound)?;
    let snap = state
        .releases
        .get(&req.app_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    // Only versions a channel serves: the route reads nothing else.
    let key = snap
        .channels
        .values()
        .flat_map(|c| c.targets())
        .filter_map(|(_, r)| r.as_ref().ok())
        .find(|r| r.version_text == req.version && r.manifest.is_some())
        .and_then(|r| r.manifest.clone())
        .ok_or(ApiError::NotFound)?;
    let manifest = delta
        .manifests
        .get(&key)
        .await
        .map_err(ApiError::unavailable)?
        .ok_or(ApiError::NotFound)?;
    let by_hash: HashMap<&str, _> = manifest
        .files
        .iter()
        .map(|f| (f.file_hash.as_str(), f))
        .collect();
    let mut answer = SizeAnswer {
        total_size: 0,
        known_files: 0,
        unknown_files: 0,
        files: Vec::new(),
    };
    let mut add = |f: &'_ ManifestFile| {
        answer.total_size += f.size;
        answer.known_files += 1;
    };
    let mut listed = Vec::new();
    match &req.manifest {
        Some(entries) => {
            for e in entries {
                match e.file_hash.as_deref().and_then(|h| by_hash.get(h)) {
                    Some(f) => {
                        add(f);
                        listed.push(*f);
                    }
                    None => answer.unknown_files += 1,
                }
            }
        }
        None => {
            for f in &manifest.files {
                add(f);
                listed.push(f);
            }
        }
    }
    answer.files = listed
        .into_iter()
        .map(|f| SizeFile {
            file_name: &f.file_name,
            file_hash: &f.file_hash,
            size: f.size,
        })
        .collect();
    let bytes = serde_json::to_vec(&answer).map_err(|_| ApiError::Internal)?;
    Ok(json_response(StatusCode::OK, bytes).into_response())
}
