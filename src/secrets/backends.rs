//! The backends: read a secret and turn its text into [`Credentials`].
//!
//! Parsing never echoes content: JSON syntax errors carry only a position,
//! TOML errors only their message (not the source line), and shape errors
//! list key *names*.

use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::Engine;
use serde_json::{Map, Value};

use super::{Credentials, EcrSource, SecretError, SecretRef, SecretString};

/// Refuse a secret file (or the files of a secret directory) that group or
/// others may read. A path that does not exist passes: resolving it later
/// fails with a clear error instead.
pub(super) fn check_permissions(path: &Path) -> Result<(), SecretError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let check = |p: &Path| -> Result<(), SecretError> {
            match std::fs::metadata(p) {
                Ok(m) if m.is_file() && m.permissions().mode() & 0o044 != 0 => {
                    Err(SecretError::TooOpen {
                        path: p.display().to_string(),
                        mode: m.permissions().mode() & 0o777,
                    })
                }
                _ => Ok(()),
            }
        };
        if path.is_dir() {
            for name in K8S_FILES {
                check(&path.join(name))?;
            }
        } else {
            check(path)?;
        }
    }
    Ok(())
}

/// Files wharf reads from a Kubernetes-style secret directory.
const K8S_FILES: [&str; 4] = ["username", "password", "token", ".dockerconfigjson"];

fn read_file(path: &Path) -> Result<String, SecretError> {
    check_permissions(path)?;
    std::fs::read_to_string(path).map_err(|e| SecretError::Unreadable {
        path: path.display().to_string(),
        reason: e.kind().to_string(),
    })
}

/// Values of an `env` reference.
pub(super) fn from_env(
    username: Option<&str>,
    password: Option<&str>,
    token: Option<&str>,
) -> Result<Credentials, SecretError> {
    let var =
        |name: &str| std::env::var(name).map_err(|_| SecretError::EnvMissing(name.to_string()));
    if let Some(t) = token {
        return Ok(Credentials::Token(SecretString::new(var(t)?)));
    }
    let password = SecretString::new(var(password.unwrap_or_default())?);
    let username = match username {
        Some(u) => var(u)?,
        None => String::new(), // the entry's `username` fills it in
    };
    Ok(Credentials::Basic { username, password })
}

/// A `file` reference: a file with a document, or a Kubernetes-style
/// secret directory. `hosts` picks the Docker `auths` entry when
/// `registry` is not given. `raw_ok` allows a file whose whole content is
/// the password (when the entry supplies the username).
pub(super) fn from_file(
    path: &Path,
    registry: Option<&str>,
    hosts: &[String],
    raw_ok: bool,
) -> Result<Credentials, SecretError> {
    if path.is_dir() {
        let p = |n: &str| path.join(n);
        if p(".dockerconfigjson").is_file() {
            return parse_document(&read_file(&p(".dockerconfigjson"))?, registry, hosts, false);
        }
        if p("password").is_file() {
            let password = SecretString::new(trim_newline(read_file(&p("password"))?));
            let username = if p("username").is_file() {
                trim_newline(read_file(&p("username"))?)
            } else {
                String::new()
            };
            return Ok(Credentials::Basic { username, password });
        }
        if p("token").is_file() {
            return Ok(Credentials::Token(SecretString::new(trim_newline(
                read_file(&p("token"))?,
            ))));
        }
        return Err(SecretError::Malformed(format!(
            "directory {} has none of the files username + password, token, .dockerconfigjson",
            path.display()
        )));
    }
    if !path.exists() {
        return Err(SecretError::Unreadable {
            path: path.display().to_string(),
            reason: "no such file".into(),
        });
    }
    parse_document(&read_file(path)?, registry, hosts, raw_ok).map_err(|e| match e {
        SecretError::Malformed(m) => SecretError::Malformed(format!("{}: {m}", path.display())),
        e => e,
    })
}

fn trim_newline(mut s: String) -> String {
    while s.ends_with('\n') || s.ends_with('\r') {
        s.pop();
    }
    s
}

