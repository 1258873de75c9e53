//! The only place that turns names and digests into storage keys.
//!
//! ```text
//! blobs/<alg>/<hex[0..2]>/<hex>               content, shared by all repositories
//! uploads/<uuid>/{data,meta.json}             upload sessions
//! uploads/<uuid>/tail.<offset>                 object storage: bytes after the last part
//! tmp/<uuid>                                   object storage: blobs being written
//! repos/<name>/_layers/<alg>/<hex>            blob linked into the repository
//! repos/<name>/_manifests/<alg>/<hex>         manifest revision; content: its media type
//! repos/<name>/_manifests/<alg>/<hex>.pulled  marker; its mtime is the last pull
//! repos/<name>/_tags/<tag>                    content: the tagged digest
//! repos/<name>/_referrers/<alg>/<hex>/<alg>-<hex>   subject -> referrer
//! repos/<name>/_pinned/<alg>/<hex>            cached manifest pinned (never evicted)
//! auth/{robots.json,projects.json,token.key}  accounts and projects made at run time
//! auth/robots-used.json                       robot name -> last use (unix seconds)
//! state/{last-gc,last-eviction}.json          the last GC and eviction runs
//! auth/pull-tokens.json                       one-time pull tokens and their spent uses
//! audit/<day>/<id>.json                       audit entries; <day> and <id> sort newest first
//! index/catalog.json                          repository names saved at a clean stop (see catalog.rs)
//! leases/{gc,evict,retention}                 shared stores: who runs a GC, an eviction, a retention sweep (see lease.rs)
//! leases/fetch/<alg>/<hex>                    shared stores: who fetches a blob from upstream
//! leases/notify/<endpoint>                     shared stores: who delivers an endpoint's events
//! scans/<alg>/<hex>/{state,report}.json       vulnerability scan of a manifest: status + summary, full report
//! ```
//!
//! On the filesystem a key is a path under the data directory, which also
//! holds `wharf.lock` and `tmp/` (files being written, removed at start-up);
//! [`FS_LOCK`] and [`FS_TMP`] name them.
//!
//! Repository names, tags, digests and upload ids arrive here already
//! validated (see `oci`), and their grammars admit no `..`, no separators
//! other than `/` between name components, and no leading `_`, so a
//! repository directory can never collide with the `_*` metadata folders.

use std::borrow::Cow;

use crate::oci::{Digest, RepoName, Tag};

/// The lock file that keeps a second wharf off a data directory.
pub const FS_LOCK: &str = "wharf.lock";
/// Where files are written before they are renamed into place.
pub const FS_TMP: &str = "tmp";

/// Top-level directories every backend creates.
pub const TOP_DIRS: [&str; 6] = ["blobs/", "uploads/", "repos/", "auth/", "audit/", "events/"];

/// Keys of documents that are not per repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Doc {
    Robots,
    Projects,
    TokenKey,
    RobotUse,
    LastGc,
    LastEviction,
    /// The pull tokens of versions before one object per token (read once,
    /// split into [`Doc::PullToken`]s, then deleted).
    PullTokens,
    /// One pull token's record.
    PullToken(RecordId),
    /// The end of one pull token's pull window, as extended by blob
    /// requests (see `auth::pull_tokens`).
    PullTokenWindow(RecordId),
}

/// The id of a record kept as its own document: 16 lowercase hex digits
/// (a pull token's id). Validated on parsing, so it is safe in a key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordId([u8; 16]);

impl RecordId {
    pub fn parse(s: &str) -> Option<RecordId> {
        let b: [u8; 16] = s.as_bytes().try_into().ok()?;
        b.iter()
            .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
            .then_some(RecordId(b))
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits ever get in (see `parse`).
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Display for RecordId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for RecordId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RecordId({})", self.as_str())
    }
}

/// The directory of the pull tokens' records and windows.
pub const PULL_TOKENS: &str = "auth/pull-tokens/";

