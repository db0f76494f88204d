//! The update decision: every check between metadata bytes from the
//! network and "this image may be written to the inactive slot".
//!
//! Pure functions over bytes already read (bounded) from the network, the
//! trusted state and `now`: no I/O, no clock, so every attack is a table
//! row in a unit test and a fuzz input. The signature, threshold, root
//! chain and expiry rules are `fleetward_tuf`'s (one definition of valid,
//! shared with the server); this module adds the client's workflow (TUF
//! 1.0 §5: root chain, timestamp → snapshot → targets with versions that
//! never go back, lengths and hashes pinned by the role above) and the
//! Uptane rule that the director's per-device metadata and the image
//! repository must agree on the image.

use std::cmp::Ordering;

use fleetward_tuf::{
    MetaFile, PublicKey, ROLE_SNAPSHOT, ROLE_TARGETS, ROLE_TIMESTAMP, Root, Snapshot, TargetFile,
    Targets, Timestamp, TufError, check_not_expired, parse_signed, verify_role,
};
use fleetward_wire::device::DeviceSecurityKind;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

/// Why an update was refused. Every refusal is also a security report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Tuf(#[from] TufError),
    #[error("{role} metadata version {got} is older than the trusted version {trusted}")]
    MetadataRollback {
        role: String,
        trusted: u64,
        got: u64,
    },
    #[error("image version {offered} is older than the installed version {installed}")]
    ImageRollback { offered: String, installed: String },
    #[error("{0}")]
    Mismatch(String),
}

impl Refusal {
    /// The security-event kind the device reports for this refusal.
    pub fn security_kind(&self) -> DeviceSecurityKind {
        match self {
            Refusal::MetadataRollback { .. } | Refusal::ImageRollback { .. } => {
                DeviceSecurityKind::RollbackAttempt
            }
            _ => DeviceSecurityKind::VerificationFailed,
        }
    }
}

fn mismatch(message: impl Into<String>) -> Refusal {
    Refusal::Mismatch(message.into())
}

/// Metadata versions the device has seen verified; they never go back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenVersions {
    pub timestamp: u64,
    pub snapshot: u64,
    pub targets: u64,
    pub director: u64,
}

/// Who this device is, as the director must name it.
#[derive(Debug, Clone, Copy)]
pub struct Me<'a> {
    pub device_id: &'a str,
    pub hardware: &'a str,
}

fn not_older(role: &str, trusted: u64, got: u64) -> Result<(), Refusal> {
    if got < trusted {
        return Err(Refusal::MetadataRollback {
            role: role.to_owned(),
            trusted,
            got,
        });
    }
    Ok(())
}

/// Length and hashes of fetched metadata against what the role above
/// pinned (absent fields are not pinned).
fn pinned(name: &str, bytes: &[u8], meta: &MetaFile) -> Result<(), Refusal> {
    if let Some(length) = meta.length
        && bytes.len() as u64 != length
    {
        return Err(mismatch(format!(
            "{name} is {} bytes; the metadata above pins {length}",
            bytes.len()
        )));
    }
    if let Some(hashes) = &meta.hashes {
        if let Some(expected) = hashes.get("sha256") {
            if hex::encode(Sha256::digest(bytes)) != expected.to_ascii_lowercase() {
                return Err(mismatch(format!("{name} does not have the pinned sha256")));
            }
        } else if !hashes.is_empty() {
            return Err(mismatch(format!("{name} is pinned without a sha256")));
        }
    }
    Ok(())
}

/// A new root after `trusted` (exactly one version more, signed by both
/// thresholds). Expiry is checked on the last root of the chain only,
/// with [`check_root_fresh`].
pub fn next_root(trusted: &Root, bytes: &[u8]) -> Result<Root, Refusal> {
    Ok(fleetward_tuf::check_root_successor(trusted, bytes)?)
}

/// The final root of the chain must not have expired (indefinite freeze).
pub fn check_root_fresh(root: &Root, now: OffsetDateTime) -> Result<(), Refusal> {
    Ok(check_not_expired(root, now)?)
}

