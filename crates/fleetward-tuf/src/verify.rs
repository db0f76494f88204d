//! Checking uploaded metadata, and building the metadata the server signs
//! online (snapshot, timestamp, director targets).
//!
//! The checks are the TUF client's own rules applied at the server's door, so
//! that nothing a client would reject is ever published: signatures over the
//! canonical `signed` bytes by a threshold of distinct authorised keys, the
//! right `_type`, an expiry after `now`, and versions that only go forward.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use crate::delegation::Delegations;
use crate::meta::{Expiry, MetaFile, Role, Root, Snapshot, TargetFile, Targets, Timestamp};
use crate::{
    ROLE_ROOT, ROLE_TARGETS, Result, SPEC_VERSION, Signature, TufError, cjson,
    meta::{ROLE_SNAPSHOT, ROLE_TIMESTAMP},
};

/// Parsed metadata together with the canonical bytes its signatures cover.
#[derive(Debug, Clone)]
pub struct RawSigned<T> {
    pub signed: T,
    pub signatures: Vec<Signature>,
    /// Canonical JSON of the `signed` object exactly as received.
    pub canonical_signed: Vec<u8>,
}

#[derive(Deserialize)]
struct Envelope {
    signatures: Vec<Signature>,
    signed: serde_json::Value,
}

/// Parses a metadata file of role `T`, keeping the signed bytes for
/// verification. Checks the `_type` and spec major version.
pub fn parse_signed<T: Role>(bytes: &[u8]) -> Result<RawSigned<T>> {
    let envelope: Envelope =
        serde_json::from_slice(bytes).map_err(|e| TufError::Malformed(e.to_string()))?;
    let found = envelope
        .signed
        .get("_type")
        .and_then(|t| t.as_str())
        .unwrap_or("")
        .to_owned();
    if found != T::TYPE {
        return Err(TufError::WrongType {
            expected: T::TYPE,
            found,
        });
    }
    let spec = envelope
        .signed
        .get("spec_version")
        .and_then(|t| t.as_str())
        .unwrap_or("");
    if spec.split('.').next() != SPEC_VERSION.split('.').next() {
        return Err(TufError::Malformed(format!(
            "unsupported spec_version {spec:?}"
        )));
    }
    let canonical_signed = cjson::canonical(&envelope.signed)?;
    let signed: T = serde_json::from_value(envelope.signed)
        .map_err(|e| TufError::Malformed(format!("{} metadata: {e}", T::TYPE)))?;
    Ok(RawSigned {
        signed,
        signatures: envelope.signatures,
        canonical_signed,
    })
}

/// Succeeds when at least the threshold of `root`'s keys for `role` signed
/// `canonical_signed`. Each key counts once however often it signed.
pub fn verify_role(
    canonical_signed: &[u8],
    signatures: &[Signature],
    root: &Root,
    role: &str,
) -> Result<()> {
    let (keys, threshold) = root.role_keys(role)?;
    verify_threshold(canonical_signed, signatures, keys, threshold, role)
}

/// The threshold rule for any role, top-level or delegated: distinct
/// authorised keys with a valid signature over the canonical bytes.
pub(crate) fn verify_threshold(
    canonical_signed: &[u8],
    signatures: &[Signature],
    keys: Vec<(&String, &crate::PublicKey)>,
    threshold: u64,
    role: &str,
) -> Result<()> {
    let mut valid = BTreeSet::new();
    for signature in signatures {
        let Some((id, key)) = keys.iter().find(|(id, _)| **id == signature.keyid) else {
            continue;
        };
        let Ok(sig) = hex::decode(&signature.sig) else {
            continue;
        };
        if key.verifies(canonical_signed, &sig) {
            valid.insert((*id).clone());
        }
    }
    if (valid.len() as u64) < threshold {
        return Err(TufError::BelowThreshold {
            role: role.to_owned(),
            valid: valid.len(),
            threshold,
        });
    }
    Ok(())
}

fn not_expired<T: Role>(signed: &T, now: OffsetDateTime) -> Result<()> {
    if signed.expires().is_past(now) {
        return Err(TufError::Expired {
            role: T::TYPE.to_owned(),
            expires: signed.expires().to_rfc3339(),
        });
    }
    Ok(())
}

