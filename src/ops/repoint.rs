//! `rollback` and `promote`: point a channel at a bundle already stored (no upload), keeping
//! the channel's policy.

use std::fmt;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::domain::history::{HistoryAction, HistoryEntry, revision_of, version_before};
use crate::domain::item::{Item, ItemExt, attr};
use crate::domain::keys::{Target, bundle_sk, is_valid_channel, release_sk};
use crate::domain::policy::keep_policy;
use crate::domain::release::Release;
use crate::domain::version::ReleaseVersion;
use crate::ops::OperatorStores;
use crate::ops::apps::{require_app, require_channel};
use crate::ops::change::{Changed, EntryOf, change_item, entry};
use crate::ops::history::history_entries;

/// The result of `rollback` and `promote`.
#[derive(Debug, Clone, Serialize)]
pub struct Repointed {
    pub app_id: String,
    pub channel: String,
    pub platform: Target,
    pub from_version: Option<String>,
    pub to_version: String,
    pub revision: u64,
    /// Policy attributes kept from the item it replaced, as `name=value`.
    pub kept_policy: Vec<String>,
    /// The action and where its bundle came from, for the sentence.
    #[serde(skip)]
    pub how: Repoint,
}

/// Which of the two it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repoint {
    Rollback,
    /// Promoted from this channel.
    Promote(String),
}

impl fmt::Display for Repointed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (app, channel, platform) = (&self.app_id, &self.channel, self.platform);
        match &self.how {
            Repoint::Rollback => write!(
                f,
                "Rolled back {app} {channel}/{platform} from {} to {} (no upload).",
                self.from_version.as_deref().unwrap_or("(none)"),
                self.to_version
            )?,
            Repoint::Promote(from) => write!(
                f,
                "Promoted {app} {} from {from} to {channel}/{platform} (no upload).",
                self.to_version
            )?,
        }
        if !self.kept_policy.is_empty() {
            write!(
                f,
                " Kept the channel's policy: {}.",
                self.kept_policy.join(", ")
            )?;
        }
        Ok(())
    }
}

/// Points `channel`/`target` at `served` (the bundle attributes of a stored version), keeping
/// the item's policy: what rollback and promote write.
async fn repoint(
    stores: &OperatorStores,
    app_id: &str,
    channel: &str,
    target: Target,
    served: Item,
    action: HistoryAction,
    detail: String,
) -> anyhow::Result<(Changed, Vec<String>)> {
    let who = stores.who().await?;
    let now = stores.clock.now_micros();
    let mut kept = Vec::new();
    let sk = release_sk(channel, target);
    let changed = change_item(
        stores.items.as_ref(),
        stores.history.as_ref(),
        app_id,
        &sk,
        None,
        |current| {
            let mut next = served;
            kept = keep_policy(current, &mut next);
            next.set_whole(attr::RELEASED_AT, now / 1_000_000);
            Release::from_item(&next)
                .map_err(|e| anyhow::anyhow!("the release item would be invalid: {e}"))?;
            let of = EntryOf {
                action,
                channel,
                target,
                from: current,
                to: Some(&next),
            };
            let e = entry(of, &who, Some(detail), now);
            Ok(Some((next, e)))
        },
    )
    .await?
    .context("nothing to change")?;
    Ok((changed, kept))
}

/// The served attributes of a stored version: from its bundle item, whose object must still be
/// in bundle storage. `builtin` needs nothing stored.
async fn stored_version(
    stores: &OperatorStores,
    app_id: &str,
    version: &str,
) -> anyhow::Result<Item> {
    let mut served = Item::new();
    served.set_text(attr::VERSION, version);
    match ReleaseVersion::parse(version) {
        None => bail!("{version:?} is not a semantic version (such as 1.0.3) or builtin"),
        Some(ReleaseVersion::Builtin) => return Ok(served),
        Some(ReleaseVersion::Bundle(_)) => {}
    }
    let bundle = stores
        .items
        .get_item(app_id, &bundle_sk(version))
        .await?
        .with_context(|| {
            format!(
                "bundle {version} of {app_id} is not stored; release it with `updraft release --version {version} --zip …` (see `updraft bundles list --app {app_id}`)"
            )
        })?;
    let Some(key) = bundle.text(attr::BUNDLE) else {
        bail!("the bundle item of {version} has no object key; release it again");
    };
    if !stores.bundles()?.exists(key).await? {
        bail!(
            "the zip of {version} ({key}) is missing from bundle storage; release it again with `updraft release`"
        );
    }
    for name in [
        attr::BUNDLE,
        attr::CHECKSUM,
        attr::SESSION_KEY,
        attr::KEY_ID,
        attr::MANIFEST,
    ] {
        if let Some(v) = bundle.get(name) {
            served.insert(name.into(), v.clone());
        }
    }
    Ok(served)
}

