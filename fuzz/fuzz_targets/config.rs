//! The config file: `RawConfig::parse` and validation, and the duration and
//! size grammars (also used for API and CLI input). Properties: no panic;
//! a parsed duration is at most 100 years; a plain byte count is itself.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wharf::config::{parse_duration, parse_size, Overrides, RawConfig, MAX_DURATION};

fuzz_target!(|text: &str| {
    if let Ok(d) = parse_duration(text) {
        assert!(d <= MAX_DURATION, "{text:?} -> {d:?}");
    }
    match parse_size(text) {
        Ok(n) if text.trim().bytes().all(|b| b.is_ascii_digit()) => assert_eq!(text.trim().parse::<u64>().ok(), Some(n)),
        _ => {}
    }
    if let Ok(raw) = RawConfig::parse(text) {
        if let Ok(c) = raw.validate(&Overrides::default()) {
            let _ = c.warnings();
        }
    }
});
