//! The embedded store's device side: devices, stats counters and release pauses in the same
//! SQLite file, with the same meaning as the DynamoDB tables. A stats batch is one SQLite
//! transaction, applied once per batch id.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use crate::domain::device::{ChannelSource, DeviceState};
use crate::domain::evidence::{Evidence, EvidenceKey, EvidenceKind, EvidenceMark, mark_effect};
use crate::domain::history::{REVISION_ATTR, revision_of};
use crate::domain::hourly::{HourlyCount, HourlyIncrements, hour_expires_at, hour_of};
use crate::domain::release::{AttrValue, DEVICE_OVERRIDES_SINCE, DEVICE_OVERRIDES_SK, Item};
use crate::domain::stats::{ActionCounts, CounterKey, StatsBatch, newest_failed_versions};
use crate::store::embedded::{EmbeddedStore, decode, encode, unavailable};
use crate::store::embedded_history::append_history;
use crate::store::{
    DeviceStore, PauseRequest, ReleaseControl, ResumeRequest, StatsSink, StoreError, now_micros,
    pause_entry, resume_entry,
};

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// How long a batch id is remembered to refuse a resend (DynamoDB's request tokens: 10 min).
const BATCH_MEMORY_SECS: u64 = 24 * 3600;

/// How often `updraft serve` sweeps expired devices and old batch ids.
pub const HOUSEKEEPING_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

impl EmbeddedStore {
    /// Forgets batch ids older than a day, and devices, evidence and hourly counts past their
    /// expiry: short writes,
    /// run on a timer (`spawn_housekeeping`), never inside a request.
    pub async fn housekeep(&self) -> Result<(), StoreError> {
        self.with_conn(|conn| {
            let now = now_unix() as i64;
            conn.execute(
                "DELETE FROM stats_batches WHERE at < ?1",
                params![now - BATCH_MEMORY_SECS as i64],
            )
            .map_err(unavailable)?;
            conn.execute("DELETE FROM devices WHERE expires_at < ?1", params![now])
                .map_err(unavailable)?;
            for table in ["evidence_marks", "evidence", "hourly"] {
                conn.execute(
                    &format!("DELETE FROM {table} WHERE expires_at < ?1"),
                    params![now],
                )
                .map_err(unavailable)?;
            }
            Ok(())
        })
        .await
    }

    /// Runs `housekeep` now and then every `every`, on the current tokio runtime, for as long
    /// as the returned task is not aborted.
    pub fn spawn_housekeeping(&self, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = store.housekeep().await {
                    tracing::warn!(error = %e, "housekeeping of the embedded store failed");
                }
            }
        })
    }
}

