//! The audit trail: every management action (robot create/revoke, project
//! create/change/delete, quota, artifact/tag deletion, GC, prefetch, pins)
//! is recorded with who, what, when and the result — as a structured log
//! line (target `wharf::audit`) and as an entry in the store's audit log,
//! readable at `GET /api/v1/audit`. Refusals are recorded too.
//!
//! Operations wrap themselves in [`Registry::audited`]; nothing else
//! writes entries, and the entry shape is defined here only.

use std::future::Future;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::{Registry, RegistryError, Result};
use crate::auth::Identity;
use crate::store::AuditLog;

/// Largest page of `GET /api/v1/audit`.
pub const MAX_PAGE: usize = 1000;

/// One audited action.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditEntry {
    /// Opaque, unique; pages continue after it (`?last=`).
    pub id: String,
    /// RFC 3339, UTC.
    pub time: String,
    /// `admin-name`, `robot$name`, or `anonymous` (open mode).
    pub actor: String,
    /// e.g. `robot.create`, `project.update`, `artifact.delete`, `gc.run`.
    pub action: String,
    /// What it acted on: a robot, project, `repo@digest`, `repo:tag`, image.
    pub target: String,
    /// `ok`, `denied` or `failed`.
    pub result: String,
    /// Why it was refused or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Action-specific facts (deleted tags, new quota, GC counts...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

/// A page of the audit log, newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// The `last` to ask for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// How an action ended, as the audit log words it.
fn result_of(e: Option<&RegistryError>) -> &'static str {
    match e {
        None => "ok",
        Some(RegistryError::Denied(_)) => "denied",
        Some(_) => "failed",
    }
}

fn actor(id: &Identity) -> String {
    match id.subject.username() {
        s if s.is_empty() => "anonymous".to_string(),
        s => s,
    }
}

impl Registry {
    /// Run `op` (a management action of kind `action` on `target`, done by
    /// `id`) and record its outcome; `details` describes a success.
    pub(crate) async fn audited<T>(
        &self,
        id: &Identity,
        action: &str,
        target: &str,
        op: impl Future<Output = Result<T>>,
        details: impl FnOnce(&T) -> Option<serde_json::Value>,
    ) -> Result<T> {
        let r = op.await;
        let now = SystemTime::now();
        let entry = AuditEntry {
            id: AuditLog::new_id(now),
            time: humantime::format_rfc3339_millis(now).to_string(),
            actor: actor(id),
            action: action.to_string(),
            target: target.to_string(),
            result: result_of(r.as_ref().err()).to_string(),
            error: r.as_ref().err().map(|e| e.to_string()),
            details: r.as_ref().ok().and_then(details),
        };
        self.record(&entry).await;
        r
    }

    async fn record(&self, e: &AuditEntry) {
        tracing::info!(
            target: "wharf::audit",
            actor = %e.actor,
            action = %e.action,
            object = %e.target,
            result = %e.result,
            error = e.error.as_deref().unwrap_or(""),
            "audit"
        );
        let bytes = match serde_json::to_vec(e) {
            Ok(b) => b,
            Err(err) => return tracing::error!(error = %err, "encoding an audit entry"),
        };
        if let Err(err) = self.store.audit().append(&e.id, bytes.into()).await {
            tracing::error!(error = %err, action = %e.action, "could not store an audit entry (the log line above has it)");
        }
    }

    /// A page of the audit log, newest first (admins).
    pub async fn audit_page(
        &self,
        id: &Identity,
        last: Option<&str>,
        n: usize,
    ) -> Result<AuditPage> {
        self.require_admin(id)?;
        if last.is_some_and(|l| crate::store::layout::audit_day(l).is_none()) {
            return Err(RegistryError::BadRequest(
                "last: not an audit entry id from an earlier page".into(),
            ));
        }
        let n = n.clamp(1, MAX_PAGE);
        let raw = self.store.audit().page(last, n).await?;
        let next = if raw.len() == n {
            raw.last().map(|(id, _)| id.clone())
        } else {
            None
        };
        let entries: Vec<AuditEntry> = raw
            .into_iter()
            .filter_map(|(id, b)| match serde_json::from_slice(&b) {
                Ok(e) => Some(e),
                Err(err) => {
                    tracing::warn!(%id, error = %err, "skipping an unreadable audit entry");
                    None
                }
            })
            .collect();
        Ok(AuditPage { entries, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_read_as_words() {
        assert_eq!(result_of(None), "ok");
        assert_eq!(
            result_of(Some(&RegistryError::Denied("x".into()))),
            "denied"
        );
        assert_eq!(
            result_of(Some(&RegistryError::BadRequest("x".into()))),
            "failed"
        );
    }

    #[test]
    fn anonymous_has_a_name() {
        assert_eq!(actor(&Identity::anonymous()), "anonymous");
    }
}
