//! Everything the device agent parses from the network: image-repository
//! metadata at each step of the client workflow, the director's
//! per-device metadata (custom fields included), and the server's JSON
//! answers. None of it may panic, whatever the bytes.
#![no_main]

use fleetward_agent::verify::{self, Me, SeenVersions};
use fleetward_tuf::{Expiry, MetaFile, ROLE_ROOT, ROLE_SNAPSHOT, ROLE_TARGETS, ROLE_TIMESTAMP, Root, SigningKey};
use libfuzzer_sys::fuzz_target;

fn root() -> Option<Root> {
    let key = SigningKey::from_seed(&[7; 32]).ok()?.public();
    let expires = Expiry::at(time::OffsetDateTime::from_unix_timestamp(4_000_000_000).ok()?);
    let keys = [key.clone()];
    Root::new(
        1,
        expires,
        &[
            (ROLE_ROOT, &keys, 1),
            (ROLE_TARGETS, &keys, 1),
            (ROLE_SNAPSHOT, &keys, 1),
            (ROLE_TIMESTAMP, &keys, 1),
        ],
    )
    .ok()
}

fuzz_target!(|data: &[u8]| {
    let Some(root) = root() else { return };
    let Ok(key) = SigningKey::from_seed(&[7; 32]) else { return };
    let now = time::OffsetDateTime::UNIX_EPOCH;
    let seen = SeenVersions::default();
    let me = Me { device_id: "dev-1", hardware: "rev2" };
    let pin = MetaFile { version: 1, length: None, hashes: None };
    let _ = verify::next_root(&root, data);
    let _ = verify::check_timestamp(&root, data, &seen, now);
    let _ = verify::check_snapshot(&root, data, &pin, &seen, now);
    if let Ok(repo) = verify::check_repo_targets(&root, data, &pin, now)
        && let Ok(offer) = verify::check_director(&key.public(), data, me, &seen, now)
    {
        let _ = verify::check_agreement(&offer, repo.targets.get(&offer.target_name), me);
        let _ = verify::decide(&offer.release, Some("1.0.0"), Some("1.0.0"));
    }
    // Delegated roles: the search over an attacker's delegation tree (path
    // patterns included) and a delegated role's metadata.
    if let Ok(raw) = fleetward_tuf::parse_signed::<fleetward_tuf::Targets>(data) {
        let top = raw.signed;
        let (mut search, mut found) = verify::TargetSearch::start(&top, "rev2/1.0.0/fw.img");
        for _ in 0..64 {
            let verify::Found::Next(role, delegations) = found else { break };
            let _ = verify::check_delegated(&delegations, &role, data, &pin, now);
            found = search.visit(&role.name, &top);
        }
    }
    if let Ok(snapshot) = fleetward_tuf::parse_signed::<fleetward_tuf::Snapshot>(data) {
        let seen: verify::SeenDelegated = [("rev2".to_owned(), 2)].into_iter().collect();
        let _ = verify::check_snapshot_delegated(&snapshot.signed, &seen);
        let _ = verify::delegated_pin(&snapshot.signed, "rev2");
    }
    let _ = serde_json::from_slice::<fleetward_wire::device::DirectorKey>(data);
    let _ = serde_json::from_slice::<fleetward_wire::device::ReportsAck>(data);
    let _ = serde_json::from_slice::<fleetward_wire::device::ExecutionAck>(data);
    let _ = serde_json::from_slice::<fleetward_wire::identity::DeviceSelf>(data);
    let _ = serde_json::from_slice::<fleetward_wire::identity::IssuedCertificate>(data);
    let _ = serde_json::from_slice::<fleetward_wire::ErrorBody>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = fleetward_agent::boot::parse_env(text);
    }
});
