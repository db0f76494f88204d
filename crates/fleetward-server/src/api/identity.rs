//! Device identity as operators manage it: enrolment tokens, the
//! manufacturing-line allow-list, revocation, decommissioning, forced
//! re-keying and the certificates a device holds.
//!
//! Revocations reach the live revocation set before the answer is sent, so
//! the device's next handshake and next request are refused.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use fleetward_core::{DeviceId, Tag};
use fleetward_identity::RevocationReason;
use fleetward_store::{AllowListEntry, CertRecord, EnrolmentTokenRecord, RekeyTarget};
use fleetward_wire::ErrorBody;
use fleetward_wire::identity::{
    AllowListResult, AllowListUpload, CertificateInfo, CertificateList, CreateEnrollToken,
    CreatedEnrollToken, EnrollTokenInfo, EnrollTokenList, RekeyRequest, RekeyResult, RevokeDevice,
    RevokedDevice,
};
use rustls::pki_types::SubjectPublicKeyInfoDer;
use rustls::pki_types::pem::PemObject as _;

use crate::AppState;
use crate::api::devices::{parse_device_id, parse_query};
use crate::auth::{Auth, perm};
use crate::error::{ApiError, Json, Path};
use crate::identity::mint_enrolment_token;

const MAX_USES: u32 = 1_000_000;
const MIN_LIFETIME_SECS: u64 = 60;
const MAX_LIFETIME_SECS: u64 = 366 * 24 * 3600;
const MAX_NAME_LEN: usize = 64;
const MAX_REASON_LEN: usize = 500;
const MAX_ALLOW_LIST: usize = 10_000;
const MAX_PUBLIC_KEY_PEM: usize = 4096;

pub fn token_info(record: &EnrolmentTokenRecord) -> EnrollTokenInfo {
    EnrollTokenInfo {
        id: record.id.clone(),
        name: record.name.clone(),
        tags: record
            .tags
            .iter()
            .map(|t| (t.key.as_str().to_owned(), t.value.as_str().to_owned()))
            .collect(),
        uses_total: record.uses_total,
        uses_left: record.uses_left,
        require_approval: record.require_approval,
        allow_listed_only: record.allow_listed_only,
        created_at: record.created_at,
        expires_at: record.expires_at,
        revoked_at: record.revoked_at,
        created_by: record.created_by.clone(),
    }
}

pub fn cert_info(record: CertRecord) -> CertificateInfo {
    CertificateInfo {
        serial: record.serial,
        device_id: record.device_id.to_string(),
        not_before: record.not_before,
        not_after: record.not_after,
        issued_at: record.issued_at,
        key_kind: record.key_kind,
        revoked_at: record.revoked_at,
        reason: record.reason,
        comment: record.comment,
    }
}

fn parse_tags(tags: &BTreeMap<String, String>) -> Result<Vec<Tag>, ApiError> {
    tags.iter()
        .map(|(k, v)| {
            Tag::new(k, v).map_err(|e| ApiError::unprocessable("invalid_tag", e.to_string()))
        })
        .collect()
}

fn printable(text: &str, max: usize) -> bool {
    text.chars().count() <= max && text.chars().all(|c| !c.is_control())
}

