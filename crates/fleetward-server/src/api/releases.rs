//! Signed releases on the operator API: artifact upload and download,
//! releases and their lifecycle, and the image repository's root.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fleetward_core::ReleaseState;
use fleetward_store::{ArtifactRecord, ReleaseRecord, ReleaseTransition};
use fleetward_tuf::{ROLE_ROOT, ROLE_SNAPSHOT, ROLE_TARGETS, ROLE_TIMESTAMP};
use fleetward_wire::ErrorBody;
use fleetward_wire::release::{
    Artifact, CreateRelease, DelegationUpload, HEADER_SHA256, HEADER_SHA512, OnlineKeys, Release,
    ReleaseList, RepositoryStatus, SigningRequest,
};

use crate::AppState;
use crate::artifacts::{ArtifactError, Declared, RangeAnswer, is_hex, parse_range};
use crate::auth::{Auth, perm};
use crate::error::{ApiError, Json, Path};
use crate::repo::{self, RepoError};

impl From<ArtifactError> for ApiError {
    fn from(error: ArtifactError) -> Self {
        match &error {
            ArtifactError::TooLarge { .. } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "artifact_too_large",
                error.to_string(),
            ),
            ArtifactError::Mismatch { what, .. } => ApiError::unprocessable(
                if *what == "length" {
                    "length_mismatch"
                } else {
                    "hash_mismatch"
                },
                error.to_string(),
            ),
            ArtifactError::CutOff { .. } => {
                ApiError::bad_request("upload_incomplete", error.to_string())
            }
            ArtifactError::Storage(_) | ArtifactError::Io(_) | ArtifactError::Config(_) => {
                tracing::error!(%error, "artifact storage failure");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "artifact_storage_unavailable",
                    "the artifact store failed; nothing was stored (see the server log)",
                )
            }
        }
    }
}

impl From<RepoError> for ApiError {
    fn from(error: RepoError) -> Self {
        use fleetward_tuf::TufError as T;
        match error {
            RepoError::Store(e) => e.into(),
            RepoError::Refused(m) => ApiError::conflict(m),
            e @ RepoError::GateRefused { .. } => {
                ApiError::unprocessable("gate_refused", e.to_string())
            }
            RepoError::NotReady(m) => {
                ApiError::new(StatusCode::CONFLICT, "repository_not_ready", m)
            }
            RepoError::Tuf(e) => {
                let code = match &e {
                    T::BelowThreshold { .. } => "signature_threshold",
                    T::Expired { .. } => "metadata_expired",
                    T::VersionNotIncreasing { .. } => "metadata_version",
                    T::InconsistentRoot(_) => "invalid_root",
                    T::Malformed(_) | T::WrongType { .. } | T::Canonical(_) | T::Key(_) => {
                        "invalid_metadata"
                    }
                };
                ApiError::unprocessable(code, e.to_string())
            }
        }
    }
}

fn releases(state: &AppState) -> Result<&repo::Releases, ApiError> {
    Ok(state.releases.as_ref())
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Uploads an artifact: the raw body, streamed and hashed. Declare its
/// SHA-256 (`X-Fleetward-Sha256`, required), optionally its SHA-512 and its
/// length (`Content-Length`); a mismatch or a cut-off body stores nothing.
#[utoipa::path(post, path = "/api/v1/artifacts", tag = "releases",
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    params(("x-fleetward-sha256" = String, Header, description = "Hex SHA-256 of the body")),
    responses((status = 201, body = Artifact), (status = 200, body = Artifact, description = "Known already"),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 400, body = ErrorBody)))]
