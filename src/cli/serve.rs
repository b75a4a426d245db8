//! `updraft serve`: the HTTP API on this machine, with the rollouts' gate on a timer, until
//! ctrl-c or SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::api::listener::ListenLimits;
use crate::api::router;
use crate::cli::args::ServeArgs;
use crate::ops::OperatorStores;
use crate::runtime::backend::ServeSettings;

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let settings = ServeSettings {
        cache_ttl: Duration::from_secs(args.cache_ttl),
        url_ttl: Duration::from_secs(args.url_ttl),
        public_url: args.public_url.clone(),
    };
    let state = Arc::new(args.store.backend()?.app_state(settings).await?);
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    let local = listener.local_addr()?;
    let origin = match &args.public_url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None if local.ip().is_unspecified() => format!("http://localhost:{}", local.port()),
        None => format!("http://{local}"),
    };
    print_config(&origin, &args.store.describe(), local);
    let limits = ListenLimits {
        read_timeout: Duration::from_secs(args.read_timeout),
        max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
    };
    if args.rollout_interval > 0 {
        let stores = args.store.backend()?.operator_stores(false, true).await?;
        tokio::spawn(rollout_timer(
            stores,
            Duration::from_secs(args.rollout_interval),
        ));
    }
    let app = crate::api::source::with_source(router(state), args.trust_proxy);
    crate::api::listener::serve(listener, app, limits, shutdown_signal()).await?;
    Ok(())
}

/// The rollouts' health gate on a timer, for `serve` (the same pass as `updraft rollout
/// tick` and the scheduled event on Lambda). A failed pass is logged and tried again later.
async fn rollout_timer(stores: OperatorStores, every: Duration) {
    let mut timer = tokio::time::interval(every);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        timer.tick().await;
        match crate::ops::rollouts::tick(&stores, None).await {
            Ok(rows) => {
                let changed = rows.iter().filter(|r| r.action.changed()).count();
                tracing::debug!(rollouts = rows.len(), changed, "rollout pass");
            }
            Err(e) => tracing::warn!(error = %e, "rollout pass failed; trying again later"),
        }
    }
}

fn print_config(origin: &str, backend: &str, local: SocketAddr) {
    let snippet = serde_json::json!({
        "plugins": { "CapacitorUpdater": {
            "updateUrl": format!("{origin}/updates"),
            "statsUrl": format!("{origin}/stats"),
            "channelUrl": format!("{origin}/channel_self"),
        }}
    });
    println!("Updraft is serving on {local} ({backend})");
    println!("updateUrl: {origin}/updates");
    println!(
        "Put this in capacitor.config.json (an Android emulator reaches this machine as 10.0.2.2):"
    );
    println!(
        "{}",
        serde_json::to_string_pretty(&snippet).unwrap_or_default()
    );
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
