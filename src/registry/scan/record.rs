//! The state of a manifest's scan as stored (`scans/<digest>/state.json`)
//! and shown: status, why it failed, the scanner, and counts per severity.

use serde::{Deserialize, Serialize};

use crate::scan::{Counts, Severity};

/// Where a scan is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScanStatus {
    /// Waiting for a free slot (`max_concurrent`).
    Pending,
    /// Sent to the adapter; waiting for its report.
    Running,
    Done,
    Failed,
}

impl ScanStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ScanStatus::Pending => "pending",
            ScanStatus::Running => "running",
            ScanStatus::Done => "done",
            ScanStatus::Failed => "failed",
        }
    }

    pub fn ended(self) -> bool {
        matches!(self, ScanStatus::Done | ScanStatus::Failed)
    }
}

/// A scan's state and severity summary (the counts are zero until done).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanSummary {
    pub status: ScanStatus,
    /// Why it failed (the adapter's message, or wharf's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The `[[scanners]]` entry that scanned.
    pub scanner: String,
    /// The repository the scan pulled from.
    pub repository: String,
    #[serde(with = "crate::timefmt::rfc3339")]
    pub requested_at: u64,
    /// When the state last changed.
    #[serde(with = "crate::timefmt::rfc3339")]
    pub updated_at: u64,
    /// When the report arrived.
    #[serde(default, with = "crate::timefmt::rfc3339_opt")]
    pub scanned_at: Option<u64>,
    #[serde(flatten)]
    pub counts: Counts,
    /// The highest severity found (`None`: clean, or not done).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub highest: Option<Severity>,
}

impl ScanSummary {
    /// The badge text: `3 critical, 1 high`, `clean`, `failed`, `running`.
    pub fn short(&self) -> String {
        if self.status != ScanStatus::Done {
            return self.status.as_str().to_string();
        }
        let parts: Vec<String> = Severity::ALL
            .iter()
            .rev()
            .map(|s| (s, self.counts.get(*s)))
            .filter(|(_, n)| *n > 0)
            .map(|(s, n)| format!("{n} {}", s.as_str().to_ascii_lowercase()))
            .collect();
        if parts.is_empty() {
            "clean".into()
        } else {
            parts.join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_and_badge() {
        let mut s = ScanSummary {
            status: ScanStatus::Done,
            reason: None,
            scanner: "trivy".into(),
            repository: "team/app".into(),
            requested_at: 1,
            updated_at: 2,
            scanned_at: Some(2),
            counts: Counts {
                critical: 3,
                high: 1,
                ..Counts::default()
            },
            highest: Some(Severity::Critical),
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(
            (v["critical"].as_u64(), v["high"].as_u64()),
            (Some(3), Some(1))
        );
        assert_eq!(v["status"], "done");
        assert!(v["scanned_at"].is_string());
        let back: ScanSummary = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
        assert_eq!(s.short(), "3 critical, 1 high");
        s.counts = Counts::default();
        assert_eq!(s.short(), "clean");
        s.status = ScanStatus::Failed;
        assert_eq!(s.short(), "failed");
    }
}
