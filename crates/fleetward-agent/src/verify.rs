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
    DelegatedRole, Delegations, MetaFile, PublicKey, ROLE_SNAPSHOT, ROLE_TARGETS, ROLE_TIMESTAMP,
    Root, Snapshot, TargetFile, Targets, Timestamp, TufError, check_not_expired, parse_signed,
    verify_role,
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

/// Delegated targets roles the device has seen verified, by name, with
/// their versions; like the top-level roles they never go back.
pub type SeenDelegated = std::collections::BTreeMap<String, u64>;

/// The snapshot's pins for delegated roles may not go back, nor may a role
/// seen before disappear from it (TUF 1.0 §5.5.5).
pub fn check_snapshot_delegated(snapshot: &Snapshot, seen: &SeenDelegated) -> Result<(), Refusal> {
    for (role, trusted) in seen {
        let pin = snapshot
            .meta
            .get(&format!("{role}.json"))
            .ok_or_else(|| mismatch(format!("the snapshot no longer lists {role}.json")))?;
        not_older(role, *trusted, pin.version)?;
    }
    Ok(())
}

/// The snapshot's pin of delegated role `role`.
pub fn delegated_pin(snapshot: &Snapshot, role: &str) -> Result<MetaFile, Refusal> {
    // The name goes into a URL: only names fleetward itself would make.
    if !fleetward_tuf::valid_role_name(role) {
        return Err(mismatch(format!("delegated role name {role:?}")));
    }
    snapshot
        .meta
        .get(&format!("{role}.json"))
        .cloned()
        .ok_or_else(|| mismatch(format!("the snapshot does not list {role}.json")))
}

/// Metadata of the delegated role `role` that `delegations` (of a targets
/// role already trusted) name: the bytes the snapshot pinned, signed by
/// the role's own threshold, at exactly the pinned version, not expired
/// (TUF 1.0 §5.6 for a delegated role).
pub fn check_delegated(
    delegations: &Delegations,
    role: &DelegatedRole,
    bytes: &[u8],
    pin: &MetaFile,
    now: OffsetDateTime,
) -> Result<Targets, Refusal> {
    let file = format!("{}.json", role.name);
    pinned(&file, bytes, pin)?;
    let raw = parse_signed::<Targets>(bytes)?;
    delegations.verify(role, &raw.canonical_signed, &raw.signatures)?;
    if raw.signed.version != pin.version {
        return Err(mismatch(format!(
            "{} version {} is not the version {} the snapshot pins",
            role.name, raw.signed.version, pin.version
        )));
    }
    if raw.signed.expires.is_past(now) {
        return Err(Refusal::Tuf(TufError::Expired {
            role: role.name.clone(),
            expires: raw.signed.expires.to_rfc3339(),
        }));
    }
    Ok(raw.signed)
}

/// Where the search for a target goes next (TUF 1.0 §5.6.7.2, preorder
/// depth first): a stack of (role, the targets metadata delegating to it).
/// The caller fetches and checks each role with [`check_delegated`] and
/// calls [`TargetSearch::visit`] with it.
#[derive(Debug)]
pub struct TargetSearch {
    target: String,
    stack: Vec<(DelegatedRole, Delegations)>,
    visited: std::collections::BTreeSet<String>,
}

/// At most this many delegated roles are visited for one target, as
/// python-tuf's `max_delegations`.
pub const MAX_DELEGATIONS: usize = 32;

/// The outcome of looking into one targets role.
#[derive(Debug)]
pub enum Found {
    Listed(TargetFile),
    /// Not here: visit this role next, delegated by these delegations.
    Next(DelegatedRole, Delegations),
    /// No role that is trusted for the target lists it.
    Absent,
}

impl TargetSearch {
    /// Starts at the top-level targets metadata.
    pub fn start(top: &Targets, target: &str) -> (Self, Found) {
        let mut search = TargetSearch {
            target: target.to_owned(),
            stack: Vec::new(),
            visited: std::collections::BTreeSet::new(),
        };
        let found = search.visit(ROLE_TARGETS, top);
        (search, found)
    }

    /// Looks into `targets`, the verified metadata of `role`.
    pub fn visit(&mut self, role: &str, targets: &Targets) -> Found {
        if let Some(file) = targets.targets.get(&self.target) {
            return Found::Listed(file.clone());
        }
        self.visited.insert(role.to_owned());
        if let Some(delegations) = &targets.delegations {
            let (roles, terminating) = delegations.roles_for_target(&self.target);
            if terminating {
                // A terminating role forbids backtracking past it.
                self.stack.clear();
            }
            for child in roles.into_iter().rev() {
                self.stack.push((child.clone(), delegations.clone()));
            }
        }
        self.next()
    }

