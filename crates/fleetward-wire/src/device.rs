//! What a device tells the server, on the mutual-TLS device listener.
//!
//! Two channels, because they have different owners and guarantees:
//!
//! - `POST /device/v1/executions/{execution_id}`: one [`ExecutionReport`],
//!   a step of one update. The server applies it to the execution state
//!   machine (`fleetward-rollout`), refusing steps no real update makes.
//!   The execution id comes from the `custom` field of the director's
//!   per-device targets metadata, so a device can only report on updates
//!   it was actually offered.
//! - `POST /device/v1/reports`: a [`DeviceReportBatch`] of telemetry,
//!   errors and security events, which an agent buffers on disk while
//!   offline and sends in order when it is back.
//!
//! Device clocks are not trusted: `device_time` is recorded beside the
//! server's time, never instead of it.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

/// Most items one `POST /device/v1/reports` may carry; more is `413`.
pub const MAX_REPORTS_PER_BATCH: usize = 256;
/// Longest free-text field (reason, message, context) in bytes.
pub const MAX_REPORT_TEXT: usize = 1024;

/// `POST /device/v1/executions/{execution_id}`: a step of one update.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExecutionReport {
    pub step: ExecutionStep,
    /// For `failed`: which part failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureKind>,
    /// For `failed` and `rolled-back`: why, for people (≤ 1024 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For `succeeded`: the version the device runs after the reboot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_version: Option<String>,
    /// For `succeeded`: whether the configured health check passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_passed: Option<bool>,
    /// The device's own clock when the step happened (informational).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub device_time: Option<OffsetDateTime>,
}

/// The steps a device reports; `queued` and `offered` are the server's.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ExecutionStep {
    Downloading,
    Downloaded,
    Installing,
    Rebooting,
    Verifying,
    Succeeded,
    Failed,
    RolledBack,
}

/// Which part of an update failed.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    Download,
    Verification,
    Install,
    HealthCheck,
    Other,
}

/// The server's answer to an execution report.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ExecutionAck {
    pub execution_id: String,
    /// The execution's state after the report (e.g. `installing`).
    pub state: String,
    /// `false` when the rollout was paused or aborted meanwhile: the device
    /// should stop before installing (it may finish a reboot it started).
    pub proceed: bool,
}

/// `POST /device/v1/reports`: buffered reports, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeviceReportBatch {
    pub reports: Vec<DeviceReport>,
}

/// One buffered report.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum DeviceReport {
    /// Operating conditions; absent sensors are left out, not zero.
    Telemetry {
        #[serde(with = "time::serde::rfc3339")]
        #[schema(value_type = String, format = DateTime)]
        device_time: OffsetDateTime,
        #[serde(flatten)]
        conditions: Conditions,
    },
    /// Something went wrong on the device that is not a security event.
    Error {
        #[serde(with = "time::serde::rfc3339")]
        #[schema(value_type = String, format = DateTime)]
        device_time: OffsetDateTime,
        /// Where (e.g. `download`, `install`, `poll`).
        context: String,
        message: String,
    },
    /// A security event seen on the device.
    Security {
        #[serde(with = "time::serde::rfc3339")]
        #[schema(value_type = String, format = DateTime)]
        device_time: OffsetDateTime,
        kind: DeviceSecurityKind,
        message: String,
    },
}

/// Operating conditions of a device at one moment.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    pub agent_version: String,
    /// The software version the device runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_secs: Option<u64>,
    /// Load as a share of all cores over the last interval, 0–100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_used_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_total_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_used_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_total_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature_celsius: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_rx_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_tx_bytes: Option<u64>,
}

/// Security events a device can report; each maps to one event kind of
/// the security-event log.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceSecurityKind {
    /// Metadata or an image failed verification (hash, length, signature,
    /// threshold, expiry, snapshot consistency).
    VerificationFailed,
    /// Older metadata or an older image than the device had was offered.
    RollbackAttempt,
    /// The device rebooted outside an update.
    UnexpectedReboot,
}

/// The server's answer to a report batch.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ReportsAck {
    /// How many reports were stored; the agent drops that many from the
    /// front of its buffer.
    pub accepted: u32,
}

/// Largest `POST /device/v1/reports` body in bytes (the device listener's
/// body limit); more is `413`. Agents size their batches below it.
pub const MAX_REPORTS_BODY: usize = 64 * 1024;

/// `GET /device/v1/director/key`: the director's online public key (a TUF
/// key object), which an agent pins right after enrolment. It travels over
/// a connection whose server certificate chains to the fleet CA the agent
/// was provisioned with, so nobody without that CA can substitute it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct DirectorKey {
    pub keyid: String,
    /// `{"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": hex}}`.
    #[schema(value_type = Object)]
    pub public_key: serde_json::Value,
}

/// `GET /api/v1/devices/{id}/telemetry`: what a device reported, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct DeviceTelemetry {
    pub device_id: String,
    pub telemetry: Vec<TelemetryEntry>,
    pub errors: Vec<DeviceErrorEntry>,
}

/// One telemetry report as stored.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct TelemetryEntry {
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub server_time: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub device_time: OffsetDateTime,
    pub conditions: Conditions,
}

/// One reported error as stored.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct DeviceErrorEntry {
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub server_time: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub device_time: OffsetDateTime,
    pub context: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_have_a_stable_shape() {
        let batch: DeviceReportBatch = serde_json::from_value(serde_json::json!({
            "reports": [
                {"type": "telemetry", "device_time": "2026-11-25T10:00:00Z",
                 "agent_version": "0.1.0", "uptime_secs": 5, "cpu_percent": 12.5},
                {"type": "security", "device_time": "2026-11-25T10:00:01Z",
                 "kind": "rollback-attempt", "message": "targets v3 < v4"},
                {"type": "error", "device_time": "2026-11-25T10:00:02Z",
                 "context": "download", "message": "connection reset"}
            ]
        }))
        .unwrap();
        assert_eq!(batch.reports.len(), 3);
        let round = serde_json::to_value(&batch).unwrap();
        assert_eq!(round["reports"][0]["cpu_percent"], 12.5);
        assert_eq!(round["reports"][1]["kind"], "rollback-attempt");
    }

    #[test]
    fn unknown_fields_and_steps_are_refused() {
        for bad in [
            serde_json::json!({"step": "succeeded", "extra": 1}),
            serde_json::json!({"step": "queued"}),
            serde_json::json!({"step": "done"}),
        ] {
            assert!(
                serde_json::from_value::<ExecutionReport>(bad.clone()).is_err(),
                "{bad}"
            );
        }
        let bad_batch = serde_json::json!({"reports": [
            {"type": "telemetry", "device_time": "2026-11-25T10:00:00Z",
             "agent_version": "0.1.0", "cpu": 1}
        ]});
        assert!(serde_json::from_value::<DeviceReportBatch>(bad_batch).is_err());
    }
}