/// The first root of a repository: version 1, consistent, signed by its own
/// root threshold, not expired. (Trust in it comes from who uploads it.)
pub fn check_initial_root(bytes: &[u8], now: OffsetDateTime) -> Result<Root> {
    let raw = parse_signed::<Root>(bytes)?;
    raw.signed.check_consistent()?;
    if raw.signed.version != 1 {
        return Err(TufError::VersionNotIncreasing {
            role: ROLE_ROOT.to_owned(),
            current: 0,
            got: raw.signed.version,
        });
    }
    verify_role(
        &raw.canonical_signed,
        &raw.signatures,
        &raw.signed,
        ROLE_ROOT,
    )?;
    not_expired(&raw.signed, now)?;
    Ok(raw.signed)
}

/// A new root as a TUF client accepts it (spec 5.3.4–5.3.5): signed by the
/// threshold of the trusted root's root keys and by its own, with version
/// exactly one more, and not expired.
pub fn check_root_update(trusted: &Root, bytes: &[u8], now: OffsetDateTime) -> Result<Root> {
    let root = check_root_successor(trusted, bytes)?;
    not_expired(&root, now)?;
    Ok(root)
}

/// One step of a client's root chain (spec 5.3.4–5.3.5) without the
/// expiry check, which TUF applies only to the last root of the chain
/// (an intermediate root may have expired long ago).
pub fn check_root_successor(trusted: &Root, bytes: &[u8]) -> Result<Root> {
    let raw = parse_signed::<Root>(bytes)?;
    raw.signed.check_consistent()?;
    verify_role(&raw.canonical_signed, &raw.signatures, trusted, ROLE_ROOT)?;
    verify_role(
        &raw.canonical_signed,
        &raw.signatures,
        &raw.signed,
        ROLE_ROOT,
    )?;
    if raw.signed.version != trusted.version + 1 {
        return Err(TufError::VersionNotIncreasing {
            role: ROLE_ROOT.to_owned(),
            current: trusted.version,
            got: raw.signed.version,
        });
    }
    Ok(raw.signed)
}

/// Fails when `signed` has expired at `now` (spec 5.3.10, 5.4.4, 5.5.6, 5.6.6).
pub fn check_not_expired<T: Role>(signed: &T, now: OffsetDateTime) -> Result<()> {
    not_expired(signed, now)
}

/// Target names are paths below `/tuf/targets/`: relative, no `..`, no
/// empty segments, a conservative alphabet.
pub fn valid_target_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
        })
}

/// Uploaded top-level targets metadata: signed by the threshold of the
/// root's targets keys, version above `current` (if there is one), not
/// expired, well-formed target entries.
pub fn check_targets(
    root: &Root,
    bytes: &[u8],
    current: Option<u64>,
    now: OffsetDateTime,
) -> Result<Targets> {
    let raw = parse_signed::<Targets>(bytes)?;
    verify_role(&raw.canonical_signed, &raw.signatures, root, ROLE_TARGETS)?;
    let current = current.unwrap_or(0);
    if raw.signed.version <= current {
        return Err(TufError::VersionNotIncreasing {
            role: ROLE_TARGETS.to_owned(),
            current,
            got: raw.signed.version,
        });
    }
    not_expired(&raw.signed, now)?;
    check_entries(&raw.signed)?;
    Ok(raw.signed)
}

/// Well-formed target entries and delegations, in any targets metadata.
fn check_entries(targets: &Targets) -> Result<()> {
    for (name, file) in &targets.targets {
        if !valid_target_name(name) {
            return Err(TufError::Malformed(format!("target name {name:?}")));
        }
        let sha256 = file.hashes.get("sha256").map(String::as_str).unwrap_or("");
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TufError::Malformed(format!(
                "target {name:?} lacks a sha256 hash"
            )));
        }
    }
    if let Some(delegations) = &targets.delegations {
        delegations.check_consistent()?;
    }
    Ok(())
}

