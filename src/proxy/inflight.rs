//! One upstream fetch per blob, however many clients ask at once.
//!
//! The first request for a missing digest starts a [`Fetch`]: a task owned
//! by the server (not by that client) that streams the upstream body into a
//! spool file in `tmp/` while hashing it. Every request for the digest,
//! the first included, is a *follower*: it reads the spool file as it grows
//! ([`Follower`]), so it gets bytes at upstream speed without a second
//! upstream GET and without waiting for the end.
//!
//! Completion: when the upstream ends, the digest is compared. On a match
//! the spool is fsynced and renamed into the blob store, then the fetch is
//! marked done. On a mismatch (or a truncated or failed stream) the fetch
//! is marked failed, the spool is deleted, and every follower's body ends
//! with an error, which aborts its connection. Followers never send the
//! blob's last byte before the digest was verified, so no client can take
//! wrong bytes for a complete blob.
//!
//! Progress is published through a `tokio::sync::watch` channel: followers
//! sleep until the writer reports more bytes; there is no polling.

use std::collections::HashMap;
use std::io::{self, SeekFrom};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::oci::{Digest, Hasher, RepoName};
use crate::store::Store;
use crate::upstream::{Upstream, UpstreamError};

/// Bytes gathered before a spool write (and a progress notification).
const SPOOL_CHUNK: usize = 256 * 1024;
/// Largest read a follower does at once.
const READ_CHUNK: usize = 256 * 1024;

/// Where a fetch stands.
#[derive(Debug, Clone)]
pub enum Phase {
    /// Waiting for the upstream's response headers.
    Starting,
    /// Bytes are arriving; `total` from the upstream's Content-Length.
    Streaming,
    /// Verified and committed to the store.
    Done,
    /// Failed; followers abort.
    Failed(FetchError),
}

/// Why a fetch failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("remote {remote} sent content with digest {actual} for {expected}")]
    DigestMismatch {
        remote: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("remote {remote} ended the blob after {got} of {want} bytes")]
    Truncated { remote: String, got: u64, want: u64 },
    #[error("spool I/O error: {0}")]
    Io(String),
}

/// Progress of a fetch, as followers see it.
#[derive(Debug, Clone)]
pub struct Progress {
    pub phase: Phase,
    pub total: Option<u64>,
    /// Bytes written to the spool so far.
    pub written: u64,
}

/// One in-flight upstream download.
pub struct Fetch {
    pub digest: Digest,
    spool: PathBuf,
    final_path: PathBuf,
    progress: watch::Sender<Progress>,
}

