//! The HTTP API (design.md §2) as one axum `Router`, served by `updraft serve` locally and by
//! `lambda_http` on AWS. Errors become HTTP here, in `ApiError::into_response`, and nowhere else.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower::ServiceExt;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{Any, CorsLayer};

use crate::bundles::UrlSigner;
use crate::bundles::local::{LocalBundles, UrlRefusal};
use crate::domain::decide::{Decision, decide_update};
use crate::domain::protocol::{
    ErrorAnswer, Kind, RefusalAnswer, RefusalCode, RequestError, ResetAnswer, UpdateAnswer,
    parse_update_request,
};
use crate::store::cache::CachedReleases;
use crate::store::embedded::EmbeddedStore;
use crate::store::{DeviceStore, ReleaseControl, StatsSink};

mod channel;
mod stats;

/// Largest body accepted: a plugin's update check is well under 1 KiB.
pub const BODY_LIMIT: usize = 64 * 1024;

/// What every handler shares: built once per process.
pub struct AppState {
    pub releases: CachedReleases,
    pub devices: Arc<dyn DeviceStore>,
    pub stats: Arc<dyn StatsSink>,
    pub control: Arc<dyn ReleaseControl>,
    pub signer: Arc<dyn UrlSigner>,
    /// Set when this process serves bundles itself (embedded mode).
    pub local_bundles: Option<LocalBundles>,
    /// The origin devices reach this server at; when unset, taken from each request's Host.
    pub public_url: Option<String>,
}

impl AppState {
    /// The local setup of `updraft serve`: the embedded store and bundles in `data_dir`.
    pub fn embedded(
        data_dir: &std::path::Path,
        cache_ttl: std::time::Duration,
        url_ttl: std::time::Duration,
        public_url: Option<String>,
    ) -> anyhow::Result<Self> {
        let store = EmbeddedStore::open(data_dir)?;
        let bundles = LocalBundles::open(data_dir, url_ttl)?;
        Ok(Self::from_embedded(store, bundles, cache_ttl, public_url))
    }

    /// The embedded setup from an opened store and bundle folder.
    pub fn from_embedded(
        store: EmbeddedStore,
        bundles: LocalBundles,
        cache_ttl: std::time::Duration,
        public_url: Option<String>,
    ) -> Self {
        let store = Arc::new(store);
        AppState {
            releases: CachedReleases::new(store.clone(), cache_ttl),
            devices: store.clone(),
            stats: store.clone(),
            control: store,
            signer: Arc::new(bundles.clone()),
            local_bundles: Some(bundles),
            public_url,
        }
    }
}

/// Every way a request can fail, each with its HTTP status and JSON body.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    BadRequest(#[from] RequestError),
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("there is nothing at this path")]
    NotFound,
    #[error("this method is not allowed on this path")]
    MethodNotAllowed,
    #[error(transparent)]
    UrlRefused(#[from] UrlRefusal),
    #[error("the update service is temporarily unavailable")]
    Unavailable,
    #[error("internal error")]
    Internal,
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(e) => (StatusCode::BAD_REQUEST, e.code()),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::UrlRefused(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                RefusalCode::ServiceUnavailable.as_str(),
            ),
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = Cow::Owned(self.to_string());
        let body = if matches!(self, ApiError::Unavailable) {
            // The plugin reads `kind` at any status: a failed check, retried at the next start.
            serde_json::to_vec(&RefusalAnswer {
                error: RefusalCode::ServiceUnavailable,
                message,
                kind: Kind::Failed,
                version: None,
                old: None,
                major: None,
            })
        } else {
            serde_json::to_vec(&ErrorAnswer {
                error: code,
                message,
            })
        };
        json_response(status, body.unwrap_or_default())
    }
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// The router with every route, CORS, and a JSON answer for panics and unknown routes.
pub fn router(state: Arc<AppState>) -> Router {
    let mut router = Router::new()
        .route("/updates", post(updates))
        .route("/stats", post(stats::stats))
        .route(
            "/channel_self",
            post(channel::set_channel)
                .put(channel::get_channel)
                .get(channel::list_channels)
                .delete(channel::unset_channel),
        )
        .route("/health", get(health));
    if state.local_bundles.is_some() {
        router = router.route("/bundles/{*key}", get(bundle));
    }
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([header::CONTENT_TYPE])
        .max_age(std::time::Duration::from_secs(600));
    router
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("a request handler panicked");
            ApiError::Internal.into_response()
        }))
        .layer(cors)
}

async fn health() -> Response {
    json_response(StatusCode::OK, br#"{"status":"ok"}"#.to_vec())
}

/// Reads a body up to `BODY_LIMIT`, answering 413 beyond it.
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::TooLarge(limit));
    }
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::TooLarge(limit))
}

