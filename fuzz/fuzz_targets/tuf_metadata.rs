//! Signed TUF metadata arrives from release managers (uploads) and, on the
//! device side, from the network: parsing and checking must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let now = time::OffsetDateTime::UNIX_EPOCH;
    let _ = fleetward_tuf::parse_signed::<fleetward_tuf::Targets>(data);
    let _ = fleetward_tuf::parse_signed::<fleetward_tuf::Snapshot>(data);
    let _ = fleetward_tuf::parse_signed::<fleetward_tuf::Timestamp>(data);
    if let Ok(root) = fleetward_tuf::check_initial_root(data, now) {
        let _ = fleetward_tuf::check_root_update(&root, data, now);
    }
});