/// Parse a secret document: JSON, else TOML, else (when `raw_ok`) the
/// whole trimmed text is a password.
pub(super) fn parse_document(
    text: &str,
    registry: Option<&str>,
    hosts: &[String],
    raw_ok: bool,
) -> Result<Credentials, SecretError> {
    let t = text.trim();
    let json_err = match serde_json::from_str::<Value>(t) {
        Ok(Value::Object(m)) => return from_object(&m, t, registry, hosts),
        Ok(Value::String(s)) if raw_ok => return Ok(basic("", s)),
        Ok(_) if raw_ok => return Ok(basic("", t.to_string())),
        Ok(_) => {
            return Err(SecretError::Malformed(
                "JSON document is not an object".into(),
            ))
        }
        Err(e) => format!("not JSON (line {}, column {})", e.line(), e.column()),
    };
    match toml::from_str::<toml::Table>(t) {
        Ok(table) if !table.is_empty() => {
            let v = serde_json::to_value(table)
                .map_err(|_| SecretError::Malformed("TOML document".into()))?;
            match v {
                Value::Object(m) => from_object(&m, t, registry, hosts),
                _ => Err(SecretError::Malformed(
                    "TOML document is not a table".into(),
                )),
            }
        }
        _ if raw_ok && !t.is_empty() && !t.contains('\n') => Ok(basic("", t.to_string())),
        Ok(_) => Err(SecretError::Malformed("empty document".into())),
        // Only the message: toml's Display quotes the offending line.
        Err(e) => Err(SecretError::Malformed(format!(
            "{json_err}, and not TOML ({})",
            e.message().lines().next().unwrap_or("syntax error")
        ))),
    }
}

fn basic(username: &str, password: String) -> Credentials {
    Credentials::Basic {
        username: username.to_string(),
        password: SecretString::new(password),
    }
}

fn str_field<'a>(m: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| m.get(*k).and_then(Value::as_str))
}

fn from_object(
    m: &Map<String, Value>,
    raw: &str,
    registry: Option<&str>,
    hosts: &[String],
) -> Result<Credentials, SecretError> {
    if let Some(Value::Object(auths)) = m.get("auths") {
        return docker_config(auths, registry, hosts);
    }
    if str_field(m, &["type"]) == Some("service_account")
        || (m.contains_key("private_key") && m.contains_key("client_email"))
    {
        // A Google service-account key: the whole JSON is the password.
        return Ok(basic("_json_key", raw.to_string()));
    }
    if let (Some(id), Some(key)) = (
        str_field(m, &["aws_access_key_id", "AccessKeyId", "access_key_id"]),
        str_field(
            m,
            &[
                "aws_secret_access_key",
                "SecretAccessKey",
                "secret_access_key",
            ],
        ),
    ) {
        return Ok(basic(id, key.to_string()));
    }
    if let Some(t) = str_field(m, &["refresh_token", "identitytoken", "identity_token"]) {
        let username = str_field(m, &["username", "user"])
            .unwrap_or("")
            .to_string();
        return Ok(Credentials::Refresh {
            username,
            token: SecretString::new(t),
        });
    }
    if let Some(p) = str_field(m, &["password"]) {
        let u = str_field(m, &["username", "user"]).unwrap_or("");
        return Ok(basic(u, p.to_string()));
    }
    if let Some(t) = str_field(m, &["token"]) {
        return Ok(Credentials::Token(SecretString::new(t)));
    }
    let keys: Vec<&str> = m.keys().map(String::as_str).collect();
    Err(SecretError::Malformed(format!(
        "expected username + password, token, refresh_token, a Docker config `auths` map or a service-account key; found keys [{}]",
        keys.join(", ")
    )))
}

/// `https://index.docker.io/v1/` → `index.docker.io`; `host:port/x` → `host:port`.
fn auths_key_host(k: &str) -> String {
    let k = k.trim();
    let k = k.split_once("://").map(|(_, r)| r).unwrap_or(k);
    k.split('/').next().unwrap_or("").to_ascii_lowercase()
}

fn docker_config(
    auths: &Map<String, Value>,
    registry: Option<&str>,
    hosts: &[String],
) -> Result<Credentials, SecretError> {
    let entry = match registry {
        Some(r) => {
            let want = auths_key_host(r);
            auths.iter().find(|(k, _)| auths_key_host(k) == want)
        }
        None => auths
            .iter()
            .find(|(k, _)| {
                hosts
                    .iter()
                    .any(|h| h.eq_ignore_ascii_case(&auths_key_host(k)))
            })
            .or_else(|| {
                if auths.len() == 1 {
                    auths.iter().next()
                } else {
                    None
                }
            }),
    };
    let Some((key, Value::Object(e))) = entry else {
        let keys: Vec<&str> = auths.keys().map(String::as_str).collect();
        return Err(SecretError::Malformed(format!(
            "Docker config `auths` has no entry for {} (entries: [{}])",
            registry
                .map(str::to_string)
                .unwrap_or_else(|| hosts.join(", ")),
            keys.join(", ")
        )));
    };
    // Docker writes an identity token (OAuth2 refresh token) with a
    // placeholder `auth`; the token is what counts.
    if let Some(t) = str_field(e, &["identitytoken"]).filter(|t| !t.is_empty()) {
        let username = str_field(e, &["username"]).unwrap_or("").to_string();
        return Ok(Credentials::Refresh {
            username,
            token: SecretString::new(t),
        });
    }
    if let Some(a) = str_field(e, &["auth"]).filter(|a| !a.is_empty()) {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(a.trim())
            .map_err(|_| SecretError::Malformed(format!("auths[{key}].auth is not base64")))?;
        let s = String::from_utf8(raw)
            .map_err(|_| SecretError::Malformed(format!("auths[{key}].auth is not UTF-8")))?;
        let Some((u, p)) = s.split_once(':') else {
            return Err(SecretError::Malformed(format!(
                "auths[{key}].auth is not base64(user:password)"
            )));
        };
        return Ok(basic(u, p.to_string()));
    }
    if let Some(p) = str_field(e, &["password"]) {
        return Ok(basic(
            str_field(e, &["username"]).unwrap_or(""),
            p.to_string(),
        ));
    }
    if let Some(t) = str_field(e, &["registrytoken"]) {
        return Ok(Credentials::Token(SecretString::new(t)));
    }
    Err(SecretError::Malformed(format!(
        "auths[{key}] has no `auth`, `username`/`password`, `identitytoken` or `registrytoken`"
    )))
}

