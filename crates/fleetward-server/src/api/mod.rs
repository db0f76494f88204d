//! The operator API (`/api/v1`) and its OpenAPI 3.1 document.
//!
//! Routes are registered through `utoipa_axum::routes!`, so the document at
//! `/api/v1/openapi.json` is generated from the same handlers that serve
//! requests and cannot drift from them.

pub mod audit;
pub mod devices;
pub mod events;
pub mod identity;
pub mod meta;
pub mod releases;
pub mod rollouts;
pub mod sbom;
pub mod security;
pub mod settings;
pub mod telemetry;
pub mod tokens;

use axum::Json;
use axum::extract::State;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "fleetward operator API", description = "Devices, tokens, audit log and settings of a fleetward installation."),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    components(schemas(fleetward_wire::ErrorBody))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("fwt token")
                    .build(),
            ),
        );
    }
}

pub fn operator_api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(meta::whoami))
        .routes(routes!(tokens::create_token, tokens::list_tokens))
        .routes(routes!(tokens::revoke_token))
        .routes(routes!(devices::register_device, devices::list_devices))
        .routes(routes!(devices::register_devices))
        .routes(routes!(devices::count_devices))
        .routes(routes!(devices::get_device, devices::update_device))
        .routes(routes!(telemetry::device_telemetry))
        .routes(routes!(audit::list_audit))
        .routes(routes!(events::list_events))
        .routes(routes!(events::event_checkpoints))
        .routes(routes!(events::verify_events))
        .routes(routes!(events::get_event))
        .routes(routes!(settings::get_settings, settings::put_settings))
        .routes(routes!(releases::upload_artifact))
        .routes(routes!(releases::download_artifact))
        .routes(routes!(releases::create_release, releases::list_releases))
        .routes(routes!(releases::get_release))
        .routes(routes!(releases::signing_request))
        .routes(routes!(releases::upload_signature))
        .routes(routes!(releases::publish_release))
        .routes(routes!(releases::deprecate_release))
        .routes(routes!(releases::revoke_release))
        .routes(routes!(releases::online_keys))
        .routes(routes!(releases::repository_status))
        .routes(routes!(releases::upload_root))
        .routes(routes!(releases::upload_delegations))
        .routes(routes!(sbom::release_vulnerabilities))
        .merge(identity_routes())
        .merge(rollout_routes())
}

/// Rollouts and their executions.
fn rollout_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(rollouts::create_rollout, rollouts::list_rollouts))
        .routes(routes!(rollouts::get_rollout))
        .routes(routes!(rollouts::pause_rollout))
        .routes(routes!(rollouts::resume_rollout))
        .routes(routes!(rollouts::abort_rollout))
        .routes(routes!(rollouts::list_executions))
        .routes(routes!(rollouts::execution_history))
}

/// Device identity management (enrolment tokens, allow-list, revocation).
fn identity_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(
            identity::create_enroll_token,
            identity::list_enroll_tokens
        ))
        .routes(routes!(identity::revoke_enroll_token))
        .routes(routes!(identity::upload_allow_list))
        .routes(routes!(identity::revoke_device))
        .routes(routes!(identity::decommission_device))
        .routes(routes!(identity::rekey_devices))
        .routes(routes!(identity::device_certificates))
        .routes(routes!(security::quarantine_device))
        .routes(routes!(security::device_timeline))
}

/// The OpenAPI document of the operator API. Public: it holds no data.
pub async fn openapi_json(State(_): State<AppState>) -> Json<utoipa::openapi::OpenApi> {
    let (_, doc) = operator_api().split_for_parts();
    Json(doc)
}
