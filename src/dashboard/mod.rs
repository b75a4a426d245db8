//! `updraft dashboard`: release health and the operator's levers as a web page, for the
//! operator's own machine. It listens on loopback only, reads and writes through the same
//! `OperatorStores` and functions as the other commands (so history names the operator), and
//! is never part of the public API's router (`api::router`).
//!
//! Security: a random token, printed once in the URL (as Jupyter does), is needed by every
//! request (the `?token=` of the first one sets a cookie for this port); the `Host` header
//! must name the listener (no DNS rebinding); every change is a POST carrying the token as a
//! form field and an `Origin` equal to the dashboard's own, after a confirmation page.

pub mod view;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use minijinja::Environment;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::backend::OperatorStores;
use crate::cli::output::{Report, explain};
use crate::cli::rollout::{RolloutAction, rollout_change};
use crate::domain::release::Target;
use crate::domain::rollout::parse_percent;

/// The dashboard's shared state: the stores, the token, the origin and the templates.
pub struct Dashboard {
    pub stores: OperatorStores,
    token: String,
    /// `http://127.0.0.1:PORT`: the only `Origin` a change may come from.
    origin: String,
    /// `Host` values that name this listener.
    hosts: Vec<String>,
    cookie: String,
    templates: Environment<'static>,
}

/// A dashboard bound to its listener, not yet serving.
pub struct Bound {
    pub listener: tokio::net::TcpListener,
    pub dashboard: Arc<Dashboard>,
    /// The URL to open, with the token.
    pub url: String,
}

/// The one-sentence refusal of an address that is not loopback.
pub fn require_loopback(addr: SocketAddr) -> anyhow::Result<()> {
    anyhow::ensure!(
        addr.ip().is_loopback(),
        "the dashboard listens on loopback only, because it acts with your credentials; use --addr 127.0.0.1:PORT (and an SSH tunnel to reach it from another machine)"
    );
    Ok(())
}

/// Binds `addr` (loopback only) and makes a fresh token.
pub async fn bind(stores: OperatorStores, addr: SocketAddr) -> anyhow::Result<Bound> {
    require_loopback(addr)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    let token = hex::encode(rand::random::<[u8; 24]>());
    let host = match local {
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
        SocketAddr::V4(a) => a.to_string(),
    };
    let origin = format!("http://{host}");
    let url = format!("{origin}/?token={token}");
    let dashboard = Dashboard {
        stores,
        token,
        hosts: vec![host, format!("localhost:{}", local.port())],
        origin,
        // Cookies are shared by every port of a host: one name per port.
        cookie: format!("updraft_dashboard_{}", local.port()),
        templates: templates()?,
    };
    Ok(Bound {
        listener,
        dashboard: Arc::new(dashboard),
        url,
    })
}

fn templates() -> anyhow::Result<Environment<'static>> {
    let mut env = Environment::new();
    for (name, source) in [
        ("base.html", include_str!("templates/base.html")),
        ("index.html", include_str!("templates/index.html")),
        ("app.html", include_str!("templates/app.html")),
        ("live.html", include_str!("templates/live.html")),
        ("confirm.html", include_str!("templates/confirm.html")),
    ] {
        env.add_template(name, source)
            .with_context(|| format!("dashboard template {name}"))?;
    }
    Ok(env)
}

/// The dashboard's routes, each behind the token and Host checks.
pub fn router(dashboard: Arc<Dashboard>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/app/{app}", get(app_page))
        .route("/app/{app}/live", get(app_live))
        .route("/confirm", get(confirm))
        .route("/act", post(act))
        .route("/static/style.css", get(style))
        .route("/static/live.js", get(live_js))
        .layer(middleware::from_fn_with_state(dashboard.clone(), guard))
        .with_state(dashboard)
}

