//! The TUF image repository and the director, server side.
//!
//! The server holds only the online keys (snapshot, timestamp, director),
//! in `<data-dir>/keys/online.json`. Root and targets metadata arrive signed
//! by offline keys (`fleetward keys`, `fleetward release sign`); the server
//! checks them with `fleetward-tuf` exactly as a client would, then signs
//! the snapshot and timestamp that pin them. A background task re-signs
//! timestamp (and snapshot) before they expire; whether it is due is the pure
//! `timestamp_refresh_due`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fleetward_core::{ReleaseAction, ReleaseState};
use fleetward_store::{
    AuditEntry, ReleaseRecord, ReleaseTransition, Store, StoreError, TufMetadataRecord,
};
use fleetward_tuf::{
    Delegations, Expiry, ROLE_ROOT, ROLE_SNAPSHOT, ROLE_TARGETS, ROLE_TIMESTAMP, Role as _, Root,
    Signed, SigningKey, TargetFile, Targets, TufError,
};
use time::OffsetDateTime;

use crate::artifacts::ArtifactStore;

/// Settings of signed releases.
#[derive(Debug, Clone)]
pub struct ReleaseConfig {
    /// Where artifacts are stored; default `<data-dir>/artifacts`.
    pub artifact_dir: Option<PathBuf>,
    /// S3-compatible object storage instead of a directory (replicas).
    pub s3: Option<crate::artifacts::S3Settings>,
    /// Largest artifact accepted, in bytes.
    pub max_artifact_bytes: u64,
    pub timestamp_lifetime: time::Duration,
    pub snapshot_lifetime: time::Duration,
    pub director_lifetime: time::Duration,
    /// How often the background task checks whether to re-sign.
    pub refresh_interval: std::time::Duration,
    /// How often published releases are checked for new vulnerabilities
    /// (a round scans only releases whose advisories or policy changed).
    pub vulnerability_check: std::time::Duration,
}

impl Default for ReleaseConfig {
    fn default() -> Self {
        ReleaseConfig {
            artifact_dir: None,
            s3: None,
            max_artifact_bytes: 4 * 1024 * 1024 * 1024,
            timestamp_lifetime: time::Duration::days(1),
            snapshot_lifetime: time::Duration::days(7),
            director_lifetime: time::Duration::days(1),
            refresh_interval: std::time::Duration::from_secs(60),
            vulnerability_check: crate::vulns::DEFAULT_INTERVAL,
        }
    }
}

/// A check that must pass before a release is published. The SBOM gate of
/// the SCA work plugs in here.
#[async_trait::async_trait]
pub trait PublishGate: Send + Sync + std::fmt::Debug {
    fn name(&self) -> &'static str;
    /// `Err(reason)` refuses the publication.
    async fn check(&self, release: &ReleaseRecord, store: &dyn Store) -> Result<(), String>;
}

