//! Moving a whole installation from SQLite to PostgreSQL
//! (`fleetward migrate`).
//!
//! Rows are copied as stored, not replayed through the [`crate::Store`]
//! methods: replaying would audit every change again and write a new event
//! chain, while the point is to keep the old one verifiable, hashes,
//! checkpoints and anchor included. Everything goes in one PostgreSQL
//! transaction holding the chain's head lock, so a failed copy leaves the
//! target as empty as it was. The target must be empty (freshly migrated);
//! a SQLite table this copier does not know is an error, not a silent loss.

use sqlx::sqlite::SqliteRow;
use sqlx::{Postgres, QueryBuilder, Row as _, Transaction};

use crate::{PostgresStore, Result, SqliteStore, StoreError};

/// How a column is stored: the SQLite value and the PostgreSQL type agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Int,
    Blob,
    /// INTEGER 0/1 in SQLite, BOOLEAN in PostgreSQL.
    Bool,
}

use Kind::{Blob, Bool, Int, Text};

/// A table: its name, its columns, and the key to page by.
type Table = (&'static str, &'static [(&'static str, Kind)], &'static str);

/// Tables in foreign-key order.
const TABLES: &[Table] = &[
    (
        "tokens",
        &[
            ("id", Text),
            ("name", Text),
            ("role", Text),
            ("secret_hash", Blob),
            ("created_at", Int),
            ("expires_at", Int),
            ("revoked_at", Int),
            ("created_by", Text),
        ],
        "id",
    ),
    (
        "devices",
        &[
            ("seq", Int),
            ("id", Text),
            ("hardware", Text),
            ("version", Text),
            ("version_key", Text),
            ("status", Text),
            ("created_at", Int),
            ("first_seen", Int),
            ("last_seen", Int),
        ],
        "seq",
    ),
    (
        "device_tags",
        &[("device_seq", Int), ("key", Text), ("value", Text)],
        "device_seq, key",
    ),
    (
        "audit_log",
        &[
            ("seq", Int),
            ("at", Int),
            ("actor", Text),
            ("action", Text),
            ("target", Text),
            ("source", Text),
            ("detail", Text),
        ],
        "seq",
    ),
    ("settings", &[("key", Text), ("value", Text)], "key"),
    (
        "fleet_ca",
        &[
            ("id", Int),
            ("cert_pem", Text),
            ("key_path", Text),
            ("fingerprint", Text),
            ("created_at", Int),
        ],
        "id",
    ),
    (
        "certificates",
        &[
            ("serial", Text),
            ("device_id", Text),
            ("not_before", Int),
            ("not_after", Int),
            ("issued_at", Int),
            ("key_kind", Text),
            ("revoked_at", Int),
            ("reason", Text),
            ("comment", Text),
        ],
        "serial",
    ),
    (
        "enrolment_tokens",
        &[
            ("id", Text),
            ("name", Text),
            ("secret_hash", Blob),
            ("tags", Text),
            ("uses_total", Int),
            ("uses_left", Int),
            ("require_approval", Bool),
            ("allow_listed_only", Bool),
            ("created_at", Int),
            ("expires_at", Int),
            ("revoked_at", Int),
            ("created_by", Text),
        ],
        "id",
    ),
    (
        "device_allow_list",
        &[("device_id", Text), ("public_key", Blob), ("added_at", Int)],
        "device_id",
    ),
    (
        "device_rekey",
        &[
            ("device_id", Text),
            ("requested_at", Int),
            ("deadline", Int),
        ],
        "device_id",
    ),
    (
        "artifacts",
        &[
            ("sha256", Text),
            ("sha512", Text),
            ("length", Int),
            ("created_at", Int),
        ],
        "sha256",
    ),
    (
        "releases",
        &[
            ("version", Text),
            ("version_key", Text),
            ("hardware", Text),
            ("state", Text),
            ("target_name", Text),
            ("artifact_sha256", Text),
            ("sbom_sha256", Text),
            ("notes", Text),
            ("created_at", Int),
            ("created_by", Text),
            ("updated_at", Int),
        ],
        "version",
    ),
    (
        "release_vulnerabilities",
        &[
            ("version", Text),
            ("basis", Text),
            ("advisory_ids", Text),
            ("vulnerable_since", Int),
            ("checked_at", Int),
        ],
        "version",
    ),
    (
        "tuf_metadata",
        &[
            ("role", Text),
            ("version", Int),
            ("body", Blob),
            ("expires_at", Int),
            ("created_at", Int),
        ],
        "role, version",
    ),
    (
        "security_events",
        &[
            ("seq", Int),
            ("kind", Text),
            ("severity", Text),
            ("device", Text),
            ("source", Text),
            ("server_time", Int),
            ("device_time", Int),
            ("message", Text),
            ("detail", Text),
            ("prev_hash", Blob),
            ("hash", Blob),
        ],
        "seq",
    ),
    (
        "event_checkpoints",
        &[
            ("seq", Int),
            ("hash", Blob),
            ("signed_at", Int),
            ("signature", Blob),
        ],
        "seq",
    ),
    ("event_anchor", &[("id", Int), ("seq", Int)], "id"),
    ("monitor_cursors", &[("name", Text), ("seq", Int)], "name"),
    (
        "rollouts",
        &[
            ("seq", Int),
            ("id", Text),
            ("release_version", Text),
            ("hardware", Text),
            ("target", Text),
            ("settings", Text),
            ("state", Text),
            ("current_phase", Int),
            ("phase_started_at", Int),
            ("soak_started_at", Int),
            ("pause_reason", Text),
            ("rollback_of", Text),
            ("created_at", Int),
            ("created_by", Text),
            ("updated_at", Int),
        ],
        "seq",
    ),
    (
        "rollout_executions",
        &[
            ("seq", Int),
            ("rollout_seq", Int),
            ("device_id", Text),
            ("phase", Int),
            ("attempt", Int),
            ("state", Text),
            ("failure", Text),
            ("reason", Text),
            ("released_at", Int),
            ("offered_at", Int),
            ("updated_at", Int),
        ],
        "seq",
    ),
    (
        "execution_transitions",
        &[
            ("seq", Int),
            ("execution_seq", Int),
            ("attempt", Int),
            ("at", Int),
            ("from_state", Text),
            ("to_state", Text),
            ("failure", Text),
            ("reason", Text),
            ("actor", Text),
        ],
        "seq",
    ),
    (
        "device_telemetry",
        &[
            ("id", Int),
            ("device", Text),
            ("server_time", Int),
            ("device_time", Int),
            ("conditions", Text),
        ],
        "id",
    ),
    (
        "device_errors",
        &[
            ("id", Int),
            ("device", Text),
            ("server_time", Int),
            ("device_time", Int),
            ("context", Text),
            ("message", Text),
        ],
        "id",
    ),
];

/// Tables that are not copied, and why.
const NOT_COPIED: &[&str] = &[
    // sqlx's own bookkeeping: the target has its own migrations.
    "_sqlx_migrations",
    // One row, rewritten from the source below rather than inserted.
    "event_head",
    // Leases belong to running servers; the old one is stopped.
    "leases",
];

/// Rows read from SQLite per round trip.
const PAGE: i64 = 5000;

/// What a copy moved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Rows per table, in copy order.
    pub tables: Vec<(String, u64)>,
    /// The event chain's head after the copy (the source's).
    pub event_head_seq: u64,
}

/// One column's values for a page, as PostgreSQL arrays.
enum Values {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
    Blob(Vec<Option<Vec<u8>>>),
    Bool(Vec<Option<bool>>),
}

impl Values {
    fn new(kind: Kind) -> Values {
        match kind {
            Text => Values::Text(Vec::new()),
            Int => Values::Int(Vec::new()),
            Blob => Values::Blob(Vec::new()),
            Bool => Values::Bool(Vec::new()),
        }
    }

    fn push(&mut self, row: &SqliteRow, column: &str) -> Result<()> {
        match self {
            Values::Text(v) => v.push(row.try_get(column)?),
            Values::Int(v) => v.push(row.try_get(column)?),
            Values::Blob(v) => v.push(row.try_get(column)?),
            Values::Bool(v) => v.push(row.try_get::<Option<i64>, _>(column)?.map(|n| n != 0)),
        }
        Ok(())
    }

    fn cast(&self) -> &'static str {
        match self {
            Values::Text(_) => "text[]",
            Values::Int(_) => "bigint[]",
            Values::Blob(_) => "bytea[]",
            Values::Bool(_) => "boolean[]",
        }
    }

    fn bind(self, qb: &mut QueryBuilder<'_, Postgres>) {
        match self {
            Values::Text(v) => qb.push_bind(v),
            Values::Int(v) => qb.push_bind(v),
            Values::Blob(v) => qb.push_bind(v),
            Values::Bool(v) => qb.push_bind(v),
        };
    }
}

