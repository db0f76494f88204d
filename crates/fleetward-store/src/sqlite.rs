//! The SQLite adapter: the embedded default, one file in the data dir.
//!
//! WAL mode lets readers run beside the writer; `synchronous = FULL` makes a
//! committed change survive power loss. SQLite has one writer at a time, so
//! write transactions queue on an in-process mutex instead of racing into
//! `SQLITE_BUSY`; one server process owns the file.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fleetward_core::query::Expr;
use fleetward_core::{DeviceId, DeviceStatus, Role, TagKey, TagValue, version};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool, Transaction};
use time::OffsetDateTime;
use tokio::sync::Mutex;

pub(crate) mod events;
mod identity;
mod lease;
pub(crate) mod releases;
mod reports;
pub(crate) mod rollouts;

use crate::point_read::PointReader;
use crate::query_sql::{Dialect, PlainSql, device_col, device_count_sql, device_page_sql};
use crate::{
    ArtifactRecord, AuditEntry, AuditRecord, Device, DeviceChange, DeviceFacets, NewDevice,
    PoolStats, ReleaseRecord, ReleaseTransition, Result, Settings, Store, StoreError, TokenRecord,
    TufMetadataRecord,
};

#[derive(Debug)]
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
    write_lock: Mutex<()>,
    /// `None` for in-memory databases, which other connections cannot see.
    pub(crate) point_reader: Option<Arc<PointReader>>,
}

impl SqliteStore {
    /// How late a read may see a write made by another process on the same
    /// file (a second server, an operator command). Writes through this
    /// store are seen by every read that begins after they return.
    pub const SNAPSHOT_MAX_AGE: Duration = crate::point_read::SNAPSHOT_MAX_AGE;

    /// Opens (creating if needed) and migrates the database at `url`
    /// (`sqlite://path/to/file.db`).
    pub async fn open(url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let point_reader = match options.get_filename() {
            path if path.as_os_str().is_empty() || path == Path::new(":memory:") => None,
            path => Some(Arc::new(PointReader::new(path))),
        };
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        if let Some(reader) = &point_reader {
            crate::point_read::release_old_snapshots_periodically(Arc::downgrade(reader));
        }
        let store = SqliteStore {
            pool,
            write_lock: Mutex::new(()),
            point_reader,
        };
        store.refresh_planner_statistics().await;
        Ok(store)
    }

    /// Lets SQLite re-analyze tables whose size changed tenfold since their
    /// statistics were taken. Without statistics the planner picks poor
    /// plans for queries over a large fleet (a first page sorting 100,000
    /// rows instead of walking the id index: see BENCHMARKS.md). Statistics
    /// only steer plans, so a failure here is logged, not returned.
    async fn refresh_planner_statistics(&self) {
        let _writer = self.write_lock.lock().await;
        // ANALYZE writes its statistics tables.
        let _marked = self.point_reader.as_deref().map(PointReader::writing);
        // 0x10000: look at every table, not only those this connection used.
        if let Err(error) = sqlx::query("PRAGMA optimize = 0x10002")
            .execute(&self.pool)
            .await
        {
            tracing::warn!(%error, "refreshing query-planner statistics failed");
        }
    }

    pub(crate) async fn write<F, T>(&self, work: F) -> Result<T>
    where
        F: for<'t> FnOnce(
                &'t mut Transaction<'static, Sqlite>,
            ) -> std::pin::Pin<
                Box<dyn std::future::Future<Output = Result<T>> + Send + 't>,
            > + Send,
        T: Send,
    {
        let _writer = self.write_lock.lock().await;
        // Declared before the transaction, so dropped after it has ended.
        let _marked = self.point_reader.as_deref().map(PointReader::writing);
        // IMMEDIATE takes the write lock up front. A deferred transaction
        // that reads first and writes later cannot wait for another process
        // (a second replica, `fleetward` CLI on the same file): SQLite fails
        // its upgrade at once with SQLITE_BUSY, whatever the busy timeout.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let value = work(&mut tx).await?;
        tx.commit().await?;
        Ok(value)
    }

    fn devices_from_rows(rows: Vec<SqliteRow>) -> Result<Vec<Device>> {
        rows.iter().map(device_from_row).collect()
    }
}

const DEVICE_COLUMNS: &str = Dialect::Sqlite.device_columns();

/// A column of a row: by name, or by position where a decoder reads many
/// rows of a fixed column list (a name is looked up column by column on
/// every read, which dominated reading the event log in bulk).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Col<'a> {
    Name(&'a str),
    At(usize),
}