/// Creates an enrolment token. Its secret is in this answer and nowhere else.
#[utoipa::path(post, path = "/api/v1/enroll-tokens", tag = "identity", request_body = CreateEnrollToken,
    responses((status = 201, body = CreatedEnrollToken), (status = 422, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_enroll_token(
    State(state): State<AppState>,
    Auth(caller, _): Auth<perm::FleetWrite>,
    Json(request): Json<CreateEnrollToken>,
) -> Result<(StatusCode, Json<CreatedEnrollToken>), ApiError> {
    if !(1..=MAX_USES).contains(&request.uses) {
        return Err(ApiError::unprocessable(
            "invalid_uses",
            format!("uses must be between 1 and {MAX_USES}"),
        ));
    }
    if !(MIN_LIFETIME_SECS..=MAX_LIFETIME_SECS).contains(&request.expires_in_secs) {
        return Err(ApiError::unprocessable(
            "invalid_expiry",
            format!("expires_in_secs must be between {MIN_LIFETIME_SECS} and {MAX_LIFETIME_SECS}"),
        ));
    }
    let name = request
        .name
        .clone()
        .unwrap_or_else(|| "enrolment".to_owned());
    if name.trim().is_empty() || !printable(&name, MAX_NAME_LEN) {
        return Err(ApiError::unprocessable(
            "invalid_name",
            format!("a name is 1 to {MAX_NAME_LEN} printable characters"),
        ));
    }
    let tags = parse_tags(&request.tags)?;
    let now = state.now();
    let lifetime = i64::try_from(request.expires_in_secs)
        .map_err(|_| ApiError::unprocessable("invalid_expiry", "too long"))?;
    let minted = mint_enrolment_token();
    let record = EnrolmentTokenRecord {
        id: minted.id.clone(),
        name,
        secret_hash: minted.secret_hash,
        tags,
        uses_total: request.uses,
        uses_left: request.uses,
        require_approval: request.require_approval,
        allow_listed_only: request.allow_listed_only,
        created_at: now,
        expires_at: now + time::Duration::seconds(lifetime),
        revoked_at: None,
        created_by: caller.token_id.clone(),
    };
    let audit = caller.audit(
        now,
        "enroll_token.create",
        &format!("enroll-token:{}", minted.id),
        serde_json::json!({
            "name": record.name,
            "tags": request.tags,
            "uses": request.uses,
            "expires_at": record.expires_at.unix_timestamp(),
            "require_approval": request.require_approval,
            "allow_listed_only": request.allow_listed_only,
        }),
    );
    state.store.insert_enrolment_token(&record, &audit).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedEnrollToken {
            token: minted.token,
            info: token_info(&record),
        }),
    ))
}

/// Lists enrolment tokens (never their secrets).
#[utoipa::path(get, path = "/api/v1/enroll-tokens", tag = "identity",
    responses((status = 200, body = EnrollTokenList), (status = 403, body = ErrorBody)))]
pub async fn list_enroll_tokens(
    State(state): State<AppState>,
    _auth: Auth<perm::FleetRead>,
) -> Result<Json<EnrollTokenList>, ApiError> {
    let items = state
        .store
        .list_enrolment_tokens()
        .await?
        .iter()
        .map(token_info)
        .collect();
    Ok(Json(EnrollTokenList { items }))
}

/// Revokes an enrolment token at once.
#[utoipa::path(delete, path = "/api/v1/enroll-tokens/{id}", tag = "identity",
    params(("id" = String, Path, description = "Enrolment token id")),
    responses((status = 200, body = EnrollTokenInfo), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn revoke_enroll_token(
    State(state): State<AppState>,
    Auth(caller, _): Auth<perm::FleetWrite>,
    Path(id): Path<String>,
) -> Result<Json<EnrollTokenInfo>, ApiError> {
    let now = state.now();
    let audit = caller.audit(
        now,
        "enroll_token.revoke",
        &format!("enroll-token:{id}"),
        serde_json::json!({}),
    );
    let record = state.store.revoke_enrolment_token(&id, now, &audit).await?;
    Ok(Json(token_info(&record)))
}

/// Adds manufacturing-line device ids (optionally with their public keys)
/// to the allow-list that `allow_listed_only` tokens require. All or none.
#[utoipa::path(post, path = "/api/v1/allow-list", tag = "identity", request_body = AllowListUpload,
    responses((status = 201, body = AllowListResult), (status = 422, body = ErrorBody)))]