// ---------------------------------------------------------------------------
// AWS

/// The AWS SDK configuration for one region/endpoint: the standard
/// credential chain unless `keys` (access key id, secret key) are given.
/// TLS is rustls with ring (the same stack as wharf's own HTTP client).
pub(super) async fn aws_config(
    region: Option<&str>,
    endpoint: Option<&str>,
    keys: Option<(String, SecretString)>,
) -> aws_config::SdkConfig {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut l = aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http);
    if let Some(r) = region {
        l = l.region(aws_config::Region::new(r.to_string()));
    }
    if let Some(e) = endpoint {
        l = l.endpoint_url(e);
    }
    if let Some((id, secret)) = keys {
        l = l.credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
            id,
            secret.expose(),
            None,
            None,
            "wharf-secret",
        ));
    }
    l.load().await
}

fn aws_err(service: &'static str, e: impl std::error::Error) -> SecretError {
    // DisplayErrorContext: the error chain, e.g. "ResourceNotFoundException:
    // Secrets Manager can't find the specified secret". AWS error messages
    // do not carry secret values.
    SecretError::Aws {
        service,
        reason: aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string(),
    }
}

/// Read a Secrets Manager secret's string (or UTF-8 binary).
pub(super) async fn secretsmanager(
    client: &aws_sdk_secretsmanager::Client,
    id: &str,
) -> Result<String, SecretError> {
    let out = client
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .map_err(|e| aws_err("Secrets Manager", e))?;
    if let Some(s) = out.secret_string() {
        return Ok(s.to_string());
    }
    if let Some(b) = out.secret_binary() {
        return String::from_utf8(b.as_ref().to_vec()).map_err(|_| {
            SecretError::Malformed(format!("Secrets Manager secret {id} is binary, not UTF-8"))
        });
    }
    Err(SecretError::Malformed(format!(
        "Secrets Manager secret {id} has no value"
    )))
}

/// `<account>.dkr.ecr.<region>.amazonaws.com[.cn]` → (account, region).
pub(super) fn ecr_host_parts(host: &str) -> Option<(String, String)> {
    let mut it = host.split('.');
    let account = it.next()?;
    if it.next()? != "dkr" {
        return None;
    }
    let ecr = it.next()?;
    if !ecr.starts_with("ecr") {
        return None;
    }
    let region = it.next()?;
    if account.is_empty() || !account.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((account.to_string(), region.to_string()))
}

/// `GetAuthorizationToken` → `AWS:<password>` decoded into Basic
/// credentials, and when the token expires.
pub(super) async fn ecr_token(
    e: &EcrSource,
    host: Option<&str>,
    keys: Option<(String, SecretString)>,
) -> Result<(Credentials, Option<SystemTime>), SecretError> {
    let from_host = host.and_then(ecr_host_parts);
    let region = e
        .region
        .clone()
        .or_else(|| from_host.as_ref().map(|(_, r)| r.clone()));
    let cfg = aws_config(region.as_deref(), e.endpoint.as_deref(), keys).await;
    let client = aws_sdk_ecr::Client::new(&cfg);
    // No registry ids: the token works for every registry the principal
    // may access (the parameter is deprecated).
    let out = client
        .get_authorization_token()
        .send()
        .await
        .map_err(|err| aws_err("ECR", err))?;
    let data = out.authorization_data().first().ok_or_else(|| {
        SecretError::Malformed("ECR GetAuthorizationToken returned no authorization data".into())
    })?;
    let token = data
        .authorization_token()
        .ok_or_else(|| SecretError::Malformed("ECR authorization data has no token".into()))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .map_err(|_| SecretError::Malformed("ECR authorization token is not base64".into()))?;
    let s = String::from_utf8(raw)
        .map_err(|_| SecretError::Malformed("ECR authorization token is not UTF-8".into()))?;
    let (user, pass) = s.split_once(':').ok_or_else(|| {
        SecretError::Malformed("ECR authorization token is not user:password".into())
    })?;
    let expires = data.expires_at().and_then(|t| {
        let secs = t.secs();
        (secs > 0).then(|| SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64))
    });
    Ok((basic(user, pass.to_string()), expires))
}

