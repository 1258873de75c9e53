//! Secret values and where they come from.
//!
//! [`SecretString`] is the only type a password or token is ever held in:
//! its `Debug` and `Display` print `<redacted>`, it does not implement
//! `Serialize`, and the value is reachable only through
//! [`SecretString::expose`], which is called where the value goes on the
//! wire and nowhere else.

use std::fmt;

/// A string that must never reach logs, errors, metrics or debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(s: impl Into<String>) -> SecretString {
        SecretString(s.into())
    }

    /// The secret value, for putting on the wire. Never log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<'de> serde::Deserialize<'de> for SecretString {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(SecretString)
    }
}

/// Credentials wharf presents to a remote registry.
#[derive(Clone, Debug)]
pub enum Credentials {
    /// Username + password (or personal access token used as a password).
    Basic { username: String, password: SecretString },
    /// A bearer token sent as-is (registries that accept static tokens).
    Token(SecretString),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_value() {
        let s = SecretString::new("hunter2");
        assert_eq!(format!("{s}"), "<redacted>");
        assert_eq!(format!("{s:?}"), "<redacted>");
        let c = Credentials::Basic {
            username: "u".into(),
            password: s.clone(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }
}
