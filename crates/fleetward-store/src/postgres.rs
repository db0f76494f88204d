//! The PostgreSQL adapter: the scale-out backend, shared by every server
//! replica.
//!
//! Same schema shape and row decoders as the SQLite adapter (times are Unix
//! milliseconds, text that is ordered uses the byte-order "C" collation), so
//! the conformance suite holds both to one behaviour.
//!
//! # Serialisation across replicas
//!
//! SQLite has one writer; several server processes on one PostgreSQL do not.
//! Every audited change also appends to the security-event hash chain, and a
//! chain must not fork, so each write transaction here starts by locking the
//! chain's head row (`SELECT … FROM event_head … FOR UPDATE`). That makes
//! write transactions serial across all replicas, exactly as SQLite's single
//! writer makes them within one process: the read-check-write logic of
//! enrolment (consume a token use, refuse a replayed enrolment), renewal
//! (each certificate renews once), release transitions and retention runs
//! under the lock, and under READ COMMITTED each statement after the lock
//! sees everything the previous holder committed. Row locks rather than
//! SERIALIZABLE retries: the head row is a hot spot that SERIALIZABLE would
//! turn into aborts and retries on nearly every concurrent write, and a
//! retry loop would have to make every closure re-runnable.
//!
//! Writes that never touch the chain are single atomic statements and take
//! no lock: a monitor cursor only moves forwards (`GREATEST` in an upsert),
//! a lease changes hands only in a conditional upsert (see `postgres/lease.rs`).
//! The device's hot path in a rollout (being offered an execution,
//! reporting its progress) is the one multi-statement write off the head
//! lock: a conditional update names the state it moves from, and row locks
//! on the rollout and execution order it against pauses and aborts (see
//! `postgres/rollouts.rs`).
//! Migrations themselves take PostgreSQL's advisory lock (sqlx does), so
//! replicas starting together migrate once.
//!
//! The pool size comes from the URL: `postgres://…?max_connections=N`
//! (default [`DEFAULT_MAX_CONNECTIONS`]); the parameter is ours and is taken
//! out before the URL reaches the driver.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use fleetward_core::query::Expr;
use fleetward_core::{DeviceId, version};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgPool, Postgres, QueryBuilder, Row, Transaction};
use time::OffsetDateTime;

mod events;
mod identity;
mod lease;
mod releases;
mod reports;
mod rollouts;

use crate::query_sql::{Dialect, device_count_sql, device_page_sql};
use crate::sqlite::{Columns, device_from_row, from_millis, to_millis, token_from_row};
use crate::{
    ArtifactRecord, AuditEntry, AuditRecord, Device, DeviceChange, DeviceFacets, NewDevice,
    PoolStats, ReleaseRecord, ReleaseTransition, Result, Settings, Store, StoreError, TokenRecord,
    TufMetadataRecord,
};

/// Connections per replica unless the URL says otherwise.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;

/// The largest pool a URL may ask for (PostgreSQL's own default
/// `max_connections` is 100, shared by every replica).
pub const MAX_MAX_CONNECTIONS: u32 = 1000;

const DEVICE_COLUMNS: &str = Dialect::Postgres.device_columns();

#[derive(Debug)]
pub struct PostgresStore {
    pub(crate) pool: PgPool,
}

/// Splits our own `max_connections` parameter off a database URL.
fn pool_size_from_url(url: &str) -> Result<(String, u32)> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), DEFAULT_MAX_CONNECTIONS));
    };
    let mut size = DEFAULT_MAX_CONNECTIONS;
    let mut rest = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("max_connections", value)) => {
                size = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_MAX_CONNECTIONS).contains(n))
                    .ok_or_else(|| {
                        StoreError::Invalid(format!(
                            "max_connections must be a number from 1 to {MAX_MAX_CONNECTIONS}, not {value:?}"
                        ))
                    })?;
            }
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((url, size))
}

impl PostgresStore {
    /// Connects to and migrates the database at `url`
    /// (`postgres://user@host:port/db`, optionally `?max_connections=N`).
    /// The database must exist; its tables are created here.
    pub async fn open(url: &str) -> Result<Self> {
        let (url, max_connections) = pool_size_from_url(url)?;
        let options = PgConnectOptions::from_str(&url)?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(PostgresStore { pool })
    }

