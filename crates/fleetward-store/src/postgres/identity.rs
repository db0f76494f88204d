//! PostgreSQL adapter of [`IdentityStore`].
//!
//! Every write runs under the event-chain head lock (see the parent
//! module), so the read-check-write of enrolment and renewal is serial
//! across replicas; the token-use decrement is also a single conditional
//! `UPDATE`, which READ COMMITTED re-checks against the newest row version.

use async_trait::async_trait;
use fleetward_core::{DeviceId, DeviceStatus, Tag};
use sqlx::postgres::PgRow;
use sqlx::{Postgres, QueryBuilder, Row};
use time::OffsetDateTime;

use super::{PostgresStore, insert_audit, is_unique_violation};
use crate::identity::{
    AllowListEntry, CaRecord, CertRecord, Enrolment, EnrolmentTokenRecord, IdentityStore,
    RekeyRequest, RekeyTarget,
};
use crate::query_sql::{TagForm, push_predicate};
use crate::sqlite::{from_millis, to_millis};
use crate::{AuditEntry, Device, Result, StoreError};

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn opt_millis(row: &PgRow, column: &str) -> Result<Option<OffsetDateTime>> {
    row.try_get::<Option<i64>, _>(column)?
        .map(from_millis)
        .transpose()
}

fn cert_from_row(row: &PgRow) -> Result<CertRecord> {
    let device: String = row.try_get("device_id")?;
    Ok(CertRecord {
        serial: row.try_get("serial")?,
        device_id: DeviceId::parse(&device).map_err(corrupt)?,
        not_before: from_millis(row.try_get("not_before")?)?,
        not_after: from_millis(row.try_get("not_after")?)?,
        issued_at: from_millis(row.try_get("issued_at")?)?,
        key_kind: row.try_get("key_kind")?,
        revoked_at: opt_millis(row, "revoked_at")?,
        reason: row.try_get("reason")?,
        comment: row.try_get("comment")?,
    })
}

fn tags_to_text(tags: &[Tag]) -> String {
    serde_json::Value::from(tags.iter().map(ToString::to_string).collect::<Vec<_>>()).to_string()
}

fn tags_from_text(text: &str) -> Result<Vec<Tag>> {
    let raw: Vec<String> = serde_json::from_str(text).map_err(corrupt)?;
    raw.iter().map(|t| Tag::parse(t).map_err(corrupt)).collect()
}

fn count(value: i64) -> Result<u32> {
    u32::try_from(value).map_err(corrupt)
}

fn token_from_row(row: &PgRow) -> Result<EnrolmentTokenRecord> {
    let hash: Vec<u8> = row.try_get("secret_hash")?;
    let tags: String = row.try_get("tags")?;
    Ok(EnrolmentTokenRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        secret_hash: hash
            .try_into()
            .map_err(|_| corrupt("enrolment token hash is not 32 bytes"))?,
        tags: tags_from_text(&tags)?,
        uses_total: count(row.try_get("uses_total")?)?,
        uses_left: count(row.try_get("uses_left")?)?,
        require_approval: row.try_get("require_approval")?,
        allow_listed_only: row.try_get("allow_listed_only")?,
        created_at: from_millis(row.try_get("created_at")?)?,
        expires_at: from_millis(row.try_get("expires_at")?)?,
        revoked_at: opt_millis(row, "revoked_at")?,
        created_by: row.try_get("created_by")?,
    })
}

async fn insert_cert(
    tx: &mut sqlx::Transaction<'static, Postgres>,
    cert: &CertRecord,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO certificates (serial, device_id, not_before, not_after, issued_at, key_kind, revoked_at, reason, comment)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&cert.serial)
    .bind(cert.device_id.as_str())
    .bind(to_millis(cert.not_before))
    .bind(to_millis(cert.not_after))
    .bind(to_millis(cert.issued_at))
    .bind(&cert.key_kind)
    .bind(cert.revoked_at.map(to_millis))
    .bind(&cert.reason)
    .bind(&cert.comment)
    .execute(&mut **tx)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            StoreError::Conflict(format!("certificate serial {} exists already", cert.serial))
        } else {
            e.into()
        }
    })?;
    Ok(())
}

