//! The `updraft` command line: `serve`, `release` and the operator commands. Every operator
//! command opens its backend the same way (`OpArgs`: `--backend`, `--data`, `--table`, …, the
//! same flags and environment as `serve`) and prints the same way (`output::Report`: a table
//! or one JSON document with `--json`).

pub mod bundles;
pub mod operator;
pub mod output;
pub mod publish;
pub mod releases;
pub mod rollout;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::api::listener::ListenLimits;
use crate::api::router;
use crate::backend::{Backend, OperatorStores, ServeSettings};
use crate::cli::output::{Report, explain};
use crate::cli::publish::{BundleSource, Encryption, Published, ReleaseSpec, publish};
use crate::domain::protocol::Platform;
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
    /// Release a bundle (or `builtin`) to a channel, keeping the channel's policy.
    Release(Box<ReleaseArgs>),
    /// Point a channel back at the version it served before (or --to VERSION), without uploading.
    Rollback(RollbackArgs),
    /// Serve one channel's bundle on another (e.g. beta -> production), keeping the target's policy.
    Promote(PromoteArgs),
    /// What changed on the app's channels, when and by whom (newest first).
    History(HistoryArgs),
    /// Channels: their policy, and what they serve on each platform.
    #[command(subcommand)]
    Channel(ChannelCommand),
    /// Apps and their default channels.
    #[command(subcommand)]
    App(AppCommand),
    /// Uploaded bundles: list them, delete those nothing serves.
    #[command(subcommand)]
    Bundles(BundlesCommand),
    /// Installs, failures and pause state of every release of an app.
    Stats(AppArgs),
    /// Stop offering a release (devices get `release_paused`).
    Pause(PauseArgs),
    /// Lift a pause (manual or automatic); only later failures count towards the next one.
    Resume(ReleaseRef),
    /// Per-device channel overrides and state.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Staged rollouts: status, share, pause/resume/abort/complete, and the gate's pass.
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// Why a device gets (or does not get) an update: the decision from the live store, with
    /// every rule it passed or stopped at.
    Explain(ExplainArgs),
    /// Release health at a glance, with the levers beside it: a web page on loopback, behind
    /// a random token, acting with your own credentials.
    Dashboard(DashboardArgs),
}

#[derive(Debug, Args)]
pub struct DashboardArgs {
    #[command(flatten)]
    pub op: OpArgs,
    /// Loopback address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub addr: SocketAddr,
    /// Open the page in the default browser.
    #[arg(long)]
    pub open: bool,
}

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// The rollout of a channel: versions, share, state, gate and its evidence.
    Status(ReleaseRef),
    /// Set the share by hand (0.01 % steps); devices already in stay in when it grows.
    Set(RolloutSetArgs),
    /// No new device enters; devices on the rollout version stay on it.
    Pause(ReleaseRef),
    /// Let devices enter again (the gate's evidence starts afresh).
    Resume(ReleaseRef),
    /// Everyone is offered the stable version again.
    Abort(ReleaseRef),
    /// The rollout version becomes the channel's stable version.
    Complete(ReleaseRef),
    /// One pass of the health gate over every rollout (for cron; `serve` runs it on a timer).
    Tick(TickArgs),
}

#[derive(Debug, Args)]
pub struct RolloutSetArgs {
    #[command(flatten)]
    pub release: ReleaseRef,
    /// The share of devices on the rollout version, in percent (e.g. 5 or 0.25).
    #[arg(long)]
    pub percent: f64,
}

#[derive(Debug, Args)]
pub struct TickArgs {
    #[command(flatten)]
    pub op: OpArgs,
    /// Only this app's rollouts (default: every app).
    #[arg(long)]
    pub app: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub app: AppArgs,
    /// The device id (`getDeviceId()` in the app).
    #[arg(long)]
    pub device: String,
    #[arg(long, value_enum)]
    pub platform: DevicePlatformArg,
    /// The bundle the device runs (`builtin` for the store build's assets).
    #[arg(long, default_value = "builtin")]
    pub version_name: String,
    /// The native app's version (the store build).
    #[arg(long)]
    pub version_build: String,
    /// The channel the device asks for (`defaultChannel`).
    #[arg(long)]
    pub channel: Option<String>,
    #[arg(long)]
    pub plugin_version: Option<String>,
    /// The device is an emulator.
    #[arg(long)]
    pub emulator: bool,
    /// The app is a development build.
    #[arg(long)]
    pub dev: bool,
    /// The app's key_id (first 20 characters of its public key), for encrypted bundles.
    #[arg(long)]
    pub key_id: Option<String>,
}

