//! `updraft dashboard`: release health and the operator's levers as a web page, for the
//! operator's own machine. It listens on loopback only, reads and writes through the same
//! `OperatorStores` and functions as the other commands (so history names the operator), and
//! is never part of the public API's router (`api::router`).
//!
//! Security: a random token, printed once in the URL (as Jupyter does), is needed by every
//! request (the `?token=` of the first one sets a cookie); the `Host` header must name the
//! listener (no DNS rebinding); every change is a POST carrying the token as a form field and
//! an `Origin` equal to the dashboard's own, after a confirmation page. By default it listens
//! on a random loopback address of its own (`127.x.y.z`): browsers scope cookies by host, not
//! port, so the cookie never travels to the other servers the operator runs on `localhost`
//! or `127.0.0.1`.

mod actions;
pub mod chart;
mod guard;
mod pages;
mod state;
pub mod view;

pub use state::Dashboard;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::middleware;
use axum::routing::{get, post};

use crate::dashboard::guard::guard;
use crate::dashboard::state::templates;
use crate::ops::OperatorStores;

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

/// A loopback address no other server of the operator's uses: `127.x.y.z`, away from
/// `127.0.0.0/16` (where `localhost` and the usual local servers live).
fn random_loopback() -> SocketAddr {
    let [x, y, z]: [u8; 3] = rand::random();
    let ip = std::net::Ipv4Addr::new(127, x.max(1), y, z.clamp(1, 254));
    SocketAddr::from((ip, 0))
}

/// Listens on `addr`, or (`None`) on a random loopback address of its own; systems that
/// only route 127.0.0.1 (macOS by default) say so in one sentence.
async fn listen(addr: Option<SocketAddr>) -> anyhow::Result<tokio::net::TcpListener> {
    if let Some(addr) = addr {
        require_loopback(addr)?;
        return tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"));
    }
    let mut last = None;
    for _ in 0..8 {
        match tokio::net::TcpListener::bind(random_loopback()).await {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => {
                anyhow::bail!(
                    "this system routes only 127.0.0.1 on loopback, so the dashboard cannot have an address of its own; pass --addr 127.0.0.1:0 (its cookie is then sent to every server you open on 127.0.0.1) or add a loopback alias"
                )
            }
            Err(e) => last = Some(e),
        }
    }
    Err(anyhow::anyhow!(
        "cannot listen on a loopback address: {}",
        last.map(|e| e.to_string()).unwrap_or_default()
    ))
}

/// Binds `addr` (loopback only; `None`: a random loopback address of its own) and makes a
/// fresh token.
pub async fn bind(stores: OperatorStores, addr: Option<SocketAddr>) -> anyhow::Result<Bound> {
    let listener = listen(addr).await?;
    let local = listener.local_addr()?;
    let token = hex::encode(rand::random::<[u8; 24]>());
    let host = match local {
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
        SocketAddr::V4(a) => a.to_string(),
    };
    let origin = format!("http://{host}");
    let url = format!("{origin}/?token={token}");
    let mut hosts = vec![host];
    if local.ip() == std::net::Ipv4Addr::LOCALHOST {
        hosts.push(format!("localhost:{}", local.port()));
    }
    let dashboard = Dashboard {
        stores,
        token,
        hosts,
        origin,
        // Cookies are shared by every port of a host: one name per port, for two dashboards
        // on one address.
        cookie: format!("updraft_dashboard_{}", local.port()),
        templates: templates()?,
    };
    Ok(Bound {
        listener,
        dashboard: Arc::new(dashboard),
        url,
    })
}

/// The dashboard's routes, each behind the token and Host checks.
pub fn router(dashboard: Arc<Dashboard>) -> Router {
    Router::new()
        .route("/", get(pages::index))
        .route("/app/{app}", get(pages::app_page))
        .route("/app/{app}/live", get(pages::app_live))
        .route("/confirm", get(actions::confirm))
        .route("/act", post(actions::act))
        .route("/static/style.css", get(pages::style))
        .route("/static/live.js", get(pages::live_js))
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
