//! One upstream fetch per blob, however many clients ask at once.
//!
//! The first request for a missing digest starts a [`Fetch`]: a task owned
//! by the server (not by that client) that streams the upstream body into a
//! [`BlobWriter`], which hashes it and spools it. Every request for the
//! digest, the first included, is a *follower*: it reads the spool as it
//! grows ([`Follower`]), so it gets bytes at upstream speed without a
//! second upstream GET and without waiting for the end. A follower that
//! keeps up takes the newest bytes straight from memory instead
//! ([`super::recent`]: a window shared by the fetch's followers), so the
//! client that started a fetch does not wait for the spool write and read.
//!
//! Completion: when the upstream ends, the digest is compared. On a match
//! the fetch is marked *verified* (followers may now send the last byte: a
//! client does not wait for wharf's own durability), then the writer
//! commits the blob to the store and the fetch is marked done. On a
//! mismatch (or a truncated or failed stream) the fetch is marked failed,
//! the writer is dropped (its spool with it), and every follower's body
//! ends with an error, which aborts its connection. Followers never send
//! the blob's last byte before the digest was verified, so no client can
//! take wrong bytes for a complete blob.
//!
//! Progress is published through a `tokio::sync::watch` channel: followers
//! sleep until the writer reports more bytes; there is no polling.
//!
//! **Several replicas on one store.** Before its upstream GET, a fetch
//! takes the blob's fetch lease (see `store::lease`); when another replica
//! holds it, the fetch waits for that replica to commit the blob (polling
//! the store with back-off up to 1 s, no upstream traffic), then serves it
//! from the store like a fetch that found it cached. A holder that dies
//! stops renewing its lease: it expires within `LEASE_TTL` and a waiting
//! replica fetches. A follower on another replica gets its first byte once
//! the blob is committed (for a large layer, after the leader's whole
//! download); one that has waited [`FOLLOW_MAX`] fetches itself. The lease
//! is best-effort on stores without conditional writes: a rare double
//! fetch is still digest-verified, never corrupt.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{watch, Notify};

use super::recent::Recent;
use crate::oci::{Digest, RepoName};
use crate::store::fs::chunks::ChunkReader;
use crate::store::lease::LEASE_TTL;
use crate::store::{BlobData, BlobWriter, LeaseFor, LeaseGuard, Store, StoreError, Taken};
use crate::upstream::{BlobStream, Upstream, UpstreamError};

/// Followers are told of newly received bytes in steps of this many (a
/// network read can be a few KiB: waking every follower per read would
/// cost more than it gains).
const PUBLISH_EVERY: u64 = 128 * 1024;

/// Largest read a follower does at once. Small enough that 32 followers
/// of one fetch stay within a few MiB of buffers.
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
    #[error("remote {remote} sent more than its Content-Length of {want} bytes")]
    TooLong { remote: String, want: u64 },
    #[error("the store's disk is full")]
    StorageFull,
    #[error("spool I/O error: {0}")]
    Io(String),
}

impl From<StoreError> for FetchError {
    fn from(e: StoreError) -> FetchError {
        match e {
            StoreError::Full => FetchError::StorageFull,
            e => FetchError::Io(e.to_string()),
        }
    }
}

/// Progress of a fetch, as followers see it.
#[derive(Debug, Clone)]
pub struct Progress {
    pub phase: Phase,
    pub total: Option<u64>,
    /// Bytes in the spool so far (readable by followers).
    pub written: u64,
    /// Bytes received from the remote so far (the newest of them are in
    /// the fetch's memory window, maybe not yet in the spool).
    pub received: u64,
    /// The whole blob is in the spool and matched its digest (set before
    /// the commit to the store, which `Phase::Done` reports).
    pub verified: bool,
}

/// One in-flight upstream download.
pub struct Fetch {
    pub digest: Digest,
    store: Store,
    /// The writer's spool file, once the fetch has one.
    spool: OnceLock<Option<PathBuf>>,
    /// The newest bytes received, for followers that keep up.
    recent: Recent,
    progress: watch::Sender<Progress>,
}

