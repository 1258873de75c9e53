//! Password and robot-token hashing (argon2id, PHC strings).

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;

/// Hashing failed (argon2 refused its input or parameters).
#[derive(Debug, thiserror::Error)]
#[error("hashing failed: {0}")]
pub struct HashError(String);

/// Hash a secret into an argon2id PHC string.
pub fn hash(secret: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Whether `secret` matches the PHC string `phc` (false on a malformed hash).
pub fn verify(secret: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default()
            .verify_password(secret.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// Largest argon2 memory cost accepted in a stored hash (KiB): hashes with
/// more are refused rather than allowed to make one login cost gigabytes.
pub const MAX_MEMORY_KIB: u32 = 256 * 1024;

/// Memory for argon2 verifications, reused from one to the next. A
/// verification allocates its ~19 MiB of blocks once per buffer, not per
/// login: the allocator then has nothing to hold on to after a flood.
pub type Blocks = Vec<argon2::Block>;

/// [`verify`] computing in `blocks` (grown to the hash's memory cost when
/// needed, never shrunk). The comparison is constant-time.
pub fn verify_in(secret: &str, phc: &str, blocks: &mut Blocks) -> bool {
    fn run(secret: &str, phc: &str, blocks: &mut Blocks) -> Option<bool> {
        let hash = PasswordHash::new(phc).ok()?;
        let algorithm = argon2::Algorithm::try_from(hash.algorithm).ok()?;
        let version = match hash.version {
            Some(v) => argon2::Version::try_from(v).ok()?,
            None => argon2::Version::default(),
        };
        let stored = argon2::Params::try_from(&hash).ok()?;
        let expected = hash.hash?;
        if stored.m_cost() > MAX_MEMORY_KIB {
            return None;
        }
        let params = argon2::Params::new(
            stored.m_cost(),
            stored.t_cost(),
            stored.p_cost(),
            Some(expected.len()),
        )
        .ok()?;
        let mut salt = [0u8; 64];
        let salt = hash.salt?.decode_b64(&mut salt).ok()?;
        let need = params.block_count();
        if blocks.len() < need {
            blocks.resize(need, argon2::Block::default());
        }
        let mut out = vec![0u8; expected.len()];
        Argon2::new(algorithm, version, params)
            .hash_password_into_with_memory(secret.as_bytes(), salt, &mut out, &mut blocks[..need])
            .ok()?;
        let got = argon2::password_hash::Output::new(&out).ok()?;
        Some(got == expected)
    }
    run(secret, phc, blocks).unwrap_or(false)
}

/// A fresh robot token: 32 random bytes, URL-safe base64.
pub fn new_token() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let h = hash("s3cret").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("s3cret", &h));
        assert!(!verify("s3cre", &h));
        assert!(!verify("s3cret", "not a hash"));
        let mut blocks = Blocks::new();
        assert!(verify_in("s3cret", &h, &mut blocks));
        assert!(!blocks.is_empty());
        let len = blocks.len();
        assert!(!verify_in("s3cre", &h, &mut blocks));
        assert_eq!(blocks.len(), len, "the buffer is reused, not grown");
        assert!(!verify_in("s3cret", "not a hash", &mut blocks));
        let greedy = h.replace("m=19456", "m=4194304");
        assert!(
            !verify_in("s3cret", &greedy, &mut blocks),
            "a hash asking for 4 GiB was run"
        );
        assert_ne!(new_token(), new_token());
    }
}