pub fn doc(d: Doc) -> Cow<'static, str> {
    Cow::Borrowed(match d {
        Doc::Robots => "auth/robots.json",
        Doc::Projects => "auth/projects.json",
        Doc::TokenKey => "auth/token.key",
        Doc::RobotUse => "auth/robots-used.json",
        Doc::LastGc => "state/last-gc.json",
        Doc::LastEviction => "state/last-eviction.json",
        Doc::PullTokens => "auth/pull-tokens.json",
        Doc::PullToken(id) => return Cow::Owned(format!("{PULL_TOKENS}{id}.json")),
        Doc::PullTokenWindow(id) => return Cow::Owned(format!("{PULL_TOKENS}{id}.window")),
    })
}

/// A name listed under [`PULL_TOKENS`]: the token's id and whether it is
/// its window (else its record); `None` for anything else.
pub fn pull_token_listed(name: &str) -> Option<(RecordId, bool)> {
    let (id, ext) = name.split_once('.')?;
    let window = match ext {
        "json" => false,
        "window" => true,
        _ => return None,
    };
    Some((RecordId::parse(id)?, window))
}

/// Queued notification events: one sub-directory per endpoint.
pub const EVENTS: &str = "events/";

/// The queue directory of notification endpoint `endpoint` (a validated
/// config name: lowercase letters, digits, `-`, `_`).
pub fn events_dir(endpoint: &str) -> String {
    format!("{EVENTS}{endpoint}/")
}

/// A batch id: `<time>.<random>.<count>`, zero-padded so that a bytewise
/// listing is oldest first; `count` is how many events the batch holds.
pub fn event_batch_id(unix_nanos: u128, random: u32, count: usize) -> String {
    format!(
        "{:020}.{random:08x}.{count}",
        unix_nanos.min(u64::MAX as u128)
    )
}

/// How many events batch `id` holds.
pub fn event_batch_count(id: &str) -> Option<usize> {
    id.rsplit('.').next()?.parse().ok()
}

pub fn event_batch(endpoint: &str, id: &str) -> String {
    format!("{}{id}.json", events_dir(endpoint))
}

/// The batch id of a listed name (`None` for anything else).
pub fn event_listed_id(name: &str) -> Option<&str> {
    name.strip_suffix(".json")
        .filter(|id| event_batch_count(id).is_some())
}

/// The audit log's top directory: one sub-directory per day.
pub const AUDIT: &str = "audit/";

/// An audit entry id (`<day>.<time>.<random>`, every part inverted and
/// zero-padded so that a bytewise listing is newest first). Ids come from
/// [`audit_id`] only.
pub fn audit_id(unix_nanos: u128, random: u32) -> String {
    let day = u32::MAX - (unix_nanos / 86_400_000_000_000) as u32;
    let nanos = u64::MAX - (unix_nanos.min(u64::MAX as u128) as u64);
    format!("{day:010}.{nanos:020}.{random:08x}")
}

/// The day directory of an audit id (`None` for a string that is not one).
pub fn audit_day(id: &str) -> Option<String> {
    let valid = id.len() == 40
        && id.bytes().enumerate().all(|(i, b)| {
            if i == 10 || i == 31 {
                b == b'.'
            } else {
                b.is_ascii_hexdigit()
            }
        });
    valid.then(|| format!("{AUDIT}{}/", &id[..10]))
}

/// `audit/<day>/<id>.json`
pub fn audit_entry(id: &str) -> Option<String> {
    Some(format!("{}{id}.json", audit_day(id)?))
}

/// The id of an entry named `<id>.json` in a day directory.
pub fn audit_listed_id(name: &str) -> Option<&str> {
    name.strip_suffix(".json")
        .filter(|id| audit_day(id).is_some())
}

/// The day (days since the epoch) of a day directory name `<day>/`.
pub fn audit_dir_day(name: &str) -> Option<u32> {
    let inverted: u32 = name.strip_suffix('/')?.parse().ok()?;
    Some(u32::MAX - inverted)
}

fn digest_key(dir: &str, d: &Digest) -> String {
    format!("{dir}{}/{}", d.algorithm().as_str(), d.hex())
}

/// `blobs/<alg>/<xx>/<hex>`
pub fn blob(d: &Digest) -> String {
    let hex = d.hex();
    format!("blobs/{}/{}/{hex}", d.algorithm().as_str(), &hex[..2])
}

pub const BLOBS: &str = "blobs/";