pub async fn upload_allow_list(
    State(state): State<AppState>,
    Auth(caller, _): Auth<perm::FleetWrite>,
    Json(request): Json<AllowListUpload>,
) -> Result<(StatusCode, Json<AllowListResult>), ApiError> {
    if request.devices.is_empty() || request.devices.len() > MAX_ALLOW_LIST {
        return Err(ApiError::unprocessable(
            "invalid_batch",
            format!("an upload holds 1 to {MAX_ALLOW_LIST} devices"),
        ));
    }
    let now = state.now();
    let entries = request
        .devices
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let device_id = parse_device_id(&item.id).map_err(|mut e| {
                e.message = format!("devices[{index}]: {}", e.message);
                e
            })?;
            let public_key = item
                .public_key
                .as_deref()
                .map(|pem| {
                    let invalid = || {
                        ApiError::unprocessable(
                            "invalid_public_key",
                            format!("devices[{index}]: public_key is not a PEM public key"),
                        )
                    };
                    if pem.len() > MAX_PUBLIC_KEY_PEM {
                        return Err(invalid());
                    }
                    SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes())
                        .map(|der| der.as_ref().to_vec())
                        .map_err(|_| invalid())
                })
                .transpose()?;
            Ok(AllowListEntry {
                device_id,
                public_key,
                added_at: now,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let audit = caller.audit(
        now,
        "allow_list.add",
        &format!("allow-list:{}", entries.len()),
        serde_json::json!({
            "count": entries.len(),
            "with_keys": entries.iter().filter(|e| e.public_key.is_some()).count(),
            "first": entries.first().map(|e| e.device_id.to_string()),
        }),
    );
    state.store.put_allow_list(&entries, &audit).await?;
    let total = state.store.count_allow_list().await?;
    let added = u64::try_from(entries.len()).unwrap_or(u64::MAX);
    Ok((StatusCode::CREATED, Json(AllowListResult { added, total })))
}

async fn revoke_or_decommission(
    state: &AppState,
    caller: &crate::auth::Caller,
    id: &str,
    request: &RevokeDevice,
    decommission: bool,
) -> Result<Json<RevokedDevice>, ApiError> {
    let id = parse_device_id(id)?;
    if request.reason.trim().is_empty() || !printable(&request.reason, MAX_REASON_LEN) {
        return Err(ApiError::unprocessable(
            "invalid_reason",
            format!("a reason is 1 to {MAX_REASON_LEN} printable characters"),
        ));
    }
    let default = if decommission {
        RevocationReason::CessationOfOperation
    } else {
        RevocationReason::Unspecified
    };
    let code = match request.code.as_deref() {
        None => default,
        Some(raw) => RevocationReason::parse(raw).ok_or_else(|| {
            ApiError::unprocessable(
                "invalid_reason_code",
                "code is one of unspecified, key-compromise, superseded, cessation-of-operation, privilege-withdrawn",
            )
        })?,
    };
    let now = state.now();
    let action = if decommission {
        "device.decommission"
    } else {
        "device.revoke"
    };
    let audit = caller.audit(
        now,
        action,
        &format!("device:{id}"),
        serde_json::json!({ "reason": request.reason, "code": code.as_str() }),
    );
    let revoked = state
        .store
        .revoke_device(
            &id,
            now,
            code.as_str(),
            &request.reason,
            decommission,
            &audit,
        )
        .await?;
    for cert in &revoked {
        state.identity.revoke(&cert.serial, now);
    }
    let device = state
        .store
        .device(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("device {id} not found")))?;
    Ok(Json(RevokedDevice {
        device_id: id.to_string(),
        status: device.status,
        revoked_serials: revoked.into_iter().map(|c| c.serial).collect(),
    }))
}

