//! Apps as operators see them: reading one (with a one-sentence error naming the apps that
//! exist), setting its default channels, listing every app of a store.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::bail;
use serde::Serialize;

use crate::domain::history::{HistoryAction, HistoryEntry};
use crate::domain::item::{Item, ItemExt, attr};
use crate::domain::keys::{APP_SK, RELEASE_SK_PREFIX, Target, default_channel_attr};
use crate::domain::protocol::Platform;
use crate::domain::snapshot::AppSnapshot;
use crate::ops::OperatorStores;
use crate::ops::change::change_item;

/// The app's snapshot, or the one-sentence error naming the apps this store does hold.
/// Read with a consistent query (not the serving path's cached, eventually consistent one), so
/// an operator always sees what the previous command wrote.
pub async fn require_app(stores: &OperatorStores, app_id: &str) -> anyhow::Result<AppSnapshot> {
    let items = stores.query.query_prefix(app_id, "", false, None).await?;
    let relevant: Vec<&(String, Item)> = items
        .iter()
        .filter(|(sk, _)| sk == APP_SK || sk.starts_with(RELEASE_SK_PREFIX))
        .collect();
    if !relevant.is_empty() {
        return Ok(AppSnapshot::from_items(
            relevant.iter().map(|(sk, i)| (sk.as_str(), i)),
        ));
    }
    let apps = stores.query.app_ids().await?;
    if apps.is_empty() {
        bail!("no app {app_id}; this store has no apps yet (release one with `updraft release`)");
    }
    bail!("no app {app_id}; apps here: {}", apps.join(", "))
}

/// The app's channel names, sorted.
pub fn channel_names(snap: &AppSnapshot) -> Vec<&str> {
    let mut names: Vec<&str> = snap.channels.keys().map(String::as_str).collect();
    names.sort();
    names
}

/// Fails unless the app has `channel`.
pub fn require_channel(snap: &AppSnapshot, app_id: &str, channel: &str) -> anyhow::Result<()> {
    if !snap.channels.contains_key(channel) {
        bail!(
            "{app_id} has no channel {channel}; channels here: {}",
            channel_names(snap).join(", ")
        );
    }
    Ok(())
}

/// What `app set` did.
#[derive(Debug, Clone, Serialize)]
pub struct AppSet {
    pub app_id: String,
    pub attribute: &'static str,
    pub channel: String,
    pub changed: bool,
    #[serde(skip)]
    pub platform: Option<Platform>,
}

impl fmt::Display for AppSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (app, channel) = (&self.app_id, &self.channel);
        match (self.changed, self.platform) {
            (true, Some(p)) => write!(
                f,
                "{} devices of {app} that ask for no channel now get {channel}.",
                p.as_str()
            ),
            (true, None) => write!(
                f,
                "Devices of {app} that ask for no channel now get {channel} (unless their platform has its own default)."
            ),
            (false, _) => write!(f, "{} of {app} is already {channel}.", self.attribute),
        }
    }
}

/// `updraft app set --default-channel C [--platform P]`.
pub async fn app_set(
    stores: &OperatorStores,
    app_id: &str,
    channel: &str,
    platform: Option<Platform>,
) -> anyhow::Result<AppSet> {
    let snap = require_app(stores, app_id).await?;
    require_channel(&snap, app_id, channel)?;
    let attribute = platform.map_or(attr::DEFAULT_CHANNEL, default_channel_attr);
    let scope = platform.map_or(Target::All, Target::Platform);
    let who = stores.who().await?;
    let at_micros = stores.clock.now_micros();
    let changed = change_item(
        stores.items.as_ref(),
        stores.history.as_ref(),
        app_id,
        APP_SK,
        None,
        |current| {
            let mut next = current.cloned().unwrap_or_default();
            let old = match next.text(attribute) {
                Some(old) if old == channel => return Ok(None),
                Some(old) => old.to_owned(),
                None => "(none)".to_owned(),
            };
            next.set_text(attribute, channel);
            let e = HistoryEntry {
                at_micros,
                action: HistoryAction::DefaultChannel,
                channel: channel.to_owned(),
                platform: scope,
                from_version: None,
                to_version: None,
                who,
                detail: Some(format!("{attribute}: {old} -> {channel}")),
            };
            Ok(Some((next, e)))
        },
    )
    .await?;
    Ok(AppSet {
        app_id: app_id.to_owned(),
        attribute,
        channel: channel.to_owned(),
        changed: changed.is_some(),
        platform,
    })
}

/// One row of `app list`.
#[derive(Debug, Clone, Serialize)]
pub struct AppRow {
    pub app_id: String,
    pub default_channel: String,
    /// `default_channel_<platform>` overrides.
    pub platform_default_channels: BTreeMap<String, String>,
    pub channels: Vec<String>,
}

/// `updraft app list`: every app of the store with its default channels and channels.
pub async fn app_list(stores: &OperatorStores) -> anyhow::Result<Vec<AppRow>> {
    let mut rows = Vec::new();
    for app_id in stores.query.app_ids().await? {
        let Ok(snap) = require_app(stores, &app_id).await else {
            continue;
        };
        rows.push(AppRow {
            platform_default_channels: Platform::ALL
                .into_iter()
                .filter_map(|p| {
                    Some((
                        p.as_str().to_owned(),
                        snap.platform_default_channel(p)?.to_owned(),
                    ))
                })
                .collect(),
            default_channel: snap.default_channel.clone(),
            channels: channel_names(&snap)
                .into_iter()
                .map(str::to_owned)
                .collect(),
            app_id,
        });
    }
    Ok(rows)
}
