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
use crate::bundles::file_urls::FileUrls;
use crate::bundles::local::{LocalBundles, UrlRefusal};
use crate::bundles::manifests::CachedManifests;
use crate::domain::decide::{Decision, NeedsDevice, decide_update, decide_without_device};
use crate::domain::metrics::NONE;
use crate::domain::protocol::{
    ErrorAnswer, Kind, RefusalAnswer, RefusalCode, RequestError, ResetAnswer, UpdateAnswer,
    clip_message, parse_update_request,
};
use crate::metrics::CheckMetrics;
use crate::store::cache::CachedReleases;
use crate::store::embedded::EmbeddedStore;
use crate::store::{DeviceStore, ReleaseControl, StatsSink};

mod channel;
mod delta;
pub mod listener;
pub mod source;
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
    /// Delta updates: manifests and short file URLs (`None`: zip-only answers).
    pub delta: Option<Delta>,
    /// Update-check counts, written as CloudWatch metrics on Lambda (off elsewhere).
    pub metrics: CheckMetrics,
}

/// What delta answers need: the manifest cache and the signer of `/f/` URLs.
pub struct Delta {
    pub manifests: CachedManifests,
    pub urls: FileUrls,
}

impl AppState {
    /// The local setup of `updraft serve`: the embedded store and bundles in `data_dir`, and
    /// the store's housekeeping on a timer (on the current tokio runtime).
    pub fn embedded(
        data_dir: &std::path::Path,
        cache_ttl: std::time::Duration,
        url_ttl: std::time::Duration,
        public_url: Option<String>,
    ) -> anyhow::Result<Self> {
        let store = EmbeddedStore::open(data_dir)?;
        let bundles = LocalBundles::open(data_dir, url_ttl)?;
        store.spawn_housekeeping(crate::store::embedded_device_side::HOUSEKEEPING_EVERY);
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
        let reader = Arc::new(bundles.clone());
        let delta = Delta {
            manifests: CachedManifests::new(reader, cache_ttl),
            urls: FileUrls::new(&bundles.secret(), bundles.ttl()),
        };
        AppState {
            releases: CachedReleases::new(store.clone(), cache_ttl),
            devices: store.clone(),
            stats: store.clone(),
            control: store,
            signer: Arc::new(bundles.clone()),
            local_bundles: Some(bundles),
            public_url,
            delta: Some(delta),
            metrics: CheckMetrics::off(),
        }
    }
}

/// The AWS tables the HTTP API serves from.
pub struct AwsTables<'a> {
    pub releases: &'a str,
    pub devices: &'a str,
    /// Seconds a device's item lives (`UPDRAFT_DEVICE_TTL`).
    pub device_ttl: u64,
}