    /// Runs `work` in a transaction that holds the event-chain head lock
    /// (see the module documentation).
    pub(crate) async fn write<F, T>(&self, work: F) -> Result<T>
    where
        F: for<'t> FnOnce(
                &'t mut Transaction<'static, Postgres>,
            ) -> std::pin::Pin<
                Box<dyn std::future::Future<Output = Result<T>> + Send + 't>,
            > + Send,
        T: Send,
    {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT seq FROM event_head WHERE id = 1 FOR UPDATE")
            .execute(&mut *tx)
            .await?;
        let value = work(&mut tx).await?;
        tx.commit().await?;
        Ok(value)
    }
}

impl Columns for PgRow {
    fn text(&self, column: &str) -> Result<String> {
        Ok(self.try_get(column)?)
    }
    fn opt_text(&self, column: &str) -> Result<Option<String>> {
        Ok(self.try_get(column)?)
    }
    fn int(&self, column: &str) -> Result<i64> {
        Ok(self.try_get(column)?)
    }
    fn opt_int(&self, column: &str) -> Result<Option<i64>> {
        Ok(self.try_get(column)?)
    }
    fn blob(&self, column: &str) -> Result<Vec<u8>> {
        Ok(self.try_get(column)?)
    }
}

/// Writes the audit record and its twin in the security-event log, in the
/// caller's transaction (which holds the head lock).
pub(crate) async fn insert_audit(
    tx: &mut Transaction<'static, Postgres>,
    entry: &AuditEntry,
) -> Result<()> {
    events::append_in(tx, &[crate::events::operator_event(entry)]).await?;
    sqlx::query(
        "INSERT INTO audit_log (at, actor, action, target, source, detail) VALUES ($1, $2, $3, $4, $5, $6)",
    )
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

pub(crate) use crate::sqlite::is_unique_violation;

/// Sets tags on a device (last value of a key wins), in one statement.
pub(crate) async fn put_tags(
    tx: &mut Transaction<'static, Postgres>,
    seqs: &[i64],
    keys: &[String],
    values: &[String],
) -> Result<()> {
    if seqs.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO device_tags (device_seq, key, value)
         SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[])
         ON CONFLICT (device_seq, key) DO UPDATE SET value = excluded.value",
    )
    .bind(seqs)
    .bind(keys)
    .bind(values)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Tag rows for one device, one per key, the last value of a key winning
/// (one statement may not change a row twice).
pub(crate) fn tag_rows(
    seq: i64,
    tags: &[fleetward_core::Tag],
    rows: &mut (Vec<i64>, Vec<String>, Vec<String>),
) {
    let unique: BTreeMap<&str, &str> = tags
        .iter()
        .map(|t| (t.key.as_str(), t.value.as_str()))
        .collect();
    for (key, value) in unique {
        rows.0.push(seq);
        rows.1.push(key.to_owned());
        rows.2.push(value.to_owned());
    }
}

