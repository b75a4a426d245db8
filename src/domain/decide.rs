//! "What does this device get?" (design.md §4), as a plain function of the validated request
//! and the app's releases. No I/O, no clock: everything here is unit-tested without AWS.

use std::borrow::Cow;

use semver::Version;

use crate::domain::device::DeviceState;
use crate::domain::protocol::{RefusalCode, UpdateRequest};
use crate::domain::release::{DisableAutoUpdate, Release, RolloutState};
use crate::domain::rollout;
use crate::domain::share::percent_text;
use crate::domain::snapshot::AppSnapshot;
use crate::domain::trace::{NoTrace, Tracer};
use crate::domain::version::ReleaseVersion;

/// The outcome of an update check.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision<'a> {
    /// Download this release.
    Offer {
        channel: &'a str,
        release: &'a Release,
    },
    /// Go back to the store build's assets (`{"version":"builtin"}`).
    Reset { channel: &'a str },
    /// No download; the answer carries `error`, `message` and `kind`.
    Refuse(Refusal<'a>),
}

/// A refusal with what the plugin shows of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal<'a> {
    pub code: RefusalCode,
    pub message: Cow<'a, str>,
    /// The channel it was decided on, when one was chosen (for logs).
    pub channel: Option<&'a str>,
    /// The held-back version, for policy blocks.
    pub version: Option<&'a str>,
    /// The native version it was compared with, for version gates.
    pub old: Option<Version>,
}

impl<'a> Refusal<'a> {
    pub fn new(code: RefusalCode, message: impl Into<Cow<'a, str>>) -> Self {
        Refusal {
            code,
            message: message.into(),
            channel: None,
            version: None,
            old: None,
        }
    }

    fn on(mut self, channel: &'a str) -> Self {
        self.channel = Some(channel);
        self
    }
}

impl Decision<'_> {
    /// A short name for logs and metrics: `offer`, `reset` or the refusal code.
    pub fn label(&self) -> &'static str {
        match self {
            Decision::Offer { .. } => "offer",
            Decision::Reset { .. } => "reset",
            Decision::Refuse(r) => r.code.as_str(),
        }
    }

    pub fn channel(&self) -> Option<&str> {
        match self {
            Decision::Offer { channel, .. } | Decision::Reset { channel } => Some(channel),
            Decision::Refuse(r) => r.channel,
        }
    }
}

/// Decides what a device gets, following design.md §4 in order.
pub fn decide_update<'a>(
    req: &UpdateRequest<'_>,
    app: Option<&'a AppSnapshot>,
    device: Option<&DeviceState>,
) -> Decision<'a> {
    decide_traced(req, app, device, &mut NoTrace)
}

/// The device's item is needed to decide: the answer could depend on its override or failed
/// versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeedsDevice;

/// Decides without the device's item, when the answer cannot depend on it: the same decision
/// `decide_update` makes with any device item, or `NeedsDevice`. An update check then reads
/// the device only for apps with device overrides (`AppSnapshot::device_overrides`), for a
/// device in an active rollout's cohort, and for a check past the "already up to date" rule
/// (where a failed version would be refused): most checks cost no device read.
pub fn decide_without_device<'a>(
    req: &UpdateRequest<'_>,
    app: Option<&'a AppSnapshot>,
) -> Result<Decision<'a>, NeedsDevice> {
    decide_inner(req, app, Unread, &mut NoTrace)
}

/// The device's item as the decision sees it: read (`Read`, `None` when the device has no
/// item, never missing), or not read (`Unread`: every rule that would look at it stops with
/// `NeedsDevice`).
trait DeviceView: Copy {
    type Missing;
    /// The device's override, when it applies.
    fn overridden(self, app: &AppSnapshot) -> Result<Option<&str>, Self::Missing>;
    /// Whether `version` failed on this device.
    fn failed(self, version: &str) -> Result<bool, Self::Missing>;
}

#[derive(Clone, Copy)]
struct Read<'d>(Option<&'d DeviceState>);

#[derive(Clone, Copy)]
struct Unread;

impl DeviceView for Read<'_> {
    type Missing = std::convert::Infallible;
    fn overridden(self, app: &AppSnapshot) -> Result<Option<&str>, Self::Missing> {
        Ok(self
            .0
            .filter(|d| app.honours_override(d))
            .and_then(|d| d.channel.as_deref())
            .and_then(|c| app.channels.get_key_value(c))
            .map(|(name, _)| name.as_str()))
    }
    fn failed(self, version: &str) -> Result<bool, Self::Missing> {
        Ok(self.0.is_some_and(|d| d.failed_versions.contains(version)))
    }
}