impl Fetch {
    pub fn subscribe(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// Wait until the response headers are in (or the fetch failed).
    pub async fn started(&self) -> Progress {
        let mut rx = self.subscribe();
        loop {
            let p = rx.borrow_and_update().clone();
            if !matches!(p.phase, Phase::Starting) {
                return p;
            }
            if rx.changed().await.is_err() {
                return p;
            }
        }
    }

    /// Wait until the fetch is done or failed.
    pub async fn finished(&self) -> Progress {
        let mut rx = self.subscribe();
        loop {
            let p = rx.borrow_and_update().clone();
            if matches!(p.phase, Phase::Done | Phase::Failed(_)) {
                return p;
            }
            if rx.changed().await.is_err() {
                return p;
            }
        }
    }

    /// A reader of bytes `[start, end)` (end defaults to the blob's end).
    pub fn follow(self: &Arc<Self>, start: u64, end: Option<u64>) -> Follower {
        Follower {
            fetch: self.clone(),
            rx: self.subscribe(),
            file: None,
            pos: start,
            end,
        }
    }
}

/// Counters the proxy reports.
#[derive(Debug, Default)]
pub struct InflightStats {
    pub fetches: std::sync::atomic::AtomicU64,
    pub coalesced: std::sync::atomic::AtomicU64,
}

/// The table of in-flight fetches, keyed by digest.
pub struct Inflight {
    map: Mutex<HashMap<Digest, Arc<Fetch>>>,
    pub stats: InflightStats,
}

impl Default for Inflight {
    fn default() -> Self {
        Inflight {
            map: Mutex::new(HashMap::new()),
            stats: InflightStats::default(),
        }
    }
}

impl Inflight {
    /// Number of fetches running now.
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The fetch for `digest` if one is running.
    pub fn get(&self, digest: &Digest) -> Option<Arc<Fetch>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).get(digest).cloned()
    }

    /// Join the running fetch for `digest`, or start one that fetches it
    /// from `upstream` (repository `repo`) and links it into `cache_repo`.
    pub fn join_or_start(
        self: &Arc<Self>,
        store: &Store,
        upstream: Arc<Upstream>,
        repo: RepoName,
        cache_repo: RepoName,
        digest: &Digest,
    ) -> Arc<Fetch> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = map.get(digest) {
            self.stats.coalesced.fetch_add(1, Relaxed);
            return f.clone();
        }
        self.stats.fetches.fetch_add(1, Relaxed);
        let (tx, _) = watch::channel(Progress {
            phase: Phase::Starting,
            total: None,
            written: 0,
        });
        let fetch = Arc::new(Fetch {
            digest: digest.clone(),
            spool: store.temp_path(),
            final_path: store.blob_path(digest),
            progress: tx,
        });
        map.insert(digest.clone(), fetch.clone());
        drop(map);
        // The fetch belongs to the server: it runs to the end even when
        // every client that asked for it has gone.
        let table = self.clone();
        let store = store.clone();
        let f = fetch.clone();
        // The request id of the leader's request follows the fetch (log
        // lines, X-Request-Id to the upstream).
        let span = tracing::Span::current();
        tokio::spawn(tracing::Instrument::instrument(crate::telemetry::in_request(async move {
            let res = run(&store, &upstream, &repo, &f).await;
            match res {
                Ok(()) => {
                    if let Err(e) = store.link_blob(&cache_repo, &f.digest).await {
                        tracing::warn!(digest = %f.digest, error = %e, "could not link cached blob");
                    }
                    f.progress.send_modify(|p| p.phase = Phase::Done);
                    tracing::info!(remote = %upstream.remote().name, repo = %repo, digest = %f.digest, "blob cached");
                    super::evict::fetched();
                }
                Err(e) => {
                    let _ = tokio::fs::remove_file(&f.spool).await;
                    tracing::error!(remote = %upstream.remote().name, repo = %repo, digest = %f.digest, error = %e, "upstream blob fetch failed; nothing cached");
                    f.progress.send_modify(|p| p.phase = Phase::Failed(e));
                }
            }
            table.map.lock().unwrap_or_else(|e| e.into_inner()).remove(&f.digest);
        }), span));
        fetch
    }
}

/// The leader: stream upstream → spool while hashing, verify, commit.
async fn run(store: &Store, upstream: &Upstream, repo: &RepoName, f: &Fetch) -> Result<(), FetchError> {
    let remote = upstream.remote().name.clone();
    // A fetch that finished just before this one started: nothing to do.
    if let Ok(Some(size)) = store.blob_size(&f.digest).await {
        f.progress.send_modify(|p| {
            p.phase = Phase::Streaming;
            p.total = Some(size);
            p.written = size;
        });
        return Ok(());
    }
    // Bounded per remote (`max_concurrent_fetches`); held to the end.
    let _slot = upstream.fetch_slot().await;
    let resp = upstream.blob(repo, &f.digest).await?;
    let total = resp.content_length();
    let io_err = |e: io::Error| FetchError::Io(e.to_string());
    let mut file = tokio::fs::File::create(&f.spool).await.map_err(io_err)?;
    f.progress.send_modify(|p| {
        p.phase = Phase::Streaming;
        p.total = total;
    });
    let mut hasher = Hasher::new(f.digest.algorithm());
    let mut buf = BytesMut::with_capacity(SPOOL_CHUNK);
    let mut written: u64 = 0;
    let mut stream = resp.bytes_stream();
    loop {
        let next = stream.next().await;
        let chunk = match next {
            Some(Ok(c)) => Some(c),
            Some(Err(e)) => {
                return Err(FetchError::Upstream(UpstreamError::Unreachable {
                    remote,
                    reason: format!("blob stream broke after {} bytes: {}", written + buf.len() as u64, crate::upstream::describe(&e)),
                }))
            }
            None => None,
        };
        let end = chunk.is_none();
        if let Some(c) = chunk {
            upstream.stats.bytes.fetch_add(c.len() as u64, std::sync::atomic::Ordering::Relaxed);
            hasher.update(&c);
            buf.extend_from_slice(&c);
        }
        if buf.len() >= SPOOL_CHUNK || (end && !buf.is_empty()) {
            file.write_all(&buf).await.map_err(io_err)?;
            // tokio's write_all hands the bytes to a blocking thread; flush
            // waits until they are in the file, so followers can read them.
            file.flush().await.map_err(io_err)?;
            written += buf.len() as u64;
            buf.clear();
            f.progress.send_modify(|p| p.written = written);
        }
        if end {
            break;
        }
        if let Some(t) = total {
            if written + buf.len() as u64 > t {
                return Err(FetchError::Upstream(UpstreamError::Protocol {
                    remote,
                    message: format!("blob body longer than its Content-Length {t}"),
                }));
            }
        }
    }
    if let Some(t) = total {
        if written != t {
            return Err(FetchError::Truncated {
                remote,
                got: written,
                want: t,
            });
        }
    }
    let actual = hasher.finish();
    if actual != f.digest {
        return Err(FetchError::DigestMismatch {
            remote,
            expected: f.digest.clone(),
            actual,
        });
    }
    file.sync_all().await.map_err(io_err)?;
    drop(file);
    store
        .commit_blob_file(f.spool.clone(), &f.digest)
        .await
        .map_err(io_err)?;
    if written != 0 || total.is_some() {
        // Followers learn the final size from `written`.
        f.progress.send_modify(|p| p.total = Some(written));
    }
    Ok(())
}