impl Fetch {
    pub fn subscribe(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// Wait until `ready` holds for the progress (or the channel closes).
    async fn wait_for(&self, ready: impl Fn(&Progress) -> bool) -> Progress {
        let mut rx = self.subscribe();
        loop {
            let p = rx.borrow_and_update().clone();
            if ready(&p) || rx.changed().await.is_err() {
                return p;
            }
        }
    }

    /// Wait until the response headers are in (or the fetch failed).
    pub async fn started(&self) -> Progress {
        self.wait_for(|p| !matches!(p.phase, Phase::Starting)).await
    }

    /// Wait until the first bytes are in the spool (or the blob is empty and
    /// verified, or the fetch ended).
    pub async fn first_bytes(&self) -> Progress {
        self.wait_for(|p| {
            p.written > 0
                || p.received > 0
                || p.verified
                || matches!(p.phase, Phase::Done | Phase::Failed(_))
        })
        .await
    }

    /// Wait until the fetch is done or failed.
    pub async fn finished(&self) -> Progress {
        self.wait_for(|p| matches!(p.phase, Phase::Done | Phase::Failed(_)))
            .await
    }

    /// Tell followers how the fetch ended.
    fn conclude(&self, res: Result<(), FetchError>) {
        let phase = match res {
            Ok(()) => Phase::Done,
            Err(e) => Phase::Failed(e),
        };
        self.recent.close();
        self.progress.send_modify(|p| p.phase = phase);
    }

    /// A reader of bytes `[start, end)` (end defaults to the blob's end).
    pub fn follow(self: &Arc<Self>, start: u64, end: Option<u64>) -> Follower {
        Follower {
            fetch: self.clone(),
            rx: self.subscribe(),
            file: None,
            pos: start,
            end,
            mapped: false,
        }
    }

    /// As [`follow`](Self::follow), for a connection that sends mapped
    /// chunks with `sendfile` (plain HTTP/1.x): the follower hands out
    /// mappings of the spool instead of reading it, so it holds no buffer
    /// and its bytes are never copied through wharf's memory.
    pub fn follow_mapped(self: &Arc<Self>, start: u64, end: Option<u64>) -> Follower {
        Follower {
            mapped: true,
            ..self.follow(start, end)
        }
    }
}

/// Counters the proxy reports.
#[derive(Debug, Default)]
pub struct InflightStats {
    pub fetches: AtomicU64,
    pub coalesced: AtomicU64,
}

/// The table of in-flight fetches, keyed by digest.
pub struct Inflight {
    map: Mutex<HashMap<Digest, Arc<Fetch>>>,
    pub stats: InflightStats,
    /// Woken whenever a blob was added to the cache (the evictor listens).
    cached: Arc<Notify>,
    /// `cache-fetch` events.
    notifier: crate::notify::Notifier,
}

impl Inflight {
    pub fn new(cached: Arc<Notify>) -> Inflight {
        Inflight {
            map: Mutex::new(HashMap::new()),
            stats: InflightStats::default(),
            cached,
            notifier: crate::notify::Notifier::default(),
        }
    }