pub async fn upload_artifact(
    State(state): State<AppState>,
    Auth(caller, _): Auth<perm::ReleaseWrite>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Artifact>), ApiError> {
    let releases = releases(&state)?;
    let sha256 = header_str(&headers, HEADER_SHA256)
        .map(str::to_ascii_lowercase)
        .ok_or_else(|| {
            ApiError::bad_request(
                "missing_hash",
                format!("declare the body's SHA-256 in {HEADER_SHA256}"),
            )
        })?;
    if !is_hex(&sha256, 64) {
        return Err(ApiError::bad_request(
            "invalid_hash",
            format!("{HEADER_SHA256} is not 64 hex digits"),
        ));
    }
    let sha512 = header_str(&headers, HEADER_SHA512).map(str::to_ascii_lowercase);
    if sha512.as_deref().is_some_and(|h| !is_hex(h, 128)) {
        return Err(ApiError::bad_request(
            "invalid_hash",
            format!("{HEADER_SHA512} is not 128 hex digits"),
        ));
    }
    let length = match header_str(&headers, header::CONTENT_LENGTH.as_str()) {
        Some(raw) => Some(raw.parse::<u64>().map_err(|_| {
            ApiError::bad_request("invalid_length", "Content-Length is not a number")
        })?),
        None => None,
    };
    let declared = Declared {
        sha256: Some(sha256),
        sha512,
        length,
    };
    let ingested = releases
        .artifacts
        .ingest(body.into_data_stream(), &declared)
        .await?;
    let now = state.now();
    let record = ArtifactRecord {
        sha256: ingested.sha256.clone(),
        sha512: ingested.sha512.clone(),
        length: ingested.length,
        created_at: now,
    };
    let audit = caller.audit(
        now,
        "artifact.upload",
        &format!("artifact:{}", ingested.sha256),
        serde_json::json!({ "length": ingested.length }),
    );
    let created = state.store.insert_artifact(&record, &audit).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(Artifact {
            sha256: ingested.sha256,
            sha512: ingested.sha512,
            length: ingested.length,
            created,
        }),
    ))
}

/// Downloads an artifact; supports `Range` (206/416), `ETag`, `If-None-Match`.
#[utoipa::path(get, path = "/api/v1/artifacts/{sha256}", tag = "releases",
    params(("sha256" = String, Path, description = "Hex SHA-256")),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>), (status = 206), (status = 416), (status = 404, body = ErrorBody)))]
pub async fn download_artifact(
    State(state): State<AppState>,
    _auth: Auth<perm::ReleaseRead>,
    Path(sha256): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !is_hex(&sha256, 64) {
        return Err(ApiError::not_found("artifact not found"));
    }
    serve_artifact(&state, &sha256, &headers).await
}

/// When downloads are pre-signed (S3 with `presign`), a 307 to a
/// short-lived URL of the stored artifact; `None` when they are streamed.
/// The client keeps its `Range` header across the redirect and verifies
/// the bytes against signed metadata as always.
pub async fn redirect_artifact(
    state: &AppState,
    sha256: &str,
) -> Result<Option<Response>, ApiError> {
    let artifacts = &releases(state)?.artifacts;
    if !artifacts.presigns() {
        return Ok(None);
    }
    state
        .store
        .artifact(sha256)
        .await?
        .ok_or_else(|| ApiError::not_found("artifact not found"))?;
    let Some(url) = artifacts.presigned_url(sha256).await? else {
        return Ok(None);
    };
    let location = header::HeaderValue::from_str(&url).map_err(|_| ApiError::internal())?;
    Ok(Some(
        (
            StatusCode::TEMPORARY_REDIRECT,
            [
                (header::LOCATION, location),
                (
                    header::CACHE_CONTROL,
                    header::HeaderValue::from_static("no-store"),
                ),
            ],
        )
            .into_response(),
    ))
}

