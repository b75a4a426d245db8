//! The evidence on the embedded store, with the same meaning as on DynamoDB: a mark row per
//! (release, kind, device), a count per (release, kind, network), a tally per release, all
//! expiring with the devices' TTL; and one row per (release, version, hour) counted.

use std::collections::BTreeSet;

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::EmbeddedStore;
use crate::domain::evidence::{Evidence, EvidenceKey, EvidenceKind, EvidenceMark, mark_effect};
use crate::domain::hourly::{HourlyCount, HourlyIncrements, hour_expires_at, hour_of};
use crate::store::{EvidenceStore, StoreError};

#[async_trait]
impl EvidenceStore for EmbeddedStore {
    /// One transaction: a mark row per (release, kind, device), a count per (release, kind,
    /// network), a tally per release, all expiring with the devices' TTL; and one row per
    /// (release, version, hour) counted, kept `HOURLY_KEEP_SECS`.
    async fn record_evidence(
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
                ?;
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
                    ?
                    == 1;
                let network = format!("n#{kind}#{id}#{}", m.network);
                let before: i64 = tx
                    .query_row(
                        "SELECT n FROM evidence_marks WHERE app_id = ?1 AND mark = ?2",
                        params![app, network],
                        |r| r.get(0),
                    )
                    .optional()
                    ?
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
                ?;
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
                ?;
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
                ?;
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
                    ?;
                out.push((key, e));
            }
            tx.commit()?;
            Ok(out)
        })
        .await
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
            .map_err(StoreError::from)
        })
        .await
    }

    async fn hourly(&self, app_id: &str, since_hour: u64) -> Result<Vec<HourlyCount>, StoreError> {
        let app_id = app_id.to_owned();
        self.with_read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT hour, release, version, attempts, failures FROM hourly
                 WHERE app_id = ?1 AND hour >= ?2 ORDER BY hour, release, version",
            )?;
            let rows = stmt.query_map(params![app_id, since_hour as i64], |r| {
                Ok(HourlyCount {
                    hour: r.get::<_, i64>(0)?.max(0) as u64,
                    sk: r.get(1)?,
                    version: r.get(2)?,
                    attempts: r.get::<_, i64>(3)?.max(0) as u64,
                    failures: r.get::<_, i64>(4)?.max(0) as u64,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }
}
