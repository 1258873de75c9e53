//! `[server]` and `[server.tls]`: how wharf accepts connections, the limits
//! that protect it from slow or abusive clients, and how long it drains on
//! shutdown.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{duration, size, ConfigError};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) listen: Option<String>,
    shutdown_grace: Option<String>,
    max_connections: Option<usize>,
    header_read_timeout: Option<String>,
    idle_timeout: Option<String>,
    max_header_size: Option<String>,
    max_headers: Option<usize>,
    external_url: Option<String>,
    mode: Option<String>,
    sendfile: Option<bool>,
    tls: Option<RawTls>,
}

/// What this wharf accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Pull-through cache and private registry (pushes go to projects).
    #[default]
    Registry,
    /// Pull-through only: every push, upload and registry-API delete is
    /// refused. The safe choice for a mirror on a shared network.
    Mirror,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    reload_interval: Option<String>,
}

/// Certificate and key files for HTTPS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM: the server certificate first, then intermediates.
    pub cert_file: PathBuf,
    /// PEM: PKCS#8, PKCS#1 (RSA) or SEC1 (EC) private key.
    pub key_file: PathBuf,
    /// How often the files' modification times are checked (SIGHUP reloads
    /// at once).
    pub reload_interval: Duration,
}

/// Validated `[server]` settings (besides `listen`).
#[derive(Debug, Clone)]
pub struct Server {
    /// How long in-flight requests may run after SIGTERM/SIGINT.
    pub shutdown_grace: Duration,
    /// Connections served at once; further clients wait in the kernel's
    /// accept backlog.
    pub max_connections: usize,
    /// Time a client has to send a request's complete header block
    /// (slowloris protection; HTTP/1).
    pub header_read_timeout: Duration,
    /// A connection on which nothing was read or written for this long is
    /// closed (idle keep-alive, clients that stopped reading or sending).
    pub idle_timeout: Duration,
    /// Largest request header block (HTTP/1 buffer, HTTP/2 header list).
    pub max_header_size: usize,
    /// Most header fields in one HTTP/1 request.
    pub max_headers: usize,
    /// How clients reach wharf (`https://wharf.example`), for the token
    /// realm and `Location` headers; without it they are derived from the
    /// request's (validated) Host.
    pub external_url: Option<String>,
    /// HTTPS when set; plain HTTP otherwise.
    pub tls: Option<TlsFiles>,
    /// `server.mode`: `registry` (default) or `mirror` (read-only).
    pub mode: Mode,
    /// Send blob bodies on plain HTTP/1.x with `sendfile(2)` (off by
    /// default: half the CPU per byte, but slower skopeo pulls on
    /// loopback in the README's A/B run).
    pub sendfile: bool,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            shutdown_grace: Duration::from_secs(30),
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            max_header_size: 64 << 10,
            max_headers: 100,
            external_url: None,
            tls: None,
            mode: Mode::Registry,
            sendfile: false,
        }
    }
}

