//! purls and CPEs are read from untrusted SBOMs; a canonical purl must
//! parse back to itself.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(purl) = fleetward_sca::purl::Purl::parse(text) {
            let canonical = purl.to_string();
            let again = fleetward_sca::purl::Purl::parse(&canonical);
            assert_eq!(again.as_ref(), Ok(&purl), "{canonical}");
        }
        let _ = fleetward_sca::purl::Cpe::parse(text);
    }
});
