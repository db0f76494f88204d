//! Serving the image repository (`/tuf/metadata/…`, `/tuf/targets/…`) and
//! the director's per-device metadata.
//!
//! Devices read `/tuf/` on the device listener; operators read it on the
//! operator listener with a token. The layout is TUF's with consistent
//! snapshots: `N.root.json`, `timestamp.json`, `N.snapshot.json`,
//! `N.targets.json`, and targets as `<dir>/<sha256>.<name>`.

use crate::device::DeviceIdentity;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fleetward_tuf::{
    DirectorImage, Expiry, ROLE_ROOT, ROLE_SNAPSHOT, ROLE_TARGETS, ROLE_TIMESTAMP, Signed,
};

use crate::AppState;
use crate::api::releases::serve_artifact;
use crate::artifacts::is_hex;
use crate::auth::{Auth, perm};
use crate::error::{ApiError, Path};

/// Which stored metadata a file name under `/tuf/metadata/` means: a
/// top-level role, or a delegated one (`3.rev2.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataFile {
    Version(String, u64),
    Latest(String),
}

/// Parses `1.root.json`, `timestamp.json`, `3.targets.json`, `root.json`,
/// `2.rev2.json`…
pub fn parse_metadata_file(name: &str) -> Option<MetadataFile> {
    let stem = name.strip_suffix(".json")?;
    let role = |r: &str| {
        ([ROLE_ROOT, ROLE_TARGETS, ROLE_SNAPSHOT, ROLE_TIMESTAMP].contains(&r)
            || fleetward_tuf::valid_role_name(r))
        .then(|| r.to_owned())
    };
    match stem.split_once('.') {
        None => role(stem).map(MetadataFile::Latest),
        Some((version, r)) => {
            let role = role(r)?;
            // Timestamp is never versioned in the file name (TUF 5.3).
            if role == ROLE_TIMESTAMP
                || version.is_empty()
                || version.len() > 19
                || version.starts_with('0')
            {
                return None;
            }
            let version = version
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| version.parse().ok())??;
            Some(MetadataFile::Version(role, version))
        }
    }
}

async fn metadata(state: &AppState, name: &str) -> Result<Response, ApiError> {
    let not_found = || ApiError::not_found(format!("metadata {name} not found"));
    let record = match parse_metadata_file(name).ok_or_else(not_found)? {
        MetadataFile::Latest(role) => state.store.tuf_latest(&role).await?,
        MetadataFile::Version(role, version) => state.store.tuf_version(&role, version).await?,
    }
    .ok_or_else(not_found)?;
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        record.body,
    )
        .into_response())
}

/// A target path `dir/…/<sha256>.<basename>`: the content is looked up by
/// its hash (the client verifies it against signed metadata anyway).
///
/// `redirect`: devices may be sent to a pre-signed URL of the object store
/// (operators always get the bytes through the server, with their token).
async fn target(
    state: &AppState,
    path: &str,
    headers: &HeaderMap,
    redirect: bool,
) -> Result<Response, ApiError> {
    let basename = path.rsplit('/').next().unwrap_or("");
    let sha256 = basename.split_once('.').map_or(basename, |(hash, _)| hash);
    if !is_hex(sha256, 64) || !fleetward_tuf::valid_target_name(path) {
        return Err(ApiError::not_found("target not found"));
    }
    if redirect
        && let Some(response) = crate::api::releases::redirect_artifact(state, sha256).await?
    {
        return Ok(response);
    }
    serve_artifact(state, sha256, headers).await
}

pub async fn device_metadata(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    metadata(&state, &name).await
}

pub async fn device_target(
    State(state): State<AppState>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    target(&state, &path, &headers, true).await
}

pub async fn operator_metadata(
    State(state): State<AppState>,
    _auth: Auth<perm::ReleaseRead>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    metadata(&state, &name).await
}

pub async fn operator_target(
    State(state): State<AppState>,
    _auth: Auth<perm::ReleaseRead>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    target(&state, &path, &headers, false).await
}

