//! Times in JSON: unix seconds inside wharf, ISO-8601 / RFC 3339 UTC
//! strings (`2026-11-28T20:01:32Z`) on the wire, the same form the CLI's
//! tables print. Use with `#[serde(with = "crate::timefmt::rfc3339")]` (or
//! `rfc3339_opt` for an optional time). Reading accepts the string or,
//! from older answers, a number of seconds. Imports nothing of ours.

use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serializer};

/// `secs` since the epoch as RFC 3339 (seconds precision, UTC).
pub fn format(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Wire {
    Secs(u64),
    Text(String),
}

fn parse<E: serde::de::Error>(w: Wire) -> Result<u64, E> {
    match w {
        Wire::Secs(s) => Ok(s),
        Wire::Text(t) => humantime::parse_rfc3339_weak(&t)
            .map_err(|e| E::custom(format!("time {t:?}: {e}")))
            .map(|t| {
                t.duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0)
            }),
    }
}

/// A required time.
pub mod rfc3339 {
    use super::*;

    pub fn serialize<S: Serializer>(secs: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*secs))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        parse(Wire::deserialize(d)?)
    }
}

/// An optional time (`null` when absent).
pub mod rfc3339_opt {
    use super::*;

    pub fn serialize<S: Serializer>(secs: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match secs {
            Some(v) => s.serialize_str(&format(*v)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        Option::<Wire>::deserialize(d)?.map(parse).transpose()
    }
}

#[cfg(test)]
mod tests {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct T {
        #[serde(with = "super::rfc3339")]
        at: u64,
        #[serde(with = "super::rfc3339_opt")]
        until: Option<u64>,
    }

    #[test]
    fn round_trips_and_reads_old_numbers() {
        let t = T {
            at: 1_800_000_000,
            until: None,
        };
        let s = serde_json::to_string(&t).unwrap();
        assert_eq!(s, r#"{"at":"2027-01-15T08:00:00Z","until":null}"#);
        assert_eq!(serde_json::from_str::<T>(&s).unwrap(), t);
        let old: T = serde_json::from_str(r#"{"at":5,"until":7}"#).unwrap();
        assert_eq!(
            old,
            T {
                at: 5,
                until: Some(7)
            }
        );
    }
}
