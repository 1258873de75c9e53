//! `Manifest::parse`: manifests and indexes pushed by clients or fetched
//! from remotes. The first input line is the Content-Type (empty: none).
//! Properties: an accepted manifest has a known media type, an image has a
//! config, an index has no config requirement; its descriptors' digests
//! print back.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wharf::oci::manifest::{is_index, is_manifest_type, Manifest};

fuzz_target!(|data: &[u8]| {
    let (ct, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (std::str::from_utf8(&data[..i]).ok(), &data[i + 1..]),
        None => (None, data),
    };
    let ct = ct.filter(|c| !c.is_empty());
    let Ok(m) = Manifest::parse(body, ct) else { return };
    assert!(is_manifest_type(&m.media_type), "{:?}", m.media_type);
    if !is_index(&m.media_type) {
        assert!(m.config.is_some());
    }
    for d in m.config.iter().chain(&m.layers).chain(&m.manifests).chain(&m.subject) {
        assert_eq!(d.digest.to_string().parse::<wharf::oci::Digest>().unwrap(), d.digest);
    }
    let _ = m.effective_artifact_type();
});