/// The director's targets metadata for the calling device: the image of
/// its current rollout execution (offered, or released and now offered),
/// signed with the online director key, with `execution_id` and
/// `rollout_id` in the target's `custom`. 404 when nothing is offered:
/// there is no fallback to "the latest release"; only rollouts ship.
pub async fn director_targets(
    State(state): State<AppState>,
    caller: DeviceIdentity,
) -> Result<Response, ApiError> {
    let nothing = || ApiError::not_found("no update is offered to this device");
    let device_id = caller.device_id;
    // A device that was just told "nothing" is told so again without a
    // database read (see `cache::DirectorCache`: at most a second, and
    // dropped as soon as this server's rollouts change).
    if state
        .director
        .has_nothing_for(&device_id, std::time::Instant::now())
    {
        feed_schedule(&state, &device_id, state.now()).await?;
        return Err(nothing());
    }
    let epoch = state.director.epoch();
    let device = state.store.device(&device_id).await?.ok_or_else(|| {
        ApiError::unauthenticated("unknown_device", "this device is not registered")
    })?;
    if !crate::rollout::receives_updates(device.status) {
        return Err(nothing());
    }
    let now = state.now();
    feed_schedule(&state, &device.id, now).await?;
    let Some(execution) = state.store.serve_execution(&device.id, now).await? else {
        state
            .director
            .remember_nothing(&device.id, epoch, std::time::Instant::now());
        return Err(nothing());
    };
    let release = state
        .store
        .release(&execution.release_version)
        .await?
        .ok_or_else(ApiError::internal)?;
    // Checked at creation too; a release revoked since is never named, and
    // an image for other hardware never reaches a device.
    if !release.state.offerable() || release.hardware != device.hardware {
        return Err(nothing());
    }
    let artifact = state
        .store
        .artifact(&release.artifact_sha256)
        .await?
        .ok_or_else(ApiError::internal)?;
    let image = DirectorImage {
        device_id: device.id.as_str().to_owned(),
        target_name: release.target_name.clone(),
        length: artifact.length,
        sha256: artifact.sha256,
        sha512: artifact.sha512,
        release_version: release.version.clone(),
        hardware: release.hardware.clone(),
    };
    // Versions are the signing time in seconds: monotonic per device as long
    // as the server clock is, with no per-device state to keep.
    let version = u64::try_from(now.unix_timestamp()).unwrap_or(1);
    let releases = state.releases.as_ref();
    let mut metadata = fleetward_tuf::director_targets(
        version,
        Expiry::at(now + releases.config.director_lifetime),
        &image,
    );
    for target in metadata.targets.values_mut() {
        if let Some(serde_json::Value::Object(custom)) = target.custom.as_mut() {
            custom.insert("execution_id".into(), execution.id.to_string().into());
            custom.insert("rollout_id".into(), execution.rollout_id.clone().into());
        }
    }
    let body = Signed::sign(metadata, &[&releases.keys.director])
        .and_then(|s| s.to_bytes())
        .map_err(|_| ApiError::internal())?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// The director is what agents poll: its rhythm is the poll schedule.
async fn feed_schedule(
    state: &AppState,
    device: &fleetward_core::DeviceId,
    now: time::OffsetDateTime,
) -> Result<(), ApiError> {
    let interval = state.settings().await?.poll_interval_secs;
    if let Some(off) = state.monitor.watch.poll(
        device,
        time::Duration::seconds(i64::from(interval)),
        now,
        state.monitor.policy(),
    ) {
        crate::monitor::Monitor::log(&*state.store, off).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{MetadataFile as M, parse_metadata_file};

    #[test]
    fn metadata_file_names() {
        let check = |name: &str, expected: Option<M>| {
            assert_eq!(parse_metadata_file(name), expected, "{name}")
        };
        let version = |role: &str, v| Some(M::Version(role.to_owned(), v));
        check("1.root.json", version("root", 1));
        check("12.targets.json", version("targets", 12));
        check("3.snapshot.json", version("snapshot", 3));
        check("timestamp.json", Some(M::Latest("timestamp".into())));
        check("root.json", Some(M::Latest("root".into())));
        // Delegated roles (one per product line).
        check("2.rev2.json", version("rev2", 2));
        check("rev2.json", Some(M::Latest("rev2".into())));
        check("2.Rev2.json", None);
        check("2.rev.2.json", None);
        check("2.2rev.json", None);
        check("1.timestamp.json", None);
        check("01.root.json", None);
        check("-1.root.json", None);
        check("1.root", None);
        check("99999999999999999999.root.json", None);
        check("../1.root.json", None);
    }
}
