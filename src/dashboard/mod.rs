//! `updraft dashboard`: release health and the operator's levers as a web page, for the
//! operator's own machine. It listens on loopback only, reads and writes through the same
//! `OperatorStores` and functions as the other commands (so history names the operator), and
//! is never part of the public API's router (`api::router`).
//!
//! Security: a random token, printed once in the URL (as Jupyter does), is needed by every
//! request (the `?token=` of the first one sets a cookie for this port); the `Host` header
//! must name the listener (no DNS rebinding); every change is a POST carrying the token as a
//! form field and an `Origin` equal to the dashboard's own, after a confirmation page.

mod actions;
pub mod chart;
mod guard;
pub mod view;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use minijinja::Environment;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::dashboard::guard::{guard, refuse};
use crate::ops::OperatorStores;
use crate::ops::errors::explain;

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
    // A field the templates print that the view does not have is an error, not an empty cell.
    env.set_undefined_behavior(minijinja::UndefinedBehavior::SemiStrict);
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
        .route("/confirm", get(actions::confirm))
        .route("/act", post(actions::act))
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

fn render(d: &Dashboard, name: &str, ctx: impl Serialize) -> Response {
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
    match crate::ops::apps::app_list(&d.stores).await {
        Ok(apps) => render(&d, "index.html", json!({ "apps": apps })),
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
        crate::ops::bundles::list(&d.stores, &app)
    );
    let live = match live {
        Ok(v) => v,
        Err(e) => return failed(&e),
    };
    let bundles = match bundles {
        Ok(rows) => json!({ "rows": rows }),
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
