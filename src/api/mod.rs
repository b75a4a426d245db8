//! The HTTP API (design.md §2) as one axum `Router`, served by `updraft serve` locally and by
//! `lambda_http` on AWS. Handlers parse and validate, call the domain and the stores through
//! `AppState`, and answer; errors become HTTP in `error`, and nowhere else.
//!
//! - `state`: what every handler shares (`AppState`), built by the runtime
//! - `error`: `ApiError`, its HTTP status and JSON, and the one log line of a failed request
//! - `body`: reading a body within its route's limit
//! - `origin`: the origin a device reached us at, for the URLs we serve
//! - `updates`: the update check; `delta`: manifests, `/f/` files and `manifest_size`
//! - `stats`: device events; `channel`: `/channel_self`
//! - `files`: local downloads with `Range`
//! - `source`: each request's source address; `listener`: `serve`'s bounded accept loop

mod body;
mod channel;
mod delta;
pub mod error;
mod files;
pub mod listener;
mod origin;
pub mod source;
pub mod state;
mod stats;
mod updates;

pub use body::BODY_LIMIT;
pub use error::ApiError;
pub use state::{AppState, CheckCounter, Delta, NoCheckCounts};
pub use updates::update_check;

use std::sync::Arc;

use axum::Router;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{Any, CorsLayer};

use crate::api::error::{json_response, log_failures};

/// The router with every route, CORS, and a JSON answer for panics and unknown routes.
pub fn router(state: Arc<AppState>) -> Router {
    // Update answers are gzipped for clients that accept it (OkHttp and URLSession do): a
    // manifest of many files shrinks to a fraction. Downloads are never recompressed.
    let gzip = || tower_http::compression::CompressionLayer::new().gzip(true);
    let mut router = Router::new()
        .route("/updates", post(updates::updates).layer(gzip()))
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
        router = router.route("/bundles/{*key}", get(files::bundle));
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
        .layer(axum::middleware::from_fn(log_failures))
        .layer(cors)
}

async fn health() -> Response {
    json_response(StatusCode::OK, br#"{"status":"ok"}"#.to_vec())
}
