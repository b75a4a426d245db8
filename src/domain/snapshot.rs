//! Everything an update check needs to know about one app (`AppSnapshot`): its settings and
//! its release items grouped by channel and target, read in one round trip and cached.

use std::collections::HashMap;

use crate::domain::device::{ChannelSource, DeviceState};
use crate::domain::item::{Item, ItemError, ItemExt, attr};
use crate::domain::keys::{
    APP_SK, DEVICE_OVERRIDES_SK, RELEASE_SK_PREFIX, Target, default_channel_attr, parse_release_sk,
};
use crate::domain::protocol::Platform;
use crate::domain::release::Release;

/// The channel an app serves when nothing else is set.
pub const DEFAULT_CHANNEL: &str = "production";

/// Whether the items an app's snapshot is read from describe an app: a `device_overrides`
/// marker alone does not (the app has no items an update check could serve).
pub fn describes_an_app<'a>(mut sks: impl Iterator<Item = &'a str>) -> bool {
    sks.any(|sk| sk != DEVICE_OVERRIDES_SK)
}

fn platform_slot(platform: Platform) -> usize {
    match platform {
        Platform::Android => 0,
        Platform::Ios => 1,
        Platform::Electron => 2,
    }
}

/// The release items of one channel, one slot per target.
#[derive(Debug, Clone, Default)]
pub struct ChannelReleases {
    pub android: Option<Result<Release, ItemError>>,
    pub ios: Option<Result<Release, ItemError>>,
    pub electron: Option<Result<Release, ItemError>>,
    pub all: Option<Result<Release, ItemError>>,
}

impl ChannelReleases {
    fn slot_mut(&mut self, target: Target) -> &mut Option<Result<Release, ItemError>> {
        match target {
            Target::All => &mut self.all,
            Target::Platform(Platform::Android) => &mut self.android,
            Target::Platform(Platform::Ios) => &mut self.ios,
            Target::Platform(Platform::Electron) => &mut self.electron,
        }
    }

    /// The item of exactly `target`, if the channel has one.
    pub fn get(&self, target: Target) -> Option<&Result<Release, ItemError>> {
        match target {
            Target::All => self.all.as_ref(),
            Target::Platform(Platform::Android) => self.android.as_ref(),
            Target::Platform(Platform::Ios) => self.ios.as_ref(),
            Target::Platform(Platform::Electron) => self.electron.as_ref(),
        }
    }

    /// Every item of the channel with its target.
    pub fn targets(&self) -> impl Iterator<Item = (Target, &Result<Release, ItemError>)> {
        [
            (Target::Platform(Platform::Android), &self.android),
            (Target::Platform(Platform::Ios), &self.ios),
            (Target::Platform(Platform::Electron), &self.electron),
            (Target::All, &self.all),
        ]
        .into_iter()
        .filter_map(|(t, slot)| Some((t, slot.as_ref()?)))
    }

    /// The item serving `platform`: its own, else `all`.
    pub fn for_platform(&self, platform: Platform) -> Option<&Result<Release, ItemError>> {
        let own = match platform {
            Platform::Android => &self.android,
            Platform::Ios => &self.ios,
            Platform::Electron => &self.electron,
        };
        own.as_ref().or(self.all.as_ref())
    }
}

/// Everything an update check needs to know about one app, read in one go and cached.
#[derive(Debug, Clone, Default)]
pub struct AppSnapshot {
    pub default_channel: String,
    /// `legacy_channel_self` on the `app` item: a plugin older than 7.34 may store its own
    /// `setChannel` choice on the server. Off by default, because such a request names a device
    /// id that anyone can forge (protocol.md §6).
    pub legacy_channel_self: bool,
    /// `default_channel_<platform>` (android, ios, electron): overrides `default_channel` for
    /// devices of that platform (Capgo's one public channel per platform).
    pub platform_default_channels: [Option<String>; 3],
    /// The `app` item as stored (app-wide settings such as auto-pause defaults).
    pub app_item: Item,
    pub channels: HashMap<String, ChannelReleases>,
    /// Some device of this app has (or had) a channel override: the `device_overrides` item,
    /// written in the same atomic write as every override. Without it, an update check needs
    /// no device read to apply an override (`decide_without_device`).
    pub device_overrides: bool,
    /// Items that could not be read at all (an unknown platform in `sk`, a bad `app` item):
    /// logged by the store, never shown to devices.
    pub problems: Vec<String>,
}

