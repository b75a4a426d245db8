//! The embedded backend: the items of design.md §3 in one SQLite file (WAL mode, full sync),
//! so `updraft release` can write while `updraft serve` reads from another process, and a
//! crash never leaves a half-written item. This file holds the store itself (one writer
//! thread, a pool of readers) and the item encoding; each capability has its file, named as
//! in `store/dynamo/`:
//!
//! - `releases`: an app's snapshot for the update check (`ReleaseStore`)
//! - `items`: operators' item reads, writes, listings and deletes (`ItemWriter`, `ItemQuery`)
//! - `history`: changes with their history entry in one transaction (`HistoryStore`)
//! - `devices`: channel overrides and failed versions (`DeviceStore`)
//! - `stats`: per-release action counters (`StatsSink`)
//! - `evidence`: the evidence and its hourly counts (`EvidenceStore`)
//! - `housekeeping`: expiring devices, evidence and old batch ids on a timer
//! - `schema`: the tables and the upgrades of older databases
//! - `files`: the data folder's and database's private modes

mod devices;
mod evidence;
pub mod files;
mod history;
pub mod housekeeping;
mod items;
mod releases;
mod schema;
mod stats;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;

use crate::clock::Clock;
use crate::domain::item::Item;
use crate::store::StoreError;

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
    device_ttl_secs: u64,
    clock: Arc<dyn Clock>,
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
        let conn = Connection::open(&self.path)?;
        conn.busy_timeout(READ_BUSY_TIMEOUT)?;
        // A reader can never write, whatever a bug asks of it.
        conn.pragma_update(None, "query_only", true)?;
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

/// Every SQLite failure is the store being unavailable; the detail is for logs.
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

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
        files::private_dir(data_dir)
            .map_err(|e| unavailable(format!("{}: {e}", data_dir.display())))?;
        let path = data_dir.join("updraft.db");
        files::private_file(&path).map_err(|e| unavailable(format!("{}: {e}", path.display())))?;
        let conn = Connection::open(&path)?;
        conn.busy_timeout(busy_timeout)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        let mut conn = conn;
        schema::prepare(&mut conn, crate::clock::SystemClock.now())?;
        Ok(EmbeddedStore {
            writer: spawn_writer(conn),
            readers: Arc::new(ReadPool {
                path,
                idle: Mutex::new(Vec::new()),
            }),
            device_ttl_secs,
            clock: crate::clock::system(),
        })
    }

    /// The same store, with `clock` for expiries, `last_seen` and the hourly window.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Unix seconds when a device item written now expires.
    fn device_expiry(&self) -> i64 {
        (self.clock.now() + self.device_ttl_secs) as i64
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