/// Copies every row of `from` into the empty `to`, keeping the event chain
/// as it is; all or nothing.
pub async fn copy_sqlite_to_postgres(from: &SqliteStore, to: &PostgresStore) -> Result<CopyReport> {
    let source_tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )
    .fetch_all(&from.pool)
    .await?;
    for table in &source_tables {
        let known = TABLES.iter().any(|(name, _, _)| name == table);
        if !known && !NOT_COPIED.contains(&table.as_str()) {
            return Err(StoreError::Invalid(format!(
                "the source has a table this version cannot copy: {table}; \
                 use the fleetward release that created it"
            )));
        }
    }
    let mut tx = to.pool.begin().await?;
    let (head_seq, _): (i64, Vec<u8>) =
        sqlx::query_as("SELECT seq, hash FROM event_head WHERE id = 1 FOR UPDATE")
            .fetch_one(&mut *tx)
            .await?;
    let target_rows: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM tokens) + (SELECT count(*) FROM devices) \
         + (SELECT count(*) FROM audit_log) + (SELECT count(*) FROM fleet_ca)",
    )
    .fetch_one(&mut *tx)
    .await?;
    if head_seq != 0 || target_rows != 0 {
        return Err(StoreError::Conflict(
            "the target database is not empty; migrate into a new database".into(),
        ));
    }
    let mut report = CopyReport::default();
    for (table, columns, key) in TABLES {
        let copied = copy_table(from, &mut tx, table, columns, key).await?;
        report.tables.push(((*table).to_owned(), copied));
    }
    let (seq, hash): (i64, Vec<u8>) =
        sqlx::query_as("SELECT seq, hash FROM event_head WHERE id = 1")
            .fetch_one(&from.pool)
            .await?;
    sqlx::query("UPDATE event_head SET seq = $1, hash = $2 WHERE id = 1")
        .bind(seq)
        .bind(&hash)
        .execute(&mut *tx)
        .await?;
    // Identity columns continue after the copied rows.
    for (table, column) in [
        ("devices", "seq"),
        ("audit_log", "seq"),
        ("rollouts", "seq"),
        ("rollout_executions", "seq"),
        ("execution_transitions", "seq"),
        ("device_telemetry", "id"),
        ("device_errors", "id"),
    ] {
        sqlx::query(&format!(
            "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), \
             GREATEST((SELECT max({column}) FROM {table}), 1), (SELECT max({column}) FROM {table}) IS NOT NULL)"
        ))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    report.event_head_seq = crate::sqlite::events::to_seq(seq)?;
    Ok(report)
}

