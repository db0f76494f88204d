//! [`EventLog`] for SQLite.

use std::sync::Arc;

use async_trait::async_trait;
use fleetward_core::DeviceId;
use fleetward_events::{
    Chain, Checkpoint, Entry, EntryFields, Event, EventFields, EventKind, Hash, Severity, Tamper,
    TamperKind, Verifier,
};
use sqlx::{Sqlite, Transaction};

use super::{Columns, SqliteStore, all_rows, insert_audit};
use crate::events::{EventFilter, EventLog};
use crate::point_read::PointReader;
use crate::query_sql::{PlainSql, SqlSink, events_page_sql};
use crate::{AuditEntry, Result, StoreError};

use crate::query_sql::{ENTRY_COLUMNS, entry_col};

/// Rows per multi-row INSERT when appending events.
const ROWS_PER_INSERT: usize = 256;

/// Appends to the chain inside a write transaction: reads the head, links
/// each event to the one before, moves the head.
pub(crate) async fn append_in(
    tx: &mut Transaction<'static, Sqlite>,
    events: &[Event],
) -> Result<Vec<Entry>> {
    let (seq, hash): (i64, Vec<u8>) =
        sqlx::query_as("SELECT seq, hash FROM event_head WHERE id = 1")
            .fetch_one(&mut **tx)
            .await?;
    let mut chain = Chain::after(to_seq(seq)?, to_hash(&hash)?);
    let mut entries = Vec::with_capacity(events.len());
    for event in events {
        event
            .check()
            .map_err(|e| StoreError::Invalid(format!("security event: {e}")))?;
        entries.push(chain.append(event.clone()));
    }
    if entries.is_empty() {
        return Ok(entries);
    }
    // Many rows per statement: each statement is a round trip to sqlx's
    // connection thread, which costs more than SQLite's insert itself.
    // 11 parameters a row stays far below SQLite's 32,766-variable limit.
    for rows in entries.chunks(ROWS_PER_INSERT) {
        let mut sql = String::from(
            "INSERT INTO security_events (seq, kind, severity, device, source, server_time, \
             device_time, message, detail, prev_hash, hash) VALUES ",
        );
        for n in 0..rows.len() {
            if n > 0 {
                sql.push(',');
            }
            sql.push_str("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
        }
        let mut insert = sqlx::query(&sql);
        for entry in rows {
            insert = insert
                .bind(from_seq(entry.seq)?)
                .bind(entry.event.kind.as_str())
                .bind(entry.event.severity.as_str())
                .bind(entry.event.device.as_ref().map(DeviceId::as_str))
                .bind(entry.event.source.as_deref())
                .bind(entry.event.server_time_ms)
                .bind(entry.event.device_time_ms)
                .bind(entry.event.message.as_str())
                .bind(entry.event.detail.as_str())
                .bind(entry.prev_hash.0.as_slice())
                .bind(entry.hash.0.as_slice());
        }
        insert.execute(&mut **tx).await?;
    }
    sqlx::query("UPDATE event_head SET seq = ?, hash = ? WHERE id = 1")
        .bind(from_seq(chain.next_seq - 1)?)
        .bind(chain.last_hash.0.as_slice())
        .execute(&mut **tx)
        .await?;
    Ok(entries)
}

pub(crate) fn to_seq(seq: i64) -> Result<u64> {
    u64::try_from(seq).map_err(|_| StoreError::Corrupt(format!("negative sequence number {seq}")))
}

pub(crate) fn from_seq(seq: u64) -> Result<i64> {
    i64::try_from(seq).map_err(|_| StoreError::Corrupt(format!("sequence number {seq} too large")))
}

pub(crate) fn to_hash(bytes: &[u8]) -> Result<Hash> {
    let array: [u8; 32] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt("a chain hash is not 32 bytes".into()))?;
    Ok(Hash(array))
}

/// Decodes a row of [`ENTRY_COLUMNS`], by position.
pub(crate) fn entry_from_row(row: &impl Columns) -> Result<Entry> {
    let seq = to_seq(row.int(entry_col::SEQ)?)?;
    let corrupt = |what: String| StoreError::Corrupt(format!("security event {seq}: {what}"));
    let kind = row.text(entry_col::KIND)?;
    let severity = row.text(entry_col::SEVERITY)?;
    let device = row
        .opt_text(entry_col::DEVICE)?
        .map(|d| DeviceId::parse(&d).map_err(|e| corrupt(e.to_string())))
        .transpose()?;
    Ok(Entry {
        seq,
        prev_hash: to_hash(&row.blob(entry_col::PREV_HASH)?)?,
        hash: to_hash(&row.blob(entry_col::HASH)?)?,
        event: Event {
            kind: EventKind::parse(&kind)
                .ok_or_else(|| corrupt(format!("unknown kind {kind:?}")))?,
            severity: Severity::parse(&severity)
                .ok_or_else(|| corrupt(format!("unknown severity {severity:?}")))?,
            device,
            source: row.opt_text(entry_col::SOURCE)?,
            server_time_ms: row.int(entry_col::SERVER_TIME)?,
            device_time_ms: row.opt_int(entry_col::DEVICE_TIME)?,
            message: row.text(entry_col::MESSAGE)?,
            detail: row.text(entry_col::DETAIL)?,
        },
    })
}

