//! Enrolment (token + CSR → certificate) and renewal (certificate + new
//! CSR → new certificate, the old one revoked after the overlap).
//!
//! Every refusal is recorded before it is answered, with the reason; on a
//! refusal nothing is issued: certificates are signed only after every check
//! passed, and handed out only after the store committed them.

use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use fleetward_core::{DeviceId, DeviceStatus};
use fleetward_identity::{IdentityError, IssuedCert, Serial, ValidCsr, parse_csr};
use fleetward_store::{AuditEntry, CertRecord, Enrolment, StoreError};
use fleetward_wire::ErrorBody;
use fleetward_wire::identity::{EnrollRequest, IssuedCertificate, RenewRequest};
use subtle::ConstantTimeEq as _;
use time::OffsetDateTime;

use super::{DeviceConnection, DeviceIdentity};
use crate::AppState;
use crate::error::{ApiError, Json};
use crate::identity::{hash_secret, split_enrolment_token};

/// The peer address of a device-listener request, for the audit log.
#[derive(Debug, Clone)]
pub struct PeerAddr(pub String);

impl FromRequestParts<AppState> for PeerAddr {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        Ok(PeerAddr(
            parts
                .extensions
                .get::<DeviceConnection>()
                .map_or_else(|| "unknown".to_owned(), |c| c.peer.to_string()),
        ))
    }
}

/// The answer and code for a CSR that failed a check.
fn csr_refusal(error: &IdentityError) -> ApiError {
    use IdentityError as E;
    let code = match error {
        E::RsaKeyTooSmall { .. }
        | E::RsaKeyTooLarge { .. }
        | E::UnknownCurve { .. }
        | E::DsaKeyRefused
        | E::KeyAlgorithmRefused { .. } => "weak_key",
        E::DeviceIdMismatch { .. } => "device_id_mismatch",
        E::DeviceIdConflict { .. }
        | E::DeviceIdAmbiguous
        | E::DeviceIdMissing
        | E::DeviceIdInvalid { .. } => "invalid_device_id",
        _ => "invalid_csr",
    };
    let status = if code == "device_id_mismatch" {
        StatusCode::FORBIDDEN
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    ApiError::new(status, code, error.to_string())
}

async fn refuse(
    state: &AppState,
    source: &str,
    actor: &str,
    action: &str,
    device: Option<&DeviceId>,
    error: ApiError,
) -> ApiError {
    let entry = AuditEntry {
        at: state.now(),
        actor: actor.to_owned(),
        action: action.to_owned(),
        target: device.map_or_else(|| "device:?".to_owned(), |d| format!("device:{d}")),
        source: source.to_owned(),
        detail: serde_json::json!({ "code": error.code, "reason": error.message }),
    };
    state.identity.record_refusal(&*state.store, entry).await;
    // A wrong or used-up token is a failed authentication; a bad CSR is not.
    if matches!(error.status.as_u16(), 401 | 403)
        && let Ok(peer) = source.parse::<std::net::SocketAddr>()
        && let Some(burst) = state.monitor.auth_failure(peer.ip(), state.now())
    {
        crate::monitor::Monitor::log(&*state.store, burst).await;
    }
    error
}

fn issued_answer(
    state: &AppState,
    issued: &IssuedCert,
    device: &DeviceId,
    status: DeviceStatus,
) -> IssuedCertificate {
    IssuedCertificate {
        device_id: device.to_string(),
        status,
        certificate: issued.pem.clone(),
        ca_chain: vec![state.identity.ca.cert_pem().to_owned()],
        serial: issued.serial.to_hex(),
        not_after: issued.not_after,
        renew_after: state.identity.renew_after(issued.not_after),
    }
}

fn record_of(issued: &IssuedCert, csr: &ValidCsr, now: OffsetDateTime) -> CertRecord {
    CertRecord {
        serial: issued.serial.to_hex(),
        device_id: csr.device_id.clone(),
        not_before: issued.not_before,
        not_after: issued.not_after,
        issued_at: now,
        key_kind: csr.key.name(),
        revoked_at: None,
        reason: None,
        comment: None,
    }
}

fn issue(state: &AppState, csr: &ValidCsr, now: OffsetDateTime) -> Result<IssuedCert, ApiError> {
    let serial = Serial::random().map_err(|_| ApiError::internal())?;
    let crl_url = state.identity.crl_url();
    state
        .identity
        .ca
        .issue_device(
            csr,
            &serial,
            now,
            &state.identity.config.policy,
            crl_url.as_deref(),
        )
        .map_err(|e| {
            tracing::error!(error = %e, "issuing a device certificate");
            ApiError::internal()
        })
}

/// Enrols a device: an enrolment token and a CSR in, the device
/// certificate and the CA chain out. No client certificate needed.
#[utoipa::path(post, path = "/device/v1/enroll", tag = "identity", request_body = EnrollRequest,
    responses(
        (status = 201, body = IssuedCertificate),
        (status = 401, description = "invalid, revoked or expired token", body = ErrorBody),
        (status = 403, description = "token used up, device not on the allow-list, or key not the listed one", body = ErrorBody),
        (status = 409, description = "device enrolled already (replay) or decommissioned", body = ErrorBody),
        (status = 422, description = "malformed CSR, weak key, bad device id", body = ErrorBody)))]