/// The digest a `blobs/<alg>/<xx>/<hex>` key names.
pub fn blob_digest(alg_dir: &str, name: &str) -> Option<Digest> {
    format!("{}:{name}", alg_dir.trim_end_matches('/'))
        .parse()
        .ok()
}

pub const UPLOADS: &str = "uploads/";

/// Objects being written (object storage): removed unless committed.
pub const TEMP: &str = "tmp/";

/// `tmp/<id>` (`id` a fresh UUID).
pub fn temp_object(id: &str) -> String {
    format!("tmp/{id}")
}

/// `uploads/<id>/tail.<offset>`: an upload session's bytes from `offset`
/// (the end of its last multipart part) to its durable offset (object
/// storage: less than a part).
pub fn upload_tail(id: &str, offset: u64) -> String {
    format!("uploads/{id}/tail.{offset}")
}

/// `uploads/<id>/` (`id` is a validated UUID).
pub fn upload_dir(id: &str) -> String {
    format!("uploads/{id}/")
}

pub fn upload_data(id: &str) -> String {
    format!("uploads/{id}/data")
}

pub fn upload_meta(id: &str) -> String {
    format!("uploads/{id}/meta.json")
}

pub const REPOS: &str = "repos/";

/// `repos/<name>/`
pub fn repo_dir(name: &RepoName) -> String {
    repo_dir_prefix(name.as_str())
}

/// `repos/<prefix>/` for the leading components of a repository name.
pub fn repo_dir_prefix(prefix: &str) -> String {
    format!("repos/{prefix}/")
}

/// The repository names saved at a clean stop, outside `repos/` so that
/// writing it changes no directory it vouches for.
pub const CATALOG_INDEX: &str = "index/catalog.json";

/// The subdirectories whose presence makes a directory a repository.
pub const REPO_MARKERS: [&str; 3] = ["_manifests/", "_layers/", "_tags/"];

pub fn layers_dir(name: &RepoName, alg: &str) -> String {
    format!("repos/{name}/_layers/{alg}/")
}

pub fn layer_link(name: &RepoName, d: &Digest) -> String {
    digest_key(&format!("repos/{name}/_layers/"), d)
}

pub fn manifests_dir(name: &RepoName, alg: &str) -> String {
    format!("repos/{name}/_manifests/{alg}/")
}

pub fn manifest_link(name: &RepoName, d: &Digest) -> String {
    digest_key(&format!("repos/{name}/_manifests/"), d)
}

/// The marker whose modification time is the manifest's last pull.
pub fn pull_marker(name: &RepoName, d: &Digest) -> String {
    format!("{}.pulled", manifest_link(name, d))
}

pub fn tags_dir(name: &RepoName) -> String {
    format!("repos/{name}/_tags/")
}

pub fn tag(name: &RepoName, tag: &Tag) -> String {
    format!("repos/{name}/_tags/{tag}")
}

pub fn referrers_dir(name: &RepoName, subject: &Digest) -> String {
    format!(
        "{}/",
        digest_key(&format!("repos/{name}/_referrers/"), subject)
    )
}

pub fn referrer_link(name: &RepoName, subject: &Digest, referrer: &Digest) -> String {
    format!(
        "{}{}-{}",
        referrers_dir(name, subject),
        referrer.algorithm().as_str(),
        referrer.hex()
    )
}

/// The digest a referrer link's name (`<alg>-<hex>`) names.
pub fn referrer_digest(name: &str) -> Option<Digest> {
    name.replacen('-', ":", 1).parse().ok()
}

pub fn pins_dir(name: &RepoName, alg: &str) -> String {
    format!("repos/{name}/_pinned/{alg}/")
}

pub fn pin(name: &RepoName, d: &Digest) -> String {
    digest_key(&format!("repos/{name}/_pinned/"), d)
}

/// The digest named by an entry of a `<dir>/<alg>/` listing; markers such
/// as `<hex>.pulled` are not digests.
pub fn listed_digest(alg: &str, name: &str) -> Option<Digest> {
    if name.contains('.') || name.ends_with('/') {
        return None;
    }
    format!("{alg}:{name}").parse().ok()
}

/// `leases/<name>` (`name` a fixed word: `gc`, `evict`, `retention`).
pub fn lease(name: &str) -> String {
    format!("leases/{name}")
}

