//! Where a remote may send wharf: the rules for following a redirect and
//! for contacting a token realm. A remote is hostile: it must not be able
//! to make wharf read an internal service for a client, or collect
//! wharf's credentials at an address of its choosing.
//!
//! - Only blob downloads follow redirects to another origin (registries
//!   send blobs to storage hosts and CDNs); manifests, tag lists,
//!   referrers and `/v2/` follow redirects within the remote's own origin
//!   only.
//! - Never from https to http.
//! - With `redirect_hosts` configured, a cross-origin redirect must go to a
//!   host matching one of its patterns; without it, a redirect to a
//!   loopback, private or link-local address (or `localhost`) is refused
//!   unless it is the remote's own host.
//! - A token realm is checked like a cross-origin destination, and
//!   credentials go to it only over https (or plain http when the remote
//!   itself is configured with plain http).

use std::net::IpAddr;

use reqwest::Url;

use crate::config::Remote;

/// What a request fetches, for the redirect rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetching {
    /// A blob (GET or HEAD): may be redirected to a storage host.
    Blob,
    /// Anything else: redirects stay within the remote's origin.
    Api,
}

/// Why wharf refused to go where a remote sent it.
pub fn check_redirect(remote: &Remote, from: &Url, to: &Url, what: Fetching) -> Result<(), String> {
    if !matches!(to.scheme(), "http" | "https") {
        return Err(format!("refused a redirect to a {} URL", to.scheme()));
    }
    if from.scheme() == "https" && to.scheme() != "https" {
        return Err(format!(
            "refused a redirect from https to http ({})",
            host_port(to)
        ));
    }
    if to.origin() == remote.url.origin() {
        return Ok(());
    }
    if what == Fetching::Api {
        return Err(format!(
            "refused a redirect to another host ({}) for a request that is not a blob download",
            host_port(to)
        ));
    }
    check_foreign_host(remote, to)
        .map_err(|why| format!("refused a redirect to {}: {why}", host_port(to)))
}

/// Whether wharf may ask token realm `realm` for a token, with credentials
/// (`with_credentials`) or anonymously.
pub fn check_realm(remote: &Remote, realm: &Url, with_credentials: bool) -> Result<(), String> {
    if !matches!(realm.scheme(), "http" | "https") {
        return Err(format!(
            "token realm {} is not an http(s) URL",
            host_port(realm)
        ));
    }
    if with_credentials && realm.scheme() != "https" && remote.url.scheme() == "https" {
        return Err(format!(
            "refusing to send credentials to token realm {} over plain http (the remote is configured with https)",
            host_port(realm)
        ));
    }
    if realm.origin() == remote.url.origin() {
        return Ok(());
    }
    check_foreign_host(remote, realm)
        .map_err(|why| format!("refusing token realm {}: {why}", host_port(realm)))
}

/// The rules for a host other than the remote's own origin.
fn check_foreign_host(remote: &Remote, to: &Url) -> Result<(), String> {
    let host = to
        .host_str()
        .unwrap_or("")
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    if !remote.redirect_hosts.is_empty() {
        if remote.redirect_hosts.iter().any(|p| glob_match(p, &host)) {
            return Ok(());
        }
        return Err(format!(
            "it is not in remote {}'s redirect_hosts",
            remote.name
        ));
    }
    let own = remote
        .url
        .host_str()
        .unwrap_or("")
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    if host != own && is_internal(&host) {
        return Err("it is a loopback, private or link-local address (list it in redirect_hosts to allow it)".into());
    }
    Ok(())
}

fn host_port(u: &Url) -> String {
    match u.port() {
        Some(p) => format!("{}:{p}", u.host_str().unwrap_or("")),
        None => u.host_str().unwrap_or("").to_string(),
    }
}

/// `localhost`, or an IP literal that is not a public address.
pub fn is_internal(host: &str) -> bool {
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => {
            a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
                || a.octets()[0] == 0
                || (a.octets()[0] == 100 && (64..128).contains(&a.octets()[1]))
        }
        Ok(IpAddr::V6(a)) => {
            let seg = a.segments();
            a.is_loopback()
                || a.is_unspecified()
                || (seg[0] & 0xfe00) == 0xfc00
                || (seg[0] & 0xffc0) == 0xfe80
                || a.to_ipv4_mapped()
                    .is_some_and(|v4| is_internal(&v4.to_string()))
        }
        Err(_) => false,
    }
}