/// The online signing keys. Never leave the data dir.
#[derive(Debug, Clone)]
pub struct OnlineKeys {
    pub snapshot: SigningKey,
    pub timestamp: SigningKey,
    pub director: SigningKey,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct OnlineKeysFile {
    snapshot: String,
    timestamp: String,
    director: String,
}

impl OnlineKeys {
    /// Reads `<data-dir>/keys/online.json`, creating it (mode 0600) with
    /// fresh keys on first start.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let dir = data_dir.join("keys");
        let path = dir.join("online.json");
        match std::fs::read(&path) {
            Ok(bytes) => {
                let file: OnlineKeysFile = serde_json::from_slice(&bytes)
                    .with_context(|| format!("parsing {}", path.display()))?;
                let key = |hex_seed: &str| -> anyhow::Result<SigningKey> {
                    let seed = hex::decode(hex_seed).context("online key is not hex")?;
                    Ok(SigningKey::from_seed(&seed)?)
                };
                Ok(OnlineKeys {
                    snapshot: key(&file.snapshot)?,
                    timestamp: key(&file.timestamp)?,
                    director: key(&file.director)?,
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                let fresh = || -> anyhow::Result<SigningKey> {
                    let mut seed = [0u8; 32];
                    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
                    Ok(SigningKey::from_seed(&seed)?)
                };
                let keys = OnlineKeys {
                    snapshot: fresh()?,
                    timestamp: fresh()?,
                    director: fresh()?,
                };
                let file = OnlineKeysFile {
                    snapshot: hex::encode(keys.snapshot.seed()),
                    timestamp: hex::encode(keys.timestamp.seed()),
                    director: hex::encode(keys.director.seed()),
                };
                write_private(&path, &serde_json::to_vec_pretty(&file)?)
                    .with_context(|| format!("writing {}", path.display()))?;
                Ok(keys)
            }
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
}

/// Writes a secret file readable by its owner only, atomically.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let temp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temp, path)
}

/// Everything signed releases need at run time.
#[derive(Debug)]
pub struct Releases {
    pub artifacts: ArtifactStore,
    pub keys: OnlineKeys,
    pub config: ReleaseConfig,
    pub gates: Vec<Arc<dyn PublishGate>>,
}

impl Releases {
    pub fn open(data_dir: &Path, config: ReleaseConfig) -> anyhow::Result<Self> {
        let artifacts = match &config.s3 {
            Some(s3) => ArtifactStore::s3(s3, config.max_artifact_bytes)?,
            None => {
                let dir = config
                    .artifact_dir
                    .clone()
                    .unwrap_or_else(|| crate::artifacts::default_dir(data_dir));
                ArtifactStore::local(&dir, config.max_artifact_bytes)?
            }
        };
        let sbom_gate = crate::sbom_gate::SbomGate::new(data_dir, artifacts.clone());
        Ok(Releases {
            artifacts,
            keys: OnlineKeys::load_or_create(data_dir)?,
            config,
            gates: vec![Arc::new(sbom_gate)],
        })
    }
}

/// Why the repository refused something.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error(transparent)]
    Tuf(#[from] TufError),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    NotReady(String),
    /// A publish gate refused (the SBOM policy): the release itself is the problem.
    #[error("gate {gate} refused: {reason}")]
    GateRefused { gate: &'static str, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn record(
    role: &str,
    version: u64,
    body: Vec<u8>,
    expires: Expiry,
    now: OffsetDateTime,
) -> TufMetadataRecord {
    TufMetadataRecord {
        role: role.to_owned(),
        version,
        body,
        expires_at: expires.0,
        created_at: now,
    }
}

/// The current trusted root, if one was uploaded.
pub async fn current_root(store: &dyn Store) -> Result<Option<Root>, RepoError> {
    let Some(latest) = store.tuf_latest(ROLE_ROOT).await? else {
        return Ok(None);
    };
    let parsed = fleetward_tuf::parse_signed::<Root>(&latest.body)
        .map_err(|e| StoreError::Corrupt(format!("stored root: {e}")))?;
    Ok(Some(parsed.signed))
}

/// The current root, which every upload but the first root needs.
async fn required_root(store: &dyn Store) -> Result<Root, RepoError> {
    current_root(store)
        .await?
        .ok_or_else(|| RepoError::NotReady("the image repository has no root yet".into()))
}

/// Checks a root (first or rotation) and stores it. The root must give the
/// snapshot and timestamp roles to exactly this server's online keys.
pub async fn accept_root(
    store: &dyn Store,
    keys: &OnlineKeys,
    bytes: &[u8],
    now: OffsetDateTime,
    audit: &AuditEntry,
) -> Result<Root, RepoError> {
    let root = match current_root(store).await? {
        None => fleetward_tuf::check_initial_root(bytes, now)?,
        Some(trusted) => fleetward_tuf::check_root_update(&trusted, bytes, now)?,
    };
    for (role, key) in [
        (ROLE_SNAPSHOT, &keys.snapshot),
        (ROLE_TIMESTAMP, &keys.timestamp),
    ] {
        let id = key.key_id()?;
        let listed = &root.roles[role];
        if listed.keyids != [id.clone()] || listed.threshold != 1 {
            return Err(RepoError::Refused(format!(
                "the {role} role must be exactly this server's online {role} key {id} with threshold 1 (see `fleetward keys root`)"
            )));
        }
    }
    let stored = record(ROLE_ROOT, root.version, bytes.to_vec(), root.expires, now);
    store.publish_tuf(&[stored], &[], audit).await?;
    Ok(root)
}

fn target_file(release: &ReleaseRecord, artifact: &fleetward_store::ArtifactRecord) -> TargetFile {
    let mut hashes = BTreeMap::new();
    hashes.insert("sha256".to_owned(), artifact.sha256.clone());
    hashes.insert("sha512".to_owned(), artifact.sha512.clone());
    TargetFile {
        length: artifact.length,
        hashes,
        custom: Some(serde_json::json!({
            "version": release.version,
            "hardware": release.hardware,
        })),
    }
}

/// The target entries the image repository must list: every release that
/// is signed, published or deprecated, plus `adding`.
pub async fn expected_targets(
    store: &dyn Store,
    adding: Option<&ReleaseRecord>,
) -> Result<BTreeMap<String, TargetFile>, RepoError> {
    let mut targets = BTreeMap::new();
    for release in store.list_releases().await? {
        let listed = adding.is_some_and(|a| a.version == release.version)
            || (release.state != ReleaseState::Draft && release.state.listed_in_targets());
        if !listed {
            continue;
        }
        let artifact = store
            .artifact(&release.artifact_sha256)
            .await?
            .ok_or_else(|| {
                StoreError::Corrupt(format!("artifact of release {}", release.version))
            })?;
        targets.insert(
            release.target_name.clone(),
            target_file(&release, &artifact),
        );
    }
    Ok(targets)
}

/// Which role signs `target`: the first delegated role (one per product
/// line) whose paths match, or the top-level targets role (`None`). A
/// client searching the repository finds it there first (spec §5.6.7).
pub fn signing_role<'a>(delegations: Option<&'a Delegations>, target: &str) -> Option<&'a str> {
    delegations?
        .roles
        .iter()
        .find(|role| role.is_delegated_path(target))
        .map(|role| role.name.as_str())
}

/// `targets` split by the role that must list each entry (`None`: the
/// top-level role). Every delegated role gets an entry, empty or not.
pub fn partition(
    targets: BTreeMap<String, TargetFile>,
    delegations: Option<&Delegations>,
) -> BTreeMap<Option<String>, BTreeMap<String, TargetFile>> {
    let mut listings: BTreeMap<Option<String>, BTreeMap<String, TargetFile>> = BTreeMap::new();
    listings.insert(None, BTreeMap::new());
    for role in delegations.iter().flat_map(|d| &d.roles) {
        listings.insert(Some(role.name.clone()), BTreeMap::new());
    }
    for (name, file) in targets {
        let role = signing_role(delegations, &name).map(str::to_owned);
        listings.entry(role).or_default().insert(name, file);
    }
    listings
}

/// Signed metadata of `who` must list exactly `expected`, with the stored
/// artifacts' lengths and hashes.
fn check_listing(
    who: &str,
    listed: &BTreeMap<String, TargetFile>,
    expected: &BTreeMap<String, TargetFile>,
) -> Result<(), RepoError> {
    for (name, file) in expected {
        match listed.get(name) {
            None => {
                return Err(RepoError::Refused(format!(
                    "the signed {who} metadata does not list {name}; sign the current signing request"
                )));
            }
            Some(signed) if signed.length != file.length || signed.hashes != file.hashes => {
                return Err(RepoError::Refused(format!(
                    "the signed {who} metadata describes {name} with a different length or hashes than the stored artifact"
                )));
            }
            Some(_) => {}
        }
    }
    if let Some(extra) = listed.keys().find(|n| !expected.contains_key(*n)) {
        return Err(RepoError::Refused(format!(
            "the signed {who} metadata lists {extra}, which is not a signed, published or deprecated release of {who}"
        )));
    }
    Ok(())
}

/// The served top-level targets metadata (checked when it was uploaded).
async fn current_top(store: &dyn Store) -> Result<Option<Targets>, RepoError> {
    let Some(latest) = store.tuf_latest(ROLE_TARGETS).await? else {
        return Ok(None);
    };
    let raw = fleetward_tuf::parse_signed::<Targets>(&latest.body)
        .map_err(|e| StoreError::Corrupt(format!("stored targets: {e}")))?;
    Ok(Some(raw.signed))
}

/// The served metadata of delegated role `role`, parsed and checked
/// against `delegations` (signature threshold).
async fn current_delegated(
    store: &dyn Store,
    delegations: &Delegations,
    role: &str,
) -> Result<Option<Targets>, RepoError> {
    let Some(latest) = store.tuf_latest(role).await? else {
        return Ok(None);
    };
    let raw = fleetward_tuf::parse_signed::<Targets>(&latest.body)
        .map_err(|e| StoreError::Corrupt(format!("stored {role} metadata: {e}")))?;
    let delegated = delegations
        .role(role)
        .ok_or_else(|| RepoError::Refused(format!("{role} is not delegated")))?;
    delegations.verify(delegated, &raw.canonical_signed, &raw.signatures)?;
    Ok(Some(raw.signed))
}

/// The versions of every delegated role the snapshot must pin.
async fn delegated_versions(
    store: &dyn Store,
    delegations: Option<&Delegations>,
) -> Result<BTreeMap<String, u64>, RepoError> {
    let mut versions = BTreeMap::new();
    for role in delegations.iter().flat_map(|d| &d.roles) {
        let latest = store.tuf_latest(&role.name).await?.ok_or_else(|| {
            StoreError::Corrupt(format!("delegated role {} has no metadata", role.name))
        })?;
        versions.insert(role.name.clone(), latest.version);
    }
    Ok(versions)
}

/// What a release manager signs for one release.
#[derive(Debug)]
pub struct SigningProposal {
    /// The delegated role that signs, or `None` for the top-level targets role.
    pub role: Option<String>,
    pub targets: Targets,
    /// The currently served metadata of that role, if any.
    pub current: Option<serde_json::Value>,
}

/// Where `release` is signed: the served delegations, the role a client
/// would find it in, and what that role must list once it is signed.
struct SigningPlace {
    delegations: Option<Delegations>,
    role: Option<String>,
    expected: BTreeMap<String, TargetFile>,
}

impl SigningPlace {
    async fn of(store: &dyn Store, release: &ReleaseRecord) -> Result<Self, RepoError> {
        let delegations = current_top(store).await?.and_then(|t| t.delegations);
        let role = signing_role(delegations.as_ref(), &release.target_name).map(str::to_owned);
        let expected = partition(
            expected_targets(store, Some(release)).await?,
            delegations.as_ref(),
        )
        .remove(&role)
        .unwrap_or_default();
        Ok(SigningPlace {
            delegations,
            role,
            expected,
        })
    }
}

/// What the release manager is asked to sign for `release`: the next
/// metadata of the role that signs its product line.
pub async fn signing_request(
    store: &dyn Store,
    release: &ReleaseRecord,
    now: OffsetDateTime,
) -> Result<SigningProposal, RepoError> {
    if current_root(store).await?.is_none() {
        return Err(RepoError::NotReady(
            "the image repository has no root yet; upload one with `fleetward keys root`".into(),
        ));
    }
    release
        .state
        .after(ReleaseAction::Sign)
        .map_err(RepoError::Refused)?;
    let place = SigningPlace::of(store, release).await?;
    let stored_role = place.role.as_deref().unwrap_or(ROLE_TARGETS);
    let current = store.tuf_latest(stored_role).await?;
    let version = current.as_ref().map_or(1, |c| c.version + 1);
    let current = current
        .map(|c| serde_json::from_slice(&c.body))
        .transpose()
        .map_err(|e| StoreError::Corrupt(format!("stored {stored_role}: {e}")))?;
    let mut targets = Targets::new(
        version,
        Expiry::at(now + time::Duration::days(90)),
        place.expected,
    );
    if place.role.is_none() {
        // Re-signing the top-level role keeps its delegations.
        targets.delegations = place.delegations;
    }
    Ok(SigningProposal {
        role: place.role,
        targets,
        current,
    })
}

/// Checks targets metadata signed offline for `release` and publishes it
/// with a new snapshot and timestamp, moving the release to `signed`.
pub async fn accept_targets(
    store: &dyn Store,
    releases: &Releases,
    release: &ReleaseRecord,
    bytes: &[u8],
    now: OffsetDateTime,
    audit: &AuditEntry,
) -> Result<Targets, RepoError> {
    let root = required_root(store).await?;
    let to = release
        .state
        .after(ReleaseAction::Sign)
        .map_err(RepoError::Refused)?;
    let place = SigningPlace::of(store, release).await?;
    let (delegations, expected) = (place.delegations.as_ref(), &place.expected);
    let mut versions = delegated_versions(store, delegations).await?;
    let (targets, stored_role, targets_version) = match (place.role.as_deref(), delegations) {
        (Some(role), Some(delegations)) => {
            let current = store.tuf_latest(role).await?.map(|c| c.version);
            let signed =
                fleetward_tuf::check_delegated_targets(delegations, role, bytes, current, now)?;
            check_listing(role, &signed.targets, expected)?;
            versions.insert(role.to_owned(), signed.version);
            let top_version = store
                .tuf_latest(ROLE_TARGETS)
                .await?
                .map_or(0, |t| t.version);
            (signed, role, top_version)
        }
        _ => {
            let current = store.tuf_latest(ROLE_TARGETS).await?.map(|c| c.version);
            let signed = fleetward_tuf::check_targets(&root, bytes, current, now)?;
            if signed.delegations.as_ref() != delegations {
                return Err(RepoError::Refused(
                    "the signed targets metadata changes the delegations; change them with `fleetward keys delegate`"
                        .into(),
                ));
            }
            check_listing(ROLE_TARGETS, &signed.targets, expected)?;
            let version = signed.version;
            (signed, ROLE_TARGETS, version)
        }
    };
    let mut items = vec![record(
        stored_role,
        targets.version,
        bytes.to_vec(),
        targets.expires,
        now,
    )];
    items.extend(
        online_metadata(
            store,
            &releases.keys,
            &releases.config,
            targets_version,
            &versions,
            now,
        )
        .await?,
    );
    let transitions: Vec<_> = (to != release.state)
        .then(|| ReleaseTransition {
            version: release.version.clone(),
            from: release.state,
            to,
            at: now,
        })
        .into_iter()
        .collect();
    store.publish_tuf(&items, &transitions, audit).await?;
    Ok(targets)
}

/// Checks new top-level targets metadata that changes the delegations
/// (signed offline with the targets keys), with the metadata of every
/// delegated role it adds or re-keys (signed with that role's new keys),
/// and publishes them together with a new snapshot and timestamp.
///
/// Afterwards the repository must be whole: the top-level role lists
/// exactly the releases no delegation covers, and each delegated role
/// (uploaded now, or as served before) is signed by its threshold under
/// the new delegations and lists exactly its product line's releases.
/// Anything else publishes nothing.
pub async fn accept_delegations(
    store: &dyn Store,
    releases: &Releases,
    top_bytes: &[u8],
    roles: &BTreeMap<String, Vec<u8>>,
    now: OffsetDateTime,
    audit: &AuditEntry,
) -> Result<Targets, RepoError> {
    let root = required_root(store).await?;
    let current = store.tuf_latest(ROLE_TARGETS).await?.map(|c| c.version);
    let top = fleetward_tuf::check_targets(&root, top_bytes, current, now)?;
    let delegations = top.delegations.clone().unwrap_or_default();
    if let Some(stray) = roles.keys().find(|r| delegations.role(r).is_none()) {
        return Err(RepoError::Refused(format!(
            "metadata for {stray} was uploaded, but the new targets metadata does not delegate to it"
        )));
    }
    let mut items = vec![record(
        ROLE_TARGETS,
        top.version,
        top_bytes.to_vec(),
        top.expires,
        now,
    )];
    // Signatures and paths first (what is wrong with the upload itself),
    // then whether the listings add up.
    let mut signed_roles = Vec::new();
    for role in &delegations.roles {
        let signed = match roles.get(&role.name) {
            Some(bytes) => {
                let current = store.tuf_latest(&role.name).await?.map(|s| s.version);
                let signed = fleetward_tuf::check_delegated_targets(
                    &delegations,
                    &role.name,
                    bytes,
                    current,
                    now,
                )?;
                items.push(record(
                    &role.name,
                    signed.version,
                    bytes.clone(),
                    signed.expires,
                    now,
                ));
                signed
            }
            None => {
                let signed = current_delegated(store, &delegations, &role.name)
                    .await
                    .map_err(|e| {
                        RepoError::Refused(format!(
                            "the served {} metadata does not verify under the new delegations ({e}); upload it re-signed",
                            role.name
                        ))
                    })?
                    .ok_or_else(|| {
                        RepoError::Refused(format!(
                            "{} is delegated but has no metadata; upload its first version",
                            role.name
                        ))
                    })?;
                fleetward_tuf::check_not_expired(&signed, now)?;
                signed
            }
        };
        signed_roles.push((role.name.clone(), signed));
    }
    let mut listings = partition(expected_targets(store, None).await?, Some(&delegations));
    check_listing(
        ROLE_TARGETS,
        &top.targets,
        &listings.remove(&None).unwrap_or_default(),
    )?;
    let mut versions = BTreeMap::new();
    for (name, signed) in signed_roles {
        let expected = listings.remove(&Some(name.clone())).unwrap_or_default();
        check_listing(&name, &signed.targets, &expected)?;
        versions.insert(name, signed.version);
    }
    items.extend(
        online_metadata(
            store,
            &releases.keys,
            &releases.config,
            top.version,
            &versions,
            now,
        )
        .await?,
    );
    store.publish_tuf(&items, &[], audit).await?;
    Ok(top)
}

/// New snapshot (pinning targets `targets_version`) and timestamp.
async fn online_metadata(
    store: &dyn Store,
    keys: &OnlineKeys,
    config: &ReleaseConfig,
    targets_version: u64,
    delegated: &BTreeMap<String, u64>,
    now: OffsetDateTime,
) -> Result<Vec<TufMetadataRecord>, RepoError> {
    let snapshot_version = store
        .tuf_latest(ROLE_SNAPSHOT)
        .await?
        .map_or(1, |s| s.version + 1);
    let snapshot = fleetward_tuf::snapshot_with(
        snapshot_version,
        Expiry::at(now + config.snapshot_lifetime),
        targets_version,
        delegated,
    );
    let snapshot_expires = snapshot.expires();
    let snapshot_bytes = Signed::sign(snapshot, &[&keys.snapshot])?.to_bytes()?;
    let mut items = vec![record(
        ROLE_SNAPSHOT,
        snapshot_version,
        snapshot_bytes.clone(),
        snapshot_expires,
        now,
    )];
    items
        .push(timestamp_record(store, keys, config, snapshot_version, &snapshot_bytes, now).await?);
    Ok(items)
}

async fn timestamp_record(
    store: &dyn Store,
    keys: &OnlineKeys,
    config: &ReleaseConfig,
    snapshot_version: u64,
    snapshot_bytes: &[u8],
    now: OffsetDateTime,
) -> Result<TufMetadataRecord, RepoError> {
    let version = store
        .tuf_latest(ROLE_TIMESTAMP)
        .await?
        .map_or(1, |t| t.version + 1);
    let timestamp = fleetward_tuf::timestamp_for(
        version,
        Expiry::at(now + config.timestamp_lifetime),
        snapshot_version,
        snapshot_bytes,
    );
    let expires = timestamp.expires();
    let bytes = Signed::sign(timestamp, &[&keys.timestamp])?.to_bytes()?;
    Ok(record(ROLE_TIMESTAMP, version, bytes, expires, now))
}

/// Re-signs snapshot and/or timestamp when less than half their lifetime is
/// left. Returns whether anything was signed.
pub async fn refresh(
    store: &dyn Store,
    keys: &OnlineKeys,
    config: &ReleaseConfig,
    now: OffsetDateTime,
) -> Result<bool, RepoError> {
    let (Some(snapshot), Some(timestamp)) = (
        store.tuf_latest(ROLE_SNAPSHOT).await?,
        store.tuf_latest(ROLE_TIMESTAMP).await?,
    ) else {
        return Ok(false);
    };
    let snapshot_due = fleetward_tuf::timestamp_refresh_due(
        now,
        Expiry(snapshot.expires_at),
        config.snapshot_lifetime,
    );
    let timestamp_due = fleetward_tuf::timestamp_refresh_due(
        now,
        Expiry(timestamp.expires_at),
        config.timestamp_lifetime,
    );
    let items = if snapshot_due {
        let Some(targets) = store.tuf_latest(ROLE_TARGETS).await? else {
            return Ok(false);
        };
        let top = current_top(store).await?;
        let versions =
            delegated_versions(store, top.as_ref().and_then(|t| t.delegations.as_ref())).await?;
        online_metadata(store, keys, config, targets.version, &versions, now).await?
    } else if timestamp_due {
        vec![timestamp_record(store, keys, config, snapshot.version, &snapshot.body, now).await?]
    } else {
        return Ok(false);
    };
    let audit = AuditEntry {
        at: now,
        actor: "server".to_owned(),
        action: "tuf.refresh".to_owned(),
        target: "tuf:timestamp".to_owned(),
        source: "server".to_owned(),
        detail: serde_json::json!({ "snapshot": snapshot_due }),
    };
    store.publish_tuf(&items, &[], &audit).await?;
    Ok(true)
}

/// Runs [`refresh`] every `refresh_interval` until `stop` flips, on the
/// one replica holding the [`crate::lease::TUF_TIMESTAMP`] lease.
pub async fn refresh_task(
    store: Arc<dyn Store>,
    releases: Arc<Releases>,
    holder: crate::lease::Holder,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let interval = releases.config.refresh_interval;
    loop {
        let now = OffsetDateTime::now_utc();
        if crate::lease::hold(&*store, crate::lease::TUF_TIMESTAMP, &holder, interval, now).await {
            match refresh(store.as_ref(), &releases.keys, &releases.config, now).await {
                Ok(true) => tracing::info!("re-signed timestamp metadata"),
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%error, "re-signing timestamp metadata failed; will retry")
                }
            }
        }
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => break,
            () = tokio::time::sleep(interval) => {}
        }
    }
    crate::lease::release(&*store, crate::lease::TUF_TIMESTAMP, &holder).await;
}