/// Streams the rows of one statement into `verifier`, borrowing each row's
/// bytes: `verify` reads every row there is, and decoding each into an owned
/// [`Event`] cost more than reading and hashing it.
fn verify_rows(
    conn: &rusqlite::Connection,
    sql: &str,
    mut verifier: Verifier,
) -> rusqlite::Result<Result<std::result::Result<Verifier, Tamper>>> {
    let mut statement = conn.prepare(sql)?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let seq = match to_seq(row.get(entry_col::SEQ)?) {
            Ok(seq) => seq,
            Err(e) => return Ok(Err(e)),
        };
        // A hash of the wrong length was written by someone other than us.
        let edited = || Tamper {
            seq,
            kind: TamperKind::Edited,
        };
        let hash_at = |column| -> rusqlite::Result<Option<Hash>> {
            Ok(row.get_ref(column)?.as_blob()?.try_into().ok().map(Hash))
        };
        let (Some(prev_hash), Some(hash)) =
            (hash_at(entry_col::PREV_HASH)?, hash_at(entry_col::HASH)?)
        else {
            return Ok(Ok(Err(edited())));
        };
        let entry = EntryFields {
            seq,
            prev_hash,
            hash,
            event: EventFields {
                kind: row.get_ref(entry_col::KIND)?.as_bytes()?,
                severity: row.get_ref(entry_col::SEVERITY)?.as_bytes()?,
                device: row.get_ref(entry_col::DEVICE)?.as_bytes_or_null()?,
                source: row.get_ref(entry_col::SOURCE)?.as_bytes_or_null()?,
                server_time_ms: row.get(entry_col::SERVER_TIME)?,
                device_time_ms: row.get(entry_col::DEVICE_TIME)?,
                message: row.get_ref(entry_col::MESSAGE)?.as_bytes()?,
                detail: row.get_ref(entry_col::DETAIL)?.as_bytes()?,
            },
        };
        if let Err(tamper) = verifier.push_fields(&entry) {
            return Ok(Ok(Err(tamper)));
        }
    }
    Ok(Ok(Ok(verifier)))
}

pub(crate) fn checkpoint_from_row(row: &impl Columns) -> Result<Checkpoint> {
    let signature: [u8; 64] = row
        .blob("signature")?
        .try_into()
        .map_err(|_| StoreError::Corrupt("a checkpoint signature is not 64 bytes".into()))?;
    Ok(Checkpoint {
        seq: to_seq(row.int("seq")?)?,
        hash: to_hash(&row.blob("hash")?)?,
        signed_at_ms: row.int("signed_at")?,
        signature,
    })
}

impl SqliteStore {
    fn reader(&self) -> Result<&Arc<PointReader>> {
        self.point_reader.as_ref().ok_or_else(|| {
            StoreError::Invalid("the security-event log needs a file-backed database".into())
        })
    }
}

#[async_trait]
impl EventLog for SqliteStore {
    async fn append_events(&self, events: &[Event]) -> Result<Vec<Entry>> {
        let events = events.to_vec();
        self.write(move |tx| Box::pin(async move { append_in(tx, &events).await }))
            .await
    }

    async fn event_head(&self) -> Result<(u64, Hash)> {
        let (seq, hash): (i64, Vec<u8>) =
            sqlx::query_as("SELECT seq, hash FROM event_head WHERE id = 1")
                .fetch_one(&self.pool)
                .await?;
        Ok((to_seq(seq)?, to_hash(&hash)?))
    }

