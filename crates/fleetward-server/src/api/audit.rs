//! The audit log: every change an operator made, oldest first.

use axum::extract::State;
use fleetward_store::MAX_PAGE;
use fleetward_wire::ErrorBody;
use fleetward_wire::operator::{AuditListParams, AuditPage, AuditRecord};

use crate::AppState;
use crate::auth::{Auth, perm};
use crate::error::{ApiError, Json, Query};

/// Pages through the audit log.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditListParams),
    responses((status = 200, body = AuditPage), (status = 403, body = ErrorBody)))]
pub async fn list_audit(
    State(state): State<AppState>,
    _auth: Auth<perm::AuditRead>,
    Query(params): Query<AuditListParams>,
) -> Result<Json<AuditPage>, ApiError> {
    let limit = params.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    let records = state.store.list_audit(params.after, limit).await?;
    let full_page = records.len() == usize::try_from(limit).unwrap_or(usize::MAX);
    let next_after = records.last().filter(|_| full_page).map(|r| r.seq);
    let items = records
        .into_iter()
        .map(|r| AuditRecord {
            seq: r.seq,
            at: r.entry.at,
            actor: r.entry.actor,
            action: r.entry.action,
            target: r.entry.target,
            source: r.entry.source,
            detail: r.entry.detail.to_string(),
        })
        .collect();
    Ok(Json(AuditPage { items, next_after }))
}
