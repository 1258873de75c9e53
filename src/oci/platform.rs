//! Platforms (`os/architecture[/variant]`) as users write them
//! (`--platform linux/arm64`) and as indexes describe their entries.

use std::fmt;
use std::str::FromStr;

/// An image's platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The `platform` object of an index entry, or of an image config
    /// (`os`, `architecture`, `variant`); `None` when `os` or
    /// `architecture` is missing.
    pub fn from_json(v: &serde_json::Value) -> Option<Platform> {
        let field = |k: &str| {
            v.get(k)
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        Some(Platform {
            os: field("os")?,
            architecture: field("architecture")?,
            variant: field("variant"),
        })
    }

    /// Whether an image of platform `other` satisfies a request for
    /// `self`: os and architecture equal, and the variant too when `self`
    /// names one.
    pub fn accepts(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && (self.variant.is_none() || self.variant == other.variant)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match &self.variant {
            Some(v) => write!(f, "/{v}"),
            None => Ok(()),
        }
    }
}

impl FromStr for Platform {
    type Err = String;

    fn from_str(s: &str) -> Result<Platform, String> {
        let bad = || format!("platform {s:?} is not os/architecture[/variant], e.g. linux/arm64");
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(|p| ok(p)) {
            return Err(bad());
        }
        Ok(Platform {
            os: parts[0].to_string(),
            architecture: parts[1].to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_and_prints() {
        let p: Platform = "linux/arm64/v8".parse().unwrap();
        assert_eq!(p.variant.as_deref(), Some("v8"));
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert_eq!(
            "linux/amd64".parse::<Platform>().unwrap().to_string(),
            "linux/amd64"
        );
        for bad in ["", "linux", "linux/", "/amd64", "a/b/c/d", "linux/amd 64"] {
            let e = bad.parse::<Platform>().unwrap_err();
            assert!(e.contains("os/architecture"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_request_without_variant_accepts_any_variant() {
        let arm64: Platform = "linux/arm64".parse().unwrap();
        let v8 =
            Platform::from_json(&json!({"os": "linux", "architecture": "arm64", "variant": "v8"}))
                .unwrap();
        assert!(arm64.accepts(&v8));
        assert!(!v8.accepts(&arm64));
        assert!(!arm64.accepts(&"linux/amd64".parse().unwrap()));
        assert!(Platform::from_json(&json!({"os": "linux"})).is_none());
    }
}