#[async_trait]
impl IdentityStore for PostgresStore {
    async fn put_ca(&self, ca: &CaRecord, audit: &AuditEntry) -> Result<()> {
        let ca = ca.clone();
        let audit = audit.clone();
        self.write(move |tx| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO fleet_ca (id, cert_pem, key_path, fingerprint, created_at) VALUES (1, $1, $2, $3, $4)",
                )
                .bind(&ca.cert_pem)
                .bind(&ca.key_path)
                .bind(&ca.fingerprint)
                .bind(to_millis(ca.created_at))
                .execute(&mut **tx)
                .await
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        StoreError::Conflict("the fleet CA exists already".into())
                    } else {
                        e.into()
                    }
                })?;
                insert_audit(tx, &audit).await
            })
        })
        .await
    }

    async fn ca(&self) -> Result<Option<CaRecord>> {
        let row = sqlx::query("SELECT * FROM fleet_ca WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(CaRecord {
                cert_pem: row.try_get("cert_pem")?,
                key_path: row.try_get("key_path")?,
                fingerprint: row.try_get("fingerprint")?,
                created_at: from_millis(row.try_get("created_at")?)?,
            })
        })
        .transpose()
    }

    async fn insert_enrolment_token(
        &self,
        token: &EnrolmentTokenRecord,
        audit: &AuditEntry,
    ) -> Result<()> {
        let token = token.clone();
        let audit = audit.clone();
        self.write(move |tx| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO enrolment_tokens (id, name, secret_hash, tags, uses_total, uses_left,
                        require_approval, allow_listed_only, created_at, expires_at, revoked_at, created_by)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                )
                .bind(&token.id)
                .bind(&token.name)
                .bind(token.secret_hash.as_slice())
                .bind(tags_to_text(&token.tags))
                .bind(i64::from(token.uses_total))
                .bind(i64::from(token.uses_left))
                .bind(token.require_approval)
                .bind(token.allow_listed_only)
                .bind(to_millis(token.created_at))
                .bind(to_millis(token.expires_at))
                .bind(token.revoked_at.map(to_millis))
                .bind(&token.created_by)
                .execute(&mut **tx)
                .await
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        StoreError::Conflict(format!("enrolment token {} exists already", token.id))
                    } else {
                        e.into()
                    }
                })?;
                insert_audit(tx, &audit).await
            })
        })
        .await
    }

    async fn enrolment_token(&self, id: &str) -> Result<Option<EnrolmentTokenRecord>> {
        let row = sqlx::query("SELECT * FROM enrolment_tokens WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn list_enrolment_tokens(&self) -> Result<Vec<EnrolmentTokenRecord>> {
        let rows = sqlx::query("SELECT * FROM enrolment_tokens ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(token_from_row).collect()
    }

    async fn revoke_enrolment_token(
        &self,
        id: &str,
        at: OffsetDateTime,
        audit: &AuditEntry,
    ) -> Result<EnrolmentTokenRecord> {
        let id = id.to_owned();
        let audit = audit.clone();
        self.write(move |tx| {
            Box::pin(async move {
                let row = sqlx::query("SELECT * FROM enrolment_tokens WHERE id = $1")
                    .bind(&id)
                    .fetch_optional(&mut **tx)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("enrolment token {id}")))?;
                let mut token = token_from_row(&row)?;
                if token.revoked_at.is_some() {
                    return Err(StoreError::Conflict(format!(
                        "enrolment token {id} is revoked already"
                    )));
                }
                sqlx::query("UPDATE enrolment_tokens SET revoked_at = $1 WHERE id = $2")
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

    async fn put_allow_list(&self, entries: &[AllowListEntry], audit: &AuditEntry) -> Result<()> {
        let entries = entries.to_vec();
        let audit = audit.clone();
        self.write(move |tx| {
            Box::pin(async move {
                for entry in &entries {
                    sqlx::query(
                        "INSERT INTO device_allow_list (device_id, public_key, added_at) VALUES ($1, $2, $3) ON CONFLICT (device_id) DO UPDATE SET public_key = excluded.public_key, added_at = excluded.added_at",
                    )
                    .bind(entry.device_id.as_str())
                    .bind(entry.public_key.as_deref())
                    .bind(to_millis(entry.added_at))
                    .execute(&mut **tx)
                    .await?;
                }
                insert_audit(tx, &audit).await
            })
        })
        .await
    }

    async fn allow_list_entry(&self, id: &DeviceId) -> Result<Option<AllowListEntry>> {
        let row = sqlx::query("SELECT * FROM device_allow_list WHERE device_id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(AllowListEntry {
                device_id: id.clone(),
                public_key: row.try_get("public_key")?,
                added_at: from_millis(row.try_get("added_at")?)?,
            })
        })
        .transpose()
    }

    async fn count_allow_list(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM device_allow_list")
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn enroll(&self, enrolment: &Enrolment, audit: &AuditEntry) -> Result<Device> {
        let e = enrolment.clone();
        let audit = audit.clone();
        let at = e.cert.issued_at;
        self.write(move |tx| {
            Box::pin(async move {
                let used = sqlx::query(
                    "UPDATE enrolment_tokens SET uses_left = uses_left - 1
                     WHERE id = $1 AND uses_left > 0 AND revoked_at IS NULL AND expires_at > $2",
                )
                .bind(&e.token_id)
                .bind(to_millis(at))
                .execute(&mut **tx)
                .await?;
                if used.rows_affected() != 1 {
                    return Err(StoreError::Conflict(format!(
                        "enrolment token {} is revoked, expired or used up",
                        e.token_id
                    )));
                }
                let existing: Option<(i64, String)> =
                    sqlx::query_as("SELECT seq, status FROM devices WHERE id = $1")
                        .bind(e.device_id.as_str())
                        .fetch_optional(&mut **tx)
                        .await?;
                let seq = match existing {
                    Some((seq, status)) => {
                        if status == DeviceStatus::Decommissioned.as_str() {
                            return Err(StoreError::Conflict(format!(
                                "device {} is decommissioned",
                                e.device_id
                            )));
                        }
                        let live: i64 = sqlx::query_scalar(
                            "SELECT count(*) FROM certificates WHERE device_id = $1
                             AND not_after > $2 AND (revoked_at IS NULL OR revoked_at > $3)",
                        )
                        .bind(e.device_id.as_str())
                        .bind(to_millis(at))
                        .bind(to_millis(at))
                        .fetch_one(&mut **tx)
                        .await?;
                        if live > 0 {
                            return Err(StoreError::Conflict(format!(
                                "device {} is enrolled already; it renews with its certificate",
                                e.device_id
                            )));
                        }
                        seq
                    }
                    None => {
                        sqlx::query_scalar(
                            "INSERT INTO devices (id, hardware, status, created_at) VALUES ($1, $2, $3, $4) RETURNING seq",
                        )
                        .bind(e.device_id.as_str())
                        .bind(&e.hardware)
                        .bind(e.status.as_str())
                        .bind(to_millis(at))
                        .fetch_one(&mut **tx)
                        .await?
                    }
                };
                for tag in &e.tags {
                    sqlx::query(
                        "INSERT INTO device_tags (device_seq, key, value) VALUES ($1, $2, $3) ON CONFLICT (device_seq, key) DO UPDATE SET value = excluded.value",
                    )
                    .bind(seq)
                    .bind(tag.key.as_str())
                    .bind(tag.value.as_str())
                    .execute(&mut **tx)
                    .await?;
                }
                insert_cert(tx, &e.cert).await?;
                insert_audit(tx, &audit).await
            })
        })
        .await?;
        use crate::Store as _;
        self.device(&enrolment.device_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("device {}", enrolment.device_id)))
    }

    async fn certificate(&self, serial: &str) -> Result<Option<CertRecord>> {
        let row = sqlx::query("SELECT * FROM certificates WHERE serial = $1")
            .bind(serial)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(cert_from_row).transpose()
    }

    async fn certificates(&self, device: &DeviceId) -> Result<Vec<CertRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM certificates WHERE device_id = $1 ORDER BY issued_at, serial",
        )
        .bind(device.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(cert_from_row).collect()
    }

    async fn revoked_certificates(&self) -> Result<Vec<CertRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM certificates WHERE revoked_at IS NOT NULL ORDER BY revoked_at, serial",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(cert_from_row).collect()
    }

    async fn renew(
        &self,
        old_serial: &str,
        old_revoked_at: OffsetDateTime,
        new: &CertRecord,
        audit: &AuditEntry,
    ) -> Result<()> {
        let old_serial = old_serial.to_owned();
        let new = new.clone();
        let audit = audit.clone();
        self.write(move |tx| {
            Box::pin(async move {
                let row = sqlx::query("SELECT * FROM certificates WHERE serial = $1")
                    .bind(&old_serial)
                    .fetch_optional(&mut **tx)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("certificate {old_serial}")))?;
                let old = cert_from_row(&row)?;
                if old.device_id != new.device_id
                    || !old.is_live(new.issued_at)
                    || old.revoked_at.is_some()
                {
                    return Err(StoreError::Conflict(format!(
                        "certificate {old_serial} is not a live, unrenewed certificate of device {}",
                        new.device_id
                    )));
                }
                sqlx::query(
                    "UPDATE certificates SET revoked_at = $1, reason = 'superseded' WHERE serial = $2",
                )
                .bind(to_millis(old_revoked_at))
                .bind(&old_serial)
                .execute(&mut **tx)
                .await?;
                insert_cert(tx, &new).await?;
                sqlx::query("DELETE FROM device_rekey WHERE device_id = $1")
                    .bind(new.device_id.as_str())
                    .execute(&mut **tx)
                    .await?;
                insert_audit(tx, &audit).await
            })
        })
        .await
    }

    async fn revoke_device(
        &self,
        device: &DeviceId,
        at: OffsetDateTime,
        reason: &str,
        comment: &str,
        decommission: bool,
        audit: &AuditEntry,
    ) -> Result<Vec<CertRecord>> {
        let device = device.clone();
        let reason = reason.to_owned();
        let comment = comment.to_owned();
        let audit = audit.clone();
        self.write(move |tx| {
            Box::pin(async move {
                let status: Option<String> =
                    sqlx::query_scalar("SELECT status FROM devices WHERE id = $1")
                        .bind(device.as_str())
                        .fetch_optional(&mut **tx)
                        .await?;
                let status =
                    status.ok_or_else(|| StoreError::NotFound(format!("device {device}")))?;
                if status == DeviceStatus::Decommissioned.as_str() {
                    return Err(StoreError::Conflict(format!(
                        "device {device} is decommissioned already"
                    )));
                }
                let rows = sqlx::query(
                    "UPDATE certificates SET revoked_at = $1, reason = $2, comment = $3
                     WHERE device_id = $4 AND (revoked_at IS NULL OR revoked_at > $5)
                     RETURNING *",
                )
                .bind(to_millis(at))
                .bind(&reason)
                .bind(&comment)
                .bind(device.as_str())
                .bind(to_millis(at))
                .fetch_all(&mut **tx)
                .await?;
                let revoked = rows.iter().map(cert_from_row).collect::<Result<Vec<_>>>()?;
                // A device with no live key has nothing left to re-key.
                sqlx::query("DELETE FROM device_rekey WHERE device_id = $1")
                    .bind(device.as_str())
                    .execute(&mut **tx)
                    .await?;
                if decommission {
                    sqlx::query("UPDATE devices SET status = $1 WHERE id = $2")
                        .bind(DeviceStatus::Decommissioned.as_str())
                        .bind(device.as_str())
                        .execute(&mut **tx)
                        .await?;
                }
                insert_audit(tx, &audit).await?;
                Ok(revoked)
            })
        })
        .await
    }

    async fn request_rekey(
        &self,
        target: &RekeyTarget,
        at: OffsetDateTime,
        deadline: Option<OffsetDateTime>,
        audit: &AuditEntry,
    ) -> Result<u64> {
        let target = target.clone();
        let audit = audit.clone();
        self.write(move |tx| {
            Box::pin(async move {
                let mut qb = QueryBuilder::<Postgres>::new(
                    "INSERT INTO device_rekey (device_id, requested_at, deadline) SELECT d.id, ",
                );
                qb.push_bind(to_millis(at));
                qb.push(", ");
                qb.push_bind(deadline.map(to_millis));
                qb.push(" FROM devices d WHERE d.status != 'decommissioned'");
                match &target {
                    RekeyTarget::All => {}
                    RekeyTarget::Query(expr) => {
                        qb.push(" AND ");
                        push_predicate(&mut qb, expr, TagForm::for_query(expr));
                    }
                    RekeyTarget::Devices(ids) => {
                        qb.push(" AND d.id IN (");
                        let mut list = qb.separated(", ");
                        for id in ids {
                            list.push_bind(id.as_str().to_owned());
                        }
                        if ids.is_empty() {
                            list.push("NULL");
                        }
                        qb.push(")");
                    }
                }
                qb.push(
                    " ON CONFLICT (device_id) DO UPDATE SET requested_at = excluded.requested_at, \
                     deadline = excluded.deadline",
                );
                let done = qb.build().execute(&mut **tx).await?;
                insert_audit(tx, &audit).await?;
                Ok(done.rows_affected())
            })
        })
        .await
    }

    async fn rekey_requested(&self, device: &DeviceId) -> Result<Option<RekeyRequest>> {
        let row: Option<(i64, Option<i64>)> =
            sqlx::query_as("SELECT requested_at, deadline FROM device_rekey WHERE device_id = $1")
                .bind(device.as_str())
                .fetch_optional(&self.pool)
                .await?;
        row.map(|(requested_at, deadline)| {
            Ok(RekeyRequest {
                requested_at: from_millis(requested_at)?,
                deadline: deadline.map(from_millis).transpose()?,
            })
        })
        .transpose()
    }

    async fn overdue_rekeys(&self, now: OffsetDateTime, limit: u32) -> Result<Vec<DeviceId>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT device_id FROM device_rekey WHERE deadline IS NOT NULL AND deadline <= $1 \
             ORDER BY deadline, device_id LIMIT $2",
        )
        .bind(to_millis(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        ids.iter()
            .map(|id| {
                DeviceId::parse(id).map_err(|e| {
                    StoreError::Corrupt(format!("device id {id:?} in device_rekey: {e}"))
                })
            })
            .collect()
    }
}