/// A timestamp: signed by the root's timestamp threshold, not older than
/// the last one seen, pinning a snapshot not older than the last one
/// seen, not expired. Returns it with the snapshot pin.
pub fn check_timestamp(
    root: &Root,
    bytes: &[u8],
    seen: &SeenVersions,
    now: OffsetDateTime,
) -> Result<(Timestamp, MetaFile), Refusal> {
    let raw = parse_signed::<Timestamp>(bytes)?;
    verify_role(&raw.canonical_signed, &raw.signatures, root, ROLE_TIMESTAMP)?;
    not_older(ROLE_TIMESTAMP, seen.timestamp, raw.signed.version)?;
    let snapshot = raw
        .signed
        .meta
        .get("snapshot.json")
        .cloned()
        .ok_or_else(|| mismatch("timestamp does not pin snapshot.json"))?;
    not_older(ROLE_SNAPSHOT, seen.snapshot, snapshot.version)?;
    check_not_expired(&raw.signed, now)?;
    Ok((raw.signed, snapshot))
}

/// The snapshot the timestamp pinned: its bytes, version and signatures,
/// a targets version not older than seen, not expired. Returns the
/// targets pin.
pub fn check_snapshot(
    root: &Root,
    bytes: &[u8],
    pin: &MetaFile,
    seen: &SeenVersions,
    now: OffsetDateTime,
) -> Result<(Snapshot, MetaFile), Refusal> {
    pinned("snapshot.json", bytes, pin)?;
    let raw = parse_signed::<Snapshot>(bytes)?;
    verify_role(&raw.canonical_signed, &raw.signatures, root, ROLE_SNAPSHOT)?;
    if raw.signed.version != pin.version {
        return Err(mismatch(format!(
            "snapshot version {} is not the version {} the timestamp pins",
            raw.signed.version, pin.version
        )));
    }
    let targets = raw
        .signed
        .meta
        .get("targets.json")
        .cloned()
        .ok_or_else(|| mismatch("snapshot does not list targets.json"))?;
    not_older(ROLE_TARGETS, seen.targets, targets.version)?;
    check_not_expired(&raw.signed, now)?;
    Ok((raw.signed, targets))
}

/// The image repository's targets the snapshot pinned.
pub fn check_repo_targets(
    root: &Root,
    bytes: &[u8],
    pin: &MetaFile,
    now: OffsetDateTime,
) -> Result<Targets, Refusal> {
    pinned("targets.json", bytes, pin)?;
    let raw = parse_signed::<Targets>(bytes)?;
    verify_role(&raw.canonical_signed, &raw.signatures, root, ROLE_TARGETS)?;
    if raw.signed.version != pin.version {
        return Err(mismatch(format!(
            "targets version {} is not the version {} the snapshot pins",
            raw.signed.version, pin.version
        )));
    }
    check_not_expired(&raw.signed, now)?;
    Ok(raw.signed)
}

/// What the director tells this device to install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectorOffer {
    pub version_of_metadata: u64,
    pub target_name: String,
    pub length: u64,
    pub sha256: String,
    pub sha512: Option<String>,
    /// The release version the image is.
    pub release: String,
    pub execution_id: Option<String>,
    pub rollout_id: Option<String>,
}

fn custom_str<'a>(custom: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    custom.get(key).and_then(serde_json::Value::as_str)
}

