//! Why a request to a remote failed, in words an operator can act on:
//! "connection refused", "DNS lookup of ghcr.io failed", "TLS: certificate
//! signed by an unknown authority", "timed out". The text ends up in the
//! OCI error `message` that docker, podman and skopeo print, so it names
//! the address and the cause, never a URL query or a credential.

use std::error::Error as StdError;
use std::io;

/// The cause of a failed reqwest call, with the address it was for.
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let cause = if e.is_timeout() { "timed out".to_string() } else { classify(e) };
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
pub(crate) fn classify(e: &(dyn StdError + 'static)) -> String {
    let mut innermost = e.to_string();
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(known) = recognise(err) {
            return known;
        }
        innermost = err.to_string();
        cur = err.source();
    }
    innermost
}

fn recognise(err: &(dyn StdError + 'static)) -> Option<String> {
    if let Some(t) = err.downcast_ref::<rustls::Error>() {
        return Some(format!("TLS: {}", tls_reason(t)));
    }
    if let Some(io) = err.downcast_ref::<io::Error>() {
        if let Some(t) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            return Some(format!("TLS: {}", tls_reason(t)));
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

fn tls_reason(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => "certificate signed by an unknown authority (add the CA with the remote's ca_file)".into(),
            C::NotValidForName | C::NotValidForNameContext { .. } => "the certificate is not valid for this host name".into(),
            C::Expired | C::ExpiredContext { .. } => "the certificate has expired".into(),
            C::NotValidYet | C::NotValidYetContext { .. } => "the certificate is not valid yet".into(),
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
        let e = Wrap("client error (Connect)", Box::new(io::Error::from(io::ErrorKind::ConnectionRefused)));
        assert_eq!(classify(&e), "connection refused (nothing listens there)");
    }

    #[test]
    fn names_unknown_certificate_authorities() {
        let tls = io::Error::new(io::ErrorKind::InvalidData, rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer));
        let e = Wrap("client error (Connect)", Box::new(tls));
        assert!(classify(&e).starts_with("TLS: certificate signed by an unknown authority"), "{}", classify(&e));
        let name = Wrap("x", Box::new(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)));
        assert_eq!(classify(&name), "TLS: the certificate is not valid for this host name");
    }

    #[test]
    fn names_dns_failures() {
        let dns = Wrap("dns error", Box::new(io::Error::other("failed to lookup address information: Name or service not known")));
        let e = Wrap("client error (Connect)", Box::new(dns));
        assert_eq!(classify(&e), "DNS lookup failed (failed to lookup address information: Name or service not known)");
    }

    #[test]
    fn falls_back_to_the_innermost_message() {
        let e = Wrap("outer", Box::new(io::Error::other("weird thing")));
        assert_eq!(classify(&e), "weird thing");
    }
}
