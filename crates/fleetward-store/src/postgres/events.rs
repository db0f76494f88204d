//! [`EventLog`] for PostgreSQL.
//!
//! Appends run inside [`PostgresStore::write`], which holds the row lock on
//! `event_head`: the head read here is the one every other replica waits
//! behind, so sequence numbers and `prev_hash` links never fork.

use async_trait::async_trait;
use fleetward_core::DeviceId;
use fleetward_events::{Chain, Checkpoint, Entry, Event, Hash};
use sqlx::{Postgres, Transaction};

use super::{PostgresStore, insert_audit};
use crate::events::{EventFilter, EventLog};
use crate::query_sql::{Dialect, ENTRY_COLUMNS, PlainSql, events_page_sql};
use crate::sqlite::events::{checkpoint_from_row, entry_from_row, from_seq, to_hash, to_seq};
use crate::{AuditEntry, Result, StoreError};

/// Appends to the chain inside a write transaction: reads the (locked) head,
/// links each event to the one before, moves the head.
pub(crate) async fn append_in(
    tx: &mut Transaction<'static, Postgres>,
    events: &[Event],
) -> Result<Vec<Entry>> {
    // FOR UPDATE again is free under the lock `write` took, and keeps this
    // function correct should a caller ever reach it another way.
    let (seq, hash): (i64, Vec<u8>) =
        sqlx::query_as("SELECT seq, hash FROM event_head WHERE id = 1 FOR UPDATE")
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
    // One statement for the whole batch.
    let mut seqs = Vec::with_capacity(entries.len());
    let mut kinds = Vec::with_capacity(entries.len());
    let mut severities = Vec::with_capacity(entries.len());
    let mut devices = Vec::with_capacity(entries.len());
    let mut sources = Vec::with_capacity(entries.len());
    let mut server_times = Vec::with_capacity(entries.len());
    let mut device_times = Vec::with_capacity(entries.len());
    let mut messages = Vec::with_capacity(entries.len());
    let mut details = Vec::with_capacity(entries.len());
    let mut prev_hashes = Vec::with_capacity(entries.len());
    let mut hashes = Vec::with_capacity(entries.len());
    for entry in &entries {
        seqs.push(from_seq(entry.seq)?);
        kinds.push(entry.event.kind.as_str());
        severities.push(entry.event.severity.as_str());
        devices.push(entry.event.device.as_ref().map(DeviceId::as_str));
        sources.push(entry.event.source.as_deref());
        server_times.push(entry.event.server_time_ms);
        device_times.push(entry.event.device_time_ms);
        messages.push(entry.event.message.as_str());
        details.push(entry.event.detail.as_str());
        prev_hashes.push(entry.prev_hash.0.to_vec());
        hashes.push(entry.hash.0.to_vec());
    }
    sqlx::query(
        "INSERT INTO security_events (seq, kind, severity, device, source, server_time, \
         device_time, message, detail, prev_hash, hash) \
         SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], \
         $6::bigint[], $7::bigint[], $8::text[], $9::text[], $10::bytea[], $11::bytea[])",
    )
    .bind(&seqs)
    .bind(&kinds)
    .bind(&severities)
    .bind(&devices)
    .bind(&sources)
    .bind(&server_times)
    .bind(&device_times)
    .bind(&messages)
    .bind(&details)
    .bind(&prev_hashes)
    .bind(&hashes)
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE event_head SET seq = $1, hash = $2 WHERE id = 1")
        .bind(from_seq(chain.next_seq - 1)?)
        .bind(chain.last_hash.0.as_slice())
        .execute(&mut **tx)
        .await?;
    Ok(entries)
}

#[async_trait]
impl EventLog for PostgresStore {
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
        let mut sql = PlainSql::new(Dialect::Postgres);
        events_page_sql(&mut sql, filter, after, limit);
        let mut query = sqlx::query(&sql.sql);
        for param in &sql.params {
            query = query.bind(param);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(entry_from_row).collect()
    }

    async fn event(&self, seq: u64) -> Result<Option<Entry>> {
        let Ok(seq) = i64::try_from(seq) else {
            return Ok(None);
        };
        let row = sqlx::query(&format!(
            "SELECT {ENTRY_COLUMNS} FROM security_events WHERE seq = $1"
        ))
        .bind(seq)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(entry_from_row).transpose()
    }

    async fn add_checkpoint(&self, checkpoint: &Checkpoint) -> Result<()> {
        let checkpoint = checkpoint.clone();
        self.write(move |tx| {
            Box::pin(async move {
                let (head, hash): (i64, Vec<u8>) =
                    sqlx::query_as("SELECT seq, hash FROM security_events WHERE seq = $1")
                        .bind(from_seq(checkpoint.seq)?)
                        .fetch_optional(&mut **tx)
                        .await?
                        .ok_or_else(|| {
                            StoreError::NotFound(format!("security event {}", checkpoint.seq))
                        })?;
                if to_hash(&hash)? != checkpoint.hash {
                    return Err(StoreError::Conflict(format!(
                        "checkpoint for event {head} names another hash than the log has"
                    )));
                }
                sqlx::query(
                    "INSERT INTO event_checkpoints (seq, hash, signed_at, signature) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (seq) DO NOTHING",
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
        let rows = sqlx::query(
            "SELECT seq, hash, signed_at, signature FROM event_checkpoints \
             WHERE seq > COALESCE((SELECT seq FROM event_anchor WHERE id = 1), 0) ORDER BY seq",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(checkpoint_from_row).collect()
    }

    async fn event_anchor(&self) -> Result<Option<Checkpoint>> {
        let row = sqlx::query(
            "SELECT c.seq, c.hash, c.signed_at, c.signature FROM event_checkpoints c \
             JOIN event_anchor a ON a.seq = c.seq WHERE a.id = 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(checkpoint_from_row).transpose()
    }

    async fn monitor_cursor(&self, name: &str) -> Result<Option<u64>> {
        let seq: Option<i64> =
            sqlx::query_scalar("SELECT seq FROM monitor_cursors WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        seq.map(to_seq).transpose()
    }

    async fn set_monitor_cursor(&self, name: &str, seq: u64) -> Result<()> {
        // One atomic statement: concurrent replicas can only move it forwards.
        sqlx::query(
            "INSERT INTO monitor_cursors (name, seq) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET seq = GREATEST(monitor_cursors.seq, excluded.seq)",
        )
        .bind(name)
        .bind(from_seq(seq)?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn prune_events(&self, before_ms: i64, audit: &AuditEntry) -> Result<u64> {
        let audit = audit.clone();
        self.write(move |tx| {
            Box::pin(async move {
                // The newest checkpoint whose entry is older than the cut-off.
                let anchor: Option<i64> = sqlx::query_scalar(
                    "SELECT max(c.seq) FROM event_checkpoints c \
                     JOIN security_events e ON e.seq = c.seq WHERE e.server_time < $1",
                )
                .bind(before_ms)
                .fetch_one(&mut **tx)
                .await?;
                let Some(anchor) = anchor else {
                    return Ok(0);
                };
                sqlx::query(
                    "INSERT INTO event_anchor (id, seq) VALUES (1, $1) \
                     ON CONFLICT (id) DO UPDATE SET seq = excluded.seq",
                )
                .bind(anchor)
                .execute(&mut **tx)
                .await?;
                let deleted = sqlx::query("DELETE FROM security_events WHERE seq <= $1")
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