    fn next(&mut self) -> Found {
        while let Some((role, delegations)) = self.stack.pop() {
            if self.visited.contains(&role.name) {
                continue;
            }
            if self.visited.len() > MAX_DELEGATIONS {
                return Found::Absent;
            }
            return Found::Next(role, delegations);
        }
        Found::Absent
    }
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
///
/// `listed` is what the image repository's search found for the target
/// (the top-level role or the delegated role trusted for it).
pub fn check_agreement(
    offer: &DirectorOffer,
    listed: Option<&TargetFile>,
    me: Me<'_>,
) -> Result<TargetFile, Refusal> {
    let listed = listed.ok_or_else(|| {
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

#[cfg(test)]
mod tests {
    //! One row per attack class on metadata (TUF/Uptane): each must be
    //! refused with the right security kind.
    use std::collections::BTreeMap;

    use fleetward_tuf::{
        DirectorImage, Expiry, ROLE_ROOT, Signed, SigningKey, director_targets, snapshot_for,
        timestamp_for,
    };
    use time::Duration;

    use super::*;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_seed(&[n; 32]).unwrap()
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn later(days: i64) -> Expiry {
        Expiry::at(now() + Duration::days(days))
    }

    /// root 1,2 (2 of 2), targets 3,4 (2 of 2), snapshot 5, timestamp 6.
    fn root() -> Root {
        Root::new(
            1,
            later(365),
            &[
                (ROLE_ROOT, &[key(1).public(), key(2).public()], 2),
                (ROLE_TARGETS, &[key(3).public(), key(4).public()], 2),
                (ROLE_SNAPSHOT, &[key(5).public()], 1),
                (ROLE_TIMESTAMP, &[key(6).public()], 1),
            ],
        )
        .unwrap()
    }

    fn bytes<T: fleetward_tuf::Role>(meta: T, keys: &[u8]) -> Vec<u8> {
        let keys: Vec<SigningKey> = keys.iter().map(|n| key(*n)).collect();
        let refs: Vec<&SigningKey> = keys.iter().collect();
        Signed::sign(meta, &refs).unwrap().to_bytes().unwrap()
    }

    const SHA: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn image() -> DirectorImage {
        DirectorImage {
            device_id: "dev-1".into(),
            target_name: "rev2/1.1.0/fw.img".into(),
            length: 100,
            sha256: SHA.into(),
            sha512: "bb".repeat(64),
            release_version: "1.1.0".into(),
            hardware: "rev2".into(),
        }
    }

    fn repo_targets(version: u64, image: &DirectorImage) -> Targets {
        let mut hashes = BTreeMap::new();
        hashes.insert("sha256".to_owned(), image.sha256.clone());
        hashes.insert("sha512".to_owned(), image.sha512.clone());
        let mut targets = BTreeMap::new();
        targets.insert(
            image.target_name.clone(),
            TargetFile {
                length: image.length,
                hashes,
                custom: Some(serde_json::json!({"version": image.release_version, "hardware": image.hardware})),
            },
        );
        Targets::new(version, later(30), targets)
    }

    const ME: Me<'static> = Me {
        device_id: "dev-1",
        hardware: "rev2",
    };

    fn seen() -> SeenVersions {
        SeenVersions {
            timestamp: 5,
            snapshot: 5,
            targets: 5,
            director: 5,
        }
    }

    #[test]
    fn the_whole_chain_verifies() {
        let root = root();
        let targets = bytes(repo_targets(6, &image()), &[3, 4]);
        let snapshot = bytes(snapshot_for(6, later(7), 6), &[5]);
        let timestamp = bytes(timestamp_for(6, later(1), 6, &snapshot), &[6]);
        let (_, pin) = check_timestamp(&root, &timestamp, &seen(), now()).unwrap();
        let (_, pin) = check_snapshot(&root, &snapshot, &pin, &seen(), now()).unwrap();
        let repo = check_repo_targets(&root, &targets, &pin, now()).unwrap();
        let director = bytes(director_targets(6, later(1), &image()), &[7]);
        let offer = check_director(&key(7).public(), &director, ME, &seen(), now()).unwrap();
        check_agreement(&offer, repo.targets.get(&offer.target_name), ME).unwrap();
        assert_eq!(offer.release, "1.1.0");
        assert_eq!(offer.execution_id, None);
    }

    fn check(what: &str, result: Result<impl std::fmt::Debug, Refusal>, kind: DeviceSecurityKind) {
        match result {
            Ok(value) => panic!("{what}: accepted {value:?}"),
            Err(refusal) => assert_eq!(refusal.security_kind(), kind, "{what}: {refusal}"),
        }
    }

    #[test]
    fn attacks_on_the_image_repository_are_refused() {
        use DeviceSecurityKind::{RollbackAttempt as Rollback, VerificationFailed as Failed};
        let root = root();
        let snapshot = bytes(snapshot_for(6, later(7), 6), &[5]);
        let good_ts = |snap: &[u8]| bytes(timestamp_for(6, later(1), 6, snap), &[6]);
        // Arbitrary software / compromised key below threshold.
        check(
            "timestamp signed by a foreign key",
            check_timestamp(
                &root,
                &bytes(timestamp_for(6, later(1), 6, &snapshot), &[9]),
                &seen(),
                now(),
            ),
            Failed,
        );
        check(
            "targets signed by one of two keys",
            check_repo_targets(
                &root,
                &bytes(repo_targets(6, &image()), &[3]),
                &MetaFile {
                    version: 6,
                    length: None,
                    hashes: None,
                },
                now(),
            ),
            Failed,
        );
        // Indefinite freeze.
        check(
            "expired timestamp",
            check_timestamp(
                &root,
                &good_ts(&snapshot),
                &seen(),
                now() + Duration::days(2),
            ),
            Failed,
        );
        // Rollback of metadata.
        check(
            "older timestamp",
            check_timestamp(
                &root,
                &bytes(timestamp_for(4, later(1), 6, &snapshot), &[6]),
                &seen(),
                now(),
            ),
            Rollback,
        );
        check(
            "timestamp pinning an older snapshot",
            check_timestamp(
                &root,
                &bytes(timestamp_for(6, later(1), 4, &snapshot), &[6]),
                &seen(),
                now(),
            ),
            Rollback,
        );
        // Mix-and-match: a snapshot other than the one pinned.
        let (_, pin) = check_timestamp(&root, &good_ts(&snapshot), &seen(), now()).unwrap();
        let other = bytes(snapshot_for(6, later(8), 6), &[5]);
        check(
            "swapped snapshot",
            check_snapshot(&root, &other, &pin, &seen(), now()),
            Failed,
        );
        check(
            "snapshot pinning older targets",
            check_snapshot(
                &root,
                &bytes(snapshot_for(6, later(7), 4), &[5]),
                &MetaFile {
                    version: 6,
                    length: None,
                    hashes: None,
                },
                &seen(),
                now(),
            ),
            Rollback,
        );
    }

    #[test]
    fn attacks_through_the_director_are_refused() {
        use DeviceSecurityKind::{RollbackAttempt as Rollback, VerificationFailed as Failed};
        let director_key = key(7).public();
        let signed = |image: &DirectorImage, version: u64, expires: Expiry, signer: u8| {
            bytes(director_targets(version, expires, image), &[signer])
        };
        let offer = |b: &[u8]| check_director(&director_key, b, ME, &seen(), now());
        check(
            "a foreign director key",
            offer(&signed(&image(), 6, later(1), 8)),
            Failed,
        );
        check(
            "expired director metadata",
            offer(&signed(&image(), 6, Expiry::at(now()), 7)),
            Failed,
        );
        check(
            "older director metadata",
            offer(&signed(&image(), 4, later(1), 7)),
            Rollback,
        );
        let other_device = DirectorImage {
            device_id: "dev-2".into(),
            ..image()
        };
        check(
            "metadata for another device",
            offer(&signed(&other_device, 6, later(1), 7)),
            Failed,
        );
        let other_hw = DirectorImage {
            hardware: "rev9".into(),
            ..image()
        };
        check(
            "an image for other hardware",
            offer(&signed(&other_hw, 6, later(1), 7)),
            Failed,
        );
        let mut two = director_targets(6, later(1), &image());
        let extra = two.targets.values().next().unwrap().clone();
        two.targets.insert("rev2/evil/fw.img".into(), extra);
        check("two images", offer(&bytes(two, &[7])), Failed);
        check("not JSON", offer(b"{"), Failed);

        // Director and image repository must agree.
        let repo = repo_targets(6, &image());
        let agree = |image: &DirectorImage| {
            let offer = offer(&signed(image, 6, later(1), 7)).unwrap();
            check_agreement(&offer, repo.targets.get(&offer.target_name), ME)
        };
        let disagreements = [
            (
                "length",
                DirectorImage {
                    length: 101,
                    ..image()
                },
            ),
            (
                "sha256",
                DirectorImage {
                    sha256: "cc".repeat(32),
                    ..image()
                },
            ),
            (
                "sha512",
                DirectorImage {
                    sha512: "dd".repeat(64),
                    ..image()
                },
            ),
            (
                "version",
                DirectorImage {
                    release_version: "1.2.0".into(),
                    ..image()
                },
            ),
            (
                "name",
                DirectorImage {
                    target_name: "rev2/1.1.0/other.img".into(),
                    ..image()
                },
            ),
        ];
        for (what, image) in disagreements {
            check(what, agree(&image), Failed);
        }
        assert!(agree(&image()).is_ok());
        let mut wrong_hw = repo_targets(6, &image());
        for file in wrong_hw.targets.values_mut() {
            file.custom = Some(serde_json::json!({"version": "1.1.0", "hardware": "rev9"}));
        }
        let good = offer(&signed(&image(), 6, later(1), 7)).unwrap();
        check(
            "repository lists other hardware",
            check_agreement(&good, wrong_hw.targets.get(&good.target_name), ME),
            Failed,
        );
    }

    /// Drives the delegation search as the agent does, over metadata held
    /// here: `roles` maps a role to its metadata, signer and pinned version.
    fn search(
        top: &Targets,
        target: &str,
        roles: &BTreeMap<&str, (Targets, u8, u64)>,
    ) -> (Result<Option<TargetFile>, Refusal>, Vec<String>) {
        let mut visited = Vec::new();
        let (mut search, mut found) = TargetSearch::start(top, target);
        loop {
            match found {
                Found::Listed(file) => return (Ok(Some(file)), visited),
                Found::Absent => return (Ok(None), visited),
                Found::Next(role, delegations) => {
                    visited.push(role.name.clone());
                    let Some((meta, signer, pinned)) = roles.get(role.name.as_str()) else {
                        return (Err(mismatch("not served")), visited);
                    };
                    let pin = MetaFile {
                        version: *pinned,
                        length: None,
                        hashes: None,
                    };
                    let bytes = bytes(meta.clone(), &[*signer]);
                    match check_delegated(&delegations, &role, &bytes, &pin, now()) {
                        Ok(targets) => found = search.visit(&role.name, &targets),
                        Err(refusal) => return (Err(refusal), visited),
                    }
                }
            }
        }
    }

    fn delegating(roles: &[(&str, u8, bool)]) -> Delegations {
        let mut delegations = Delegations::default();
        for (name, signer, terminating) in roles {
            let id = fleetward_tuf::key_id(&key(*signer).public()).unwrap();
            delegations.keys.insert(id.clone(), key(*signer).public());
            delegations.roles.push(DelegatedRole {
                name: (*name).to_owned(),
                keyids: vec![id],
                threshold: 1,
                terminating: *terminating,
                paths: Some(vec!["rev2/*/*".to_owned()]),
                path_hash_prefixes: None,
            });
        }
        delegations
    }

    #[test]
    fn delegated_roles_are_searched_as_the_spec_says() {
        let listing = repo_targets(1, &image());
        let empty = Targets::new(1, later(30), BTreeMap::new());
        let mut top = Targets::new(7, later(30), BTreeMap::new());
        // a (key 10) and b (key 11, terminating) for rev2; c after b.
        top.delegations = Some(delegating(&[
            ("a", 10, false),
            ("b", 11, true),
            ("c", 12, false),
        ]));
        let mut nested = empty.clone();
        nested.delegations = Some(delegating(&[("d", 13, false), ("a", 10, false)]));
        let mut expired = listing.clone();
        expired.expires = Expiry::at(now() - Duration::days(1));
        let name = image().target_name;
        type Roles<'a> = Vec<(&'a str, (Targets, u8, u64))>;
        let check = |what: &str,
                     roles: Roles<'_>,
                     target: &str,
                     expected: Result<bool, &str>,
                     path: &[&str]| {
            let roles: BTreeMap<&str, (Targets, u8, u64)> = roles.into_iter().collect();
            let (got, visited) = search(&top, target, &roles);
            match (&got, expected) {
                (Ok(found), Ok(listed)) => assert_eq!(found.is_some(), listed, "{what}"),
                (Err(refusal), Err(needle)) => {
                    assert!(refusal.to_string().contains(needle), "{what}: {refusal}")
                }
                _ => panic!("{what}: got {got:?}"),
            }
            assert_eq!(visited, path, "{what}: roles visited");
        };
        check(
            "listed by the first role",
            vec![("a", (listing.clone(), 10, 1))],
            &name,
            Ok(true),
            &["a"],
        );
        check(
            "backtracks past a non-terminating role",
            vec![
                ("a", (empty.clone(), 10, 1)),
                ("b", (listing.clone(), 11, 1)),
            ],
            &name,
            Ok(true),
            &["a", "b"],
        );
        check(
            "stops at a terminating role",
            vec![
                ("a", (empty.clone(), 10, 1)),
                ("b", (empty.clone(), 11, 1)),
                ("c", (listing.clone(), 12, 1)),
            ],
            &name,
            Ok(false),
            &["a", "b"],
        );
        check(
            "depth first: a's own delegation before b",
            vec![
                ("a", (nested.clone(), 10, 1)),
                ("d", (listing.clone(), 13, 1)),
            ],
            &name,
            Ok(true),
            &["a", "d"],
        );
        check(
            "a cycle back to a is not followed",
            vec![
                ("a", (nested.clone(), 10, 1)),
                ("d", (empty.clone(), 13, 1)),
                ("b", (listing.clone(), 11, 1)),
            ],
            &name,
            Ok(true),
            &["a", "d", "b"],
        );
        check(
            "paths not delegated are never searched",
            vec![("a", (listing.clone(), 10, 1))],
            "rev3/1.1.0/fw.img",
            Ok(false),
            &[],
        );
        check(
            "signed by another role's key",
            vec![("a", (listing.clone(), 11, 1))],
            &name,
            Err("needs 1"),
            &["a"],
        );
        check(
            "not the version the snapshot pins",
            vec![("a", (listing.clone(), 10, 2))],
            &name,
            Err("is not the version 2"),
            &["a"],
        );
        check(
            "expired",
            vec![("a", (expired, 10, 1))],
            &name,
            Err("expired"),
            &["a"],
        );
    }

    #[test]
    fn delegated_roles_never_go_back_in_the_snapshot() {
        let mut delegated = BTreeMap::new();
        delegated.insert("rev2".to_owned(), 3);
        let snapshot = fleetward_tuf::snapshot_with(6, later(7), 6, &delegated);
        let check = |seen: &[(&str, u64)]| {
            let seen: SeenDelegated = seen.iter().map(|(r, v)| ((*r).to_owned(), *v)).collect();
            check_snapshot_delegated(&snapshot, &seen)
        };
        assert_eq!(check(&[("rev2", 3)]), Ok(()));
        assert_eq!(check(&[("rev2", 2)]), Ok(()));
        assert!(matches!(
            check(&[("rev2", 4)]),
            Err(Refusal::MetadataRollback { .. })
        ));
        assert!(matches!(check(&[("rev3", 1)]), Err(Refusal::Mismatch(_))));
        assert!(delegated_pin(&snapshot, "rev2").is_ok());
        assert!(delegated_pin(&snapshot, "../x").is_err());
    }

    #[test]
    fn images_never_go_back() {
        type Row = (
            &'static str,
            Option<&'static str>,
            Option<&'static str>,
            Result<Decision, ()>,
        );
        let table: [Row; 6] = [
            ("1.1.0", Some("1.0.0"), Some("1.0.0"), Ok(Decision::Install)),
            (
                "1.1.0",
                Some("1.1.0"),
                Some("1.1.0"),
                Ok(Decision::UpToDate),
            ),
            ("1.0.0", Some("1.1.0"), Some("1.1.0"), Err(())),
            ("1.0.5", Some("1.0.0"), Some("1.1.0"), Err(())),
            ("1.1.0", Some("1.0.0"), Some("1.1.0"), Ok(Decision::Install)),
            ("0.1.0", None, None, Ok(Decision::Install)),
        ];
        for (offered, running, highest, expected) in table {
            let got = decide(offered, running, highest).map_err(|r| {
                assert_eq!(r.security_kind(), DeviceSecurityKind::RollbackAttempt);
            });
            assert_eq!(got, expected, "{offered} {running:?} {highest:?}");
        }
    }
}
