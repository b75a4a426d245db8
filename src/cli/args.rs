//! The command line's shape: every command and flag, as clap reads them. What they become is
//! `specs`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    /// Loopback address to listen on (port 0: any free port). Default: a random loopback
    /// address of its own (127.x.y.z), so its cookie never reaches your other local servers.
    #[arg(long)]
    pub addr: Option<SocketAddr>,
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
