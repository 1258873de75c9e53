//! Repository names, tags, references and digests (every path parameter
//! and every digest a client or a remote sends), and the ids of pull tokens
//! (from a client's username). Properties: what parses prints back to the
//! same text, and is safe as a path component.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wharf::oci::{Digest, Reference, RepoName, Tag};

fuzz_target!(|s: &str| {
    if let Ok(n) = s.parse::<RepoName>() {
        assert_eq!(n.to_string(), s);
        assert!(n.components().all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains(['%', '\\'])));
        assert_eq!(n.first(), s.split('/').next().unwrap());
        if let Some(rest) = n.rest() {
            assert_eq!(format!("{}/{rest}", n.first()), s);
        }
    }
    if let Ok(t) = s.parse::<Tag>() {
        assert_eq!(t.to_string(), s);
        assert!(t.as_str().len() <= 128 && !t.as_str().starts_with(['.', '-']) && !t.as_str().contains(['/', ':']));
    }
    if let Ok(d) = s.parse::<Digest>() {
        assert_eq!(d.to_string(), s);
        assert!(d.hex().bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }
    if let Some(id) = wharf::store::RecordId::parse(s) {
        assert_eq!(id.as_str(), s);
        assert!(s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }
    match s.parse::<Reference>() {
        Ok(r) => assert_eq!(r.to_string(), s),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
