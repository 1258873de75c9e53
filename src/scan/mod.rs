//! Harbor's Pluggable Scanner API v1.1, wharf's side: [`client`] speaks
//! to one scanner adapter (metadata, scan requests, reports), [`report`]
//! parses and summarizes the vulnerability reports it returns.
//!
//! This module knows the protocol only: it never touches the store, never
//! decides what to scan or who may ask (that is `registry::scan`), and
//! never logs a header value or the pull credential it hands the adapter.

pub mod client;
pub mod report;

pub use client::{Adapter, AdapterError, Poll, ScanRequest};
pub use report::{parse as parse_report, Counts, Report, ReportError, Severity, REPORT_MIME};
