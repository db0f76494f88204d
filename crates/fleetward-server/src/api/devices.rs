//! The device registry as operators see it.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fleetward_core::query::{self, Expr};
use fleetward_core::{DeviceId, DeviceStatus, Tag, TagKey};
use fleetward_store::{DeviceChange, MAX_BATCH, MAX_PAGE, NewDevice};
use fleetward_wire::ErrorBody;
use fleetward_wire::operator::{
    Device, DeviceCount, DeviceCountParams, DeviceListParams, DevicePage, RegisterDevice,
    RegisterDevices, Registered, UpdateDevice,
};

use crate::AppState;
use crate::auth::{Auth, perm};
use crate::error::{ApiError, Json, Path, Query};

const DEFAULT_PAGE: u32 = 100;
const MAX_HARDWARE_LEN: usize = 64;
const MAX_VERSION_LEN: usize = 64;

pub fn to_wire(device: fleetward_store::Device) -> Device {
    Device {
        id: device.id.to_string(),
        hardware: device.hardware,
        version: device.version,
        status: device.status,
        tags: device
            .tags
            .into_iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.as_str().to_owned()))
            .collect(),
        created_at: device.created_at,
        first_seen: device.first_seen,
        last_seen: device.last_seen,
    }
}

pub fn parse_device_id(raw: &str) -> Result<DeviceId, ApiError> {
    DeviceId::parse(raw).map_err(|e| ApiError::unprocessable("invalid_device_id", e.to_string()))
}

pub fn parse_query(raw: Option<&str>) -> Result<Option<Expr>, ApiError> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => query::parse(text)
            .map(Some)
            .map_err(|e| ApiError::bad_request("invalid_query", format!("invalid query: {e}"))),
    }
}

fn parse_tags(tags: &BTreeMap<String, String>) -> Result<Vec<Tag>, ApiError> {
    tags.iter()
        .map(|(key, value)| {
            Tag::new(key, value).map_err(|e| ApiError::unprocessable("invalid_tag", e.to_string()))
        })
        .collect()
}

/// Hardware types name board revisions; they end up in metadata and URLs.
pub(crate) fn validate_hardware(hardware: &str) -> Result<(), ApiError> {
    let ok = !hardware.is_empty()
        && hardware.len() <= MAX_HARDWARE_LEN
        && hardware
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::unprocessable(
            "invalid_hardware",
            format!("hardware is 1 to {MAX_HARDWARE_LEN} characters of A-Z a-z 0-9 . _ - +"),
        ))
    }
}

fn validate_version(version: &str) -> Result<(), ApiError> {
    let ok = !version.is_empty()
        && version.len() <= MAX_VERSION_LEN
        && version
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\'' | '<' | '>' | '\\'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::unprocessable(
            "invalid_version",
            format!(
                "a version is 1 to {MAX_VERSION_LEN} printable ASCII characters without quotes or brackets"
            ),
        ))
    }
}

fn validate_registration(request: &RegisterDevice) -> Result<NewDevice, ApiError> {
    let id = parse_device_id(&request.id)?;
    validate_hardware(&request.hardware)?;
    if let Some(version) = &request.version {
        validate_version(version)?;
    }
    let status = request.status.unwrap_or(DeviceStatus::Pending);
    if !matches!(status, DeviceStatus::Pending | DeviceStatus::Active) {
        return Err(ApiError::unprocessable(
            "invalid_status",
            "a new device is `pending` or `active`",
        ));
    }
    Ok(NewDevice {
        id,
        hardware: request.hardware.clone(),
        version: request.version.clone(),
        status,
        tags: parse_tags(&request.tags)?,
    })
}

