//! `[[notifications]]`: webhook endpoints that receive registry events in
//! Distribution's envelope format (see [`crate::notify`]).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::raw::positive_duration;
use super::ConfigError;
use crate::secrets::SecretRef;

/// What happened, as an event's `action` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    Push,
    Pull,
    Delete,
    Mount,
    /// Content fetched from a remote into the cache (once per blob or
    /// manifest, however many clients asked).
    CacheFetch,
}

impl EventKind {
    pub const ALL: [EventKind; 5] = [
        EventKind::Push,
        EventKind::Pull,
        EventKind::Delete,
        EventKind::Mount,
        EventKind::CacheFetch,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Push => "push",
            EventKind::Pull => "pull",
            EventKind::Delete => "delete",
            EventKind::Mount => "mount",
            EventKind::CacheFetch => "cache-fetch",
        }
    }

    fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One validated endpoint.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Names the endpoint's queue, metrics and log lines.
    pub name: String,
    pub url: reqwest::Url,
    /// The actions it receives.
    pub events: Vec<EventKind>,
    /// Sent as written.
    pub headers: Vec<(String, String)>,
    /// Values resolved from a secret (its token; or `Basic` of a
    /// username/password), never logged.
    pub secret_headers: Vec<(String, SecretRef)>,
    /// Per delivery attempt.
    pub timeout: Duration,
    /// First wait after a failed delivery; doubles up to `backoff_max`.
    pub backoff: Duration,
    pub backoff_max: Duration,
    /// Most events kept for the endpoint while it is unreachable; past it
    /// the oldest are dropped (counted in /metrics, logged).
    pub max_pending: usize,
    /// Most events in one envelope.
    pub max_batch: usize,
}

