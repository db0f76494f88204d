//! Rollout settings arrive from operators over HTTP and the CLI; execution
//! ids arrive from devices in URL paths.
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
        if let Some(id) = fleetward_rollout::ExecutionId::parse(text) {
            // An id that parses is printed exactly as it came.
            assert_eq!(id.to_string(), text);
        }
        // Every setting at once; what a policy normalises to describes it again.
        let mut parts = text.splitn(6, '|').map(str::to_owned);
        let settings = fleetward_rollout::Settings {
            phases: parts.next(),
            soak: parts.next(),
            success_threshold: parts.next(),
            max_failures: parts.next(),
            rate: parts.next(),
            window: parts.next(),
            ..Default::default()
        };
        if let Ok(policy) = settings.to_policy() {
            let again = fleetward_rollout::Settings::from_policy(&policy).to_policy();
            assert_eq!(again.as_ref(), Ok(&policy));
        }
    }
});