    /// Emit a `cache-fetch` event for every blob fetched from a remote.
    pub fn with_notifier(mut self, notifier: crate::notify::Notifier) -> Inflight {
        self.notifier = notifier;
        self
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, Arc<Fetch>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of fetches running now.
    pub fn len(&self) -> usize {
        self.table().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The fetch for `digest` if one is running.
    pub fn get(&self, digest: &Digest) -> Option<Arc<Fetch>> {
        self.table().get(digest).cloned()
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
        let mut map = self.table();
        if let Some(f) = map.get(digest) {
            self.stats.coalesced.fetch_add(1, Relaxed);
            return f.clone();
        }
        self.stats.fetches.fetch_add(1, Relaxed);
        let (tx, _) = watch::channel(Progress {
            phase: Phase::Starting,
            total: None,
            written: 0,
            received: 0,
            verified: false,
        });
        let fetch = Arc::new(Fetch {
            digest: digest.clone(),
            store: store.clone(),
            spool: OnceLock::new(),
            recent: Recent::default(),
            progress: tx,
        });
        map.insert(digest.clone(), fetch.clone());
        drop(map);
        // The fetch belongs to the server: it runs to the end even when
        // every client that asked for it has gone. The leader's request id
        // follows it (log lines, X-Request-Id to the upstream).
        let table = self.clone();
        let f = fetch.clone();
        let span = tracing::Span::current();
        tokio::spawn(tracing::Instrument::instrument(
            crate::telemetry::in_request(async move {
                let res = run(&upstream, &repo, &cache_repo, &f).await;
                table.finish(&f, &upstream, &repo, &cache_repo, res);
            }),
            span,
        ));
        fetch
    }

    /// Publish how a fetch ended and take it out of the table.
    fn finish(
        &self,
        f: &Fetch,
        upstream: &Upstream,
        repo: &RepoName,
        cache_repo: &RepoName,
        res: Result<Fetched, FetchError>,
    ) {
        let remote = &upstream.remote().name;
        match &res {
            Ok(Fetched::FromRemote(size)) => {
                tracing::info!(remote = %remote, repo = %repo, digest = %f.digest, "blob cached");
                self.cached.notify_one();
                self.notifier.emit(crate::notify::event::cache_fetch(
                    remote,
                    cache_repo,
                    &f.digest,
                    crate::notify::event::BLOB_MEDIA_TYPE,
                    *size,
                    None,
                ));
            }
            Ok(Fetched::AlreadyCached) => {}
            Err(e) => {
                tracing::error!(remote = %remote, repo = %repo, digest = %f.digest, error = %e, "upstream blob fetch failed; nothing cached");
            }
        }
        f.conclude(res.map(|_| ()));
        self.table().remove(&f.digest);
    }
}

/// How a fetch that succeeded got its blob.
enum Fetched {
    /// Downloaded now: this many bytes.
    FromRemote(u64),
    /// A fetch that finished just before this one started had it.
    AlreadyCached,
}

/// The leader: fetch from the remote, then spool, verify and commit.
async fn run(
    upstream: &Upstream,
    repo: &RepoName,
    cache_repo: &RepoName,
    f: &Arc<Fetch>,
) -> Result<Fetched, FetchError> {
    // A fetch that finished just before this one started: nothing to do.
    if let Some(size) = f.store.blobs().size(&f.digest).await? {
        return Ok(already_cached(f, cache_repo, size).await);
    }
    // One upstream GET in the cluster: wait for the replica fetching it.
    let _lease = match cluster_turn(&f.store, &f.digest).await? {
        Turn::Fetch(lease) => lease,
        Turn::Committed(size) => return Ok(already_cached(f, cache_repo, size).await),
    };
    // Bounded per remote (`max_concurrent_fetches`); held to the end.
    let _slot = upstream.fetch_slot().await;
    let body = upstream.blob(repo, &f.digest).await?;
    let r = upstream.remote();
    let speed = MinSpeed {
        bytes_per_sec: r.min_speed,
        window: r.min_speed_window,
    };
    spool(f, body, &r.name, &upstream.stats.bytes, cache_repo, speed)
        .await
        .map(Fetched::FromRemote)
}

/// The blob is in the store: link it and let the followers read it there.
async fn already_cached(f: &Arc<Fetch>, cache_repo: &RepoName, size: u64) -> Fetched {
    link(&f.store, cache_repo, &f.digest).await;
    f.progress.send_modify(|p| {
        p.phase = Phase::Streaming;
        p.total = Some(size);
        p.written = size;
        p.verified = true;
    });
    Fetched::AlreadyCached
}

/// How long a replica waits for another one's fetch of a blob before it
/// fetches the blob itself (the other replica keeps its lease alive all
/// along; a replica that dies lets its lease expire much sooner).
const FOLLOW_MAX: Duration = Duration::from_secs(15 * 60);

/// Whose turn it is to fetch a blob.
enum Turn {
    /// This replica's (holding the lease until the guard drops).
    Fetch(LeaseGuard),
    /// Another replica committed it meanwhile: its size.
    Committed(u64),
}

/// Take the blob's fetch lease, or wait (polling the store with back-off)
/// until the replica holding it has committed the blob, its lease expired
/// or [`FOLLOW_MAX`] passed. Without other replicas it is this one's turn
/// at once.
async fn cluster_turn(store: &Store, d: &Digest) -> Result<Turn, FetchError> {
    let deadline = tokio::time::Instant::now() + FOLLOW_MAX;
    let mut pause = Duration::from_millis(50);
    loop {
        let holder = match store.take_lease(LeaseFor::Fetch(d), LEASE_TTL).await? {
            Taken::Mine(lease) => {
                // Committed between our look and the lease?
                if let Some(size) = store.blobs().size(d).await? {
                    lease.release().await;
                    return Ok(Turn::Committed(size));
                }
                return Ok(Turn::Fetch(lease.keep_alive(LEASE_TTL)));
            }
            Taken::Held { holder, .. } => holder,
        };
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(digest = %d, holder, "another replica's fetch takes too long; fetching the blob here too");
            return Ok(Turn::Fetch(LeaseGuard::none()));
        }
        tracing::debug!(digest = %d, holder, "replica {holder} is fetching the blob; waiting for it");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
        if let Some(size) = store.blobs().size(d).await? {
            return Ok(Turn::Committed(size));
        }
    }
}

/// The slowest a blob download may be, on average over a window (a remote
/// that trickles a byte a second never times out a read, but is cut here).
#[derive(Debug, Clone, Copy)]
struct MinSpeed {
    bytes_per_sec: u64,
    window: std::time::Duration,
}

/// Watches a download's speed window by window.
struct SpeedCheck {
    min: MinSpeed,
    started: std::time::Instant,
    bytes: u64,
}

impl SpeedCheck {
    fn new(min: MinSpeed) -> SpeedCheck {
        SpeedCheck {
            min,
            started: std::time::Instant::now(),
            bytes: 0,
        }
    }

