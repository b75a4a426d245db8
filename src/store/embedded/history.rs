//! Changes with their history entry on the embedded store: the revision check and both
//! writes in one immediate SQLite transaction (the embedded conditional write).

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{EmbeddedStore, decode, encode};
use crate::domain::history::{Expected, HistoryEntry, history_partition};
use crate::domain::item::Item;
use crate::store::{HistoryStore, StoreError, conflict};

/// Inserts a history entry; an entry with the same key is never overwritten.
fn append_history(
    conn: &rusqlite::Connection,
    app_id: &str,
    entry: &HistoryEntry,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO items (app_id, sk, attrs) VALUES (?1, ?2, ?3)",
        params![
            history_partition(app_id),
            entry.sort_key(),
            encode(&entry.to_item())?
        ],
    )?;
    Ok(())
}

#[async_trait]
impl HistoryStore for EmbeddedStore {
    async fn change_with_history(
        &self,
        app_id: &str,
        sk: &str,
        expected: Expected,
        item: &Item,
        entry: &HistoryEntry,
    ) -> Result<(), StoreError> {
        let (app_id, sk, attrs, entry) = (
            app_id.to_owned(),
            sk.to_owned(),
            encode(item)?,
            entry.clone(),
        );
        self.with_conn(move |conn| {
            // An immediate transaction holds the write lock from the read on: the check and
            // both writes are one atomic step, across processes too.
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let current: Option<String> = tx
                .query_row(
                    "SELECT attrs FROM items WHERE app_id = ?1 AND sk = ?2",
                    params![app_id, sk],
                    |r| r.get(0),
                )
                .optional()?;
            let current = current.map(|a| decode(&sk, &a)).transpose()?;
            if Expected::of(current.as_ref()) != expected {
                return Err(conflict(&app_id, &sk));
            }
            tx.execute(
                "INSERT INTO items (app_id, sk, attrs) VALUES (?1, ?2, ?3)
                 ON CONFLICT (app_id, sk) DO UPDATE SET attrs = excluded.attrs",
                params![app_id, sk, attrs],
            )?;
            append_history(&tx, &app_id, &entry)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::history::HistoryAction;
    use crate::domain::item::{AttrValue, attr};
    use crate::domain::keys::Target;
    use crate::store::ItemQuery;

    fn entry(at: u64) -> HistoryEntry {
        HistoryEntry {
            at_micros: at,
            action: HistoryAction::ChannelSet,
            channel: "beta".into(),
            platform: Target::All,
            from_version: Some("1.0.0".into()),
            to_version: Some("1.0.0".into()),
            who: "alice".into(),
            detail: None,
        }
    }

    #[tokio::test]
    async fn a_change_on_a_stale_revision_loses_and_writes_no_history() {
        let dir = tempfile::tempdir().unwrap();
        let a = EmbeddedStore::open(dir.path()).unwrap();
        let b = EmbeddedStore::open(dir.path()).unwrap();
        let sk = "release#beta#all";
        let mut item = Item::new();
        item.insert("version".into(), AttrValue::S("1.0.0".into()));
        item.insert(attr::REVISION.into(), AttrValue::N(1.into()));
        a.change_with_history("a.b", sk, Expected::Absent, &item, &entry(1))
            .await
            .unwrap();
        item.insert(attr::REVISION.into(), AttrValue::N(2.into()));
        // Both read revision 1; the first write wins, the second is a conflict.
        a.change_with_history("a.b", sk, Expected::Revision(1), &item, &entry(2))
            .await
            .unwrap();
        let lost = b
            .change_with_history("a.b", sk, Expected::Revision(1), &item, &entry(3))
            .await
            .unwrap_err();
        assert!(matches!(lost, StoreError::Conflict(_)), "{lost}");
        assert!(
            a.change_with_history("a.b", sk, Expected::Absent, &item, &entry(4))
                .await
                .is_err()
        );
        let history = b.query_prefix("a.b#history", "", true, None).await.unwrap();
        let at: Vec<u64> = history
            .iter()
            .map(|(_, i)| HistoryEntry::from_item(i).unwrap().at_micros)
            .collect();
        assert_eq!(at, [2, 1], "newest first, one entry per applied change");
        assert_eq!(b.app_ids().await.unwrap(), ["a.b"]);
        assert_eq!(
            b.query_prefix("a.b#history", "", true, Some(1))
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(b.delete_item("a.b", sk).await.unwrap());
        assert!(!b.delete_item("a.b", sk).await.unwrap());
    }
}