impl AppSnapshot {
    /// Builds a snapshot from the app's `app`, `release#…` and `device_overrides` items (other
    /// items are ignored).
    pub fn from_items<'a>(items: impl IntoIterator<Item = (&'a str, &'a Item)>) -> Self {
        let mut snap = AppSnapshot {
            default_channel: DEFAULT_CHANNEL.to_owned(),
            ..Default::default()
        };
        for (sk, item) in items {
            if sk == APP_SK {
                snap.read_app_item(item);
            } else if sk == DEVICE_OVERRIDES_SK {
                snap.device_overrides = true;
            } else if sk.starts_with(RELEASE_SK_PREFIX) {
                match parse_release_sk(sk) {
                    Some((channel, target)) => {
                        let slot = snap
                            .channels
                            .entry(channel.to_owned())
                            .or_default()
                            .slot_mut(target);
                        *slot = Some(Release::from_item(item));
                    }
                    None => snap.problems.push(format!(
                        "item {sk}: sort key is not release#<channel>#<platform>"
                    )),
                }
            }
        }
        snap
    }

    fn read_app_item(&mut self, item: &Item) {
        self.app_item = item.clone();
        let mut problem = |e: ItemError| self.problems.push(format!("item app: {e}"));
        match item.get_text(attr::DEFAULT_CHANNEL) {
            Ok(Some(c)) if !c.is_empty() => self.default_channel = c.to_owned(),
            Ok(_) => {}
            Err(e) => problem(e),
        }
        match item.get_flag(attr::LEGACY_CHANNEL_SELF, false) {
            Ok(b) => self.legacy_channel_self = b,
            Err(e) => problem(e),
        }
        for platform in Platform::ALL {
            match item.get_text(default_channel_attr(platform)) {
                Ok(Some(c)) if !c.is_empty() => {
                    self.platform_default_channels[platform_slot(platform)] = Some(c.to_owned())
                }
                Ok(_) => {}
                Err(e) => problem(e),
            }
        }
    }

    /// Whether a device's stored channel override applies: always an operator's; a device's own
    /// (an old plugin's setChannel) only while the app has `legacy_channel_self`.
    pub fn honours_override(&self, device: &DeviceState) -> bool {
        self.legacy_channel_self || device.channel_source != Some(ChannelSource::Device)
    }

    /// The channel devices of `platform` get when they ask for none: `default_channel_<platform>`,
    /// else `default_channel`.
    pub fn default_channel_for(&self, platform: Platform) -> &str {
        self.platform_default_channels[platform_slot(platform)]
            .as_deref()
            .unwrap_or(&self.default_channel)
    }

    /// `default_channel_<platform>`, when the app item sets it.
    pub fn platform_default_channel(&self, platform: Platform) -> Option<&str> {
        self.platform_default_channels[platform_slot(platform)].as_deref()
    }

    /// The release for a channel and platform, if the channel serves that platform.
    pub fn release(
        &self,
        channel: &str,
        platform: Platform,
    ) -> Option<&Result<Release, ItemError>> {
        self.channels.get(channel)?.for_platform(platform)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::item::AttrValue;
    use crate::domain::release::tests::{SUM, item, s};

    #[test]
    fn the_overrides_marker_is_read_but_alone_is_no_app() {
        let marker = Item::new();
        let snap = AppSnapshot::from_items([(DEVICE_OVERRIDES_SK, &marker)]);
        assert!(snap.device_overrides);
        assert!(!AppSnapshot::default().device_overrides);
        assert!(!describes_an_app([DEVICE_OVERRIDES_SK].into_iter()));
        assert!(describes_an_app([DEVICE_OVERRIDES_SK, "app"].into_iter()));
        assert!(!describes_an_app(std::iter::empty()));
    }

    #[test]
    fn snapshot_groups_items() {
        let rel = item(&[
            ("version", s("1.0.3")),
            ("bundle", s("k")),
            ("checksum", s(SUM)),
        ]);
        let app = item(&[("default_channel", s("stable"))]);
        let bundle = item(&[("checksum", s(SUM))]);
        let snap = AppSnapshot::from_items([
            ("app", &app),
            ("release#stable#all", &rel),
            ("release#beta#ios", &rel),
            ("release#x#windows", &rel),
            ("bundle#1.0.3", &bundle),
        ]);
        assert_eq!(snap.default_channel, "stable");
        assert!(snap.release("stable", Platform::Android).is_some());
        assert!(snap.release("beta", Platform::Ios).is_some());
        assert!(snap.release("beta", Platform::Android).is_none());
        assert_eq!(snap.problems.len(), 1);
        assert!(!snap.legacy_channel_self);
        assert_eq!(AppSnapshot::from_items([]).default_channel, "production");
        assert_eq!(snap.default_channel_for(Platform::Ios), "stable");
        let app = item(&[
            ("default_channel", s("stable")),
            ("default_channel_ios", s("ios-public")),
        ]);
        let snap = AppSnapshot::from_items([("app", &app)]);
        assert_eq!(snap.default_channel_for(Platform::Ios), "ios-public");
        assert_eq!(snap.default_channel_for(Platform::Android), "stable");
        let app = item(&[("legacy_channel_self", AttrValue::Bool(true))]);
        assert!(AppSnapshot::from_items([("app", &app)]).legacy_channel_self);
        let app = item(&[("legacy_channel_self", s("yes"))]);
        let snap = AppSnapshot::from_items([("app", &app)]);
        assert!(!snap.legacy_channel_self && snap.problems.len() == 1);
    }
}
