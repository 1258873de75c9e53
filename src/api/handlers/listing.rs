//! Paginated listings: `tags/list`, `_catalog`, and the referrers index.

use http::{header, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::Query;
use crate::api::body;
use crate::api::error::ApiError;
use crate::api::{Api, Reply};
use crate::oci::manifest::{Descriptor, OCI_INDEX};
use crate::oci::{Digest, ErrorCode, RepoName};

/// A page request: `n` (page size, at most `limits.max_page_size`, which
/// is also the size when the client gives none) and `last` (the previous
/// page's last item). Nothing is ever listed whole in memory.
pub struct Page {
    n: usize,
    pub last: Option<String>,
}

impl Page {
    pub fn of(q: &Query, max: usize) -> Result<Page, ApiError> {
        let n = match q.get("n") {
            None => max,
            Some(v) => v.parse::<usize>().map_err(|_| {
                ApiError::new(ErrorCode::BadRequest)
                    .explain(format!("n must be a non-negative integer, got {v:?}"))
            })?,
        };
        Ok(Page {
            n: n.min(max),
            last: q.get("last").map(str::to_string),
        })
    }

    /// How many items to fetch: one more than the page, to know whether
    /// another page follows.
    pub fn fetch(&self) -> usize {
        self.n + 1
    }

    /// Cut `items` (fetched with [`fetch`](Self::fetch)) to the page and
    /// build the `Link` header when more follow.
    pub fn finish(&self, mut items: Vec<String>, path: &str) -> (Vec<String>, Option<String>) {
        let n = self.n;
        if items.len() <= n {
            return (items, None);
        }
        items.truncate(n);
        let link = items.last().map(|last| {
            let qs = form_urlencoded::Serializer::new(String::new())
                .append_pair("n", &n.to_string())
                .append_pair("last", last)
                .finish();
            format!("<{path}?{qs}>; rel=\"next\"")
        });
        (items, link)
    }
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

fn page(api: &Api, req: &Request<Incoming>) -> Result<Page, ApiError> {
    Page::of(&Query::of(req), api.registry.limits.bounds.max_page_size)
}

pub async fn tags(api: &Api, req: &Request<Incoming>, name: &RepoName) -> Reply {
    let page = page(api, req)?;
    let items = api
        .registry
        .tags(name, page.last.as_deref(), page.fetch())
        .await?;
    let (items, link) = page.finish(items, &format!("/v2/{name}/tags/list"));
    json_page(
        serde_json::json!({ "name": name.as_str(), "tags": items }),
        link,
    )
}

pub async fn catalog(api: &Api, req: &Request<Incoming>) -> Reply {
    let page = page(api, req)?;
    let id = crate::api::access::identity(req);
    let items = api
        .registry
        .catalog(&id, page.last.as_deref(), page.fetch())
        .await?;
    let (items, link) = page.finish(items, "/v2/_catalog");
    json_page(serde_json::json!({ "repositories": items }), link)
}

pub async fn referrers(
    api: &Api,
    req: &Request<Incoming>,
    name: &RepoName,
    subject: &Digest,
) -> Reply {
    referrers_of(api, req, name, name, subject).await
}

/// The referrers index of `subject` in `name` (as the client named it:
/// `shown`), optionally filtered by `artifactType`, one page at a time.
pub async fn referrers_of(
    api: &Api,
    req: &Request<Incoming>,
    shown: &RepoName,
    name: &RepoName,
    subject: &Digest,
) -> Reply {
    let q = Query::of(req);
    let filter = q.get("artifactType");
    let page = page(api, req)?;
    let mut manifests: Vec<Descriptor> = api
        .registry
        .referrers(name, subject, filter, page.last.as_deref(), page.fetch())
        .await?;
    let digests: Vec<String> = manifests.iter().map(|d| d.digest.to_string()).collect();
    let (kept, mut link) = page.finish(digests, &format!("/v2/{shown}/referrers/{subject}"));
    manifests.truncate(kept.len());
    if let (Some(l), Some(f)) = (&mut link, filter) {
        let at = form_urlencoded::Serializer::new(String::new())
            .append_pair("artifactType", f)
            .finish();
        *l = l.replacen("?", &format!("?{at}&"), 1);
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
    if let Some(l) = link {
        b = b.header(header::LINK, l);
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

    /// Emulates a store listing: items after `last`, at most `limit`.
    fn list(items: &[&str], p: &Page) -> Vec<String> {
        items
            .iter()
            .filter(|i| p.last.as_deref().is_none_or(|l| **i > l))
            .take(p.fetch())
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn pagination() {
        let items = ["a", "b", "c", "d"];
        let p = Page::of(&q("n=2"), 100).unwrap();
        let (page, link) = p.finish(list(&items, &p), "/v2/r/tags/list");
        assert_eq!(page, ["a", "b"]);
        assert_eq!(link.unwrap(), "</v2/r/tags/list?n=2&last=b>; rel=\"next\"");
        let p = Page::of(&q("n=2&last=b"), 100).unwrap();
        let (page, link) = p.finish(list(&items, &p), "/p");
        assert_eq!(page, ["c", "d"]);
        assert!(link.is_none());
        let p = Page::of(&q("n=0"), 100).unwrap();
        assert!(p.finish(list(&items, &p), "/p").0.is_empty());
        let p = Page::of(&q("last=c"), 100).unwrap();
        let (page, link) = p.finish(list(&items, &p), "/p");
        assert_eq!(page, ["d"]);
        assert!(link.is_none());
        assert!(Page::of(&q("n=-1"), 100).is_err());
        // No n: pages of the configured maximum; a larger n is clamped.
        let p = Page::of(&q(""), 3).unwrap();
        let (page, link) = p.finish(list(&items, &p), "/p");
        assert_eq!(page, ["a", "b", "c"]);
        assert_eq!(link.unwrap(), "</p?n=3&last=c>; rel=\"next\"");
        assert_eq!(Page::of(&q("n=50"), 3).unwrap().fetch(), 4);
    }
}