/// `*` matches any run of characters (including dots); everything else
/// literally, case-insensitively.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p = pattern.to_ascii_lowercase();
    let parts: Vec<&str> = p.split('*').collect();
    let t = text;
    if parts.len() == 1 {
        return p == t;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !t.starts_with(first) || !t.ends_with(last) || t.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &t[first.len()..t.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(url: &str, hosts: &[&str]) -> Remote {
        let mut r = Remote::docker_hub();
        r.name = "r".into();
        r.url = Url::parse(url).unwrap();
        r.redirect_hosts = hosts.iter().map(|s| s.to_string()).collect();
        r
    }

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn redirects() {
        let r = remote("https://registry.example.com", &[]);
        let from = u("https://registry.example.com/v2/x/blobs/sha256:1");
        // Blobs may go to a storage host; other requests may not leave.
        assert!(check_redirect(
            &r,
            &from,
            &u("https://s3.example.net/b?sig=1"),
            Fetching::Blob
        )
        .is_ok());
        assert!(check_redirect(&r, &from, &u("https://s3.example.net/b"), Fetching::Api).is_err());
        assert!(check_redirect(
            &r,
            &from,
            &u("https://registry.example.com/v2/y"),
            Fetching::Api
        )
        .is_ok());
        // Never a downgrade, never an internal address.
        assert!(check_redirect(&r, &from, &u("http://s3.example.net/b"), Fetching::Blob).is_err());
        for internal in [
            "https://127.0.0.1:8080/x",
            "https://10.1.2.3/x",
            "https://169.254.169.254/latest",
            "https://localhost/x",
            "https://[::1]/x",
            "https://[fd00::1]/x",
            "https://100.64.0.1/",
        ] {
            assert!(
                check_redirect(&r, &from, &u(internal), Fetching::Blob).is_err(),
                "{internal}"
            );
        }
        assert!(check_redirect(&r, &from, &u("file:///etc/passwd"), Fetching::Blob).is_err());
        // A remote on loopback may redirect to its own host.
        let local = remote("http://127.0.0.1:5001", &[]);
        assert!(check_redirect(
            &local,
            &u("http://127.0.0.1:5001/v2/"),
            &u("http://127.0.0.1:6000/b"),
            Fetching::Blob
        )
        .is_ok());
        // An allow-list pins the storage hosts.
        let pinned = remote("https://registry.example.com", &["*.s3.amazonaws.com"]);
        assert!(check_redirect(
            &pinned,
            &from,
            &u("https://bucket.s3.amazonaws.com/b"),
            Fetching::Blob
        )
        .is_ok());
        assert!(
            check_redirect(&pinned, &from, &u("https://evil.example/b"), Fetching::Blob).is_err()
        );
    }

    #[test]
    fn realms() {
        let r = remote("https://registry.example.com", &[]);
        assert!(check_realm(&r, &u("https://auth.example.com/token"), true).is_ok());
        assert!(check_realm(&r, &u("http://auth.example.com/token"), true).is_err());
        assert!(check_realm(&r, &u("http://auth.example.com/token"), false).is_ok());
        assert!(check_realm(&r, &u("https://169.254.169.254/token"), false).is_err());
        let plain = remote("http://127.0.0.1:5001", &[]);
        assert!(check_realm(&plain, &u("http://127.0.0.1:7000/token"), true).is_ok());
    }

    #[test]
    fn globs() {
        assert!(glob_match("*.example.com", "a.b.example.com"));
        assert!(!glob_match("*.example.com", "example.com"));
        assert!(glob_match(
            "cdn.example.com",
            "CDN.example.com".to_ascii_lowercase().as_str()
        ));
        assert!(glob_match(
            "s3.*.amazonaws.com",
            "s3.eu-west-1.amazonaws.com"
        ));
        assert!(!glob_match("s3.*.amazonaws.com", "s3.amazonaws.com.evil"));
    }
}
