//! A tiny hand-written registry for upstream misbehaviour that a real
//! registry cannot be made to produce: wrong bytes for a digest, a
//! connection reset mid-blob, 429/503 answers, hangs, slow trickles, its
//! own Basic or Bearer auth (recording exactly which credentials a client
//! sent) and blob redirects to a second host.
//!
//! It serves manifests and blobs from memory on a free 127.0.0.1 port,
//! one thread per connection, one request per connection
//! (`Connection: close`), and records every request (method, path, headers)
//! so tests can count upstream traffic and inspect headers. Stopped on drop.
//!
//! The small HTTP/1.1 server core ([`Server`], [`Request`], [`Response`])
//! is shared with the token issuer in `upstream.rs`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;

// ---------------------------------------------------------------------------
// HTTP core

/// One parsed HTTP/1.1 request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query as sent (`/v2/x/blobs/sha256:..?a=b`).
    pub target: String,
    /// Path without the query.
    pub path: String,
    /// Raw query string (without `?`), possibly empty.
    pub query: String,
    /// Header names lower-cased, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// First header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// All values of query parameter `key` (URL-decoded).
    pub fn query_all(&self, key: &str) -> Vec<String> {
        form_urlencoded::parse(self.query.as_bytes())
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
            .collect()
    }

    /// First value of query parameter `key`.
    pub fn query_one(&self, key: &str) -> Option<String> {
        self.query_all(key).into_iter().next()
    }

    /// Credentials of a `Basic` `Authorization` header, if any.
    pub fn basic_auth(&self) -> Option<(String, String)> {
        parse_basic(self.header("authorization")?)
    }
}

/// Decode `Basic <base64(user:pass)>`.
pub fn parse_basic(value: &str) -> Option<(String, String)> {
    let rest = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// `Basic <base64(user:pass)>`.
pub fn basic_header(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

fn read_request(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<Request>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    if method.is_empty() || target.is_empty() {
        return Ok(None);
    }
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 {
            return Ok(None);
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let len = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len.min(64 << 20)];
    reader.read_exact(&mut body)?;
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target.clone(), String::new()),
    };
    Ok(Some(Request {
        method,
        target,
        path,
        query,
        headers,
        body,
    }))
}