/// Streams a stored artifact with HTTP range and validator semantics.
pub async fn serve_artifact(
    state: &AppState,
    sha256: &str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let record = state
        .store
        .artifact(sha256)
        .await?
        .ok_or_else(|| ApiError::not_found("artifact not found"))?;
    let etag = format!("\"{}\"", record.sha256);
    let etag_matches = |value: &str| {
        value
            .split(',')
            .any(|v| v.trim() == etag || v.trim() == "*")
    };
    if header_str(headers, header::IF_NONE_MATCH.as_str()).is_some_and(etag_matches) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    // A range applies only if the client's copy is still this one.
    let if_range_ok =
        header_str(headers, header::IF_RANGE.as_str()).is_none_or(|v| v.trim() == etag);
    let range_header = header_str(headers, header::RANGE.as_str()).filter(|_| if_range_ok);
    let length = record.length;
    let (status, range) = match parse_range(range_header, length) {
        RangeAnswer::Full => (StatusCode::OK, 0..length),
        RangeAnswer::Partial(range) => (StatusCode::PARTIAL_CONTENT, range),
        RangeAnswer::Unsatisfiable => {
            return Ok((
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{length}"))],
            )
                .into_response());
        }
    };
    let download = releases(state)?
        .artifacts
        .download(sha256, range.clone())
        .await
        .map_err(|e| match e {
            ArtifactError::Storage(object_store::Error::NotFound { .. }) => {
                tracing::error!(sha256, "artifact row without content");
                ApiError::not_found("artifact content missing")
            }
            other => other.into(),
        })?;
    let mut response = Response::new(download.body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    let value = |s: String| header::HeaderValue::from_str(&s).map_err(|_| ApiError::internal());
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(
        header::CONTENT_LENGTH,
        value((range.end - range.start).to_string())?,
    );
    headers.insert(header::ETAG, value(etag)?);
    headers.insert(
        header::ACCEPT_RANGES,
        header::HeaderValue::from_static("bytes"),
    );
    if status == StatusCode::PARTIAL_CONTENT {
        headers.insert(
            header::CONTENT_RANGE,
            value(format!(
                "bytes {}-{}/{length}",
                range.start,
                range.end.saturating_sub(1)
            ))?,
        );
    }
    Ok(response)
}

/// Version, hardware and file names become path segments of target names.
fn valid_segment(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text != "."
        && text != ".."
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
}

async fn to_wire(state: &AppState, record: &ReleaseRecord) -> Result<Release, ApiError> {
    let artifact = state.store.artifact(&record.artifact_sha256).await?;
    let flagged_devices = if record.state == ReleaseState::Revoked {
        state
            .store
            .devices_running(&record.hardware, &record.version, fleetward_store::MAX_PAGE)
            .await?
            .into_iter()
            .map(|d| d.as_str().to_owned())
            .collect()
    } else {
        Vec::new()
    };
    Ok(Release {
        version: record.version.clone(),
        hardware: record.hardware.clone(),
        state: record.state.as_str().to_owned(),
        target_name: record.target_name.clone(),
        artifact_sha256: record.artifact_sha256.clone(),
        artifact_sha512: artifact
            .as_ref()
            .map(|a| a.sha512.clone())
            .unwrap_or_default(),
        length: artifact.as_ref().map_or(0, |a| a.length),
        sbom_sha256: record.sbom_sha256.clone(),
        notes: record.notes.clone(),
        created_at: record.created_at,
        created_by: record.created_by.clone(),
        updated_at: record.updated_at,
        flagged_devices,
    })
}

async fn load(state: &AppState, version: &str) -> Result<ReleaseRecord, ApiError> {
    state
        .store
        .release(version)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("release {version} not found")))
}

/// Creates a draft release from an uploaded artifact.
#[utoipa::path(post, path = "/api/v1/releases", tag = "releases", request_body = CreateRelease,
    responses((status = 201, body = Release), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_release(
    State(state): State<AppState>,
    Auth(caller, _): Auth<perm::ReleaseWrite>,
    Json(request): Json<CreateRelease>,
) -> Result<(StatusCode, Json<Release>), ApiError> {
    for (what, value) in [
        ("version", &request.version),
        ("hardware", &request.hardware),
        ("file_name", &request.file_name),
    ] {
        if !valid_segment(value) {
            return Err(ApiError::unprocessable(
                "invalid_field",
                format!("{what} must be 1 to 64 of A-Z a-z 0-9 . _ + - (and not . or ..)"),
            ));
        }
    }
    let notes = request.notes.clone().unwrap_or_default();
    if notes.len() > 64 * 1024 {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "notes are at most 64 KiB",
        ));
    }
    for sha in std::iter::once(&request.artifact_sha256).chain(request.sbom_sha256.as_ref()) {
        if !is_hex(sha, 64) || state.store.artifact(sha).await?.is_none() {
            return Err(ApiError::unprocessable(
                "unknown_artifact",
                format!("no uploaded artifact has SHA-256 {sha}"),
            ));
        }
    }
    if let Some(sha) = &request.sbom_sha256 {
        // Read at creation: an SBOM the gate could never scan is refused now.
        crate::sbom_gate::check_readable(releases(&state)?, &*state.store, sha)
            .await
            .map_err(|m| ApiError::unprocessable("invalid_sbom", m))?;
    }
    let now = state.now();
    let record = ReleaseRecord {
        version: request.version.clone(),
        hardware: request.hardware.clone(),
        state: ReleaseState::Draft,
        target_name: format!(
            "{}/{}/{}",
            request.hardware, request.version, request.file_name
        ),
        artifact_sha256: request.artifact_sha256.clone(),
        sbom_sha256: request.sbom_sha256.clone(),
        notes,
        created_at: now,
        created_by: caller.token_id.clone(),
        updated_at: now,
    };
    let audit = caller.audit(
        now,
        "release.create",
        &format!("release:{}", record.version),
        serde_json::json!({ "hardware": record.hardware, "artifact": record.artifact_sha256 }),
    );
    state.store.insert_release(&record, &audit).await?;
    Ok((StatusCode::CREATED, Json(to_wire(&state, &record).await?)))
}