impl<'a> From<&'a str> for Col<'a> {
    fn from(name: &'a str) -> Self {
        Col::Name(name)
    }
}

impl From<usize> for Col<'static> {
    fn from(position: usize) -> Self {
        Col::At(position)
    }
}

/// A column from either driver's row: sqlx for the async pool, rusqlite for
/// point and bulk reads. One decoder per record type serves both.
pub(crate) trait Columns {
    fn text<'a>(&self, column: impl Into<Col<'a>>) -> Result<String>;
    fn opt_text<'a>(&self, column: impl Into<Col<'a>>) -> Result<Option<String>>;
    fn int<'a>(&self, column: impl Into<Col<'a>>) -> Result<i64>;
    fn opt_int<'a>(&self, column: impl Into<Col<'a>>) -> Result<Option<i64>>;
    fn blob<'a>(&self, column: impl Into<Col<'a>>) -> Result<Vec<u8>>;
}

/// Implements [`Columns`] for a row type through its own `get(column)`
/// (`$get` is called with a `&str` or a `usize`; `$err` maps its error).
macro_rules! columns_via {
    ($row:ty, |$r:ident, $c:ident| $get:expr) => {
        impl Columns for $row {
            fn text<'a>(&self, column: impl Into<Col<'a>>) -> Result<String> {
                let ($r, $c) = (self, column.into());
                $get
            }
            fn opt_text<'a>(&self, column: impl Into<Col<'a>>) -> Result<Option<String>> {
                let ($r, $c) = (self, column.into());
                $get
            }
            fn int<'a>(&self, column: impl Into<Col<'a>>) -> Result<i64> {
                let ($r, $c) = (self, column.into());
                $get
            }
            fn opt_int<'a>(&self, column: impl Into<Col<'a>>) -> Result<Option<i64>> {
                let ($r, $c) = (self, column.into());
                $get
            }
            fn blob<'a>(&self, column: impl Into<Col<'a>>) -> Result<Vec<u8>> {
                let ($r, $c) = (self, column.into());
                $get
            }
        }
    };
}
pub(crate) use columns_via;

columns_via!(SqliteRow, |row, column| Ok(match column {
    Col::Name(name) => row.try_get(name)?,
    Col::At(position) => row.try_get(position)?,
}));

columns_via!(rusqlite::Row<'_>, |row, column| match column {
    Col::Name(name) => row.get(name),
    Col::At(position) => row.get(position),
}
.map_err(|e| StoreError::PointRead(e.to_string())));

/// Decodes a row of [`Dialect::device_columns`], by position.
pub(crate) fn device_from_row(row: &impl Columns) -> Result<Device> {
    device_with_tags(row, tags_from_json(&row.text(device_col::TAGS)?)?)
}

