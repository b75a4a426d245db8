//! Expiring what the embedded store keeps for a while (devices, evidence, hourly counts, batch
//! ids), on a timer of `updraft serve`, never inside a request.

use std::time::Duration;

use rusqlite::params;

use super::EmbeddedStore;
use super::stats::BATCH_MEMORY_SECS;
use crate::store::StoreError;

/// How often `updraft serve` sweeps expired devices and old batch ids.
pub const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(600);

impl EmbeddedStore {
    /// Forgets batch ids older than a day, and devices, evidence and hourly counts past their
    /// expiry: short writes, run on a timer (`spawn_housekeeping`), never inside a request.
    pub async fn housekeep(&self) -> Result<(), StoreError> {
        let now = self.clock.now() as i64;
        self.with_conn(move |conn| {
            conn.execute(
                "DELETE FROM stats_batches WHERE at < ?1",
                params![now - BATCH_MEMORY_SECS as i64],
            )?;
            conn.execute("DELETE FROM devices WHERE expires_at < ?1", params![now])?;
            for table in ["evidence_marks", "evidence", "hourly"] {
                conn.execute(
                    &format!("DELETE FROM {table} WHERE expires_at < ?1"),
                    params![now],
                )?;
            }
            Ok(())
        })
        .await
    }

    /// Runs `housekeep` now and then every `every`, on the current tokio runtime, for as long
    /// as the returned task is not aborted.
    pub fn spawn_housekeeping(&self, every: Duration) -> tokio::task::JoinHandle<()> {
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
