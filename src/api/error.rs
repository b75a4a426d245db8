//! Every way a request can fail, each with its HTTP status and a JSON body the plugin
//! understands (`error` + `message`; `kind` where the plugin reads it), in one place. A store
//! failure converts by `?` (`From<StoreError>`) and is logged once, by `log_failures`, the
//! router's outermost layer, with the request it failed.

use std::borrow::Cow;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::bundles::local::UrlRefusal;
use crate::domain::protocol::{
    ErrorAnswer, Kind, RefusalAnswer, RefusalCode, RequestError, clip_message,
};
use crate::store::StoreError;

/// Every way a request can fail.
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
    /// A dependency failed; `cause` is for the log only.
    #[error("the update service is temporarily unavailable")]
    Unavailable { cause: String },
    #[error("internal error")]
    Internal,
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Unavailable {
            cause: e.to_string(),
        }
    }
}

impl ApiError {
    /// A dependency other than the store failed (bundle storage, signing).
    pub fn unavailable(cause: impl std::fmt::Display) -> Self {
        ApiError::Unavailable {
            cause: cause.to_string(),
        }
    }

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
            ApiError::Unavailable { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                RefusalCode::ServiceUnavailable.as_str(),
            ),
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        }
    }
}

/// What the log layer says about a failed request (set by `into_response`).
#[derive(Debug, Clone)]
struct Failure(String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = Cow::Owned(clip_message(&self.to_string()).into_owned());
        let body = if matches!(self, ApiError::Unavailable { .. }) {
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
        let mut res = json_response(status, body.unwrap_or_default());
        if let ApiError::Unavailable { cause } = self {
            res.extensions_mut().insert(Failure(cause));
        }
        res
    }
}

/// A JSON answer with `status`.
pub fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// Logs each request that failed on a dependency, once, with its route: the detail the
/// device never sees.
pub async fn log_failures(req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let res = next.run(req).await;
    if let Some(Failure(cause)) = res.extensions().get::<Failure>() {
        tracing::error!(%method, path, status = res.status().as_u16(), error = %cause, "request failed; answered service_unavailable");
    }
    res
}
