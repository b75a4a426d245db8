//! The embedded store: the items of design.md §3 in one SQLite file (WAL mode, full sync), so
//! `updraft release` can write while `updraft serve` reads from another process, and a crash
//! never leaves a half-written item.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use crate::domain::release::{AppSnapshot, Item, describes_an_app};
use crate::store::{ItemWriter, ReleaseStore, StoreError};

/// Items keyed like the DynamoDB table: `app_id` + `sk`, attributes as a JSON object.
///
/// One writer connection, owned by a thread of its own that runs writes in order (a write that
/// waits for another process's lock holds that thread, never the async runtime), and a pool of
/// read connections: in WAL mode readers never wait for a writer, so update checks and reads
/// go on while `updraft release` or a stats batch holds the write lock.
#[derive(Clone)]
pub struct EmbeddedStore {
    writer: tokio::sync::mpsc::Sender<WriteJob>,
    readers: Arc<ReadPool>,
    /// Seconds a device item lives after its last write.
    pub(crate) device_ttl_secs: u64,
}

type WriteJob = Box<dyn FnOnce(&mut Connection) + Send>;

/// Writes waiting for the writer thread; beyond this, callers wait (asynchronously) to queue.
const WRITE_QUEUE: usize = 256;
/// Idle read connections kept open.
const IDLE_READERS: usize = 8;
/// How long a read waits on a lock: only a WAL recovery or an exclusive lock can hold it.
const READ_BUSY_TIMEOUT: Duration = Duration::from_millis(500);

/// Read connections, opened on demand and kept for reuse.
struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ReadPool {
    fn take(&self) -> Result<Connection, StoreError> {
        if let Some(conn) = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(conn);
        }
        let conn = Connection::open(&self.path).map_err(unavailable)?;
        conn.busy_timeout(READ_BUSY_TIMEOUT).map_err(unavailable)?;
        // A reader can never write, whatever a bug asks of it.
        conn.pragma_update(None, "query_only", true)
            .map_err(unavailable)?;
        Ok(conn)
    }

    fn give_back(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < IDLE_READERS {
            idle.push(conn);
        }
    }
}

/// How long a write waits for another process's write lock before giving up.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl EmbeddedStore {
    /// Opens (or creates) `<data>/updraft.db`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(
            data_dir,
            DEFAULT_BUSY_TIMEOUT,
            crate::domain::device::DEFAULT_DEVICE_TTL_SECS,
        )
    }

    /// True when `data_dir` holds a store: commands that only read or change what exists
    /// check this first, so that they never create a data folder.
    pub fn exists(data_dir: &Path) -> bool {
        data_dir.join("updraft.db").is_file()
    }

    /// Opens with an explicit lock wait and device lifetime.
    pub fn open_with(
        data_dir: &Path,
        busy_timeout: Duration,
        device_ttl_secs: u64,
    ) -> Result<Self, StoreError> {
        crate::store::private_dir(data_dir)
            .map_err(|e| unavailable(format!("{}: {e}", data_dir.display())))?;
        let path = data_dir.join("updraft.db");
        crate::store::private_file(&path)
            .map_err(|e| unavailable(format!("{}: {e}", path.display())))?;
        let conn = Connection::open(&path).map_err(unavailable)?;
        conn.busy_timeout(busy_timeout).map_err(unavailable)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(unavailable)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(unavailable)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS items (
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
            ) WITHOUT ROWID;",
        )
        .map_err(unavailable)?;
        // A database written before the `device_overrides` marker: mark the apps whose devices
        // have overrides, once (user_version 1 says it was done).
        let mut conn = conn;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(unavailable)?;
        if version < 1 {
            crate::store::embedded_device_side::mark_existing_overrides(&mut conn)?;
            conn.pragma_update(None, "user_version", 1)
                .map_err(unavailable)?;
        }
        Ok(EmbeddedStore {
            writer: spawn_writer(conn),
            readers: Arc::new(ReadPool {
                path,
                idle: Mutex::new(Vec::new()),
            }),
            device_ttl_secs,
        })
    }

    /// Runs a write on the writer thread, off the async runtime, after the writes queued
    /// before it.
    pub(crate) async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: WriteJob = Box::new(move |conn| {
            let _ = tx.send(f(conn));
        });
        self.writer
            .send(job)
            .await
            .map_err(|_| unavailable("the database writer stopped"))?;
        rx.await
            .map_err(|_| unavailable("a database write failed unexpectedly"))?
    }

    /// Runs a read on a read connection of its own, on the blocking pool.
    pub(crate) async fn with_read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || read_on(&readers, f))
            .await
            .map_err(unavailable)?
    }

    /// Runs a point read right here: on a WAL database it never waits for a writer and takes
    /// microseconds, so the update check's device read stays off the blocking pool.
    pub(crate) fn read_now<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        read_on(&self.readers, f)
    }
}

fn read_on<T>(
    readers: &ReadPool,
    f: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let conn = readers.take()?;
    let out = f(&conn);
    readers.give_back(conn);
    out
}

/// The writer thread: owns the write connection and runs queued writes one by one until every
/// handle on the store is dropped. A panicking write loses only its own answer.
fn spawn_writer(mut conn: Connection) -> tokio::sync::mpsc::Sender<WriteJob> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<WriteJob>(WRITE_QUEUE);
    std::thread::Builder::new()
        .name("updraft-sqlite-writer".into())
        .spawn(move || {
            while let Some(job) = rx.blocking_recv() {
                let run = std::panic::AssertUnwindSafe(|| job(&mut conn));
                if std::panic::catch_unwind(run).is_err() {
                    tracing::error!("a database write panicked");
                }
            }
        })
        .expect("cannot start the database writer thread");
    tx
}

pub(crate) fn decode(sk: &str, attrs: &str) -> Result<Item, StoreError> {
    serde_json::from_str(attrs).map_err(|e| unavailable(format!("item {sk} is not readable: {e}")))
}

pub(crate) fn encode(item: &Item) -> Result<String, StoreError> {
    serde_json::to_string(item).map_err(unavailable)
}

#[async_trait]
impl ReleaseStore for EmbeddedStore {
    async fn load_app(&self, app_id: &str) -> Result<Option<AppSnapshot>, StoreError> {
        let app_id = app_id.to_owned();
        self.with_read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT sk, attrs FROM items WHERE app_id = ?1 AND (sk = 'app' OR sk = 'device_overrides' OR sk >= 'release#' AND sk < 'release$')",
                )
                .map_err(unavailable)?;
            let rows = stmt
                .query_map(params![app_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .map_err(unavailable)?;
            let mut items = Vec::new();
            for row in rows {
                let (sk, attrs) = row.map_err(unavailable)?;
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
                .optional()
                .map_err(unavailable)?;
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
            let n = conn
                .execute(
                    "INSERT INTO items (app_id, sk, attrs) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                    params![app_id, sk, attrs],
                )
                .map_err(unavailable)?;
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
            )
            .map_err(unavailable)?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::protocol::Platform;
    use crate::domain::release::tests::{SUM, item, s};

    #[tokio::test]
    async fn items_round_trip_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert!(store.load_app("com.example.app").await.unwrap().is_none());
        let rel = item(&[
            ("version", s("1.0.3")),
            ("bundle", s("k")),
            ("checksum", s(SUM)),
            ("paused", crate::domain::release::AttrValue::Bool(false)),
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