fn repointed(app_id: &str, changed: Changed, kept: Vec<String>, how: Repoint) -> Repointed {
    Repointed {
        app_id: app_id.to_owned(),
        channel: changed.entry.channel,
        platform: changed.entry.platform,
        from_version: changed.entry.from_version,
        to_version: changed.entry.to_version.unwrap_or_default(),
        revision: revision_of(&changed.item),
        kept_policy: kept,
        how,
    }
}

/// `updraft rollback`: back to what the channel served before (from history), or to `to`.
pub async fn rollback(
    stores: &OperatorStores,
    app_id: &str,
    channel: &str,
    target: Target,
    to: Option<&str>,
) -> anyhow::Result<Repointed> {
    let snap = require_app(stores, app_id).await?;
    require_channel(&snap, app_id, channel)?;
    let sk = release_sk(channel, target);
    let current = stores
        .items
        .get_item(app_id, &sk)
        .await?
        .with_context(|| format!("channel {channel} of {app_id} serves nothing on {target}"))?;
    let current_version = current
        .text(attr::VERSION)
        .context("the release item has no version")?
        .to_owned();
    let to = match to {
        Some(v) => v.to_owned(),
        None => {
            let history = history_entries(stores, app_id, Some(channel), None).await?;
            let mine: Vec<&HistoryEntry> =
                history.iter().filter(|e| e.platform == target).collect();
            version_before(mine.iter().copied(), &current_version)
                .map(str::to_owned)
                .with_context(|| {
                    format!(
                        "history has no version {channel}/{target} served before {current_version}; pass --to VERSION (see `updraft bundles list --app {app_id}`)"
                    )
                })?
        }
    };
    if to == current_version {
        bail!("{channel}/{target} of {app_id} already serves {to}");
    }
    let served = stored_version(stores, app_id, &to).await?;
    let detail = format!("rolled back from {current_version}");
    let (changed, kept) = repoint(
        stores,
        app_id,
        channel,
        target,
        served,
        HistoryAction::Rollback,
        detail,
    )
    .await?;
    Ok(repointed(app_id, changed, kept, Repoint::Rollback))
}

/// `updraft promote`: serve the source channel's bundle on the target, keeping its policy.
pub async fn promote(
    stores: &OperatorStores,
    app_id: &str,
    from: &str,
    to: &str,
    target: Target,
) -> anyhow::Result<Repointed> {
    let snap = require_app(stores, app_id).await?;
    require_channel(&snap, app_id, from)?;
    if from == to {
        bail!("--from and --to are the same channel ({from})");
    }
    if !is_valid_channel(to) {
        bail!("{to:?} is not a valid channel name (letters, digits, . _ -)");
    }
    let source = stores
        .items
        .get_item(app_id, &release_sk(from, target))
        .await?
        .with_context(|| format!("channel {from} of {app_id} serves nothing on {target}"))?;
    let version = source
        .text(attr::VERSION)
        .context("the source release item has no version")?
        .to_owned();
    let current = stores
        .items
        .get_item(app_id, &release_sk(to, target))
        .await?;
    if current.as_ref().and_then(|c| c.text(attr::VERSION)) == Some(version.as_str()) {
        bail!("{to}/{target} of {app_id} already serves {version}");
    }
    let served = stored_version(stores, app_id, &version).await?;
    let (changed, kept) = repoint(
        stores,
        app_id,
        to,
        target,
        served,
        HistoryAction::Promote,
        format!("promoted from {from}"),
    )
    .await?;
    Ok(repointed(
        app_id,
        changed,
        kept,
        Repoint::Promote(from.to_owned()),
    ))
}