    /// Count `n` bytes; `Err(bytes/s)` when a whole window went by slower
    /// than the minimum.
    fn add(&mut self, n: u64) -> Result<(), u64> {
        self.bytes += n;
        let elapsed = self.started.elapsed();
        if elapsed < self.min.window {
            return Ok(());
        }
        let speed = (self.bytes as f64 / elapsed.as_secs_f64()) as u64;
        if speed < self.min.bytes_per_sec {
            return Err(speed);
        }
        *self = SpeedCheck::new(self.min);
        Ok(())
    }
}

/// Stream `body` into a writer (hashing, spooling) while followers read
/// the spool, verify the digest, then link and commit.
async fn spool(
    f: &Arc<Fetch>,
    mut body: BlobStream,
    remote: &str,
    counter: &AtomicU64,
    cache_repo: &RepoName,
    speed: MinSpeed,
) -> Result<u64, FetchError> {
    let total = body.content_length;
    if let Some(len) = total {
        f.store.blobs().ensure_room(len).await?;
    }
    let mut w = f.store.blobs().writer(f.digest.algorithm()).await?;
    let _ = f.spool.set(w.spool());
    let progress = f.progress.clone();
    w.on_progress(Box::new(move |n| progress.send_modify(|p| p.written = n)));
    f.progress.send_modify(|p| {
        p.phase = Phase::Streaming;
        p.total = total;
    });
    let received = receive(f, &mut body, &mut w, remote, counter, speed).await?;
    if let Some(want) = total.filter(|t| *t != received) {
        return Err(FetchError::Truncated {
            remote: remote.to_string(),
            got: received,
            want,
        });
    }
    let actual = w.digest().await?;
    if actual != f.digest {
        return Err(FetchError::DigestMismatch {
            remote: remote.to_string(),
            expected: f.digest.clone(),
            actual,
        });
    }
    // Verified and all in the spool: followers may send the last byte now.
    w.flush().await?;
    f.progress.send_modify(|p| {
        p.total = Some(received);
        p.written = received;
        p.verified = true;
    });
    // Link first, then commit: a request in between finds no blob and joins
    // this fetch (still in the table), never a linked-but-missing blob that
    // would send it to the remote again. A link whose blob never arrives
    // (commit failed, crash) is harmless: a blob is only served when both
    // exist.
    link(&f.store, cache_repo, &f.digest).await;
    w.commit(&f.digest).await?;
    Ok(received)
}

/// Copy the upstream body into the writer, and each chunk into the fetch's
/// memory window first; returns the bytes received.
async fn receive(
    f: &Fetch,
    body: &mut BlobStream,
    w: &mut BlobWriter,
    remote: &str,
    counter: &AtomicU64,
    speed: MinSpeed,
) -> Result<u64, FetchError> {
    let total = body.content_length;
    let mut received = 0u64;
    let mut published = 0u64;
    let mut check = SpeedCheck::new(speed);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| match e {
            UpstreamError::Unreachable { remote, reason } => UpstreamError::Unreachable {
                remote,
                reason: format!("{reason} (after {received} bytes)"),
            },
            e => e,
        })?;
        received += chunk.len() as u64;
        counter.fetch_add(chunk.len() as u64, Relaxed);
        if let Err(bps) = check.add(chunk.len() as u64) {
            return Err(FetchError::Upstream(UpstreamError::Unreachable {
                remote: remote.to_string(),
                reason: format!(
                    "the blob arrived at {bps} bytes/s, below the minimum of {} over {:?} (min_speed); abandoned after {received} bytes",
                    speed.bytes_per_sec, speed.window
                ),
            }));
        }
        if let Some(want) = total.filter(|t| received > *t) {
            return Err(FetchError::TooLong {
                remote: remote.to_string(),
                want,
            });
        }
        f.recent.push(chunk.clone());
        // Wake the followers every PUBLISH_EVERY bytes, not every read.
        if received - published >= PUBLISH_EVERY {
            published = received;
            f.progress.send_modify(|p| p.received = received);
        }
        w.write(chunk).await?;
    }
    Ok(received)
}

