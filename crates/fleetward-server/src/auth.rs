//! Operator authentication: bearer tokens with roles.
//!
//! A token reads `fwt_<id>_<secret>`. The id finds the record; only the
//! SHA-256 of the secret is stored, and it is compared in constant time. The
//! secret carries 256 random bits, so a fast hash is enough: there is nothing
//! to brute-force.
//!
//! Handlers name the permission they need in their signature,
//! `Auth<perm::FleetWrite>`, so the check runs before the body is even read
//! and no handler can forget it.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::{StatusCode, request::Parts};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fleetward_core::{Permission, Role};
use fleetward_store::{AuditEntry, TokenRecord};
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::AppState;
use crate::error::ApiError;

const PREFIX: &str = "fwt_";
const ID_BYTES: usize = 8;
const SECRET_BYTES: usize = 32;

/// A freshly minted token: the string to hand out once, and its record parts.
#[derive(Debug)]
pub struct MintedToken {
    pub id: String,
    pub token: String,
    pub secret_hash: [u8; 32],
}

pub fn mint_token() -> MintedToken {
    let mut id = [0u8; ID_BYTES];
    let mut secret = [0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut id);
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let id = hex::encode(id);
    let secret = URL_SAFE_NO_PAD.encode(secret);
    let secret_hash = Sha256::digest(secret.as_bytes()).into();
    MintedToken {
        token: format!("{PREFIX}{id}_{secret}"),
        id,
        secret_hash,
    }
}

/// Splits a presented token into id and secret, without judging it yet.
fn split_token(presented: &str) -> Option<(&str, &str)> {
    let rest = presented.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let id_ok = id.len() == ID_BYTES * 2 && id.bytes().all(|b| b.is_ascii_hexdigit());
    let secret_ok = secret.len() == 43
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (id_ok && secret_ok).then_some((id, secret))
}

/// The authenticated caller of an operator route.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token_id: String,
    pub name: String,
    pub role: Role,
    pub expires_at: Option<OffsetDateTime>,
    /// The peer's address, for the audit log.
    pub source: String,
}

impl Caller {
    /// The audit record of an action this caller takes.
    pub fn audit(
        &self,
        at: OffsetDateTime,
        action: &str,
        target: &str,
        detail: serde_json::Value,
    ) -> AuditEntry {
        AuditEntry {
            at,
            actor: format!("token:{} ({})", self.token_id, self.name),
            action: action.to_owned(),
            target: target.to_owned(),
            source: self.source.clone(),
            detail,
        }
    }

    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.role.allows(permission) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("role {} may not do this (needs {permission:?})", self.role),
            ))
        }
    }
}

/// Checks a presented token against its stored record at `now`.
pub fn check_token(
    record: Option<TokenRecord>,
    secret: &str,
    now: OffsetDateTime,
) -> Result<TokenRecord, ApiError> {
    let invalid = || ApiError::unauthenticated("invalid_token", "the token is not valid");
    let record = record.ok_or_else(invalid)?;
    let presented: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
    if !bool::from(presented.ct_eq(&record.secret_hash)) {
        return Err(invalid());
    }
    if record.revoked_at.is_some() {
        return Err(ApiError::unauthenticated(
            "token_revoked",
            "the token has been revoked",
        ));
    }
    if record.expires_at.is_some_and(|expiry| expiry <= now) {
        return Err(ApiError::unauthenticated(
            "token_expired",
            "the token has expired",
        ));
    }
    Ok(record)
}

pub(crate) fn peer_of(parts: &Parts) -> Option<SocketAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr)
}

pub(crate) fn source_of(parts: &Parts) -> String {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.to_string())
        .unwrap_or_else(|| "unknown".to_owned())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let result = authenticate(parts, state).await;
        // A token that was presented and refused is a failed authentication
        // (logged, and counted by the burst rule); no token at all is not.
        if let Err(error) = &result
            && error.status == StatusCode::UNAUTHORIZED
            && parts.headers.contains_key(AUTHORIZATION)
            && let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>()
        {
            crate::monitor::record_auth_failure(
                state,
                *peer,
                "operator:?",
                "operator.auth_failed",
                error.code,
            )
            .await;
        }
        result
    }
}

async fn authenticate(parts: &Parts, state: &AppState) -> Result<Caller, ApiError> {
    let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
        ApiError::unauthenticated(
            "unauthenticated",
            "send an operator token as `Authorization: Bearer <token>`",
        )
    })?;
    let presented = header
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            ApiError::unauthenticated(
                "invalid_token",
                "the Authorization header is not `Bearer <token>`",
            )
        })?;
    caller_for_token(state, presented, source_of(parts)).await
}