/// Lists releases, highest version first.
#[utoipa::path(get, path = "/api/v1/releases", tag = "releases",
    responses((status = 200, body = ReleaseList)))]
pub async fn list_releases(
    State(state): State<AppState>,
    _auth: Auth<perm::ReleaseRead>,
) -> Result<Json<ReleaseList>, ApiError> {
    let mut items = Vec::new();
    for record in state.store.list_releases().await? {
        items.push(to_wire(&state, &record).await?);
    }
    Ok(Json(ReleaseList { items }))
}

/// One release; a revoked one lists the devices still running it.
#[utoipa::path(get, path = "/api/v1/releases/{version}", tag = "releases",
    params(("version" = String, Path, description = "Release version")),
    responses((status = 200, body = Release), (status = 404, body = ErrorBody)))]
pub async fn get_release(
    State(state): State<AppState>,
    _auth: Auth<perm::ReleaseRead>,
    Path(version): Path<String>,
) -> Result<Json<Release>, ApiError> {
    let record = load(&state, &version).await?;
    Ok(Json(to_wire(&state, &record).await?))
}

/// The targets metadata to sign offline for this release.
#[utoipa::path(get, path = "/api/v1/releases/{version}/signing-request", tag = "releases",
    params(("version" = String, Path, description = "Release version")),
    responses((status = 200, body = SigningRequest), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn signing_request(
    State(state): State<AppState>,
    _auth: Auth<perm::ReleaseWrite>,
    Path(version): Path<String>,
) -> Result<Json<SigningRequest>, ApiError> {
    let record = load(&state, &version).await?;
    let request = repo::signing_request(state.store.as_ref(), &record, state.now()).await?;
    let signed = serde_json::to_value(&request.targets).map_err(|_| ApiError::internal())?;
    Ok(Json(SigningRequest {
        signed,
        current: request.current,
        role: request.role,
    }))
}

/// Changes the delegations (one delegated targets role per product line):
/// new top-level targets metadata signed offline with the targets keys,
/// with the metadata of every delegated role it adds or re-keys. Checked
/// as a client would, then published with a new snapshot and timestamp;
/// anything wrong publishes nothing.
#[utoipa::path(post, path = "/api/v1/tuf/delegations", tag = "releases",
    request_body = DelegationUpload,
    responses((status = 200, body = RepositoryStatus), (status = 422, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn upload_delegations(
    State(state): State<AppState>,
    Auth(caller, _): Auth<perm::ReleaseWrite>,
    Json(upload): Json<DelegationUpload>,
) -> Result<Json<RepositoryStatus>, ApiError> {
    let canonical = |what: &str, value: &serde_json::Value| {
        fleetward_tuf::canonical(value)
            .map_err(|e| ApiError::unprocessable("invalid_metadata", format!("{what}: {e}")))
    };
    let top = canonical("targets", &upload.targets)?;
    let mut roles = std::collections::BTreeMap::new();
    for (name, value) in &upload.roles {
        if !fleetward_tuf::valid_role_name(name) {
            return Err(ApiError::unprocessable(
                "invalid_metadata",
                format!("{name:?} is not a delegated role name"),
            ));
        }
        roles.insert(name.clone(), canonical(name, value)?);
    }
    let now = state.now();
    let audit = caller.audit(
        now,
        "tuf.delegations",
        "tuf:targets",
        serde_json::json!({ "roles": upload.roles.keys().collect::<Vec<_>>() }),
    );
    let top = repo::accept_delegations(
        state.store.as_ref(),
        releases(&state)?,
        &top,
        &roles,
        now,
        &audit,
    )
    .await?;
    tracing::info!(
        targets_version = top.version,
        delegated = top.delegations.as_ref().map_or(0, |d| d.roles.len()),
        "delegations accepted"
    );
    Ok(Json(status(&state).await?))
}

/// Uploads targets metadata signed offline (TUF 1.0 JSON, the raw body).
/// Checked like a client would; then snapshot and timestamp are re-signed
/// and the release becomes `signed`. Anything wrong publishes nothing.
#[utoipa::path(post, path = "/api/v1/releases/{version}/signature", tag = "releases",
    params(("version" = String, Path, description = "Release version")),
    request_body(content = Object, content_type = "application/json"),
    responses((status = 200, body = Release), (status = 422, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn upload_signature(
    State(state): State<AppState>,
    Auth(caller, _): Auth<perm::ReleaseWrite>,
    Path(version): Path<String>,
    body: Bytes,
) -> Result<Json<Release>, ApiError> {
    let record = load(&state, &version).await?;
    let now = state.now();
    let audit = caller.audit(
        now,
        "release.sign",
        &format!("release:{version}"),
        serde_json::json!({}),
    );
    let targets = repo::accept_targets(
        state.store.as_ref(),
        releases(&state)?,
        &record,
        &body,
        now,
        &audit,
    )
    .await?;
    tracing::info!(release = %version, targets_version = targets.version, "targets metadata accepted");
    let record = load(&state, &version).await?;
    Ok(Json(to_wire(&state, &record).await?))
}

async fn transition(
    state: &AppState,
    caller: &crate::auth::Caller,
    version: &str,
    action: fleetward_core::ReleaseAction,
    verb: &str,
) -> Result<Json<Release>, ApiError> {
    let record = load(state, version).await?;
    let now = state.now();
    if action == fleetward_core::ReleaseAction::Publish {
        repo::check_publishable(state.store.as_ref(), releases(state)?, &record, now).await?;
    }
    let to = record.state.after(action).map_err(ApiError::conflict)?;
    let flagged = if to == ReleaseState::Revoked {
        state
            .store
            .devices_running(&record.hardware, &record.version, fleetward_store::MAX_PAGE)
            .await?
            .len()
    } else {
        0
    };
    let audit = caller.audit(
        now,
        &format!("release.{verb}"),
        &format!("release:{version}"),
        serde_json::json!({ "from": record.state.as_str(), "to": to.as_str(), "flagged_devices": flagged }),
    );
    let change = ReleaseTransition {
        version: version.to_owned(),
        from: record.state,
        to,
        at: now,
    };
    state.store.publish_tuf(&[], &[change], &audit).await?;
    if flagged > 0 {
        tracing::warn!(release = %version, devices = flagged, "revoked release is still running on devices");
    }
    let record = load(state, version).await?;
    Ok(Json(to_wire(state, &record).await?))
}

/// Publishes a signed release: offered to devices from now on. Requires a
/// valid signature over it and every publish gate.
#[utoipa::path(post, path = "/api/v1/releases/{version}/publish", tag = "releases",
    params(("version" = String, Path, description = "Release version")),
    responses((status = 200, body = Release), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn publish_release(
    State(state): State<AppState>,
    Auth(caller, _): Auth<perm::ReleaseWrite>,
    Path(version): Path<String>,
) -> Result<Json<Release>, ApiError> {
    transition(
        &state,
        &caller,
        &version,
        fleetward_core::ReleaseAction::Publish,
        "publish",
    )
    .await
}

/// Deprecates a published release: no longer offered.
#[utoipa::path(post, path = "/api/v1/releases/{version}/deprecate", tag = "releases",
    params(("version" = String, Path, description = "Release version")),
    responses((status = 200, body = Release), (status = 409, body = ErrorBody)))]
pub async fn deprecate_release(
    State(state): State<AppState>,
    Auth(caller, _): Auth<perm::ReleaseWrite>,
    Path(version): Path<String>,
) -> Result<Json<Release>, ApiError> {
    transition(
        &state,
        &caller,
        &version,
        fleetward_core::ReleaseAction::Deprecate,
        "deprecate",
    )
    .await
}

/// Revokes a release for good: never offered again; devices running it are
/// flagged. The next signed targets metadata drops it.
#[utoipa::path(post, path = "/api/v1/releases/{version}/revoke", tag = "releases",
    params(("version" = String, Path, description = "Release version")),
    responses((status = 200, body = Release), (status = 409, body = ErrorBody)))]
pub async fn revoke_release(
    State(state): State<AppState>,
    Auth(caller, _): Auth<perm::ReleaseWrite>,
    Path(version): Path<String>,
) -> Result<Json<Release>, ApiError> {
    transition(
        &state,
        &caller,
        &version,
        fleetward_core::ReleaseAction::Revoke,
        "revoke",
    )
    .await
}

/// The server's online public keys, for building root metadata offline.
#[utoipa::path(get, path = "/api/v1/tuf/online-keys", tag = "releases",
    responses((status = 200, body = OnlineKeys)))]
