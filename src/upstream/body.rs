//! Reading a remote's response bodies with a limit: a remote that sends an
//! endless or huge body is cut off as soon as it passes the limit, so
//! memory never grows with what a remote sends.

use bytes::{Bytes, BytesMut};

/// Largest tag list page accepted from a remote.
pub const MAX_TAG_LIST: usize = 16 << 20;
/// Largest token-service answer accepted.
pub const MAX_TOKEN_RESPONSE: usize = 1 << 20;
/// How much of an error body is read (the first KiB is kept for messages).
pub const MAX_ERROR_BODY: usize = 4 << 10;

/// Why a limited read stopped.
#[derive(Debug)]
pub enum ReadError {
    TooLarge,
    Broken(reqwest::Error),
}

/// The whole body, if it is at most `limit` bytes.
pub async fn read_limited(mut r: reqwest::Response, limit: usize) -> Result<Bytes, ReadError> {
    if r.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ReadError::TooLarge);
    }
    let mut buf = BytesMut::new();
    while let Some(chunk) = r.chunk().await.map_err(ReadError::Broken)? {
        if buf.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// The start of an error body as text (never more than [`MAX_ERROR_BODY`]
/// is read; the rest is not waited for).
pub async fn excerpt_of(mut r: reqwest::Response) -> String {
    let mut buf = Vec::new();
    while buf.len() < MAX_ERROR_BODY {
        match r.chunk().await {
            Ok(Some(c)) => buf.extend_from_slice(&c[..c.len().min(MAX_ERROR_BODY - buf.len())]),
            _ => break,
        }
    }
    super::error::excerpt(&buf)
}
