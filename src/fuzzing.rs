//! The parsers of client and remote input that are private to their
//! modules, re-exported for the fuzz targets in `fuzz/` (README
//! "Fuzzing"). Nothing here is API: the items are the very functions the
//! server calls, unchanged, so a crash found through this module is a
//! crash of the server.

pub use crate::api::access::valid_authority;
pub use crate::api::handlers::blobs::{parse_range, ByteRange};
pub use crate::api::handlers::uploads::parse_content_range;
pub use crate::api::mgmt::{parse as parse_mgmt_path, Endpoint as MgmtEndpoint};
pub use crate::registry::bundle::tar::{
    header as bundle_tar_header, parse_header as parse_bundle_tar_header, Entry as BundleEntry,
};
pub use crate::upstream::auth::{parse_challenge, Challenge};

/// Read a bundle tar from `data` delivered in chunks of `chunk` bytes with
/// the very reader `POST /api/v1/import` uses: every entry's header and the
/// number of content bytes read for it, or the error that stopped it.
/// The body stream is always ready, so each step completes in one poll.
pub fn read_bundle_tar(data: &[u8], chunk: usize) -> (Vec<(BundleEntry, u64)>, Option<String>) {
    use crate::registry::bundle::tar::{ReadError, Reader};
    use futures_util::FutureExt as _;
    let parts: Vec<Result<bytes::Bytes, std::convert::Infallible>> = data
        .chunks(chunk.max(1))
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let mut r = Reader::new(futures_util::stream::iter(parts));
    let mut out = Vec::new();
    let err = |e: ReadError| match e {
        ReadError::Format(m) | ReadError::Body(m) => Some(m),
    };
    loop {
        let next = r
            .next_entry()
            .now_or_never()
            .expect("a ready body never waits");
        let entry = match next {
            Ok(Some(e)) => e,
            Ok(None) => return (out, None),
            Err(e) => return (out, err(e)),
        };
        let mut n = 0u64;
        loop {
            match r.chunk().now_or_never().expect("a ready body never waits") {
                Ok(Some(c)) => n += c.len() as u64,
                Ok(None) => break,
                Err(e) => {
                    out.push((entry, n));
                    return (out, err(e));
                }
            }
        }
        out.push((entry, n));
    }
}