impl DeviceView for Unread {
    type Missing = NeedsDevice;
    /// An app without device overrides has none to apply (its writers keep the marker).
    fn overridden(self, app: &AppSnapshot) -> Result<Option<&str>, NeedsDevice> {
        if app.device_overrides {
            Err(NeedsDevice)
        } else {
            Ok(None)
        }
    }
    fn failed(self, _: &str) -> Result<bool, NeedsDevice> {
        Err(NeedsDevice)
    }
}

/// `decide_update`, reporting every rule it passes or stops at to `t` (`updraft explain`).
pub fn decide_traced<'a, T: Tracer>(
    req: &UpdateRequest<'_>,
    app: Option<&'a AppSnapshot>,
    device: Option<&DeviceState>,
    t: &mut T,
) -> Decision<'a> {
    let d = match decide_inner(req, app, Read(device), t) {
        Ok(d) => d,
        Err(never) => match never {},
    };
    t.step("decision", || match &d {
        Decision::Offer { release, .. } => format!("offer {}", release.version_text),
        Decision::Reset { .. } => "reset to builtin".to_owned(),
        Decision::Refuse(r) => format!("{}: {}", r.code.as_str(), r.message),
    });
    d
}

fn decide_inner<'a, T: Tracer, D: DeviceView>(
    req: &UpdateRequest<'_>,
    app: Option<&'a AppSnapshot>,
    device: D,
    t: &mut T,
) -> Result<Decision<'a>, D::Missing> {
    let Some(app) = app else {
        t.step("app", || "the store has no items for this app".to_owned());
        return Ok(Decision::Refuse(Refusal::new(
            RefusalCode::AppNotFound,
            "This app has no releases on this server",
        )));
    };

    let channel = match choose_channel(req, app, device, t)? {
        Ok(channel) => channel,
        Err(refusal) => return Ok(Decision::Refuse(refusal)),
    };
    let release = match app.release(channel, req.platform) {
        None => {
            t.step("release", || {
                format!("{channel} has no release for {}", req.platform.as_str())
            });
            return Ok(Decision::Refuse(
                Refusal::new(
                    RefusalCode::NoChannel,
                    format!(
                        "Channel {channel:?} has no release for platform {}",
                        req.platform.as_str()
                    ),
                )
                .on(channel),
            ));
        }
        Some(Err(e)) => return Ok(Decision::Refuse(invalid_release(channel, e))),
        Some(Ok(r)) => r,
    };
    t.step("release", || {
        format!("{channel} serves {}", release.version_text)
    });
    let release = match pick_version(req, release, device, t)? {
        Ok(r) => r,
        Err(e) => return Ok(Decision::Refuse(invalid_release(channel, e))),
    };

    // §4.3 / §4.5: already there.
    match &release.version {
        ReleaseVersion::Builtin if req.on_builtin() => {
            return Ok(Decision::Refuse(
                Refusal::new(
                    RefusalCode::AlreadyOnBuiltin,
                    "Already on the builtin version",
                )
                .on(channel),
            ));
        }
        ReleaseVersion::Bundle(v) if is_running(req, v, &release.version_text) => {
            t.step("up_to_date", || {
                format!("the device runs {}", release.version_text)
            });
            return Ok(Decision::Refuse(
                Refusal::new(
                    RefusalCode::NoNewVersionAvailable,
                    "No new version available",
                )
                .on(channel),
            ));
        }
        _ => {}
    }

    // A version that failed on this device is not offered to it again (the plugin would
    // otherwise download, fail and roll back on every start); a newer release is.
    if device.failed(&release.version_text)? {
        t.step("failed_on_device", || {
            format!("{} failed on this device before", release.version_text)
        });
        return Ok(Decision::Refuse(Refusal {
            version: Some(&release.version_text),
            ..Refusal::new(
                RefusalCode::VersionFailedOnDevice,
                "This version failed on this device; waiting for a newer release",
            )
            .on(channel)
        }));
    }

    t.step("up_to_date", || {
        format!(
            "the device runs {}, not {}",
            req.version_name_raw, release.version_text
        )
    });
    Ok(gates(req, release, channel, t))
}

