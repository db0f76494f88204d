//! The security-event log for operators: list, show, checkpoints, verify.

use axum::extract::State;
use fleetward_core::DeviceId;
use fleetward_events::{EventKind, Severity};
use fleetward_store::{EventFilter, MAX_PAGE};
use fleetward_wire::ErrorBody;
use fleetward_wire::events::{
    EventCheckpoints, EventListParams, EventPage, EventVerification, SecurityEvent,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::AppState;
use crate::auth::{Auth, perm};
use crate::error::{ApiError, Json, Path, Query};
use crate::events::{checkpoint_to_wire, millis, to_wire};

fn bad(message: String) -> ApiError {
    ApiError::bad_request("invalid_parameter", message)
}

pub(crate) fn filter(params: &EventListParams) -> Result<EventFilter, ApiError> {
    let kinds = match &params.kind {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|k| {
                EventKind::parse(k.trim()).ok_or_else(|| bad(format!("unknown event kind {k:?}")))
            })
            .collect::<Result<_, _>>()?,
    };
    let min_severity = params
        .min_severity
        .as_deref()
        .map(|s| Severity::parse(s).ok_or_else(|| bad(format!("unknown severity {s:?}"))))
        .transpose()?;
    let device = params
        .device
        .as_deref()
        .map(|d| DeviceId::parse(d).map_err(|e| bad(e.to_string())))
        .transpose()?;
    let time = |raw: &Option<String>, name: &str| {
        raw.as_deref()
            .map(|t| {
                OffsetDateTime::parse(t, &Rfc3339)
                    .map(millis)
                    .map_err(|_| bad(format!("{name} must be an RFC 3339 time, not {t:?}")))
            })
            .transpose()
    };
    Ok(EventFilter {
        kinds,
        min_severity,
        device,
        since_ms: time(&params.since, "since")?,
        until_ms: time(&params.until, "until")?,
    })
}

/// Pages through the security-event log, oldest first, with filters.
#[utoipa::path(get, path = "/api/v1/events", tag = "events", params(EventListParams),
    responses((status = 200, body = EventPage), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_events(
    State(state): State<AppState>,
    _auth: Auth<perm::AuditRead>,
    Query(params): Query<EventListParams>,
) -> Result<Json<EventPage>, ApiError> {
    let limit = params.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(bad(format!("limit must be between 1 and {MAX_PAGE}")));
    }
    let filter = filter(&params)?;
    let entries = state
        .store
        .list_events(&filter, params.after, limit)
        .await?;
    Ok(Json(page(&entries, limit)))
}

/// A page of entries; a full page says where the next one starts.
pub fn page(entries: &[fleetward_events::Entry], limit: u32) -> EventPage {
    let full_page = entries.len() == usize::try_from(limit).unwrap_or(usize::MAX);
    let next_after = entries.last().filter(|_| full_page).map(|e| e.seq);
    EventPage {
        items: entries.iter().map(to_wire).collect(),
        next_after,
    }
}

/// One entry of the security-event log.
#[utoipa::path(get, path = "/api/v1/events/{seq}", tag = "events",
    params(("seq" = u64, Path, description = "Sequence number")),
    responses((status = 200, body = SecurityEvent), (status = 404, body = ErrorBody)))]
pub async fn get_event(
    State(state): State<AppState>,
    _auth: Auth<perm::AuditRead>,
    Path(seq): Path<u64>,
) -> Result<Json<SecurityEvent>, ApiError> {
    let entry = state
        .store
        .event(seq)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("security event {seq} not found")))?;
    Ok(Json(to_wire(&entry)))
}

/// The signed checkpoints and the public key, to verify an export offline.
#[utoipa::path(get, path = "/api/v1/events/checkpoints", tag = "events",
    responses((status = 200, body = EventCheckpoints), (status = 403, body = ErrorBody)))]
pub async fn event_checkpoints(
    State(state): State<AppState>,
    _auth: Auth<perm::AuditRead>,
) -> Result<Json<EventCheckpoints>, ApiError> {
    let checkpoints = state.store.checkpoints().await?;
    let anchor = state.store.event_anchor().await?;
    Ok(Json(EventCheckpoints {
        public_key: hex::encode(state.event_signer.verifying_key().as_bytes()),
        anchor: anchor.as_ref().map(checkpoint_to_wire),
        checkpoints: checkpoints.iter().map(checkpoint_to_wire).collect(),
    }))
}

/// Verifies the whole log in the database: chain, checkpoints, anchor.
#[utoipa::path(get, path = "/api/v1/events/verify", tag = "events",
    responses((status = 200, body = EventVerification), (status = 403, body = ErrorBody)))]
pub async fn verify_events(
    State(state): State<AppState>,
    _auth: Auth<perm::AuditRead>,
) -> Result<Json<EventVerification>, ApiError> {
    let report =
        crate::events::verify_store(&*state.store, &state.event_signer.verifying_key()).await?;
    Ok(Json(report))
}