pub async fn online_keys(
    State(state): State<AppState>,
    _auth: Auth<perm::ReleaseRead>,
) -> Result<Json<OnlineKeys>, ApiError> {
    let keys = &releases(&state)?.keys;
    let public = |k: &fleetward_tuf::SigningKey| {
        serde_json::to_value(k.public()).map_err(|_| ApiError::internal())
    };
    Ok(Json(OnlineKeys {
        snapshot: public(&keys.snapshot)?,
        timestamp: public(&keys.timestamp)?,
        director: public(&keys.director)?,
    }))
}

async fn status(state: &AppState) -> Result<RepositoryStatus, ApiError> {
    let version = |r: Option<fleetward_store::TufMetadataRecord>| r.map(|r| r.version);
    let timestamp = state.store.tuf_latest(ROLE_TIMESTAMP).await?;
    Ok(RepositoryStatus {
        root_version: version(state.store.tuf_latest(ROLE_ROOT).await?),
        targets_version: version(state.store.tuf_latest(ROLE_TARGETS).await?),
        snapshot_version: version(state.store.tuf_latest(ROLE_SNAPSHOT).await?),
        timestamp_expires: timestamp.as_ref().map(|t| t.expires_at),
        timestamp_version: version(timestamp),
    })
}

/// The image repository's metadata versions.
#[utoipa::path(get, path = "/api/v1/tuf/status", tag = "releases",
    responses((status = 200, body = RepositoryStatus)))]
pub async fn repository_status(
    State(state): State<AppState>,
    _auth: Auth<perm::ReleaseRead>,
) -> Result<Json<RepositoryStatus>, ApiError> {
    Ok(Json(status(&state).await?))
}

/// Uploads root metadata signed offline: the first root, or a rotation
/// signed by the threshold of the current root keys and of its own.
#[utoipa::path(post, path = "/api/v1/tuf/root", tag = "releases",
    request_body(content = Object, content_type = "application/json"),
    responses((status = 200, body = RepositoryStatus), (status = 422, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn upload_root(
    State(state): State<AppState>,
    Auth(caller, _): Auth<perm::ReleaseWrite>,
    body: Bytes,
) -> Result<Json<RepositoryStatus>, ApiError> {
    let now = state.now();
    let audit = caller.audit(now, "tuf.root", "tuf:root", serde_json::json!({}));
    let root = repo::accept_root(
        state.store.as_ref(),
        &releases(&state)?.keys,
        &body,
        now,
        &audit,
    )
    .await?;
    tracing::info!(version = root.version, "root metadata accepted");
    Ok(Json(status(&state).await?))
}
