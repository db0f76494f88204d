//! Run-time settings an admin may change.

use axum::extract::State;
use fleetward_wire::ErrorBody;
use fleetward_wire::operator::Settings;

use crate::AppState;
use crate::auth::{Auth, perm};
use crate::error::{ApiError, Json};

const POLL_RANGE: std::ops::RangeInclusive<u32> = 10..=86_400;
const RETENTION_RANGE: std::ops::RangeInclusive<u32> = 1..=3650;
const TOKEN_LIFETIME_RANGE: std::ops::RangeInclusive<u64> = 60..=2 * 366 * 24 * 3600;

fn to_wire(settings: fleetward_store::Settings) -> Settings {
    Settings {
        poll_interval_secs: settings.poll_interval_secs,
        default_token_lifetime_secs: settings.default_token_lifetime_secs,
        event_retention_days: settings.event_retention_days,
    }
}

#[utoipa::path(get, path = "/api/v1/settings", tag = "settings",
    responses((status = 200, body = Settings), (status = 403, body = ErrorBody)))]
pub async fn get_settings(
    State(state): State<AppState>,
    _auth: Auth<perm::SettingsRead>,
) -> Result<Json<Settings>, ApiError> {
    Ok(Json(to_wire(state.store.settings().await?)))
}

#[utoipa::path(put, path = "/api/v1/settings", tag = "settings", request_body = Settings,
    responses((status = 200, body = Settings), (status = 422, body = ErrorBody)))]
pub async fn put_settings(
    State(state): State<AppState>,
    Auth(caller, _): Auth<perm::SettingsWrite>,
    Json(request): Json<Settings>,
) -> Result<Json<Settings>, ApiError> {
    if !POLL_RANGE.contains(&request.poll_interval_secs) {
        return Err(ApiError::unprocessable(
            "invalid_setting",
            format!(
                "poll_interval_secs must be between {} and {}",
                POLL_RANGE.start(),
                POLL_RANGE.end()
            ),
        ));
    }
    if !TOKEN_LIFETIME_RANGE.contains(&request.default_token_lifetime_secs) {
        return Err(ApiError::unprocessable(
            "invalid_setting",
            format!(
                "default_token_lifetime_secs must be between {} and {}",
                TOKEN_LIFETIME_RANGE.start(),
                TOKEN_LIFETIME_RANGE.end()
            ),
        ));
    }
    if !RETENTION_RANGE.contains(&request.event_retention_days) {
        return Err(ApiError::unprocessable(
            "invalid_setting",
            format!(
                "event_retention_days must be between {} and {}",
                RETENTION_RANGE.start(),
                RETENTION_RANGE.end()
            ),
        ));
    }
    let settings = fleetward_store::Settings {
        poll_interval_secs: request.poll_interval_secs,
        default_token_lifetime_secs: request.default_token_lifetime_secs,
        event_retention_days: request.event_retention_days,
    };
    let now = state.now();
    let audit = caller.audit(
        now,
        "settings.update",
        "settings",
        serde_json::json!(request),
    );
    state.store.put_settings(&settings, &audit).await?;
    state
        .settings
        .put(settings.clone(), std::time::Instant::now());
    Ok(Json(to_wire(settings)))
}
