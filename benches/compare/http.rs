//! A minimal HTTP/1.1 client over `std::net`, used for setup (pushes,
//! mounts, the fill of the store phase) and for the one in-process
//! throughput row kept for comparison with the older method. Timed
//! user-facing measurements use separate client processes (`tools.rs`).

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::Res;

pub enum Body<'a> {
    None,
    Bytes(&'a [u8]),
    File(&'a Path, u64),
}

pub struct Head {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub const READ_BUF: usize = 1 << 20;

/// One request on a fresh connection (`Connection: close`); the response
/// body goes to `sink`. Returns the head and the body length.
pub fn exchange(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Body,
    sink: &mut dyn FnMut(&[u8]),
) -> Res<(Head, u64)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    s.set_write_timeout(Some(Duration::from_secs(120)))?;
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: wharf-bench\r\n");
    for (k, v) in headers {
        let _ = write!(req, "{k}: {v}\r\n");
    }
    match &body {
        Body::None => {}
        Body::Bytes(b) => {
            let _ = write!(req, "Content-Length: {}\r\n", b.len());
        }
        Body::File(_, n) => {
            let _ = write!(req, "Content-Length: {n}\r\n");
        }
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    match body {
        Body::None => {}
        Body::Bytes(b) => s.write_all(b)?,
        Body::File(p, n) => {
            let copied = io::copy(&mut File::open(p)?.take(n), &mut s)?;
            if copied != n {
                return Err(format!("{} is shorter than {n} bytes", p.display()).into());
            }
        }
    }
    let mut r = BufReader::with_capacity(64 * 1024, s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line {line:?} from {addr}"))?;
    let mut hs = Vec::new();
    for _ in 0..200 {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err("connection closed in the response head".into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            hs.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let head = Head {
        status,
        headers: hs,
    };
    if method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok((head, 0));
    }
    let mut buf = vec![0u8; READ_BUF];
    let mut total = 0u64;
    let chunked = head
        .get("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let size = u64::from_str_radix(line.trim().split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| format!("bad chunk size line {line:?}"))?;
            if size == 0 {
                // Trailers, then the empty line.
                for _ in 0..100 {
                    line.clear();
                    if r.read_line(&mut line)? == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let mut left = size;
            while left > 0 {
                let want = left.min(buf.len() as u64) as usize;
                let n = r.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(format!("body ended inside a chunk after {total} bytes").into());
                }
                sink(&buf[..n]);
                total += n as u64;
                left -= n as u64;
            }
            line.clear();
            r.read_line(&mut line)?;
        }
    } else if let Some(len) = head
        .get("content-length")
        .and_then(|v| v.parse::<u64>().ok())
    {
        let mut left = len;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = r.read(&mut buf[..want])?;
            if n == 0 {
                return Err(
                    format!("body ended after {total} of {len} bytes from {addr}{target}").into(),
                );
            }
            sink(&buf[..n]);
            total += n as u64;
            left -= n as u64;
        }
    } else {
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                break;
            }
            sink(&buf[..n]);
            total += n as u64;
        }
    }
    Ok((head, total))
}

/// A request whose response body is kept.
pub fn http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Body,
) -> Res<(Head, Vec<u8>)> {
    let mut out = Vec::new();
    let (h, _) = exchange(addr, method, target, headers, body, &mut |b| {
        out.extend_from_slice(b)
    })?;
    Ok((h, out))
}

/// GET `target`, discarding (or hashing) the body; checks status 200.
/// Returns the body length and, when hashing, its sha256 digest.
pub fn download(addr: SocketAddr, target: &str, hash: bool) -> Res<(u64, Option<String>)> {
    let mut h = Sha256::new();
    let (head, n) = exchange(addr, "GET", target, &[], Body::None, &mut |b| {
        if hash {
            h.update(b);
        }
    })?;
    if head.status != 200 {
        return Err(format!("GET {addr}{target}: status {}", head.status).into());
    }
    Ok((
        n,
        hash.then(|| format!("sha256:{}", hex::encode(h.finalize()))),
    ))
}

/// The path-and-query of a `Location` that may be absolute.
pub fn location_target(loc: &str) -> String {
    match loc.find("://") {
        Some(i) => {
            let rest = &loc[i + 3..];
            rest.find('/')
                .map(|j| rest[j..].to_string())
                .unwrap_or_else(|| "/".into())
        }
        None => loc.to_string(),
    }
}

// ---------------------------------------------------------------------------
// The OCI distribution API over this client

/// A registry's address plus, optionally, Basic credentials sent with
/// every request.
#[derive(Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// The `Authorization` header value, when the registry needs one.
    pub auth: Option<String>,
}

impl Endpoint {
    pub fn open(addr: SocketAddr) -> Endpoint {
        Endpoint { addr, auth: None }
    }

    pub fn basic(addr: SocketAddr, user: &str, password: &str) -> Endpoint {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Endpoint {
            addr,
            auth: Some(format!("Basic {token}")),
        }
    }

    /// One request; the body of the answer is returned whole.
    pub fn request(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Res<(Head, Vec<u8>)> {
        let mut hs: Vec<(&str, &str)> = headers.to_vec();
        if let Some(a) = &self.auth {
            hs.push(("Authorization", a));
        }
        http(self.addr, method, target, &hs, body)
    }

    /// Upload `b` into `repo` (POST, then a monolithic PUT).
    pub fn push_blob(&self, repo: &str, b: &crate::content::BlobFile) -> Res<()> {
        let (h, _) = self.request(
            "POST",
            &format!("/v2/{repo}/blobs/uploads/"),
            &[],
            Body::Bytes(b""),
        )?;
        if h.status != 202 {
            return Err(format!("upload start in {repo}: status {}", h.status).into());
        }
        let loc = location_target(h.get("location").ok_or("upload start: no Location")?);
        let sep = if loc.contains('?') { '&' } else { '?' };
        let target = format!("{loc}{sep}digest={}", b.digest);
        let (h, body) = self.request(
            "PUT",
            &target,
            &[("Content-Type", "application/octet-stream")],
            Body::File(&b.path, b.size),
        )?;
        if h.status != 201 {
            return Err(format!(
                "upload of {}: status {}: {}",
                b.digest,
                h.status,
                String::from_utf8_lossy(&body)
            )
            .into());
        }
        Ok(())
    }

    /// Cross-repository mount of `digest` from `from` into `repo`; 201 is
    /// required (a 202 would mean the registry opened an upload instead).
    pub fn mount_blob(&self, repo: &str, digest: &str, from: &str) -> Res<()> {
        let target = format!("/v2/{repo}/blobs/uploads/?mount={digest}&from={from}");
        let (h, body) = self.request("POST", &target, &[], Body::Bytes(b""))?;
        if h.status != 201 {
            return Err(format!(
                "mount of {digest} into {repo}: status {}: {}",
                h.status,
                String::from_utf8_lossy(&body)
            )
            .into());
        }
        Ok(())
    }

    /// PUT an OCI image manifest as `repo:reference`.
    pub fn put_manifest(&self, repo: &str, reference: &str, bytes: &[u8]) -> Res<()> {
        let (h, body) = self.request(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Content-Type", crate::content::OCI_MANIFEST)],
            Body::Bytes(bytes),
        )?;
        if h.status != 201 {
            return Err(format!(
                "manifest PUT {repo}:{reference}: status {}: {}",
                h.status,
                String::from_utf8_lossy(&body)
            )
            .into());
        }
        Ok(())
    }
}
