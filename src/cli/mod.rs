//! The `updraft` command line: `serve`, `release` and the operator commands.

pub mod operator;
pub mod publish;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::api::listener::ListenLimits;
use crate::api::router;
use crate::backend::{Backend, ServeSettings};
use crate::cli::publish::{BundleSource, Encryption, ReleaseSpec, publish};
use crate::domain::release::{AttrValue, Item, Target};

#[derive(Debug, Parser)]
#[command(
    name = "updraft",
    version,
    about = "Live updates for Capacitor apps using @capgo/capacitor-updater"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the update API on this machine (embedded store by default).
    Serve(ServeArgs),
    /// Release a bundle (or `builtin`) to a channel.
    Release(Box<ReleaseArgs>),
    /// Installs, failures and pause state of every release of an app.
    Stats(StatsArgs),
    /// Stop offering a release (devices get `release_paused`).
    Pause(PauseArgs),
    /// Lift a pause (manual or automatic); only later failures count towards the next one.
    Resume(ReleaseRef),
    /// Per-device channel overrides and state.
    #[command(subcommand)]
    Device(DeviceCommand),
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub store: BackendArgs,
    #[arg(long)]
    pub app: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One release item: app, channel and platform.
#[derive(Debug, Args)]
pub struct ReleaseRef {
    #[command(flatten)]
    pub store: BackendArgs,
    #[arg(long)]
    pub app: String,
    #[arg(long, default_value = "production")]
    pub channel: String,
    #[arg(long, value_enum, default_value = "all")]
    pub platform: PlatformArg,
}

#[derive(Debug, Args)]
pub struct PauseArgs {
    #[command(flatten)]
    pub release: ReleaseRef,
    /// Shown to devices in the `release_paused` message.
    #[arg(long, default_value = "paused by an operator")]
    pub reason: String,
}

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Put a device on a channel whatever it asks for (e.g. QA devices on beta).
    SetChannel(DeviceChannelArgs),
    /// Remove a device's channel override.
    UnsetChannel(DeviceArgs),
    /// Show what the server knows about a device.
    Show(DeviceShowArgs),
}

#[derive(Debug, Args)]
pub struct DeviceArgs {
    #[command(flatten)]
    pub store: BackendArgs,
    #[arg(long)]
    pub app: String,
    /// The device id (the plugin's `device_id`, a UUID; `getDeviceId()` in the app).
    #[arg(long)]
    pub device: String,
}

#[derive(Debug, Args)]
pub struct DeviceChannelArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    #[arg(long)]
    pub channel: String,
}

#[derive(Debug, Args)]
pub struct DeviceShowArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// SQLite and a bundle folder on this machine.
    Embedded,
    /// DynamoDB and S3, through the standard AWS configuration (AWS_PROFILE, AWS_REGION,
    /// AWS_ENDPOINT_URL for emulators, …).
    Aws,
}

#[derive(Debug, Args)]
pub struct BackendArgs {
    /// Where releases and bundles live.
    #[arg(long, value_enum, env = "UPDRAFT_BACKEND", default_value = "embedded")]
    pub backend: BackendKind,
    /// Folder of the embedded store (database, bundles, URL-signing secret).
    #[arg(long, env = "UPDRAFT_DATA", default_value = "./updraft-data")]
    pub data: PathBuf,
    /// DynamoDB table of releases (aws backend).
    #[arg(long, env = "UPDRAFT_TABLE")]
    pub table: Option<String>,
    /// DynamoDB table of devices (aws backend).
    #[arg(long, env = "UPDRAFT_DEVICES_TABLE")]
    pub devices_table: Option<String>,
    /// S3 bucket of bundles (aws backend).
    #[arg(long, env = "UPDRAFT_BUCKET")]
    pub bucket: Option<String>,
}

impl BackendArgs {
    fn backend(&self) -> anyhow::Result<Backend> {
        Ok(match self.backend {
            BackendKind::Embedded => Backend::Embedded {
                data: self.data.clone(),
            },
            BackendKind::Aws => Backend::Aws {
                table: self
                    .table
                    .clone()
                    .context("--backend aws needs --table (or UPDRAFT_TABLE)")?,
                devices_table: self
                    .devices_table
                    .clone()
                    .context("--backend aws needs --devices-table (or UPDRAFT_DEVICES_TABLE)")?,
                // Only commands that touch bundles need it; they say so (Backend::require_bucket).
                bucket: self.bucket.clone().unwrap_or_default(),
            },
        })
    }