/// Decodes the columns of [`Dialect::device_columns`] before the tags.
fn device_with_tags(row: &impl Columns, tags: BTreeMap<TagKey, TagValue>) -> Result<Device> {
    let id = row.text(device_col::ID)?;
    let status = row.text(device_col::STATUS)?;
    Ok(Device {
        id: DeviceId::parse(&id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        hardware: row.text(device_col::HARDWARE)?,
        version: row.opt_text(device_col::VERSION)?,
        status: DeviceStatus::parse(&status).ok_or_else(|| {
            StoreError::Corrupt(format!("device {id} has unknown status {status:?}"))
        })?,
        tags,
        created_at: from_millis(row.int(device_col::CREATED_AT)?)?,
        first_seen: row
            .opt_int(device_col::FIRST_SEEN)?
            .map(from_millis)
            .transpose()?,
        last_seen: row
            .opt_int(device_col::LAST_SEEN)?
            .map(from_millis)
            .transpose()?,
    })
}

/// One device by id, with its tags as one row each (a left join): for a
/// single device that is cheaper than the list queries' JSON array, which
/// SQLite builds and the store parses.
fn point_device(conn: &rusqlite::Connection, id: &str) -> rusqlite::Result<Result<Option<Device>>> {
    const SQL: &str = "SELECT d.seq, d.id, d.hardware, d.version, d.status, d.created_at, \
         d.first_seen, d.last_seen, t.key, t.value \
         FROM devices d LEFT JOIN device_tags t ON t.device_seq = d.seq WHERE d.id = ?";
    const TAG_KEY: usize = device_col::TAGS;
    const TAG_VALUE: usize = device_col::TAGS + 1;
    let mut statement = conn.prepare_cached(SQL)?;
    let mut rows = statement.query([id])?;
    let mut device = None;
    let mut tags = BTreeMap::new();
    while let Some(row) = rows.next()? {
        if device.is_none() {
            device = Some(device_with_tags(row, BTreeMap::new()));
        }
        if let (Some(key), Some(value)) = (
            row.get_ref(TAG_KEY)?.as_str_or_null()?,
            row.get_ref(TAG_VALUE)?.as_str_or_null()?,
        ) {
            match stored_tag(key, value) {
                Ok((key, value)) => tags.insert(key, value),
                Err(error) => return Ok(Err(error)),
            };
        }
    }
    Ok(match device {
        None => Ok(None),
        Some(device) => device.map(|device| Some(Device { tags, ..device })),
    })
}

/// One row by a unique key, decoded; `Ok(None)` when there is none.
pub(crate) fn point_row<T>(
    conn: &rusqlite::Connection,
    sql: &str,
    key: &str,
    decode: impl Fn(&rusqlite::Row<'_>) -> Result<T>,
) -> rusqlite::Result<Result<Option<T>>> {
    let mut statement = conn.prepare_cached(sql)?;
    let mut rows = statement.query([key])?;
    match rows.next()? {
        Some(row) => Ok(decode(row).map(Some)),
        None => Ok(Ok(None)),
    }
}

/// Every row of a query, decoded.
fn all_rows<T>(
    conn: &rusqlite::Connection,
    sql: &PlainSql,
    decode: impl Fn(&rusqlite::Row<'_>) -> Result<T>,
) -> rusqlite::Result<Result<Vec<T>>> {
    let mut statement = conn.prepare_cached(&sql.sql)?;
    let mut rows = statement.query(rusqlite::params_from_iter(sql.params.iter()))?;
    let mut decoded = Vec::new();
    while let Some(row) = rows.next()? {
        match decode(row) {
            Ok(value) => decoded.push(value),
            Err(error) => return Ok(Err(error)),
        }
    }
    Ok(Ok(decoded))
}

fn tags_from_json(json: &str) -> Result<BTreeMap<TagKey, TagValue>> {
    let pairs: Vec<(String, String)> =
        serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("device tags: {e}")))?;
    pairs
        .iter()
        .map(|(key, value)| stored_tag(key, value))
        .collect()
}

/// A stored tag, validated again: a row edited outside fleetward must not
/// reach a rollout's target query as a tag no API call could have set.
fn stored_tag(key: &str, value: &str) -> Result<(TagKey, TagValue)> {
    let key = TagKey::parse(key).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let value = TagValue::parse_for(&key, value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok((key, value))
}

pub(crate) fn token_from_row(row: &impl Columns) -> Result<TokenRecord> {
    let role = row.text("role")?;
    let hash = row.blob("secret_hash")?;
    Ok(TokenRecord {
        id: row.text("id")?,
        name: row.text("name")?,
        role: Role::parse(&role)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown role {role:?}")))?,
        secret_hash: hash
            .try_into()
            .map_err(|_| StoreError::Corrupt("token hash is not 32 bytes".into()))?,
        created_at: from_millis(row.int("created_at")?)?,
        expires_at: row.opt_int("expires_at")?.map(from_millis).transpose()?,
        revoked_at: row.opt_int("revoked_at")?.map(from_millis).transpose()?,
        created_by: row.text("created_by")?,
    })
}

pub(crate) fn to_millis(at: OffsetDateTime) -> i64 {
    let millis = at.unix_timestamp_nanos() / 1_000_000;
    i64::try_from(millis).unwrap_or(if millis < 0 { i64::MIN } else { i64::MAX })
}

pub(crate) fn from_millis(millis: i64) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .map_err(|e| StoreError::Corrupt(format!("timestamp {millis}: {e}")))
}

/// Writes the audit record and its twin in the security-event log, in the
/// caller's transaction.
pub(crate) async fn insert_audit(
    tx: &mut Transaction<'static, Sqlite>,
    entry: &AuditEntry,
) -> Result<()> {
    events::append_in(tx, &[crate::events::operator_event(entry)]).await?;
    sqlx::query("INSERT INTO audit_log (at, actor, action, target, source, detail) VALUES (?, ?, ?, ?, ?, ?)")
        .bind(to_millis(entry.at))
        .bind(&entry.actor)
        .bind(&entry.action)
        .bind(&entry.target)
        .bind(&entry.source)
        .bind(entry.detail.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn pool_stats(&self) -> PoolStats {
        let idle = u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX);
        PoolStats {
            size: self.pool.size(),
            idle,
        }
    }

    async fn close(&self) {
        if let Some(reader) = &self.point_reader {
            reader.close();
        }
        self.pool.close().await;
    }

    async fn insert_token(&self, token: &TokenRecord, audit: &AuditEntry) -> Result<()> {
        let token = token.clone();
        let audit = audit.clone();
        self.write(move |tx| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO tokens (id, name, role, secret_hash, created_at, expires_at, revoked_at, created_by)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&token.id)
                .bind(&token.name)
                .bind(token.role.as_str())
                .bind(token.secret_hash.as_slice())
                .bind(to_millis(token.created_at))
                .bind(token.expires_at.map(to_millis))
                .bind(token.revoked_at.map(to_millis))
                .bind(&token.created_by)
                .execute(&mut **tx)
                .await
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        StoreError::Conflict(format!("token {} exists already", token.id))
                    } else {
                        e.into()
                    }
                })?;
                insert_audit(tx, &audit).await
            })
        })
        .await
    }

    async fn token(&self, id: &str) -> Result<Option<TokenRecord>> {
        const SQL: &str = "SELECT * FROM tokens WHERE id = ?";
        if let Some(reader) = &self.point_reader {
            return reader.read(|conn| point_row(conn, SQL, id, |row| token_from_row(row)))?;
        }
        let row = sqlx::query(SQL).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        let rows = sqlx::query("SELECT * FROM tokens ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(token_from_row).collect()
    }

    async fn revoke_token(
        &self,
        id: &str,
        at: OffsetDateTime,
        audit: &AuditEntry,
    ) -> Result<TokenRecord> {
        let id = id.to_owned();
        let audit = audit.clone();
        self.write(move |tx| {
            Box::pin(async move {
                let row = sqlx::query("SELECT * FROM tokens WHERE id = ?")
                    .bind(&id)
                    .fetch_optional(&mut **tx)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("token {id}")))?;
                let mut token = token_from_row(&row)?;
                if token.revoked_at.is_some() {
                    return Err(StoreError::Conflict(format!(
                        "token {id} is revoked already"
                    )));
                }
                sqlx::query("UPDATE tokens SET revoked_at = ? WHERE id = ?")
                    .bind(to_millis(at))
                    .bind(&id)
                    .execute(&mut **tx)
                    .await?;
                insert_audit(tx, &audit).await?;
                token.revoked_at = Some(at);
                Ok(token)
            })
        })
        .await
    }

    async fn register_devices(
        &self,
        devices: &[NewDevice],
        at: OffsetDateTime,
        audit: &AuditEntry,
    ) -> Result<()> {
        let devices = devices.to_vec();
        let audit = audit.clone();
        let registered = self.write(move |tx| {
            Box::pin(async move {
                for device in &devices {
                    let seq: i64 = sqlx::query_scalar(
                        "INSERT INTO devices (id, hardware, version, version_key, status, created_at)
                         VALUES (?, ?, ?, ?, ?, ?) RETURNING seq",
                    )
                    .bind(device.id.as_str())
                    .bind(&device.hardware)
                    .bind(&device.version)
                    .bind(device.version.as_deref().map(version::sort_key))
                    .bind(device.status.as_str())
                    .bind(to_millis(at))
                    .fetch_one(&mut **tx)
                    .await
                    .map_err(|e| {
                        if is_unique_violation(&e) {
                            StoreError::Conflict(format!("device {} exists already", device.id))
                        } else {
                            e.into()
                        }
                    })?;
                    for tag in &device.tags {
                        sqlx::query("INSERT OR REPLACE INTO device_tags (device_seq, key, value) VALUES (?, ?, ?)")
                            .bind(seq)
                            .bind(tag.key.as_str())
                            .bind(tag.value.as_str())
                            .execute(&mut **tx)
                            .await?;
                    }
                }
                insert_audit(tx, &audit).await
            })
        })
        .await;
        self.refresh_planner_statistics().await;
        registered
    }

    async fn device(&self, id: &DeviceId) -> Result<Option<Device>> {
        if let Some(reader) = &self.point_reader {
            return reader.read(|conn| point_device(conn, id.as_str()))?;
        }
        let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices d WHERE d.id = ?");
        let rows = sqlx::query(&sql)
            .bind(id.as_str())
            .fetch_all(&self.pool)
            .await?;
        Ok(Self::devices_from_rows(rows)?.into_iter().next())
    }

    async fn update_device(
        &self,
        id: &DeviceId,
        change: &DeviceChange,
        audit: &AuditEntry,
    ) -> Result<Device> {
        let owned_id = id.clone();
        let change = change.clone();
        let audit = audit.clone();
        self.write(move |tx| {
            Box::pin(async move {
                let seq: i64 = sqlx::query_scalar("SELECT seq FROM devices WHERE id = ?")
                    .bind(owned_id.as_str())
                    .fetch_optional(&mut **tx)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("device {owned_id}")))?;
                if let Some(status) = change.status {
                    sqlx::query("UPDATE devices SET status = ? WHERE seq = ?")
                        .bind(status.as_str())
                        .bind(seq)
                        .execute(&mut **tx)
                        .await?;
                }
                for tag in &change.set_tags {
                    sqlx::query("INSERT OR REPLACE INTO device_tags (device_seq, key, value) VALUES (?, ?, ?)")
                        .bind(seq)
                        .bind(tag.key.as_str())
                        .bind(tag.value.as_str())
                        .execute(&mut **tx)
                        .await?;
                }
                for key in &change.remove_tags {
                    sqlx::query("DELETE FROM device_tags WHERE device_seq = ? AND key = ?")
                        .bind(seq)
                        .bind(key.as_str())
                        .execute(&mut **tx)
                        .await?;
                }
                insert_audit(tx, &audit).await
            })
        })
        .await?;
        self.device(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("device {id}")))
    }

    async fn list_devices(
        &self,
        query: Option<&Expr>,
        after: Option<&DeviceId>,
        limit: u32,
    ) -> Result<Vec<Device>> {
        if let Some(reader) = &self.point_reader {
            let mut sql = PlainSql::new(Dialect::Sqlite);
            device_page_sql(&mut sql, Dialect::Sqlite, query, after, limit);
            return reader
                .scan(move |conn| all_rows(conn, &sql, |row| device_from_row(row)))
                .await?;
        }
        let mut qb = QueryBuilder::<Sqlite>::new("");
        device_page_sql(&mut qb, Dialect::Sqlite, query, after, limit);
        let rows = qb.build().fetch_all(&self.pool).await?;
        Self::devices_from_rows(rows)
    }

    async fn count_devices(&self, query: Option<&Expr>) -> Result<u64> {
        let count: i64 = if let Some(reader) = &self.point_reader {
            let mut sql = PlainSql::new(Dialect::Sqlite);
            device_count_sql(&mut sql, query);
            let counts = reader
                .scan(move |conn| all_rows(conn, &sql, |row| row.int("n")))
                .await??;
            counts.into_iter().next().unwrap_or(0)
        } else {
            let mut qb = QueryBuilder::<Sqlite>::new("");
            device_count_sql(&mut qb, query);
            qb.build_query_scalar().fetch_one(&self.pool).await?
        };
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn count_devices_seen_since(&self, since: OffsetDateTime) -> Result<u64> {
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM devices WHERE last_seen >= ?")
            .bind(to_millis(since))
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<()> {
        let entry = entry.clone();
        self.write(move |tx| Box::pin(async move { insert_audit(tx, &entry).await }))
            .await
    }

    async fn list_audit(&self, after: Option<i64>, limit: u32) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query("SELECT * FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?")
            .bind(after.unwrap_or(0))
            .bind(i64::from(limit.min(crate::MAX_PAGE)))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let detail: String = row.try_get("detail")?;
                Ok(AuditRecord {
                    seq: row.try_get("seq")?,
                    entry: AuditEntry {
                        at: from_millis(row.try_get("at")?)?,
                        actor: row.try_get("actor")?,
                        action: row.try_get("action")?,
                        target: row.try_get("target")?,
                        source: row.try_get("source")?,
                        detail: serde_json::from_str(&detail)
                            .map_err(|e| StoreError::Corrupt(format!("audit detail: {e}")))?,
                    },
                })
            })
            .collect()
    }

    async fn settings(&self) -> Result<Settings> {
        let rows = sqlx::query("SELECT key, value FROM settings")
            .fetch_all(&self.pool)
            .await?;
        let mut settings = Settings::default();
        for row in rows {
            let key: String = row.try_get("key")?;
            let value: String = row.try_get("value")?;
            let bad =
                |e: std::num::ParseIntError| StoreError::Corrupt(format!("setting {key}: {e}"));
            match key.as_str() {
                "poll_interval_secs" => settings.poll_interval_secs = value.parse().map_err(bad)?,
                "default_token_lifetime_secs" => {
                    settings.default_token_lifetime_secs = value.parse().map_err(bad)?
                }
                "event_retention_days" => {
                    settings.event_retention_days = value.parse().map_err(bad)?
                }
                _ => tracing::warn!(%key, "ignoring unknown setting"),
            }
        }
        Ok(settings)
    }

    async fn put_settings(&self, settings: &Settings, audit: &AuditEntry) -> Result<()> {
        let pairs = [
            (
                "poll_interval_secs",
                settings.poll_interval_secs.to_string(),
            ),
            (
                "default_token_lifetime_secs",
                settings.default_token_lifetime_secs.to_string(),
            ),
            (
                "event_retention_days",
                settings.event_retention_days.to_string(),
            ),
        ];
        let audit = audit.clone();
        self.write(move |tx| {
            Box::pin(async move {
                for (key, value) in &pairs {
                    sqlx::query("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)")
                        .bind(key)
                        .bind(value)
                        .execute(&mut **tx)
                        .await?;
                }
                insert_audit(tx, &audit).await
            })
        })
        .await
    }

    async fn insert_artifact(&self, artifact: &ArtifactRecord, audit: &AuditEntry) -> Result<bool> {
        self.insert_artifact_impl(artifact, audit).await
    }
    async fn artifact(&self, sha256: &str) -> Result<Option<ArtifactRecord>> {
        self.artifact_impl(sha256).await
    }
    async fn insert_release(&self, release: &ReleaseRecord, audit: &AuditEntry) -> Result<()> {
        self.insert_release_impl(release, audit).await
    }
    async fn release(&self, version: &str) -> Result<Option<ReleaseRecord>> {
        self.release_impl(version).await
    }
    async fn list_releases(&self) -> Result<Vec<ReleaseRecord>> {
        self.list_releases_impl().await
    }
    async fn latest_published_release(&self, hardware: &str) -> Result<Option<ReleaseRecord>> {
        self.latest_published_release_impl(hardware).await
    }
    async fn publish_tuf(
        &self,
        metadata: &[TufMetadataRecord],
        transitions: &[ReleaseTransition],
        audit: &AuditEntry,
    ) -> Result<()> {
        self.publish_tuf_impl(metadata, transitions, audit).await
    }
    async fn tuf_latest(&self, role: &str) -> Result<Option<TufMetadataRecord>> {
        self.tuf_latest_impl(role).await
    }
    async fn tuf_version(&self, role: &str, version: u64) -> Result<Option<TufMetadataRecord>> {
        self.tuf_version_impl(role, version).await
    }
    async fn devices_running(
        &self,
        hardware: &str,
        version: &str,
        limit: u32,
    ) -> Result<Vec<DeviceId>> {
        self.devices_running_impl(hardware, version, limit).await
    }

    async fn release_vulnerabilities(&self) -> Result<Vec<crate::ReleaseVulnerabilities>> {
        self.release_vulnerabilities_impl().await
    }

    async fn put_release_vulnerabilities(
        &self,
        record: &crate::ReleaseVulnerabilities,
        replaces: Option<&str>,
        events: &[fleetward_events::Event],
    ) -> Result<Vec<fleetward_events::Entry>> {
        self.put_release_vulnerabilities_impl(record, replaces, events)
            .await
    }

    async fn device_facets(&self, limit: u32) -> Result<DeviceFacets> {
        let limit = i64::from(limit.min(crate::MAX_PAGE));
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        let statuses: Vec<(String, i64)> = sqlx::query_as(
            "SELECT status, count(*) AS n FROM devices GROUP BY status ORDER BY n DESC, status",
        )
        .fetch_all(&self.pool)
        .await?;
        let by_status = statuses
            .into_iter()
            .map(|(status, n)| {
                DeviceStatus::parse(&status)
                    .map(|s| (s, count(n)))
                    .ok_or_else(|| StoreError::Corrupt(format!("device status {status:?}")))
            })
            .collect::<Result<_>>()?;
        let versions: Vec<(Option<String>, i64)> = sqlx::query_as(
            "SELECT version, count(*) AS n FROM devices GROUP BY version ORDER BY n DESC, version LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let hardware: Vec<(String, i64)> = sqlx::query_as(
            "SELECT hardware, count(*) AS n FROM devices GROUP BY hardware ORDER BY n DESC, hardware LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(DeviceFacets {
            by_status,
            by_version: versions.into_iter().map(|(v, n)| (v, count(n))).collect(),
            by_hardware: hardware.into_iter().map(|(h, n)| (h, count(n))).collect(),
        })
    }
}
