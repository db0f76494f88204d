//! Rollout settings arrive from operators over HTTP and the CLI.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = fleetward_rollout::Phases::parse(text);
        let _ = fleetward_rollout::Rate::parse(text);
        let _ = fleetward_rollout::parse_duration(text, "fuzz");
        if let Ok(window) = fleetward_rollout::Window::parse(text) {
            // What a window prints must parse back to the same window.
            let printed = window.to_string();
            assert_eq!(fleetward_rollout::Window::parse(&printed).ok(), Some(window), "{printed}");
        }
    }
});