/// Serves until ctrl-c.
pub async fn serve(bound: Bound) -> anyhow::Result<()> {
    axum::serve(bound.listener, router(bound.dashboard))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

fn refuse(status: StatusCode, error: &str, message: &str) -> Response {
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
fn same(a: &str, b: &str) -> bool {
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
async fn guard(State(d): State<Arc<Dashboard>>, req: Request, next: Next) -> Response {
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

fn redirect(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn render(d: &Dashboard, name: &str, ctx: Value) -> Response {
    match d.templates.get_template(name).and_then(|t| t.render(ctx)) {
        Ok(html) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, template = name, "dashboard template failed");
            refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "template_failed",
                "the page could not be drawn; see the dashboard's log",
            )
        }
    }
}

fn failed(e: &anyhow::Error) -> Response {
    refuse(StatusCode::BAD_REQUEST, "failed", &explain(e))
}

async fn index(State(d): State<Arc<Dashboard>>) -> Response {
    match crate::cli::releases::app_list(&d.stores).await {
        Ok(Report { json, .. }) => render(&d, "index.html", json!({ "apps": json })),
        Err(e) => failed(&e),
    }
}

#[derive(Deserialize)]
struct AppQuery {
    /// A sentence about the action just done (after `act`'s redirect).
    done: Option<String>,
    error: Option<String>,
}

async fn app_page(
    State(d): State<Arc<Dashboard>>,
    Path(app): Path<String>,
    Query(q): Query<AppQuery>,
) -> Response {
    let (live, bundles) = tokio::join!(
        view::app_live(&d.stores, &app),
        crate::cli::bundles::list(&d.stores, &app)
    );
    let live = match live {
        Ok(v) => v,
        Err(e) => return failed(&e),
    };
    let bundles = match bundles {
        Ok(r) => json!({ "rows": r.json }),
        Err(e) => json!({ "error": explain(&e) }),
    };
    render(
        &d,
        "app.html",
        json!({ "app_id": app, "live": live, "bundles": bundles, "done": q.done, "error": q.error }),
    )
}

async fn app_live(State(d): State<Arc<Dashboard>>, Path(app): Path<String>) -> Response {
    match view::app_live(&d.stores, &app).await {
        Ok(live) => render(&d, "live.html", json!({ "live": live })),
        Err(e) => failed(&e),
    }
}

/// One operator action as the confirmation page and `act` name it.
#[derive(Debug, Deserialize, serde::Serialize)]
struct ActionForm {
    #[serde(default)]
    token: String,
    app: String,
    action: String,
    #[serde(default)]
    channel: String,
    #[serde(default = "all")]
    platform: String,
    /// `rollout-set`: the share in percent.
    percent: Option<f64>,
    /// `promote`: the channel that will serve `channel`'s bundle.
    to: Option<String>,
    reason: Option<String>,
}

fn all() -> String {
    "all".to_owned()
}

/// What an action does, in words, for the confirmation page.
fn describe(a: &ActionForm) -> Option<String> {
    let place = format!("{}/{} of {}", a.channel, a.platform, a.app);
    Some(match a.action.as_str() {
        "pause" => format!("Pause {place}: devices get release_paused until it is resumed."),
        "resume" => format!(
            "Resume {place}: only failures from now on count towards the next automatic pause."
        ),
        "rollout-pause" => format!("Pause the rollout of {place}: no new device enters it."),
        "rollout-resume" => {
            format!("Resume the rollout of {place}: the gate's evidence starts afresh.")
        }
        "rollout-abort" => {
            format!("Abort the rollout of {place}: everyone is offered the stable version.")
        }
        "rollout-complete" => {
            format!("Complete the rollout of {place}: its version becomes the stable one.")
        }
        "rollout-set" => format!("Set the rollout of {place} to {}% of devices.", a.percent?),
        "rollback" => format!("Roll {place} back to the version it served before."),
        "promote" => format!(
            "Promote {}'s bundle to {} on {} of {}.",
            a.channel,
            a.to.as_deref()?,
            a.platform,
            a.app
        ),
        _ => return None,
    })
}

async fn confirm(State(d): State<Arc<Dashboard>>, Query(a): Query<ActionForm>) -> Response {
    let Some(what) = describe(&a) else {
        return refuse(StatusCode::BAD_REQUEST, "unknown_action", "no such action");
    };
    render(
        &d,
        "confirm.html",
        json!({ "what": what, "form": a, "token": d.token }),
    )
}

/// Runs one confirmed action through the operator commands' own functions, then shows the
/// app's page with what it did.
async fn act(State(d): State<Arc<Dashboard>>, body: Bytes) -> Response {
    let Ok(a) = serde_urlencoded::from_bytes::<ActionForm>(&body) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "bad_form",
            "the form is incomplete",
        );
    };
    if !same(&a.token, &d.token) {
        return refuse(
            StatusCode::FORBIDDEN,
            "missing_token",
            "changes are accepted only from the dashboard's own forms (they carry the token)",
        );
    }
    let back = |key: &str, text: &str| {
        redirect(&format!(
            "/app/{}?{}",
            urlencode(&a.app),
            serde_urlencoded::to_string([(key, text)]).unwrap_or_default()
        ))
    };
    match run_action(&d.stores, &a).await {
        Ok(report) => back("done", report.text.trim()),
        Err(e) => back("error", &explain(&e)),
    }
}

fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)])
        .unwrap_or_default()
        .trim_start_matches('=')
        .to_owned()
}

async fn run_action(stores: &OperatorStores, a: &ActionForm) -> anyhow::Result<Report> {
    use crate::cli::operator::{pause, resume};
    use crate::cli::releases::{promote, rollback};
    let target = Target::parse(&a.platform).with_context(|| {
        format!(
            "{:?} is not a platform (all, android, ios, electron)",
            a.platform
        )
    })?;
    let (app, channel) = (a.app.as_str(), a.channel.as_str());
    let rollout = |action| rollout_change(stores, app, channel, target, action);
    match a.action.as_str() {
        "pause" => {
            let reason = a.reason.as_deref().unwrap_or("paused from the dashboard");
            pause(stores, app, channel, target, reason).await
        }
        "resume" => resume(stores, app, channel, target).await,
        "rollout-pause" => rollout(RolloutAction::Pause).await,
        "rollout-resume" => rollout(RolloutAction::Resume).await,
        "rollout-abort" => rollout(RolloutAction::Abort).await,
        "rollout-complete" => rollout(RolloutAction::Complete).await,
        "rollout-set" => {
            let p = a.percent.context("the rollout's share is missing")?;
            let bp = parse_percent(p).map_err(|e| anyhow::anyhow!("the share {e}"))?;
            rollout(RolloutAction::Set(bp)).await
        }
        "rollback" => rollback(stores, app, channel, target, None).await,
        "promote" => {
            let to =
                a.to.as_deref()
                    .context("promote needs the channel to promote to")?;
            promote(stores, app, channel, to, target).await
        }
        other => anyhow::bail!("{other:?} is not a dashboard action"),
    }
}

async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("static/style.css"),
    )
        .into_response()
}

async fn live_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("static/live.js"),
    )
        .into_response()
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
