//! SQLite adapter of [`ReportStore`].

use async_trait::async_trait;
use fleetward_core::DeviceId;
use sqlx::Row;
use time::OffsetDateTime;

use super::{SqliteStore, events::append_in, from_millis, to_millis};
use crate::reports::{
    DeviceErrorRecord, DeviceReports, MAX_REPORT_ROWS_PER_DEVICE, ReportStore, TelemetryRecord,
};
use crate::{Result, StoreError};

#[async_trait]
impl ReportStore for SqliteStore {
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
                    "UPDATE devices SET first_seen = COALESCE(first_seen, ?1), \
                     last_seen = MAX(COALESCE(last_seen, ?1), ?1) WHERE id = ?2",
                )
                .bind(to_millis(at))
                .bind(&device)
                .execute(&mut **tx)
                .await?;
                if seen.rows_affected() == 0 {
                    return Err(StoreError::NotFound(format!("device {device}")));
                }
                for row in &reports.telemetry {
                    sqlx::query(
                        "INSERT INTO device_telemetry (device, server_time, device_time, conditions) \
                         VALUES (?, ?, ?, ?)",
                    )
                    .bind(&device)
                    .bind(to_millis(row.server_time))
                    .bind(to_millis(row.device_time))
                    .bind(&row.conditions)
                    .execute(&mut **tx)
                    .await?;
                }
                for row in &reports.errors {
                    sqlx::query(
                        "INSERT INTO device_errors (device, server_time, device_time, context, message) \
                         VALUES (?, ?, ?, ?, ?)",
                    )
                    .bind(&device)
                    .bind(to_millis(row.server_time))
                    .bind(to_millis(row.device_time))
                    .bind(&row.context)
                    .bind(&row.message)
                    .execute(&mut **tx)
                    .await?;
                }
                if !reports.events.is_empty() {
                    append_in(tx, &reports.events).await?;
                }
                for table in ["device_telemetry", "device_errors"] {
                    if (table == "device_telemetry" && reports.telemetry.is_empty())
                        || (table == "device_errors" && reports.errors.is_empty())
                    {
                        continue;
                    }
                    sqlx::query(&format!(
                        "DELETE FROM {table} WHERE device = ?1 AND id <= \
                         (SELECT id FROM {table} WHERE device = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)"
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
             WHERE device = ? ORDER BY id DESC LIMIT ?",
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
             WHERE device = ? ORDER BY id DESC LIMIT ?",
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
