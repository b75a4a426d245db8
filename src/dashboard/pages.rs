//! The dashboard's pages: the apps, an app (its live section and bundles), the live section
//! alone (what the page refreshes), and the built-in style and script.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::dashboard::guard::refuse;
use crate::dashboard::state::Dashboard;
use crate::dashboard::view;
use crate::ops::errors::explain;

pub(super) fn render(d: &Dashboard, name: &str, ctx: impl Serialize) -> Response {
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

pub(super) async fn index(State(d): State<Arc<Dashboard>>) -> Response {
    match crate::ops::apps::app_list(&d.stores).await {
        Ok(apps) => render(&d, "index.html", json!({ "apps": apps })),
        Err(e) => failed(&e),
    }
}

#[derive(Deserialize)]
pub(super) struct AppQuery {
    /// A sentence about the action just done (after `act`'s redirect).
    done: Option<String>,
    error: Option<String>,
}

pub(super) async fn app_page(
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

pub(super) async fn app_live(State(d): State<Arc<Dashboard>>, Path(app): Path<String>) -> Response {
    match view::app_live(&d.stores, &app).await {
        Ok(live) => render(&d, "live.html", json!({ "live": live })),
        Err(e) => failed(&e),
    }
}

pub(super) async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("static/style.css"),
    )
        .into_response()
}

pub(super) async fn live_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("static/live.js"),
    )
        .into_response()
}
