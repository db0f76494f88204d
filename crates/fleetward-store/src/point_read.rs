//! Indexed point reads of SQLite on the calling thread.
//!
//! Every operator request looks up its token, and most device requests one
//! device: single-row reads through a unique index that SQLite answers in
//! microseconds. Through sqlx each such read is handed to a connection's
//! worker thread and back, and under load those wake-ups cost several times
//! the read itself (measured: see BENCHMARKS.md, device registry). So point
//! reads use a small pool of plain `rusqlite` connections and run where they
//! are called. Only reads bounded by a unique index run inline; reads that
//! scan (queries, pages, counts) use connections of their own through
//! [`PointReader::scan`], on tokio's blocking pool, so that they never hold
//! up a runtime thread.
//!
//! Point connections plan each statement once, whatever its parameters
//! (SQLite's query-planner stability guarantee). Otherwise, once `ANALYZE`
//! has taken STAT4 samples, SQLite plans a statement that joins tables with
//! the bound value of a compared column and plans it again whenever that
//! value changes: on every lookup, and the planning cost more than the read
//! (measured on the device lookup). Scans keep value-based plans: there the
//! samples choose between indexes that differ a thousandfold.
//!
//! A read transaction costs more than the indexed read inside it: in WAL
//! mode SQLite takes and drops a shared lock on the WAL index (an `fcntl`
//! each, under a process-wide mutex that the runtime threads then contend
//! for and sleep on). So a pooled connection keeps its read transaction, its
//! *snapshot*, open from one read to the next for as long as it is current:
//! [`PointReader::writing`] marks every write transaction of this process
//! (before it begins and after it ends), and a snapshot taken before the
//! latest mark is never used again. Reads therefore see every write this
//! process committed before they began, exactly as with a transaction per
//! read. Writes by another process on the same file (a second server, the
//! CLI) are seen by point reads within [`SNAPSHOT_MAX_AGE`]; scans (pages,
//! counts, the event log's verification) always begin a fresh snapshot, so
//! an audit sees the file as it is. Idle snapshots are released
//! when a write begins and when they grow old, so that they do not hold back
//! checkpoints.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use crate::{Result, StoreError};

/// Idle connections kept; runtime threads are few, so few are ever busy.
const MAX_IDLE: usize = 8;

/// How long a snapshot may serve reads when this process writes nothing:
/// the most by which a read can miss another process's write.
pub(crate) const SNAPSHOT_MAX_AGE: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub(crate) struct PointReader {
    path: PathBuf,
    /// Idle connections for [`Read::Point`] and for [`Read::Scan`].
    idle_point: Mutex<Vec<Pooled>>,
    idle_scan: Mutex<Vec<Pooled>>,
    /// Advanced before and after every write transaction of this process.
    write_marks: AtomicU64,
}

/// A connection and the read transaction it holds open, if any.
#[derive(Debug)]
struct Pooled {
    connection: Connection,
    snapshot: Option<Snapshot>,
}

/// An open read transaction: the write mark read before it began, and when.
#[derive(Debug, Clone, Copy)]
struct Snapshot {
    write_mark: u64,
    taken: Instant,
}

/// The two kinds of read, which differ in connection and snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// Indexed, a few rows: plans fixed once, the connection's open
    /// snapshot if it is current, else a fresh one.
    Point,
    /// Pages, counts, verification: plans from the bound values, always a
    /// fresh snapshot.
    Scan,
}

/// Brackets one write transaction; see [`PointReader::writing`].
#[must_use = "the write is marked as ended when this is dropped"]
pub(crate) struct Writing<'r>(&'r PointReader);

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        // Ended, committed or not: snapshots taken while it ran are stale.
        self.0.write_marks.fetch_add(1, Ordering::SeqCst);
    }
}

impl PointReader {
    pub(crate) fn new(path: &Path) -> PointReader {
        PointReader {
            path: path.to_owned(),
            idle_point: Mutex::new(Vec::new()),
            idle_scan: Mutex::new(Vec::new()),
            write_marks: AtomicU64::new(0),
        }
    }

