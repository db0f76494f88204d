//! Versions arrive from devices; their sort keys must never panic and must
//! order consistently (antisymmetric) for any pair.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let middle = (0..=text.len() / 2)
            .rev()
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        let (a, b) = text.split_at(middle);
        let ab = fleetward_core::version::compare(a, b);
        let ba = fleetward_core::version::compare(b, a);
        assert_eq!(ab, ba.reverse());
    }
});
