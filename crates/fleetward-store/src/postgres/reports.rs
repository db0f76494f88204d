//! [`ReportStore`] for PostgreSQL.
//!
//! A batch runs inside [`PostgresStore::write`]: its security events extend
//! the hash chain, so it holds the chain-head lock like every other append,
//! and two replicas storing batches of one device prune in turn, never
//! against each other's half-written rows.

use async_trait::async_trait;
use fleetward_core::DeviceId;
use sqlx::Row;
use time::OffsetDateTime;

use super::{PostgresStore, events::append_in};
use crate::reports::{
    DeviceErrorRecord, DeviceReports, MAX_REPORT_ROWS_PER_DEVICE, ReportStore, TelemetryRecord,
};
use crate::sqlite::{from_millis, to_millis};
use crate::{Result, StoreError};

#[async_trait]
impl ReportStore for PostgresStore {
    async fn insert_device_reports(
        &self,
        device: &DeviceId,
        at: OffsetDateTime,
        reports: &DeviceReports,
    ) -> Result<()> {
        let device = device.as_str().to_owned();
        let reports = reports.clone();
        self.write(move |tx| {
            Box::pin(async move {
                let seen = sqlx::query(
                    "UPDATE devices SET first_seen = COALESCE(first_seen, $1), \
                     last_seen = GREATEST(COALESCE(last_seen, $1), $1) WHERE id = $2",
                )
                .bind(to_millis(at))
                .bind(&device)
                .execute(&mut **tx)
                .await?;
                if seen.rows_affected() == 0 {
                    return Err(StoreError::NotFound(format!("device {device}")));
                }
                if !reports.telemetry.is_empty() {
                    let server: Vec<i64> =
                        reports.telemetry.iter().map(|r| to_millis(r.server_time)).collect();
                    let reported: Vec<i64> =
                        reports.telemetry.iter().map(|r| to_millis(r.device_time)).collect();
                    let conditions: Vec<&str> =
                        reports.telemetry.iter().map(|r| r.conditions.as_str()).collect();
                    // WITH ORDINALITY … ORDER BY: ids follow the batch's order,
                    // as one insert per row gives them on SQLite.
                    sqlx::query(
                        "INSERT INTO device_telemetry (device, server_time, device_time, conditions) \
                         SELECT $1, s, d, c FROM UNNEST($2::bigint[], $3::bigint[], $4::text[]) \
                         WITH ORDINALITY AS n (s, d, c, o) ORDER BY o",
                    )
                    .bind(&device)
                    .bind(&server)
                    .bind(&reported)
                    .bind(&conditions)
                    .execute(&mut **tx)
                    .await?;
                }
                if !reports.errors.is_empty() {
                    let server: Vec<i64> =
                        reports.errors.iter().map(|r| to_millis(r.server_time)).collect();
                    let reported: Vec<i64> =
                        reports.errors.iter().map(|r| to_millis(r.device_time)).collect();
                    let contexts: Vec<&str> =
                        reports.errors.iter().map(|r| r.context.as_str()).collect();
                    let messages: Vec<&str> =
                        reports.errors.iter().map(|r| r.message.as_str()).collect();
                    sqlx::query(
                        "INSERT INTO device_errors (device, server_time, device_time, context, message) \
                         SELECT $1, s, d, c, m FROM UNNEST($2::bigint[], $3::bigint[], $4::text[], $5::text[]) \
                         WITH ORDINALITY AS n (s, d, c, m, o) ORDER BY o",
                    )
                    .bind(&device)
                    .bind(&server)
                    .bind(&reported)
                    .bind(&contexts)
                    .bind(&messages)
                    .execute(&mut **tx)
                    .await?;
                }
                if !reports.events.is_empty() {
                    append_in(tx, &reports.events).await?;
                }
                for (table, inserted) in [
                    ("device_telemetry", !reports.telemetry.is_empty()),
                    ("device_errors", !reports.errors.is_empty()),
                ] {
                    if !inserted {
                        continue;
                    }
                    sqlx::query(&format!(
                        "DELETE FROM {table} WHERE device = $1 AND id <= \
                         (SELECT id FROM {table} WHERE device = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)"
                    ))
                    .bind(&device)
                    .bind(i64::from(MAX_REPORT_ROWS_PER_DEVICE))
                    .execute(&mut **tx)
                    .await?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn device_telemetry(
        &self,
        device: &DeviceId,
        limit: u32,
    ) -> Result<Vec<TelemetryRecord>> {
        let rows = sqlx::query(
            "SELECT server_time, device_time, conditions FROM device_telemetry \
             WHERE device = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(device.as_str())
        .bind(i64::from(limit.min(crate::MAX_PAGE)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(TelemetryRecord {
                    server_time: from_millis(row.try_get("server_time")?)?,
                    device_time: from_millis(row.try_get("device_time")?)?,
                    conditions: row.try_get("conditions")?,
                })
            })
            .collect()
    }

    async fn device_errors(&self, device: &DeviceId, limit: u32) -> Result<Vec<DeviceErrorRecord>> {
        let rows = sqlx::query(
            "SELECT server_time, device_time, context, message FROM device_errors \
             WHERE device = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(device.as_str())
        .bind(i64::from(limit.min(crate::MAX_PAGE)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DeviceErrorRecord {
                    server_time: from_millis(row.try_get("server_time")?)?,
                    device_time: from_millis(row.try_get("device_time")?)?,
                    context: row.try_get("context")?,
                    message: row.try_get("message")?,
                })
            })
            .collect()
    }
}