async fn copy_table(
    from: &SqliteStore,
    tx: &mut Transaction<'static, Postgres>,
    table: &str,
    columns: &[(&str, Kind)],
    key: &str,
) -> Result<u64> {
    let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
    let list = names.join(", ");
    let mut copied = 0u64;
    let mut offset = 0i64;
    loop {
        // Names from the constant table above: nothing to inject.
        let rows = sqlx::query(&format!(
            "SELECT {list} FROM {table} ORDER BY {key} LIMIT {PAGE} OFFSET {offset}"
        ))
        .fetch_all(&from.pool)
        .await?;
        if rows.is_empty() {
            break;
        }
        let mut values: Vec<Values> = columns.iter().map(|(_, kind)| Values::new(*kind)).collect();
        for row in &rows {
            for ((name, _), column) in columns.iter().zip(values.iter_mut()) {
                column.push(row, name)?;
            }
        }
        let mut qb = QueryBuilder::<Postgres>::new(format!(
            "INSERT INTO {table} ({list}) SELECT * FROM UNNEST("
        ));
        for (n, column) in values.into_iter().enumerate() {
            if n > 0 {
                qb.push(", ");
            }
            let cast = column.cast();
            column.bind(&mut qb);
            qb.push("::");
            qb.push(cast);
        }
        qb.push(")");
        qb.build().execute(&mut **tx).await?;
        copied += rows.len() as u64;
        offset += PAGE;
    }
    Ok(copied)
}
