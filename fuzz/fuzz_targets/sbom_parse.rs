//! SBOMs (CycloneDX, SPDX, Cargo.lock) come from builds and vendors, and
//! reach the server with a release: any bytes, within the size limit.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let limits = fleetward_sca::sbom::Limits {
        max_bytes: 1 << 20,
        max_components: 10_000,
        max_depth: 32,
    };
    if let Ok(sbom) = fleetward_sca::sbom::parse(data, &limits) {
        // Whatever parsed must also be scannable and renderable.
        let policy = fleetward_sca::Policy::default_firmware();
        let now = time::OffsetDateTime::UNIX_EPOCH;
        let mut none = fleetward_sca::scan::MemoryAdvisories::default();
        if let Ok(report) = fleetward_sca::scan(&sbom, &mut none, Some(now), &policy, now) {
            let _ = fleetward_sca::report::sarif(&report, "fuzz", "0");
        }
    }
});
