//! Operators' item reads and writes (`ItemWriter`), listings by sort-key prefix, the apps the
//! store holds, and deletes (`ItemQuery`), on the embedded store.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{EmbeddedStore, decode, encode};
use crate::domain::item::Item;
use crate::store::{ItemQuery, ItemWriter, StoreError};

#[async_trait]
impl ItemWriter for EmbeddedStore {
    async fn get_item(&self, app_id: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        let (app_id, sk) = (app_id.to_owned(), sk.to_owned());
        self.with_conn(move |conn| {
            let attrs: Option<String> = conn
                .query_row(
                    "SELECT attrs FROM items WHERE app_id = ?1 AND sk = ?2",
                    params![app_id, sk],
                    |r| r.get(0),
                )
                .optional()?;
            attrs.map(|a| decode(&sk, &a)).transpose()
        })
        .await
    }

    async fn put_item_if_absent(
        &self,
        app_id: &str,
        sk: &str,
        item: &Item,
    ) -> Result<bool, StoreError> {
        let (app_id, sk, attrs) = (app_id.to_owned(), sk.to_owned(), encode(item)?);
        self.with_conn(move |conn| {
            let n = conn.execute(
                "INSERT INTO items (app_id, sk, attrs) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                params![app_id, sk, attrs],
            )?;
            Ok(n == 1)
        })
        .await
    }

    async fn put_item(&self, app_id: &str, sk: &str, item: &Item) -> Result<(), StoreError> {
        let (app_id, sk, attrs) = (app_id.to_owned(), sk.to_owned(), encode(item)?);
        self.with_conn(move |conn| {
            conn.execute(
                "INSERT INTO items (app_id, sk, attrs) VALUES (?1, ?2, ?3)
                 ON CONFLICT (app_id, sk) DO UPDATE SET attrs = excluded.attrs",
                params![app_id, sk, attrs],
            )?;
            Ok(())
        })
        .await
    }
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
            let mut stmt = conn.prepare_cached(sql)?;
            let rows = stmt
                .query_map(params![pk, prefix, limit], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                ?;
            let mut out = Vec::new();
            for row in rows {
                let (sk, attrs) = row?;
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
                ?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))
                ?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn delete_item(&self, pk: &str, sk: &str) -> Result<bool, StoreError> {
        let (pk, sk) = (pk.to_owned(), sk.to_owned());
        self.with_conn(move |conn| {
            let n = conn.execute(
                "DELETE FROM items WHERE app_id = ?1 AND sk = ?2",
                params![pk, sk],
            )?;
            Ok(n == 1)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::protocol::Platform;
    use crate::domain::release::tests::{AttrValue, SUM, item, s};
    use crate::store::ReleaseStore;

    #[tokio::test]
    async fn items_round_trip_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert!(store.load_app("com.example.app").await.unwrap().is_none());
        let rel = item(&[
            ("version", s("1.0.3")),
            ("bundle", s("k")),
            ("checksum", s(SUM)),
            ("paused", AttrValue::Bool(false)),
        ]);
        store
            .put_item("com.example.app", "release#production#all", &rel)
            .await
            .unwrap();
        store
            .put_item(
                "com.example.app",
                "bundle#1.0.3",
                &item(&[("checksum", s(SUM))]),
            )
            .await
            .unwrap();
        store
            .put_item("com.other.app", "release#production#all", &rel)
            .await
            .unwrap();
        assert!(
            store
                .put_item_if_absent("com.example.app", "bundle#1.0.3", &item(&[]))
                .await
                .is_ok_and(|w| !w)
        );
        assert_eq!(
            store
                .get_item("com.example.app", "bundle#1.0.3")
                .await
                .unwrap(),
            Some(item(&[("checksum", s(SUM))]))
        );
        drop(store);

        let store = EmbeddedStore::open(dir.path()).unwrap();
        let snap = store.load_app("com.example.app").await.unwrap().unwrap();
        let r = snap
            .release("production", Platform::Ios)
            .unwrap()
            .as_ref()
            .unwrap();
        assert_eq!(r.version_text, "1.0.3");
        assert_eq!(snap.channels.len(), 1);
    }

    #[tokio::test]
    async fn a_second_connection_sees_writes() {
        let dir = tempfile::tempdir().unwrap();
        let reader = EmbeddedStore::open(dir.path()).unwrap();
        let writer = EmbeddedStore::open(dir.path()).unwrap();
        writer
            .put_item(
                "com.example.app",
                "app",
                &item(&[("default_channel", s("beta"))]),
            )
            .await
            .unwrap();
        let snap = reader.load_app("com.example.app").await.unwrap().unwrap();
        assert_eq!(snap.default_channel, "beta");
    }
}
