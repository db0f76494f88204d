//! The baseline of the event-log benchmarks: a plain SQLite table with the
//! security-event log's columns and indexes and the store's pragmas (WAL,
//! `synchronous = FULL`), and no hash chain.

use std::path::Path;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// Creates `plain` in a new database file at `path`.
pub async fn open(path: &Path) -> anyhow::Result<SqlitePool> {
    let plain = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full),
        )
        .await?;
    sqlx::query(
        "CREATE TABLE plain (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, severity TEXT NOT NULL, \
         device TEXT, source TEXT, server_time INTEGER NOT NULL, device_time INTEGER, \
         message TEXT NOT NULL, detail TEXT NOT NULL, prev_hash BLOB NOT NULL, hash BLOB NOT NULL) STRICT",
    )
    .execute(&plain)
    .await?;
    for index in [
        "CREATE INDEX plain_time ON plain (server_time)",
        "CREATE INDEX plain_device ON plain (device, seq)",
        "CREATE INDEX plain_kind ON plain (kind, seq)",
    ] {
        sqlx::query(index).execute(&plain).await?;
    }
    Ok(plain)
}

/// `INSERT INTO plain VALUES (…), (…), …` for `rows` rows.
pub fn insert_statement(rows: usize) -> String {
    format!(
        "INSERT INTO plain VALUES {}",
        vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; rows].join(",")
    )
}
