//! Version strings come from SBOMs and advisories. Every scheme must
//! answer or refuse, and agree with itself when the arguments swap.
#![no_main]

use fleetward_sca::version::Scheme;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (a, b) = text.split_once('\n').unwrap_or((text, "1.0"));
    for scheme in [
        Scheme::Semver,
        Scheme::Go,
        Scheme::Pep440,
        Scheme::Debian,
        Scheme::Alpine,
        Scheme::Rpm,
        Scheme::Generic,
    ] {
        if let (Ok(x), Ok(y)) = (scheme.compare(a, b), scheme.compare(b, a)) {
            assert_eq!(x, y.reverse(), "{scheme:?} {a:?} {b:?}");
        }
    }
});
