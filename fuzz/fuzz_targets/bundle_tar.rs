//! The tar reader of `POST /api/v1/import` (offline bundles). The first
//! byte picks the chunk size the body arrives in. Properties: reading
//! ends (no hang, no panic); every entry that completes yields exactly its
//! header's size in content bytes; a header wharf writes parses back to
//! the same name and size.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wharf::fuzzing::{bundle_tar_header, parse_bundle_tar_header, read_bundle_tar};

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let chunk = 1 + first as usize * 37;
    let (entries, error) = read_bundle_tar(rest, chunk);
    let last = entries.len().saturating_sub(1);
    for (i, (e, read)) in entries.iter().enumerate() {
        if error.is_none() || i < last {
            assert_eq!(*read, e.size, "{e:?} (chunk {chunk})");
        }
    }
    // The same bytes in one chunk read the same.
    let (whole, whole_error) = read_bundle_tar(rest, rest.len().max(1));
    assert_eq!(whole.len(), entries.len());
    assert_eq!(whole_error.is_some(), error.is_some());

    if rest.len() >= 8 {
        let (size, name) = rest.split_at(8);
        let size = u64::from_le_bytes(size.try_into().unwrap());
        let Ok(name) = std::str::from_utf8(name) else { return };
        if name.contains('\0') || name.starts_with("./") || name.is_empty() {
            return;
        }
        if let Ok(h) = bundle_tar_header(name, size) {
            let e = parse_bundle_tar_header(&h).unwrap().unwrap();
            assert_eq!((e.name.as_str(), e.size), (name, size));
        }
    }
});
