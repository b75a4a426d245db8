//! The embedded store's tables (the same items and meanings as the DynamoDB tables) and the
//! one-time upgrades of databases written by older versions (`PRAGMA user_version`).

use rusqlite::{Connection, params};

use crate::domain::item::{Item, ItemExt, attr};
use crate::domain::keys::DEVICE_OVERRIDES_SK;
use crate::store::StoreError;

const TABLES: &str = "
    CREATE TABLE IF NOT EXISTS items (
        app_id TEXT NOT NULL,
        sk TEXT NOT NULL,
        attrs TEXT NOT NULL,
        PRIMARY KEY (app_id, sk)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS devices (
        app_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        channel TEXT,
        channel_source TEXT,
        failed_versions TEXT NOT NULL DEFAULT '[]',
        last_seen INTEGER,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (app_id, device_id)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS counters (
        app_id TEXT NOT NULL,
        channel TEXT NOT NULL,
        version TEXT NOT NULL,
        action TEXT NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (app_id, channel, version, action)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS evidence_marks (
        app_id TEXT NOT NULL,
        mark TEXT NOT NULL,
        n INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (app_id, mark)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS evidence (
        app_id TEXT NOT NULL,
        release TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        failures INTEGER NOT NULL DEFAULT 0,
        failing_networks INTEGER NOT NULL DEFAULT 0,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (app_id, release)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS hourly (
        app_id TEXT NOT NULL,
        hour INTEGER NOT NULL,
        release TEXT NOT NULL,
        version TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        failures INTEGER NOT NULL DEFAULT 0,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (app_id, hour, release, version)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS stats_batches (
        id TEXT PRIMARY KEY,
        at INTEGER NOT NULL
    ) WITHOUT ROWID;";

/// Creates the tables that do not exist yet and upgrades an older database.
pub(super) fn prepare(conn: &mut Connection, now: u64) -> Result<(), StoreError> {
    conn.execute_batch(TABLES)?;
    // A database written before the `device_overrides` marker: mark the apps whose devices
    // have overrides, once (user_version 1 says it was done).
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version < 1 {
        mark_existing_overrides(conn, now)?;
        conn.pragma_update(None, "user_version", 1)?;
    }
    Ok(())
}

/// Writes the `device_overrides` marker of every app with a device override (the embedded
/// store also does this once when it opens a database written before the marker existed).
pub(super) fn mark_existing_overrides(
    conn: &mut rusqlite::Connection,
    now: u64,
) -> Result<Vec<String>, StoreError> {
    let mut marker = Item::new();
    marker.set_whole(attr::SINCE, now);
    let tx = conn.transaction()?;
    tx.execute(
        "INSERT INTO items (app_id, sk, attrs)
         SELECT DISTINCT app_id, ?1, ?2 FROM devices WHERE channel IS NOT NULL
         ON CONFLICT DO NOTHING",
        params![
            DEVICE_OVERRIDES_SK,
            serde_json::to_string(&marker).map_err(|e| StoreError::Unavailable(e.to_string()))?
        ],
    )?;
    let apps = {
        let mut stmt = tx.prepare(
            "SELECT DISTINCT app_id FROM devices WHERE channel IS NOT NULL ORDER BY app_id",
        )?;
        stmt.query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?
    };
    tx.commit()?;
    Ok(apps)
}