/// `--rollout` and its gate, on `updraft release`.
#[derive(Debug, Args)]
pub struct RolloutArgs {
    /// Start a staged rollout: serve this version to PERCENT of devices (0.01 steps), the
    /// channel's current version to the rest.
    #[arg(long, value_name = "PERCENT")]
    pub rollout: Option<f64>,
    /// Shares the rollout advances through while healthy, e.g. 1,5,25,100 (default: none,
    /// the share changes only by hand).
    #[arg(long, requires = "rollout")]
    pub steps: Option<String>,
    /// Time between steps: 90, 90s, 30m, 1h, 1d (default 1h).
    #[arg(long, requires = "rollout")]
    pub step_every: Option<String>,
    /// Failure rate (0-1) the rollout version must stay below (default 0.05).
    #[arg(long, requires = "rollout")]
    pub max_failure_rate: Option<f64>,
    /// Devices that must have tried the rollout version before a step advances (default 100).
    #[arg(long, requires = "rollout")]
    pub min_devices: Option<u64>,
    /// What a failing rollout does to itself (default pause).
    #[arg(long, value_enum, requires = "rollout")]
    pub on_failure: Option<OnFailureArg>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OnFailureArg {
    Pause,
    Abort,
}

/// `90`, `90s`, `30m`, `1h`, `1d` as seconds.
pub fn parse_duration(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = digits
        .parse()
        .with_context(|| format!("{s:?} is not a duration such as 90s, 30m, 1h or 1d"))?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => anyhow::bail!("{s:?} is not a duration such as 90s, 30m, 1h or 1d"),
    };
    Ok(n * unit)
}

impl RolloutArgs {
    fn spec(&self) -> anyhow::Result<Option<crate::cli::publish::RolloutSpec>> {
        use crate::domain::rollout::{self as ro, Gate, OnFailure};
        let Some(percent) = self.rollout else {
            return Ok(None);
        };
        let basis_points =
            ro::parse_percent(percent).map_err(|e| anyhow::anyhow!("--rollout {e}"))?;
        let steps = match &self.steps {
            None => Vec::new(),
            Some(s) => ro::parse_steps(s).map_err(|e| anyhow::anyhow!("--steps: {e}"))?,
        };
        let max_failure_rate = self
            .max_failure_rate
            .unwrap_or(ro::DEFAULT_MAX_FAILURE_RATE);
        anyhow::ensure!(
            max_failure_rate > 0.0 && max_failure_rate < 1.0,
            "--max-failure-rate is a fraction between 0 and 1 (e.g. 0.05)"
        );
        Ok(Some(crate::cli::publish::RolloutSpec {
            basis_points,
            gate: Gate {
                steps,
                step_every_secs: match &self.step_every {
                    Some(s) => parse_duration(s)?,
                    None => ro::DEFAULT_STEP_EVERY_SECS,
                },
                max_failure_rate,
                min_devices: self.min_devices.unwrap_or(ro::DEFAULT_MIN_DEVICES),
                on_failure: match self.on_failure {
                    Some(OnFailureArg::Abort) => OnFailure::Abort,
                    _ => OnFailure::Pause,
                },
            },
        }))
    }
}

/// What every operator command takes: where the store is, and how to print.
#[derive(Debug, Args)]
pub struct OpArgs {
    #[command(flatten)]
    pub store: BackendArgs,
    /// Print one JSON document on stdout instead of a table or sentence.
    #[arg(long)]
    pub json: bool,
}

/// An operator command on one app.
#[derive(Debug, Args)]
pub struct AppArgs {
    #[command(flatten)]
    pub op: OpArgs,
    /// App id, as in capacitor.config (e.g. com.example.app).
    #[arg(long)]
    pub app: String,
}