pub async fn enroll(
    State(state): State<AppState>,
    PeerAddr(source): PeerAddr,
    Json(request): Json<EnrollRequest>,
) -> Result<(StatusCode, Json<IssuedCertificate>), ApiError> {
    let now = state.now();
    let action = "device.enroll_refused";
    let anonymous = "enroll-token:?";
    let Some((token_id, secret)) = split_enrolment_token(request.token.trim()) else {
        let error = ApiError::unauthenticated("invalid_token", "the enrolment token is not valid");
        return Err(refuse(&state, &source, anonymous, action, None, error).await);
    };
    let actor = format!("enroll-token:{token_id}");
    let record = state.store.enrolment_token(token_id).await?;
    let token = match record {
        Some(token) if bool::from(hash_secret(secret).ct_eq(&token.secret_hash)) => token,
        _ => {
            let error =
                ApiError::unauthenticated("invalid_token", "the enrolment token is not valid");
            return Err(refuse(&state, &source, anonymous, action, None, error).await);
        }
    };
    let token_refusal = if token.revoked_at.is_some() {
        Some(ApiError::unauthenticated(
            "token_revoked",
            "the enrolment token has been revoked",
        ))
    } else if token.expires_at <= now {
        Some(ApiError::unauthenticated(
            "token_expired",
            "the enrolment token has expired",
        ))
    } else if token.uses_left == 0 {
        Some(ApiError::new(
            StatusCode::FORBIDDEN,
            "token_exhausted",
            "the enrolment token has been used as often as it allows",
        ))
    } else {
        None
    };
    if let Some(error) = token_refusal {
        return Err(refuse(&state, &source, &actor, action, None, error).await);
    }
    let csr = match parse_csr(&request.csr) {
        Ok(csr) => csr,
        Err(e) => return Err(refuse(&state, &source, &actor, action, None, csr_refusal(&e)).await),
    };
    let device_id = csr.device_id.clone();
    let hardware = request
        .hardware
        .clone()
        .unwrap_or_else(|| "unknown".to_owned());
    if let Err(error) = crate::api::devices::validate_hardware(&hardware) {
        return Err(refuse(&state, &source, &actor, action, Some(&device_id), error).await);
    }
    if token.allow_listed_only {
        let refusal = match state.store.allow_list_entry(&device_id).await? {
            None => Some(ApiError::new(
                StatusCode::FORBIDDEN,
                "not_allow_listed",
                format!("device {device_id} is not on the allow-list this token requires"),
            )),
            Some(entry)
                if entry
                    .public_key
                    .as_ref()
                    .is_some_and(|k| *k != csr.spki_der) =>
            {
                Some(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "key_mismatch",
                    format!("device {device_id} must enrol with the public key on the allow-list"),
                ))
            }
            Some(_) => None,
        };
        if let Some(error) = refusal {
            return Err(refuse(&state, &source, &actor, action, Some(&device_id), error).await);
        }
    }
    let status = if token.require_approval {
        DeviceStatus::Pending
    } else {
        DeviceStatus::Active
    };
    let issued = issue(&state, &csr, now)?;
    let enrolment = Enrolment {
        token_id: token.id.clone(),
        device_id: device_id.clone(),
        hardware,
        status,
        tags: token.tags.clone(),
        cert: record_of(&issued, &csr, now),
    };
    let audit = AuditEntry {
        at: now,
        actor: actor.clone(),
        action: "device.enroll".to_owned(),
        target: format!("device:{device_id}"),
        source: source.clone(),
        detail: serde_json::json!({
            "serial": issued.serial.to_hex(),
            "key": csr.key.name(),
            "not_after": issued.not_after.unix_timestamp(),
            "tags": token.tags.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "require_approval": token.require_approval,
        }),
    };
    let device = match state.store.enroll(&enrolment, &audit).await {
        Ok(device) => device,
        Err(StoreError::Conflict(message)) => {
            let (status, code) = if message.contains("enrolment token") {
                (StatusCode::FORBIDDEN, "token_exhausted")
            } else if message.contains("decommissioned") {
                (StatusCode::CONFLICT, "decommissioned")
            } else {
                (StatusCode::CONFLICT, "already_enrolled")
            };
            let error = ApiError::new(status, code, message);
            return Err(refuse(&state, &source, &actor, action, Some(&device_id), error).await);
        }
        Err(other) => return Err(other.into()),
    };
    Ok((
        StatusCode::CREATED,
        Json(issued_answer(&state, &issued, &device_id, device.status)),
    ))
}