impl EmbeddedStore {
    /// `record_evidence` at time `now` (seconds since the epoch): the hour its counted marks
    /// add to. One transaction: a mark row per (release, kind, device), a count per (release,
    /// kind, network), a tally per release, all expiring with the devices' TTL; and one row
    /// per (release, version, hour) counted, kept `HOURLY_KEEP_SECS`.
    pub async fn record_evidence_at(
        &self,
        marks: &[EvidenceMark],
        now: u64,
    ) -> Result<Vec<(EvidenceKey, Evidence)>, StoreError> {
        let marks = marks.to_vec();
        let ttl = self.device_ttl_secs;
        let hour = hour_of(now);
        self.with_conn(move |conn| {
            let now = now as i64;
            let expires = now + ttl as i64;
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            let mut failed: BTreeSet<EvidenceKey> = BTreeSet::new();
            let mut hourly = HourlyIncrements::default();
            for m in &marks {
                let (app, id, kind) = (&m.key.app_id, m.key.id(), m.kind.as_str());
                let fresh = tx
                    .execute(
                        "INSERT INTO evidence_marks (app_id, mark, n, expires_at) VALUES (?1, ?2, 1, ?3)
                         ON CONFLICT DO NOTHING",
                        params![app, format!("d#{kind}#{id}#{}", m.device_id), expires],
                    )
                    .map_err(unavailable)?
                    == 1;
                let network = format!("n#{kind}#{id}#{}", m.network);
                let before: i64 = tx
                    .query_row(
                        "SELECT n FROM evidence_marks WHERE app_id = ?1 AND mark = ?2",
                        params![app, network],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(unavailable)?
                    .unwrap_or(0);
                let effect = mark_effect(fresh, before.max(0) as u64, m.network_cap);
                if !effect.counted {
                    continue;
                }
                tx.execute(
                    "INSERT INTO evidence_marks (app_id, mark, n, expires_at) VALUES (?1, ?2, 1, ?3)
                     ON CONFLICT (app_id, mark) DO UPDATE SET n = n + 1, expires_at = excluded.expires_at",
                    params![app, network, expires],
                )
                .map_err(unavailable)?;
                let (attempts, failures, networks) = match m.kind {
                    EvidenceKind::Attempt => (1, 0, 0),
                    EvidenceKind::Failure => (0, 1, i64::from(effect.new_network)),
                };
                tx.execute(
                    "INSERT INTO evidence (app_id, release, attempts, failures, failing_networks, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (app_id, release) DO UPDATE SET attempts = attempts + excluded.attempts,
                       failures = failures + excluded.failures,
                       failing_networks = failing_networks + excluded.failing_networks,
                       expires_at = excluded.expires_at",
                    params![app, id, attempts, failures, networks, expires],
                )
                .map_err(unavailable)?;
                hourly.add(&m.key.sk, &m.key.version, hour, m.kind);
                if m.kind == EvidenceKind::Failure {
                    failed.insert(m.key.clone());
                }
            }
            let app = marks.first().map(|m| m.key.app_id.as_str()).unwrap_or_default();
            for ((sk, version, hour), (attempts, failures)) in &hourly.by_bucket {
                tx.execute(
                    "INSERT INTO hourly (app_id, hour, release, version, attempts, failures, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (app_id, hour, release, version) DO UPDATE SET
                       attempts = attempts + excluded.attempts, failures = failures + excluded.failures",
                    params![app, *hour as i64, sk, version, *attempts as i64, *failures as i64, hour_expires_at(*hour) as i64],
                )
                .map_err(unavailable)?;
            }
            let mut out = Vec::with_capacity(failed.len());
            for key in failed {
                let e = tx
                    .query_row(
                        "SELECT attempts, failures, failing_networks FROM evidence WHERE app_id = ?1 AND release = ?2",
                        params![key.app_id, key.id()],
                        |r| {
                            Ok(Evidence {
                                attempts: r.get::<_, i64>(0)?.max(0) as u64,
                                failures: r.get::<_, i64>(1)?.max(0) as u64,
                                failing_networks: r.get::<_, i64>(2)?.max(0) as u64,
                            })
                        },
                    )
                    .map_err(unavailable)?;
                out.push((key, e));
            }
            tx.commit().map_err(unavailable)?;
            Ok(out)
        })
        .await
    }
}

#[async_trait]
impl DeviceStore for EmbeddedStore {
    async fn get_device(
        &self,
        app_id: &str,
        device_id: &str,
    ) -> Result<Option<DeviceState>, StoreError> {
        // A point read on a read connection: never behind a writer, done inline.
        let row = self.read_now(|conn| {
            conn.prepare_cached(
                "SELECT channel, channel_source, failed_versions, last_seen FROM devices
                 WHERE app_id = ?1 AND device_id = ?2 AND expires_at >= ?3",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![app_id, device_id, now_unix() as i64], |r| {
                    Ok((
                        r.get::<_, Option<String>>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                    ))
                })
                .optional()
            })
            .map_err(unavailable)
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
        let expires = (now_unix() + self.device_ttl_secs) as i64;
        self.with_conn(move |conn| {
            let tx = conn.transaction().map_err(unavailable)?;
            let changed = tx
                .execute(
                    "INSERT INTO devices (app_id, device_id, channel, channel_source, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (app_id, device_id) DO UPDATE SET channel = excluded.channel,
                   channel_source = excluded.channel_source, expires_at = excluded.expires_at
                 WHERE excluded.channel_source = 'operator' OR channel_source IS NULL
                   OR channel_source = excluded.channel_source",
                    params![app_id, device_id, channel, source.as_str(), expires],
                )
                .map_err(unavailable)?;
            if changed > 0 {
                // The app's marker (see `AppSnapshot::device_overrides`), in the same
                // transaction as the override; kept from the first override on.
                let marker = Item::from([(
                    DEVICE_OVERRIDES_SINCE.to_owned(),
                    AttrValue::N(now_unix().into()),
                )]);
                tx.execute(
                    "INSERT INTO items (app_id, sk, attrs) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                    params![app_id, DEVICE_OVERRIDES_SK, encode(&marker)?],
                )
                .map_err(unavailable)?;
            }
            tx.commit().map_err(unavailable)?;
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
            )
            .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn mark_existing_overrides(&self) -> Result<Vec<String>, StoreError> {
        self.with_conn(mark_existing_overrides).await
    }
}

/// Writes the `device_overrides` marker of every app with a device override (the embedded
/// store also does this once when it opens a database written before the marker existed).
pub(crate) fn mark_existing_overrides(
    conn: &mut rusqlite::Connection,
) -> Result<Vec<String>, StoreError> {
    let marker = Item::from([(
        DEVICE_OVERRIDES_SINCE.to_owned(),
        AttrValue::N(now_unix().into()),
    )]);
    let tx = conn.transaction().map_err(unavailable)?;
    tx.execute(
        "INSERT INTO items (app_id, sk, attrs)
         SELECT DISTINCT app_id, ?1, ?2 FROM devices WHERE channel IS NOT NULL
         ON CONFLICT DO NOTHING",
        params![DEVICE_OVERRIDES_SK, encode(&marker)?],
    )
    .map_err(unavailable)?;
    let apps = {
        let mut stmt = tx
            .prepare(
                "SELECT DISTINCT app_id FROM devices WHERE channel IS NOT NULL ORDER BY app_id",
            )
            .map_err(unavailable)?;
        stmt.query_map([], |r| r.get::<_, String>(0))
            .map_err(unavailable)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(unavailable)?
    };
    tx.commit().map_err(unavailable)?;
    Ok(apps)
}

#[async_trait]
impl StatsSink for EmbeddedStore {
    async fn record(&self, batch: &StatsBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let batch = batch.clone();
        let ttl = self.device_ttl_secs;
        self.with_conn(move |conn| {
            let now = now_unix() as i64;
            let tx = conn.transaction().map_err(unavailable)?;
            let fresh = tx
                .execute("INSERT INTO stats_batches (id, at) VALUES (?1, ?2) ON CONFLICT DO NOTHING", params![batch.id, now])
                .map_err(unavailable)?;
            if fresh == 0 {
                return Ok(()); // A resend of a batch already counted.
            }
            for (key, counts) in &batch.counts {
                for (action, n) in counts {
                    tx.execute(
                        "INSERT INTO counters (app_id, channel, version, action, n) VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (app_id, channel, version, action) DO UPDATE SET n = n + excluded.n",
                        params![key.app_id, key.channel, key.version, action, *n as i64],
                    )
                    .map_err(unavailable)?;
                }
            }
            let mut failed: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
            for (app, device, version) in &batch.device_failures {
                failed.entry((app, device)).or_default().push(version);
            }
            let expires = now + ttl as i64;
            for (app, device) in &batch.devices_seen {
                let old: Option<String> = tx
                    .query_row(
                        "SELECT failed_versions FROM devices WHERE app_id = ?1 AND device_id = ?2",
                        params![app, device],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(unavailable)?;
                let mut versions: BTreeSet<String> =
                    old.as_deref().and_then(|o| serde_json::from_str(o).ok()).unwrap_or_default();
                for v in failed.get(&(app.as_str(), device.as_str())).into_iter().flatten() {
                    versions.insert((*v).to_owned());
                }
                let versions = newest_failed_versions(versions);
                let versions = serde_json::to_string(&versions).map_err(unavailable)?;
                tx.execute(
                    "INSERT INTO devices (app_id, device_id, failed_versions, last_seen, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (app_id, device_id) DO UPDATE SET failed_versions = excluded.failed_versions,
                       last_seen = excluded.last_seen, expires_at = excluded.expires_at",
                    params![app, device, versions, now, expires],
                )
                .map_err(unavailable)?;
            }
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn record_evidence(
        &self,
        marks: &[EvidenceMark],
    ) -> Result<Vec<(EvidenceKey, Evidence)>, StoreError> {
        self.record_evidence_at(marks, now_unix()).await
    }

    async fn evidence(&self, key: &EvidenceKey) -> Result<Evidence, StoreError> {
        let (app, id) = (key.app_id.clone(), key.id());
        self.with_read(move |conn| {
            conn.query_row(
                "SELECT attempts, failures, failing_networks FROM evidence WHERE app_id = ?1 AND release = ?2",
                params![app, id],
                |r| {
                    Ok(Evidence {
                        attempts: r.get::<_, i64>(0)?.max(0) as u64,
                        failures: r.get::<_, i64>(1)?.max(0) as u64,
                        failing_networks: r.get::<_, i64>(2)?.max(0) as u64,
                    })
                },
            )
            .optional()
            .map(Option::unwrap_or_default)
            .map_err(unavailable)
        })
        .await
    }

    async fn counts(&self, key: &CounterKey) -> Result<ActionCounts, StoreError> {
        let key = key.clone();
        self.with_read(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT action, n FROM counters WHERE app_id = ?1 AND channel = ?2 AND version = ?3")
                .map_err(unavailable)?;
            let rows = stmt
                .query_map(params![key.app_id, key.channel, key.version], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                })
                .map_err(unavailable)?;
            rows.map(|r| r.map(|(a, n)| (a, n.max(0) as u64)).map_err(unavailable)).collect()
        })
        .await
    }

    async fn app_counts(
        &self,
        app_id: &str,
    ) -> Result<Vec<(CounterKey, ActionCounts)>, StoreError> {
        let app_id = app_id.to_owned();
        self.with_read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT channel, version, action, n FROM counters WHERE app_id = ?1",
                )
                .map_err(unavailable)?;
            let rows = stmt
                .query_map(params![app_id], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                })
                .map_err(unavailable)?;
            let mut out: BTreeMap<CounterKey, ActionCounts> = BTreeMap::new();
            for row in rows {
                let (channel, version, action, n) = row.map_err(unavailable)?;
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

    async fn hourly(&self, app_id: &str, since_hour: u64) -> Result<Vec<HourlyCount>, StoreError> {
        let app_id = app_id.to_owned();
        self.with_read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT hour, release, version, attempts, failures FROM hourly
                     WHERE app_id = ?1 AND hour >= ?2 ORDER BY hour, release, version",
                )
                .map_err(unavailable)?;
            let rows = stmt
                .query_map(params![app_id, since_hour as i64], |r| {
                    Ok(HourlyCount {
                        hour: r.get::<_, i64>(0)?.max(0) as u64,
                        sk: r.get(1)?,
                        version: r.get(2)?,
                        attempts: r.get::<_, i64>(3)?.max(0) as u64,
                        failures: r.get::<_, i64>(4)?.max(0) as u64,
                    })
                })
                .map_err(unavailable)?;
            rows.map(|r| r.map_err(unavailable)).collect()
        })
        .await
    }
}

fn n(v: u64) -> AttrValue {
    AttrValue::N(v.into())
}

#[async_trait]
impl ReleaseControl for EmbeddedStore {
    async fn pause_release(
        &self,
        app_id: &str,
        sk: &str,
        pause: &PauseRequest,
    ) -> Result<bool, StoreError> {
        let (app_id, sk, pause) = (app_id.to_owned(), sk.to_owned(), pause.clone());
        self.with_conn(move |conn| {
            // Read, check and write in one immediate transaction: the conditional write.
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            let Some(mut item) = read_item(&tx, &app_id, &sk)? else {
                return Ok(false);
            };
            let serves =
                matches!(item.get("version"), Some(AttrValue::S(v)) if *v == pause.version);
            let paused = matches!(item.get("paused"), Some(AttrValue::Bool(true)));
            let resumed_recently = match item.get("resumed_at") {
                Some(AttrValue::N(at)) => at
                    .as_u64()
                    .is_some_and(|at| at > pause.now.saturating_sub(pause.cooldown_secs)),
                _ => false,
            };
            if !serves || paused || resumed_recently {
                return Ok(false);
            }
            item.insert("paused".into(), AttrValue::Bool(true));
            item.insert("pause_reason".into(), AttrValue::S(pause.reason.clone()));
            item.insert("paused_at".into(), n(pause.now));
            item.insert(REVISION_ATTR.into(), n(revision_of(&item) + 1));
            write_item(&tx, &app_id, &sk, &item)?;
            append_history(&tx, &app_id, &pause_entry(&sk, &pause, now_micros()))?;
            tx.commit().map_err(unavailable)?;
            Ok(true)
        })
        .await
    }

