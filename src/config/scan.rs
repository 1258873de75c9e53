//! `[[scanners]]`: vulnerability scanners reached through Harbor's
//! Pluggable Scanner API v1.1 (see [`crate::scan`]). The one marked
//! `default = true` (or else the first) scans; projects choose when
//! (`scan_on_push`, `prevent_severity`), remotes whether cached images are
//! scanned on their first pull (`scan_on_first_pull`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::raw::positive_duration;
use super::ConfigError;
use crate::secrets::SecretRef;

/// One validated scanner.
#[derive(Debug, Clone)]
pub struct Scanner {
    /// Names the scanner in reports, logs and the scan credential's subject.
    pub name: String,
    /// The adapter's base URL (`<url>/api/v1/scan` is posted to).
    pub url: reqwest::Url,
    /// Headers sent to the adapter whose values are secrets
    /// (`Authorization`, usually).
    pub secret_headers: Vec<(String, SecretRef)>,
    /// The base URL the adapter pulls images from (wharf as the adapter
    /// reaches it); `None`: `http://<server.listen>`.
    pub registry_url: Option<reqwest::Url>,
    /// Per request to the adapter.
    pub timeout: Duration,
    /// The longest wait for one report (all `Refresh-After`s together).
    pub report_timeout: Duration,
    /// The longest `Refresh-After` honoured (longer ones are cut to this).
    pub max_refresh_after: Duration,
    /// Scans running at once (more wait their turn).
    pub max_concurrent: usize,
    pub default: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScanner {
    name: String,
    url: String,
    #[serde(default)]
    secret_headers: BTreeMap<String, SecretRef>,
    registry_url: Option<String>,
    timeout: Option<String>,
    report_timeout: Option<String>,
    max_refresh_after: Option<String>,
    max_concurrent: Option<usize>,
    #[serde(default)]
    default: bool,
}

/// Validate every scanner; names are unique, at most one is the default.
pub(super) fn validate_all(raw: Vec<RawScanner>) -> Result<Vec<Scanner>, ConfigError> {
    let mut out: Vec<Scanner> = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let s = r.validate(i)?;
        if out.iter().any(|o| o.name == s.name) {
            return Err(ConfigError::invalid(
                &format!("scanners[{i}].name"),
                format!("{:?} is used by another scanner", s.name),
            ));
        }
        if s.default && out.iter().any(|o| o.default) {
            return Err(ConfigError::invalid(
                &format!("scanners[{i}].default"),
                "only one scanner may be the default",
            ));
        }
        out.push(s);
    }
    Ok(out)
}

/// The scanner that scans: the default one, else the first.
pub fn active(scanners: &[Scanner]) -> Option<&Scanner> {
    scanners.iter().find(|s| s.default).or(scanners.first())
}

fn http_url(key: &str, v: &str) -> Result<reqwest::Url, ConfigError> {
    reqwest::Url::parse(v)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| ConfigError::invalid(key, format!("{v:?} is not an http(s) URL")))
}

impl RawScanner {
    fn validate(self, i: usize) -> Result<Scanner, ConfigError> {
        let key = |k: &str| format!("scanners[{i}].{k}");
        if !super::notify::valid_name(&self.name) {
            return Err(ConfigError::invalid(
                &key("name"),
                format!(
                    "{:?}: use 1-64 lowercase letters, digits, '-' or '_'",
                    self.name
                ),
            ));
        }
        let url = http_url(&key("url"), &self.url)?;
        let registry_url = self
            .registry_url
            .as_deref()
            .map(|u| http_url(&key("registry_url"), u))
            .transpose()?;
        for (h, r) in &self.secret_headers {
            super::notify::check_secret_header(&key("secret_headers"), h, r)?;
        }
        let dur = |k: &str, v: Option<String>, d: &str| positive_duration(&key(k), v, d);
        let max_concurrent = match self.max_concurrent.unwrap_or(2) {
            n @ 1..=64 => n,
            n => {
                return Err(ConfigError::invalid(
                    &key("max_concurrent"),
                    format!("{n} is out of range 1..=64"),
                ))
            }
        };
        Ok(Scanner {
            name: self.name,
            url,
            secret_headers: self.secret_headers.into_iter().collect(),
            registry_url,
            timeout: dur("timeout", self.timeout, "30s")?,
            report_timeout: dur("report_timeout", self.report_timeout, "10m")?,
            max_refresh_after: dur("max_refresh_after", self.max_refresh_after, "30s")?,
            max_concurrent,
            default: self.default,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::RawConfig;

    fn load(toml: &str) -> Result<crate::config::Config, String> {
        RawConfig::parse(toml)
            .map_err(|e| e.to_string())?
            .validate(&Default::default())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn scanners_and_project_options() {
        let c = load(
            r#"
[[scanners]]
name = "trivy"
url = "http://127.0.0.1:8080"
secret_headers = { Authorization = { backend = "env", token = "SCANNER_AUTH" } }
[[scanners]]
name = "other"
url = "https://scanner.example"
default = true
max_concurrent = 4
[[projects]]
name = "team"
scan_on_push = true
prevent_severity = "high"
"#,
        )
        .unwrap();
        assert_eq!(super::active(&c.scanners).unwrap().name, "other");
        assert_eq!(c.scanners[0].secret_headers.len(), 1);
        let p = &c.projects[0];
        assert!(p.scan_on_push);
        assert_eq!(p.prevent_severity, Some(crate::scan::Severity::High));
    }

    #[test]
    fn bad_scanner_keys_are_named() {
        for (toml, key) in [
            (
                "[[scanners]]\nname = \"A\"\nurl = \"http://x\"\n",
                "scanners[0].name",
            ),
            (
                "[[scanners]]\nname = \"a\"\nurl = \"ftp://x\"\n",
                "scanners[0].url",
            ),
            (
                "[[scanners]]\nname = \"a\"\nurl = \"http://x\"\nmax_concurrent = 0\n",
                "scanners[0].max_concurrent",
            ),
            (
                "[[scanners]]\nname = \"a\"\nurl = \"http://x\"\nregistry_url = \"x\"\n",
                "scanners[0].registry_url",
            ),
            (
                "[[projects]]\nname = \"p\"\nprevent_severity = \"dire\"\n",
                "projects[0].prevent_severity",
            ),
        ] {
            let e = load(toml).unwrap_err();
            assert!(e.contains(key), "{toml}: {e}");
        }
    }
}
