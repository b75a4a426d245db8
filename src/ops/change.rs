//! The one write-with-history step: read an item, build the next one and its history entry,
//! and write both atomically, conditioned on the revision that was read. Every operator change
//! (release, rollback, promote, channel and app settings, rollout changes) goes through it, so
//! two operators racing on one channel cannot both win and no history entry is lost or
//! doubled.

use anyhow::bail;

use crate::domain::history::{Expected, HistoryAction, HistoryEntry};
use crate::domain::item::{Item, ItemExt, attr};
use crate::domain::keys::Target;
use crate::store::{HistoryStore, ItemWriter};

/// What `change_item` wrote.
#[derive(Debug, Clone)]
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
    item.set_whole(attr::REVISION, expected.next());
    history
        .change_with_history(app_id, sk, expected, &item, &entry)
        .await?;
    Ok(Some(Changed { item, entry }))
}

/// What an entry records: the change, where, and the items before and after.
pub struct EntryOf<'a> {
    pub action: HistoryAction,
    pub channel: &'a str,
    pub target: Target,
    pub from: Option<&'a Item>,
    pub to: Option<&'a Item>,
}

/// The history entry of a change made at `at_micros` by `who`.
pub fn entry(of: EntryOf<'_>, who: &str, detail: Option<String>, at_micros: u64) -> HistoryEntry {
    let version = |item: Option<&Item>| item.and_then(|i| i.text(attr::VERSION)).map(str::to_owned);
    HistoryEntry {
        at_micros,
        action: of.action,
        channel: of.channel.to_owned(),
        platform: of.target,
        from_version: version(of.from),
        to_version: version(of.to),
        who: who.to_owned(),
        detail,
    }
}
