//! Devices on the embedded store: channel overrides (with the app's `device_overrides`
//! marker in the same transaction) and failed versions, expiring like the devices table's TTL.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{EmbeddedStore, encode, schema};
use crate::domain::device::{ChannelSource, DeviceState};
use crate::domain::item::{Item, ItemExt, attr};
use crate::domain::keys::DEVICE_OVERRIDES_SK;
use crate::store::{DeviceStore, StoreError};

#[async_trait]
impl DeviceStore for EmbeddedStore {
    async fn get_device(
        &self,
        app_id: &str,
        device_id: &str,
    ) -> Result<Option<DeviceState>, StoreError> {
        // A point read on a read connection: never behind a writer, done inline.
        let now = self.clock.now() as i64;
        let row = self.read_now(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT channel, channel_source, failed_versions, last_seen FROM devices
                 WHERE app_id = ?1 AND device_id = ?2 AND expires_at >= ?3",
            )?;
            let row = stmt
                .query_row(params![app_id, device_id, now], |r| {
                    Ok((
                        r.get::<_, Option<String>>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                    ))
                })
                .optional()?;
            Ok(row)
        })?;
        Ok(row.map(|(channel, source, failed, last_seen)| DeviceState {
            channel,
            channel_source: source.as_deref().and_then(ChannelSource::parse),
            failed_versions: serde_json::from_str(&failed).unwrap_or_default(),
            last_seen: last_seen.map(|s| s as u64),
        }))
    }

    async fn set_channel(
        &self,
        app_id: &str,
        device_id: &str,
        channel: &str,
        source: ChannelSource,
    ) -> Result<(), StoreError> {
        let (app_id, device_id, channel) =
            (app_id.to_owned(), device_id.to_owned(), channel.to_owned());
        let (now, expires) = (self.clock.now(), self.device_expiry());
        self.with_conn(move |conn| {
            let tx = conn.transaction()?;
            let changed = tx
                .execute(
                    "INSERT INTO devices (app_id, device_id, channel, channel_source, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (app_id, device_id) DO UPDATE SET channel = excluded.channel,
                   channel_source = excluded.channel_source, expires_at = excluded.expires_at
                 WHERE excluded.channel_source = 'operator' OR channel_source IS NULL
                   OR channel_source = excluded.channel_source",
                    params![app_id, device_id, channel, source.as_str(), expires],
                )?;
            if changed > 0 {
                // The app's marker (see `AppSnapshot::device_overrides`), in the same
                // transaction as the override; kept from the first override on.
                let mut marker = Item::new();
                marker.set_whole(attr::SINCE, now);
                tx.execute(
                    "INSERT INTO items (app_id, sk, attrs) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                    params![app_id, DEVICE_OVERRIDES_SK, encode(&marker)?],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn unset_channel(
        &self,
        app_id: &str,
        device_id: &str,
        only: Option<ChannelSource>,
    ) -> Result<(), StoreError> {
        let (app_id, device_id) = (app_id.to_owned(), device_id.to_owned());
        self.with_conn(move |conn| {
            conn.execute(
                "UPDATE devices SET channel = NULL, channel_source = NULL
                 WHERE app_id = ?1 AND device_id = ?2 AND (?3 IS NULL OR channel_source = ?3)",
                params![app_id, device_id, only.map(ChannelSource::as_str)],
            )?;
            Ok(())
        })
        .await
    }

    async fn mark_existing_overrides(&self) -> Result<Vec<String>, StoreError> {
        let now = self.clock.now();
        self.with_conn(move |conn| schema::mark_existing_overrides(conn, now))
            .await
    }
}
