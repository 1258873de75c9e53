//! Why a request to a remote failed, in words an operator can act on:
//! "connection refused", "DNS lookup of ghcr.io failed", "TLS: certificate
//! signed by an unknown authority", "timed out". The text ends up in the
//! OCI error `message` that docker, podman and skopeo print, so it names
//! the address and the cause, never a URL query or a credential. The CLI
//! uses it too (with its own hint for an unknown CA), for the same causes
//! between it and a wharf server.

use std::error::Error as StdError;
use std::io;

/// What to do about a certificate from an unknown authority, for a remote.
const REMOTE_CA_HINT: &str = "add the CA with the remote's ca_file";

/// The cause of a failed reqwest call to a remote, with the address it was for.
pub(crate) fn describe(e: &reqwest::Error) -> String {
    describe_with(e, REMOTE_CA_HINT)
}

/// [`describe`] with `ca_hint` (what to do about an unknown CA) for callers
/// other than the remote client.
pub(crate) fn describe_with(e: &reqwest::Error, ca_hint: &str) -> String {
    let cause = if e.is_timeout() {
        "timed out".to_string()
    } else {
        classify(e, ca_hint)
    };
    match e.url().and_then(address) {
        Some(a) => format!("{a}: {cause}"),
        None => cause,
    }
}

/// `host:port` of a URL (no path, no query).
fn address(u: &reqwest::Url) -> Option<String> {
    let host = u.host_str()?;
    Some(match u.port_or_known_default() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    })
}

/// Walk an error's source chain and name the first cause we recognise;
/// otherwise the innermost message.
fn classify(e: &(dyn StdError + 'static), ca_hint: &str) -> String {
    let mut innermost = e.to_string();
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(known) = recognise(err, ca_hint) {
            return known;
        }
        innermost = err.to_string();
        cur = err.source();
    }
    innermost
}

fn recognise(err: &(dyn StdError + 'static), ca_hint: &str) -> Option<String> {
    if let Some(t) = err.downcast_ref::<rustls::Error>() {
        return Some(format!("TLS: {}", tls_reason(t, ca_hint)));
    }
    if let Some(mut io) = err.downcast_ref::<io::Error>() {
        // hyper-util wraps the TLS connector's io::Error in another one,
        // and an io::Error's `source()` skips the error it wraps: unwrap
        // by hand down to the rustls error.
        while let Some(inner) = io.get_ref() {
            if let Some(t) = inner.downcast_ref::<rustls::Error>() {
                return Some(format!("TLS: {}", tls_reason(t, ca_hint)));
            }
            match inner.downcast_ref::<io::Error>() {
                Some(i) => io = i,
                None => break,
            }
        }
        return io_reason(io);
    }
    let text = err.to_string();
    if text.starts_with("dns error") || text.contains("failed to lookup address") {
        let inner = err.source().map(|s| s.to_string()).unwrap_or(text);
        return Some(format!("DNS lookup failed ({inner})"));
    }
    None
}

fn io_reason(e: &io::Error) -> Option<String> {
    let s = match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused (nothing listens there)",
        io::ErrorKind::ConnectionReset => "connection reset by the remote",
        io::ErrorKind::ConnectionAborted => "connection aborted",
        io::ErrorKind::TimedOut => "timed out",
        io::ErrorKind::HostUnreachable => "host unreachable",
        io::ErrorKind::NetworkUnreachable => "network unreachable",
        io::ErrorKind::UnexpectedEof => "the remote closed the connection early",
        _ => return None,
    };
    Some(s.to_string())
}

fn tls_reason(e: &rustls::Error, ca_hint: &str) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => format!("certificate signed by an unknown authority ({ca_hint})"),
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "the certificate is not valid for this host name".into()
            }
            C::Expired | C::ExpiredContext { .. } => "the certificate has expired".into(),
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "the certificate is not valid yet".into()
            }
            C::Revoked => "the certificate was revoked".into(),
            other => format!("invalid certificate ({other:?})"),
        },
        rustls::Error::AlertReceived(a) => format!("the remote refused the handshake ({a:?})"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrap(&'static str, Box<dyn StdError + Send + Sync>);
    impl std::fmt::Display for Wrap {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl StdError for Wrap {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(self.1.as_ref())
        }
    }

    #[test]
    fn names_refused_connections() {
        let e = Wrap(
            "client error (Connect)",
            Box::new(io::Error::from(io::ErrorKind::ConnectionRefused)),
        );
        assert_eq!(
            classify(&e, REMOTE_CA_HINT),
            "connection refused (nothing listens there)"
        );
    }

    #[test]
    fn names_unknown_certificate_authorities() {
        let tls = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let e = Wrap("client error (Connect)", Box::new(tls));
        assert!(
            classify(&e, REMOTE_CA_HINT)
                .starts_with("TLS: certificate signed by an unknown authority"),
            "{}",
            classify(&e, REMOTE_CA_HINT)
        );
        // As reqwest's connector reports it: an io::Error in an io::Error.
        let nested = io::Error::other(io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        ));
        let e = Wrap("client error (Connect)", Box::new(nested));
        assert!(
            classify(&e, "hint")
                .starts_with("TLS: certificate signed by an unknown authority (hint)"),
            "{}",
            classify(&e, "hint")
        );
        let name = Wrap(
            "x",
            Box::new(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName,
            )),
        );
        assert_eq!(
            classify(&name, REMOTE_CA_HINT),
            "TLS: the certificate is not valid for this host name"
        );
    }

    #[test]
    fn names_dns_failures() {
        let dns = Wrap(
            "dns error",
            Box::new(io::Error::other(
                "failed to lookup address information: Name or service not known",
            )),
        );
        let e = Wrap("client error (Connect)", Box::new(dns));
        assert_eq!(
            classify(&e, REMOTE_CA_HINT),
            "DNS lookup failed (failed to lookup address information: Name or service not known)"
        );
    }

    #[test]
    fn falls_back_to_the_innermost_message() {
        let e = Wrap("outer", Box::new(io::Error::other("weird thing")));
        assert_eq!(classify(&e, REMOTE_CA_HINT), "weird thing");
    }
}
