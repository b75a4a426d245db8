//! The update check's read on the embedded store: an app's `app`, `device_overrides` and
//! `release#…` items in one query on a read connection.

use async_trait::async_trait;
use rusqlite::params;

use super::{EmbeddedStore, decode};
use crate::domain::snapshot::{AppSnapshot, describes_an_app};
use crate::store::{ReleaseStore, StoreError};

#[async_trait]
impl ReleaseStore for EmbeddedStore {
    async fn load_app(&self, app_id: &str) -> Result<Option<AppSnapshot>, StoreError> {
        let app_id = app_id.to_owned();
        self.with_read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT sk, attrs FROM items WHERE app_id = ?1 AND (sk = 'app' OR sk = 'device_overrides' OR sk >= 'release#' AND sk < 'release$')",
                )
                ?;
            let rows = stmt
                .query_map(params![app_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                ?;
            let mut items = Vec::new();
            for row in rows {
                let (sk, attrs) = row?;
                let item = decode(&sk, &attrs)?;
                items.push((sk, item));
            }
            if !describes_an_app(items.iter().map(|(sk, _)| sk.as_str())) {
                return Ok(None);
            }
            Ok(Some(AppSnapshot::from_items(items.iter().map(|(sk, i)| (sk.as_str(), i)))))
        })
        .await
    }
}
