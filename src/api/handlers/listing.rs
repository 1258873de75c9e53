//! Paginated listings: `tags/list`, `_catalog`, and the referrers index.

use http::{header, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::Query;
use crate::api::body;
use crate::api::error::ApiError;
use crate::api::{Api, Reply};
use crate::oci::manifest::{Descriptor, Manifest, OCI_INDEX};
use crate::oci::{Digest, ErrorCode, RepoName};

/// Largest page a client may ask for; larger `n` is clamped.
const MAX_PAGE: usize = 10_000;

/// Apply `last` and `n` to a sorted list. Returns the page and, when more
/// items follow, the `Link` header value.
fn paginate(items: Vec<String>, q: &Query, path: &str) -> Result<(Vec<String>, Option<String>), ApiError> {
    let n = match q.get("n") {
        None => None,
        Some(v) => Some(v.parse::<usize>().map_err(|_| {
            ApiError::new(ErrorCode::Unsupported)
                .status(400)
                .detail(format!("n must be a non-negative integer, got {v:?}"))
        })?),
    };
    let after: Vec<String> = match q.get("last") {
        Some(last) => items.into_iter().filter(|t| t.as_str() > last).collect(),
        None => items,
    };
    let Some(n) = n else { return Ok((after, None)) };
    let n = n.min(MAX_PAGE);
    if after.len() <= n {
        return Ok((after, None));
    }
    let page: Vec<String> = after.into_iter().take(n).collect();
    let link = page.last().map(|last| {
        let qs = form_urlencoded::Serializer::new(String::new())
            .append_pair("n", &n.to_string())
            .append_pair("last", last)
            .finish();
        format!("<{path}?{qs}>; rel=\"next\"")
    });
    Ok((page, link))
}

fn json_page(value: serde_json::Value, link: Option<String>) -> Reply {
    let bytes = serde_json::to_vec(&value).map_err(|e| ApiError::internal("encoding JSON", e))?;
    let mut b = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, bytes.len());
    if let Some(l) = link {
        b = b.header(header::LINK, l);
    }
    Ok(b.body(body::full(bytes))?)
}

pub async fn tags(api: &Api, req: &Request<Incoming>, name: &RepoName) -> Reply {
    let Some(all) = api.store.tags(name).await? else {
        return Err(ApiError::new(ErrorCode::NameUnknown).detail(format!("repository {name} not found")));
    };
    let (page, link) = paginate(all, &Query::of(req), &format!("/v2/{name}/tags/list"))?;
    json_page(serde_json::json!({ "name": name.as_str(), "tags": page }), link)
}

pub async fn catalog(api: &Api, req: &Request<Incoming>) -> Reply {
    let mut all = api.store.repositories().await?;
    if api.auth.enabled() {
        // Only what the caller may pull.
        let id = crate::api::access::identity(req);
        all.retain(|r| {
            let remote = api.proxy.router().by_name(r.split('/').next().unwrap_or("")).is_some();
            api.auth.subject_allowed(&id.subject, r, crate::auth::Action::Pull, remote)
        });
    }
    let (page, link) = paginate(all, &Query::of(req), "/v2/_catalog")?;
    json_page(serde_json::json!({ "repositories": page }), link)
}

pub async fn referrers(api: &Api, req: &Request<Incoming>, name: &RepoName, subject: &Digest) -> Reply {
    referrers_of(api, name, subject, Query::of(req).get("artifactType")).await
}

/// The referrers index of `subject` in `name`, optionally filtered.
pub async fn referrers_of(api: &Api, name: &RepoName, subject: &Digest, filter: Option<&str>) -> Reply {
    let filter = filter.map(str::to_string);
    let mut manifests: Vec<Descriptor> = Vec::new();
    for d in api.store.referrers(name, subject).await? {
        let Some(m) = api.store.get_manifest(name, &d).await? else { continue };
        let Ok(parsed) = Manifest::parse(&m.bytes, Some(&m.media_type)) else { continue };
        let artifact_type = parsed.effective_artifact_type();
        if filter.is_some() && artifact_type != filter {
            continue;
        }
        manifests.push(Descriptor {
            media_type: m.media_type.clone(),
            digest: d,
            size: m.bytes.len() as u64,
            urls: None,
            artifact_type,
            annotations: parsed.annotations,
            platform: None,
        });
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    });
    let bytes = serde_json::to_vec(&index).map_err(|e| ApiError::internal("encoding JSON", e))?;
    let mut b = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, OCI_INDEX)
        .header(header::CONTENT_LENGTH, bytes.len());
    if filter.is_some() {
        b = b.header("oci-filters-applied", "artifactType");
    }
    Ok(b.body(body::full(bytes))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Query {
        let req = Request::builder().uri(format!("/x?{s}")).body(()).unwrap();
        Query::of(&req)
    }

    #[test]
    fn pagination() {
        let items: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let (p, l) = paginate(items.clone(), &q("n=2"), "/v2/r/tags/list").unwrap();
        assert_eq!(p, ["a", "b"]);
        assert_eq!(l.unwrap(), "</v2/r/tags/list?n=2&last=b>; rel=\"next\"");
        let (p, l) = paginate(items.clone(), &q("n=2&last=b"), "/p").unwrap();
        assert_eq!(p, ["c", "d"]);
        assert!(l.is_none());
        let (p, _) = paginate(items.clone(), &q("n=0"), "/p").unwrap();
        assert!(p.is_empty());
        let (p, l) = paginate(items.clone(), &q("last=c"), "/p").unwrap();
        assert_eq!(p, ["d"]);
        assert!(l.is_none());
        assert!(paginate(items, &q("n=-1"), "/p").is_err());
    }
}
