//! Serving stored files locally (`updraft serve`): signed, expiring `/bundles/…` downloads and
//! the `/f/` delta files, with `Range` (one well-formed range; anything else gets a full 200,
//! as RFC 9110 allows).

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;

use crate::api::error::ApiError;
use crate::api::state::AppState;

/// `GET /bundles/<key>?expires=…&signature=…`: a signed, expiring, `Range`-capable download.
pub async fn bundle(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let bundles = state.local_bundles.as_ref().ok_or(ApiError::NotFound)?;
    let [expires, signature] = query_values(req.uri().query(), ["expires", "signature"]);
    bundles
        .verify(&key, expires, signature)
        .inspect_err(|e| tracing::info!(key, refused = %e, "bundle download refused"))?;
    let path = bundles.regular_file(&key).ok_or(ApiError::NotFound)?;
    serve_file(path, req).await
}

/// The values of two query parameters (a signed URL's expiry and signature), raw.
pub fn query_values<'q>(query: Option<&'q str>, names: [&str; 2]) -> [Option<&'q str>; 2] {
    let mut out = [None, None];
    for pair in query.unwrap_or("").split('&') {
        if let Some((k, v)) = pair.split_once('=')
            && let Some(i) = names.iter().position(|n| *n == k)
        {
            out[i] = Some(v);
        }
    }
    out
}

/// Serves a stored file with `Range` support (one well-formed range; others get a full 200).
pub async fn serve_file(path: std::path::PathBuf, req: Request) -> Result<Response, ApiError> {
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