async fn link(store: &Store, cache_repo: &RepoName, d: &Digest) {
    if let Err(e) = store.repo(cache_repo).link_blob(d).await {
        tracing::warn!(digest = %d, error = %e, "could not link cached blob");
    }
}

/// Where a follower reads: the spool file, or (when it opened after the
/// commit to object storage) the stored object.
enum Source {
    Spool(ChunkReader),
    /// The spool (or blob) file, handed out as mapped chunks.
    ///
    /// Mapping the spool is as safe as mapping a blob (see
    /// [`crate::store::fs::mapped`]): a fetch's spool is a temp file that is
    /// only appended to, then renamed or unlinked, never truncated (only an
    /// upload session's rollback truncates, and a fetch has no session),
    /// and a follower maps only bytes the writer reported written.
    Mapped(Arc<std::fs::File>),
    Remote(crate::store::backend::ByteStream),
}

/// Reads a fetch's bytes as they land in the spool file.
pub struct Follower {
    fetch: Arc<Fetch>,
    rx: watch::Receiver<Progress>,
    file: Option<Source>,
    pos: u64,
    end: Option<u64>,
    /// Hand out mapped chunks of the spool (see [`Fetch::follow_mapped`]).
    mapped: bool,
}

impl Follower {
    async fn open(&mut self) -> io::Result<()> {
        // After the commit the spool is the blob; an open handle keeps
        // working, a late opener finds the committed blob.
        let spool = self.fetch.spool.get().cloned().flatten();
        let from_spool = match spool {
            Some(p) => match tokio::task::spawn_blocking(move || std::fs::File::open(p)).await {
                Ok(Ok(f)) => Some(f),
                Ok(Err(e)) if e.kind() == io::ErrorKind::NotFound => None,
                Ok(Err(e)) => return Err(e),
                Err(e) => return Err(io::Error::other(format!("open task failed: {e}"))),
            },
            None => None,
        };
        let file = match from_spool {
            Some(f) => f,
            None => match self
                .fetch
                .store
                .blobs()
                .open(&self.fetch.digest)
                .await
                .map_err(io::Error::other)?
            {
                Some(BlobData::File { file, .. }) => file,
                // Committed to object storage: the whole blob is there.
                Some(BlobData::Remote { source, len }) => {
                    let s = source.read(self.pos, len.saturating_sub(self.pos)).await?;
                    self.file = Some(Source::Remote(s));
                    return Ok(());
                }
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        "blob vanished while being fetched",
                    ))
                }
            },
        };
        if self.mapped {
            self.file = Some(Source::Mapped(Arc::new(file)));
            return Ok(());
        }
        // Positional reads: no seek needed. One recycled buffer: a follower
        // holds at most two chunks (hyper's and the one read).
        self.file = Some(Source::Spool(ChunkReader::with_pool(file, READ_CHUNK, 1)));
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
            let mut avail = p.written.max(p.received);
            if !done {
                if let Some(t) = p.total {
                    avail = avail.min(t.saturating_sub(1));
                }
            }
            if let Some(e) = end {
                avail = avail.min(e);
            }
            if self.pos < avail {
                if let Some(b) = self.fetch.recent.get(self.pos, avail) {
                    self.pos += b.len() as u64;
                    return Some(Ok(b));
                }
                // Behind the window: from the spool, once written there.
                let in_spool = avail.min(p.written);
                if self.pos < in_spool {
                    return Some(self.read(in_spool).await);
                }
            }
            if done {
                return None;
            }
            if self.rx.changed().await.is_err() {
                return Some(Err(io::Error::other("blob fetch vanished")));
            }
        }
    }

    /// Read the next chunk below `avail` from the spool.
    async fn read(&mut self, avail: u64) -> io::Result<Bytes> {
        if self.file.is_none() {
            self.open().await?;
        }
        let reader = match self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("spool not open"))?
        {
            Source::Spool(r) => r,
            Source::Mapped(file) => {
                let want = (avail - self.pos).min(crate::store::fs::mapped::CHUNK as u64) as usize;
                let b = crate::store::fs::mapped::map(file, self.pos, want)?;
                self.pos += want as u64;
                return Ok(b);
            }
            Source::Remote(s) => {
                use futures_util::StreamExt;
                let b = s.next().await.unwrap_or_else(|| {
                    Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "stored blob shorter than its size",
                    ))
                })?;
                self.pos += b.len() as u64;
                return Ok(b);
            }
        };
        let want = (avail - self.pos).min(READ_CHUNK as u64) as usize;
        match reader.read(self.pos, want).await {
            Ok(b) => {
                self.pos += b.len() as u64;
                Ok(b)
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "spool shorter than reported",
            )),
            Err(e) => Err(e),
        }
    }

    /// As a `Stream` of byte chunks.
    pub fn into_stream(self) -> impl futures_util::Stream<Item = io::Result<Bytes>> + Send {
        futures_util::stream::unfold(
            self,
            |mut f| async move { f.next_chunk().await.map(|c| (c, f)) },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REMOTE: &str = "up";

    fn fetch(store: &Store, d: &Digest) -> Arc<Fetch> {
        let (tx, _) = watch::channel(Progress {
            phase: Phase::Starting,
            total: None,
            written: 0,
            received: 0,
            verified: false,
        });
        Arc::new(Fetch {
            digest: d.clone(),
            store: store.clone(),
            spool: OnceLock::new(),
            recent: Recent::default(),
            progress: tx,
        })
    }

    /// `data` as an upstream body of 64 KiB chunks.
    fn body(data: &[u8], content_length: Option<u64>) -> BlobStream {
        let chunks: Vec<Result<Bytes, UpstreamError>> = data
            .chunks(64 * 1024)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        BlobStream::new(content_length, futures_util::stream::iter(chunks))
    }

    async fn read_all(f: Follower) -> io::Result<Vec<u8>> {
        use futures_util::TryStreamExt;
        let chunks: Vec<Bytes> = f.into_stream().try_collect().await?;
        Ok(chunks.concat())
    }

    /// Run the leader on `upstream` with three followers; returns what each
    /// follower read.
    async fn run_fetch(
        store: &Store,
        d: &Digest,
        upstream: BlobStream,
    ) -> (Result<(), FetchError>, Vec<io::Result<Vec<u8>>>) {
        let f = fetch(store, d);
        let followers: Vec<_> = (0..3)
            .map(|_| tokio::spawn(read_all(f.follow(0, None))))
            .collect();
        let cache: RepoName = "up/app".parse().unwrap();
        let counter = AtomicU64::new(0);
        let speed = MinSpeed {
            bytes_per_sec: 1,
            window: std::time::Duration::from_secs(60),
        };
        let res = spool(&f, upstream, REMOTE, &counter, &cache, speed)
            .await
            .map(|_| ());
        f.conclude(res.clone());
        let mut got = Vec::new();
        for h in followers {
            got.push(h.await.unwrap());
        }
        (res, got)
    }

    #[tokio::test]
    async fn followers_get_every_byte_and_the_blob_is_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let d = Digest::sha256_of(&data);
        let (res, got) = run_fetch(&store, &d, body(&data, Some(data.len() as u64))).await;
        res.unwrap();
        for g in got {
            assert!(g.unwrap() == data, "a follower read different bytes");
        }
        assert_eq!(
            store.blobs().size(&d).await.unwrap(),
            Some(data.len() as u64)
        );
        assert!(store
            .repo(&"up/app".parse().unwrap())
            .has_blob(&d)
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn wrong_bytes_fail_every_follower_and_store_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let data = vec![7u8; 1_000_000];
        let d = Digest::sha256_of(b"what the remote should have sent");
        let (res, got) = run_fetch(&store, &d, body(&data, Some(data.len() as u64))).await;
        assert!(
            matches!(res, Err(FetchError::DigestMismatch { .. })),
            "{res:?}"
        );
        for g in got {
            assert!(
                g.is_err(),
                "a follower completed a blob whose digest did not match"
            );
        }
        assert_eq!(store.blobs().size(&d).await.unwrap(), None);
        let tmp: Vec<_> = std::fs::read_dir(dir.path().join("tmp")).unwrap().collect();
        assert!(tmp.is_empty(), "the spool was left behind: {tmp:?}");
    }

    #[tokio::test]
    async fn a_body_shorter_or_longer_than_announced_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let data = vec![1u8; 200_000];
        let d = Digest::sha256_of(&data);
        let (res, got) = run_fetch(&store, &d, body(&data, Some(300_000))).await;
        assert!(
            matches!(res, Err(FetchError::Truncated { got: 200_000, .. })),
            "{res:?}"
        );
        assert!(got.iter().all(|g| g.is_err()));
        let (res, _) = run_fetch(&store, &d, body(&data, Some(100_000))).await;
        assert!(matches!(res, Err(FetchError::TooLong { .. })), "{res:?}");
        assert_eq!(store.blobs().size(&d).await.unwrap(), None);
    }
}
