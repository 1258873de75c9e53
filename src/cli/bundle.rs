//! `wharf export` and `wharf import`: offline bundles through the
//! management API, streamed to and from the file (never whole in memory).

use std::path::PathBuf;

use futures_util::StreamExt;
use reqwest::Method;
use tokio::io::AsyncWriteExt;

use super::client::Client;
use super::output::show;
use crate::registry::bundle::ImportReport;

/// What `wharf export` asks for.
pub struct Selection {
    pub images: Vec<String>,
    pub platform: Option<String>,
    pub with_referrers: bool,
}

impl Selection {
    fn query(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for i in &self.images {
            q.append_pair("image", i);
        }
        if let Some(p) = &self.platform {
            q.append_pair("platform", p);
        }
        if self.with_referrers {
            q.append_pair("referrers", "true");
        }
        q.finish()
    }
}

pub async fn export(c: &Client, what: Selection, output: PathBuf) -> Result<(), String> {
    let path = format!("/api/v1/export?{}", what.query());
    let resp = c.answer(c.request(Method::GET, &path)).await?;
    let at = |e: std::io::Error| format!("{}: {e}", output.display());
    let mut file = tokio::fs::File::create(&output).await.map_err(at)?;
    let mut body = resp.bytes_stream();
    let mut n = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            format!(
                "the export broke off after {n} bytes ({e}); {} is incomplete",
                output.display()
            )
        })?;
        n += chunk.len() as u64;
        file.write_all(&chunk).await.map_err(at)?;
    }
    file.sync_all().await.map_err(at)?;
    eprintln!(
        "wrote {} ({n} bytes, {} image(s))",
        output.display(),
        what.images.len()
    );
    Ok(())
}

pub async fn import(
    c: &Client,
    bundle: PathBuf,
    remote: Option<String>,
    project: Option<String>,
) -> Result<(), String> {
    let q = match (&remote, &project) {
        (Some(r), None) => ("remote", r),
        (None, Some(p)) => ("project", p),
        _ => return Err("name exactly one of --remote or --project".into()),
    };
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair(q.0, q.1)
        .finish();
    let file = tokio::fs::File::open(&bundle)
        .await
        .map_err(|e| format!("{}: {e}", bundle.display()))?;
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
        file,
        256 * 1024,
    ));
    let req = c
        .request(Method::POST, &format!("/api/v1/import?{query}"))
        .header(reqwest::header::CONTENT_TYPE, "application/x-tar")
        .body(body);
    let text = c
        .answer(req)
        .await?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    let report: ImportReport =
        serde_json::from_str(&text).map_err(|e| format!("server sent unexpected JSON: {e}"))?;
    show(c.conn.json, &report, |r| {
        for i in &r.images {
            let at = i.tag.as_deref().map_or(String::new(), |t| format!(":{t}"));
            println!("imported {}{at} ({})", i.repository, i.digest);
        }
        println!("{} blob(s), {} bytes", r.blobs, r.bytes);
    });
    Ok(())
}