/// §4.4: the release's gates, in order, for a device that does not run it yet: pause, the
/// version gates, the audience, then a reset or the offer (with its encryption check).
fn gates<'a, T: Tracer>(
    req: &UpdateRequest<'_>,
    release: &'a Release,
    channel: &'a str,
    t: &mut T,
) -> Decision<'a> {
    if release.paused {
        t.step("paused", || "the release is paused".to_owned());
        let message = match &release.pause_reason {
            Some(why) => Cow::Owned(format!("This release is paused: {why}")),
            None => Cow::Borrowed("This release is paused"),
        };
        return Decision::Refuse(Refusal {
            version: Some(&release.version_text),
            ..Refusal::new(RefusalCode::ReleasePaused, message).on(channel)
        });
    }
    if let ReleaseVersion::Bundle(bundle) = &release.version
        && let Some(refusal) = version_gate(release, bundle, &req.version_build)
    {
        t.step("version_gate", || {
            format!(
                "blocked: disable_auto_update {} against native {}",
                release.disable_auto_update.as_str(),
                req.version_build
            )
        });
        return Decision::Refuse(refusal.on(channel));
    }
    t.step("version_gate", || {
        format!(
            "passed: disable_auto_update {} against native {}",
            release.disable_auto_update.as_str(),
            req.version_build
        )
    });
    let audience = if req.is_prod && !release.allow_prod {
        Some((
            RefusalCode::DisableProdBuild,
            "This channel does not serve production builds",
        ))
    } else if !req.is_prod && !release.allow_dev {
        Some((
            RefusalCode::DisableDevBuild,
            "This channel does not serve development builds",
        ))
    } else if !req.is_emulator && !release.allow_device {
        Some((
            RefusalCode::DisableDevice,
            "This channel does not serve physical devices",
        ))
    } else if req.is_emulator && !release.allow_emulator {
        Some((
            RefusalCode::DisableEmulator,
            "This channel does not serve emulators",
        ))
    } else {
        None
    };
    if let Some((code, message)) = audience {
        t.step("audience", || format!("blocked: {message}"));
        return Decision::Refuse(Refusal::new(code, message).on(channel));
    }
    t.step("audience", || {
        format!(
            "passed (is_prod {}, is_emulator {})",
            req.is_prod, req.is_emulator
        )
    });

    if release.version == ReleaseVersion::Builtin {
        return Decision::Reset { channel };
    }

    // Encryption must match the app: a plain bundle fails `session_key_required` on an app
    // with a publicKey, an encrypted one cannot be opened without it (protocol.md §3).
    if let Some(refusal) = key_gate(req, release) {
        t.step("encryption", || format!("blocked: {}", refusal.message));
        return Decision::Refuse(refusal.on(channel));
    }
    t.step("encryption", || "passed".to_owned());
    Decision::Offer { channel, release }
}

/// §4.2: the device's channel: its override first (an operator's, or an old plugin's
/// setChannel where the app allows those), then the channel it asks for, which must be the
/// default or allow self-assignment, else the app's default for its platform.
#[allow(clippy::type_complexity)]
fn choose_channel<'a, T: Tracer, D: DeviceView>(
    req: &UpdateRequest<'_>,
    app: &'a AppSnapshot,
    device: D,
    t: &mut T,
) -> Result<Result<&'a str, Refusal<'a>>, D::Missing> {
    let overridden = device.overridden(app)?;
    // The app's default for this platform: `default_channel_<platform>`, else `default_channel`.
    let default_channel = app.default_channel_for(req.platform);
    let channel: &'a str = match (overridden, req.default_channel.as_deref()) {
        (Some(name), _) => name,
        (None, Some(asked)) if asked != default_channel => {
            let Some((name, entry)) = app
                .channels
                .get_key_value(asked)
                .and_then(|(name, c)| Some((name.as_str(), c.for_platform(req.platform)?)))
            else {
                return Ok(Err(Refusal::new(
                    RefusalCode::NoChannel,
                    format!(
                        "Channel {asked:?} does not exist for platform {}",
                        req.platform.as_str()
                    ),
                )));
            };
            match entry {
                Ok(r) if r.allow_self_assign => name,
                Ok(_) => {
                    return Ok(Err(Refusal::new(
                        RefusalCode::NoChannel,
                        format!("Channel {asked:?} does not allow devices to assign themselves"),
                    )));
                }
                Err(e) => return Ok(Err(invalid_release(name, e))),
            }
        }
        (None, _) => default_channel,
    };
    t.step("channel", || {
        match (overridden, req.default_channel.as_deref()) {
            (Some(_), _) => format!("{channel} (the device's override)"),
            (None, Some(asked)) if asked != default_channel => {
                format!("{channel} (asked for by the device; it allows self-assignment)")
            }
            _ => format!(
                "{channel} (the app's default for {})",
                req.platform.as_str()
            ),
        }
    });
    Ok(Ok(channel))
}