/// Renews the calling device's certificate with a new key. The presented
/// certificate stays valid for the configured overlap, then is revoked.
#[utoipa::path(post, path = "/device/v1/renew", tag = "identity", request_body = RenewRequest,
    security(("device_certificate" = [])),
    responses(
        (status = 200, body = IssuedCertificate),
        (status = 401, body = ErrorBody),
        (status = 403, description = "CSR names another device", body = ErrorBody),
        (status = 409, description = "the CSR reuses the current key, or the certificate was renewed already", body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn renew(
    State(state): State<AppState>,
    me: DeviceIdentity,
    Json(request): Json<RenewRequest>,
) -> Result<Json<IssuedCertificate>, ApiError> {
    let now = state.now();
    let actor = format!("device:{}", me.device_id);
    let source = me.peer.to_string();
    let action = "device.renew_refused";
    let device = Some(&me.device_id);
    let csr = match parse_csr(&request.csr).and_then(|csr| {
        csr.require_device(&me.device_id)?;
        Ok(csr)
    }) {
        Ok(csr) => csr,
        Err(e) => {
            return Err(refuse(&state, &source, &actor, action, device, csr_refusal(&e)).await);
        }
    };
    if csr.spki_der == me.cert.spki_der {
        let error = ApiError::conflict("renewal makes a new key; this CSR reuses the current one");
        return Err(refuse(&state, &source, &actor, action, device, error).await);
    }
    let issued = issue(&state, &csr, now)?;
    let old_serial = me.serial().to_hex();
    let old_revoked_at =
        (now + state.identity.config.policy.renewal_overlap).min(me.cert.not_after);
    let audit = me.audit(
        now,
        "device.renew",
        serde_json::json!({
            "serial": issued.serial.to_hex(),
            "previous": old_serial,
            "previous_revoked_at": old_revoked_at.unix_timestamp(),
            "key": csr.key.name(),
        }),
    );
    match state
        .store
        .renew(
            &old_serial,
            old_revoked_at,
            &record_of(&issued, &csr, now),
            &audit,
        )
        .await
    {
        Ok(()) => {}
        Err(StoreError::Conflict(message)) => {
            let error = ApiError::conflict(message);
            return Err(refuse(&state, &source, &actor, action, device, error).await);
        }
        Err(other) => return Err(other.into()),
    }
    state.identity.revoke(&old_serial, old_revoked_at);
    let status = state
        .store
        .device(&me.device_id)
        .await?
        .map_or(DeviceStatus::Active, |d| d.status);
    Ok(Json(issued_answer(&state, &issued, &me.device_id, status)))
}