/// A response to write in one go.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
    pub fn header(mut self, k: &str, v: impl Into<String>) -> Response {
        self.headers.push((k.to_string(), v.into()));
        self
    }
    pub fn body(mut self, b: impl Into<Vec<u8>>) -> Response {
        self.body = b.into();
        self
    }
    pub fn json(status: u16, v: &serde_json::Value) -> Response {
        Response::new(status)
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(v).unwrap())
    }
    /// An OCI error response `{"errors":[{code,message,detail}]}`.
    pub fn oci_error(status: u16, code: &str, message: &str) -> Response {
        Response::json(
            status,
            &serde_json::json!({"errors":[{"code":code,"message":message,"detail":null}]}),
        )
    }

    /// Write status line and headers; `Content-Length` is the body's
    /// length unless a header already sets it.
    pub fn write_head(&self, s: &mut TcpStream) -> std::io::Result<()> {
        let mut head = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        let mut has_len = false;
        for (k, v) in &self.headers {
            has_len |= k.eq_ignore_ascii_case("content-length");
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if !has_len {
            head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        head.push_str("Connection: close\r\n\r\n");
        s.write_all(head.as_bytes())
    }

    /// Write the whole response (no body for `HEAD`).
    pub fn write(&self, s: &mut TcpStream, head_only: bool) -> std::io::Result<()> {
        self.write_head(s)?;
        if !head_only {
            s.write_all(&self.body)?;
        }
        s.flush()
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        206 => "Partial Content",
        302 => "Found",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// What a handler gets for one connection.
pub struct Conn {
    pub stream: TcpStream,
    /// Set when the server is stopping; long-running handlers (hang,
    /// trickle) poll it and give up.
    pub stopping: Arc<AtomicBool>,
    reset: bool,
}

impl Conn {
    /// Close the connection with a TCP RST (instead of a FIN) once the
    /// handler returns.
    pub fn reset(&mut self) {
        let _ = self.stream.flush();
        let _ = socket2::SockRef::from(&self.stream).set_linger(Some(Duration::ZERO));
        self.reset = true;
    }

    /// Sleep `d`, or less if the server is stopping; returns false if it is.
    pub fn sleep(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        while Instant::now() < end {
            if self.stopping.load(Ordering::SeqCst) {
                return false;
            }
            std::thread::sleep((end - Instant::now()).min(Duration::from_millis(20)));
        }
        !self.stopping.load(Ordering::SeqCst)
    }
}

type Handler = dyn Fn(Request, &mut Conn) + Send + Sync + 'static;

/// A minimal threaded HTTP/1.1 server on a free 127.0.0.1 port; one
/// request per connection. Stops (and stops accepting) on drop.
pub struct Server {
    pub addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start(handler: impl Fn(Request, &mut Conn) + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let stopping = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let stop2 = stopping.clone();
        let accept = std::thread::spawn(move || {
            for s in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = s else { continue };
                let handler = handler.clone();
                let stopping = stop2.clone();
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                    let Ok(read_half) = stream.try_clone() else {
                        return;
                    };
                    let mut reader = BufReader::new(read_half);
                    let Ok(Some(req)) = read_request(&mut reader) else {
                        return;
                    };
                    let mut conn = Conn {
                        stream,
                        stopping,
                        reset: false,
                    };
                    handler(req, &mut conn);
                    if conn.reset {
                        // Dropping the last descriptor with SO_LINGER 0 sends a RST.
                        return;
                    }
                    let _ = conn.stream.flush();
                    let _ = conn.stream.shutdown(std::net::Shutdown::Write);
                    // Drain what the client still sends so the close is a FIN,
                    // not a RST that could clip the response.
                    let _ = conn
                        .stream
                        .set_read_timeout(Some(Duration::from_millis(200)));
                    let mut sink = [0u8; 4096];
                    while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
                });
            }
        });
        Server {
            addr,
            stopping,
            accept: Some(accept),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stop(&mut self) {
        if let Some(t) = self.accept.take() {
            self.stopping.store(true, Ordering::SeqCst);
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------
// Recording

/// A request as the fake registry (or token issuer) received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub at: Instant,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One request to a token endpoint (the fake's own or the Distribution
/// test issuer's).
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// `GET` (docker token flow) or `POST` (OAuth2 form).
    pub method: String,
    /// Basic (or OAuth2 form) username, `None` for anonymous.
    pub user: Option<String>,
    /// Password exactly as received.
    pub password: Option<String>,
    /// Every `scope` parameter, in order.
    pub scopes: Vec<String>,
    pub service: Option<String>,
    /// OAuth2 form fields (`grant_type`, `refresh_token`, `client_id`).
    pub grant_type: Option<String>,
    pub refresh_token: Option<String>,
    pub client_id: Option<String>,
    /// Whether a token was issued.
    pub granted: bool,
}

/// Parse a token request (GET query or POST form) without judging it.
pub fn parse_token_request(req: &Request) -> TokenRequest {
    let mut user = None;
    let mut password = None;
    if let Some((u, p)) = req.basic_auth() {
        user = Some(u);
        password = Some(p);
    }
    let mut scopes = Vec::new();
    let mut service = None;
    let (mut grant_type, mut refresh_token, mut client_id) = (None, None, None);
    let mut take = |pairs: Vec<(String, String)>| {
        for (k, v) in pairs {
            match k.as_str() {
                // One scope parameter may hold several space-separated scopes.
                "scope" => {
                    scopes.extend(v.split(' ').filter(|s| !s.is_empty()).map(str::to_string))
                }
                "service" => service = Some(v),
                "username" if user.is_none() => user = Some(v),
                "password" if password.is_none() => password = Some(v),
                "grant_type" => grant_type = Some(v),
                "refresh_token" => refresh_token = Some(v),
                "client_id" => client_id = Some(v),
                _ => {}
            }
        }
    };
    take(
        form_urlencoded::parse(req.query.as_bytes())
            .into_owned()
            .collect(),
    );
    if req.method == "POST" {
        take(form_urlencoded::parse(&req.body).into_owned().collect());
    }
    TokenRequest {
        method: req.method.clone(),
        user,
        password,
        scopes,
        service,
        grant_type,
        refresh_token,
        client_id,
        granted: false,
    }
}

// ---------------------------------------------------------------------------
// The fake registry

/// How a blob is served.
#[derive(Debug, Clone, PartialEq)]
pub enum BlobMode {
    Normal,
    /// Same length, different content (the last byte is flipped), with the
    /// correct `Docker-Content-Digest` header.
    WrongBytes,
    /// Full `Content-Length` header, then this many body bytes, then a TCP
    /// reset.
    ResetAfter(usize),
    /// The body in `chunk`-byte pieces with `delay` between them.
    Trickle {
        chunk: usize,
        delay: Duration,
    },
    /// Headers and this many body bytes, then nothing (connection stays
    /// open until the server stops).
    StallAfter(usize),
}

/// A fault answered instead of the normal response.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// This status with an OCI error body (`TOOMANYREQUESTS` for 429,
    /// `UNAVAILABLE` otherwise) and optionally `Retry-After: <secs>`.
    Status {
        status: u16,
        retry_after: Option<u64>,
    },
    /// Read the request, never answer (until the server stops).
    Hang,
    /// Read the request, then close with a TCP reset.
    Reset,
}

impl Fault {
    pub fn too_many(retry_after: Option<u64>) -> Fault {
        Fault::Status {
            status: 429,
            retry_after,
        }
    }
    pub fn unavailable() -> Fault {
        Fault::Status {
            status: 503,
            retry_after: None,
        }
    }
}

#[derive(Debug, Clone)]
struct FaultRule {
    fault: Fault,
    /// Only requests whose path contains this (None: every `/v2/` request).
    path_contains: Option<String>,
    /// Requests left to fail (None: forever).
    remaining: Option<usize>,
}

#[derive(Debug, Clone)]
enum AuthMode {
    None,
    Basic {
        user: String,
        pass: String,
    },
    /// Token flow via the fake's own `/token`; `creds: None` issues
    /// anonymous tokens (Docker Hub style).
    Bearer {
        creds: Option<(String, String)>,
    },
    /// Token flow where `/token` grants only the OAuth2 refresh-token form
    /// POST carrying exactly this refresh token.
    Refresh {
        token: String,
    },
}

/// A manifest as stored: (media type, bytes).
type StoredManifest = (String, Arc<Vec<u8>>);

#[derive(Default)]
struct Store {
    blobs: HashMap<String, Arc<Vec<u8>>>,
    /// (repo, tag or digest) -> (media type, bytes)
    manifests: HashMap<(String, String), StoredManifest>,
}

struct State {
    store: Store,
    blob_modes: HashMap<String, BlobMode>,
    faults: Vec<FaultRule>,
    auth: AuthMode,
    /// token -> scopes it was issued for
    tokens: HashMap<String, Vec<String>>,
    token_ttl: u64,
    redirect_blobs: Option<String>,
    requests: Vec<Recorded>,
    token_requests: Vec<TokenRequest>,
}

/// A generated image held by the fake.
#[derive(Debug, Clone)]
pub struct FakeImage {
    pub repo: String,
    pub tag: String,
    pub digest: String,
    pub manifest: Vec<u8>,
    pub media_type: String,
    pub config: String,
    pub layers: Vec<String>,
}

impl FakeImage {
    /// Config and layer digests.
    pub fn blobs(&self) -> Vec<String> {
        let mut v = vec![self.config.clone()];
        v.extend(self.layers.iter().cloned());
        v
    }
}

/// The fake registry. See the module docs.
pub struct FakeUpstream {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    server: Server,
    token_seq: Arc<AtomicU64>,
}

impl FakeUpstream {
    /// Start an empty fake registry (no auth, no faults).
    pub fn start() -> FakeUpstream {
        let state = Arc::new(Mutex::new(State {
            store: Store::default(),
            blob_modes: HashMap::new(),
            faults: Vec::new(),
            auth: AuthMode::None,
            tokens: HashMap::new(),
            token_ttl: 300,
            redirect_blobs: None,
            requests: Vec::new(),
            token_requests: Vec::new(),
        }));
        let token_seq = Arc::new(AtomicU64::new(1));
        // The Bearer realm names this server's own address, known only
        // after bind: the handler reads it from a cell filled right after.
        let self_addr: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
        let (st, seq, sa) = (state.clone(), token_seq.clone(), self_addr.clone());
        let server = Server::start(move |req, conn| {
            let me = sa.lock().unwrap().expect("fake address");
            handle(&st, &seq, me, req, conn);
        });
        *self_addr.lock().unwrap() = Some(server.addr);
        FakeUpstream {
            addr: server.addr,
            state,
            server,
            token_seq,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Add a blob (served under every repository); returns its digest.
    pub fn add_blob(&self, bytes: Vec<u8>) -> String {
        let d = super::sha256(&bytes);
        self.state
            .lock()
            .unwrap()
            .store
            .blobs
            .insert(d.clone(), Arc::new(bytes));
        d
    }

    /// Add a manifest under `repo` by digest and, if given, by `tag`;
    /// returns its digest.
    pub fn add_manifest(
        &self,
        repo: &str,
        tag: Option<&str>,
        media_type: &str,
        bytes: Vec<u8>,
    ) -> String {
        let d = super::sha256(&bytes);
        let entry = (media_type.to_string(), Arc::new(bytes));
        let mut st = self.state.lock().unwrap();
        st.store
            .manifests
            .insert((repo.to_string(), d.clone()), entry.clone());
        if let Some(t) = tag {
            st.store
                .manifests
                .insert((repo.to_string(), t.to_string()), entry);
        }
        d
    }

    /// Remove a tag (later GETs of it answer 404).
    pub fn remove_tag(&self, repo: &str, tag: &str) {
        self.state
            .lock()
            .unwrap()
            .store
            .manifests
            .remove(&(repo.to_string(), tag.to_string()));
    }

    /// Add an OCI image (config + layers of the given sizes, content from
    /// `seed`) tagged `repo:tag`.
    pub fn add_image_sized(
        &self,
        repo: &str,
        tag: &str,
        seed: u64,
        layer_sizes: &[usize],
    ) -> FakeImage {
        let cfg = format!(
            "{{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{{}},\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[]}},\"seed\":{seed}}}"
        )
        .into_bytes();
        let cfg_len = cfg.len();
        let config = self.add_blob(cfg);
        let mut layers = Vec::new();
        let mut descs = Vec::new();
        for (i, &n) in layer_sizes.iter().enumerate() {
            let d = self.add_blob(super::data(
                seed.wrapping_mul(1000).wrapping_add(i as u64 + 1),
                n,
            ));
            descs.push(super::descriptor(super::MT_OCI_LAYER, &d, n));
            layers.push(d);
        }
        let manifest = super::image_manifest(
            super::MT_OCI_MANIFEST,
            super::descriptor(super::MT_OCI_CONFIG, &config, cfg_len),
            descs,
            serde_json::json!({}),
        );
        let digest = self.add_manifest(repo, Some(tag), super::MT_OCI_MANIFEST, manifest.clone());
        FakeImage {
            repo: repo.to_string(),
            tag: tag.to_string(),
            digest,
            manifest,
            media_type: super::MT_OCI_MANIFEST.to_string(),
            config,
            layers,
        }
    }

    /// [`add_image_sized`](Self::add_image_sized) with two small layers.
    pub fn add_image(&self, repo: &str, tag: &str, seed: u64) -> FakeImage {
        self.add_image_sized(repo, tag, seed, &[1500, 40_000])
    }

    /// The bytes held for a blob.
    pub fn blob(&self, digest: &str) -> Option<Vec<u8>> {
        self.state
            .lock()
            .unwrap()
            .store
            .blobs
            .get(digest)
            .map(|b| b.to_vec())
    }

    /// Serve `digest` this way from now on.
    pub fn set_blob_mode(&self, digest: &str, mode: BlobMode) {
        self.state
            .lock()
            .unwrap()
            .blob_modes
            .insert(digest.to_string(), mode);
    }

    /// Serve every blob this way from now on (per-digest modes win).
    pub fn set_all_blobs_mode(&self, mode: BlobMode) {
        self.state
            .lock()
            .unwrap()
            .blob_modes
            .insert("*".to_string(), mode);
    }

    /// Answer the next `n` `/v2/` requests with `fault`.
    pub fn fail_next(&self, n: usize, fault: Fault) {
        self.fail_where(None, Some(n), fault);
    }

    /// Answer every `/v2/` request with `fault` until [`heal`](Self::heal).
    pub fn fail_all(&self, fault: Fault) {
        self.fail_where(None, None, fault);
    }

    /// Answer `/v2/` requests whose path contains `path_contains` (all if
    /// `None`) with `fault`, `count` times (forever if `None`). Rules are
    /// tried in the order added.
    pub fn fail_where(&self, path_contains: Option<&str>, count: Option<usize>, fault: Fault) {
        self.state.lock().unwrap().faults.push(FaultRule {
            fault,
            path_contains: path_contains.map(str::to_string),
            remaining: count,
        });
    }

    /// Drop every fault rule and blob mode: behave correctly again.
    pub fn heal(&self) {
        let mut st = self.state.lock().unwrap();
        st.faults.clear();
        st.blob_modes.clear();
    }

    /// Require exactly these Basic credentials on every `/v2/` request.
    pub fn require_basic(&self, user: &str, pass: &str) {
        self.state.lock().unwrap().auth = AuthMode::Basic {
            user: user.into(),
            pass: pass.into(),
        };
    }

    /// Require a Bearer token from this fake's own `/token` endpoint
    /// (challenge `Bearer realm="http://ADDR/token",service="fake-registry"`).
    /// The token endpoint demands exactly `creds` as Basic auth (or OAuth2
    /// form fields); `None` issues tokens anonymously.
    pub fn require_bearer(&self, creds: Option<(&str, &str)>) {
        self.state.lock().unwrap().auth = AuthMode::Bearer {
            creds: creds.map(|(u, p)| (u.to_string(), p.to_string())),
        };
    }

    /// Require a Bearer token that `/token` issues only for an OAuth2
    /// `grant_type=refresh_token` POST with exactly `refresh_token`.
    pub fn require_oauth_refresh(&self, refresh_token: &str) {
        self.state.lock().unwrap().auth = AuthMode::Refresh {
            token: refresh_token.to_string(),
        };
    }

    /// No auth required (the default).
    pub fn no_auth(&self) {
        self.state.lock().unwrap().auth = AuthMode::None;
    }

    /// `expires_in` of issued tokens (seconds).
    pub fn set_token_ttl(&self, secs: u64) {
        self.state.lock().unwrap().token_ttl = secs;
    }

    /// Forget every issued token: the next request with one gets a 401
    /// challenge (tests "refresh once on 401").
    pub fn revoke_tokens(&self) {
        self.state.lock().unwrap().tokens.clear();
    }

    /// Answer blob GETs (after auth) with `307` to
    /// `<other>/storage/<digest>?sig=…`, and give `other` a copy of every
    /// blob held now. `other` serves `/storage/` without auth and records
    /// the headers it got (e.g. to check no `Authorization` was forwarded).
    pub fn redirect_blobs_to(&self, other: &FakeUpstream) {
        let blobs = self.state.lock().unwrap().store.blobs.clone();
        other.state.lock().unwrap().store.blobs.extend(blobs);
        self.state.lock().unwrap().redirect_blobs = Some(other.url());
    }

    /// Stop redirecting blob GETs.
    pub fn no_redirect(&self) {
        self.state.lock().unwrap().redirect_blobs = None;
    }

    /// Every request received so far (token and storage requests included).
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Requests with this method and exact path (query ignored).
    pub fn requests_to(&self, method: &str, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path == path)
            .collect()
    }

    /// How many requests with this method and exact path (query ignored).
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.requests_to(method, path).len()
    }

    /// `GET` count of `/v2/<repo>/blobs/<digest>`.
    pub fn blob_gets(&self, repo: &str, digest: &str) -> usize {
        self.count("GET", &format!("/v2/{repo}/blobs/{digest}"))
    }

    /// Requests to `/token`, with the credentials they carried.
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.state.lock().unwrap().token_requests.clone()
    }

    /// Forget recorded requests (not the content or modes).
    pub fn clear_requests(&self) {
        let mut st = self.state.lock().unwrap();
        st.requests.clear();
        st.token_requests.clear();
    }

    /// A `[[remotes]]` TOML entry for wharf pointing here; `extra` lines
    /// (e.g. `tag_ttl = "1s"`) go before the credentials table.
    pub fn remote_toml(&self, name: &str, creds: Option<(&str, &str)>, extra: &str) -> String {
        super::upstream::remote_toml_with(name, &self.url(), creds, extra)
    }

    #[doc(hidden)]
    pub fn tokens_issued(&self) -> u64 {
        self.token_seq.load(Ordering::SeqCst) - 1
    }
}

/// Split `/v2/<name>/<kind>/<ref>` from the right.
fn split_v2(path: &str) -> Option<(String, &'static str, String)> {
    let rest = path.strip_prefix("/v2/")?;
    for kind in ["manifests", "blobs"] {
        let pat = format!("/{kind}/");
        if let Some(i) = rest.rfind(&pat) {
            let name = &rest[..i];
            let reference = &rest[i + pat.len()..];
            if !name.is_empty() && !reference.is_empty() && !reference.contains('/') {
                return Some((name.to_string(), kind, reference.to_string()));
            }
        }
    }
    None
}

fn handle(
    state: &Arc<Mutex<State>>,
    seq: &AtomicU64,
    me: SocketAddr,
    req: Request,
    conn: &mut Conn,
) {
    let head_only = req.method == "HEAD";
    state.lock().unwrap().requests.push(Recorded {
        method: req.method.clone(),
        path: req.path.clone(),
        target: req.target.clone(),
        headers: req.headers.clone(),
        at: Instant::now(),
    });

    // Pre-signed storage URL: no auth, no faults.
    if let Some(d) = req.path.strip_prefix("/storage/") {
        let blob = state.lock().unwrap().store.blobs.get(d).cloned();
        let _ = match blob {
            Some(b) => serve_blob(&b, d, &req, BlobMode::Normal, conn),
            None => Response::new(404).write(&mut conn.stream, head_only),
        };
        return;
    }

    if req.path == "/token" {
        let resp = token_endpoint(state, seq, &req);
        let _ = resp.write(&mut conn.stream, false);
        return;
    }

    if !req.path.starts_with("/v2/") && req.path != "/v2" {
        let _ = Response::new(404).write(&mut conn.stream, head_only);
        return;
    }

    // Faults.
    let fault = {
        let mut st = state.lock().unwrap();
        let mut hit = None;
        for rule in st.faults.iter_mut() {
            let matches = rule
                .path_contains
                .as_deref()
                .is_none_or(|p| req.path.contains(p));
            if matches && rule.remaining != Some(0) {
                if let Some(n) = rule.remaining.as_mut() {
                    *n -= 1;
                }
                hit = Some(rule.fault.clone());
                break;
            }
        }
        hit
    };
    match fault {
        Some(Fault::Status {
            status,
            retry_after,
        }) => {
            let code = if status == 429 {
                "TOOMANYREQUESTS"
            } else {
                "UNAVAILABLE"
            };
            let mut r = Response::oci_error(status, code, "fake upstream fault");
            if let Some(s) = retry_after {
                r = r.header("Retry-After", s.to_string());
            }
            let _ = r.write(&mut conn.stream, head_only);
            return;
        }
        Some(Fault::Hang) => {
            while conn.sleep(Duration::from_secs(1)) {}
            return;
        }
        Some(Fault::Reset) => {
            conn.reset();
            return;
        }
        None => {}
    }

    // Auth.
    let parsed = split_v2(&req.path);
    let auth = state.lock().unwrap().auth.clone();
    match auth {
        AuthMode::None => {}
        AuthMode::Basic { user, pass } => {
            if req.basic_auth() != Some((user, pass)) {
                let r = Response::oci_error(401, "UNAUTHORIZED", "authentication required")
                    .header("WWW-Authenticate", "Basic realm=\"fake-registry\"")
                    .header("Docker-Distribution-API-Version", "registry/2.0");
                let _ = r.write(&mut conn.stream, head_only);
                return;
            }
        }
        AuthMode::Bearer { .. } | AuthMode::Refresh { .. } => {
            let needed = parsed
                .as_ref()
                .map(|(name, _, _)| format!("repository:{name}:pull"));
            let ok = req
                .header("authorization")
                .and_then(|v| v.strip_prefix("Bearer "))
                .and_then(|t| state.lock().unwrap().tokens.get(t.trim()).cloned())
                .is_some_and(|scopes| match &needed {
                    None => true,
                    Some(n) => scopes.iter().any(|s| scope_covers(s, n)),
                });
            if !ok {
                let mut ch =
                    format!("Bearer realm=\"http://{me}/token\",service=\"fake-registry\"");
                if let Some(n) = &needed {
                    ch.push_str(&format!(",scope=\"{n}\""));
                }
                let r = Response::oci_error(401, "UNAUTHORIZED", "authentication required")
                    .header("WWW-Authenticate", ch)
                    .header("Docker-Distribution-API-Version", "registry/2.0");
                let _ = r.write(&mut conn.stream, head_only);
                return;
            }
        }
    }

    let Some((name, kind, reference)) = parsed else {
        if req.path == "/v2/" || req.path == "/v2" {
            let r = Response::json(200, &serde_json::json!({}))
                .header("Docker-Distribution-API-Version", "registry/2.0");
            let _ = r.write(&mut conn.stream, head_only);
        } else {
            let _ = Response::oci_error(404, "NAME_UNKNOWN", "unknown path")
                .write(&mut conn.stream, head_only);
        }
        return;
    };

    if req.method != "GET" && req.method != "HEAD" {
        let _ = Response::oci_error(405, "UNSUPPORTED", "read-only fake")
            .write(&mut conn.stream, head_only);
        return;
    }

    if kind == "manifests" {
        let m = state
            .lock()
            .unwrap()
            .store
            .manifests
            .get(&(name, reference))
            .cloned();
        let r = match m {
            Some((mt, bytes)) => Response::new(200)
                .header("Content-Type", mt)
                .header("Docker-Content-Digest", super::sha256(&bytes))
                .header("Docker-Distribution-API-Version", "registry/2.0")
                .body(bytes.to_vec()),
            None => Response::oci_error(404, "MANIFEST_UNKNOWN", "manifest unknown"),
        };
        let _ = r.write(&mut conn.stream, head_only);
        return;
    }

    // Blobs.
    let (blob, mode, redirect) = {
        let st = state.lock().unwrap();
        let mode = st
            .blob_modes
            .get(&reference)
            .or_else(|| st.blob_modes.get("*"))
            .cloned()
            .unwrap_or(BlobMode::Normal);
        (
            st.store.blobs.get(&reference).cloned(),
            mode,
            st.redirect_blobs.clone(),
        )
    };
    let Some(blob) = blob else {
        let _ = Response::oci_error(404, "BLOB_UNKNOWN", "blob unknown")
            .write(&mut conn.stream, head_only);
        return;
    };
    if let (Some(base), false) = (redirect, head_only) {
        let r = Response::new(307).header(
            "Location",
            format!("{base}/storage/{reference}?sig=fake-signature"),
        );
        let _ = r.write(&mut conn.stream, false);
        return;
    }
    let _ = serve_blob(&blob, &reference, &req, mode, conn);
}

/// Does granted scope `have` (`repository:name:pull,push`) cover `want`?
fn scope_covers(have: &str, want: &str) -> bool {
    let split = |s: &str| -> Option<(String, String, Vec<String>)> {
        let (t, rest) = s.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        Some((
            t.to_string(),
            name.to_string(),
            actions.split(',').map(str::to_string).collect(),
        ))
    };
    match (split(have), split(want)) {
        (Some((t1, n1, a1)), Some((t2, n2, a2))) => {
            t1 == t2
                && n1 == n2
                && a2
                    .iter()
                    .all(|a| a1.contains(a) || a1.iter().any(|x| x == "*"))
        }
        _ => false,
    }
}

fn token_endpoint(state: &Arc<Mutex<State>>, seq: &AtomicU64, req: &Request) -> Response {
    let mut tr = parse_token_request(req);
    let mut st = state.lock().unwrap();
    let allowed = match &st.auth {
        AuthMode::Bearer { creds: None } => true,
        AuthMode::Bearer {
            creds: Some((u, p)),
        } => tr.user.as_deref() == Some(u.as_str()) && tr.password.as_deref() == Some(p.as_str()),
        AuthMode::Refresh { token } => {
            tr.method == "POST"
                && tr.grant_type.as_deref() == Some("refresh_token")
                && tr.refresh_token.as_deref() == Some(token.as_str())
                && tr.client_id.as_deref().is_some_and(|c| !c.is_empty())
                && tr.user.is_none()
        }
        _ => false,
    };
    tr.granted = allowed;
    let scopes = tr.scopes.clone();
    st.token_requests.push(tr);
    if !allowed {
        return Response::json(
            401,
            &serde_json::json!({"details":"incorrect username or password"}),
        )
        .header("WWW-Authenticate", "Basic realm=\"fake-token\"");
    }
    let token = format!("fake-token-{}", seq.fetch_add(1, Ordering::SeqCst));
    st.tokens.insert(token.clone(), scopes);
    Response::json(
        200,
        &serde_json::json!({
            "token": token,
            "access_token": token,
            "expires_in": st.token_ttl,
            "issued_at": "2024-01-01T00:00:00Z",
        }),
    )
}

/// Parse `Range: bytes=a-b` / `bytes=a-` against `len`.
fn parse_range(v: &str, len: usize) -> Option<(usize, usize)> {
    let spec = v.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let start: usize = a.trim().parse().ok()?;
    let end: usize = if b.trim().is_empty() {
        len.checked_sub(1)?
    } else {
        b.trim().parse::<usize>().ok()?.min(len - 1)
    };
    (start <= end && end < len).then_some((start, end))
}

fn serve_blob(
    blob: &[u8],
    digest: &str,
    req: &Request,
    mode: BlobMode,
    conn: &mut Conn,
) -> std::io::Result<()> {
    let head_only = req.method == "HEAD";
    let mut body: Vec<u8> = blob.to_vec();
    if mode == BlobMode::WrongBytes {
        if let Some(last) = body.last_mut() {
            *last ^= 0xff;
        }
    }
    let mut status = 200;
    let mut extra = Vec::new();
    if let Some((a, b)) = req.header("range").and_then(|r| parse_range(r, body.len())) {
        status = 206;
        extra.push((
            "Content-Range".to_string(),
            format!("bytes {a}-{b}/{}", body.len()),
        ));
        body = body[a..=b].to_vec();
    }
    let mut r = Response::new(status)
        .header("Content-Type", "application/octet-stream")
        .header("Docker-Content-Digest", digest)
        .header("Accept-Ranges", "bytes")
        .header("Content-Length", body.len().to_string());
    r.headers.extend(extra);
    r.write_head(&mut conn.stream)?;
    if head_only {
        return conn.stream.flush();
    }
    match mode {
        BlobMode::Normal | BlobMode::WrongBytes => conn.stream.write_all(&body)?,
        BlobMode::ResetAfter(n) => {
            conn.stream.write_all(&body[..n.min(body.len())])?;
            conn.stream.flush()?;
            std::thread::sleep(Duration::from_millis(20));
            conn.reset();
            return Ok(());
        }
        BlobMode::StallAfter(n) => {
            conn.stream.write_all(&body[..n.min(body.len())])?;
            conn.stream.flush()?;
            while conn.sleep(Duration::from_secs(1)) {}
            return Ok(());
        }
        BlobMode::Trickle { chunk, delay } => {
            for piece in body.chunks(chunk.max(1)) {
                conn.stream.write_all(piece)?;
                conn.stream.flush()?;
                if !conn.sleep(delay) {
                    return Ok(());
                }
            }
        }
    }
    conn.stream.flush()
}
