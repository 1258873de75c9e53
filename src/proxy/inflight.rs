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
//! the fetch is marked *verified* (followers may now send the last byte:
//! a client does not wait for wharf's own durability), then the spool is
//! fsynced and renamed into the blob store and the fetch is marked done.
//! On a mismatch (or a truncated or failed stream) the fetch is marked
//! failed, the spool is deleted, and every follower's body ends with an
//! error, which aborts its connection. Followers never send the blob's
//! last byte before the digest was verified, so no client can take wrong
//! bytes for a complete blob.
//!
//! The writer is pipelined: while the upstream's next bytes arrive (and are
//! hashed) on the async task, the previous batch is written to the spool
//! on a blocking-pool thread. Every [`SYNC_EVERY`] bytes an `fdatasync` runs in
//! the background, so the final `fsync` before the rename has little left
//! to flush (instead of the whole blob, which would hold back the last
//! byte for as long as the disk needs to write it all).
//!
//! Progress is published through a `tokio::sync::watch` channel: followers
//! sleep until the writer reports more bytes; there is no polling.

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::oci::{Digest, Hasher, RepoName};
use crate::store::chunks::ChunkReader;
use crate::store::Store;
use crate::upstream::{Upstream, UpstreamError};

/// Bytes gathered before a spool write (and a progress notification).
const SPOOL_CHUNK: usize = 512 * 1024;
/// Largest read a follower does at once. Small enough that 32 followers
/// of one fetch stay within a few MiB of buffers.
const READ_CHUNK: usize = 256 * 1024;
/// Bytes written between background `fdatasync`s of the spool.
pub const SYNC_EVERY: u64 = 64 * 1024 * 1024;

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
    /// The whole blob is in the spool and matched its digest (set before
    /// the commit to the store, which `Phase::Done` reports).
    pub verified: bool,
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
            verified: false,
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
            let res = run(&store, &upstream, &repo, &cache_repo, &f).await;
            match res {
                Ok(()) => {
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

async fn link(store: &Store, cache_repo: &RepoName, d: &Digest) {
    if let Err(e) = store.link_blob(cache_repo, d).await {
        tracing::warn!(digest = %d, error = %e, "could not link cached blob");
    }
}

/// A spool write running on the blocking pool: returns its buffer.
type WriteJob = JoinHandle<io::Result<Vec<u8>>>;

async fn join<T>(h: JoinHandle<io::Result<T>>) -> Result<T, FetchError> {
    match h.await {
        Ok(r) => r.map_err(|e| FetchError::Io(e.to_string())),
        Err(e) => Err(FetchError::Io(format!("spool task failed: {e}"))),
    }
}

/// The leader: stream upstream → spool while hashing, verify, commit.
async fn run(
    store: &Store,
    upstream: &Upstream,
    repo: &RepoName,
    cache_repo: &RepoName,
    f: &Arc<Fetch>,
) -> Result<(), FetchError> {
    let remote = upstream.remote().name.clone();
    // A fetch that finished just before this one started: nothing to do.
    if let Ok(Some(size)) = store.blob_size(&f.digest).await {
        link(store, cache_repo, &f.digest).await;
        f.progress.send_modify(|p| {
            p.phase = Phase::Streaming;
            p.total = Some(size);
            p.written = size;
            p.verified = true;
        });
        return Ok(());
    }
    // Bounded per remote (`max_concurrent_fetches`); held to the end.
    let _slot = upstream.fetch_slot().await;
    let resp = upstream.blob(repo, &f.digest).await?;
    let total = resp.content_length();
    let spool = f.spool.clone();
    let file = Arc::new(join(tokio::task::spawn_blocking(move || std::fs::File::create(spool))).await?);
    f.progress.send_modify(|p| {
        p.phase = Phase::Streaming;
        p.total = total;
    });
    let mut hasher = Hasher::new(f.digest.algorithm());
    // Bytes received and not yet handed to a write. Chunks are copied
    // here (and hashed) while hot, so the upstream connection reuses its
    // read buffer instead of allocating fresh memory for every read.
    let mut batch: Vec<u8> = Vec::with_capacity(SPOOL_CHUNK);
    // The other buffer, back from the last write (double buffering).
    let mut spare: Option<Vec<u8>> = None;
    // The write in flight, with its length, and the bytes written before it.
    let mut job: Option<(WriteJob, u64)> = None;
    let mut written: u64 = 0;
    let mut sync: Option<JoinHandle<io::Result<()>>> = None;
    let mut synced: u64 = 0;
    let mut stream = resp.bytes_stream();
    loop {
        let chunk = match stream.next().await {
            Some(Ok(c)) => Some(c),
            Some(Err(e)) => {
                return Err(FetchError::Upstream(UpstreamError::Unreachable {
                    remote,
                    reason: format!(
                        "blob stream broke after {} bytes: {}",
                        written + job.as_ref().map_or(0, |j| j.1) + batch.len() as u64,
                        crate::upstream::describe(&e)
                    ),
                }))
            }
            None => None,
        };
        let end = chunk.is_none();
        if let Some(c) = chunk {
            upstream.stats.bytes.fetch_add(c.len() as u64, std::sync::atomic::Ordering::Relaxed);
            hasher.update(&c);
            batch.extend_from_slice(&c);
        }
        if let Some(t) = total {
            if written + job.as_ref().map_or(0, |j| j.1) + batch.len() as u64 > t {
                return Err(FetchError::Upstream(UpstreamError::Protocol {
                    remote,
                    message: format!("blob body longer than its Content-Length {t}"),
                }));
            }
        }
        if batch.len() >= SPOOL_CHUNK || (end && !batch.is_empty()) {
            // One write in flight: wait for the previous one (it ran while
            // this batch arrived), then hand this batch over.
            if let Some((j, n)) = job.take() {
                let mut b = join(j).await?;
                b.clear();
                spare = Some(b);
                written += n;
                if written - synced >= SYNC_EVERY && sync.as_ref().is_none_or(|s| s.is_finished()) {
                    if let Some(s) = sync.take() {
                        join(s).await?;
                    }
                    let file = file.clone();
                    sync = Some(tokio::task::spawn_blocking(move || file.sync_data()));
                    synced = written;
                }
            }
            let next = spare.take().unwrap_or_else(|| Vec::with_capacity(SPOOL_CHUNK));
            let full = std::mem::replace(&mut batch, next);
            let n = full.len() as u64;
            let (file, fetch, base) = (file.clone(), f.clone(), written);
            job = Some((
                tokio::task::spawn_blocking(move || {
                    let mut out: &std::fs::File = &file;
                    out.write_all(&full)?;
                    // In the file (page cache): followers may read it.
                    fetch.progress.send_modify(|p| p.written = base + n);
                    Ok(full)
                }),
                n,
            ));
        }
        if end {
            break;
        }
    }
    if let Some((j, n)) = job.take() {
        join(j).await?;
        written += n;
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
    // Verified: followers may send the last byte now. Followers learn the
    // final size from `written`.
    f.progress.send_modify(|p| {
        if written != 0 || total.is_some() {
            p.total = Some(written);
        }
        p.written = written;
        p.verified = true;
    });
    if let Some(s) = sync.take() {
        join(s).await?;
    }
    let file2 = file.clone();
    join(tokio::task::spawn_blocking(move || file2.sync_all())).await?;
    drop(file);
    // Link first, then rename: a request in between finds no blob file and
    // joins this fetch (still in the table), never a linked-but-missing
    // blob that would send it to the remote again. A link whose blob never
    // arrives (commit failed, crash) is harmless: a blob is only served
    // when both exist.
    link(store, cache_repo, &f.digest).await;
    store
        .commit_blob_file(f.spool.clone(), &f.digest)
        .await
        .map_err(|e| FetchError::Io(e.to_string()))?;
    Ok(())
}

/// Reads a fetch's bytes as they land in the spool file.
pub struct Follower {
    fetch: Arc<Fetch>,
    rx: watch::Receiver<Progress>,
    file: Option<ChunkReader>,
    pos: u64,
    end: Option<u64>,
}

impl Follower {
    async fn open(&mut self) -> io::Result<()> {
        // After commit the spool has been renamed into the store; an open
        // handle keeps working, a late opener finds the final path.
        let (spool, final_path) = (self.fetch.spool.clone(), self.fetch.final_path.clone());
        let f = tokio::task::spawn_blocking(move || match std::fs::File::open(&spool) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::File::open(&final_path),
            other => other,
        })
        .await
        .map_err(|e| io::Error::other(format!("open task failed: {e}")))??;
        // Positional reads: no seek needed. One recycled buffer: a
        // follower holds at most two chunks (hyper's and the one read).
        self.file = Some(ChunkReader::with_pool(f, READ_CHUNK, 1));
        Ok(())
    }

    /// The next chunk, `None` at the end, an error when the fetch failed.
    pub async fn next_chunk(&mut self) -> Option<io::Result<Bytes>> {
        loop {
            let p = self.rx.borrow_and_update().clone();
            // Once verified, a later failure (of the commit to the store)
            // does not make the bytes wrong: a follower that has the file
            // open finishes.
            let done = match &p.phase {
                Phase::Failed(_) if p.verified && self.file.is_some() => true,
                Phase::Failed(e) => return Some(Err(io::Error::other(e.to_string()))),
                Phase::Done => true,
                _ => p.verified,
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
                let reader = self.file.as_mut()?;
                let want = (avail - self.pos).min(READ_CHUNK as u64) as usize;
                return match reader.read(self.pos, want).await {
                    Ok(b) => {
                        self.pos += b.len() as u64;
                        Some(Ok(b))
                    }
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "spool shorter than reported",
                    ))),
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
