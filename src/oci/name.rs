//! Repository names, tags and manifest references, validated against the
//! distribution-spec grammar. A value of these types is safe to use as a
//! path component: the grammar admits no `..`, no `%`, no `\`, no empty
//! component.

use std::fmt;
use std::str::FromStr;

use super::digest::{Digest, DigestError};

/// Why a name, tag or reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("repository name must not be empty")]
    EmptyName,
    #[error("repository name is longer than 255 characters")]
    NameTooLong,
    #[error("repository name component {0:?} does not match [a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*")]
    BadComponent(String),
    #[error("tag {0:?} does not match [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}")]
    BadTag(String),
    #[error("invalid digest: {0}")]
    BadDigest(#[from] DigestError),
}

/// A repository name of any depth, e.g. `team/app` or `a/b/c/d`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

impl RepoName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path components (`a/b/c` → `a`, `b`, `c`).
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The first component (the namespace: a project or a remote).
    pub fn first(&self) -> &str {
        self.0.split('/').next().unwrap_or("")
    }

    /// Everything after the first component, if there is more than one.
    pub fn rest(&self) -> Option<RepoName> {
        self.0.split_once('/').map(|(_, r)| RepoName(r.to_string()))
    }

    /// `self` with another name appended (`docker.io` + `library/nginx`).
    pub fn join(&self, tail: &RepoName) -> RepoName {
        RepoName(format!("{}/{}", self.0, tail.0))
    }
}

/// Names sort and compare as their text, so sets of names can be searched
/// by `&str`.
impl std::borrow::Borrow<str> for RepoName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

fn valid_component(c: &str) -> bool {
    // [a-z0-9]+ ( (\.|_|__|-+) [a-z0-9]+ )*
    let b = c.as_bytes();
    if b.is_empty() {
        return false;
    }
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut i = 0;
    loop {
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return false; // separator at start, or two separators in a row
        }
        if i == b.len() {
            return true;
        }
        let sep_start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[sep_start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok || i == b.len() {
            return false;
        }
    }
}

impl FromStr for RepoName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(NameError::EmptyName);
        }
        if s.len() > 255 {
            return Err(NameError::NameTooLong);
        }
        for c in s.split('/') {
            if !valid_component(c) {
                return Err(NameError::BadComponent(c.chars().take(64).collect()));
            }
        }
        Ok(RepoName(s.to_string()))
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// A tag such as `latest` or `v1.2.3-rc_1`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tag {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        let first_ok = b
            .first()
            .is_some_and(|&x| x.is_ascii_alphanumeric() || x == b'_');
        let rest_ok = b[1.min(b.len())..]
            .iter()
            .all(|&x| x.is_ascii_alphanumeric() || b"._-".contains(&x));
        if !first_ok || !rest_ok || b.len() > 128 {
            return Err(NameError::BadTag(s.chars().take(64).collect()));
        }
        Ok(Tag(s.to_string()))
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// What follows `/manifests/`: a tag or a digest.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

impl FromStr for Reference {
    type Err = NameError;

    /// Anything containing `:` is a digest (tags cannot contain it), so
    /// `sha256:totallywrong` is a bad digest, not a bad tag.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains(':') {
            Ok(Reference::Digest(s.parse()?))
        } else {
            Ok(Reference::Tag(s.parse()?))
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_spec_names() {
        for ok in [
            "a",
            "library/nginx",
            "a/b/c/d/e/f",
            "my-app",
            "my--app",
            "my_app",
            "my__app",
            "docker.io/library/busybox",
            "0/1/2",
        ] {
            assert!(ok.parse::<RepoName>().is_ok(), "{ok:?} refused");
        }
    }

    #[test]
    fn refuses_bad_names() {
        for bad in [
            "",
            "A",
            "a/",
            "/a",
            "a//b",
            "..",
            "a/../b",
            "a/./b",
            ".a",
            "a.",
            "a..b",
            "a___b",
            "a_-b",
            "a-",
            "%2e%2e",
            "a%2fb",
            "a\\b",
            "a b",
            "_manifests",
            "a/_layers",
        ] {
            assert!(bad.parse::<RepoName>().is_err(), "{bad:?} accepted");
        }
        assert!("a".repeat(256).parse::<RepoName>().is_err());
    }

    #[test]
    fn name_parts() {
        let n: RepoName = "docker.io/library/nginx".parse().unwrap();
        assert_eq!(n.first(), "docker.io");
        assert_eq!(n.rest().unwrap().as_str(), "library/nginx");
        assert!("solo".parse::<RepoName>().unwrap().rest().is_none());
    }

    #[test]
    fn tags() {
        for ok in ["latest", "v1.2.3", "_x", "A-b_c.d", &"a".repeat(128)] {
            assert!(ok.parse::<Tag>().is_ok(), "{ok:?} refused");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", "..", &"a".repeat(129), "a%20"] {
            assert!(bad.parse::<Tag>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn references() {
        assert!(matches!(
            "latest".parse::<Reference>(),
            Ok(Reference::Tag(_))
        ));
        assert!(matches!(
            "sha256:totallywrong".parse::<Reference>(),
            Err(NameError::BadDigest(_))
        ));
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(matches!(d.parse::<Reference>(), Ok(Reference::Digest(_))));
    }
}