/// Revokes every certificate of a device, effective at once. The device
/// can enrol again with a new key and a token.
#[utoipa::path(post, path = "/api/v1/devices/{id}/revoke", tag = "identity", request_body = RevokeDevice,
    params(("id" = String, Path, description = "Device id")),
    responses((status = 200, body = RevokedDevice), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn revoke_device(
    State(state): State<AppState>,
    Auth(caller, _): Auth<perm::FleetWrite>,
    Path(id): Path<String>,
    Json(request): Json<RevokeDevice>,
) -> Result<Json<RevokedDevice>, ApiError> {
    revoke_or_decommission(&state, &caller, &id, &request, false).await
}

/// Decommissions a device: its certificates are revoked and it can never
/// enrol again.
#[utoipa::path(post, path = "/api/v1/devices/{id}/decommission", tag = "identity", request_body = RevokeDevice,
    params(("id" = String, Path, description = "Device id")),
    responses((status = 200, body = RevokedDevice), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn decommission_device(
    State(state): State<AppState>,
    Auth(caller, _): Auth<perm::FleetWrite>,
    Path(id): Path<String>,
    Json(request): Json<RevokeDevice>,
) -> Result<Json<RevokedDevice>, ApiError> {
    revoke_or_decommission(&state, &caller, &id, &request, true).await
}

const MAX_REKEY_DEADLINE_SECS: u64 = 365 * 24 * 3600;

/// Asks devices (by id, by target query, or all) to make a new key and
/// renew at their next poll; with a deadline, devices still on their old
/// key after it have their certificates revoked.
#[utoipa::path(post, path = "/api/v1/devices/rekey", tag = "identity", request_body = RekeyRequest,
    responses((status = 200, body = RekeyResult), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn rekey_devices(
    State(state): State<AppState>,
    Auth(caller, _): Auth<perm::FleetWrite>,
    Json(request): Json<RekeyRequest>,
) -> Result<Json<RekeyResult>, ApiError> {
    let chosen = usize::from(!request.ids.is_empty())
        + usize::from(request.query.is_some())
        + usize::from(request.all);
    if chosen != 1 {
        return Err(ApiError::unprocessable(
            "invalid_target",
            "name exactly one of: ids, query, all",
        ));
    }
    if request.ids.len() > fleetward_store::MAX_BATCH {
        return Err(ApiError::unprocessable("invalid_target", "too many ids"));
    }
    let target = if request.all {
        RekeyTarget::All
    } else if let Some(query) = parse_query(request.query.as_deref())? {
        RekeyTarget::Query(query)
    } else if request.query.is_some() {
        return Err(ApiError::unprocessable(
            "invalid_target",
            "the query is empty; use `all` for the whole fleet",
        ));
    } else {
        RekeyTarget::Devices(
            request
                .ids
                .iter()
                .map(|id| parse_device_id(id))
                .collect::<Result<Vec<DeviceId>, _>>()?,
        )
    };
    let now = state.now();
    let deadline = match request.deadline_secs {
        None => None,
        Some(secs @ 1..=MAX_REKEY_DEADLINE_SECS) => {
            Some(now + time::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX)))
        }
        Some(_) => {
            return Err(ApiError::unprocessable(
                "invalid_deadline",
                format!("deadline_secs is 1 to {MAX_REKEY_DEADLINE_SECS} (a year)"),
            ));
        }
    };
    let audit = caller.audit(
        now,
        "device.rekey",
        "devices",
        serde_json::json!({
            "ids": request.ids,
            "query": request.query,
            "all": request.all,
            "deadline_secs": request.deadline_secs,
        }),
    );
    let devices = state
        .store
        .request_rekey(&target, now, deadline, &audit)
        .await?;
    Ok(Json(RekeyResult { devices }))
}

/// The certificates a device has held, oldest first.
#[utoipa::path(get, path = "/api/v1/devices/{id}/certificates", tag = "identity",
    params(("id" = String, Path, description = "Device id")),
    responses((status = 200, body = CertificateList), (status = 404, body = ErrorBody)))]
pub async fn device_certificates(
    State(state): State<AppState>,
    _auth: Auth<perm::FleetRead>,
    Path(id): Path<String>,
) -> Result<Json<CertificateList>, ApiError> {
    let id = parse_device_id(&id)?;
    if state.store.device(&id).await?.is_none() {
        return Err(ApiError::not_found(format!("device {id} not found")));
    }
    let items = state
        .store
        .certificates(&id)
        .await?
        .into_iter()
        .map(cert_info)
        .collect();
    Ok(Json(CertificateList { items }))
}
