//! Serving TLS (rustls): the certificate chain and key from
//! `[server.tls]`, HTTP/2 and HTTP/1.1 offered by ALPN, and reloading
//! without a restart.
//!
//! The server config is built once; its certificate resolver holds the
//! current [`CertifiedKey`] behind a lock that handshakes only read. A
//! reload (the files' modification times changed, checked every
//! `reload_interval`, or SIGHUP) parses the new files and swaps the key in:
//! new handshakes get the new certificate, established connections keep
//! theirs. A reload that fails keeps the old certificate and logs a warning;
//! only a bad certificate at start-up is fatal.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::{ConfigError, TlsFiles};
use crate::metrics::Metrics;

/// Swappable certificate.
#[derive(Debug)]
struct Resolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// The TLS side of the listener.
pub struct Tls {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    resolver: Arc<Resolver>,
    acceptor: TlsAcceptor,
    /// Modification times of (cert, key) when last loaded.
    stamp: std::sync::Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

/// Why a certificate could not be loaded; names the config key.
fn bad(key: &str, path: &Path, msg: impl std::fmt::Display) -> ConfigError {
    ConfigError::invalid(key, format!("{}: {msg}", path.display()))
}

fn load(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, ConfigError> {
    const CERT: &str = "server.tls.cert_file";
    const KEY: &str = "server.tls.key_file";
    let cert_pem = std::fs::read(&files.cert_file).map_err(|e| bad(CERT, &files.cert_file, e))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            bad(
                CERT,
                &files.cert_file,
                format!("not a PEM certificate chain ({e})"),
            )
        })?;
    if certs.is_empty() {
        return Err(bad(CERT, &files.cert_file, "no CERTIFICATE block found"));
    }
    let key_pem = std::fs::read(&files.key_file).map_err(|e| bad(KEY, &files.key_file, e))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        bad(
            KEY,
            &files.key_file,
            format!("no PEM private key found ({e})"),
        )
    })?;
    CertifiedKey::from_der(certs, key, provider).map_err(|e| {
        bad(
            KEY,
            &files.key_file,
            format!(
                "does not fit the certificate in {} ({e})",
                files.cert_file.display()
            ),
        )
    })
}

fn mtimes(files: &TlsFiles) -> (Option<SystemTime>, Option<SystemTime>) {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (m(&files.cert_file), m(&files.key_file))
}

impl Tls {
    /// Load the certificate (errors name the config key).
    pub fn new(files: &TlsFiles) -> Result<Tls, ConfigError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let stamp = mtimes(files);
        let key = load(files, &provider)?;
        let resolver = Arc::new(Resolver {
            current: RwLock::new(Arc::new(key)),
        });
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError::invalid("server.tls", e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls {
            files: files.clone(),
            provider,
            resolver,
            acceptor: TlsAcceptor::from(Arc::new(cfg)),
            stamp: std::sync::Mutex::new(stamp),
        })
    }

    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Reload if the files changed since the last load (or always when
    /// `force`). Returns whether a new certificate is in use.
    pub fn reload(&self, force: bool, metrics: &Metrics) -> bool {
        let now = mtimes(&self.files);
        {
            let stamp = self.stamp.lock().unwrap_or_else(|e| e.into_inner());
            if !force && *stamp == now {
                return false;
            }
        }
        match load(&self.files, &self.provider) {
            Ok(key) => {
                *self
                    .resolver
                    .current
                    .write()
                    .unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
                *self.stamp.lock().unwrap_or_else(|e| e.into_inner()) = now;
                metrics.tls_reloaded(true);
                tracing::info!(cert_file = %self.files.cert_file.display(), "TLS certificate reloaded");
                true
            }
            Err(e) => {
                // Remember the stamp so a broken file is reported once, not
                // every interval; a later change is tried again.
                *self.stamp.lock().unwrap_or_else(|e| e.into_inner()) = now;
                metrics.tls_reloaded(false);
                tracing::warn!(error = %e, "TLS certificate reload failed; keeping the current certificate");
                false
            }
        }
    }

    /// Poll the files every `reload_interval`; reload at once on SIGHUP.
    pub async fn watch(self: Arc<Self>, metrics: Arc<Metrics>) {
        let mut tick = tokio::time::interval(self.files.reload_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            #[cfg(unix)]
            let force = match hup.as_mut() {
                Some(h) => tokio::select! {
                    _ = tick.tick() => false,
                    _ = h.recv() => true,
                },
                None => {
                    tick.tick().await;
                    false
                }
            };
            #[cfg(not(unix))]
            let force = {
                tick.tick().await;
                false
            };
            let this = self.clone();
            let m = metrics.clone();
            // File reads and parsing are blocking: keep them off the
            // async workers.
            let _ = tokio::task::spawn_blocking(move || this.reload(force, &m)).await;
        }
    }
}
