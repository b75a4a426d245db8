//! The embedded store's tables (the same items and meanings as the DynamoDB tables) and the
//! one-time upgrades of databases written by older versions (`PRAGMA user_version`).

use rusqlite::Connection;

use super::devices::mark_existing_overrides;
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
