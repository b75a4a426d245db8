//! Reading a request body within its route's limit: 413 beyond it (refused by its
//! `Content-Length` before anything is read), 400 for a body cut short, 408 for one that did
//! not arrive within the listener's read timeout.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, header};

use crate::api::error::ApiError;
use crate::api::listener::BodyTimedOut;

/// Largest body of an update check or a channel call: the plugin's are well under 1 KiB.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Reads a body up to `limit`: 413 beyond it, 400 for a body cut short, 408 for one that did
/// not arrive within the listener's read timeout.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
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
            if c.is::<BodyTimedOut>() {
                return ApiError::BodyTimeout;
            }
            cause = c.source();
        }
        ApiError::IncompleteBody
    })
}

/// A body within `BODY_LIMIT` (update checks, `/channel_self`), read by `read_body`: the
/// handlers' common first step as an extractor.
pub struct SmallBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for SmallBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        read_body(&parts.headers, body, BODY_LIMIT)
            .await
            .map(SmallBody)
    }
}
