//! `updraft dashboard`: binds the page on loopback, prints its URL (with `--json`, as one JSON
//! line), then serves until ctrl-c.

use crate::cli::args::DashboardArgs;
use crate::ops::OperatorStores;

/// `updraft dashboard`: prints the URL (with `--json`, as one JSON line), then serves until
/// ctrl-c.
pub async fn dashboard(args: &DashboardArgs, stores: OperatorStores) -> anyhow::Result<()> {
    let bound = crate::dashboard::bind(stores, args.addr).await?;
    let addr = bound.listener.local_addr()?;
    if args.op.json {
        println!(
            "{}",
            serde_json::json!({ "url": bound.url, "addr": addr.to_string() })
        );
    } else {
        println!(
            "Updraft dashboard ({}): open {}\n(the token in this URL is the only way in; ctrl-c stops it)",
            args.op.store.describe(),
            bound.url
        );
    }
    if args.open {
        open_browser(&bound.url);
    }
    crate::dashboard::serve(bound).await
}

/// Opens `url` with the desktop's opener; the URL is printed anyway when none works.
fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else if cfg!(windows) {
        "explorer"
    } else {
        "xdg-open"
    };
    if let Err(e) = std::process::Command::new(opener)
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        eprintln!("could not start {opener} ({e}); open the URL above by hand");
    }
}