    async fn list_events(
        &self,
        filter: &EventFilter,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<Entry>> {
        let mut sql = PlainSql::default();
        events_page_sql(&mut sql, filter, after, limit);
        self.reader()?
            .scan(move |conn| all_rows(conn, &sql, |row| entry_from_row(row)))
            .await?
    }

    async fn event(&self, seq: u64) -> Result<Option<Entry>> {
        let mut sql = PlainSql::default();
        sql.push(&format!(
            "SELECT {ENTRY_COLUMNS} FROM security_events WHERE seq = {seq}"
        ));
        let entries = self
            .reader()?
            .scan(move |conn| all_rows(conn, &sql, |row| entry_from_row(row)))
            .await??;
        Ok(entries.into_iter().next())
    }

    async fn verify_event_range(
        &self,
        verifier: Verifier,
        after: Option<u64>,
        until: Option<u64>,
    ) -> Result<std::result::Result<Verifier, Tamper>> {
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM security_events WHERE seq > {} AND seq <= {} ORDER BY seq",
            from_seq(after.unwrap_or(0))?,
            from_seq(until.unwrap_or(i64::MAX as u64))?,
        );
        self.reader()?
            .scan(move |conn| verify_rows(conn, &sql, verifier))
            .await?
    }

    async fn add_checkpoint(&self, checkpoint: &Checkpoint) -> Result<()> {
        let checkpoint = checkpoint.clone();
        self.write(move |tx| {
            Box::pin(async move {
                let (head, hash): (i64, Vec<u8>) = sqlx::query_as(
                    "SELECT seq, hash FROM security_events WHERE seq = ?",
                )
                .bind(from_seq(checkpoint.seq)?)
                .fetch_optional(&mut **tx)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("security event {}", checkpoint.seq)))?;
                if to_hash(&hash)? != checkpoint.hash {
                    return Err(StoreError::Conflict(format!(
                        "checkpoint for event {head} names another hash than the log has"
                    )));
                }
                sqlx::query(
                    "INSERT OR IGNORE INTO event_checkpoints (seq, hash, signed_at, signature) VALUES (?, ?, ?, ?)",
                )
                .bind(head)
                .bind(checkpoint.hash.0.as_slice())
                .bind(checkpoint.signed_at_ms)
                .bind(checkpoint.signature.as_slice())
                .execute(&mut **tx)
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        let mut sql = PlainSql::default();
        sql.push(
            "SELECT seq, hash, signed_at, signature FROM event_checkpoints \
             WHERE seq > COALESCE((SELECT seq FROM event_anchor WHERE id = 1), 0) ORDER BY seq",
        );
        self.reader()?
            .scan(move |conn| all_rows(conn, &sql, |row| checkpoint_from_row(row)))
            .await?
    }

    async fn event_anchor(&self) -> Result<Option<Checkpoint>> {
        let mut sql = PlainSql::default();
        sql.push(
            "SELECT c.seq, c.hash, c.signed_at, c.signature FROM event_checkpoints c \
             JOIN event_anchor a ON a.seq = c.seq WHERE a.id = 1",
        );
        let anchors = self
            .reader()?
            .scan(move |conn| all_rows(conn, &sql, |row| checkpoint_from_row(row)))
            .await??;
        Ok(anchors.into_iter().next())
    }

    async fn monitor_cursor(&self, name: &str) -> Result<Option<u64>> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT seq FROM monitor_cursors WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        seq.map(to_seq).transpose()
    }

    async fn set_monitor_cursor(&self, name: &str, seq: u64) -> Result<()> {
        let name = name.to_owned();
        let seq = from_seq(seq)?;
        self.write(move |tx| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO monitor_cursors (name, seq) VALUES (?, ?) \
                     ON CONFLICT (name) DO UPDATE SET seq = max(seq, excluded.seq)",
                )
                .bind(name)
                .bind(seq)
                .execute(&mut **tx)
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn prune_events(&self, before_ms: i64, audit: &AuditEntry) -> Result<u64> {
        let audit = audit.clone();
        self.write(move |tx| {
            Box::pin(async move {
                // The newest checkpoint whose entry is older than the cut-off.
                let anchor: Option<i64> = sqlx::query_scalar(
                    "SELECT max(c.seq) FROM event_checkpoints c \
                     JOIN security_events e ON e.seq = c.seq WHERE e.server_time < ?",
                )
                .bind(before_ms)
                .fetch_one(&mut **tx)
                .await?;
                let Some(anchor) = anchor else {
                    return Ok(0);
                };
                sqlx::query("INSERT OR REPLACE INTO event_anchor (id, seq) VALUES (1, ?)")
                    .bind(anchor)
                    .execute(&mut **tx)
                    .await?;
                let deleted = sqlx::query("DELETE FROM security_events WHERE seq <= ?")
                    .bind(anchor)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected();
                let mut audit = audit;
                audit.detail = serde_json::json!({ "pruned": deleted, "anchor": anchor });
                insert_audit(tx, &audit).await?;
                Ok(deleted)
            })
        })
        .await
    }
}