    async fn resume_release(
        &self,
        app_id: &str,
        sk: &str,
        resume: &ResumeRequest,
    ) -> Result<bool, StoreError> {
        let (app_id, sk, resume) = (app_id.to_owned(), sk.to_owned(), resume.clone());
        self.with_conn(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            let Some(mut item) = read_item(&tx, &app_id, &sk)? else {
                return Ok(false);
            };
            if !matches!(item.get("version"), Some(AttrValue::S(v)) if *v == resume.version) {
                return Ok(false);
            }
            item.insert("paused".into(), AttrValue::Bool(false));
            item.insert("resumed_at".into(), n(resume.now));
            item.insert(
                "pause_baseline_installs".into(),
                n(resume.baseline.installs),
            );
            item.insert(
                "pause_baseline_failures".into(),
                n(resume.baseline.failures),
            );
            item.remove("pause_reason");
            item.remove("paused_at");
            item.insert(REVISION_ATTR.into(), n(revision_of(&item) + 1));
            write_item(&tx, &app_id, &sk, &item)?;
            append_history(&tx, &app_id, &resume_entry(&sk, &resume, now_micros()))?;
            tx.commit().map_err(unavailable)?;
            Ok(true)
        })
        .await
    }
}

fn read_item(
    conn: &rusqlite::Connection,
    app_id: &str,
    sk: &str,
) -> Result<Option<Item>, StoreError> {
    let attrs: Option<String> = conn
        .query_row(
            "SELECT attrs FROM items WHERE app_id = ?1 AND sk = ?2",
            params![app_id, sk],
            |r| r.get(0),
        )
        .optional()
        .map_err(unavailable)?;
    attrs.map(|a| decode(sk, &a)).transpose()
}