    fn describe(&self) -> String {
        match self.backend {
            BackendKind::Embedded => format!("embedded store in {}", self.data.display()),
            BackendKind::Aws => format!(
                "DynamoDB table {}, S3 bucket {}",
                self.table.as_deref().unwrap_or("?"),
                self.bucket.as_deref().unwrap_or("?")
            ),
        }
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on. Use 0.0.0.0:8080 to reach it from a device or emulator.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    #[command(flatten)]
    pub store: BackendArgs,
    /// Origin devices use to reach this server (e.g. http://10.0.2.2:8080); by default, taken
    /// from each request's Host header.
    #[arg(long, env = "UPDRAFT_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Seconds a release read from the store is reused (0 = read on every check).
    #[arg(long, env = "UPDRAFT_CACHE_TTL", default_value_t = 5)]
    pub cache_ttl: u64,
    /// Seconds a bundle download URL stays valid.
    #[arg(long, env = "UPDRAFT_URL_TTL", default_value_t = 3600)]
    pub url_ttl: u64,
    /// Seconds a client has to send a request's headers (idle connections are closed after
    /// it), and again to send its body.
    #[arg(long, env = "UPDRAFT_READ_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub read_timeout: u64,
    /// Most connections open at once; more wait until one closes.
    #[arg(long, env = "UPDRAFT_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,
    /// Take each request's source address (the auto-pause evidence) from the last
    /// X-Forwarded-For entry: only behind a proxy that sets it, or anyone can claim any address.
    #[arg(long, env = "UPDRAFT_TRUST_PROXY")]
    pub trust_proxy: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PlatformArg {
    All,
    Android,
    Ios,
    Electron,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DisableArg {
    None,
    Patch,
    Minor,
    Major,
    #[value(name = "version_number")]
    VersionNumber,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").args(["dir", "zip", "url"])))]
pub struct ReleaseArgs {
    #[command(flatten)]
    pub store: BackendArgs,
    /// App id, as in capacitor.config (e.g. com.example.app).
    #[arg(long)]
    pub app: String,
    /// Bundle version (semver), or `builtin` to send devices back to the store build.
    #[arg(long = "version")]
    pub version: String,
    /// Built web folder to zip (index.html at its root).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Zip to release as is (e.g. from `capgo bundle zip` or `capgo bundle encrypt`).
    #[arg(long)]
    pub zip: Option<PathBuf>,
    /// An https URL of a zip hosted elsewhere (needs --checksum).
    #[arg(long)]
    pub url: Option<String>,
    #[arg(long, default_value = "production")]
    pub channel: String,
    #[arg(long, value_enum, default_value = "all")]
    pub platform: PlatformArg,
    /// Which native-version difference blocks the update (default major).
    #[arg(long, value_enum)]
    pub disable_auto_update: Option<DisableArg>,
    /// With --disable-auto-update version_number: lowest native version that may take it.
    #[arg(long)]
    pub min_update_version: Option<String>,
    /// Refuse bundles older than the native build (default true).
    #[arg(long)]
    pub disable_under_native: Option<bool>,
    #[arg(long)]
    pub allow_emulator: Option<bool>,
    #[arg(long)]
    pub allow_device: Option<bool>,
    #[arg(long)]
    pub allow_dev: Option<bool>,
    #[arg(long)]
    pub allow_prod: Option<bool>,
    /// Devices may choose this channel with setChannel (default false).
    #[arg(long)]
    pub allow_self_assign: Option<bool>,
    #[arg(long)]
    pub link: Option<String>,
    #[arg(long)]
    pub comment: Option<String>,
    /// For encrypted zips, the checksum printed by `capgo bundle encrypt`; otherwise checked
    /// against the zip's SHA-256.
    #[arg(long)]
    pub checksum: Option<String>,
    /// `ivSessionKey` printed by `capgo bundle encrypt`.
    #[arg(long, requires = "checksum")]
    pub session_key: Option<String>,
    /// First 20 characters of the app's public key body (the plugin's key_id).
    #[arg(long, requires = "session_key")]
    pub key_id: Option<String>,
    /// Release even if no file calls notifyAppReady().
    #[arg(long)]
    pub no_code_check: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

impl ReleaseArgs {
    fn spec(&self) -> ReleaseSpec {
        let source = match (&self.dir, &self.zip, &self.url) {
            (Some(d), _, _) => BundleSource::Dir(d.clone()),
            (_, Some(z), _) => BundleSource::Zip(z.clone()),
            (_, _, Some(u)) => BundleSource::ExternalUrl(u.clone()),
            _ => BundleSource::None,
        };
        let mut policy = Item::new();
        let mut put_s = |name: &str, v: Option<&str>| {
            if let Some(v) = v {
                policy.insert(name.into(), AttrValue::S(v.to_owned()));
            }
        };
        put_s(
            "disable_auto_update",
            self.disable_auto_update.map(disable_str),
        );
        put_s("min_update_version", self.min_update_version.as_deref());
        put_s("link", self.link.as_deref());
        put_s("comment", self.comment.as_deref());
        for (name, v) in [
            (
                "disable_auto_update_under_native",
                self.disable_under_native,
            ),
            ("allow_emulator", self.allow_emulator),
            ("allow_device", self.allow_device),
            ("allow_dev", self.allow_dev),
            ("allow_prod", self.allow_prod),
            ("allow_self_assign", self.allow_self_assign),
        ] {
            if let Some(v) = v {
                policy.insert(name.into(), AttrValue::Bool(v));
            }
        }
        ReleaseSpec {
            app_id: self.app.clone(),
            version: self.version.clone(),
            channel: self.channel.clone(),
            target: target_of(self.platform),
            source,
            checksum: self.checksum.clone(),
            encryption: self.session_key.as_ref().map(|k| Encryption {
                session_key: k.clone(),
                key_id: self.key_id.clone(),
            }),
            policy,
            code_check: !self.no_code_check,
        }
    }
}

fn target_of(p: PlatformArg) -> Target {
    match p {
        PlatformArg::All => Target::All,
        PlatformArg::Android => Target::Platform(crate::domain::protocol::Platform::Android),
        PlatformArg::Ios => Target::Platform(crate::domain::protocol::Platform::Ios),
        PlatformArg::Electron => Target::Platform(crate::domain::protocol::Platform::Electron),
    }
}

fn disable_str(d: DisableArg) -> &'static str {
    match d {
        DisableArg::None => "none",
        DisableArg::Patch => "patch",
        DisableArg::Minor => "minor",
        DisableArg::Major => "major",
        DisableArg::VersionNumber => "version_number",
    }
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Release(args) => release(args).await,
        Command::Stats(a) => {
            let stores = a.store.backend()?.operator_stores().await?;
            crate::cli::operator::print_stats(&stores, &a.app, a.json).await
        }
        Command::Pause(a) => {
            let r = &a.release;
            let stores = r.store.backend()?.operator_stores().await?;
            crate::cli::operator::pause(
                &stores,
                &r.app,
                &r.channel,
                target_of(r.platform),
                &a.reason,
            )
            .await
        }
        Command::Resume(r) => {
            let stores = r.store.backend()?.operator_stores().await?;
            crate::cli::operator::resume(&stores, &r.app, &r.channel, target_of(r.platform)).await
        }
        Command::Device(cmd) => {
            let (d, action) = match &cmd {
                DeviceCommand::SetChannel(a) => (
                    &a.device,
                    crate::cli::operator::DeviceAction::SetChannel(&a.channel),
                ),
                DeviceCommand::UnsetChannel(a) => {
                    (a, crate::cli::operator::DeviceAction::UnsetChannel)
                }
                DeviceCommand::Show(a) => (
                    &a.device,
                    crate::cli::operator::DeviceAction::Show { json: a.json },
                ),
            };
            let stores = d.store.backend()?.operator_stores().await?;
            crate::cli::operator::device(&stores, &d.app, &d.device, action).await
        }
    }
}

async fn release(args: Box<ReleaseArgs>) -> anyhow::Result<()> {
    let (store, bundles) = args.store.backend()?.writers(args.json).await?;
    let json = args.json;
    match publish(store.as_ref(), bundles.as_ref(), args.spec()).await {
        Ok(p) if json => {
            println!("{}", serde_json::to_string_pretty(&p)?);
            Ok(())
        }
        Ok(p) => {
            let what = match (&p.bundle, &p.url) {
                (Some(b), _) => format!(
                    "bundle {b} ({} bytes, sha256 {})",
                    p.size.unwrap_or(0),
                    p.checksum.as_deref().unwrap_or("")
                ),
                (_, Some(u)) => format!("external zip {u}"),
                _ => "a reset to the builtin assets".to_owned(),
            };
            let reused = if p.reused_bundle {
                " (bundle already uploaded, reused)"
            } else {
                ""
            };
            println!(
                "Released {} {} to channel {} on {}: {what}{reused}",
                p.app_id, p.version, p.channel, p.platform
            );
            Ok(())
        }
        Err(e) if json => {
            println!(
                "{}",
                serde_json::json!({ "error": "release_failed", "message": e.to_string() })
            );
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
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
    let app = crate::api::source::with_source(router(state), args.trust_proxy);
    crate::api::listener::serve(listener, app, limits, shutdown_signal()).await?;
    Ok(())
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