/// The origin a device used to reach us, for URLs we serve ourselves.
fn request_origin<'a>(state: &'a AppState, headers: &'a HeaderMap) -> Cow<'a, str> {
    if let Some(url) = &state.public_url {
        return Cow::Borrowed(url.trim_end_matches('/'));
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".:-[]".contains(&b))
        })
        .unwrap_or("localhost");
    let proto = match headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
    {
        Some("https") => "https",
        _ => "http",
    };
    Cow::Owned(format!("{proto}://{host}"))
}

async fn updates(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(&headers, body, BODY_LIMIT).await?;
    let origin = request_origin(&state, &headers);
    let answer = update_check(&state, &body, &origin).await?;
    Ok(json_response(StatusCode::OK, answer))
}

/// One update check: parse → read the (cached) releases → decide → answer. The JSON bytes of
/// the answer, or the error the router turns into HTTP.
pub async fn update_check(
    state: &AppState,
    body: &[u8],
    origin: &str,
) -> Result<Vec<u8>, ApiError> {
    let started = Instant::now();
    let req = parse_update_request(body)
        .inspect_err(|e| tracing::info!(error = e.code(), "bad update check"))?;
    // The releases usually come from the cache; the device item is the one read per check.
    let (snapshot, device) = tokio::join!(
        state.releases.get(&req.app_id),
        state.devices.get_device(&req.app_id, &req.device_id)
    );
    let unavailable = |e: crate::store::StoreError| {
        tracing::error!(app_id = %req.app_id, device_id = %req.device_id, error = %e, decision = "service_unavailable");
        ApiError::Unavailable
    };
    let snapshot = snapshot.map_err(unavailable)?;
    let device = device.map_err(unavailable)?;
    let decision = decide_update(&req, snapshot.as_deref(), device.as_ref());
    let answer = match &decision {
        Decision::Offer { release, .. } => {
            let url = match (&release.url, &release.bundle) {
                (Some(url), _) => Cow::Borrowed(url.as_str()),
                (None, Some(key)) => Cow::Owned(state.signer.download_url(key, origin).await.map_err(|e| {
                    tracing::error!(app_id = %req.app_id, device_id = %req.device_id, error = %e, "cannot sign a bundle URL");
                    ApiError::Unavailable
                })?),
                (None, None) => return Err(ApiError::Internal),
            };
            serde_json::to_vec(&UpdateAnswer {
                version: &release.version_text,
                url,
                checksum: release.checksum.as_deref().unwrap_or_default(),
                session_key: release.session_key.as_deref(),
                link: release.link.as_deref(),
                comment: release.comment.as_deref(),
            })
        }
        Decision::Reset { .. } => serde_json::to_vec(&ResetAnswer { version: "builtin" }),
        Decision::Refuse(r) => serde_json::to_vec(&RefusalAnswer {
            error: r.code,
            message: Cow::Borrowed(&r.message),
            kind: r.code.kind(),
            version: r.version,
            old: r.old.as_ref().map(ToString::to_string),
            major: (r.code == RefusalCode::DisableAutoUpdateToMajor).then_some(true),
        }),
    }
    .map_err(|_| ApiError::Internal)?;
    let version = match &decision {
        Decision::Offer { release, .. } => Some(release.version_text.as_str()),
        Decision::Refuse(r) => r.version,
        Decision::Reset { .. } => Some("builtin"),
    };
    tracing::info!(
        app_id = %req.app_id,
        device_id = %req.device_id,
        platform = req.platform.as_str(),
        version_build = %req.version_build,
        version_name = %req.version_name_raw,
        channel = decision.channel().unwrap_or(""),
        decision = decision.label(),
        version = version.unwrap_or(""),
        micros = started.elapsed().as_micros() as u64,
        "update check"
    );
    Ok(answer)
}

/// `GET /bundles/<key>?expires=…&signature=…`: a signed, expiring, `Range`-capable download.
async fn bundle(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let bundles = state.local_bundles.as_ref().ok_or(ApiError::NotFound)?;
    let (mut expires, mut signature) = (None, None);
    for pair in req.uri().query().unwrap_or("").split('&') {
        match pair.split_once('=') {
            Some(("expires", v)) => expires = Some(v),
            Some(("signature", v)) => signature = Some(v),
            _ => {}
        }
    }
    bundles
        .verify(&key, expires, signature)
        .inspect_err(|e| tracing::info!(key, refused = %e, "bundle download refused"))?;
    let path = bundles
        .path_of(&key)
        .filter(|p| p.is_file())
        .ok_or(ApiError::NotFound)?;
    let served = tower_http::services::ServeFile::new(path)
        .oneshot(req)
        .await
        .map_err(|_| ApiError::Internal)?;
    Ok(served.into_response())
}