/// Which version of the release item this device is served: the rollout version while its
/// rollout is active and the device is in the cohort (and the version has not failed on it),
/// or while paused and the device already runs it; the stable version otherwise.
#[allow(clippy::type_complexity)]
fn pick_version<'a, T: Tracer, D: DeviceView>(
    req: &UpdateRequest<'_>,
    release: &'a Release,
    device: D,
    t: &mut T,
) -> Result<Result<&'a Release, &'a crate::domain::item::ItemError>, D::Missing> {
    let rollout = match &release.rollout {
        None => return Ok(Ok(release)),
        Some(Err(e)) => return Ok(Err(e)),
        Some(Ok(r)) => r,
    };
    let candidate = &rollout.release;
    let share = || percent_text(rollout.basis_points);
    let runs_it = || match &candidate.version {
        ReleaseVersion::Bundle(v) => is_running(req, v, &candidate.version_text),
        ReleaseVersion::Builtin => req.on_builtin(),
    };
    let chosen = match rollout.state {
        RolloutState::Aborted => {
            t.step("rollout", || {
                format!("{} was aborted: stable version", candidate.version_text)
            });
            release
        }
        RolloutState::Paused if runs_it() => {
            t.step("rollout", || {
                format!(
                    "{} is paused; the device already runs it and stays on it",
                    candidate.version_text
                )
            });
            candidate
        }
        RolloutState::Paused => {
            t.step("rollout", || {
                format!(
                    "{} is paused at {}: no new device enters",
                    candidate.version_text,
                    share()
                )
            });
            release
        }
        RolloutState::Active => {
            let bucket = rollout::bucket(&rollout.id, &req.device_id);
            let inside = bucket.is_some_and(|b| b < rollout.basis_points);
            // Only a device inside the cohort is asked about its failed versions.
            let failed = inside && device.failed(&candidate.version_text)?;
            t.step("rollout", || {
                let place = match bucket {
                    Some(b) => format!("bucket {} (of 10000)", b),
                    None => "no bucket (malformed device id)".to_owned(),
                };
                let verdict = match (inside, failed) {
                    (true, false) => "in: rollout version",
                    (true, true) => "in, but it failed on this device: stable version",
                    (false, _) => "outside: stable version",
                };
                format!(
                    "{} at {} ({} basis points); device {place}: {verdict}",
                    candidate.version_text,
                    share(),
                    rollout.basis_points
                )
            });
            if inside && !failed {
                candidate
            } else {
                release
            }
        }
    };
    Ok(Ok(chosen))
}

/// The device already runs `version`: exact text as the plugin compares it, or the same semver
/// (a device on builtin runs its native version, protocol.md §9 trap 9).
fn is_running(req: &UpdateRequest<'_>, version: &Version, text: &str) -> bool {
    if req.on_builtin() {
        return &req.version_build == version;
    }
    req.version_name_raw == text
        || Version::parse(&req.version_name_raw).is_ok_and(|v| &v == version)
}

fn invalid_release<'a>(channel: &'a str, e: &crate::domain::item::ItemError) -> Refusal<'a> {
    Refusal::new(
        RefusalCode::InvalidRelease,
        format!("The release of channel {channel:?} is misconfigured: {e}"),
    )
    .on(channel)
}

/// The `disable_auto_update` and under-native gates, against the native `version_build`.
fn version_gate<'a>(
    release: &'a Release,
    bundle: &Version,
    native: &Version,
) -> Option<Refusal<'a>> {
    let block = |code, message: &'a str| {
        Some(Refusal {
            version: Some(release.version_text.as_str()),
            old: Some(native.clone()),
            ..Refusal::new(code, message)
        })
    };
    match release.disable_auto_update {
        DisableAutoUpdate::None => {}
        DisableAutoUpdate::Major if bundle.major > native.major => {
            return block(
                RefusalCode::DisableAutoUpdateToMajor,
                "Cannot upgrade major version",
            );
        }
        DisableAutoUpdate::Minor
            if bundle.major != native.major || bundle.minor != native.minor =>
        {
            return block(
                RefusalCode::DisableAutoUpdateToMinor,
                "Cannot upgrade minor version",
            );
        }
        DisableAutoUpdate::Patch
            if bundle.major != native.major
                || bundle.minor != native.minor
                || bundle.patch != native.patch =>
        {
            return block(
                RefusalCode::DisableAutoUpdateToPatch,
                "Cannot upgrade patch version",
            );
        }
        DisableAutoUpdate::VersionNumber => match &release.min_update_version {
            None => {
                return Some(Refusal::new(
                    RefusalCode::MisconfiguredChannel,
                    "disable_auto_update is version_number but min_update_version is not set",
                ));
            }
            Some(min) if min > native => {
                return block(
                    RefusalCode::DisableAutoUpdateToMetadata,
                    "The native version is below this release's min_update_version",
                );
            }
            Some(_) => {}
        },
        _ => {}
    }
    if release.disable_auto_update_under_native && bundle < native {
        return block(
            RefusalCode::DisableAutoUpdateUnderNative,
            "Cannot install a bundle older than the native version",
        );
    }
    None
}

