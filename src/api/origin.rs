//! The origin a device used to reach this server, for the URLs it serves itself (local
//! downloads, `/f/` delta files): `--public-url`, else the request's `Host`.

use std::borrow::Cow;

use axum::http::{HeaderMap, header};

use crate::api::state::AppState;

/// The origin a device used to reach us, for URLs we serve ourselves.
pub fn request_origin<'a>(state: &'a AppState, headers: &'a HeaderMap) -> Cow<'a, str> {
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
