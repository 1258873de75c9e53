//! Retention rules of a project (`[[projects.retention]]`, or
//! `PUT /api/v1/projects/{p}/retention`) and the `[retention]` schedule.
//!
//! A rule is one of:
//! - `{ tags = "v*", keep_latest = 10 }`: in each repository, of the tags
//!   matching the glob, keep the 10 most recently pushed; the others go.
//! - `{ untagged_older_than = "7d" }`: manifests that no tag points at,
//!   pushed longer ago than that, go.
//!
//! Globs match a whole tag: `*` is any run of characters (also none), `?`
//! is exactly one, everything else matches itself (`v1.*` matches `v1.2`
//! and `v1.`, not `v10`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{duration, ConfigError};

/// One retention rule as written (TOML and JSON): exactly one of
/// `keep_latest` (with `tags`, default `*`) or `untagged_older_than`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRule {
    /// Glob over tag names (for `keep_latest`); default `*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<String>,
    /// Keep this many of the most recently pushed matching tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_latest: Option<usize>,
    /// Delete untagged manifests pushed longer ago than this (`7d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub untagged_older_than: Option<String>,
}

/// A validated rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    KeepLatest { tags: String, count: usize },
    UntaggedOlderThan(Duration),
}

/// Longest tag glob accepted.
const MAX_GLOB: usize = 256;

impl RetentionRule {
    /// The rule it says, or why it says none.
    pub fn rule(&self) -> Result<Rule, String> {
        match (self.keep_latest, &self.untagged_older_than) {
            (Some(count), None) => {
                let tags = self.tags.clone().unwrap_or_else(|| "*".to_string());
                if tags.is_empty() || tags.len() > MAX_GLOB || tags.chars().any(|c| c.is_control() || c == '/') {
                    return Err(format!("tags: {tags:?} is not a tag glob (1-{MAX_GLOB} characters, `*` and `?` as wildcards)"));
                }
                Ok(Rule::KeepLatest { tags, count })
            }
            (None, Some(age)) if self.tags.is_none() => crate::config::parse_duration(age)
                .map(Rule::UntaggedOlderThan)
                .map_err(|e| format!("untagged_older_than: {e}")),
            (None, Some(_)) => Err("tags applies to keep_latest only; untagged_older_than is about manifests without tags".into()),
            _ => Err("a rule is either { tags = \"v*\", keep_latest = 10 } or { untagged_older_than = \"7d\" }".into()),
        }
    }
}

/// Validate every rule of `rules`, naming the first bad one by `key[i]`.
pub fn validate_rules(key: &str, rules: &[RetentionRule]) -> Result<Vec<Rule>, ConfigError> {
    rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            r.rule()
                .map_err(|e| ConfigError::invalid(&format!("{key}[{i}]"), e))
        })
        .collect()
}

/// Whether `glob` matches all of `text` (`*`: any run, `?`: one character).
pub fn glob_match(glob: &str, text: &str) -> bool {
    let (g, t): (Vec<char>, Vec<char>) = (glob.chars().collect(), text.chars().collect());
    let (mut gi, mut ti) = (0, 0);
    // Where the last `*` was, and the text position it was tried against.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match g.get(gi) {
            Some('*') => {
                star = Some((gi, ti));
                gi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                gi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sg, st)) => {
                    gi = sg + 1;
                    ti = st + 1;
                    star = Some((sg, st + 1));
                }
                None => return false,
            },
        }
    }
    g[gi..].iter().all(|&c| c == '*')
}

/// `[retention]`: when rules run by themselves.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetention {
    interval: Option<String>,
    gc: Option<bool>,
}

/// Validated `[retention]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionSchedule {
    /// Every project's rules run this often; `None` (default): on demand only.
    pub interval: Option<Duration>,
    /// Run GC after a run that deleted something (default true).
    pub gc: bool,
}

impl RawRetention {
    pub(super) fn validate(self) -> Result<RetentionSchedule, ConfigError> {
        let interval = match self.interval.as_deref() {
            None | Some("off") | Some("never") => None,
            Some(v) => Some(duration("retention.interval", v)?).filter(|d| !d.is_zero()),
        };
        Ok(RetentionSchedule {
            interval,
            gc: self.gc.unwrap_or(true),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        for (g, t) in [
            ("v*", "v1.2"),
            ("*", ""),
            ("*", "x"),
            ("v1.*", "v1."),
            ("?", "a"),
            ("a*b*c", "aXbYc"),
            ("*-rc?", "1.0-rc1"),
            ("main", "main"),
        ] {
            assert!(glob_match(g, t), "{g} ~ {t}");
        }
        for (g, t) in [
            ("v*", "x1"),
            ("v1.*", "v10"),
            ("?", ""),
            ("a*b", "ac"),
            ("main", "main2"),
            ("*-rc?", "1.0-rc"),
        ] {
            assert!(!glob_match(g, t), "{g} !~ {t}");
        }
    }

    #[test]
    fn rules_are_one_thing_each() {
        let keep = RetentionRule {
            tags: Some("v*".into()),
            keep_latest: Some(3),
            untagged_older_than: None,
        };
        assert_eq!(
            keep.rule().unwrap(),
            Rule::KeepLatest {
                tags: "v*".into(),
                count: 3
            }
        );
        let old = RetentionRule {
            tags: None,
            keep_latest: None,
            untagged_older_than: Some("7d".into()),
        };
        assert_eq!(
            old.rule().unwrap(),
            Rule::UntaggedOlderThan(Duration::from_secs(7 * 86400))
        );
        let both = RetentionRule {
            keep_latest: Some(1),
            ..old.clone()
        };
        assert!(both.rule().unwrap_err().contains("either"));
        let none = RetentionRule {
            tags: Some("v*".into()),
            keep_latest: None,
            untagged_older_than: None,
        };
        assert!(none.rule().is_err());
        let bad = RetentionRule {
            untagged_older_than: Some("soon".into()),
            ..old
        };
        assert!(bad.rule().unwrap_err().contains("untagged_older_than"));
        let e = validate_rules("projects[0].retention", &[keep, bad])
            .unwrap_err()
            .to_string();
        assert!(e.contains("projects[0].retention[1]"), "{e}");
    }
}
