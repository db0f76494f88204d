//! Operator tokens: create, list, revoke.

use axum::extract::State;
use axum::http::StatusCode;
use fleetward_core::Role;
use fleetward_store::TokenRecord;
use fleetward_wire::ErrorBody;
use fleetward_wire::operator::{CreateToken, CreatedToken, TokenInfo, TokenList};

use crate::AppState;
use crate::auth::{Auth, mint_token, perm};
use crate::error::{ApiError, Json, Path};

/// Tokens live at least a minute and at most two years: long-lived secrets
/// leak, and a token that expires before it can be used is a mistake.
const MIN_LIFETIME_SECS: u64 = 60;
const MAX_LIFETIME_SECS: u64 = 2 * 366 * 24 * 3600;
const MAX_NAME_LEN: usize = 64;

pub fn info(record: &TokenRecord) -> TokenInfo {
    TokenInfo {
        id: record.id.clone(),
        name: record.name.clone(),
        role: record.role,
        created_at: record.created_at,
        expires_at: record.expires_at,
        revoked_at: record.revoked_at,
        created_by: record.created_by.clone(),
    }
}

fn validate_name(name: &str) -> Result<(), ApiError> {
    let printable = name.chars().all(|c| !c.is_control());
    if name.trim().is_empty() || name.chars().count() > MAX_NAME_LEN || !printable {
        return Err(ApiError::unprocessable(
            "invalid_name",
            format!("a token name is 1 to {MAX_NAME_LEN} printable characters"),
        ));
    }
    Ok(())
}

/// Creates a token. Its secret is in this answer and nowhere else.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = CreateToken,
    responses((status = 201, body = CreatedToken), (status = 422, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_token(
    State(state): State<AppState>,
    Auth(caller, _): Auth<perm::TokenWrite>,
    Json(request): Json<CreateToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    validate_name(&request.name)?;
    let now = state.now();
    let lifetime = match request.expires_in_secs {
        Some(secs) if !(MIN_LIFETIME_SECS..=MAX_LIFETIME_SECS).contains(&secs) => {
            return Err(ApiError::unprocessable(
                "invalid_expiry",
                format!(
                    "expires_in_secs must be between {MIN_LIFETIME_SECS} and {MAX_LIFETIME_SECS}"
                ),
            ));
        }
        Some(secs) => secs,
        None => state.store.settings().await?.default_token_lifetime_secs,
    };
    let lifetime = i64::try_from(lifetime)
        .map_err(|_| ApiError::unprocessable("invalid_expiry", "too long"))?;
    let minted = mint_token();
    let record = TokenRecord {
        id: minted.id.clone(),
        name: request.name.clone(),
        role: request.role,
        secret_hash: minted.secret_hash,
        created_at: now,
        expires_at: Some(now + time::Duration::seconds(lifetime)),
        revoked_at: None,
        created_by: caller.token_id.clone(),
    };
    let audit = caller.audit(
        now,
        "token.create",
        &format!("token:{}", minted.id),
        serde_json::json!({ "name": request.name, "role": request.role }),
    );
    state.store.insert_token(&record, &audit).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: minted.token,
            info: info(&record),
        }),
    ))
}

/// Lists tokens (never their secrets).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens",
    responses((status = 200, body = TokenList), (status = 403, body = ErrorBody)))]
pub async fn list_tokens(
    State(state): State<AppState>,
    _auth: Auth<perm::TokenRead>,
) -> Result<Json<TokenList>, ApiError> {
    let items = state.store.list_tokens().await?.iter().map(info).collect();
    Ok(Json(TokenList { items }))
}

/// Revokes a token at once. The last live admin token cannot be revoked:
/// that would lock every admin out.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens",
    params(("id" = String, Path, description = "Token id")),
    responses((status = 200, body = TokenInfo), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn revoke_token(
    State(state): State<AppState>,
    Auth(caller, _): Auth<perm::TokenWrite>,
    Path(id): Path<String>,
) -> Result<Json<TokenInfo>, ApiError> {
    let now = state.now();
    let tokens = state.store.list_tokens().await?;
    let live_admin = |t: &&TokenRecord| {
        t.role == Role::Admin && t.revoked_at.is_none() && t.expires_at.is_none_or(|e| e > now)
    };
    let target = tokens
        .iter()
        .find(|t| t.id == id)
        .ok_or_else(|| ApiError::not_found(format!("token {id} not found")))?;
    if live_admin(&target) && tokens.iter().filter(live_admin).count() == 1 {
        return Err(ApiError::conflict(
            "this is the last live admin token; create another admin token first",
        ));
    }
    let audit = caller.audit(
        now,
        "token.revoke",
        &format!("token:{id}"),
        serde_json::json!({}),
    );
    let record = state.store.revoke_token(&id, now, &audit).await?;
    state.tokens.forget(&id);
    Ok(Json(info(&record)))
}