/// Reads a fetch's bytes as they land in the spool file.
pub struct Follower {
    fetch: Arc<Fetch>,
    rx: watch::Receiver<Progress>,
    file: Option<tokio::fs::File>,
    pos: u64,
    end: Option<u64>,
}

impl Follower {
    async fn open(&mut self) -> io::Result<()> {
        // After commit the spool has been renamed into the store; an open
        // handle keeps working, a late opener finds the final path.
        let f = match tokio::fs::File::open(&self.fetch.spool).await {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => tokio::fs::File::open(&self.fetch.final_path).await?,
            Err(e) => return Err(e),
        };
        let mut f = f;
        f.seek(SeekFrom::Start(self.pos)).await?;
        self.file = Some(f);
        Ok(())
    }

    /// The next chunk, `None` at the end, an error when the fetch failed.
    pub async fn next_chunk(&mut self) -> Option<io::Result<Bytes>> {
        loop {
            let p = self.rx.borrow_and_update().clone();
            let done = match &p.phase {
                Phase::Failed(e) => return Some(Err(io::Error::other(e.to_string()))),
                Phase::Done => true,
                _ => false,
            };
            let end = self.end.or(p.total);
            if let Some(e) = end {
                if self.pos >= e && (done || self.end.is_some()) {
                    return None;
                }
            }
            // Until verified, hold back the blob's last byte.
            let mut avail = p.written;
            if !done {
                if let Some(t) = p.total {
                    avail = avail.min(t.saturating_sub(1));
                }
            }
            if let Some(e) = end {
                avail = avail.min(e);
            }
            if self.pos < avail {
                if self.file.is_none() {
                    if let Err(e) = self.open().await {
                        return Some(Err(e));
                    }
                }
                let want = (avail - self.pos).min(READ_CHUNK as u64) as usize;
                let mut buf = BytesMut::zeroed(want);
                let file = self.file.as_mut()?;
                return match file.read(&mut buf).await {
                    Ok(0) => Some(Err(io::Error::new(io::ErrorKind::UnexpectedEof, "spool shorter than reported"))),
                    Ok(n) => {
                        buf.truncate(n);
                        self.pos += n as u64;
                        Some(Ok(buf.freeze()))
                    }
                    Err(e) => Some(Err(e)),
                };
            }
            if done {
                return None;
            }
            if self.rx.changed().await.is_err() {
                return Some(Err(io::Error::other("blob fetch vanished")));
            }
        }
    }

    /// As a `Stream` of byte chunks.
    pub fn into_stream(self) -> impl futures_util::Stream<Item = io::Result<Bytes>> + Send {
        futures_util::stream::unfold(self, |mut f| async move { f.next_chunk().await.map(|c| (c, f)) })
    }
}
