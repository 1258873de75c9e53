//! `Range` of blob GETs and `Content-Range` of upload chunks. The first 8
//! bytes are the blob length. Properties: a served range lies within the
//! blob; a chunk's range has a length of at least one byte that does not
//! overflow.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wharf::fuzzing::{parse_content_range, parse_range, ByteRange};

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (len, rest) = data.split_at(8);
    let len = u64::from_le_bytes(len.try_into().unwrap());
    let Ok(v) = std::str::from_utf8(rest) else { return };
    match parse_range(Some(v), len) {
        ByteRange::Part { start, end } => assert!(start <= end && end < len, "{v:?} on {len}: {start}-{end}"),
        ByteRange::Full | ByteRange::Unsatisfiable => {}
    }
    if let Some((start, n)) = parse_content_range(v) {
        assert!(n >= 1, "{v:?}: empty chunk");
        assert!(start.checked_add(n - 1).is_some(), "{v:?}: overflow");
    }
});
