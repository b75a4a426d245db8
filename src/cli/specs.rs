//! How flags become what the operations take: a release's spec, a policy item, a rollout's
//! gate, the device `explain` asks about, a backend, and each command's name and store flags.

use anyhow::Context;

use crate::cli::args::*;
use crate::domain::item::{Item, ItemExt, attr};
use crate::domain::keys::Target;
use crate::domain::protocol::Platform;
use crate::domain::release::{
    DEFAULT_MAX_FAILURE_RATE, DEFAULT_MIN_DEVICES, DEFAULT_STEP_EVERY_SECS, Gate, OnFailure,
};
use crate::domain::share::{parse_percent, parse_steps};
use crate::ops::explain::DeviceQuestion;
use crate::ops::publish::{BundleSource, Encryption, ReleaseSpec, RolloutSpec};
use crate::runtime::backend::Backend;

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
    fn spec(&self) -> anyhow::Result<Option<RolloutSpec>> {
        let Some(percent) = self.rollout else {
            return Ok(None);
        };
        let basis_points = parse_percent(percent).map_err(|e| anyhow::anyhow!("--rollout {e}"))?;
        let steps = match &self.steps {
            None => Vec::new(),
            Some(s) => parse_steps(s).map_err(|e| anyhow::anyhow!("--steps: {e}"))?,
        };
        let max_failure_rate = self.max_failure_rate.unwrap_or(DEFAULT_MAX_FAILURE_RATE);
        anyhow::ensure!(
            max_failure_rate > 0.0 && max_failure_rate < 1.0,
            "--max-failure-rate is a fraction between 0 and 1 (e.g. 0.05)"
        );
        Ok(Some(RolloutSpec {
            basis_points,
            gate: Gate {
                steps,
                step_every_secs: match &self.step_every {
                    Some(s) => parse_duration(s)?,
                    None => DEFAULT_STEP_EVERY_SECS,
                },
                max_failure_rate,
                min_devices: self.min_devices.unwrap_or(DEFAULT_MIN_DEVICES),
                on_failure: match self.on_failure {
                    Some(OnFailureArg::Abort) => OnFailure::Abort,
                    _ => OnFailure::Pause,
                },
            },
        }))
    }
}

impl BackendArgs {
    pub fn backend(&self) -> anyhow::Result<Backend> {
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

    pub fn describe(&self) -> String {
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

impl DevicePlatformArg {
    pub fn platform(self) -> Platform {
        match self {
            Self::Android => Platform::Android,
            Self::Ios => Platform::Ios,
            Self::Electron => Platform::Electron,
        }
    }
}

impl PolicyArgs {
    /// The attributes the flags set.
    pub fn to_item(&self) -> anyhow::Result<Item> {
        let mut policy = Item::new();
        if let Some(d) = self.disable_auto_update {
            policy.set_text(attr::DISABLE_AUTO_UPDATE, disable_str(d));
        }
        if let Some(v) = &self.min_update_version {
            policy.set_text(attr::MIN_UPDATE_VERSION, v);
        }
        for (name, v) in [
            (
                attr::DISABLE_AUTO_UPDATE_UNDER_NATIVE,
                self.disable_under_native,
            ),
            (attr::ALLOW_EMULATOR, self.allow_emulator),
            (attr::ALLOW_DEVICE, self.allow_device),
            (attr::ALLOW_DEV, self.allow_dev),
            (attr::ALLOW_PROD, self.allow_prod),
            (attr::ALLOW_SELF_ASSIGN, self.allow_self_assign),
            (attr::AUTO_PAUSE, self.auto_pause),
        ] {
            if let Some(v) = v {
                policy.set_flag(name, v);
            }
        }
        if let Some(t) = self.auto_pause_threshold {
            anyhow::ensure!(
                (0.0..=1.0).contains(&t) && t.is_finite(),
                "--auto-pause-threshold is a failure rate between 0 and 1 (e.g. 0.1)"
            );
            policy.set_number(attr::AUTO_PAUSE_THRESHOLD, t);
        }
        for (name, v) in [
            (attr::AUTO_PAUSE_MIN_ATTEMPTS, self.auto_pause_min_attempts),
            (attr::AUTO_PAUSE_COOLDOWN, self.auto_pause_cooldown),
            (attr::AUTO_PAUSE_MIN_NETWORKS, self.auto_pause_min_networks),
            (
                attr::AUTO_PAUSE_DEVICES_PER_NETWORK,
                self.auto_pause_devices_per_network,
            ),
        ] {
            if let Some(v) = v {
                policy.set_whole(name, v);
            }
        }
        Ok(policy)
    }
}

impl ReleaseArgs {
    pub fn spec(&self) -> anyhow::Result<ReleaseSpec> {
        let source = match (&self.dir, &self.zip, &self.url) {
            (Some(d), _, _) => BundleSource::Dir(d.clone()),
            (_, Some(z), _) => BundleSource::Zip(z.clone()),
            (_, _, Some(u)) => BundleSource::ExternalUrl(u.clone()),
            _ => BundleSource::None,
        };
        let mut policy = self.policy.to_item()?;
        for (name, v) in [(attr::LINK, &self.link), (attr::COMMENT, &self.comment)] {
            if let Some(v) = v {
                policy.set_text(name, v);
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

pub fn target_of(p: PlatformArg) -> Target {
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
    pub fn op(&self) -> (&OpArgs, &'static str, bool) {
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

impl ExplainArgs {
    /// The device `explain` asks about.
    pub fn question(&self) -> DeviceQuestion {
        DeviceQuestion {
            app_id: self.app.app.clone(),
            device_id: self.device.clone(),
            platform: self.platform.platform(),
            version_name: self.version_name.clone(),
            version_build: self.version_build.clone(),
            channel: self.channel.clone(),
            plugin_version: self.plugin_version.clone(),
            emulator: self.emulator,
            dev: self.dev,
            key_id: self.key_id.clone(),
        }
    }
}