/// Uploaded metadata of the delegated role `role` of `delegations`: signed
/// by the role's threshold, version above `current`, not expired,
/// well-formed, and listing only targets the role is trusted for (a client
/// would ignore the others; the server refuses them at the door).
pub fn check_delegated_targets(
    delegations: &Delegations,
    role: &str,
    bytes: &[u8],
    current: Option<u64>,
    now: OffsetDateTime,
) -> Result<Targets> {
    let delegated = delegations
        .role(role)
        .ok_or_else(|| TufError::Malformed(format!("no delegated role {role}")))?;
    let raw = parse_signed::<Targets>(bytes)?;
    delegations.verify(delegated, &raw.canonical_signed, &raw.signatures)?;
    let current = current.unwrap_or(0);
    if raw.signed.version <= current {
        return Err(TufError::VersionNotIncreasing {
            role: role.to_owned(),
            current,
            got: raw.signed.version,
        });
    }
    if raw.signed.expires.is_past(now) {
        return Err(TufError::Expired {
            role: role.to_owned(),
            expires: raw.signed.expires.to_rfc3339(),
        });
    }
    check_entries(&raw.signed)?;
    if let Some(outside) = raw
        .signed
        .targets
        .keys()
        .find(|name| !delegated.is_delegated_path(name))
    {
        return Err(TufError::Malformed(format!(
            "{role} lists {outside}, which is outside the paths delegated to it"
        )));
    }
    Ok(raw.signed)
}

/// The snapshot pinning targets `targets_version`.
pub fn snapshot_for(version: u64, expires: Expiry, targets_version: u64) -> Snapshot {
    snapshot_with(version, expires, targets_version, &BTreeMap::new())
}

/// The snapshot pinning targets `targets_version` and each delegated role
/// at its version (`<role>.json`, as spec §4.4 names them).
pub fn snapshot_with(
    version: u64,
    expires: Expiry,
    targets_version: u64,
    delegated: &BTreeMap<String, u64>,
) -> Snapshot {
    let mut meta: BTreeMap<String, MetaFile> = delegated
        .iter()
        .map(|(role, version)| {
            (
                format!("{role}.json"),
                MetaFile {
                    version: *version,
                    length: None,
                    hashes: None,
                },
            )
        })
        .collect();
    meta.insert(
        "targets.json".to_owned(),
        MetaFile {
            version: targets_version,
            length: None,
            hashes: None,
        },
    );
    Snapshot {
        type_: ROLE_SNAPSHOT.to_owned(),
        spec_version: SPEC_VERSION.to_owned(),
        version,
        expires,
        meta,
    }
}

/// The timestamp pinning the snapshot whose served bytes are `snapshot_bytes`
/// (version, length and SHA-256, so a swapped snapshot is caught).
pub fn timestamp_for(
    version: u64,
    expires: Expiry,
    snapshot_version: u64,
    snapshot_bytes: &[u8],
) -> Timestamp {
    let mut hashes = BTreeMap::new();
    hashes.insert(
        "sha256".to_owned(),
        hex::encode(Sha256::digest(snapshot_bytes)),
    );
    let mut meta = BTreeMap::new();
    meta.insert(
        "snapshot.json".to_owned(),
        MetaFile {
            version: snapshot_version,
            length: Some(snapshot_bytes.len() as u64),
            hashes: Some(hashes),
        },
    );
    Timestamp {
        type_: ROLE_TIMESTAMP.to_owned(),
        spec_version: SPEC_VERSION.to_owned(),
        version,
        expires,
        meta,
    }
}

/// Whether the timestamp that expires at `expires` must be re-signed now:
/// once less than half its lifetime is left, so that a missed run or two
/// never lets devices see it expire.
pub fn timestamp_refresh_due(
    now: OffsetDateTime,
    expires: Expiry,
    lifetime: time::Duration,
) -> bool {
    expires.0 - now < lifetime / 2
}

/// The image one device must install, as the director names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectorImage {
    pub device_id: String,
    /// The target name in the image repository.
    pub target_name: String,
    pub length: u64,
    pub sha256: String,
    pub sha512: String,
    pub release_version: String,
    pub hardware: String,
}

/// Director targets metadata for one device: exactly one target, the image
/// that device must install, with the hashes and length the image repository
/// lists for it (a device installs only when both agree).
pub fn director_targets(version: u64, expires: Expiry, image: &DirectorImage) -> Targets {
    let mut hashes = BTreeMap::new();
    hashes.insert("sha256".to_owned(), image.sha256.clone());
    hashes.insert("sha512".to_owned(), image.sha512.clone());
    let mut targets = BTreeMap::new();
    targets.insert(
        image.target_name.clone(),
        TargetFile {
            length: image.length,
            hashes,
            custom: Some(serde_json::json!({
                "device_id": image.device_id,
                "hardware": image.hardware,
                "version": image.release_version,
            })),
        },
    );
    Targets::new(version, expires, targets)
}
