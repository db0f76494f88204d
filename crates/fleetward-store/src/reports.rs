//! Storage of what devices report: operating conditions and errors, with
//! the security events a batch carries appended to the event log in the
//! same transaction (a batch is stored whole or not at all, so an agent
//! that retries after a lost answer never half-duplicates a batch).
//!
//! A separate supertrait of [`crate::Store`] so the device-report half can
//! be read and merged on its own.

use async_trait::async_trait;
use fleetward_core::DeviceId;
use fleetward_events::Event;
use time::OffsetDateTime;

use crate::Result;

/// Rows kept per device and table; older ones are pruned on insert.
pub const MAX_REPORT_ROWS_PER_DEVICE: u32 = 1000;

/// One telemetry report.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryRecord {
    pub server_time: OffsetDateTime,
    pub device_time: OffsetDateTime,
    /// The conditions as JSON text (the store does not interpret them).
    pub conditions: String,
}

/// One error a device reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceErrorRecord {
    pub server_time: OffsetDateTime,
    pub device_time: OffsetDateTime,
    pub context: String,
    pub message: String,
}

/// One accepted batch, split by destination.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceReports {
    pub telemetry: Vec<TelemetryRecord>,
    pub errors: Vec<DeviceErrorRecord>,
    /// Appended to the security-event log in order.
    pub events: Vec<Event>,
}

#[async_trait]
pub trait ReportStore: Send + Sync {
    /// Stores a batch for `device` in one transaction and marks the device
    /// seen at `at`. An unknown device is `NotFound`; an event failing its
    /// bounds is `Invalid`; either way nothing is stored.
    async fn insert_device_reports(
        &self,
        device: &DeviceId,
        at: OffsetDateTime,
        reports: &DeviceReports,
    ) -> Result<()>;
    /// The newest telemetry of `device`, newest first.
    async fn device_telemetry(&self, device: &DeviceId, limit: u32)
    -> Result<Vec<TelemetryRecord>>;
    /// The newest errors of `device`, newest first.
    async fn device_errors(&self, device: &DeviceId, limit: u32) -> Result<Vec<DeviceErrorRecord>>;
}
