//! The vulnerability report of Harbor's Pluggable Scanner API v1.1
//! (`application/vnd.security.vulnerability.report; version=1.1`): parsed
//! once, checked, and summarized as counts per severity.

use serde::{Deserialize, Serialize};

/// The report's media type, sent as `Accept` when it is fetched.
pub const REPORT_MIME: &str = "application/vnd.security.vulnerability.report; version=1.1";

/// Largest report accepted (a big image has thousands of findings).
pub const MAX_REPORT: usize = 32 << 20;

/// Severities, lowest first (the spec's order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Severity {
    Unknown,
    Negligible,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 6] = [
        Severity::Unknown,
        Severity::Negligible,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "Unknown",
            Severity::Negligible => "Negligible",
            Severity::Low => "Low",
            Severity::Medium => "Medium",
            Severity::High => "High",
            Severity::Critical => "Critical",
        }
    }

    /// A severity by name, any case (`high`, `High`, `CRITICAL`).
    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vulnerability {
    pub id: String,
    #[serde(default)]
    pub package: String,
    #[serde(default)]
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix_version: Option<String>,
    pub severity: Severity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
}

/// The scanner that wrote a report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScannerInfo {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub vendor: String,
    #[serde(default)]
    pub version: String,
}

/// A whole report as the adapter sent it (unknown fields dropped).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<serde_json::Value>,
    #[serde(default)]
    pub scanner: ScannerInfo,
    /// The overall severity (the highest finding's), when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    #[serde(default)]
    pub vulnerabilities: Vec<Vulnerability>,
}

/// Counts of findings per severity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub critical: usize,
    pub high: usize,
    pub medium: usize,
    pub low: usize,
    pub negligible: usize,
    pub unknown: usize,
}

impl Counts {
    fn slot(&mut self, s: Severity) -> &mut usize {
        match s {
            Severity::Critical => &mut self.critical,
            Severity::High => &mut self.high,
            Severity::Medium => &mut self.medium,
            Severity::Low => &mut self.low,
            Severity::Negligible => &mut self.negligible,
            Severity::Unknown => &mut self.unknown,
        }
    }

    pub fn get(&self, s: Severity) -> usize {
        *self.clone().slot(s)
    }

    /// Findings at `min` or above.
    pub fn at_or_above(&self, min: Severity) -> usize {
        Severity::ALL
            .into_iter()
            .filter(|s| *s >= min)
            .map(|s| self.get(s))
            .sum()
    }

    pub fn total(&self) -> usize {
        self.at_or_above(Severity::Unknown)
    }
}

impl Report {
    /// Findings per severity (each vulnerability id counted once per
    /// package, as scanners list one per affected package).
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for v in &self.vulnerabilities {
            *c.slot(v.severity) += 1;
        }
        c
    }

    /// The highest severity found, `None` when clean.
    pub fn highest(&self) -> Option<Severity> {
        self.vulnerabilities.iter().map(|v| v.severity).max()
    }
}

/// Why bytes are not a report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("the report is {0} bytes, more than the limit of {MAX_REPORT}")]
    TooLarge(usize),
    #[error("the report is not a vulnerability report v1.1: {0}")]
    Malformed(String),
}

/// Parse a report (the body of a `200` from `GET /scan/{id}/report`).
pub fn parse(bytes: &[u8]) -> Result<Report, ReportError> {
    if bytes.len() > MAX_REPORT {
        return Err(ReportError::TooLarge(bytes.len()));
    }
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(ReportError::Malformed("expected a JSON object".into()));
    }
    let r: Report = serde_json::from_slice(bytes).map_err(|e| {
        let mut m = e.to_string();
        m.truncate(300);
        ReportError::Malformed(m)
    })?;
    if let Some(v) = r.vulnerabilities.iter().find(|v| v.id.trim().is_empty()) {
        return Err(ReportError::Malformed(format!(
            "a vulnerability in package {:?} has no id",
            v.package
        )));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANNED: &str = r#"{
      "generated_at": "2026-11-29T01:00:00Z",
      "artifact": {"repository": "team/app", "digest": "sha256:00"},
      "scanner": {"name": "Fake", "vendor": "tests", "version": "1"},
      "severity": "Critical",
      "vulnerabilities": [
        {"id": "CVE-1", "package": "openssl", "version": "1.0", "fix_version": "1.1", "severity": "Critical", "links": ["https://x"]},
        {"id": "CVE-2", "package": "openssl", "version": "1.0", "severity": "High"},
        {"id": "CVE-3", "package": "zlib", "version": "1", "severity": "Low", "extra": true}
      ]
    }"#;

    #[test]
    fn parses_and_counts() {
        let r = parse(CANNED.as_bytes()).unwrap();
        let c = r.counts();
        assert_eq!((c.critical, c.high, c.low, c.total()), (1, 1, 1, 3));
        assert_eq!(c.at_or_above(Severity::High), 2);
        assert_eq!(c.at_or_above(Severity::Critical), 1);
        assert_eq!(r.highest(), Some(Severity::Critical));
        assert_eq!(r.scanner.name, "Fake");
    }

    #[test]
    fn refuses_what_is_not_a_report() {
        for bad in [
            "",
            "[]",
            "{\"vulnerabilities\": 3}",
            "{\"vulnerabilities\": [{\"id\": \"CVE-1\", \"severity\": \"Dire\"}]}",
            "{\"vulnerabilities\": [{\"id\": \" \", \"severity\": \"Low\"}]}",
        ] {
            assert!(
                matches!(parse(bad.as_bytes()), Err(ReportError::Malformed(_))),
                "{bad}"
            );
        }
        let clean = parse(b"{\"vulnerabilities\": []}").unwrap();
        assert_eq!((clean.counts().total(), clean.highest()), (0, None));
    }

    #[test]
    fn severities_by_name_and_order() {
        assert_eq!(Severity::parse("high"), Some(Severity::High));
        assert_eq!(Severity::parse("CRITICAL"), Some(Severity::Critical));
        assert_eq!(Severity::parse("severe"), None);
        assert!(Severity::Critical > Severity::High && Severity::Negligible > Severity::Unknown);
    }
}