impl Endpoint {
    pub fn wants(&self, k: EventKind) -> bool {
        self.events.contains(&k)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEndpoint {
    name: String,
    url: String,
    events: Option<Vec<String>>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    secret_headers: BTreeMap<String, SecretRef>,
    timeout: Option<String>,
    backoff: Option<String>,
    backoff_max: Option<String>,
    max_pending: Option<usize>,
    max_batch: Option<usize>,
}

/// Validate every endpoint; names must be unique and usable as a key.
pub(super) fn validate_all(raw: Vec<RawEndpoint>) -> Result<Vec<Endpoint>, ConfigError> {
    let mut out: Vec<Endpoint> = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let e = r.validate(i)?;
        if out.iter().any(|o| o.name == e.name) {
            return Err(ConfigError::invalid(
                &format!("notifications[{i}].name"),
                format!(
                    "{:?} is used by another endpoint; names must be unique",
                    e.name
                ),
            ));
        }
        out.push(e);
    }
    Ok(out)
}

impl RawEndpoint {
    fn validate(self, i: usize) -> Result<Endpoint, ConfigError> {
        let key = |k: &str| format!("notifications[{i}].{k}");
        if !valid_name(&self.name) {
            return Err(ConfigError::invalid(
                &key("name"),
                format!(
                    "{:?}: use 1-64 lowercase letters, digits, '-' or '_'",
                    self.name
                ),
            ));
        }
        let url = reqwest::Url::parse(&self.url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| {
                ConfigError::invalid(&key("url"), format!("{:?} is not an http(s) URL", self.url))
            })?;
        let events = match self.events {
            None => EventKind::ALL.to_vec(),
            Some(list) => list
                .iter()
                .map(|s| {
                    EventKind::parse(s).ok_or_else(|| {
                        ConfigError::invalid(
                            &key("events"),
                            format!(
                                "unknown event {s:?}; use push, pull, delete, mount, cache-fetch"
                            ),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        for (h, v) in &self.headers {
            check_header(&key("headers"), h, Some(v))?;
        }
        for (h, r) in &self.secret_headers {
            check_secret_header(&key("secret_headers"), h, r)?;
        }
        let dur =
            |k: &str, v: Option<String>, default: &str| positive_duration(&key(k), v, default);
        let timeout = dur("timeout", self.timeout, "5s")?;
        let backoff = dur("backoff", self.backoff, "1s")?;
        let backoff_max = dur("backoff_max", self.backoff_max, "60s")?.max(backoff);
        let positive = |k: &str, v: Option<usize>, d: usize, max: usize| match v.unwrap_or(d) {
            n if (1..=max).contains(&n) => Ok(n),
            n => Err(ConfigError::invalid(
                &key(k),
                format!("{n} is out of range 1..={max}"),
            )),
        };
        Ok(Endpoint {
            name: self.name,
            url,
            events,
            headers: self.headers.into_iter().collect(),
            secret_headers: self.secret_headers.into_iter().collect(),
            timeout,
            backoff,
            backoff_max,
            max_pending: positive("max_pending", self.max_pending, 100_000, 10_000_000)?,
            max_batch: positive("max_batch", self.max_batch, 100, 10_000)?,
        })
    }
}

/// A name usable as a key: 1-64 lowercase letters, digits, `-`, `_`.
pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// A `secret_headers` entry under `key`: a header name and a reference.
pub(super) fn check_secret_header(key: &str, h: &str, r: &SecretRef) -> Result<(), ConfigError> {
    check_header(key, h, None)?;
    r.validate(false)
        .map_err(|e| ConfigError::invalid(&format!("{key}.{h}"), e.0))
}

fn check_header(key: &str, name: &str, value: Option<&str>) -> Result<(), ConfigError> {
    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(ConfigError::invalid(
            key,
            format!("{name:?} is not a valid header name"),
        ));
    }
    if name.eq_ignore_ascii_case("content-type") || name.eq_ignore_ascii_case("content-length") {
        return Err(ConfigError::invalid(key, format!("{name} is set by wharf")));
    }
    if let Some(v) = value {
        if http::HeaderValue::from_str(v).is_err() {
            return Err(ConfigError::invalid(
                key,
                format!("the value of {name} is not a valid header value"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<Vec<Endpoint>, ConfigError> {
        #[derive(Deserialize)]
        struct W {
            notifications: Vec<RawEndpoint>,
        }
        let w: W =
            toml::from_str(toml_text).map_err(|e| ConfigError::invalid("toml", e.to_string()))?;
        validate_all(w.notifications)
    }

    #[test]
    fn defaults_and_filters() {
        let e =
            parse("[[notifications]]\nname = \"ci\"\nurl = \"http://127.0.0.1:9/hook\"\n").unwrap();
        assert_eq!(e[0].events, EventKind::ALL.to_vec());
        assert_eq!(e[0].timeout, Duration::from_secs(5));
        let e = parse("[[notifications]]\nname = \"ci\"\nurl = \"https://h/x\"\nevents = [\"push\", \"cache-fetch\"]\n").unwrap();
        assert!(e[0].wants(EventKind::CacheFetch) && !e[0].wants(EventKind::Pull));
    }

    #[test]
    fn bad_input_names_the_key() {
        let cases = [
            ("name = \"Bad Name\"\nurl = \"http://h/\"", "notifications[0].name"),
            ("name = \"a\"\nurl = \"ftp://h/\"", "notifications[0].url"),
            ("name = \"a\"\nurl = \"http://h/\"\nevents = [\"pushed\"]", "notifications[0].events"),
            ("name = \"a\"\nurl = \"http://h/\"\ntimeout = \"0s\"", "notifications[0].timeout"),
            ("name = \"a\"\nurl = \"http://h/\"\nheaders = { \"Content-Type\" = \"x\" }", "notifications[0].headers"),
            ("name = \"a\"\nurl = \"http://h/\"\nsecret_headers = { Authorization = { backend = \"env\" } }", "secret_headers.Authorization"),
        ];
        for (body, key) in cases {
            let e = parse(&format!("[[notifications]]\n{body}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{body}: {e}");
        }
        let e = parse("[[notifications]]\nname = \"a\"\nurl = \"http://h/\"\n[[notifications]]\nname = \"a\"\nurl = \"http://h/\"\n").unwrap_err();
        assert!(e.to_string().contains("unique"), "{e}");
    }
}
