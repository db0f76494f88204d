//! Index entries are read back from a file on disk that may be damaged; a
//! bad entry must be an error, never a crash or a huge allocation, and what
//! decodes must survive an encode/decode round trip unchanged.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(list) = fleetward_advisories::codec::decode(data) {
        let refs: Vec<_> = list.iter().collect();
        let mut out = Vec::new();
        fleetward_advisories::codec::encode(&refs, &mut out);
        for advisory in &refs {
            for affected in &advisory.affected {
                let _ = affected.affects("1.2.3");
            }
        }
        assert_eq!(fleetward_advisories::codec::decode(&out).ok().as_ref(), Some(&list));
    }
});