/// Pre-registers one device.
#[utoipa::path(post, path = "/api/v1/devices", tag = "devices", request_body = RegisterDevice,
    responses((status = 201, body = Device), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn register_device(
    State(state): State<AppState>,
    Auth(caller, _): Auth<perm::FleetWrite>,
    Json(request): Json<RegisterDevice>,
) -> Result<(StatusCode, Json<Device>), ApiError> {
    let device = validate_registration(&request)?;
    let now = state.now();
    let audit = caller.audit(
        now,
        "device.register",
        &format!("device:{}", device.id),
        serde_json::json!({ "hardware": device.hardware, "status": device.status }),
    );
    state
        .store
        .register_devices(std::slice::from_ref(&device), now, &audit)
        .await?;
    let stored = state
        .store
        .device(&device.id)
        .await?
        .ok_or_else(ApiError::internal)?;
    Ok((StatusCode::CREATED, Json(to_wire(stored))))
}

/// Registers up to 10,000 devices in one transaction: all of them or none.
#[utoipa::path(post, path = "/api/v1/devices/batch", tag = "devices", request_body = RegisterDevices,
    responses((status = 201, body = Registered), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn register_devices(
    State(state): State<AppState>,
    Auth(caller, _): Auth<perm::FleetWrite>,
    Json(request): Json<RegisterDevices>,
) -> Result<(StatusCode, Json<Registered>), ApiError> {
    if request.devices.is_empty() || request.devices.len() > MAX_BATCH {
        return Err(ApiError::unprocessable(
            "invalid_batch",
            format!(
                "a batch holds 1 to {MAX_BATCH} devices, not {}",
                request.devices.len()
            ),
        ));
    }
    let devices = request
        .devices
        .iter()
        .enumerate()
        .map(|(index, device)| {
            validate_registration(device).map_err(|mut e| {
                e.message = format!("devices[{index}]: {}", e.message);
                e
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let now = state.now();
    let audit = caller.audit(
        now,
        "device.register_batch",
        &format!("devices:{}", devices.len()),
        serde_json::json!({
            "count": devices.len(),
            "first": devices.first().map(|d| d.id.to_string()),
            "last": devices.last().map(|d| d.id.to_string()),
        }),
    );
    state.store.register_devices(&devices, now, &audit).await?;
    let registered = u64::try_from(devices.len()).unwrap_or(u64::MAX);
    Ok((StatusCode::CREATED, Json(Registered { registered })))
}

/// Lists devices in id order, optionally filtered by a target query.
#[utoipa::path(get, path = "/api/v1/devices", tag = "devices", params(DeviceListParams),
    responses((status = 200, body = DevicePage), (status = 400, body = ErrorBody)))]
pub async fn list_devices(
    State(state): State<AppState>,
    _auth: Auth<perm::FleetRead>,
    Query(params): Query<DeviceListParams>,
) -> Result<Json<DevicePage>, ApiError> {
    let query = parse_query(params.query.as_deref())?;
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    let after = params.cursor.as_deref().map(decode_cursor).transpose()?;
    let devices = state
        .store
        .list_devices(query.as_ref(), after.as_ref(), limit)
        .await?;
    let full_page = devices.len() == usize::try_from(limit).unwrap_or(usize::MAX);
    let next_cursor = devices
        .last()
        .filter(|_| full_page)
        .map(|d| encode_cursor(&d.id));
    Ok(Json(DevicePage {
        items: devices.into_iter().map(to_wire).collect(),
        next_cursor,
    }))
}

/// Counts the devices a target query selects.
#[utoipa::path(get, path = "/api/v1/devices/count", tag = "devices", params(DeviceCountParams),
    responses((status = 200, body = DeviceCount), (status = 400, body = ErrorBody)))]
pub async fn count_devices(
    State(state): State<AppState>,
    _auth: Auth<perm::FleetRead>,
    Query(params): Query<DeviceCountParams>,
) -> Result<Json<DeviceCount>, ApiError> {
    let query = parse_query(params.query.as_deref())?;
    Ok(Json(DeviceCount {
        count: state.store.count_devices(query.as_ref()).await?,
    }))
}

/// One device.
#[utoipa::path(get, path = "/api/v1/devices/{id}", tag = "devices",
    params(("id" = String, Path, description = "Device id")),
    responses((status = 200, body = Device), (status = 404, body = ErrorBody)))]
pub async fn get_device(
    State(state): State<AppState>,
    _auth: Auth<perm::FleetRead>,
    Path(id): Path<String>,
) -> Result<Json<Device>, ApiError> {
    let id = parse_device_id(&id)?;
    let device = state
        .store
        .device(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("device {id} not found")))?;
    Ok(Json(to_wire(device)))
}

/// Changes a device's status or tags. A decommissioned device stays so.
#[utoipa::path(patch, path = "/api/v1/devices/{id}", tag = "devices", request_body = UpdateDevice,
    params(("id" = String, Path, description = "Device id")),
    responses((status = 200, body = Device), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_device(
    State(state): State<AppState>,
    Auth(caller, _): Auth<perm::FleetWrite>,
    Path(id): Path<String>,
    Json(request): Json<UpdateDevice>,
) -> Result<Json<Device>, ApiError> {
    let id = parse_device_id(&id)?;
    if request == UpdateDevice::default() {
        return Err(ApiError::unprocessable(
            "empty_change",
            "name a status, tags to set or tags to remove",
        ));
    }
    let change = DeviceChange {
        status: request.status,
        set_tags: parse_tags(&request.set_tags)?,
        remove_tags: request
            .remove_tags
            .iter()
            .map(|key| {
                TagKey::parse(key)
                    .map_err(|e| ApiError::unprocessable("invalid_tag", e.to_string()))
            })
            .collect::<Result<_, _>>()?,
    };
    if let Some(key) = change
        .remove_tags
        .iter()
        .find(|key| request.set_tags.contains_key(key.as_str()))
    {
        return Err(ApiError::unprocessable(
            "invalid_tag",
            format!("tag {key} is both set and removed"),
        ));
    }
    let current = state
        .store
        .device(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("device {id} not found")))?;
    if current.status == DeviceStatus::Decommissioned {
        return Err(ApiError::conflict(format!(
            "device {id} is decommissioned; it cannot change"
        )));
    }
    let now = state.now();
    let audit = caller.audit(
        now,
        "device.update",
        &format!("device:{id}"),
        serde_json::json!({
            "status": request.status,
            "set_tags": request.set_tags,
            "remove_tags": request.remove_tags,
        }),
    );
    let device = state.store.update_device(&id, &change, &audit).await?;
    Ok(Json(to_wire(device)))
}

fn encode_cursor(id: &DeviceId) -> String {
    URL_SAFE_NO_PAD.encode(id.as_str())
}

fn decode_cursor(cursor: &str) -> Result<DeviceId, ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "invalid_cursor",
            "the cursor is not one this server handed out",
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    DeviceId::parse(&text).map_err(|_| invalid())
}