/// One release item: app, channel and platform.
#[derive(Debug, Args)]
pub struct ReleaseRef {
    #[command(flatten)]
    pub app: AppArgs,
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

#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub release: ReleaseRef,
    /// The version to serve (a stored bundle, or `builtin`); default: the one served before.
    #[arg(long)]
    pub to: Option<String>,
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    #[command(flatten)]
    pub app: AppArgs,
    /// The channel whose bundle is promoted.
    #[arg(long)]
    pub from: String,
    /// The channel that will serve it.
    #[arg(long)]
    pub to: String,
    #[arg(long, value_enum, default_value = "all")]
    pub platform: PlatformArg,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub app: AppArgs,
    /// Only this channel.
    #[arg(long)]
    pub channel: Option<String>,
    /// At most this many entries.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

#[derive(Debug, Subcommand)]
pub enum ChannelCommand {
    /// Change a channel's policy without touching what it serves.
    Set(ChannelSetArgs),
    /// Every channel x platform: version, policy, pause state.
    List(AppArgs),
}

#[derive(Debug, Args)]
pub struct ChannelSetArgs {
    #[command(flatten)]
    pub app: AppArgs,
    #[arg(long)]
    pub channel: String,
    /// Only this platform's item (default: every item of the channel).
    #[arg(long, value_enum)]
    pub platform: Option<PlatformArg>,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Change only if the item is still at this revision (from `channel list --json`).
    #[arg(long)]
    pub expect_revision: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Set the channel devices get when they ask for none (per platform with --platform).
    Set(AppSetArgs),
    /// Every app in the store, with its default channels.
    List(OpArgs),
}

#[derive(Debug, Args)]
pub struct AppSetArgs {
    #[command(flatten)]
    pub app: AppArgs,
    #[arg(long)]
    pub default_channel: String,
    /// Only for devices of this platform (`default_channel_<platform>`).
    #[arg(long, value_enum)]
    pub platform: Option<DevicePlatformArg>,
}

#[derive(Debug, Subcommand)]
pub enum BundlesCommand {
    /// Stored bundles: version, size, checksum, upload time, which channels serve them.
    List(AppArgs),
    /// Delete a bundle's zip and item; refused while a channel serves it.
    Delete(BundleDeleteArgs),
}

#[derive(Debug, Args)]
pub struct BundleDeleteArgs {
    #[command(flatten)]
    pub app: AppArgs,
    #[arg(long = "version")]
    pub version: String,
}

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Put a device on a channel whatever it asks for (e.g. QA devices on beta).
    SetChannel(DeviceChannelArgs),
    /// Remove a device's channel override.
    UnsetChannel(DeviceArgs),
    /// Show what the server knows about a device.
    Show(DeviceArgs),
    /// Write the `device_overrides` marker of every app that has device overrides (once, for
    /// overrides set before updraft kept the marker: without it an update check may not read
    /// them).
    MarkOverrides(OpArgs),
}

#[derive(Debug, Args)]
pub struct DeviceArgs {
    #[command(flatten)]
    pub app: AppArgs,
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
    /// Seconds between passes of the rollouts' health gate (0 = never; run
    /// `updraft rollout tick` from cron instead).
    #[arg(long, env = "UPDRAFT_ROLLOUT_INTERVAL", default_value_t = 60)]
    pub rollout_interval: u64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PlatformArg {
    All,
    Android,
    Ios,
    Electron,
}

/// A device platform (no `all`).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DevicePlatformArg {
    Android,
    Ios,
    Electron,
}