impl RawServer {
    pub(super) fn validate(self) -> Result<Server, ConfigError> {
        let d = Server::default();
        let dur = |key: &str, v: Option<String>, def: Duration| match v {
            None => Ok(def),
            Some(v) => duration(key, &v),
        };
        let positive = |key: &str, v: Duration| {
            if v.is_zero() {
                Err(ConfigError::invalid(key, "must be more than zero"))
            } else {
                Ok(v)
            }
        };
        let shutdown_grace = dur(
            "server.shutdown_grace",
            self.shutdown_grace,
            d.shutdown_grace,
        )?;
        let header_read_timeout = positive(
            "server.header_read_timeout",
            dur(
                "server.header_read_timeout",
                self.header_read_timeout,
                d.header_read_timeout,
            )?,
        )?;
        let idle_timeout = positive(
            "server.idle_timeout",
            dur("server.idle_timeout", self.idle_timeout, d.idle_timeout)?,
        )?;
        let max_connections = self.max_connections.unwrap_or(d.max_connections);
        if max_connections == 0 {
            return Err(ConfigError::invalid(
                "server.max_connections",
                "must be at least 1",
            ));
        }
        let max_header_size = match self.max_header_size {
            None => d.max_header_size,
            Some(v) => size("server.max_header_size", &v)? as usize,
        };
        // hyper's HTTP/1 buffer cannot be smaller than 8 KiB.
        if !(8192..=(16 << 20)).contains(&max_header_size) {
            return Err(ConfigError::invalid(
                "server.max_header_size",
                "must be between 8KiB and 16MiB",
            ));
        }
        let max_headers = self.max_headers.unwrap_or(d.max_headers);
        if max_headers == 0 || max_headers > 10_000 {
            return Err(ConfigError::invalid(
                "server.max_headers",
                "must be between 1 and 10000",
            ));
        }
        let tls = match self.tls {
            None => None,
            Some(RawTls {
                cert_file: None,
                key_file: None,
                ..
            }) => None,
            Some(RawTls {
                cert_file: Some(c),
                key_file: Some(k),
                reload_interval,
            }) => {
                let reload_interval = positive(
                    "server.tls.reload_interval",
                    dur(
                        "server.tls.reload_interval",
                        reload_interval,
                        Duration::from_secs(5),
                    )?,
                )?;
                Some(TlsFiles {
                    cert_file: c,
                    key_file: k,
                    reload_interval,
                })
            }
            Some(RawTls {
                cert_file: None, ..
            }) => {
                return Err(ConfigError::invalid(
                    "server.tls.cert_file",
                    "is required when server.tls.key_file is set",
                ))
            }
            Some(RawTls { key_file: None, .. }) => {
                return Err(ConfigError::invalid(
                    "server.tls.key_file",
                    "is required when server.tls.cert_file is set",
                ))
            }
        };
        let external_url = match self.external_url {
            None => None,
            Some(u) => {
                let parsed = reqwest::Url::parse(&u).ok().filter(|p| {
                    matches!(p.scheme(), "http" | "https")
                        && p.host_str().is_some()
                        && p.query().is_none()
                        && p.fragment().is_none()
                });
                match parsed {
                    Some(_) => Some(u.trim_end_matches('/').to_string()),
                    None => return Err(ConfigError::invalid("server.external_url", format!("{u:?} must be an http(s) URL like \"https://wharf.example\" (no query)"))),
                }
            }
        };
        let mode = match self.mode.as_deref() {
            None | Some("registry") => Mode::Registry,
            Some("mirror") => Mode::Mirror,
            Some(other) => {
                return Err(ConfigError::invalid("server.mode", format!("{other:?}: use \"registry\" (pull-through and pushes) or \"mirror\" (pull-through only)")))
            }
        };
        Ok(Server {
            mode,
            sendfile: self.sendfile.unwrap_or(d.sendfile),
            external_url,
            shutdown_grace,
            max_connections,
            header_read_timeout,
            idle_timeout,
            max_header_size,
            max_headers,
            tls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<Server, String> {
        let raw: RawServer = toml::from_str(t).map_err(|e| e.to_string())?;
        raw.validate().map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_keys() {
        let s = parse("").unwrap();
        assert_eq!(s.shutdown_grace, Duration::from_secs(30));
        assert!(s.tls.is_none());
        let s = parse("shutdown_grace = \"2s\"\nmax_connections = 5\n[tls]\ncert_file = \"c\"\nkey_file = \"k\"\n").unwrap();
        assert_eq!(s.max_connections, 5);
        assert_eq!(s.tls.unwrap().reload_interval, Duration::from_secs(5));
        let e = parse("[tls]\ncert_file = \"c\"\n").unwrap_err();
        assert!(e.contains("server.tls.key_file"), "{e}");
        let e = parse("max_header_size = \"1KiB\"\n").unwrap_err();
        assert!(e.contains("server.max_header_size"), "{e}");
        let e = parse("max_connections = 0\n").unwrap_err();
        assert!(e.contains("server.max_connections"), "{e}");
        assert_eq!(parse("mode = \"mirror\"\n").unwrap().mode, Mode::Mirror);
        assert!(parse("mode = \"cache\"\n")
            .unwrap_err()
            .contains("server.mode"));
    }
}