/// Resolve a reference that is not Secrets Manager (that one needs a
/// cached client; see the resolver).
pub(super) fn resolve_local(
    r: &SecretRef,
    hosts: &[String],
    raw_ok: bool,
) -> Option<Result<Credentials, SecretError>> {
    match r {
        SecretRef::Env {
            username,
            password,
            token,
        } => Some(from_env(
            username.as_deref(),
            password.as_deref(),
            token.as_deref(),
        )),
        SecretRef::File { path, registry } => {
            Some(from_file(path, registry.as_deref(), hosts, raw_ok))
        }
        SecretRef::AwsSecretsmanager { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(c: &Credentials) -> (String, String) {
        match c {
            Credentials::Basic { username, password } => {
                (username.clone(), password.expose().to_string())
            }
            Credentials::Token(t) => ("<token>".into(), t.expose().to_string()),
            Credentials::Refresh { username, token } => {
                (format!("<refresh {username}>"), token.expose().to_string())
            }
        }
    }

    #[test]
    fn refresh_tokens_from_documents_and_docker_identitytoken() {
        let h = vec!["ghcr.io".to_string()];
        let c =
            parse_document(r#"{"username":"u","refresh_token":"r1"}"#, None, &h, false).unwrap();
        assert_eq!(up(&c), ("<refresh u>".into(), "r1".into()));
        let c = parse_document("identitytoken = \"r2\"\n", None, &h, false).unwrap();
        assert_eq!(up(&c), ("<refresh >".into(), "r2".into()));
        let placeholder = base64::engine::general_purpose::STANDARD.encode("<token>:");
        let doc =
            format!(r#"{{"auths":{{"ghcr.io":{{"auth":"{placeholder}","identitytoken":"r3"}}}}}}"#);
        let c = parse_document(&doc, None, &h, false).unwrap();
        assert_eq!(up(&c), ("<refresh >".into(), "r3".into()));
    }

    #[test]
    fn documents() {
        let h = vec!["ghcr.io".to_string()];
        let c = parse_document(r#"{"username":"u","password":"p"}"#, None, &h, false).unwrap();
        assert_eq!(up(&c), ("u".into(), "p".into()));
        let c = parse_document("username = \"u\"\npassword = \"p\"\n", None, &h, false).unwrap();
        assert_eq!(up(&c), ("u".into(), "p".into()));
        let c = parse_document(r#"{"token":"t"}"#, None, &h, false).unwrap();
        assert_eq!(up(&c), ("<token>".into(), "t".into()));
        let auth = base64::engine::general_purpose::STANDARD.encode("bot:pa:ss");
        let doc = format!(
            r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"x"}},"ghcr.io":{{"auth":"{auth}"}}}}}}"#
        );
        let c = parse_document(&doc, None, &h, false).unwrap();
        assert_eq!(up(&c), ("bot".into(), "pa:ss".into()));
        let key = r#"{"type":"service_account","private_key":"k","client_email":"e"}"#;
        let c = parse_document(key, None, &h, false).unwrap();
        assert_eq!(up(&c), ("_json_key".into(), key.into()));
        let c = parse_document("ghp_plain\n", None, &h, true).unwrap();
        assert_eq!(up(&c), ("".into(), "ghp_plain".into()));
    }

    #[test]
    fn errors_never_echo_content() {
        let h = vec![];
        for doc in [
            "{\"password\": \"hunter2\"",
            "password = hunter2\n",
            "{\"pw\":\"hunter2\"}",
            "hunter2 hunter2\nx",
        ] {
            let e = parse_document(doc, None, &h, false)
                .unwrap_err()
                .to_string();
            assert!(!e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn ecr_hosts() {
        assert_eq!(
            ecr_host_parts("123456789012.dkr.ecr.eu-west-1.amazonaws.com"),
            Some(("123456789012".into(), "eu-west-1".into()))
        );
        assert_eq!(ecr_host_parts("ghcr.io"), None);
    }
}
