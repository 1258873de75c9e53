//! The registry token service's JWTs (Docker token spec): HS256, signed with
//! a key kept in the store, carrying exactly the granted access.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

pub const ISSUER: &str = "wharf";
pub const SERVICE: &str = "wharf";

/// One granted scope entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    pub access: Vec<Access>,
    /// The robot account's id (see `Robot::id`), when issued to a robot.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rid: String,
}

/// Why a token could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token signing key is shorter than 32 bytes")]
    KeyTooShort,
    #[error("signing the token failed: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

/// Signs and verifies tokens.
pub struct TokenKeys {
    enc: EncodingKey,
    dec: DecodingKey,
}

/// A fresh random signing key.
pub fn new_key() -> bytes::Bytes {
    use rand::RngCore;
    let mut k = vec![0u8; 64];
    rand::thread_rng().fill_bytes(&mut k);
    bytes::Bytes::from(k)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl TokenKeys {
    /// Keys from a stored secret (at least 32 bytes).
    pub fn from_secret(key: &[u8]) -> Result<TokenKeys, TokenError> {
        if key.len() < 32 {
            return Err(TokenError::KeyTooShort);
        }
        Ok(TokenKeys {
            enc: EncodingKey::from_secret(key),
            dec: DecodingKey::from_secret(key),
        })
    }

    /// A token for `sub` (and robot account id `rid`; empty: none).
    pub fn issue(
        &self,
        sub: &str,
        rid: &str,
        access: Vec<Access>,
        ttl: Duration,
    ) -> Result<String, TokenError> {
        let t = now();
        let claims = Claims {
            iss: ISSUER.into(),
            sub: sub.into(),
            aud: SERVICE.into(),
            exp: t + ttl.as_secs(),
            nbf: t.saturating_sub(5),
            iat: t,
            access,
            rid: rid.to_string(),
        };
        Ok(encode(&Header::new(Algorithm::HS256), &claims, &self.enc)?)
    }

    /// Verify signature, issuer, audience and expiry.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let mut v = Validation::new(Algorithm::HS256);
        v.set_issuer(&[ISSUER]);
        v.set_audience(&[SERVICE]);
        v.leeway = 5;
        decode::<Claims>(token, &self.dec, &v)
            .ok()
            .map(|d| d.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_and_verify() {
        let secret = new_key();
        let k = TokenKeys::from_secret(&secret).unwrap();
        let a = vec![Access {
            kind: "repository".into(),
            name: "team/app".into(),
            actions: vec!["pull".into()],
        }];
        let t = k
            .issue("robot$ci", "", a.clone(), Duration::from_secs(60))
            .unwrap();
        let c = k.verify(&t).unwrap();
        assert_eq!(c.sub, "robot$ci");
        assert_eq!(c.access, a);
        assert!(k.verify(&format!("{t}x")).is_none());
        // Same key after reload.
        let k2 = TokenKeys::from_secret(&secret).unwrap();
        assert!(k2.verify(&t).is_some());
        let other = TokenKeys::from_secret(&new_key()).unwrap();
        assert!(other.verify(&t).is_none());
        assert!(TokenKeys::from_secret(b"short").is_err());
    }
}