fn key_gate<'a>(req: &UpdateRequest<'_>, release: &'a Release) -> Option<Refusal<'a>> {
    let message = match (&release.session_key, req.key_id.as_deref()) {
        (Some(_), None) => "This bundle is encrypted but the app has no publicKey",
        (Some(_), Some(device)) => match &release.key_id {
            Some(k) if k != device => {
                "This bundle is encrypted with another key than the app's publicKey"
            }
            _ => return None,
        },
        (None, Some(_)) => "The app has a publicKey but this bundle is not encrypted",
        (None, None) => return None,
    };
    Some(Refusal {
        version: Some(release.version_text.as_str()),
        ..Refusal::new(RefusalCode::KeyIdMismatch, message)
    })
}

#[cfg(test)]
mod tests {
    /// Parses a test body that lives for the whole test.
    fn leak_parse(body: impl Into<String>) -> crate::domain::protocol::UpdateRequest<'static> {
        crate::domain::protocol::parse_update_request(
            Box::leak(body.into().into_boxed_str()).as_bytes(),
        )
        .unwrap()
    }

    use super::*;
    use crate::domain::item::{AttrValue, Item};
    use crate::domain::protocol::Kind;
    use crate::domain::release::tests::{SUM, item, s};

    fn body(version_build: &str, version_name: &str, extra: &str) -> String {
        let channel = if extra.contains("defaultChannel") {
            ""
        } else {
            r#","defaultChannel":"""#
        };
        format!(
            r#"{{"platform":"android","device_id":"6a1f0b3e-1111-4222-8333-9c2d00000000","app_id":"com.example.app",
            "custom_id":"","version_build":"{version_build}","version_code":"1","version_os":"14",
            "version_name":"{version_name}","plugin_version":"8.51.23","is_emulator":false,"is_prod":true
            {channel}{extra}}}"#
        )
    }

    fn release(version: &str, extra: &[(&str, AttrValue)]) -> Item {
        let mut i = item(&[
            ("version", s(version)),
            ("bundle", s("com.example.app/b.zip")),
            ("checksum", s(SUM)),
        ]);
        for (k, v) in extra {
            i.insert(k.to_string(), v.clone());
        }
        i
    }

    fn snap(items: &[(&str, Item)]) -> AppSnapshot {
        AppSnapshot::from_items(items.iter().map(|(k, v)| (*k, v)))
    }

    /// Runs a decision and returns its label, so each test reads as one line of the rules.
    fn run(req_body: &str, app: &AppSnapshot) -> &'static str {
        let req = leak_parse(req_body);
        decide_update(&req, Some(app), None).label()
    }

    fn one(version: &str, extra: &[(&str, AttrValue)]) -> AppSnapshot {
        snap(&[("release#production#all", release(version, extra))])
    }

    const B: AttrValue = AttrValue::Bool(true);
    const NO: AttrValue = AttrValue::Bool(false);

    #[test]
    fn offers_a_newer_release() {
        let app = one("1.0.3", &[]);
        let req = leak_parse(body("1.0.0", "builtin", ""));
        match decide_update(&req, Some(&app), None) {
            Decision::Offer { channel, release } => {
                assert_eq!(channel, "production");
                assert_eq!(release.version_text, "1.0.3");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_app_is_a_failed_refusal() {
        let req = leak_parse(body("1.0.0", "builtin", ""));
        let d = decide_update(&req, None, None);
        assert_eq!(d.label(), "app_not_found");
        let Decision::Refuse(r) = d else {
            unreachable!()
        };
        assert_eq!(r.code.kind(), Kind::Failed);
    }

    #[test]
    fn same_version_is_up_to_date() {
        assert_eq!(
            run(&body("1.0.0", "1.0.3", ""), &one("1.0.3", &[])),
            "no_new_version_available"
        );
        // On builtin, the device runs its native version (trap 9), normalised.
        assert_eq!(
            run(&body("1.0", "builtin", ""), &one("1.0.0", &[])),
            "no_new_version_available"
        );
        assert_eq!(
            run(&body("1.0.0", "1.0.2", ""), &one("1.0.3", &[])),
            "offer"
        );
        // Up to date wins over a pause: the device already has it.
        assert_eq!(
            run(&body("1.0.0", "1.0.3", ""), &one("1.0.3", &[("paused", B)])),
            "no_new_version_available"
        );
    }

    #[test]
    fn channel_choice() {
        let beta = release("1.1.0", &[("allow_self_assign", B)]);
        let qa = release("1.2.0", &[]);
        let app = snap(&[
            ("release#production#all", release("1.0.3", &[])),
            ("release#beta#all", beta),
            ("release#qa#all", qa),
        ]);
        let ch = |c: &str| body("1.0.0", "builtin", &format!(r#","defaultChannel":"{c}""#));
        let req = leak_parse(ch("beta"));
        assert_eq!(
            decide_update(&req, Some(&app), None).channel(),
            Some("beta")
        );
        assert_eq!(
            run(&ch("qa"), &app),
            "no_channel",
            "not self-assignable: no silent fallback"
        );
        assert_eq!(run(&ch("nope"), &app), "no_channel");
        let req = leak_parse(ch("production"));
        assert_eq!(
            decide_update(&req, Some(&app), None).channel(),
            Some("production"),
            "the default is always allowed"
        );
        let req = leak_parse(body("1.0.0", "builtin", ""));
        assert_eq!(
            decide_update(&req, Some(&app), None).channel(),
            Some("production")
        );
    }

    #[test]
    fn app_default_channel_and_platform_items() {
        let app = snap(&[
            ("app", item(&[("default_channel", s("stable"))])),
            ("release#stable#all", release("1.0.3", &[])),
            ("release#stable#android", release("1.0.4", &[])),
            ("release#production#all", release("1.0.9", &[])),
        ]);
        let req = leak_parse(body("1.0.0", "builtin", ""));
        let Decision::Offer { channel, release } = decide_update(&req, Some(&app), None) else {
            panic!()
        };
        assert_eq!(
            (channel, release.version_text.as_str()),
            ("stable", "1.0.4"),
            "platform item over all"
        );
        let ios = body("1.0.0", "builtin", "").replace("android", "ios");
        let req = leak_parse(ios);
        let Decision::Offer { release, .. } = decide_update(&req, Some(&app), None) else {
            panic!()
        };
        assert_eq!(release.version_text, "1.0.3", "all is the fallback");

        let ios_only = snap(&[("release#production#ios", self::release("1.0.3", &[]))]);
        assert_eq!(
            run(&body("1.0.0", "builtin", ""), &ios_only),
            "no_channel",
            "no platform gate beyond items"
        );
    }

    #[test]
    fn per_platform_default_channel_overrides_the_app_default() {
        let app = snap(&[
            (
                "app",
                item(&[
                    ("default_channel", s("production")),
                    ("default_channel_ios", s("ios-stable")),
                ]),
            ),
            ("release#production#all", release("1.0.3", &[])),
            ("release#ios-stable#all", release("1.0.5", &[])),
        ]);
        let android = leak_parse(body("1.0.0", "builtin", ""));
        let Decision::Offer { channel, release } = decide_update(&android, Some(&app), None) else {
            panic!()
        };
        assert_eq!(
            (channel, release.version_text.as_str()),
            ("production", "1.0.3")
        );
        let ios = leak_parse(body("1.0.0", "builtin", "").replace("android", "ios"));
        let Decision::Offer { channel, release } = decide_update(&ios, Some(&app), None) else {
            panic!()
        };
        assert_eq!(
            (channel, release.version_text.as_str()),
            ("ios-stable", "1.0.5")
        );
        // An iOS device asking for its platform's default needs no self-assignment.
        let asked =
            body("1.0.0", "builtin", r#","defaultChannel":"ios-stable""#).replace("android", "ios");
        assert_eq!(
            decide_update(&leak_parse(asked), Some(&app), None).channel(),
            Some("ios-stable")
        );
        // An Android device may not pick the iOS default: it does not allow self-assignment.
        let asked = body("1.0.0", "builtin", r#","defaultChannel":"ios-stable""#);
        assert_eq!(run(&asked, &app), "no_channel");
    }

    #[test]
    fn malformed_release_is_a_failed_answer() {
        let app = snap(&[("release#production#all", item(&[("version", s("1.0"))]))]);
        assert_eq!(run(&body("1.0.0", "builtin", ""), &app), "invalid_release");
        let app = snap(&[
            ("release#production#all", release("1.0.3", &[])),
            ("release#beta#all", item(&[("version", s("x"))])),
        ]);
        assert_eq!(
            run(
                &body("1.0.0", "builtin", r#","defaultChannel":"beta""#),
                &app
            ),
            "invalid_release"
        );
    }

    #[test]
    fn paused_has_its_own_code() {
        let app = one(
            "1.0.3",
            &[("paused", B), ("pause_reason", s("too many failures"))],
        );
        let req = leak_parse(body("1.0.0", "builtin", ""));
        let Decision::Refuse(r) = decide_update(&req, Some(&app), None) else {
            panic!()
        };
        assert_eq!(r.code, RefusalCode::ReleasePaused);
        assert_eq!(r.code.kind(), Kind::Blocked);
        assert!(r.message.contains("too many failures"));
    }

    #[test]
    fn major_gate_is_the_default() {
        assert_eq!(
            run(&body("1.2.0", "builtin", ""), &one("2.0.0", &[])),
            "disable_auto_update_to_major"
        );
        assert_eq!(
            run(&body("1.2.0", "builtin", ""), &one("1.9.0", &[])),
            "offer"
        );
        let none = [("disable_auto_update", s("none"))];
        assert_eq!(
            run(&body("1.2.0", "builtin", ""), &one("2.0.0", &none)),
            "offer"
        );
        // The gate reads version_build, never version_name.
        assert_eq!(
            run(&body("1.2.0", "2.0.0", ""), &one("2.1.0", &[])),
            "disable_auto_update_to_major"
        );
        let req = leak_parse(body("1.2.0", "builtin", ""));
        let app = one("2.0.0", &[]);
        let Decision::Refuse(r) = decide_update(&req, Some(&app), None) else {
            panic!()
        };
        assert_eq!(
            (r.version, r.old.map(|v| v.to_string())),
            (Some("2.0.0"), Some("1.2.0".into()))
        );
    }

    #[test]
    fn minor_and_patch_gates() {
        let minor = [("disable_auto_update", s("minor"))];
        assert_eq!(
            run(&body("1.2.0", "builtin", ""), &one("1.3.0", &minor)),
            "disable_auto_update_to_minor"
        );
        assert_eq!(
            run(&body("1.2.0", "builtin", ""), &one("2.2.0", &minor)),
            "disable_auto_update_to_minor"
        );
        assert_eq!(
            run(&body("1.2.0", "builtin", ""), &one("1.2.5", &minor)),
            "offer"
        );
        let patch = [("disable_auto_update", s("patch"))];
        assert_eq!(
            run(&body("1.2.0", "builtin", ""), &one("1.2.1", &patch)),
            "disable_auto_update_to_patch"
        );
        assert_eq!(
            run(
                &body("1.2.0", "builtin", ""),
                &one(
                    "1.2.0-hotfix.1",
                    &[
                        ("disable_auto_update_under_native", NO),
                        ("disable_auto_update", s("patch"))
                    ]
                )
            ),
            "offer"
        );
    }

    #[test]
    fn version_number_gate() {
        let vn = |min: Option<&str>| {
            let mut extra = vec![("disable_auto_update", s("version_number"))];
            if let Some(m) = min {
                extra.push(("min_update_version", s(m)));
            }
            one("3.0.0", &extra)
        };
        assert_eq!(
            run(&body("1.2.0", "builtin", ""), &vn(None)),
            "misconfigured_channel"
        );
        assert_eq!(
            run(&body("1.2.0", "builtin", ""), &vn(Some("1.5.0"))),
            "disable_auto_update_to_metadata"
        );
        assert_eq!(
            run(&body("1.5.0", "builtin", ""), &vn(Some("1.5"))),
            "offer"
        );
        let req = leak_parse(body("1.2.0", "builtin", ""));
        let app = vn(None);
        let Decision::Refuse(r) = decide_update(&req, Some(&app), None) else {
            panic!()
        };
        assert_eq!(
            r.code.kind(),
            Kind::Failed,
            "a misconfigured channel is a fault, not a policy"
        );
    }

    #[test]
    fn under_native_gate() {
        assert_eq!(
            run(&body("1.5.0", "builtin", ""), &one("1.4.0", &[])),
            "disable_auto_update_under_native"
        );
        let off = [("disable_auto_update_under_native", NO)];
        assert_eq!(
            run(&body("1.5.0", "builtin", ""), &one("1.4.0", &off)),
            "offer"
        );
        assert_eq!(
            run(&body("1.5.0", "builtin", ""), &one("1.5.0-rc.1", &[])),
            "disable_auto_update_under_native"
        );
    }

    #[test]
    fn audience_gates() {
        let req = |prod: bool, emu: bool| {
            body("1.0.0", "builtin", "")
                .replace(r#""is_prod":true"#, &format!(r#""is_prod":{prod}"#))
                .replace(r#""is_emulator":false"#, &format!(r#""is_emulator":{emu}"#))
        };
        assert_eq!(
            run(&req(true, false), &one("1.0.3", &[("allow_prod", NO)])),
            "disable_prod_build"
        );
        assert_eq!(
            run(&req(false, false), &one("1.0.3", &[("allow_prod", NO)])),
            "offer"
        );
        assert_eq!(
            run(&req(false, false), &one("1.0.3", &[("allow_dev", NO)])),
            "disable_dev_build"
        );
        assert_eq!(
            run(&req(true, false), &one("1.0.3", &[("allow_device", NO)])),
            "disable_device"
        );
        assert_eq!(
            run(&req(true, true), &one("1.0.3", &[("allow_device", NO)])),
            "offer"
        );
        assert_eq!(
            run(&req(true, true), &one("1.0.3", &[("allow_emulator", NO)])),
            "disable_emulator"
        );
        assert_eq!(
            run(&req(true, false), &one("1.0.3", &[("allow_emulator", NO)])),
            "offer"
        );
        // Order: prod before device.
        assert_eq!(
            run(
                &req(true, false),
                &one("1.0.3", &[("allow_prod", NO), ("allow_device", NO)])
            ),
            "disable_prod_build"
        );
        // Version gates come before audience gates.
        assert_eq!(
            run(&req(true, false), &one("2.0.0", &[("allow_prod", NO)])),
            "disable_auto_update_to_major"
        );
    }

    #[test]
    fn builtin_release() {
        let app = one("builtin", &[]);
        assert_eq!(run(&body("1.0.0", "1.0.3", ""), &app), "reset");
        assert_eq!(
            run(&body("1.0.0", "builtin", ""), &app),
            "already_on_builtin"
        );
        // Version gates are skipped, audience gates still apply.
        assert_eq!(run(&body("3.0.0", "1.0.3", ""), &app), "reset");
        assert_eq!(
            run(
                &body("1.0.0", "1.0.3", ""),
                &one("builtin", &[("allow_prod", NO)])
            ),
            "disable_prod_build"
        );
        assert_eq!(
            run(
                &body("1.0.0", "1.0.3", ""),
                &one("builtin", &[("paused", B)])
            ),
            "release_paused"
        );
        let req = leak_parse(body("1.0.0", "builtin", ""));
        let Decision::Refuse(r) = decide_update(&req, Some(&app), None) else {
            panic!()
        };
        assert_eq!(r.code.kind(), Kind::UpToDate);
    }

    #[test]
    fn device_override_and_failed_versions() {
        use crate::domain::device::{ChannelSource, DeviceState};
        let app = snap(&[
            ("release#production#all", release("1.0.1", &[])),
            ("release#beta#all", release("1.1.0", &[])),
        ]);
        let qa = DeviceState {
            channel: Some("beta".into()),
            channel_source: Some(ChannelSource::Operator),
            ..Default::default()
        };
        // The override wins over defaultChannel, and needs no self-assignment.
        let req = leak_parse(body(
            "1.0.0",
            "builtin",
            r#","defaultChannel":"production""#,
        ));
        let d = decide_update(&req, Some(&app), Some(&qa));
        assert_eq!((d.label(), d.channel()), ("offer", Some("beta")));
        // An override naming a channel that no longer exists is ignored.
        let gone = DeviceState {
            channel: Some("gone".into()),
            ..Default::default()
        };
        assert_eq!(
            decide_update(&req, Some(&app), Some(&gone)).channel(),
            Some("production")
        );
        // A device's own stored choice (an old plugin's setChannel) counts only where the app
        // has legacy_channel_self: anyone can name any device id.
        let own = DeviceState {
            channel_source: Some(ChannelSource::Device),
            ..qa.clone()
        };
        let d = decide_update(&req, Some(&app), Some(&own));
        assert_eq!(d.channel(), Some("production"));
        let mut legacy = app.clone();
        legacy.legacy_channel_self = true;
        let d = decide_update(&req, Some(&legacy), Some(&own));
        assert_eq!(d.channel(), Some("beta"));

        let failed = DeviceState {
            failed_versions: ["1.0.1".to_owned()].into(),
            ..Default::default()
        };
        let req = leak_parse(body("1.0.0", "builtin", ""));
        let d = decide_update(&req, Some(&app), Some(&failed));
        assert_eq!(d.label(), "version_failed_on_device");
        let Decision::Refuse(r) = d else {
            unreachable!()
        };
        assert_eq!(r.code.kind(), Kind::Blocked);
        let newer = snap(&[("release#production#all", release("1.0.2", &[]))]);
        assert_eq!(
            decide_update(&req, Some(&newer), Some(&failed)).label(),
            "offer",
            "a newer release is offered"
        );
    }

    #[test]
    fn encryption_must_match_the_app() {
        let enc = [
            ("checksum", s(&"ab".repeat(256))),
            ("session_key", s("aXY=:a2V5")),
            ("key_id", s("MIIBCgKCAQEA3it9ioh6")),
        ];
        let key = r#","key_id":"MIIBCgKCAQEA3it9ioh6""#;
        assert_eq!(
            run(&body("1.0.0", "builtin", key), &one("1.0.3", &enc)),
            "offer"
        );
        assert_eq!(
            run(&body("1.0.0", "builtin", ""), &one("1.0.3", &enc)),
            "key_id_mismatch"
        );
        let other = r#","key_id":"MIIBCgKCAQEAzzzzzzzz""#;
        assert_eq!(
            run(&body("1.0.0", "builtin", other), &one("1.0.3", &enc)),
            "key_id_mismatch"
        );
        assert_eq!(
            run(&body("1.0.0", "builtin", key), &one("1.0.3", &[])),
            "key_id_mismatch"
        );
        // An encrypted release without key_id trusts the operator.
        let no_kid = [
            ("checksum", s(&"ab".repeat(256))),
            ("session_key", s("aXY=:a2V5")),
        ];
        assert_eq!(
            run(&body("1.0.0", "builtin", other), &one("1.0.3", &no_kid)),
            "offer"
        );
    }
}