impl DevicePlatformArg {
    pub(crate) fn platform(self) -> Platform {
        match self {
            Self::Android => Platform::Android,
            Self::Ios => Platform::Ios,
            Self::Electron => Platform::Electron,
        }
    }
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

/// Channel policy flags (design.md §3); absent flags keep what the channel has.
#[derive(Debug, Args)]
pub struct PolicyArgs {
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
    /// Devices may choose this channel with setChannel / defaultChannel (default false).
    #[arg(long)]
    pub allow_self_assign: Option<bool>,
    /// Pause the release automatically when devices report failures (default true).
    #[arg(long)]
    pub auto_pause: Option<bool>,
    /// Failure rate (0-1) above which the release is paused automatically (default 0.1).
    #[arg(long)]
    pub auto_pause_threshold: Option<f64>,
    /// Install attempts needed before an automatic pause is considered.
    #[arg(long)]
    pub auto_pause_min_attempts: Option<u64>,
    /// Seconds after a resume during which no automatic pause happens.
    #[arg(long)]
    pub auto_pause_cooldown: Option<u64>,
    /// Source networks failures must come from before an automatic pause.
    #[arg(long)]
    pub auto_pause_min_networks: Option<u64>,
    /// Devices one source network adds to the evidence, at most.
    #[arg(long)]
    pub auto_pause_devices_per_network: Option<u64>,
}

impl PolicyArgs {
    /// The attributes the flags set.
    pub fn to_item(&self) -> anyhow::Result<Item> {
        let mut policy = Item::new();
        if let Some(d) = self.disable_auto_update {
            policy.insert(
                "disable_auto_update".into(),
                AttrValue::S(disable_str(d).into()),
            );
        }
        if let Some(v) = &self.min_update_version {
            policy.insert("min_update_version".into(), AttrValue::S(v.clone()));
        }
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
            ("auto_pause", self.auto_pause),
        ] {
            if let Some(v) = v {
                policy.insert(name.into(), AttrValue::Bool(v));
            }
        }
        if let Some(t) = self.auto_pause_threshold {
            anyhow::ensure!(
                (0.0..=1.0).contains(&t),
                "--auto-pause-threshold is a failure rate between 0 and 1 (e.g. 0.1)"
            );
            let n = serde_json::Number::from_f64(t).context("--auto-pause-threshold")?;
            policy.insert("auto_pause_threshold".into(), AttrValue::N(n));
        }
        for (name, v) in [
            ("auto_pause_min_attempts", self.auto_pause_min_attempts),
            ("auto_pause_cooldown", self.auto_pause_cooldown),
            ("auto_pause_min_networks", self.auto_pause_min_networks),
            (
                "auto_pause_devices_per_network",
                self.auto_pause_devices_per_network,
            ),
        ] {
            if let Some(v) = v {
                policy.insert(name.into(), AttrValue::N(v.into()));
            }
        }
        Ok(policy)
    }
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").args(["dir", "zip", "url"])))]
pub struct ReleaseArgs {
    #[command(flatten)]
    pub app: AppArgs,
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
    #[command(flatten)]
    pub policy: PolicyArgs,
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
    /// Release only if the channel's item is still at this revision (from `channel list --json`).
    #[arg(long)]
    pub expect_revision: Option<u64>,
    /// Delta updates (devices download only changed files); default: the app's `delta`
    /// attribute, else true. Encrypted zips are always zip-only.
    #[arg(long, value_name = "true|false", action = clap::ArgAction::Set)]
    pub delta: Option<bool>,
    #[command(flatten)]
    pub rollout: RolloutArgs,
}

impl ReleaseArgs {
    fn spec(&self) -> anyhow::Result<ReleaseSpec> {
        let source = match (&self.dir, &self.zip, &self.url) {
            (Some(d), _, _) => BundleSource::Dir(d.clone()),
            (_, Some(z), _) => BundleSource::Zip(z.clone()),
            (_, _, Some(u)) => BundleSource::ExternalUrl(u.clone()),
            _ => BundleSource::None,
        };
        let mut policy = self.policy.to_item()?;
        for (name, v) in [("link", &self.link), ("comment", &self.comment)] {
            if let Some(v) = v {
                policy.insert(name.into(), AttrValue::S(v.clone()));
            }
        }
        Ok(ReleaseSpec {
            app_id: self.app.app.clone(),
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
            expect_revision: self.expect_revision,
            delta: self.delta,
            rollout: self.rollout.spec()?,
        })
    }
}

pub(crate) fn target_of(p: PlatformArg) -> Target {
    match p {
        PlatformArg::All => Target::All,
        PlatformArg::Android => Target::Platform(Platform::Android),
        PlatformArg::Ios => Target::Platform(Platform::Ios),
        PlatformArg::Electron => Target::Platform(Platform::Electron),
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

impl Command {
    /// The command's store and output flags, its name for JSON errors, and whether it may
    /// create a store (only `release` does; `serve` has its own path).
    fn op(&self) -> (&OpArgs, &'static str, bool) {
        match self {
            Command::Serve(_) => unreachable!("serve is not an operator command"),
            Command::Dashboard(a) => (&a.op, "dashboard", false),
            Command::Release(a) => (&a.app.op, "release", true),
            Command::Rollback(a) => (&a.release.app.op, "rollback", false),
            Command::Promote(a) => (&a.app.op, "promote", false),
            Command::History(a) => (&a.app.op, "history", false),
            Command::Channel(ChannelCommand::Set(a)) => (&a.app.op, "channel_set", false),
            Command::Channel(ChannelCommand::List(a)) => (&a.op, "channel_list", false),
            Command::App(AppCommand::Set(a)) => (&a.app.op, "app_set", false),
            Command::App(AppCommand::List(a)) => (a, "app_list", false),
            Command::Bundles(BundlesCommand::List(a)) => (&a.op, "bundles_list", false),
            Command::Bundles(BundlesCommand::Delete(a)) => (&a.app.op, "bundles_delete", false),
            Command::Stats(a) => (&a.op, "stats", false),
            Command::Pause(a) => (&a.release.app.op, "pause", false),
            Command::Resume(a) => (&a.app.op, "resume", false),
            Command::Device(DeviceCommand::SetChannel(a)) => {
                (&a.device.app.op, "device_set_channel", false)
            }
            Command::Device(DeviceCommand::UnsetChannel(a)) => {
                (&a.app.op, "device_unset_channel", false)
            }
            Command::Device(DeviceCommand::Show(a)) => (&a.app.op, "device_show", false),
            Command::Device(DeviceCommand::MarkOverrides(a)) => (a, "device_mark_overrides", false),
            Command::Rollout(c) => match c {
                RolloutCommand::Status(a) => (&a.app.op, "rollout_status", false),
                RolloutCommand::Set(a) => (&a.release.app.op, "rollout_set", false),
                RolloutCommand::Pause(a) => (&a.app.op, "rollout_pause", false),
                RolloutCommand::Resume(a) => (&a.app.op, "rollout_resume", false),
                RolloutCommand::Abort(a) => (&a.app.op, "rollout_abort", false),
                RolloutCommand::Complete(a) => (&a.app.op, "rollout_complete", false),
                RolloutCommand::Tick(a) => (&a.op, "rollout_tick", false),
            },
            Command::Explain(a) => (&a.app.op, "explain", false),
        }
    }
}

/// Runs a parsed command line. Errors come back as one sentence (see `output::explain`);
/// with `--json` they are also printed as `{"error", "message"}` on stdout.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Serve(args) = cli.command {
        return serve(args).await.map_err(|e| anyhow::anyhow!(explain(&e)));
    }
    let (op, name, create) = cli.command.op();
    let json = op.json;
    let result = async {
        if let Command::Dashboard(args) = &cli.command {
            crate::dashboard::require_loopback(args.addr)?;
        }
        let stores = op.store.backend()?.operator_stores(create, json).await?;
        if let Command::Dashboard(args) = &cli.command {
            return dashboard(args, stores).await;
        }
        execute(&cli.command, &stores).await
    }
    .await;
    match result {
        // The dashboard printed its one JSON line when it started.
        Ok(report) if report.json.is_null() && report.text.is_empty() => Ok(()),
        Ok(report) => {
            report.print(json);
            Ok(())
        }
        Err(e) => {
            let message = explain(&e);
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "error": format!("{name}_failed"), "message": message })
                );
            }
            Err(anyhow::anyhow!(message))
        }
    }
}

