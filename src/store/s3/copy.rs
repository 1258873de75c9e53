//! Multipart copies: AWS S3 refuses a `CopyObject` above 5 GiB, so a
//! larger object is copied as a multipart upload whose parts are
//! `UploadPartCopy`s of byte ranges of the source (`x-amz-copy-source-range`).
//!
//! The upload targets the destination key directly: until
//! `CompleteMultipartUpload` nothing is visible there (a reader sees the old
//! object or none), and a copy that fails is aborted. A crash between the two
//! leaves an upload that [`super::S3Backend`]'s cleanup aborts once it is
//! older than `storage.temp_max_age`.

use std::io;

use futures_util::{StreamExt, TryStreamExt};

use super::client::io_err;
use super::S3Backend;
use crate::config::MAX_PART_SIZE;

/// S3's most parts per upload.
const MAX_PARTS: u64 = 10_000;
/// Part copies in flight at once (server-side work: no bytes pass wharf).
const CONCURRENCY: usize = 8;

/// The ranges `[start, end]` (inclusive, as `x-amz-copy-source-range`
/// wants) of an object of `size` bytes copied in parts of at least
/// `part_size`, grown so that there are at most 10 000 parts and capped at
/// S3's largest part.
pub(super) fn ranges(size: u64, part_size: u64) -> Vec<(u64, u64)> {
    let part = part_size
        .max(size.div_ceil(MAX_PARTS))
        .clamp(1, MAX_PART_SIZE);
    (0..size.div_ceil(part))
        .map(|i| (i * part, ((i + 1) * part).min(size) - 1))
        .collect()
}

/// Copy `from` (of `size` bytes) to `to` (store keys) with a multipart copy.
pub(super) async fn multipart(b: &S3Backend, from: &str, to: &str, size: u64) -> io::Result<()> {
    let upload = b.create_multipart(to).await?;
    b.live().insert(upload.clone());
    let ranges = ranges(size, b.inner.part_size as u64);
    let parts = ranges.len();
    let done = copy_parts(b, from, to, &upload, ranges).await;
    if done.is_err() {
        if let Err(e) = b.abort(to, &upload).await {
            tracing::warn!(key = to, error = %e, "could not abort a failed multipart copy (cleanup retries)");
        }
    }
    b.live().remove(&upload);
    done?;
    tracing::info!(
        key = to,
        size,
        parts,
        "multipart copy: the object is above storage.s3.multipart_copy_threshold"
    );
    Ok(())
}

/// Copy every range as a part of `upload`, then complete it.
async fn copy_parts(
    b: &S3Backend,
    from: &str,
    to: &str,
    upload: &str,
    ranges: Vec<(u64, u64)>,
) -> io::Result<()> {
    let source = b.copy_source(from);
    let etags: Vec<String> = futures_util::stream::iter(ranges.into_iter().enumerate())
        .map(|(i, (start, end))| {
            let n = i as i32 + 1;
            let req = b
                .s3()
                .upload_part_copy()
                .bucket(b.bucket())
                .key(b.full(to))
                .upload_id(upload)
                .part_number(n)
                .copy_source(&source)
                .copy_source_range(format!("bytes={start}-{end}"));
            async move {
                let out = req.send().await.map_err(|e| io_err("COPY part", to, e))?;
                out.copy_part_result()
                    .and_then(|r| r.e_tag())
                    .map(str::to_string)
                    .ok_or_else(|| io::Error::other(format!("S3 COPY part {n} of {to}: no ETag")))
            }
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
    b.complete_multipart(to, upload, &etags).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_the_object_in_order() {
        const MIB: u64 = 1 << 20;
        assert_eq!(
            ranges(20 * MIB, 8 * MIB),
            [
                (0, 8 * MIB - 1),
                (8 * MIB, 16 * MIB - 1),
                (16 * MIB, 20 * MIB - 1)
            ]
        );
        assert_eq!(ranges(8 * MIB, 8 * MIB), [(0, 8 * MIB - 1)]);
        assert_eq!(ranges(0, 8 * MIB), []);
        // 10 GiB in 16 MiB parts: 640 parts.
        let r = ranges(10 << 30, 16 * MIB);
        assert_eq!((r.len(), r[639].1), (640, (10 << 30) - 1));
        // 5 TiB (S3's largest object) fits in 10 000 parts.
        let r = ranges(5 << 40, 16 * MIB);
        assert!(r.len() as u64 <= MAX_PARTS, "{}", r.len());
        assert_eq!(r.last().unwrap().1, (5 << 40) - 1);
        for w in r.windows(2) {
            assert_eq!(w[0].1 + 1, w[1].0);
        }
    }
}