    /// Marks a write transaction of this process: call it before the
    /// transaction begins and keep the guard until it has ended (committed,
    /// rolled back or abandoned). No snapshot taken before either mark
    /// serves a read after it, and idle snapshots are released now, so that
    /// the write may restart the WAL from its beginning.
    pub(crate) fn writing(&self) -> Writing<'_> {
        self.write_marks.fetch_add(1, Ordering::SeqCst);
        self.release_idle(|_| true);
        Writing(self)
    }

    /// Releases idle snapshots older than [`SNAPSHOT_MAX_AGE`], so that a
    /// quiet server does not hold back another process's checkpoints.
    pub(crate) fn release_old_snapshots(&self) {
        let now = Instant::now();
        self.release_idle(|snapshot| now.duration_since(snapshot.taken) >= SNAPSHOT_MAX_AGE);
    }

    fn release_idle(&self, release: impl Fn(&Snapshot) -> bool) {
        for idle in [&self.idle_point, &self.idle_scan] {
            let Ok(mut idle) = idle.lock() else {
                continue;
            };
            // A connection whose transaction does not end cleanly is dropped
            // (closing it ends the transaction).
            idle.retain_mut(|pooled| match pooled.snapshot {
                Some(snapshot) if release(&snapshot) => {
                    pooled.snapshot = None;
                    pooled.connection.execute_batch("COMMIT").is_ok()
                }
                _ => true,
            });
        }
    }

    /// Runs an indexed point read on an idle connection (opening one if none
    /// is idle), in a current snapshot.
    pub(crate) fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        self.read_as(Read::Point, read)
    }

    fn read_as<T>(
        &self,
        kind: Read,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let mut pooled = match self.lock(kind)?.pop() {
            Some(pooled) => pooled,
            None => Pooled {
                connection: self.open(kind)?,
                snapshot: None,
            },
        };
        // Read before the snapshot is taken (at the first step of `read`),
        // so that a write ending after this load is never missed.
        let write_mark = self.write_marks.load(Ordering::SeqCst);
        let now = Instant::now();
        let current = kind == Read::Point
            && pooled.snapshot.is_some_and(|snapshot| {
                snapshot.write_mark == write_mark
                    && now.duration_since(snapshot.taken) < SNAPSHOT_MAX_AGE
            });
        if !current {
            if pooled.snapshot.take().is_some() {
                pooled
                    .connection
                    .execute_batch("COMMIT")
                    .map_err(point_read_error)?;
            }
            pooled
                .connection
                .execute_batch("BEGIN")
                .map_err(point_read_error)?;
            pooled.snapshot = Some(Snapshot {
                write_mark,
                taken: now,
            });
        }
        let answer = read(&pooled.connection).map_err(point_read_error);
        if answer.is_err() {
            // SQLite may have ended the transaction itself; start afresh,
            // or drop the connection if it cannot.
            pooled.snapshot = None;
            if !pooled.connection.is_autocommit()
                && pooled.connection.execute_batch("ROLLBACK").is_err()
            {
                return answer;
            }
        }
        let mut idle = self.lock(kind)?;
        if idle.len() < MAX_IDLE {
            idle.push(pooled);
        }
        answer
    }

    /// Closes the idle connections (ending their snapshots); the store's
    /// last connection then checkpoints the WAL as it closes.
    pub(crate) fn close(&self) {
        for idle in [&self.idle_point, &self.idle_scan] {
            if let Ok(mut idle) = idle.lock() {
                idle.clear();
            }
        }
    }

    /// Runs a read that may scan (a page, a count) on the blocking pool, so
    /// that it never holds up a runtime thread.
    pub(crate) async fn scan<T: Send + 'static>(
        self: &std::sync::Arc<Self>,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let reader = std::sync::Arc::clone(self);
        tokio::task::spawn_blocking(move || reader.read_as(Read::Scan, read))
            .await
            .map_err(|e| StoreError::PointRead(format!("read task failed: {e}")))?
    }

    fn lock(&self, kind: Read) -> Result<std::sync::MutexGuard<'_, Vec<Pooled>>> {
        match kind {
            Read::Point => &self.idle_point,
            Read::Scan => &self.idle_scan,
        }
        .lock()
        .map_err(|_| StoreError::Corrupt("point-read pool lock poisoned".into()))
    }

    fn open(&self, kind: Read) -> Result<Connection> {
        let connection = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(point_read_error)?;
        connection
            .busy_timeout(Duration::from_secs(10))
            .map_err(point_read_error)?;
        // Never a writer: the async pool's single writer owns all changes.
        connection
            .pragma_update(None, "query_only", true)
            .map_err(point_read_error)?;
        if kind == Read::Point {
            connection
                .set_db_config(
                    rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
                    true,
                )
                .map_err(point_read_error)?;
        }
        // Pages straight from the page cache of the OS, without a read() each.
        connection
            .pragma_update(None, "mmap_size", 256 * 1024 * 1024)
            .map_err(point_read_error)?;
        Ok(connection)
    }
}

/// Releases old idle snapshots every [`SNAPSHOT_MAX_AGE`] while the reader
/// lives (outside a runtime, a store is short-lived and nothing is spawned).
pub(crate) fn release_old_snapshots_periodically(reader: std::sync::Weak<PointReader>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let mut ticks = tokio::time::interval(SNAPSHOT_MAX_AGE);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match reader.upgrade() {
                Some(reader) => reader.release_old_snapshots(),
                None => break,
            }
        }
    });
}

fn point_read_error(error: rusqlite::Error) -> StoreError {
    StoreError::PointRead(error.to_string())
}
