//! `POST /device/v1/reports`: telemetry, errors and security events that
//! an agent buffered (possibly while offline) and now sends, oldest first.
//!
//! Everything in a batch is checked before anything is stored: a batch
//! with one bad item is refused whole (413 for too many items, 422 for a
//! bad field), so the agent's buffer and the server never disagree about
//! which items were taken. Device text is hostile until checked: bounded
//! lengths, no control characters (they would forge lines in syslog
//! exports and terminals).

use axum::extract::State;
use axum::http::StatusCode;
use fleetward_events::{Event, EventKind};
use fleetward_store::{DeviceErrorRecord, DeviceReports, TelemetryRecord};
use fleetward_wire::ErrorBody;
use fleetward_wire::device::{
    DeviceReport, DeviceReportBatch, DeviceSecurityKind, MAX_REPORT_TEXT, MAX_REPORTS_PER_BATCH,
    ReportsAck,
};
use time::OffsetDateTime;

use super::DeviceIdentity;
use crate::AppState;
use crate::error::{ApiError, Json};

/// The security-event kind a device's security report becomes.
pub fn event_kind(kind: DeviceSecurityKind) -> EventKind {
    match kind {
        DeviceSecurityKind::VerificationFailed => EventKind::VerificationFailed,
        DeviceSecurityKind::RollbackAttempt => EventKind::RollbackAttempt,
        DeviceSecurityKind::UnexpectedReboot => EventKind::UnexpectedReboot,
    }
}

/// A free-text field a device sent: bounded, no control characters.
pub fn check_text(field: &'static str, text: &str) -> Result<(), ApiError> {
    if text.len() > MAX_REPORT_TEXT {
        return Err(ApiError::unprocessable(
            "invalid_field",
            format!("{field} is longer than {MAX_REPORT_TEXT} bytes"),
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(ApiError::unprocessable(
            "invalid_field",
            format!("{field} contains a control character"),
        ));
    }
    Ok(())
}

fn check_number(
    field: &'static str,
    value: Option<f64>,
    range: (f64, f64),
) -> Result<(), ApiError> {
    match value {
        Some(v) if !v.is_finite() || v < range.0 || v > range.1 => Err(ApiError::unprocessable(
            "invalid_field",
            format!("{field} must be between {} and {}", range.0, range.1),
        )),
        _ => Ok(()),
    }
}

fn millis(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

/// Splits a checked batch into what the store keeps.
pub fn to_records(
    batch: &DeviceReportBatch,
    caller: &DeviceIdentity,
    now: OffsetDateTime,
) -> Result<DeviceReports, ApiError> {
    if batch.reports.len() > MAX_REPORTS_PER_BATCH {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_reports",
            format!("at most {MAX_REPORTS_PER_BATCH} reports per batch"),
        ));
    }
    let mut records = DeviceReports::default();
    for report in &batch.reports {
        match report {
            DeviceReport::Telemetry {
                device_time,
                conditions,
            } => {
                check_text("agent_version", &conditions.agent_version)?;
                if let Some(version) = &conditions.running_version {
                    check_text("running_version", version)?;
                }
                check_number("cpu_percent", conditions.cpu_percent, (0.0, 100.0))?;
                check_number(
                    "temperature_celsius",
                    conditions.temperature_celsius,
                    (-273.15, 1000.0),
                )?;
                let conditions =
                    serde_json::to_string(conditions).map_err(|_| ApiError::internal())?;
                records.telemetry.push(TelemetryRecord {
                    server_time: now,
                    device_time: *device_time,
                    conditions,
                });
            }
            DeviceReport::Error {
                device_time,
                context,
                message,
            } => {
                check_text("context", context)?;
                check_text("message", message)?;
                records.errors.push(DeviceErrorRecord {
                    server_time: now,
                    device_time: *device_time,
                    context: context.clone(),
                    message: message.clone(),
                });
                records.events.push(device_event(
                    EventKind::DeviceError,
                    caller,
                    now,
                    *device_time,
                    format!("{context}: {message}"),
                ));
            }
            DeviceReport::Security {
                device_time,
                kind,
                message,
            } => {
                check_text("message", message)?;
                records.events.push(device_event(
                    event_kind(*kind),
                    caller,
                    now,
                    *device_time,
                    message.clone(),
                ));
            }
        }
    }
    Ok(records)
}

fn device_event(
    kind: EventKind,
    caller: &DeviceIdentity,
    now: OffsetDateTime,
    device_time: OffsetDateTime,
    mut message: String,
) -> Event {
    // `context: message` may exceed the event bound by the separator.
    while message.len() > Event::MAX_MESSAGE {
        message.pop();
    }
    Event {
        kind,
        severity: kind.default_severity(),
        device: Some(caller.device_id.clone()),
        source: Some(caller.peer.ip().to_string()),
        server_time_ms: millis(now),
        device_time_ms: Some(millis(device_time)),
        message,
        detail: serde_json::json!({ "reported_by": "device", "serial": caller.serial().to_hex() })
            .to_string(),
    }
}

/// Runs the report-fed detection rules over a checked batch: caps the
/// device-reported events at the per-device rate, and adds findings about
/// telemetry outliers and the running version to the events stored with it.
async fn judge(
    state: &AppState,
    caller: &DeviceIdentity,
    batch: &DeviceReportBatch,
    records: &mut DeviceReports,
    now: OffsetDateTime,
) -> Result<(), ApiError> {
    let monitor = &state.monitor;
    let policy = monitor.policy();
    let device = &caller.device_id;
    let (admitted, notice) = monitor.watch.admit_events(
        device,
        records.events.len(),
        now,
        policy.device_events_per_minute,
    );
    records.events.truncate(admitted);
    records.events.extend(notice);
    let mut running = None;
    for report in &batch.reports {
        if let DeviceReport::Telemetry { conditions, .. } = report {
            let found = monitor.watch.telemetry(device, conditions, now, policy);
            records.events.extend(found);
            if let Some(version) = &conditions.running_version {
                running = Some(version.as_str());
            }
        }
    }
    if let Some(reported) = running
        && let Some(registered) = state.store.device(device).await?
        && registered.version.as_deref() != Some(reported)
    {
        let released: std::collections::BTreeSet<String> = state
            .store
            .list_releases()
            .await?
            .into_iter()
            .filter(|r| {
                r.hardware == registered.hardware && r.state != fleetward_core::ReleaseState::Draft
            })
            .map(|r| r.version)
            .collect();
        records.events.extend(monitor.watch.version(
            device,
            reported,
            registered.version.as_deref(),
            &released,
            now,
        ));
    }
    for event in &mut records.events {
        if event.device.as_ref() == Some(device) && event.source.is_none() {
            event.source = Some(caller.peer.ip().to_string());
        }
    }
    Ok(())
}

/// Stores a batch of buffered reports, all or nothing.
#[utoipa::path(post, path = "/device/v1/reports", tag = "reports",
    security(("device_certificate" = [])),
    request_body = DeviceReportBatch,
    responses((status = 200, body = ReportsAck), (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn post_reports(
    State(state): State<AppState>,
    caller: DeviceIdentity,
    Json(batch): Json<DeviceReportBatch>,
) -> Result<Json<ReportsAck>, ApiError> {
    let now = state.now();
    let mut records = to_records(&batch, &caller, now)?;
    judge(&state, &caller, &batch, &mut records, now).await?;
    state
        .store
        .insert_device_reports(&caller.device_id, now, &records)
        .await?;
    Ok(Json(ReportsAck {
        accepted: u32::try_from(batch.reports.len()).unwrap_or(u32::MAX),
    }))
}
