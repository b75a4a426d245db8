//! Stats counters on the embedded store: a batch is one SQLite transaction, applied once per
//! batch id; the devices that reported failures get their failed versions.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{EmbeddedStore, unavailable};
use crate::domain::stats::fold::{ActionCounts, CounterKey, StatsBatch, newest_failed_versions};
use crate::store::{StatsSink, StoreError};

/// How long a batch id is remembered to refuse a resend (DynamoDB's request tokens: 10 min).
pub(super) const BATCH_MEMORY_SECS: u64 = 24 * 3600;

#[async_trait]
impl StatsSink for EmbeddedStore {
    async fn record(&self, batch: &StatsBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let batch = batch.clone();
        let (now, expires) = (self.clock.now() as i64, self.device_expiry());
        self.with_conn(move |conn| {
            let tx = conn.transaction()?;
            let fresh = tx.execute(
                "INSERT INTO stats_batches (id, at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![batch.id, now],
            )?;
            if fresh == 0 {
                return Ok(()); // A resend of a batch already counted.
            }
            for (key, counts) in &batch.counts {
                for (action, n) in counts {
                    tx.execute(
                        "INSERT INTO counters (app_id, channel, version, action, n) VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (app_id, channel, version, action) DO UPDATE SET n = n + excluded.n",
                        params![key.app_id, key.channel, key.version, action, *n as i64],
                    )?;
                }
            }
            let mut failed: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
            for (app, device, version) in &batch.device_failures {
                failed.entry((app, device)).or_default().push(version);
            }
            for (app, device) in &batch.devices_seen {
                let old: Option<String> = tx
                    .query_row(
                        "SELECT failed_versions FROM devices WHERE app_id = ?1 AND device_id = ?2",
                        params![app, device],
                        |r| r.get(0),
                    )
                    .optional()?;
                let mut versions: BTreeSet<String> = old
                    .as_deref()
                    .and_then(|o| serde_json::from_str(o).ok())
                    .unwrap_or_default();
                for v in failed.get(&(app.as_str(), device.as_str())).into_iter().flatten() {
                    versions.insert((*v).to_owned());
                }
                let versions =
                    serde_json::to_string(&newest_failed_versions(versions)).map_err(unavailable)?;
                tx.execute(
                    "INSERT INTO devices (app_id, device_id, failed_versions, last_seen, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (app_id, device_id) DO UPDATE SET failed_versions = excluded.failed_versions,
                       last_seen = excluded.last_seen, expires_at = excluded.expires_at",
                    params![app, device, versions, now, expires],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn counts(&self, key: &CounterKey) -> Result<ActionCounts, StoreError> {
        let key = key.clone();
        self.with_read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT action, n FROM counters WHERE app_id = ?1 AND channel = ?2 AND version = ?3",
            )?;
            let rows = stmt.query_map(params![key.app_id, key.channel, key.version], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn app_counts(
        &self,
        app_id: &str,
    ) -> Result<Vec<(CounterKey, ActionCounts)>, StoreError> {
        let app_id = app_id.to_owned();
        self.with_read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT channel, version, action, n FROM counters WHERE app_id = ?1",
            )?;
            let rows = stmt.query_map(params![app_id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })?;
            let mut out: BTreeMap<CounterKey, ActionCounts> = BTreeMap::new();
            for row in rows {
                let (channel, version, action, n) = row?;
                let key = CounterKey {
                    app_id: app_id.clone(),
                    channel,
                    version,
                };
                out.entry(key).or_default().insert(action, n.max(0) as u64);
            }
            Ok(out.into_iter().collect())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::domain::device::ChannelSource;
    use crate::store::{DeviceStore, EvidenceStore};

    fn batch(id: &str, version: &str, actions: &[(&str, u64)], failed: bool) -> StatsBatch {
        let key = CounterKey {
            app_id: "com.example.app".into(),
            channel: "production".into(),
            version: version.into(),
        };
        let mut b = StatsBatch {
            id: id.into(),
            ..Default::default()
        };
        b.counts.insert(
            key,
            actions.iter().map(|(a, n)| (a.to_string(), *n)).collect(),
        );
        b.devices_seen
            .insert(("com.example.app".into(), "dev-1".into()));
        if failed {
            b.device_failures
                .insert(("com.example.app".into(), "dev-1".into(), version.into()));
        }
        b
    }

    #[tokio::test]
    async fn stats_are_counted_once_per_batch_and_fail_devices() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        store
            .record(&batch(
                "a",
                "1.0.1",
                &[("set", 3), ("update_fail", 1)],
                true,
            ))
            .await
            .unwrap();
        store
            .record(&batch(
                "a",
                "1.0.1",
                &[("set", 3), ("update_fail", 1)],
                true,
            ))
            .await
            .unwrap();
        store
            .record(&batch("b", "1.0.2", &[("set", 1)], false))
            .await
            .unwrap();
        let key = CounterKey {
            app_id: "com.example.app".into(),
            channel: "production".into(),
            version: "1.0.1".into(),
        };
        let counts = store.counts(&key).await.unwrap();
        assert_eq!(
            (counts["set"], counts["update_fail"]),
            (3, 1),
            "the resent batch is not counted twice"
        );
        assert_eq!(store.app_counts("com.example.app").await.unwrap().len(), 2);
        let dev = store
            .get_device("com.example.app", "dev-1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            dev.failed_versions.iter().collect::<Vec<_>>(),
            ["1.0.1"],
            "failures persist across batches"
        );
        assert!(dev.last_seen.is_some());
    }

    #[tokio::test]
    async fn housekeeping_forgets_expired_devices_and_old_batch_ids() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        store
            .record(&batch("old", "1.0.1", &[("set", 1)], true))
            .await
            .unwrap();
        let rows = |sql: &'static str| {
            let conn = rusqlite::Connection::open(dir.path().join("updraft.db")).unwrap();
            conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap()
        };
        // Age both rows past their lifetime, from another connection.
        let conn = rusqlite::Connection::open(dir.path().join("updraft.db")).unwrap();
        conn.execute_batch("UPDATE devices SET expires_at = 1; UPDATE stats_batches SET at = 1;")
            .unwrap();
        // A request never sweeps: a new batch leaves the old rows alone.
        let mut fresh = batch("new", "1.0.2", &[("set", 1)], false);
        fresh.devices_seen.clear();
        store.record(&fresh).await.unwrap();
        assert_eq!(rows("SELECT count(*) FROM stats_batches"), 2);
        assert_eq!(rows("SELECT count(*) FROM devices"), 1);
        store.housekeep().await.unwrap();
        assert_eq!(rows("SELECT count(*) FROM stats_batches"), 1);
        assert_eq!(rows("SELECT count(*) FROM devices"), 0);
    }

    /// Hourly counts follow the evidence rule (a device counts once), land in the hour of the
    /// write, and are swept 14 days after their hour.
    #[tokio::test]
    async fn hourly_counts_follow_the_evidence_and_expire() {
        use crate::domain::evidence::{EvidenceKey, EvidenceKind, EvidenceMark};
        use crate::domain::hourly::{HOURLY_KEEP_SECS, hour_of};
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let mark = |device: &str, kind| EvidenceMark {
            key: EvidenceKey {
                app_id: "a.b".into(),
                sk: "release#production#all".into(),
                version: "1.0.1".into(),
                epoch: 0,
            },
            kind,
            device_id: device.into(),
            network: "10.0.0.0/24".into(),
            network_cap: 10,
        };
        let now = crate::clock::SystemClock.now();
        let old = now - HOURLY_KEEP_SECS - 2 * 3600;
        let a = [
            mark("d1", EvidenceKind::Attempt),
            mark("d1", EvidenceKind::Failure),
        ];
        store.record_evidence(&a, old).await.unwrap();
        store.record_evidence(&a, now).await.unwrap(); // d1 again: counted before
        store
            .record_evidence(&[mark("d2", EvidenceKind::Attempt)], now)
            .await
            .unwrap();
        let all = store.hourly("a.b", 0).await.unwrap();
        let counts: Vec<(u64, u64, u64)> = all
            .iter()
            .map(|c| (c.hour, c.attempts, c.failures))
            .collect();
        assert_eq!(counts, vec![(hour_of(old), 1, 1), (hour_of(now), 1, 0)]);
        assert_eq!(store.hourly("a.b", hour_of(now)).await.unwrap().len(), 1);
        store.housekeep().await.unwrap();
        let kept = store.hourly("a.b", 0).await.unwrap();
        assert_eq!(kept.len(), 1, "the old hour is swept: {kept:?}");
        assert_eq!(kept[0].hour, hour_of(now));
    }

    #[tokio::test]
    async fn channel_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(store.get_device("a.b", "d").await.unwrap(), None);
        store
            .set_channel("a.b", "d", "beta", ChannelSource::Operator)
            .await
            .unwrap();
        store
            .unset_channel("a.b", "d", Some(ChannelSource::Device))
            .await
            .unwrap();
        assert_eq!(
            store
                .get_device("a.b", "d")
                .await
                .unwrap()
                .unwrap()
                .channel
                .as_deref(),
            Some("beta")
        );
        store.unset_channel("a.b", "d", None).await.unwrap();
        assert_eq!(
            store.get_device("a.b", "d").await.unwrap().unwrap().channel,
            None
        );
        let expired =
            EmbeddedStore::open_with(dir.path(), DEFAULT_BUSY_TIMEOUT_FOR_TESTS, 0).unwrap();
        expired
            .set_channel("a.b", "e", "beta", ChannelSource::Device)
            .await
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert_eq!(
            expired.get_device("a.b", "e").await.unwrap(),
            None,
            "expired devices are gone"
        );
    }

    const DEFAULT_BUSY_TIMEOUT_FOR_TESTS: std::time::Duration = std::time::Duration::from_secs(1);
}