/// Whether `release` may be published now: a valid signature over it in the
/// served targets metadata, and every gate.
pub async fn check_publishable(
    store: &dyn Store,
    releases: &Releases,
    release: &ReleaseRecord,
    now: OffsetDateTime,
) -> Result<(), RepoError> {
    release
        .state
        .after(ReleaseAction::Publish)
        .map_err(RepoError::Refused)?;
    let root = current_root(store)
        .await?
        .ok_or_else(|| RepoError::NotReady("no root".into()))?;
    let latest = store
        .tuf_latest(ROLE_TARGETS)
        .await?
        .ok_or_else(|| RepoError::Refused("no signed targets metadata".into()))?;
    let raw = fleetward_tuf::parse_signed::<Targets>(&latest.body)?;
    fleetward_tuf::verify_role(&raw.canonical_signed, &raw.signatures, &root, ROLE_TARGETS)?;
    fleetward_tuf::check_not_expired(&raw.signed, now)?;
    let top = raw.signed;
    let delegations = top.delegations.as_ref();
    let listing = match (signing_role(delegations, &release.target_name), delegations) {
        (Some(role), Some(delegations)) => {
            let signed = current_delegated(store, delegations, role)
                .await?
                .ok_or_else(|| RepoError::Refused(format!("{role} has no signed metadata")))?;
            fleetward_tuf::check_not_expired(&signed, now).map_err(|_| TufError::Expired {
                role: role.to_owned(),
                expires: signed.expires.to_rfc3339(),
            })?;
            signed.targets
        }
        _ => top.targets,
    };
    let artifact = store
        .artifact(&release.artifact_sha256)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("artifact of {}", release.version)))?;
    let expected = target_file(release, &artifact);
    match listing.get(&release.target_name) {
        Some(file) if file.length == expected.length && file.hashes == expected.hashes => {}
        _ => {
            return Err(RepoError::Refused(format!(
                "the signed targets metadata does not list {}; sign the release first",
                release.target_name
            )));
        }
    }
    for gate in &releases.gates {
        gate.check(release, store)
            .await
            .map_err(|reason| RepoError::GateRefused {
                gate: gate.name(),
                reason,
            })?;
    }
    Ok(())
}