/// `leases/fetch/<alg>/<hex>`: who fetches blob `d` from its remote.
pub fn fetch_lease(d: &Digest) -> String {
    digest_key("leases/fetch/", d)
}

/// `leases/doc/<document key>`: who is changing shared document `d`
/// (a read-modify-write, see [`super::meta`]).
pub fn doc_lease(d: Doc) -> String {
    format!("leases/doc/{}", doc(d))
}

/// `gc/refs/<alg>/<hex>`: written by a manifest `PUT` for every blob it
/// references, before it checks them (see [`super::gc`]).
pub fn gc_ref_mark(d: &Digest) -> String {
    digest_key("gc/refs/", d)
}

/// Directory of the reference marks of algorithm `alg`.
pub fn gc_ref_marks_dir(alg: &str) -> String {
    format!("gc/refs/{alg}/")
}

/// Present while a GC sweep batch deletes blobs (see [`super::gc`]).
pub const GC_SWEEP_BATCH: &str = "gc/sweep.json";

/// `leases/notify/<endpoint>` (a validated endpoint name): who delivers
/// that endpoint's queued events.
pub fn notify_lease(endpoint: &str) -> String {
    format!("leases/notify/{endpoint}")
}

/// The documents of a manifest's vulnerability scan (per digest: the same
/// bytes have the same findings in every repository).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanDoc {
    /// Status, reason, scanner and severity counts (small: read per listing row).
    State,
    /// The scanner's whole report.
    Report,
}

/// `scans/<alg>/<hex>/state.json` or `.../report.json`
pub fn scan_doc(d: &Digest, doc: ScanDoc) -> String {
    let name = match doc {
        ScanDoc::State => "state.json",
        ScanDoc::Report => "report.json",
    };
    format!("{}/{name}", digest_key("scans/", d))
}

/// The digest algorithms, as directory names.
pub const ALGORITHMS: [&str; 2] = ["sha256", "sha512"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        let d = Digest::sha256_of(b"x");
        let n: RepoName = "a/b/c".parse().unwrap();
        assert!(blob(&d).starts_with("blobs/sha256/"));
        assert_eq!(
            layer_link(&n, &d),
            format!("repos/a/b/c/_layers/sha256/{}", d.hex())
        );
        let t: Tag = "v1".parse().unwrap();
        assert_eq!(tag(&n, &t), "repos/a/b/c/_tags/v1");
        assert_eq!(
            referrer_digest(referrer_link(&n, &d, &d).rsplit('/').next().unwrap()),
            Some(d.clone())
        );
        assert_eq!(listed_digest("sha256", d.hex()), Some(d.clone()));
        assert_eq!(
            listed_digest("sha256", &format!("{}.pulled", d.hex())),
            None
        );
        assert_eq!(fetch_lease(&d), format!("leases/fetch/sha256/{}", d.hex()));
        assert_eq!(
            scan_doc(&d, ScanDoc::Report),
            format!("scans/sha256/{}/report.json", d.hex())
        );
        assert_eq!(blob_digest("sha256/", d.hex()), Some(d));
    }

    #[test]
    fn pull_token_keys_take_only_hex_ids() {
        let id = RecordId::parse("0123456789abcdef").unwrap();
        assert_eq!(
            doc(Doc::PullToken(id)),
            "auth/pull-tokens/0123456789abcdef.json"
        );
        assert_eq!(
            doc_lease(Doc::PullToken(id)),
            "leases/doc/auth/pull-tokens/0123456789abcdef.json"
        );
        assert_eq!(
            pull_token_listed("0123456789abcdef.json"),
            Some((id, false))
        );
        assert_eq!(
            pull_token_listed("0123456789abcdef.window"),
            Some((id, true))
        );
        for bad in [
            "../../robots.js",
            "0123456789ABCDEF",
            "0123456789abcde",
            "0123456789abcdefa",
            "0123456789abcde/",
        ] {
            assert_eq!(RecordId::parse(bad), None, "{bad}");
        }
        assert_eq!(pull_token_listed("0123456789abcdef.tmp"), None);
        assert_eq!(pull_token_listed("x.json"), None);
    }
}
