//! Channels: their policy, changed without touching what they serve (`channel set`), and
//! every channel × platform with version, policy and pause state (`channel list`).

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::domain::history::{HistoryAction, revision_of};
use crate::domain::item::{AttrValue, Item, ItemExt, attr};
use crate::domain::keys::{Target, release_sk};
use crate::domain::policy::{apply_policy, policy_of};
use crate::domain::protocol::Platform;
use crate::domain::release::Release;
use crate::domain::snapshot::AppSnapshot;
use crate::ops::OperatorStores;
use crate::ops::apps::{channel_names, require_app, require_channel};
use crate::ops::change::{EntryOf, change_item, entry};

/// One changed item of `channel set`.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelSetRow {
    pub channel: String,
    pub platform: Target,
    pub version: Option<String>,
    pub revision: u64,
    /// `name: old -> new`; empty when the item already had this policy.
    pub changed: Vec<String>,
}

impl fmt::Display for ChannelSetRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.changed.is_empty() {
            write!(
                f,
                "{}/{}: already so, nothing changed.",
                self.channel, self.platform
            )
        } else {
            write!(
                f,
                "{}/{} ({}): {}.",
                self.channel,
                self.platform,
                self.version.as_deref().unwrap_or("?"),
                self.changed.join(", ")
            )
        }
    }
}

/// `updraft channel set`: changes policy without touching the bundle, on one platform's item
/// or (without `--platform`) on every item of the channel.
pub async fn channel_set(
    stores: &OperatorStores,
    app_id: &str,
    channel: &str,
    target: Option<Target>,
    policy: &Item,
    expect_revision: Option<u64>,
) -> anyhow::Result<Vec<ChannelSetRow>> {
    if policy.is_empty() {
        bail!(
            "nothing to set; pass a policy flag such as --allow-self-assign true (see `updraft channel set --help`)"
        );
    }
    let snap = require_app(stores, app_id).await?;
    require_channel(&snap, app_id, channel)?;
    let served: Vec<Target> = snap.channels[channel].targets().map(|(t, _)| t).collect();
    let targets = match target {
        Some(t) if served.contains(&t) => vec![t],
        Some(t) => bail!(
            "channel {channel} of {app_id} serves nothing on {t}; it has items for {} (release to it first)",
            served
                .iter()
                .map(|t| t.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => served,
    };
    let who = stores.who().await?;
    let mut rows = Vec::new();
    for t in targets {
        let sk = release_sk(channel, t);
        let mut changes = Vec::new();
        let at_micros = stores.clock.now_micros();
        let changed = change_item(
            stores.items.as_ref(),
            stores.history.as_ref(),
            app_id,
            &sk,
            expect_revision,
            |current| {
                let current = current.context("the release item disappeared meanwhile")?;
                let mut next = current.clone();
                changes = apply_policy(&mut next, policy);
                if changes.is_empty() {
                    return Ok(None);
                }
                Release::from_item(&next)
                    .map_err(|e| anyhow::anyhow!("the release item would be invalid: {e}"))?;
                let of = EntryOf {
                    action: HistoryAction::ChannelSet,
                    channel,
                    target: t,
                    from: Some(current),
                    to: Some(&next),
                };
                let e = entry(of, &who, Some(changes.join(", ")), at_micros);
                Ok(Some((next, e)))
            },
        )
        .await?;
        let item = match changed {
            Some(c) => c.item,
            None => stores
                .items
                .get_item(app_id, &sk)
                .await?
                .unwrap_or_default(),
        };
        rows.push(ChannelSetRow {
            channel: channel.to_owned(),
            platform: t,
            version: item.text(attr::VERSION).map(str::to_owned),
            revision: revision_of(&item),
            changed: changes,
        });
    }
    Ok(rows)
}

/// One row of `channel list`.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelRow {
    pub channel: String,
    pub platform: Target,
    pub version: Option<String>,
    pub revision: u64,
    pub paused: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_reason: Option<String>,
    /// Policy attributes the item sets (absent ones take design.md's defaults).
    pub policy: BTreeMap<String, AttrValue>,
    /// Platforms for which this channel is the default (`all`: the app-wide default).
    pub default_for: Vec<String>,
    /// Why the item cannot be served, when it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn default_for(snap: &AppSnapshot, channel: &str) -> Vec<String> {
    let mut out = Vec::new();
    if snap.default_channel == channel {
        out.push("all".to_owned());
    }
    for p in Platform::ALL {
        if snap.platform_default_channel(p) == Some(channel) {
            out.push(p.as_str().to_owned());
        }
    }
    out
}

/// `updraft channel list`: every channel × platform with version, policy and pause state.
pub async fn channel_list(
    stores: &OperatorStores,
    app_id: &str,
) -> anyhow::Result<Vec<ChannelRow>> {
    Ok(channel_rows(&require_app(stores, app_id).await?))
}

/// `channel list` of an app already read, by channel name then target.
pub fn channel_rows(snap: &AppSnapshot) -> Vec<ChannelRow> {
    let mut rows = Vec::new();
    for name in channel_names(snap) {
        for (target, release) in snap.channels[name].targets() {
            let mut row = ChannelRow {
                channel: name.to_owned(),
                platform: target,
                version: None,
                revision: 0,
                paused: false,
                pause_reason: None,
                policy: BTreeMap::new(),
                default_for: default_for(snap, name),
                error: None,
            };
            match release {
                Ok(r) => {
                    row.version = Some(r.version_text.clone());
                    row.revision = revision_of(&r.item);
                    row.paused = r.paused;
                    row.pause_reason = r.pause_reason.clone();
                    row.policy = policy_of(&r.item)
                        .into_iter()
                        .map(|(n, v)| (n.to_owned(), v.clone()))
                        .collect();
                }
                Err(e) => row.error = Some(e.to_string()),
            }
            rows.push(row);
        }
    }
    rows
}
