//! Manifest media types and the small part of a manifest's JSON that a
//! registry must understand: which blobs and manifests it references, its
//! subject, and its artifact type. The bytes themselves are never
//! re-serialized: wharf stores and serves exactly what it received.
//!
//! Hand-written rather than `oci-spec`: a registry has to accept Docker
//! schema-2 manifests and lists as well as OCI ones, tolerate unknown fields
//! and absent optional ones, and never fail on a field it does not use;
//! strict typed models reject real-world manifests a registry must store.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::digest::Digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Every manifest type wharf stores and serves, in the order wharf offers
/// them upstream in `Accept`.
pub const ALL_MANIFEST_TYPES: [&str; 4] = [
    OCI_INDEX,
    DOCKER_MANIFEST_LIST,
    OCI_MANIFEST,
    DOCKER_MANIFEST,
];

/// Whether `media_type` is an image index / manifest list.
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// Whether wharf knows this manifest media type.
pub fn is_manifest_type(media_type: &str) -> bool {
    ALL_MANIFEST_TYPES.contains(&media_type)
}

/// A content descriptor as it appears inside a manifest.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
}

impl Descriptor {
    /// Whether the content lives at the descriptor's `urls` (a foreign,
    /// non-distributable layer) rather than in a registry: nothing to
    /// store, count, fetch or keep for it.
    pub fn is_foreign(&self) -> bool {
        self.urls.as_ref().is_some_and(|u| !u.is_empty())
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<u32>,
    media_type: Option<String>,
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    artifact_type: Option<String>,
    annotations: Option<BTreeMap<String, String>>,
}

/// Why a manifest was refused (all map to `MANIFEST_INVALID`).
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON: {0}")]
    Json(String),
    #[error("schemaVersion must be 2")]
    SchemaVersion,
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedType(String),
    #[error("Content-Type {header:?} does not match the manifest's mediaType {body:?}")]
    TypeMismatch { header: String, body: String },
    #[error("cannot tell the manifest's media type: send Content-Type or a mediaType field")]
    UnknownType,
    #[error("an image manifest needs a config descriptor")]
    MissingConfig,
    #[error("an index needs a manifests array")]
    MissingManifests,
}

