//! The target query language arrives from operators over HTTP.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = fleetward_core::query::parse(text);
    }
});