#[async_trait]
impl Store for PostgresStore {
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
        self.pool.close().await;
    }

    async fn insert_token(&self, token: &TokenRecord, audit: &AuditEntry) -> Result<()> {
        let token = token.clone();
        let audit = audit.clone();
        self.write(move |tx| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO tokens (id, name, role, secret_hash, created_at, expires_at, revoked_at, created_by)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
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
        let row = sqlx::query("SELECT * FROM tokens WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
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
                let row = sqlx::query("SELECT * FROM tokens WHERE id = $1")
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
                sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE id = $2")
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
        self.write(move |tx| {
            Box::pin(async move {
                let ids: Vec<&str> = devices.iter().map(|d| d.id.as_str()).collect();
                // Name the first id that exists already (the insert below
                // would only say that one did).
                let existing: Option<String> = sqlx::query_scalar(
                    "SELECT id FROM devices WHERE id = ANY($1) ORDER BY id LIMIT 1",
                )
                .bind(&ids)
                .fetch_optional(&mut **tx)
                .await?;
                if let Some(id) = existing {
                    return Err(StoreError::Conflict(format!("device {id} exists already")));
                }
                let hardware: Vec<&str> = devices.iter().map(|d| d.hardware.as_str()).collect();
                let versions: Vec<Option<&str>> =
                    devices.iter().map(|d| d.version.as_deref()).collect();
                let version_keys: Vec<Option<String>> = devices
                    .iter()
                    .map(|d| d.version.as_deref().map(version::sort_key))
                    .collect();
                let statuses: Vec<&str> = devices.iter().map(|d| d.status.as_str()).collect();
                let inserted: Vec<(i64, String)> = sqlx::query_as(
                    "INSERT INTO devices (id, hardware, version, version_key, status, created_at)
                     SELECT id, hardware, version, version_key, status, $6
                     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
                          AS n (id, hardware, version, version_key, status)
                     RETURNING seq, id",
                )
                .bind(&ids)
                .bind(&hardware)
                .bind(&versions)
                .bind(&version_keys)
                .bind(&statuses)
                .bind(to_millis(at))
                .fetch_all(&mut **tx)
                .await
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        StoreError::Conflict("a device id appears twice in the batch".into())
                    } else {
                        StoreError::from(e)
                    }
                })?;
                let seqs: BTreeMap<String, i64> =
                    inserted.into_iter().map(|(seq, id)| (id, seq)).collect();
                let mut rows = (Vec::new(), Vec::new(), Vec::new());
                for device in &devices {
                    let seq = seqs.get(device.id.as_str()).copied().ok_or_else(|| {
                        StoreError::Corrupt(format!("device {} was not inserted", device.id))
                    })?;
                    tag_rows(seq, &device.tags, &mut rows);
                }
                put_tags(tx, &rows.0, &rows.1, &rows.2).await?;
                insert_audit(tx, &audit).await
            })
        })
        .await
    }

    async fn device(&self, id: &DeviceId) -> Result<Option<Device>> {
        let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices d WHERE d.id = $1");
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(device_from_row).transpose()
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
                let seq: i64 = sqlx::query_scalar("SELECT seq FROM devices WHERE id = $1")
                    .bind(owned_id.as_str())
                    .fetch_optional(&mut **tx)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("device {owned_id}")))?;
                if let Some(status) = change.status {
                    sqlx::query("UPDATE devices SET status = $1 WHERE seq = $2")
                        .bind(status.as_str())
                        .bind(seq)
                        .execute(&mut **tx)
                        .await?;
                }
                let mut rows = (Vec::new(), Vec::new(), Vec::new());
                tag_rows(seq, &change.set_tags, &mut rows);
                put_tags(tx, &rows.0, &rows.1, &rows.2).await?;
                if !change.remove_tags.is_empty() {
                    let keys: Vec<&str> = change.remove_tags.iter().map(|k| k.as_str()).collect();
                    sqlx::query("DELETE FROM device_tags WHERE device_seq = $1 AND key = ANY($2)")
                        .bind(seq)
                        .bind(&keys)
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
        let mut qb = QueryBuilder::<Postgres>::new("");
        device_page_sql(&mut qb, Dialect::Postgres, query, after, limit);
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter().map(device_from_row).collect()
    }

    async fn count_devices(&self, query: Option<&Expr>) -> Result<u64> {
        let mut qb = QueryBuilder::<Postgres>::new("");
        device_count_sql(&mut qb, query);
        let count: i64 = qb.build_query_scalar().fetch_one(&self.pool).await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn count_devices_seen_since(&self, since: OffsetDateTime) -> Result<u64> {
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM devices WHERE last_seen >= $1")
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
        let rows = sqlx::query("SELECT * FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2")
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
                    sqlx::query(
                        "INSERT INTO settings (key, value) VALUES ($1, $2)
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    )
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
                fleetward_core::DeviceStatus::parse(&status)
                    .map(|s| (s, count(n)))
                    .ok_or_else(|| StoreError::Corrupt(format!("device status {status:?}")))
            })
            .collect::<Result<_>>()?;
        let versions: Vec<(Option<String>, i64)> = sqlx::query_as(
            "SELECT version, count(*) AS n FROM devices GROUP BY version ORDER BY n DESC, version LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let hardware: Vec<(String, i64)> = sqlx::query_as(
            "SELECT hardware, count(*) AS n FROM devices GROUP BY hardware ORDER BY n DESC, hardware LIMIT $1",
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_pool_size_comes_out_of_the_url() {
        let check = |url: &str, expected: Option<(&str, u32)>| {
            let got = pool_size_from_url(url).ok();
            assert_eq!(
                got.as_ref().map(|(u, n)| (u.as_str(), *n)),
                expected,
                "{url}"
            );
        };
        check("postgres://h/db", Some(("postgres://h/db", 10)));
        check(
            "postgres://h/db?max_connections=3",
            Some(("postgres://h/db", 3)),
        );
        check(
            "postgres://h/db?sslmode=disable&max_connections=30&application_name=x",
            Some(("postgres://h/db?sslmode=disable&application_name=x", 30)),
        );
        check("postgres://h/db?max_connections=0", None);
        check("postgres://h/db?max_connections=lots", None);
        check("postgres://h/db?max_connections=100000", None);
    }
}