/// The parts of a manifest a registry acts on.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub media_type: String,
    pub config: Option<Descriptor>,
    pub layers: Vec<Descriptor>,
    pub manifests: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    pub artifact_type: Option<String>,
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Manifest {
    /// Parse `bytes`, using `content_type` (the request's, parameters
    /// stripped) when it names a manifest type and the body's `mediaType`
    /// otherwise.
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest, ManifestError> {
        let raw: Raw =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
        if raw.schema_version != Some(2) {
            return Err(ManifestError::SchemaVersion);
        }
        let header = content_type
            .map(|c| c.split(';').next().unwrap_or("").trim())
            .filter(|c| is_manifest_type(c));
        let media_type = match (header, raw.media_type.as_deref()) {
            (Some(h), Some(b)) if h != b => {
                return Err(ManifestError::TypeMismatch {
                    header: h.to_string(),
                    body: b.to_string(),
                })
            }
            (Some(h), _) => h.to_string(),
            (None, Some(b)) if is_manifest_type(b) => b.to_string(),
            (None, Some(b)) => return Err(ManifestError::UnsupportedType(b.to_string())),
            (None, None) => match (content_type, &raw.manifests, &raw.config) {
                (Some(c), _, _) if !c.is_empty() && !c.starts_with("application/json") => {
                    return Err(ManifestError::UnsupportedType(c.to_string()))
                }
                (_, Some(_), None) => OCI_INDEX.to_string(),
                (_, None, Some(_)) => OCI_MANIFEST.to_string(),
                _ => return Err(ManifestError::UnknownType),
            },
        };
        let index = is_index(&media_type);
        if index && raw.manifests.is_none() {
            return Err(ManifestError::MissingManifests);
        }
        if !index && raw.config.is_none() {
            return Err(ManifestError::MissingConfig);
        }
        Ok(Manifest {
            media_type,
            config: raw.config,
            layers: raw.layers.unwrap_or_default(),
            manifests: raw.manifests.unwrap_or_default(),
            subject: raw.subject,
            artifact_type: raw.artifact_type,
            annotations: raw.annotations,
        })
    }

    /// What this manifest references that a registry stores (and a GC must
    /// keep while it is linked): its config, its layers but foreign ones
    /// (they live at their `urls`), its child manifests. Not its subject: a
    /// referrer does not keep its subject.
    pub fn stored_references(&self) -> impl Iterator<Item = &Digest> {
        let layers = self.layers.iter().filter(|l| !l.is_foreign());
        self.config
            .iter()
            .chain(layers)
            .chain(&self.manifests)
            .map(|d| &d.digest)
    }

    /// The artifact type a referrers response reports: `artifactType`, else
    /// the config's media type (spec rule for image manifests).
    pub fn effective_artifact_type(&self) -> Option<String> {
        self.artifact_type.clone().or_else(|| {
            self.config
                .as_ref()
                .map(|c| c.media_type.clone())
                .filter(|_| !is_index(&self.media_type))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn image(mt: Option<&str>) -> String {
        let mt = mt
            .map(|m| format!(r#""mediaType":"{m}","#))
            .unwrap_or_default();
        format!(
            r#"{{"schemaVersion":2,{mt}"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D}","size":0}},"layers":[{{"mediaType":"x","digest":"{D}","size":0,"extra":1}}],"unknown":true}}"#
        )
    }

    #[test]
    fn media_type_from_header_or_body() {
        let m = Manifest::parse(image(None).as_bytes(), Some(OCI_MANIFEST)).unwrap();
        assert_eq!(m.media_type, OCI_MANIFEST);
        let m = Manifest::parse(image(Some(DOCKER_MANIFEST)).as_bytes(), None).unwrap();
        assert_eq!(m.media_type, DOCKER_MANIFEST);
        let m = Manifest::parse(image(None).as_bytes(), None).unwrap();
        assert_eq!(m.media_type, OCI_MANIFEST);
        assert_eq!(m.layers.len(), 1);
    }

    #[test]
    fn refuses_mismatch_and_garbage() {
        assert!(matches!(
            Manifest::parse(image(Some(OCI_MANIFEST)).as_bytes(), Some(DOCKER_MANIFEST)),
            Err(ManifestError::TypeMismatch { .. })
        ));
        assert!(Manifest::parse(b"{", Some(OCI_MANIFEST)).is_err());
        assert!(Manifest::parse(br#"{"schemaVersion":1}"#, Some(OCI_MANIFEST)).is_err());
        assert!(Manifest::parse(
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json"}"#,
            None
        )
        .is_err());
        let bad_digest = image(None).replace(D, "sha256:nope");
        assert!(Manifest::parse(bad_digest.as_bytes(), None).is_err());
    }

    #[test]
    fn stored_references_skip_foreign_layers_and_the_subject() {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let desc = |c: char, extra: &str| {
            format!(r#"{{"mediaType":"x","digest":"{}","size":1{extra}}}"#, d(c))
        };
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{},"layers":[{},{}],"subject":{}}}"#,
            desc('a', ""),
            desc('b', ""),
            desc('c', r#","urls":["https://example.com/c"]"#),
            desc('e', ""),
        );
        let m = Manifest::parse(m.as_bytes(), None).unwrap();
        let refs: Vec<String> = m.stored_references().map(|x| x.to_string()).collect();
        assert_eq!(refs, [d('a'), d('b')]);
        let i = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{},{}]}}"#,
            desc('a', ""),
            desc('f', ""),
        );
        let i = Manifest::parse(i.as_bytes(), None).unwrap();
        let refs: Vec<String> = i.stored_references().map(|x| x.to_string()).collect();
        assert_eq!(refs, [d('a'), d('f')]);
    }
}