/// The caller a presented operator token stands for, checked exactly as the
/// API checks it (hash, expiry, revocation). The console's session cookie
/// carries the same token, so both doors apply one rule.
pub async fn caller_for_token(
    state: &AppState,
    presented: &str,
    source: String,
) -> Result<Caller, ApiError> {
    let (id, secret) = split_token(presented)
        .ok_or_else(|| ApiError::unauthenticated("invalid_token", "the token is not valid"))?;
    let record = match state.tokens.get(id, Instant::now()) {
        Some(record) => Some(record),
        None => {
            let record = state.store.token(id).await?;
            if let Some(record) = &record {
                state.tokens.put(record.clone(), Instant::now());
            }
            record
        }
    };
    let record = check_token(record, secret, state.now())?;
    Ok(Caller {
        token_id: record.id,
        name: record.name,
        role: record.role,
        expires_at: record.expires_at,
        source,
    })
}

/// A permission a route requires, as a type.
pub trait Required: Send + Sync {
    const PERMISSION: Permission;
}

/// An authenticated caller whose role allows `R`.
#[derive(Debug)]
pub struct Auth<R: Required>(pub Caller, pub PhantomData<R>);

impl<R: Required> FromRequestParts<AppState> for Auth<R> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.require(R::PERMISSION)?;
        Ok(Auth(caller, PhantomData))
    }
}

/// One marker type per [`Permission`], for use as `Auth<perm::X>`.
pub mod perm {
    use super::{Permission, Required};

    macro_rules! markers {
        ($($name:ident),* $(,)?) => {$(
            #[derive(Debug)]
            pub struct $name;
            impl Required for $name {
                const PERMISSION: Permission = Permission::$name;
            }
        )*};
    }

    markers!(
        FleetRead,
        FleetWrite,
        ReleaseRead,
        ReleaseWrite,
        RolloutRead,
        RolloutWrite,
        AuditRead,
        TokenRead,
        TokenWrite,
        SettingsRead,
        SettingsWrite,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> TokenRecord {
        TokenRecord {
            id: id.into(),
            name: "n".into(),
            role: Role::Viewer,
            secret_hash: [0; 32],
            created_at: OffsetDateTime::UNIX_EPOCH,
            expires_at: None,
            revoked_at: None,
            created_by: "test".into(),
        }
    }

    #[test]
    fn cached_token_records_expire_and_can_be_forgotten() {
        let cache = TokenCache::default();
        let start = Instant::now();
        cache.put(record("a"), start);
        assert!(cache.get("a", start).is_some());
        assert!(
            cache.get("a", start + TokenCache::TTL).is_none(),
            "stale after the TTL"
        );
        assert!(cache.get("b", start).is_none());
        cache.forget("a");
        assert!(cache.get("a", start).is_none(), "forgotten at once");
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = TokenCache::default();
        let start = Instant::now();
        for n in 0..(TokenCache::MAX_ENTRIES + 10) {
            cache.put(record(&n.to_string()), start);
        }
        let size = cache.entries.lock().unwrap().len();
        assert!(size <= TokenCache::MAX_ENTRIES, "{size}");
    }

    #[test]
    fn minted_tokens_split_back() {
        let minted = mint_token();
        let (id, secret) = split_token(&minted.token).expect("minted token splits");
        assert_eq!(id, minted.id);
        let hash: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        assert_eq!(hash, minted.secret_hash);
        assert_ne!(mint_token().token, minted.token);
    }

    #[test]
    fn malformed_tokens_do_not_split() {
        let good = mint_token().token;
        for bad in [
            "",
            "fwt_",
            "fwt_abc_def",
            &good.replacen("fwt_", "xyz_", 1),
            &format!("{good}x"),
            &good[..good.len() - 1],
            &good.replace('_', "-"),
        ] {
            assert_eq!(split_token(bad), None, "{bad:?}");
        }
    }
}

/// Token records recently read from the store, so that a busy client does
/// not cost a database read per request.
///
/// Only the stored record is cached (the hash, role, expiry, revocation); the
/// presented secret is still checked against the hash on every request, and
/// expiry against the clock. A revocation through this process drops the
/// entry at once; another replica of the server sees it within
/// [`TokenCache::TTL`].
#[derive(Debug, Default)]
pub struct TokenCache {
    entries: std::sync::Mutex<HashMap<String, (TokenRecord, Instant)>>,
}

impl TokenCache {
    pub const TTL: Duration = Duration::from_secs(1);
    /// Bounds memory whatever token ids clients make up (only tokens that
    /// exist are ever cached, but there may be many).
    const MAX_ENTRIES: usize = 10_000;

    fn get(&self, id: &str, now: Instant) -> Option<TokenRecord> {
        let entries = self.entries.lock().ok()?;
        let (record, fetched) = entries.get(id)?;
        (now.saturating_duration_since(*fetched) < Self::TTL).then(|| record.clone())
    }

    fn put(&self, record: TokenRecord, now: Instant) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= Self::MAX_ENTRIES {
                entries
                    .retain(|_, (_, fetched)| now.saturating_duration_since(*fetched) < Self::TTL);
                if entries.len() >= Self::MAX_ENTRIES {
                    entries.clear();
                }
            }
            entries.insert(record.id.clone(), (record, now));
        }
    }

    /// Forgets a token whose record changed (revocation).
    pub fn forget(&self, id: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(id);
        }
    }
}
