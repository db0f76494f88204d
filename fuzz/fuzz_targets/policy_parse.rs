//! fleetward-policy.toml is read from the data dir and from CI checkouts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(policy) = fleetward_sca::Policy::parse(text) {
            let _ = policy.licenses.judge("MIT OR (GPL-3.0-only WITH GCC-exception-3.1 AND LicenseRef-x)");
        }
    }
});
