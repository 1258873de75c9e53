//! Dashboard sessions: stateless cookies signed with HMAC-SHA256 under a
//! key derived from the token signing key (which lives in the store), so
//! every replica on the same store accepts them and no session table has
//! to be kept or bounded. A session names its subject, a random id and an
//! expiry; the subject is re-checked on every request, so revoking a robot
//! ends its sessions at once everywhere. Signing out puts the id on a
//! bounded per-process list until the cookie would have expired.
//!
//! CSRF tokens are MACs of the session id (or, before sign-in, of a random
//! nonce kept in a cookie): a form is accepted only with the token of the
//! session that submits it. Never a token in a URL: both travel in cookies
//! and form bodies only.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// What a session cookie carries (signed, not encrypted: nothing secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The username (`admin`, `robot$ci`).
    pub sub: String,
    /// Random id: what CSRF tokens and sign-out refer to.
    pub sid: String,
    /// Unix seconds.
    pub exp: u64,
}

/// Signs and checks session cookies and CSRF tokens.
pub struct Sessions {
    key: [u8; 32],
    ttl: Duration,
    signed_out: moka::sync::Cache<String, ()>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn random_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 18];
    rand::thread_rng().fill_bytes(&mut b);
    B64.encode(b)
}

impl Sessions {
    /// Sessions keyed from `token_key` (domain-separated from JWT signing).
    pub fn new(token_key: &[u8], ttl: Duration, max_signed_out: usize) -> Sessions {
        let mut m = HmacSha256::new_from_slice(token_key).expect("HMAC takes keys of any length");
        m.update(b"wharf dashboard session key v1");
        Sessions {
            key: m.finalize().into_bytes().into(),
            ttl,
            signed_out: moka::sync::Cache::builder()
                .max_capacity(max_signed_out as u64)
                .time_to_live(ttl)
                .build(),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn mac(&self, purpose: &[u8], data: &[u8]) -> HmacSha256 {
        let mut m = HmacSha256::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        m.update(purpose);
        m.update(&[0]);
        m.update(data);
        m
    }

    /// A new session for `username`: the cookie value and the session.
    pub fn start(&self, username: &str) -> (String, Session) {
        let s = Session {
            sub: username.to_string(),
            sid: random_id(),
            exp: now() + self.ttl.as_secs(),
        };
        let body = B64.encode(serde_json::to_vec(&s).unwrap_or_default());
        let sig = B64.encode(
            self.mac(b"session", body.as_bytes())
                .finalize()
                .into_bytes(),
        );
        (format!("{body}.{sig}"), s)
    }

    /// The session a cookie value carries, if its signature holds, it has
    /// not expired and it was not signed out.
    pub fn check(&self, cookie: &str) -> Option<Session> {
        let (body, sig) = cookie.split_once('.')?;
        let sig = B64.decode(sig).ok()?;
        self.mac(b"session", body.as_bytes())
            .verify_slice(&sig)
            .ok()?;
        let s: Session = serde_json::from_slice(&B64.decode(body).ok()?).ok()?;
        (s.exp > now() && !self.signed_out.contains_key(&s.sid)).then_some(s)
    }

    /// Refuse `s` from now on (in this process; the cookie is cleared too).
    pub fn end(&self, s: &Session) {
        self.signed_out.insert(s.sid.clone(), ());
    }

    /// A fresh nonce for the sign-in form's CSRF cookie.
    pub fn nonce(&self) -> String {
        random_id()
    }

    /// The CSRF token bound to `id` (a session id or a sign-in nonce).
    pub fn csrf(&self, id: &str) -> String {
        B64.encode(self.mac(b"csrf", id.as_bytes()).finalize().into_bytes())
    }

    /// Whether `token` is the CSRF token of `id` (constant time).
    pub fn csrf_ok(&self, id: &str, token: &str) -> bool {
        B64.decode(token)
            .is_ok_and(|t| self.mac(b"csrf", id.as_bytes()).verify_slice(&t).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_check_expire_and_sign_out() {
        let s = Sessions::new(
            b"0123456789abcdef0123456789abcdef",
            Duration::from_secs(60),
            10,
        );
        let (cookie, sess) = s.start("robot$ci");
        assert_eq!(s.check(&cookie), Some(sess.clone()));
        // Tampered body or signature, another key.
        let (body, sig) = cookie.split_once('.').unwrap();
        let forged = B64.encode(
            serde_json::to_vec(&Session {
                sub: "admin".into(),
                ..sess.clone()
            })
            .unwrap(),
        );
        assert!(s.check(&format!("{forged}.{sig}")).is_none());
        assert!(s.check(&format!("{body}.x{sig}")).is_none());
        assert!(s.check("garbage").is_none());
        let other = Sessions::new(
            b"another key, another key, another",
            Duration::from_secs(60),
            10,
        );
        assert!(other.check(&cookie).is_none());
        // CSRF bound to the session id.
        let t = s.csrf(&sess.sid);
        assert!(s.csrf_ok(&sess.sid, &t));
        assert!(!s.csrf_ok("other", &t));
        assert!(!s.csrf_ok(&sess.sid, ""));
        s.end(&sess);
        assert!(s.check(&cookie).is_none());
    }
}
