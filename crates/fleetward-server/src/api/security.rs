//! Responding to a suspicious device: quarantine it, and read its security
//! timeline (what it reported, what rules found, what was done to it).

use axum::extract::State;
use fleetward_core::DeviceId;
use fleetward_events::{EventKind, Severity};
use fleetward_store::{EventFilter, MAX_PAGE};
use fleetward_wire::ErrorBody;
use fleetward_wire::events::EventPage;
use fleetward_wire::identity::QuarantineDevice;
use fleetward_wire::operator::Device;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::auth::{Auth, perm};
use crate::error::{ApiError, Json, Path, Query};
use crate::monitor::{QuarantineRequest, quarantine};

const MAX_REASON: usize = 512;

/// The operator's reason for a quarantine, trimmed, or why it is refused.
pub(crate) fn quarantine_reason(raw: &str) -> Result<&str, ApiError> {
    let reason = raw.trim();
    if reason.is_empty() || reason.len() > MAX_REASON || reason.chars().any(char::is_control) {
        return Err(ApiError::unprocessable(
            "invalid_reason",
            format!("a reason is 1 to {MAX_REASON} printable characters"),
        ));
    }
    Ok(reason)
}

fn device_id(raw: &str) -> Result<DeviceId, ApiError> {
    DeviceId::parse(raw).map_err(|e| ApiError::bad_request("invalid_device_id", e.to_string()))
}

/// Quarantines a device: no rollout reaches it until an operator sets it
/// `active` again (`PATCH /api/v1/devices/{id}`); optionally its
/// certificates are revoked at once. Logged as `device.quarantined`.
#[utoipa::path(post, path = "/api/v1/devices/{id}/quarantine", tag = "security", request_body = QuarantineDevice,
    params(("id" = String, Path, description = "Device id")),
    responses((status = 200, body = Device), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn quarantine_device(
    State(state): State<AppState>,
    Auth(caller, _): Auth<perm::FleetWrite>,
    Path(id): Path<String>,
    Json(request): Json<QuarantineDevice>,
) -> Result<Json<Device>, ApiError> {
    let id = device_id(&id)?;
    let reason = quarantine_reason(&request.reason)?;
    let device = quarantine(
        &*state.store,
        &state.identity,
        &QuarantineRequest {
            device: &id,
            reason,
            certificate: request.certificate,
            actor: format!("token:{} ({})", caller.token_id, caller.name),
            source: caller.source.clone(),
            at: state.now(),
        },
    )
    .await?;
    Ok(Json(super::devices::to_wire(device)))
}

#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TimelineParams {
    /// The lowest severity to return.
    pub min_severity: Option<String>,
    /// Entries with `seq` greater than this.
    pub after: Option<u64>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<u32>,
}

/// A device's security timeline, oldest first: enrolment and certificates,
/// refusals, what it reported, what rules found, quarantine. Operator
/// actions in general stay in the audit log (auditor role).
#[utoipa::path(get, path = "/api/v1/devices/{id}/timeline", tag = "security", params(("id" = String, Path, description = "Device id"), TimelineParams),
    responses((status = 200, body = EventPage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn device_timeline(
    State(state): State<AppState>,
    _auth: Auth<perm::FleetRead>,
    Path(id): Path<String>,
    Query(params): Query<TimelineParams>,
) -> Result<Json<EventPage>, ApiError> {
    let id = device_id(&id)?;
    let limit = params.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    let min_severity = params
        .min_severity
        .as_deref()
        .map(|s| {
            Severity::parse(s).ok_or_else(|| {
                ApiError::bad_request("invalid_parameter", format!("unknown severity {s:?}"))
            })
        })
        .transpose()?;
    if state.store.device(&id).await?.is_none() {
        return Err(ApiError::not_found(format!("device {id} not found")));
    }
    let filter = EventFilter {
        kinds: EventKind::ALL
            .iter()
            .copied()
            .filter(|k| *k != EventKind::OperatorAction)
            .collect(),
        min_severity,
        device: Some(id),
        since_ms: None,
        until_ms: None,
    };
    let entries = state
        .store
        .list_events(&filter, params.after, limit)
        .await?;
    Ok(Json(super::events::page(&entries, limit)))
}
