//! `scan::parse_report`: vulnerability reports from scanner adapters.
//! Properties: an accepted report's counts add up to its findings, every
//! finding has an id, and the highest severity is found and nothing above.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wharf::scan::parse_report;

fuzz_target!(|data: &[u8]| {
    let Ok(r) = parse_report(data) else { return };
    let c = r.counts();
    assert_eq!(c.total(), r.vulnerabilities.len());
    assert!(r.vulnerabilities.iter().all(|v| !v.id.trim().is_empty()));
    match r.highest() {
        None => assert!(r.vulnerabilities.is_empty()),
        Some(h) => {
            assert!(c.get(h) > 0);
            assert_eq!(c.at_or_above(h), c.get(h));
        }
    }
});
