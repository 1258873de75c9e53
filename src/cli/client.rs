//! The HTTP client of the CLI: where the server is, who we are, TLS
//! options, and errors people can act on — the server's own message for
//! a refused call, the network or TLS cause (connection refused, unknown
//! CA, name mismatch...) when the server cannot be reached.

use clap::Args;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// What to do about a server certificate from an unknown authority.
const CA_HINT: &str =
    "pass the server's CA certificate with --ca-file, or --insecure for a test setup";

/// Where the server is and who we are.
#[derive(Args, Clone, Debug)]
pub struct Conn {
    /// Base URL of the wharf server.
    #[arg(
        long,
        env = "WHARF_URL",
        default_value = "http://127.0.0.1:5000",
        global = true
    )]
    pub url: String,
    /// Username (an admin, or robot$<name>).
    #[arg(long, env = "WHARF_USER", global = true)]
    pub user: Option<String>,
    /// Password or robot token (prefer the environment variable).
    #[arg(long, env = "WHARF_PASSWORD", hide_env_values = true, global = true)]
    pub password: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// Extra CA certificate (PEM) for an HTTPS server.
    #[arg(long, global = true)]
    pub ca_file: Option<std::path::PathBuf>,
    /// Accept any server certificate (test setups only: anyone on the path
    /// could read the credentials).
    #[arg(long, global = true)]
    pub insecure: bool,
}

pub(super) struct Client {
    http: reqwest::Client,
    pub conn: Conn,
}

impl Client {
    pub fn new(conn: Conn) -> Result<Client, String> {
        let mut b = reqwest::Client::builder().no_proxy();
        if let Some(ca) = &conn.ca_file {
            let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| format!("{}: {e}", ca.display()))?;
            b = b.add_root_certificate(cert);
        }
        if conn.insecure {
            b = b.danger_accept_invalid_certs(true);
        }
        Ok(Client {
            http: b.build().map_err(|e| e.to_string())?,
            conn,
        })
    }

    /// Send a request; returns the body of a 2xx answer, or the server's
    /// error message.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<String, String> {
        Ok(self
            .exchange(method, &format!("/api/v1/{path}"), body)
            .await?
            .0)
    }

    /// Every item of a paginated listing: follows the `Link: <...>;
    /// rel="next"` headers page after page.
    pub async fn get_all<T: DeserializeOwned>(&self, path: &str) -> Result<Vec<T>, String> {
        let mut out = Vec::new();
        let mut next = Some(format!("/api/v1/{path}"));
        while let Some(p) = next.take() {
            let (text, link) = self.exchange(reqwest::Method::GET, &p, None).await?;
            let page: Vec<T> = serde_json::from_str(&text)
                .map_err(|e| format!("server sent unexpected JSON: {e}"))?;
            out.extend(page);
            next = link.as_deref().and_then(next_link);
        }
        Ok(out)
    }

    /// Send a request to `path` (absolute, from the server's root); the
    /// body of a 2xx answer with its `Link` header, or the error message.
    async fn exchange(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(String, Option<String>), String> {
        let mut r = self.request(method, path);
        if let Some(b) = body {
            r = r
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b);
        }
        let resp = self.answer(r).await?;
        let link = resp
            .headers()
            .get(reqwest::header::LINK)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok((resp.text().await.unwrap_or_default(), link))
    }

    /// A request to `path` (absolute, from the server's root) with our
    /// credentials.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let url = format!("{}{path}", self.conn.url.trim_end_matches('/'));
        let r = self.http.request(method, &url);
        match &self.conn.user {
            Some(u) => r.basic_auth(u, self.conn.password.as_deref()),
            None => r,
        }
    }

    /// Send `r`: a 2xx response, or the server's error message.
    pub async fn answer(&self, r: reqwest::RequestBuilder) -> Result<reqwest::Response, String> {
        let resp = r.send().await.map_err(|e| {
            format!(
                "cannot reach {}: {}",
                self.conn.url,
                crate::upstream::cause::describe_with(&e, CA_HINT)
            )
        })?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            return Err(format!("{status}: {}", error_text(&text)));
        }
        Ok(resp)
    }

    /// A JSON call answered with a `T`.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, String> {
        let body = body
            .map(|b| serde_json::to_vec(b))
            .transpose()
            .map_err(|e| e.to_string())?;
        let text = self.send(method, path, body).await?;
        serde_json::from_str(&text).map_err(|e| format!("server sent unexpected JSON: {e}"))
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        self.call(reqwest::Method::GET, path, None::<&()>).await
    }
}

/// The target of a `Link: </path?query>; rel="next"` header (a path on
/// the same server).
fn next_link(header: &str) -> Option<String> {
    header
        .split(',')
        .find(|l| l.contains("rel=\"next\""))
        .and_then(|l| {
            let target = l.trim().strip_prefix('<')?.split_once('>')?.0;
            target.starts_with('/').then(|| target.to_string())
        })
}

/// The message of an OCI error body (`code: message`), or the body itself.
fn error_text(body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<OciError>,
    }
    #[derive(serde::Deserialize)]
    struct OciError {
        code: String,
        #[serde(default)]
        message: String,
        #[serde(default)]
        detail: serde_json::Value,
    }
    match serde_json::from_str::<Errors>(body)
        .ok()
        .and_then(|e| e.errors.into_iter().next())
    {
        Some(e) => match e
            .detail
            .as_str()
            .filter(|d| !d.is_empty() && *d != e.message)
        {
            Some(d) => format!("{}: {} ({d})", e.code, e.message),
            None => format!("{}: {}", e.code, e.message),
        },
        None => body.trim().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::next_link;

    #[test]
    fn next_links_are_paths_on_the_same_server() {
        assert_eq!(
            next_link("</api/v1/repositories?n=2&last=a%2Fb>; rel=\"next\"").as_deref(),
            Some("/api/v1/repositories?n=2&last=a%2Fb")
        );
        assert_eq!(
            next_link("<https://elsewhere/x>; rel=\"next\""),
            None,
            "never follow to another host"
        );
        assert_eq!(next_link("</x>; rel=\"prev\""), None);
    }
}