fn write_item(
    conn: &rusqlite::Connection,
    app_id: &str,
    sk: &str,
    item: &Item,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE items SET attrs = ?3 WHERE app_id = ?1 AND sk = ?2",
        params![app_id, sk, encode(item)?],
    )
    .map_err(unavailable)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::health::Health;
    use crate::domain::release::tests::{SUM, item, s};
    use crate::store::ItemWriter;

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
        let now = now_unix();
        let old = now - HOURLY_KEEP_SECS - 2 * 3600;
        let a = [
            mark("d1", EvidenceKind::Attempt),
            mark("d1", EvidenceKind::Failure),
        ];
        store.record_evidence_at(&a, old).await.unwrap();
        store.record_evidence_at(&a, now).await.unwrap(); // d1 again: counted before
        store
            .record_evidence_at(&[mark("d2", EvidenceKind::Attempt)], now)
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

    #[tokio::test]
    async fn pause_is_conditional_and_resume_records_a_baseline() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let sk = "release#production#all";
        store
            .put_item(
                "com.example.app",
                sk,
                &item(&[
                    ("version", s("1.0.1")),
                    ("bundle", s("k")),
                    ("checksum", s(SUM)),
                ]),
            )
            .await
            .unwrap();
        let req = |version: &str, now| PauseRequest {
            who: None,
            version: version.into(),
            reason: "bad".into(),
            now,
            cooldown_secs: 100,
        };
        assert!(
            !store
                .pause_release("com.example.app", sk, &req("1.0.0", 1000))
                .await
                .unwrap(),
            "another version"
        );
        assert!(
            store
                .pause_release("com.example.app", sk, &req("1.0.1", 1000))
                .await
                .unwrap()
        );
        assert!(
            !store
                .pause_release("com.example.app", sk, &req("1.0.1", 1000))
                .await
                .unwrap(),
            "already paused"
        );
        assert!(
            store
                .resume_release(
                    "com.example.app",
                    sk,
                    &ResumeRequest {
                        version: "1.0.1".into(),
                        now: 2000,
                        baseline: Health {
                            installs: 5,
                            failures: 7
                        },
                        who: "alice".into(),
                    }
                )
                .await
                .unwrap()
        );
        assert!(
            !store
                .pause_release("com.example.app", sk, &req("1.0.1", 2050))
                .await
                .unwrap(),
            "cooldown"
        );
        assert!(
            store
                .pause_release("com.example.app", sk, &req("1.0.1", 2100))
                .await
                .unwrap()
        );
        assert!(
            !store
                .resume_release(
                    "com.example.app",
                    "release#x#all",
                    &ResumeRequest {
                        version: "1.0.1".into(),
                        now: 1,
                        baseline: Health::default(),
                        who: "alice".into(),
                    }
                )
                .await
                .unwrap()
        );
        let item = store
            .get_item("com.example.app", sk)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            item.get("pause_baseline_failures"),
            Some(&AttrValue::N(7.into()))
        );
        assert_eq!(item.get("pause_reason"), Some(&AttrValue::S("bad".into())));
        // Every applied change wrote one history entry, in order; refused ones wrote none.
        use crate::store::ItemQuery;
        let history = store
            .query_prefix("com.example.app#history", "", false, None)
            .await
            .unwrap();
        let actions: Vec<_> = history
            .iter()
            .filter_map(|(_, i)| crate::domain::history::HistoryEntry::from_item(i))
            .map(|e| (e.action.as_str(), e.who))
            .collect();
        assert_eq!(
            actions,
            [
                ("auto-pause", crate::store::AUTOMATIC.to_owned()),
                ("resume", "alice".to_owned()),
                ("auto-pause", crate::store::AUTOMATIC.to_owned())
            ]
        );
        assert_eq!(revision_of(&item), 3);
    }
}
