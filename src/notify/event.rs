//! The event shape: Distribution's notification envelope
//! (`application/vnd.docker.distribution.events.v1+json`), so consumers
//! written for Distribution read wharf's events unchanged. wharf adds one
//! action, `cache-fetch`, and one target field, `remote` (the remote a
//! cache fetch came from).

use serde::{Deserialize, Serialize};

use crate::config::EventKind;

/// The envelope's media type.
pub const MEDIA_TYPE: &str = "application/vnd.docker.distribution.events.v1+json";

/// The media type Distribution reports for a blob (layer) target.
pub const BLOB_MEDIA_TYPE: &str = "application/octet-stream";

/// One event, as sent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    /// Unique; a receiver deduplicates redeliveries by it.
    pub id: String,
    /// RFC 3339, UTC, with nanoseconds.
    pub timestamp: String,
    /// `push`, `pull`, `delete`, `mount` or `cache-fetch`.
    pub action: String,
    pub target: Target,
    pub request: RequestRecord,
    pub actor: Actor,
    pub source: Source,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Target {
    #[serde(
        rename = "mediaType",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub media_type: String,
    #[serde(default)]
    pub size: u64,
    pub digest: String,
    /// Same as `size` (Distribution sends both).
    #[serde(default)]
    pub length: u64,
    pub repository: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The repository a mounted blob came from.
    #[serde(
        rename = "fromRepository",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub from_repository: Option<String>,
    /// The remote a `cache-fetch` came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
}

/// The client request that caused the event (empty for `cache-fetch`,
/// which the server does once for every client that asked).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RequestRecord {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub addr: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub method: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub useragent: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Actor {
    /// The account (`robot$name`, an admin); absent for anonymous pulls.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// The wharf instance that produced the event.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Source {
    pub addr: String,
    #[serde(rename = "instanceID")]
    pub instance_id: String,
}

/// What the layer that saw an event knows of it; the notifier adds the id,
/// time and source.
#[derive(Debug, Clone)]
pub struct Draft {
    pub kind: EventKind,
    pub target: Target,
    pub request: RequestRecord,
    pub actor: String,
}

/// A `cache-fetch` event: `remote` sent content now stored in
/// `cache_repo` (no client request: the fetch serves every client that
/// asked).
pub fn cache_fetch(
    remote: &str,
    cache_repo: &crate::oci::RepoName,
    digest: &crate::oci::Digest,
    media_type: &str,
    size: u64,
    tag: Option<&str>,
) -> Draft {
    Draft {
        kind: EventKind::CacheFetch,
        target: Target {
            media_type: media_type.to_string(),
            size,
            length: size,
            digest: digest.to_string(),
            repository: cache_repo.to_string(),
            tag: tag.map(str::to_string),
            remote: Some(remote.to_string()),
            ..Target::default()
        },
        request: RequestRecord::default(),
        actor: String::new(),
    }
}

/// The body of one delivery: `{"events": [...]}` around a stored batch
/// (a JSON array of events).
pub fn envelope(batch: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(batch.len() + 12);
    out.extend_from_slice(b"{\"events\":");
    out.extend_from_slice(batch);
    out.push(b'}');
    out
}

/// RFC 3339 with nanoseconds, UTC.
pub fn timestamp(at: std::time::SystemTime) -> String {
    humantime::format_rfc3339_nanos(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_has_distributions_field_names() {
        let e = Event {
            id: "e1".into(),
            timestamp: timestamp(std::time::UNIX_EPOCH),
            action: "push".into(),
            target: Target {
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                size: 7,
                length: 7,
                digest: "sha256:00".into(),
                repository: "team/app".into(),
                tag: Some("v1".into()),
                ..Target::default()
            },
            request: RequestRecord {
                method: "PUT".into(),
                ..RequestRecord::default()
            },
            actor: Actor {
                name: "robot$ci".into(),
            },
            source: Source {
                addr: "h:5000".into(),
                instance_id: "i".into(),
            },
        };
        let batch = serde_json::to_vec(&vec![e.clone()]).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&envelope(&batch)).unwrap();
        let ev = &v["events"][0];
        assert_eq!(
            ev["target"]["mediaType"],
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(ev["target"]["length"], 7);
        assert_eq!(ev["source"]["instanceID"], "i");
        assert_eq!(ev["timestamp"], "1970-01-01T00:00:00.000000000Z");
        assert!(ev["target"].get("fromRepository").is_none());
        let back: Event = serde_json::from_value(ev.clone()).unwrap();
        assert_eq!(back, e);
    }
}
