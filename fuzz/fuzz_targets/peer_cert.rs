//! Client certificates are parsed after chain verification, but the parser
//! must still survive anything: a bug in the order of checks must not turn
//! into a panic on the device listener.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fleetward_identity::PeerCert::from_der(data);
});
