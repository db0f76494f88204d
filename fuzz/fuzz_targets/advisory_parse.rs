//! Advisory files (OSV JSON, RustSec Markdown + TOML) are imported from
//! databases the operator downloads; a bad file must be an error, never a
//! crash, and whatever parses must answer "is this version affected?".
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for parsed in [
        fleetward_sca::advisory::parse_osv_json(text),
        fleetward_sca::advisory::parse_rustsec(text, "crates"),
    ] {
        if let Ok(advisory) = parsed {
            for affected in &advisory.affected {
                let _ = affected.affects("1.2.3");
                let _ = affected.affects("0.0.0-rc.1");
            }
        }
    }
});
