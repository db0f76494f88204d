//! `GET /api/v1/devices/{id}/telemetry`: what a device reported about its
//! operating conditions and errors (security reports are in the event log,
//! `GET /api/v1/events?device=…`).

use axum::extract::State;
use fleetward_wire::ErrorBody;
use fleetward_wire::device::{DeviceErrorEntry, DeviceTelemetry, TelemetryEntry};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::api::devices::parse_device_id;
use crate::auth::{Auth, perm};
use crate::error::{ApiError, Json, Path, Query};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TelemetryParams {
    /// Newest entries of each kind to return (1–1000, default 100).
    pub limit: Option<u32>,
}

/// A device's newest telemetry and errors, newest first.
#[utoipa::path(get, path = "/api/v1/devices/{id}/telemetry", tag = "devices",
    params(("id" = String, Path, description = "Device id"), TelemetryParams),
    responses((status = 200, body = DeviceTelemetry), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn device_telemetry(
    State(state): State<AppState>,
    _auth: Auth<perm::FleetRead>,
    Path(id): Path<String>,
    Query(params): Query<TelemetryParams>,
) -> Result<Json<DeviceTelemetry>, ApiError> {
    let id = parse_device_id(&id)?;
    let limit = params.limit.unwrap_or(100);
    if !(1..=fleetward_store::MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            format!("limit must be between 1 and {}", fleetward_store::MAX_PAGE),
        ));
    }
    if state.store.device(&id).await?.is_none() {
        return Err(ApiError::not_found(format!("device {id} not found")));
    }
    let telemetry = state
        .store
        .device_telemetry(&id, limit)
        .await?
        .into_iter()
        .map(|row| {
            Ok(TelemetryEntry {
                server_time: row.server_time,
                device_time: row.device_time,
                conditions: serde_json::from_str(&row.conditions).map_err(|e| {
                    tracing::error!(error = %e, "stored telemetry does not parse");
                    ApiError::internal()
                })?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let errors = state
        .store
        .device_errors(&id, limit)
        .await?
        .into_iter()
        .map(|row| DeviceErrorEntry {
            server_time: row.server_time,
            device_time: row.device_time,
            context: row.context,
            message: row.message,
        })
        .collect();
    Ok(Json(DeviceTelemetry {
        device_id: id.to_string(),
        telemetry,
        errors,
    }))
}
