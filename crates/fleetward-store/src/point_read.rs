//! Indexed point reads of SQLite on the calling thread.
//!
//! Every operator request looks up its token, and most device requests one
//! device: single-row reads through a unique index that SQLite answers in
//! microseconds. Through sqlx each such read is handed to a connection's
//! worker thread and back, and under load those wake-ups cost several times
//! the read itself (measured: see BENCHMARKS.md, device registry). So point
//! reads use a small pool of plain `rusqlite` connections and run where they
//! are called. Only reads bounded by a unique index run inline; reads that
//! scan (queries, pages, counts) use the same connections through
//! [`PointReader::scan`], on tokio's blocking pool, so that they never hold
//! up a runtime thread.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::{Result, StoreError};

/// Idle connections kept; runtime threads are few, so few are ever busy.
const MAX_IDLE: usize = 8;

#[derive(Debug)]
pub(crate) struct PointReader {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl PointReader {
    pub(crate) fn new(path: &Path) -> PointReader {
        PointReader {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `read` on an idle connection (opening one if none is idle).
    pub(crate) fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let connection = match self.lock()?.pop() {
            Some(connection) => connection,
            None => self.open()?,
        };
        let answer = read(&connection).map_err(point_read_error);
        let mut idle = self.lock()?;
        if idle.len() < MAX_IDLE {
            idle.push(connection);
        }
        answer
    }

    /// Runs a read that may scan (a page, a count) on the blocking pool, so
    /// that it never holds up a runtime thread.
    pub(crate) async fn scan<T: Send + 'static>(
        self: &std::sync::Arc<Self>,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let reader = std::sync::Arc::clone(self);
        tokio::task::spawn_blocking(move || reader.read(read))
            .await
            .map_err(|e| StoreError::PointRead(format!("read task failed: {e}")))?
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Vec<Connection>>> {
        self.idle
            .lock()
            .map_err(|_| StoreError::Corrupt("point-read pool lock poisoned".into()))
    }

    fn open(&self) -> Result<Connection> {
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
        // Pages straight from the page cache of the OS, without a read() each.
        connection
            .pragma_update(None, "mmap_size", 256 * 1024 * 1024)
            .map_err(point_read_error)?;
        Ok(connection)
    }
}

fn point_read_error(error: rusqlite::Error) -> StoreError {
    StoreError::PointRead(error.to_string())
}