impl AppState {
    /// The state on DynamoDB and S3 from clients already built (the Lambda's, `serve --backend
    /// aws`, tests' counting clients). Stats writes get their own client, for their timeouts.
    /// Delta answers, the public URL and metrics start off; callers set them.
    pub fn on_aws(
        dynamo: &aws_sdk_dynamodb::Client,
        stats_dynamo: &aws_sdk_dynamodb::Client,
        signer: crate::bundles::s3::S3Bundles,
        tables: AwsTables<'_>,
        cache_ttl: std::time::Duration,
    ) -> Self {
        use crate::store::dynamo::DynamoStore;
        use crate::store::dynamo_devices::DynamoDevices;
        use crate::store::dynamo_stats::DynamoStats;
        let store = Arc::new(DynamoStore::new(dynamo.clone(), tables.releases.to_owned()));
        AppState {
            releases: CachedReleases::new(store.clone(), cache_ttl),
            devices: Arc::new(DynamoDevices::new(
                dynamo.clone(),
                tables.releases.to_owned(),
                tables.devices.to_owned(),
                tables.device_ttl,
            )),
            stats: Arc::new(DynamoStats::new(
                stats_dynamo.clone(),
                tables.releases.to_owned(),
                tables.devices.to_owned(),
                tables.device_ttl,
            )),
            control: store,
            signer: Arc::new(signer),
            local_bundles: None,
            public_url: None,
            delta: None,
            metrics: crate::metrics::CheckMetrics::off(),
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
    #[error("the request body ended before its declared length")]
    IncompleteBody,
    #[error("the request body did not arrive within the read timeout")]
    BodyTimeout,
    #[error("there is nothing at this path")]
    NotFound,
    #[error("this method is not allowed on this path")]
    MethodNotAllowed,
    #[error(transparent)]
    UrlRefused(#[from] UrlRefusal),
    #[error("the requested range is outside the file")]
    RangeNotSatisfiable,
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
            ApiError::IncompleteBody => (StatusCode::BAD_REQUEST, "incomplete_body"),
            ApiError::BodyTimeout => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::UrlRefused(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::RangeNotSatisfiable => {
                (StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable")
            }
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
        let message = Cow::Owned(clip_message(&self.to_string()).into_owned());
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
    // Update answers are gzipped for clients that accept it (OkHttp and URLSession do): a
    // manifest of many files shrinks to a fraction. Downloads are never recompressed.
    let gzip = || tower_http::compression::CompressionLayer::new().gzip(true);
    let mut router = Router::new()
        .route("/updates", post(updates).layer(gzip()))
        .route(
            "/updates/manifest_size",
            post(delta::manifest_size).layer(gzip()),
        )
        .route("/f/{*path}", get(delta::file))
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

/// Reads a body up to `limit`: 413 beyond it, 400 for a body cut short, 408 for one that did
/// not arrive within the listener's read timeout.
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
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        // Only the limit makes a 413; a body cut short (or too slow) is the client's fault.
        let e = e.into_inner();
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e.as_ref());
        while let Some(c) = cause {
            if c.is::<http_body_util::LengthLimitError>() {
                return ApiError::TooLarge(limit);
            }
            if c.is::<listener::BodyTimedOut>() {
                return ApiError::BodyTimeout;
            }
            cause = c.source();
        }
        ApiError::IncompleteBody
    })
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
    let req = parse_update_request(body).inspect_err(|e| {
        tracing::info!(error = e.code(), "bad update check");
        state.metrics.count(NONE, NONE, NONE, e.code());
    })?;
    let unavailable = |e: crate::store::StoreError| {
        tracing::error!(app_id = %req.app_id, device_id = %req.device_id, error = %e, decision = "service_unavailable");
        state
            .metrics
            .count(NONE, NONE, NONE, RefusalCode::ServiceUnavailable.as_str());
        ApiError::Unavailable
    };
    // The releases usually come from the cache, and then the device's item is read only when
    // the answer could depend on it (`decide_without_device`): most checks make no store
    // call. On a cold cache both are read at once, so a check never waits on two round trips.
    let (snapshot, prefetched) = match state.releases.fresh(&req.app_id) {
        Some(snapshot) => (snapshot, None),
        None => {
            let (snapshot, device) = tokio::join!(
                state.releases.get(&req.app_id),
                state.devices.get_device(&req.app_id, &req.device_id)
            );
            (snapshot.map_err(unavailable)?, Some(device))
        }
    };
    let decision = match decide_without_device(&req, snapshot.as_deref()) {
        Ok(decision) => decision,
        Err(NeedsDevice) => {
            let device = match prefetched {
                Some(device) => device,
                None => state.devices.get_device(&req.app_id, &req.device_id).await,
            }
            .map_err(unavailable)?;
            decide_update(&req, snapshot.as_deref(), device.as_ref())
        }
    };
    let manifest = match (&decision, &snapshot) {
        (Decision::Offer { release, .. }, Some(snap)) => {
            delta::manifest_for(state, &req, snap, release).await
        }
        _ => None,
    };
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
                manifest: manifest
                    .as_ref()
                    .map(|(m, expires)| delta::entries(state, m, origin, *expires)),
            })
        }
        Decision::Reset { .. } => serde_json::to_vec(&ResetAnswer { version: "builtin" }),
        Decision::Refuse(r) => serde_json::to_vec(&RefusalAnswer {
            error: r.code,
            message: clip_message(&r.message),
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
    // Every label comes from the app's items (an unknown app is `-`), so forged values never
    // make a metric of their own.
    let (label, channel) = (decision.label(), decision.channel());
    state.metrics.count(
        if snapshot.is_some() {
            &req.app_id
        } else {
            NONE
        },
        channel.unwrap_or(NONE),
        version.unwrap_or(NONE),
        label,
    );
    // A line per check only at `debug`; checks that change something (or fail) at `info`.
    macro_rules! check_line {
        ($level:expr) => {
            tracing::event!(
                $level,
                app_id = %req.app_id,
                device_id = %req.device_id,
                platform = req.platform.as_str(),
                version_build = %req.version_build,
                version_name = %req.version_name_raw,
                channel = channel.unwrap_or(""),
                decision = label,
                version = version.unwrap_or(""),
                micros = started.elapsed().as_micros() as u64,
                "update check"
            )
        };
    }
    if is_up_to_date(&decision) {
        check_line!(tracing::Level::DEBUG);
    } else {
        check_line!(tracing::Level::INFO);
    }
    Ok(answer)
}

/// The device already has what it should run: the nine checks in ten that change nothing.
fn is_up_to_date(decision: &Decision<'_>) -> bool {
    matches!(decision, Decision::Refuse(r) if matches!(r.code, RefusalCode::NoNewVersionAvailable | RefusalCode::AlreadyOnBuiltin))
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
    let path = bundles.regular_file(&key).ok_or(ApiError::NotFound)?;
    serve_file(path, req).await
}

/// Serves a stored file with `Range` support (one well-formed range; others get a full 200).
pub(crate) async fn serve_file(
    path: std::path::PathBuf,
    req: Request,
) -> Result<Response, ApiError> {
    let mut req = req;
    if req
        .headers()
        .get(header::RANGE)
        .is_some_and(|r| !is_single_byte_range(r.as_bytes()))
    {
        // RFC 9110 §14.2: a Range the server does not understand is ignored (a full 200).
        req.headers_mut().remove(header::RANGE);
    }
    let served = tower_http::services::ServeFile::new(path)
        .oneshot(req)
        .await
        .map_err(|_| ApiError::Internal)?
        .into_response();
    Ok(match served.status() {
        s if !s.is_client_error() && !s.is_server_error() => served,
        StatusCode::RANGE_NOT_SATISFIABLE => {
            let mut res = ApiError::RangeNotSatisfiable.into_response();
            if let Some(v) = served.headers().get(header::CONTENT_RANGE) {
                res.headers_mut().insert(header::CONTENT_RANGE, v.clone());
            }
            res
        }
        StatusCode::NOT_FOUND => ApiError::NotFound.into_response(),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed.into_response(),
        _ => ApiError::Internal.into_response(),
    })
}

/// `bytes=<first>-[<last>]` or `bytes=-<suffix>`: one range, the only kind served; anything
/// else (other units, several ranges, garbage) is ignored.
fn is_single_byte_range(value: &[u8]) -> bool {
    let Some(spec) = std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return false;
    };
    let Some((first, last)) = spec.trim().split_once('-') else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit());
    match (first.is_empty(), last.is_empty()) {
        (false, true) => digits(first),
        (true, false) => digits(last),
        (false, false) => {
            digits(first) && digits(last) && first.parse::<u64>().ok() <= last.parse::<u64>().ok()
        }
        (true, true) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_well_formed_byte_range_is_honoured() {
        for ok in ["bytes=0-", "bytes=10-20", "bytes=-5", " bytes=7-7 "] {
            assert!(is_single_byte_range(ok.as_bytes()), "{ok}");
        }
        for ignored in [
            "bytes=",
            "bytes=-",
            "bytes=a-",
            "bytes=20-10",
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=99999999999999999999-",
            "garbage",
            "",
        ] {
            assert!(!is_single_byte_range(ignored.as_bytes()), "{ignored}");
        }
    }
}