/// One operator command on opened stores.
async fn execute(command: &Command, stores: &OperatorStores) -> anyhow::Result<Report> {
    use crate::cli::operator::{DeviceAction, device, mark_overrides, pause, resume, stats};
    use crate::cli::releases::{
        app_list, app_set, channel_list, channel_set, history, promote, rollback,
    };
    match command {
        Command::Serve(_) | Command::Dashboard(_) => unreachable!("handled by run"),
        Command::Release(a) => release(a, stores).await,
        Command::Rollback(a) => {
            let r = &a.release;
            rollback(
                stores,
                &r.app.app,
                &r.channel,
                target_of(r.platform),
                a.to.as_deref(),
            )
            .await
        }
        Command::Promote(a) => {
            promote(stores, &a.app.app, &a.from, &a.to, target_of(a.platform)).await
        }
        Command::History(a) => history(stores, &a.app.app, a.channel.as_deref(), a.limit).await,
        Command::Channel(ChannelCommand::Set(a)) => {
            channel_set(
                stores,
                &a.app.app,
                &a.channel,
                a.platform.map(target_of),
                &a.policy.to_item()?,
                a.expect_revision,
            )
            .await
        }
        Command::Channel(ChannelCommand::List(a)) => channel_list(stores, &a.app).await,
        Command::App(AppCommand::Set(a)) => {
            app_set(
                stores,
                &a.app.app,
                &a.default_channel,
                a.platform.map(DevicePlatformArg::platform),
            )
            .await
        }
        Command::App(AppCommand::List(_)) => app_list(stores).await,
        Command::Bundles(BundlesCommand::List(a)) => {
            crate::cli::bundles::list(stores, &a.app).await
        }
        Command::Bundles(BundlesCommand::Delete(a)) => {
            crate::cli::bundles::delete(stores, &a.app.app, &a.version).await
        }
        Command::Stats(a) => stats(stores, &a.app).await,
        Command::Pause(a) => {
            let r = &a.release;
            pause(
                stores,
                &r.app.app,
                &r.channel,
                target_of(r.platform),
                &a.reason,
            )
            .await
        }
        Command::Resume(r) => resume(stores, &r.app.app, &r.channel, target_of(r.platform)).await,
        Command::Device(cmd) => {
            let (d, action) = match cmd {
                DeviceCommand::MarkOverrides(_) => return mark_overrides(stores).await,
                DeviceCommand::SetChannel(a) => (&a.device, DeviceAction::SetChannel(&a.channel)),
                DeviceCommand::UnsetChannel(a) => (a, DeviceAction::UnsetChannel),
                DeviceCommand::Show(a) => (a, DeviceAction::Show),
            };
            device(stores, &d.app.app, &d.device, action).await
        }
        Command::Rollout(c) => crate::cli::rollout::run(c, stores).await,
        Command::Explain(a) => crate::cli::rollout::explain(a, stores).await,
    }
}

