//! Pull credentials for vulnerability scanners: a bearer token from wharf's
//! own token service (the same signed JWTs `/token` issues), for subject
//! `scanner$<name>`, whose access is `repository:<repo>:pull` and nothing
//! else, valid for one scan's time.
//!
//! Why a JWT and not a one-time pull token: the adapter may fetch the
//! manifest and its blobs any number of times and in any order, possibly
//! from a queue of its own, and a JWT costs no store write per request and
//! is checked by every replica sharing the store's signing key. A scanner
//! subject has no rights of its own (see `Authorizer::allowed`): only its
//! token's scope counts, so the token pulls exactly one repository, and it
//! can neither obtain other tokens nor use the management API.

use std::sync::Arc;
use std::time::Duration;

use super::token::{Access, TokenError, TokenKeys};
use crate::secrets::SecretString;

/// Scanner subjects are `scanner$<name>`.
pub const SCANNER_PREFIX: &str = "scanner$";

/// Issues scanners' pull tokens (cheap to clone; used by background jobs).
#[derive(Clone)]
pub struct ScanCredentials {
    pub(super) keys: Arc<TokenKeys>,
}

impl ScanCredentials {
    /// `Bearer <token>` letting scanner `scanner` pull `repo` for `ttl`.
    pub fn issue(
        &self,
        scanner: &str,
        repo: &str,
        ttl: Duration,
    ) -> Result<SecretString, TokenError> {
        let access = vec![Access {
            kind: "repository".into(),
            name: repo.to_string(),
            actions: vec!["pull".into()],
        }];
        let t = self
            .keys
            .issue(&format!("{SCANNER_PREFIX}{scanner}"), "", access, ttl)?;
        Ok(SecretString::new(format!("Bearer {t}")))
    }
}
