//! Signed TUF metadata arrives from release managers (uploads) and, on the
//! device side, from the network: parsing and checking must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let now = time::OffsetDateTime::UNIX_EPOCH;
    if let Ok(raw) = fleetward_tuf::parse_signed::<fleetward_tuf::Targets>(data) {
        // Uploaded delegations: their consistency check, path patterns
        // against a target, and a role's metadata checked under them.
        if let Some(delegations) = &raw.signed.delegations {
            let _ = delegations.check_consistent();
            let _ = delegations.roles_for_target("rev2/1.0.0/fw.img");
            for role in delegations.roles.iter().take(8) {
                let _ = fleetward_tuf::check_delegated_targets(delegations, &role.name, data, None, now);
            }
        }
    }
    let _ = fleetward_tuf::parse_signed::<fleetward_tuf::Snapshot>(data);
    let _ = fleetward_tuf::parse_signed::<fleetward_tuf::Timestamp>(data);
    if let Ok(root) = fleetward_tuf::check_initial_root(data, now) {
        let _ = fleetward_tuf::check_root_update(&root, data, now);
    }
});
