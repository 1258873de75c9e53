//! `WWW-Authenticate` challenges from remotes (and their redirect targets).
//! Properties: no panic; a Bearer challenge's realm and service, printed
//! back as quoted parameters, parse to the same challenge.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wharf::fuzzing::{parse_challenge, Challenge};

fn quoted(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fuzz_target!(|v: &str| {
    let Some(Challenge::Bearer { realm, service }) = parse_challenge(v) else { return };
    let mut again = format!("Bearer realm=\"{}\"", quoted(&realm));
    if let Some(s) = &service {
        again.push_str(&format!(",service=\"{}\"", quoted(s)));
    }
    let back = parse_challenge(&again).expect("printed challenge parses");
    // Values are trimmed when parsed, so print-back is exact only for
    // trimmed values (which is what parsing produces).
    assert_eq!(back, Challenge::Bearer { realm, service }, "{v:?} -> {again:?}");
});
