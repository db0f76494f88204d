//! CSRs arrive from unauthenticated devices (`POST /device/v1/enroll`):
//! parsing must never panic, whatever the bytes, PEM or DER.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fleetward_identity::csr::parse_csr_der(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = fleetward_identity::parse_csr(text);
    }
});