fn lower_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The director's per-device targets: signed by the pinned director key,
/// not older than seen, not expired, exactly one target, naming this
/// device and its hardware.
pub fn check_director(
    key: &PublicKey,
    bytes: &[u8],
    me: Me<'_>,
    seen: &SeenVersions,
    now: OffsetDateTime,
) -> Result<DirectorOffer, Refusal> {
    let raw = parse_signed::<Targets>(bytes)?;
    let keyid = fleetward_tuf::key_id(key)?;
    let signed = raw.signatures.iter().any(|s| {
        s.keyid == keyid
            && hex::decode(&s.sig).is_ok_and(|sig| key.verifies(&raw.canonical_signed, &sig))
    });
    if !signed {
        return Err(Refusal::Tuf(TufError::BelowThreshold {
            role: "director targets".into(),
            valid: 0,
            threshold: 1,
        }));
    }
    not_older("director targets", seen.director, raw.signed.version)?;
    check_not_expired(&raw.signed, now)?;
    let mut targets = raw.signed.targets.iter();
    let (Some((name, file)), None) = (targets.next(), targets.next()) else {
        return Err(mismatch("director metadata must name exactly one image"));
    };
    if !fleetward_tuf::valid_target_name(name) {
        return Err(mismatch(format!("director names a bad target {name:?}")));
    }
    let custom = file
        .custom
        .as_ref()
        .ok_or_else(|| mismatch("director target has no custom fields"))?;
    if custom_str(custom, "device_id") != Some(me.device_id) {
        return Err(mismatch(format!(
            "director metadata is for device {:?}, not this one",
            custom_str(custom, "device_id").unwrap_or("")
        )));
    }
    if custom_str(custom, "hardware") != Some(me.hardware) {
        return Err(mismatch(format!(
            "director offers an image for hardware {:?}; this device is {:?}",
            custom_str(custom, "hardware").unwrap_or(""),
            me.hardware
        )));
    }
    let release = custom_str(custom, "version")
        .filter(|v| !v.is_empty() && v.len() <= 64 && !v.chars().any(char::is_control))
        .ok_or_else(|| mismatch("director target has no usable version"))?;
    let sha256 = file
        .hashes
        .get("sha256")
        .filter(|h| lower_hex(h, 64))
        .ok_or_else(|| mismatch("director target lacks a sha256"))?;
    let sha512 = file.hashes.get("sha512").cloned();
    let id = |key: &str| {
        custom_str(custom, key)
            .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
            .map(str::to_owned)
    };
    Ok(DirectorOffer {
        version_of_metadata: raw.signed.version,
        target_name: name.clone(),
        length: file.length,
        sha256: sha256.clone(),
        sha512,
        release: release.to_owned(),
        execution_id: id("execution_id"),
        rollout_id: id("rollout_id"),
    })
}

/// The director and the image repository must describe the same image:
/// listed under the same name with the same length and the same hashes,
/// and (where the repository says) the same version and hardware.
pub fn check_agreement(
    offer: &DirectorOffer,
    repo: &Targets,
    me: Me<'_>,
) -> Result<TargetFile, Refusal> {
    let listed = repo.targets.get(&offer.target_name).ok_or_else(|| {
        mismatch(format!(
            "the image repository does not list {}",
            offer.target_name
        ))
    })?;
    if listed.length != offer.length {
        return Err(mismatch(format!(
            "director says {} is {} bytes, the image repository {}",
            offer.target_name, offer.length, listed.length
        )));
    }
    if listed.hashes.get("sha256") != Some(&offer.sha256) {
        return Err(mismatch(format!(
            "director and image repository disagree on the sha256 of {}",
            offer.target_name
        )));
    }
    if let (Some(a), Some(b)) = (&offer.sha512, listed.hashes.get("sha512"))
        && a != b
    {
        return Err(mismatch(format!(
            "director and image repository disagree on the sha512 of {}",
            offer.target_name
        )));
    }
    if let Some(custom) = &listed.custom {
        if let Some(version) = custom_str(custom, "version")
            && version != offer.release
        {
            return Err(mismatch(format!(
                "director says {} is version {}, the image repository {version}",
                offer.target_name, offer.release
            )));
        }
        if let Some(hardware) = custom_str(custom, "hardware")
            && hardware != me.hardware
        {
            return Err(mismatch(format!(
                "the image repository lists {} for hardware {hardware:?}; this device is {:?}",
                offer.target_name, me.hardware
            )));
        }
    }
    Ok(listed.clone())
}

/// What to do with an agreed offer, given what the device runs and the
/// highest version it ever installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    UpToDate,
    Install,
}

pub fn decide(
    offered: &str,
    running: Option<&str>,
    highest: Option<&str>,
) -> Result<Decision, Refusal> {
    if running == Some(offered) {
        return Ok(Decision::UpToDate);
    }
    for floor in [running, highest].into_iter().flatten() {
        if fleetward_core::version::compare(offered, floor) == Ordering::Less {
            return Err(Refusal::ImageRollback {
                offered: offered.to_owned(),
                installed: floor.to_owned(),
            });
        }
    }
    Ok(Decision::Install)
}
