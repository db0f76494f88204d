//! The device API (`/device/v1`) and its own OpenAPI document.
//!
//! Devices authenticate with their client certificate; [`DeviceIdentity`]
//! is the only way a handler learns which device is calling, so no request
//! can act for another device. Enrolment, the CRL, the CA certificate and
//! the OpenAPI document are reachable without a certificate.

pub mod enroll;
pub mod listener;
pub mod reports;

use std::net::SocketAddr;

use axum::Json as AxumJson;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use fleetward_core::DeviceId;
use fleetward_identity::{PeerCert, Serial};
use fleetward_store::AuditEntry;
use fleetward_wire::ErrorBody;
use fleetward_wire::identity::DeviceSelf;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::{ApiError, Json};

/// What the TLS layer learnt about a connection; attached to each request.
#[derive(Debug, Clone)]
pub struct DeviceConnection {
    pub peer: SocketAddr,
    /// The verified client certificate, if the device presented one.
    pub cert: Option<PeerCert>,
}

/// The calling device, from its verified, unexpired, unrevoked certificate.
#[derive(Debug, Clone)]
pub struct DeviceIdentity {
    pub device_id: DeviceId,
    pub cert: PeerCert,
    pub peer: SocketAddr,
}

impl DeviceIdentity {
    /// The audit record of something this device did.
    pub fn audit(
        &self,
        at: time::OffsetDateTime,
        action: &str,
        detail: serde_json::Value,
    ) -> AuditEntry {
        AuditEntry {
            at,
            actor: format!("device:{}", self.device_id),
            action: action.to_owned(),
            target: format!("device:{}", self.device_id),
            source: self.peer.to_string(),
            detail,
        }
    }

    pub fn serial(&self) -> &Serial {
        &self.cert.serial
    }
}

impl FromRequestParts<AppState> for DeviceIdentity {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let connection = parts.extensions.get::<DeviceConnection>().ok_or_else(|| {
            ApiError::unauthenticated(
                "client_certificate_required",
                "this route needs mutual TLS on the device listener",
            )
        })?;
        let cert = connection.cert.clone().ok_or_else(|| {
            ApiError::unauthenticated(
                "client_certificate_required",
                "present your device certificate (mutual TLS); enrol first with POST /device/v1/enroll",
            )
        })?;
        // The handshake checked all of this, but a connection may outlive
        // the certificate's validity or its revocation, and resumed
        // sessions skip the verifier: check again on every request.
        let now = state.now();
        if now >= cert.not_after {
            return Err(ApiError::unauthenticated(
                "certificate_expired",
                "the device certificate has expired; enrol again",
            ));
        }
        if state.identity.revocations.is_revoked(&cert.serial, now) {
            // A revoked identity still in use is a finding, not just a refusal.
            crate::monitor::record_auth_failure(
                state,
                connection.peer,
                &format!("device:{}", cert.device_id),
                "device.tls_refused",
                "certificate_revoked",
            )
            .await;
            return Err(ApiError::unauthenticated(
                "certificate_revoked",
                "the device certificate has been revoked",
            ));
        }
        if let Some(clone) = state
            .monitor
            .sighting(&cert.device_id, connection.peer.ip(), now)
        {
            crate::monitor::Monitor::log(&*state.store, clone).await;
        }
        Ok(DeviceIdentity {
            device_id: cert.device_id.clone(),
            cert,
            peer: connection.peer,
        })
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "fleetward device API",
        description = "What devices call: enrolment (token + CSR), renewal, self, CRL. Everything but enrolment, the CRL, the CA certificate and this document requires mutual TLS with the device certificate."
    ),
    modifiers(&MutualTls),
    components(schemas(ErrorBody))
)]
struct DeviceApiDoc;

struct MutualTls;

