//! Operator commands on channels and apps: `channel set|list`, `app set|list`, `history`,
//! `rollback` and `promote`. Every change goes through `change_item`: read the item, build the
//! next one, and write it with its history entry, conditioned on the revision that was read.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::backend::OperatorStores;
use crate::cli::output::{Report, table};
use crate::domain::history::{
    Expected, HistoryAction, HistoryEntry, REVISION_ATTR, history_partition, revision_of, rfc3339,
    version_before,
};
use crate::domain::policy::{apply_policy, describe_policy, keep_policy, policy_of};
use crate::domain::protocol::Platform;
use crate::domain::release::{
    APP_SK, AppSnapshot, AttrValue, Item, Release, Target, bundle_sk, default_channel_attr,
    release_sk,
};
use crate::domain::version::ReleaseVersion;
use crate::store::{HistoryStore, ItemWriter, now_micros};

/// The app's snapshot, or the one-sentence error naming the apps this store does hold.
/// Read with a consistent query (not the serving path's cached, eventually consistent one), so
/// an operator always sees what the previous command wrote.
pub async fn require_app(stores: &OperatorStores, app_id: &str) -> anyhow::Result<AppSnapshot> {
    let items = stores.query.query_prefix(app_id, "", false, None).await?;
    let relevant: Vec<&(String, Item)> = items
        .iter()
        .filter(|(sk, _)| sk == APP_SK || sk.starts_with("release#"))
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

fn channel_names(snap: &AppSnapshot) -> String {
    let mut names: Vec<&str> = snap.channels.keys().map(String::as_str).collect();
    names.sort();
    names.join(", ")
}

/// Fails unless the app has `channel`.
pub fn require_channel(snap: &AppSnapshot, app_id: &str, channel: &str) -> anyhow::Result<()> {
    if !snap.channels.contains_key(channel) {
        bail!(
            "{app_id} has no channel {channel}; channels here: {}",
            channel_names(snap)
        );
    }
    Ok(())
}

fn version_of(item: &Item) -> Option<String> {
    match item.get("version") {
        Some(AttrValue::S(v)) => Some(v.clone()),
        _ => None,
    }
}

/// What `change_item` wrote.
pub struct Changed {
    pub item: Item,
    pub entry: HistoryEntry,
}

/// Reads item `sk`, lets `build` make the next item and its history entry (`None`: nothing to
/// change), and writes both atomically, conditioned on the revision read (or on
/// `expect_revision`, when the operator names the revision they looked at).
pub async fn change_item(
    items: &dyn ItemWriter,
    history: &dyn HistoryStore,
    app_id: &str,
    sk: &str,
    expect_revision: Option<u64>,
    build: impl FnOnce(Option<&Item>) -> anyhow::Result<Option<(Item, HistoryEntry)>>,
) -> anyhow::Result<Option<Changed>> {
    let current = items.get_item(app_id, sk).await?;
    let mut expected = Expected::of(current.as_ref());
    if let Some(want) = expect_revision {
        if expected != Expected::Revision(want) {
            let now = match expected {
                Expected::Absent => "does not exist".to_owned(),
                Expected::Revision(r) => format!("is at revision {r}"),
            };
            bail!(
                "{sk} of {app_id} {now}, not {want}: it was changed by someone else since you looked; see `updraft history --app {app_id}`"
            );
        }
        expected = Expected::Revision(want);
    }
    let Some((mut item, entry)) = build(current.as_ref())? else {
        return Ok(None);
    };
    item.insert(REVISION_ATTR.into(), AttrValue::N(expected.next().into()));
    history
        .change_with_history(app_id, sk, expected, &item, &entry)
        .await?;
    Ok(Some(Changed { item, entry }))
}

/// A history entry for a change of `channel`/`target` made now.
pub fn entry(
    action: HistoryAction,
    channel: &str,
    platform: &str,
    from: Option<&Item>,
    to: Option<&Item>,
    who: &str,
    detail: Option<String>,
) -> HistoryEntry {
    HistoryEntry {
        at_micros: now_micros(),
        action,
        channel: channel.to_owned(),
        platform: platform.to_owned(),
        from_version: from.and_then(version_of),
        to_version: to.and_then(version_of),
        who: who.to_owned(),
        detail,
    }
}

/// Points `channel`/`target` at `served` (the bundle attributes of a stored version), keeping
/// the item's policy: what rollback and promote write. Returns the written item and what it
/// kept.
async fn repoint(
    stores: &OperatorStores,
    app_id: &str,
    channel: &str,
    target: Target,
    served: Item,
    action: HistoryAction,
    detail: String,
) -> anyhow::Result<(Changed, Vec<String>)> {
    let who = stores.identity.who().await?;
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
            next.insert(
                "released_at".into(),
                AttrValue::N((now_micros() / 1_000_000).into()),
            );
            Release::from_item(&next)
                .map_err(|e| anyhow::anyhow!("the release item would be invalid: {e}"))?;
            let e = entry(
                action,
                channel,
                target.as_str(),
                current,
                Some(&next),
                &who,
                Some(detail),
            );
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
    served.insert("version".into(), AttrValue::S(version.to_owned()));
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
    let key = match bundle.get("bundle") {
        Some(AttrValue::S(k)) => k.clone(),
        _ => bail!("the bundle item of {version} has no object key; release it again"),
    };
    if !stores.bundles()?.exists(&key).await? {
        bail!(
            "the zip of {version} ({key}) is missing from bundle storage; release it again with `updraft release`"
        );
    }
    for name in ["bundle", "checksum", "session_key", "key_id", "manifest"] {
        if let Some(v) = bundle.get(name) {
            served.insert(name.into(), v.clone());
        }
    }
    Ok(served)
}

/// The result of `rollback` and `promote`.
#[derive(Debug, Serialize)]
pub struct Repointed {
    pub app_id: String,
    pub channel: String,
    pub platform: String,
    pub from_version: Option<String>,
    pub to_version: String,
    pub revision: u64,
    /// Policy attributes kept from the item it replaced, as `name=value`.
    pub kept_policy: Vec<String>,
}

fn repointed(app_id: &str, changed: &Changed, kept: Vec<String>) -> Repointed {
    Repointed {
        app_id: app_id.to_owned(),
        channel: changed.entry.channel.clone(),
        platform: changed.entry.platform.clone(),
        from_version: changed.entry.from_version.clone(),
        to_version: changed.entry.to_version.clone().unwrap_or_default(),
        revision: revision_of(&changed.item),
        kept_policy: kept,
    }
}

fn kept_text(kept: &[String]) -> String {
    if kept.is_empty() {
        String::new()
    } else {
        format!(" Kept the channel's policy: {}.", kept.join(", "))
    }
}

/// `updraft rollback`: back to what the channel served before (from history), or to `to`.
pub async fn rollback(
    stores: &OperatorStores,
    app_id: &str,
    channel: &str,
    target: Target,
    to: Option<&str>,
) -> anyhow::Result<Report> {
    let snap = require_app(stores, app_id).await?;
    require_channel(&snap, app_id, channel)?;
    let sk = release_sk(channel, target);
    let current = stores.items.get_item(app_id, &sk).await?.with_context(|| {
        format!(
            "channel {channel} of {app_id} serves nothing on {}",
            target.as_str()
        )
    })?;
    let current_version = version_of(&current).context("the release item has no version")?;
    let to = match to {
        Some(v) => v.to_owned(),
        None => {
            let history = history_entries(stores, app_id, Some(channel), None).await?;
            let mine: Vec<&HistoryEntry> = history
                .iter()
                .filter(|e| e.platform == target.as_str())
                .collect();
            version_before(mine.iter().copied(), &current_version)
                .map(str::to_owned)
                .with_context(|| {
                    format!(
                        "history has no version {channel}/{} served before {current_version}; pass --to VERSION (see `updraft bundles list --app {app_id}`)",
                        target.as_str()
                    )
                })?
        }
    };
    if to == current_version {
        bail!(
            "{channel}/{} of {app_id} already serves {to}",
            target.as_str()
        );
    }
    let served = stored_version(stores, app_id, &to).await?;
    let (changed, kept) = repoint(
        stores,
        app_id,
        channel,
        target,
        served,
        HistoryAction::Rollback,
        format!("rolled back from {current_version}"),
    )
    .await?;
    let text = format!(
        "Rolled back {app_id} {channel}/{} from {current_version} to {to} (no upload).{}",
        target.as_str(),
        kept_text(&kept)
    );
    Report::new(&repointed(app_id, &changed, kept), text)
}

/// `updraft promote`: serve the source channel's bundle on the target, keeping its policy.
pub async fn promote(
    stores: &OperatorStores,
    app_id: &str,
    from: &str,
    to: &str,
    target: Target,
) -> anyhow::Result<Report> {
    let snap = require_app(stores, app_id).await?;
    require_channel(&snap, app_id, from)?;
    if from == to {
        bail!("--from and --to are the same channel ({from})");
    }
    crate::cli::publish::check_channel_name(to)?;
    let source = stores
        .items
        .get_item(app_id, &release_sk(from, target))
        .await?
        .with_context(|| {
            format!(
                "channel {from} of {app_id} serves nothing on {}",
                target.as_str()
            )
        })?;
    let version = version_of(&source).context("the source release item has no version")?;
    let current = stores
        .items
        .get_item(app_id, &release_sk(to, target))
        .await?;
    if current.as_ref().and_then(version_of).as_deref() == Some(version.as_str()) {
        bail!(
            "{to}/{} of {app_id} already serves {version}",
            target.as_str()
        );
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
    let text = format!(
        "Promoted {app_id} {version} from {from} to {to}/{} (no upload).{}",
        target.as_str(),
        kept_text(&kept)
    );
    Report::new(&repointed(app_id, &changed, kept), text)
}

/// One changed item of `channel set`.
#[derive(Debug, Serialize)]
pub struct ChannelSetRow {
    pub channel: String,
    pub platform: String,
    pub version: Option<String>,
    pub revision: u64,
    /// `name: old -> new`; empty when the item already had this policy.
    pub changed: Vec<String>,
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
) -> anyhow::Result<Report> {
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
            "channel {channel} of {app_id} serves nothing on {}; it has items for {} (release to it first)",
            t.as_str(),
            served
                .iter()
                .map(|t| t.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => served,
    };
    let who = stores.identity.who().await?;
    let mut rows = Vec::new();
    for t in targets {
        let sk = release_sk(channel, t);
        let mut changes = Vec::new();
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
                let e = entry(
                    HistoryAction::ChannelSet,
                    channel,
                    t.as_str(),
                    Some(current),
                    Some(&next),
                    &who,
                    Some(changes.join(", ")),
                );
                Ok(Some((next, e)))
            },
        )
        .await?;
        let item = match &changed {
            Some(c) => c.item.clone(),
            None => stores
                .items
                .get_item(app_id, &sk)
                .await?
                .unwrap_or_default(),
        };
        rows.push(ChannelSetRow {
            channel: channel.to_owned(),
            platform: t.as_str().to_owned(),
            version: version_of(&item),
            revision: revision_of(&item),
            changed: changes,
        });
    }
    let text = rows
        .iter()
        .map(|r| {
            if r.changed.is_empty() {
                format!("{}/{}: already so, nothing changed.", r.channel, r.platform)
            } else {
                format!(
                    "{}/{} ({}): {}.",
                    r.channel,
                    r.platform,
                    r.version.as_deref().unwrap_or("?"),
                    r.changed.join(", ")
                )
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    Report::new(&rows, text)
}

/// One row of `channel list`.
#[derive(Debug, Serialize)]
pub struct ChannelRow {
    pub channel: String,
    pub platform: String,
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
pub async fn channel_list(stores: &OperatorStores, app_id: &str) -> anyhow::Result<Report> {
    channel_list_of(&require_app(stores, app_id).await?)
}

/// `channel list` of an app already read.
pub fn channel_list_of(snap: &AppSnapshot) -> anyhow::Result<Report> {
    let mut names: Vec<&String> = snap.channels.keys().collect();
    names.sort();
    let mut rows = Vec::new();
    for name in names {
        for (target, release) in snap.channels[name].targets() {
            let mut row = ChannelRow {
                channel: name.clone(),
                platform: target.as_str().to_owned(),
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
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let policy: Item = r.policy.clone().into_iter().collect();
            vec![
                r.channel.clone(),
                r.platform.clone(),
                r.version.clone().unwrap_or_else(|| "invalid".into()),
                if r.paused {
                    "paused".into()
                } else {
                    "live".into()
                },
                if r.default_for.is_empty() {
                    "-".into()
                } else {
                    r.default_for.join(",")
                },
                match &r.error {
                    Some(e) => e.clone(),
                    None => describe_policy(&policy),
                },
            ]
        })
        .collect();
    let text = table(
        &[
            "CHANNEL", "PLATFORM", "VERSION", "STATE", "DEFAULT", "POLICY",
        ],
        &cells,
    );
    Report::new(&rows, text)
}

/// `updraft app set --default-channel C [--platform P]`.
pub async fn app_set(
    stores: &OperatorStores,
    app_id: &str,
    channel: &str,
    platform: Option<Platform>,
) -> anyhow::Result<Report> {
    let snap = require_app(stores, app_id).await?;
    require_channel(&snap, app_id, channel)?;
    let attr = platform.map_or("default_channel", default_channel_attr);
    let scope = platform.map_or("all", Platform::as_str);
    let who = stores.identity.who().await?;
    let changed = change_item(
        stores.items.as_ref(),
        stores.history.as_ref(),
        app_id,
        APP_SK,
        None,
        |current| {
            let mut next = current.cloned().unwrap_or_default();
            let old = match next.insert(attr.to_owned(), AttrValue::S(channel.to_owned())) {
                Some(AttrValue::S(old)) if old == channel => return Ok(None),
                Some(AttrValue::S(old)) => old,
                _ => "(none)".to_owned(),
            };
            let e = HistoryEntry {
                at_micros: now_micros(),
                action: HistoryAction::DefaultChannel,
                channel: channel.to_owned(),
                platform: scope.to_owned(),
                from_version: None,
                to_version: None,
                who: who.clone(),
                detail: Some(format!("{attr}: {old} -> {channel}")),
            };
            Ok(Some((next, e)))
        },
    )
    .await?;
    #[derive(Serialize)]
    struct AppSet<'a> {
        app_id: &'a str,
        attribute: &'a str,
        channel: &'a str,
        changed: bool,
    }
    let text = match &changed {
        Some(_) if platform.is_some() => {
            format!("{scope} devices of {app_id} that ask for no channel now get {channel}.")
        }
        Some(_) => format!(
            "Devices of {app_id} that ask for no channel now get {channel} (unless their platform has its own default)."
        ),
        None => format!("{attr} of {app_id} is already {channel}."),
    };
    Report::new(
        &AppSet {
            app_id,
            attribute: attr,
            channel,
            changed: changed.is_some(),
        },
        text,
    )
}

/// One row of `app list`.
#[derive(Debug, Serialize)]
pub struct AppRow {
    pub app_id: String,
    pub default_channel: String,
    /// `default_channel_<platform>` overrides.
    pub platform_default_channels: BTreeMap<String, String>,
    pub channels: Vec<String>,
}

/// `updraft app list`.
pub async fn app_list(stores: &OperatorStores) -> anyhow::Result<Report> {
    let mut rows = Vec::new();
    for app_id in stores.query.app_ids().await? {
        let Ok(snap) = require_app(stores, &app_id).await else {
            continue;
        };
        let mut channels: Vec<String> = snap.channels.keys().cloned().collect();
        channels.sort();
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
            channels,
            app_id,
        });
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut default = r.default_channel.clone();
            for (p, c) in &r.platform_default_channels {
                default.push_str(&format!(" ({p}: {c})"));
            }
            vec![r.app_id.clone(), default, r.channels.join(", ")]
        })
        .collect();
    let text = if rows.is_empty() {
        "No apps yet; release one with `updraft release`.".to_owned()
    } else {
        table(&["APP", "DEFAULT CHANNEL", "CHANNELS"], &cells)
    };
    Report::new(&rows, text)
}

/// History entries, newest first, optionally of one channel, at most `limit`.
pub async fn history_entries(
    stores: &OperatorStores,
    app_id: &str,
    channel: Option<&str>,
    limit: Option<usize>,
) -> anyhow::Result<Vec<HistoryEntry>> {
    // With a channel filter the limit applies after filtering.
    let query_limit = if channel.is_some() { None } else { limit };
    let items = stores
        .query
        .query_prefix(&history_partition(app_id), "", true, query_limit)
        .await?;
    Ok(items
        .iter()
        .filter_map(|(_, i)| HistoryEntry::from_item(i))
        .filter(|e| channel.is_none_or(|c| e.channel == c))
        .take(limit.unwrap_or(usize::MAX))
        .collect())
}

/// One row of `updraft history`.
#[derive(Debug, Serialize)]
pub struct HistoryRow {
    /// RFC 3339, UTC.
    pub at: String,
    pub at_micros: u64,
    pub action: HistoryAction,
    pub channel: String,
    pub platform: String,
    pub from_version: Option<String>,
    pub to_version: Option<String>,
    pub who: String,
    pub detail: Option<String>,
}

/// `updraft history`, newest first.
pub async fn history(
    stores: &OperatorStores,
    app_id: &str,
    channel: Option<&str>,
    limit: usize,
) -> anyhow::Result<Report> {
    let snap = require_app(stores, app_id).await?;
    if let Some(c) = channel {
        require_channel(&snap, app_id, c)?;
    }
    history_report(
        app_id,
        history_entries(stores, app_id, channel, Some(limit)).await?,
    )
}

/// `updraft history` of entries already read.
pub fn history_report(app_id: &str, entries: Vec<HistoryEntry>) -> anyhow::Result<Report> {
    let rows: Vec<HistoryRow> = entries
        .into_iter()
        .map(|e| HistoryRow {
            at: rfc3339(e.at_micros),
            at_micros: e.at_micros,
            action: e.action,
            channel: e.channel,
            platform: e.platform,
            from_version: e.from_version,
            to_version: e.to_version,
            who: e.who,
            detail: e.detail,
        })
        .collect();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let change = match (&r.from_version, &r.to_version) {
                (Some(a), Some(b)) if a == b => a.clone(),
                (a, Some(b)) => format!("{} -> {b}", a.as_deref().unwrap_or("(none)")),
                _ => "-".to_owned(),
            };
            vec![
                r.at.clone(),
                r.action.as_str().to_owned(),
                format!("{}/{}", r.channel, r.platform),
                change,
                r.who.clone(),
                r.detail.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let text = if rows.is_empty() {
        format!("No history for {app_id} yet.")
    } else {
        table(
            &["TIME", "ACTION", "CHANNEL", "VERSION", "WHO", "DETAIL"],
            &cells,
        )
    };
    Report::new(&rows, text)
}
