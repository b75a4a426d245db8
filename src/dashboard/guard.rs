//! Who may use the dashboard: every request needs the token (the `?token=` of the first one
//! sets a cookie and leaves the address bar), a `Host` that names the listener (no DNS
//! rebinding), and every change a POST from the dashboard's own origin; pages carry a strict
//! Content-Security-Policy.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::dashboard::state::Dashboard;

pub(super) fn refuse(status: StatusCode, error: &str, message: &str) -> Response {
    let mut r = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({ "error": error, "message": message }).to_string(),
    )
        .into_response();
    secure_headers(r.headers_mut());
    r
}

fn secure_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Not `no-referrer`: with it, browsers send `Origin: null` on the page's own POSTs.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

/// Equal in time independent of where they differ.
pub(super) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn cookie_token<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn query_token(query: Option<&str>) -> Option<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query?)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v)
}

/// Every request: the Host must name this listener and the token must come with it (query
/// or cookie); a change must also be a POST from the dashboard's own origin (the form's
/// token is checked by `act`). A valid `?token=` sets the cookie and is taken out of the URL.
pub(super) async fn guard(State(d): State<Arc<Dashboard>>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !d.hosts.iter().any(|h| h == host) {
        return refuse(
            StatusCode::FORBIDDEN,
            "wrong_host",
            "the dashboard answers only to the address it printed",
        );
    }
    let from_query = query_token(req.uri().query());
    let from_cookie = cookie_token(req.headers(), &d.cookie).map(str::to_owned);
    let ok = |t: &Option<String>| t.as_deref().is_some_and(|t| same(t, &d.token));
    if !ok(&from_query) && !ok(&from_cookie) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "open the URL that `updraft dashboard` printed: it carries the token",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|h| h.to_str().ok());
        let own = origin
            .is_some_and(|o| o == d.origin || d.hosts.iter().any(|h| o == format!("http://{h}")));
        if req.method() != Method::POST || !own {
            return refuse(
                StatusCode::FORBIDDEN,
                "forbidden_origin",
                "changes are accepted only from the dashboard's own page",
            );
        }
    }
    if ok(&from_query) && req.method() == Method::GET {
        // Set the cookie and drop the token from the address bar (and from history).
        let rest: Vec<(String, String)> = req
            .uri()
            .query()
            .and_then(|q| serde_urlencoded::from_str(q).ok())
            .unwrap_or_default();
        let rest: Vec<(String, String)> = rest.into_iter().filter(|(k, _)| k != "token").collect();
        let mut to = req.uri().path().to_owned();
        if !rest.is_empty() {
            to.push('?');
            to.push_str(&serde_urlencoded::to_string(&rest).unwrap_or_default());
        }
        let mut r = redirect(&to);
        if let Ok(v) = HeaderValue::from_str(&format!(
            "{}={}; HttpOnly; SameSite=Strict; Path=/",
            d.cookie, d.token
        )) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        return r;
    }
    let mut r = next.run(req).await;
    secure_headers(r.headers_mut());
    r
}

pub(super) fn redirect(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole_and_cookies_by_name() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; updraft_dashboard_9=tok; b=2"),
        );
        assert_eq!(cookie_token(&h, "updraft_dashboard_9"), Some("tok"));
        assert_eq!(cookie_token(&h, "updraft_dashboard_8"), None);
        assert_eq!(query_token(Some("x=1&token=t%2B")), Some("t+".into()));
    }
}