impl Modify for MutualTls {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        // OpenAPI 3.1 has `mutualTLS`; utoipa 5 lacks the variant, so the
        // scheme is described in words on an HTTP scheme entry.
        components.add_security_scheme(
            "device_certificate",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "Not a bearer token: mutual TLS with the certificate issued at enrolment (subject CN and SAN URI urn:fleetward:device:<id>).",
                    ))
                    .build(),
            ),
        );
    }
}

/// The device API's routes, documented.
pub fn device_api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(DeviceApiDoc::openapi())
        .routes(routes!(enroll::enroll))
        .routes(routes!(enroll::renew))
        .routes(routes!(device_self))
        .routes(routes!(crl))
        .routes(routes!(ca_certificate))
        .routes(routes!(crate::rollout::report_execution))
        .routes(routes!(reports::post_reports))
        .routes(routes!(director_key))
}

/// `GET /device/v1/openapi.json`.
pub async fn openapi_json(State(_): State<AppState>) -> AxumJson<utoipa::openapi::OpenApi> {
    let (_, doc) = device_api().split_for_parts();
    AxumJson(doc)
}

/// What the server knows of the calling device; devices poll it to learn
/// when to renew or re-key.
#[utoipa::path(get, path = "/device/v1/self", tag = "identity",
    security(("device_certificate" = [])),
    responses((status = 200, body = DeviceSelf), (status = 401, body = ErrorBody)))]
pub async fn device_self(
    State(state): State<AppState>,
    me: DeviceIdentity,
) -> Result<Json<DeviceSelf>, ApiError> {
    let device = state
        .store
        .device(&me.device_id)
        .await?
        .ok_or_else(|| ApiError::not_found("this device is not in the registry"))?;
    let rekey = state.store.rekey_requested(&me.device_id).await?;
    let settings = state.settings().await?;
    Ok(Json(DeviceSelf {
        device_id: me.device_id.to_string(),
        status: device.status,
        serial: me.serial().to_hex(),
        not_after: me.cert.not_after,
        renew_after: state.identity.renew_after(me.cert.not_after),
        rekey_required: rekey.is_some(),
        rekey_deadline: rekey.and_then(|r| r.deadline),
        poll_interval_secs: settings.poll_interval_secs,
    }))
}

/// The signed certificate revocation list of the fleet CA (DER).
#[utoipa::path(get, path = "/device/v1/crl", tag = "identity",
    responses((status = 200, description = "DER CRL", content_type = "application/pkix-crl", body = Vec<u8>)))]
pub async fn crl(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let der = state.identity.crl(&*state.store, state.now()).await?;
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/pkix-crl"),
            (header::CACHE_CONTROL, "max-age=60"),
        ],
        der.as_ref().clone(),
    ))
}

/// The fleet CA certificate (PEM). Devices should be provisioned with it
/// out of band and compare its fingerprint; this copy is for convenience.
#[utoipa::path(get, path = "/device/v1/ca.pem", tag = "identity",
    responses((status = 200, description = "PEM certificate", content_type = "application/x-pem-file", body = String)))]
pub async fn ca_certificate(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        state.identity.ca.cert_pem().to_owned(),
    )
}

/// The director's online public key, which agents pin after enrolment
/// (see ARCHITECTURE.md, "How a device trusts the director").
#[utoipa::path(get, path = "/device/v1/director/key", tag = "updates",
    security(("device_certificate" = [])),
    responses((status = 200, body = fleetward_wire::device::DirectorKey), (status = 401, body = ErrorBody)))]
pub async fn director_key(
    State(state): State<AppState>,
    _me: DeviceIdentity,
) -> Result<Json<fleetward_wire::device::DirectorKey>, ApiError> {
    let key = state.releases.keys.director.public();
    Ok(Json(fleetward_wire::device::DirectorKey {
        keyid: fleetward_tuf::key_id(&key).map_err(|_| ApiError::internal())?,
        public_key: serde_json::to_value(&key).map_err(|_| ApiError::internal())?,
    }))
}