/// `updraft dashboard`: prints the URL (with `--json`, as one JSON line), then serves until
/// ctrl-c.
async fn dashboard(args: &DashboardArgs, stores: OperatorStores) -> anyhow::Result<Report> {
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
    crate::dashboard::serve(bound).await?;
    Ok(Report {
        json: serde_json::Value::Null,
        text: String::new(),
    })
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

async fn release(args: &ReleaseArgs, stores: &OperatorStores) -> anyhow::Result<Report> {
    let spec = args.spec()?;
    let who = stores.identity.who().await?;
    let p = publish(
        stores.items.as_ref(),
        stores.history.as_ref(),
        stores.bundles()?,
        spec,
        &who,
    )
    .await?;
    Report::new(&p, release_text(&p))
}

fn release_text(p: &Published) -> String {
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
    let mut text = format!(
        "Released {} {} to channel {} on {}: {what}{reused}.",
        p.app_id, p.version, p.channel, p.platform
    );
    if let Some(prev) = &p.previous_version {
        text.push_str(&format!(" It served {prev} before."));
    }
    if !p.kept_policy.is_empty() {
        text.push_str(&format!(
            " Kept the channel's policy: {}.",
            p.kept_policy.join(", ")
        ));
    }
    text
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
        match crate::rollouts::tick(&stores, None, crate::rollouts::now_unix()).await {
            Ok(rows) => {
                let changed = rows.iter().filter(|r| r.action != "hold").count();
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
