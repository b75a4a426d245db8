//! The embedded store's operator side: listings by prefix, the apps it holds, and changes that
//! append their history entry in the same SQLite transaction (checked against the item's
//! revision inside an immediate transaction, which is the embedded conditional write).

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use crate::domain::history::{Expected, HistoryEntry, history_partition};
use crate::domain::release::Item;
use crate::store::embedded::{EmbeddedStore, decode, encode, unavailable};
use crate::store::{HistoryStore, ItemQuery, StoreError, conflict};

/// Inserts a history entry; an entry with the same key is never overwritten.
pub(crate) fn append_history(
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
    )
    .map_err(unavailable)?;
    Ok(())
}

#[async_trait]
impl ItemQuery for EmbeddedStore {
    async fn query_prefix(
        &self,
        pk: &str,
        prefix: &str,
        descending: bool,
        limit: Option<usize>,
    ) -> Result<Vec<(String, Item)>, StoreError> {
        let (pk, prefix) = (pk.to_owned(), prefix.to_owned());
        let limit = limit.map_or(-1, |l| l.min(i64::MAX as usize) as i64);
        self.with_conn(move |conn| {
            let sql = if descending {
                "SELECT sk, attrs FROM items WHERE app_id = ?1 AND substr(sk, 1, length(?2)) = ?2 ORDER BY sk DESC LIMIT ?3"
            } else {
                "SELECT sk, attrs FROM items WHERE app_id = ?1 AND substr(sk, 1, length(?2)) = ?2 ORDER BY sk ASC LIMIT ?3"
            };
            let mut stmt = conn.prepare_cached(sql).map_err(unavailable)?;
            let rows = stmt
                .query_map(params![pk, prefix, limit], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(unavailable)?;
            let mut out = Vec::new();
            for row in rows {
                let (sk, attrs) = row.map_err(unavailable)?;
                let item = decode(&sk, &attrs)?;
                out.push((sk, item));
            }
            Ok(out)
        })
        .await
    }

    async fn app_ids(&self) -> Result<Vec<String>, StoreError> {
        self.with_conn(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT DISTINCT app_id FROM items WHERE app_id NOT LIKE '%#history' ORDER BY app_id",
                )
                .map_err(unavailable)?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(unavailable)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
        })
        .await
    }

    async fn delete_item(&self, pk: &str, sk: &str) -> Result<bool, StoreError> {
        let (pk, sk) = (pk.to_owned(), sk.to_owned());
        self.with_conn(move |conn| {
            let n = conn
                .execute(
                    "DELETE FROM items WHERE app_id = ?1 AND sk = ?2",
                    params![pk, sk],
                )
                .map_err(unavailable)?;
            Ok(n == 1)
        })
        .await
    }
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
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            let current: Option<String> = tx
                .query_row(
                    "SELECT attrs FROM items WHERE app_id = ?1 AND sk = ?2",
                    params![app_id, sk],
                    |r| r.get(0),
                )
                .optional()
                .map_err(unavailable)?;
            let current = current.map(|a| decode(&sk, &a)).transpose()?;
            if Expected::of(current.as_ref()) != expected {
                return Err(conflict(&app_id, &sk));
            }
            tx.execute(
                "INSERT INTO items (app_id, sk, attrs) VALUES (?1, ?2, ?3)
                 ON CONFLICT (app_id, sk) DO UPDATE SET attrs = excluded.attrs",
                params![app_id, sk, attrs],
            )
            .map_err(unavailable)?;
            append_history(&tx, &app_id, &entry)?;
            tx.commit().map_err(unavailable)?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::history::{HistoryAction, REVISION_ATTR};
    use crate::domain::release::AttrValue;

    fn entry(at: u64) -> HistoryEntry {
        HistoryEntry {
            at_micros: at,
            action: HistoryAction::ChannelSet,
            channel: "beta".into(),
            platform: "all".into(),
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
        item.insert(REVISION_ATTR.into(), AttrValue::N(1.into()));
        a.change_with_history("a.b", sk, Expected::Absent, &item, &entry(1))
            .await
            .unwrap();
        item.insert(REVISION_ATTR.into(), AttrValue::N(2.into()));
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
