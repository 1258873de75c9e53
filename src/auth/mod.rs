//! Client authentication and authorization.
//!
//! Owns: who a request is (anonymous, an admin, a robot; via Basic
//! credentials or a JWT from wharf's token service), what each may do per
//! project (`pull`, `push` ⇒ `pull`, `delete`), robot accounts, and the
//! scopes granted in tokens. It decides; the API edge turns a refusal into
//! 401 (who are you?) or 403 (you may not).
//!
//! With no admin and no robot configured, auth is off: everyone may do
//! everything, as with a Distribution registry without auth.

pub mod guard;
pub mod password;
pub mod pull_tokens;
pub mod robots;
pub mod scanner;
pub mod session;
pub mod token;
mod used;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine;
use http::HeaderMap;

use crate::config::{AuthConfig, Limits, Perms};
use crate::store::{Doc, Store, StoreError, META_WAIT};
use robots::{unix_now, Robot};
pub use token::Access;
use token::TokenKeys;

/// Robot usernames are `robot$<name>`.
pub const ROBOT_PREFIX: &str = "robot$";

/// The token scope that lets a token use the management API.
pub const MANAGEMENT_SCOPE: &str = "registry:management:*";

/// Whether a token's access includes the management scope.
pub fn grants_management(access: &[Access]) -> bool {
    access
        .iter()
        .any(|a| a.kind == "registry" && a.name == "management")
}

/// What a request wants to do to a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pull,
    Push,
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }

    fn granted_by(self, p: &Perms) -> bool {
        match self {
            Action::Pull => p.pull || p.push,
            Action::Push => p.push,
            Action::Delete => p.delete,
        }
    }
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Anonymous,
    Admin(String),
    Robot(String),
    /// A one-time pull token (its id): pulls one image only.
    PullToken(String),
    /// A vulnerability scanner (its name) with a token that pulls one
    /// repository (see [`scanner`]).
    Scanner(String),
}

impl Subject {
    pub fn username(&self) -> String {
        match self {
            Subject::Anonymous => String::new(),
            Subject::Admin(u) => u.clone(),
            Subject::Robot(n) => format!("{ROBOT_PREFIX}{n}"),
            Subject::PullToken(id) => format!("{}{id}", pull_tokens::PULL_PREFIX),
            Subject::Scanner(n) => format!("{}{n}", scanner::SCANNER_PREFIX),
        }
    }
}

/// An authenticated request: the subject and, when it came with a token,
/// exactly the access that token grants.
#[derive(Debug, Clone)]
pub struct Identity {
    pub subject: Subject,
    pub token_access: Option<Vec<Access>>,
}

impl Identity {
    pub fn anonymous() -> Identity {
        Identity {
            subject: Subject::Anonymous,
            token_access: None,
        }
    }

    pub fn is_anonymous(&self) -> bool {
        self.subject == Subject::Anonymous
    }
}

/// The credentials an `Authorization` header presents. No `Debug`: it
/// holds a password.
pub enum Presented<'a> {
    Basic { user: String, pass: String },
    Bearer(&'a str),
}

/// Parse an `Authorization` header value: `Basic <base64 user:pass>` or
/// `Bearer <token>` (scheme case-insensitive).
pub fn parse_authorization(v: &str) -> Result<Presented<'_>, AuthError> {
    let (scheme, rest) = v.trim().split_once(' ').ok_or(AuthError::Malformed)?;
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .map_err(|_| AuthError::Malformed)?;
            let raw = String::from_utf8(raw).map_err(|_| AuthError::Malformed)?;
            let (user, pass) = raw.split_once(':').ok_or(AuthError::Malformed)?;
            Ok(Presented::Basic {
                user: user.to_string(),
                pass: pass.to_string(),
            })
        }
        "bearer" => Ok(Presented::Bearer(rest.trim())),
        _ => Err(AuthError::Malformed),
    }
}

/// A requested token scope, `<type>:<name>:<actions>` (Docker token spec).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope<'a> {
    pub kind: &'a str,
    pub name: &'a str,
    /// The comma-separated actions, as asked.
    pub actions: &'a str,
}

impl<'a> Scope<'a> {
    /// Split a scope at its first two `:`; `None` with fewer than three parts.
    pub fn parse(s: &'a str) -> Option<Scope<'a>> {
        let mut parts = s.splitn(3, ':');
        Some(Scope {
            kind: parts.next()?,
            name: parts.next()?,
            actions: parts.next()?,
        })
    }

    /// The repository actions asked for, in order, `*` expanded; unknown
    /// actions are skipped.
    pub fn wanted(&self) -> impl Iterator<Item = Action> + 'a {
        self.actions.split(',').flat_map(|a| {
            let want: &'static [Action] = match a {
                "pull" => &[Action::Pull],
                "push" => &[Action::Push],
                "delete" => &[Action::Delete],
                "*" => &[Action::Pull, Action::Push, Action::Delete],
                _ => &[],
            };
            want.iter().copied()
        })
    }
}

/// Authentication failures (all become 401).
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    #[error("invalid username or password")]
    BadCredentials,
    #[error("invalid or expired token")]
    BadToken,
    #[error("malformed Authorization header")]
    Malformed,
    #[error("too many failed logins for this account or from this address; retry in {} s", .0.as_secs())]
    Throttled(Duration),
    #[error("wharf is busy checking other logins; retry in a moment")]
    Busy,
    /// Pull-token credentials that no longer pull anything (expired,
    /// revoked).
    #[error("{0}")]
    PullTokenSpent(String),
}

impl From<guard::Refusal> for AuthError {
    fn from(r: guard::Refusal) -> AuthError {
        match r {
            guard::Refusal::Throttled(d) => AuthError::Throttled(d),
            guard::Refusal::Busy => AuthError::Busy,
            guard::Refusal::KnownBad => AuthError::BadCredentials,
        }
    }
}

/// Robot-management failures.
#[derive(Debug, thiserror::Error)]
pub enum RobotError {
    #[error("{0}")]
    Invalid(String),
    #[error("robot {0} already exists")]
    Exists(String),
    #[error("robot {0} not found")]
    NotFound(String),
    #[error("robot {0} is defined in the config file; remove it there")]
    FromConfig(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Which projects allow anonymous pull (answered by the registry layer,
/// which owns projects).
pub trait PublicProjects: Send + Sync {
    fn is_public(&self, project: &str) -> bool;
}

pub struct Authorizer {
    cfg: AuthConfig,
    keys: Arc<TokenKeys>,
    robots: RwLock<Vec<Robot>>,
    /// Versions of the robots document read here, in the order they were
    /// read (reads and changes take turns, see `store::meta`): the last
    /// issued, and the one installed in `robots` (never an older one).
    robots_seq: (AtomicU64, AtomicU64),
    store: Store,
    public: Arc<dyn PublicProjects>,
    /// keyed hash of user and password → subject, so argon2 runs once a
    /// minute per credential rather than per request.
    verified: moka::sync::Cache<[u8; 32], Subject>,
    /// Bounded, throttled password checks.
    guard: guard::Guard,
    /// Dashboard sessions (stateless signed cookies).
    sessions: session::Sessions,
    /// Robot name → when it was last authenticated (saved in the store).
    last_used: used::RobotUse,
    /// One-time pull tokens (persisted through the store).
    pull_tokens: pull_tokens::PullTokens,
}

fn read_lock<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write_lock<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

impl Authorizer {
    /// Build from the config; robots created through the API and the token
    /// signing key live in the store.
    pub async fn new(
        cfg: &AuthConfig,
        limits: &Limits,
        store: Store,
        public: Arc<dyn PublicProjects>,
    ) -> Result<Authorizer, StoreError> {
        let key = store
            .meta()
            .get_or_create(Doc::TokenKey, token::new_key())
            .await?;
        let keys = TokenKeys::from_secret(&key).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let robots: Vec<Robot> = cfg
            .robots
            .iter()
            .map(|r| Robot {
                name: r.name.clone(),
                token_hash: r.token_hash.expose().to_string(),
                permissions: r.permissions.clone(),
                created_at: 0,
                expires_at: None,
                revoked: false,
                from_config: true,
                id: String::new(),
            })
            .collect();
        let robots = robots::merge(robots, robots::load(&store).await?);
        let last_used = used::RobotUse::load(store.clone()).await?;
        Ok(Authorizer {
            cfg: cfg.clone(),
            keys: Arc::new(keys),
            robots: RwLock::new(robots),
            robots_seq: (AtomicU64::new(0), AtomicU64::new(0)),
            public,
            verified: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
            guard: guard::Guard::new(limits),
            sessions: session::Sessions::new(&key, cfg.session_ttl, cfg.max_sessions),
            last_used,
            pull_tokens: pull_tokens::PullTokens::open(store.clone(), cfg.pull_token_window)
                .await?,
            store,
        })
    }

    /// Whether any account exists (otherwise wharf is open).
    pub fn enabled(&self) -> bool {
        !self.cfg.admins.is_empty() || !read_lock(&self.robots).is_empty()
    }

    pub fn config(&self) -> &AuthConfig {
        &self.cfg
    }

    /// Identify the sender of `headers` (coming from `addr`).
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        addr: Option<IpAddr>,
    ) -> Result<Identity, AuthError> {
        let Some(v) = headers.get(http::header::AUTHORIZATION) else {
            return Ok(Identity::anonymous());
        };
        let v = v.to_str().map_err(|_| AuthError::Malformed)?;
        match parse_authorization(v)? {
            Presented::Basic { user, pass } => {
                let subject = self.check_basic(&user, &pass, addr).await?;
                Ok(Identity {
                    subject,
                    token_access: None,
                })
            }
            Presented::Bearer(token) => {
                let c = self.keys.verify(token).ok_or(AuthError::BadToken)?;
                // A robot deleted and created again under the same name is a
                // new account: tokens issued to the old one do not count.
                let reborn = c.sub.strip_prefix(ROBOT_PREFIX).is_some_and(|name| {
                    read_lock(&self.robots)
                        .iter()
                        .any(|r| r.name == name && r.id != c.rid)
                });
                let subject = self
                    .subject_of(&c.sub)
                    .filter(|_| !reborn)
                    .ok_or(AuthError::BadToken)?;
                Ok(Identity {
                    subject,
                    token_access: Some(c.access),
                })
            }
        }
    }

    /// Dashboard session signing and CSRF tokens.
    pub fn sessions(&self) -> &session::Sessions {
        &self.sessions
    }

    /// The identity of a dashboard session cookie, if the cookie is valid
    /// and its subject still exists and is active.
    pub fn session_identity(&self, cookie: &str) -> Option<(Identity, session::Session)> {
        let s = self.sessions.check(cookie)?;
        let subject = self.subject_of(&s.sub).filter(|s| {
            !matches!(
                s,
                Subject::Anonymous | Subject::PullToken(_) | Subject::Scanner(_)
            )
        })?;
        Some((
            Identity {
                subject,
                token_access: None,
            },
            s,
        ))
    }

    /// The subject a token's `sub` names, if it still exists and is active.
    fn subject_of(&self, sub: &str) -> Option<Subject> {
        if sub.is_empty() {
            return Some(Subject::Anonymous);
        }
        if let Some(id) = sub.strip_prefix(pull_tokens::PULL_PREFIX) {
            // Not looked up here: another replica may have issued it just
            // now. Every request of a pull token is admitted by
            // `Registry::admit_pull_token`, which reads its record (and so
            // refuses a revoked or unknown one).
            return crate::store::RecordId::parse(id).map(|_| Subject::PullToken(id.to_string()));
        }
        if let Some(name) = sub.strip_prefix(scanner::SCANNER_PREFIX) {
            return Some(Subject::Scanner(name.to_string()));
        }
        if let Some(name) = sub.strip_prefix(ROBOT_PREFIX) {
            let active = read_lock(&self.robots)
                .iter()
                .any(|r| r.name == name && r.active());
            if active {
                self.last_used.touch(name);
            }
            return active.then(|| Subject::Robot(name.to_string()));
        }
        self.cfg
            .admins
            .iter()
            .any(|a| a.username == sub)
            .then(|| Subject::Admin(sub.to_string()))
    }

    /// Check a username and password (or robot token) sent from `addr`,
    /// under the login defences of [`guard`].
    pub async fn check_basic(
        &self,
        user: &str,
        pass: &str,
        addr: Option<IpAddr>,
    ) -> Result<Subject, AuthError> {
        let key = self.guard.credential_key(user, pass);
        if let Some(known) = self.recently_verified(&key) {
            return known;
        }
        // Concurrent requests with these credentials wait for one check.
        let _turn = self.guard.turn(&key).await.map_err(AuthError::from)?;
        if let Some(known) = self.recently_verified(&key) {
            return known;
        }
        self.guard
            .precheck(&key, user, addr)
            .map_err(AuthError::from)?;
        if let Some(id) = user.strip_prefix(pull_tokens::PULL_PREFIX) {
            return self.check_pull_token(&key, user, id, pass, addr).await;
        }
        let hash = if let Some(name) = user.strip_prefix(ROBOT_PREFIX) {
            read_lock(&self.robots)
                .iter()
                .find(|r| r.name == name && r.active())
                .map(|r| (r.token_hash.clone(), Subject::Robot(name.to_string())))
        } else {
            self.cfg
                .admins
                .iter()
                .find(|a| a.username == user)
                .map(|a| {
                    (
                        a.password_hash.expose().to_string(),
                        Subject::Admin(user.to_string()),
                    )
                })
        };
        // Unknown users still cost a hash, so timing does not reveal names.
        let (phc, subject) = hash.unwrap_or_else(|| (DUMMY_HASH.to_string(), Subject::Anonymous));
        let slot = self.guard.slot().await.map_err(AuthError::from)?;
        // Failures recorded while this one queued may throttle it now.
        self.guard
            .precheck(&key, user, addr)
            .map_err(AuthError::from)?;
        let ok = self.guard.verify(pass.to_string(), phc).await;
        drop(slot);
        if !ok || subject == Subject::Anonymous {
            self.guard.record_failure(&key, user, addr);
            return Err(AuthError::BadCredentials);
        }
        if let Subject::Robot(name) = &subject {
            self.last_used.touch(name);
        }
        self.verified.insert(key, subject.clone());
        Ok(subject)
    }

    /// The outcome for credentials verified within the last minute, if
    /// they were (their subject still active: revocation counts at once).
    fn recently_verified(&self, key: &[u8; 32]) -> Option<Result<Subject, AuthError>> {
        let s = self.verified.get(key)?;
        if self.subject_of(&s.username()).is_some() {
            return Some(Ok(s));
        }
        self.verified.invalidate(key);
        Some(Err(AuthError::BadCredentials))
    }

    /// Pull-token credentials: a fast hash (the secret is random), failures
    /// counted like passwords'. Expired tokens are refused with the reason.
    async fn check_pull_token(
        &self,
        key: &[u8; 32],
        user: &str,
        id: &str,
        pass: &str,
        addr: Option<IpAddr>,
    ) -> Result<Subject, AuthError> {
        let found = self
            .pull_tokens
            .get(id)
            .await
            .map_err(|_| AuthError::Busy)?;
        // A revoked token reads the same on every replica, whether its
        // cache still held it or not. Ids are random: that one does not
        // exist tells a guesser nothing, and the failure still counts.
        let Some(t) = found else {
            self.guard.record_failure(key, user, addr);
            return Err(AuthError::PullTokenSpent(format!(
                "pull token {user} is not known (revoked, or expired long ago); ask for a new one"
            )));
        };
        if !t.secret_matches(pass) {
            self.guard.record_failure(key, user, addr);
            return Err(AuthError::BadCredentials);
        }
        if unix_now() >= t.expires_at {
            let at = humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + Duration::from_secs(t.expires_at),
            );
            return Err(AuthError::PullTokenSpent(format!(
                "pull token {user} expired at {at}; ask for a new one"
            )));
        }
        Ok(Subject::PullToken(id.to_string()))
    }

    /// One-time pull tokens.
    pub fn pull_tokens(&self) -> &pull_tokens::PullTokens {
        &self.pull_tokens
    }

    /// Whether `subject` may issue pull tokens for project `project`.
    pub fn may_issue_tokens(&self, subject: &Subject, project: &str) -> bool {
        match subject {
            Subject::Admin(_) => true,
            Subject::Robot(name) => read_lock(&self.robots)
                .iter()
                .find(|r| &r.name == name && r.active())
                .and_then(|r| r.permissions.get(project))
                .is_some_and(|p| p.issue_tokens),
            _ => !self.enabled(),
        }
    }

    /// Whether `subject` may do `action` on repository `repo` (path name).
    /// `remote`: the name is a pull-through namespace.
    pub fn subject_allowed(
        &self,
        subject: &Subject,
        repo: &str,
        action: Action,
        remote: bool,
    ) -> bool {
        if !self.enabled() {
            return true;
        }
        if remote {
            // Remote namespaces mirror their remote: pull only.
            return action == Action::Pull
                && !matches!(subject, Subject::PullToken(_))
                && (self.cfg.remote_pull_anonymous || *subject != Subject::Anonymous);
        }
        let project = repo.split('/').next().unwrap_or("");
        // Public projects: everyone may pull.
        let public_pull = || action == Action::Pull && self.public.is_public(project);
        match subject {
            Subject::Admin(_) => true,
            Subject::Robot(name) => {
                read_lock(&self.robots)
                    .iter()
                    .find(|r| &r.name == name && r.active())
                    .and_then(|r| r.permissions.get(project))
                    .is_some_and(|p| action.granted_by(p))
                    || public_pull()
            }
            Subject::Anonymous => public_pull(),
            // Which manifests and blobs of the repository is the registry's
            // check (`Registry::admit_pull_token`).
            Subject::PullToken(id) => action == Action::Pull && self.pull_tokens.covers(id, repo),
            // Only its token's scope counts (see `allowed`).
            Subject::Scanner(_) => false,
        }
    }

    /// Whether the request may proceed: the subject's rights and, for a
    /// token, the token's scope.
    pub fn allowed(&self, id: &Identity, repo: &str, action: Action, remote: bool) -> bool {
        if !self.enabled() {
            return true;
        }
        if let Some(access) = &id.token_access {
            let covered = access.iter().any(|a| {
                a.kind == "repository"
                    && a.name == repo
                    && a.actions.iter().any(|x| {
                        x == action.as_str() || x == "*" || (action == Action::Pull && x == "push")
                    })
            });
            if !covered {
                return false;
            }
            if let Subject::Scanner(_) = id.subject {
                return action == Action::Pull;
            }
        }
        self.subject_allowed(&id.subject, repo, action, remote)
    }

    /// The subset of a requested scope (`repository:<name>:<actions>`) that
    /// `subject` is granted. `remote` tells whether `<name>` is a
    /// pull-through name.
    pub fn grant(
        &self,
        subject: &Subject,
        scope: &str,
        remote: impl Fn(&str) -> bool,
    ) -> Option<Access> {
        if let Subject::Scanner(_) = subject {
            // A scanner's token is all it gets.
            return None;
        }
        let asked = Scope::parse(scope)?;
        let (kind, name) = (asked.kind, asked.name);
        match kind {
            "repository" => {
                let r = remote(name);
                let mut granted: Vec<String> = Vec::new();
                for act in asked.wanted() {
                    if self.subject_allowed(subject, name, act, r)
                        && !granted.iter().any(|g| g == act.as_str())
                    {
                        granted.push(act.as_str().to_string());
                    }
                }
                Some(Access {
                    kind: kind.into(),
                    name: name.into(),
                    actions: granted,
                })
            }
            "registry"
                if matches!(name, "catalog" | "management") && *subject != Subject::Anonymous =>
            {
                Some(Access {
                    kind: kind.into(),
                    name: name.into(),
                    actions: vec!["*".into()],
                })
            }
            _ => None,
        }
    }

    /// Issuer of scanners' pull tokens.
    pub fn scan_credentials(&self) -> scanner::ScanCredentials {
        scanner::ScanCredentials {
            keys: self.keys.clone(),
        }
    }

    /// Sign a token for `subject` with `access`.
    pub fn issue_token(
        &self,
        subject: &Subject,
        access: Vec<Access>,
    ) -> Result<(String, Duration), token::TokenError> {
        let ttl = self.cfg.token_ttl;
        let rid = match subject {
            Subject::Robot(name) => read_lock(&self.robots)
                .iter()
                .find(|r| &r.name == name)
                .map(|r| r.id.clone())
                .unwrap_or_default(),
            _ => String::new(),
        };
        self.keys
            .issue(&subject.username(), &rid, access, ttl)
            .map(|t| (t, ttl))
    }

    /// When robot `name` was last authenticated (unix seconds; saved at
    /// most once a minute, so a restart may lose the newest minute).
    pub fn robot_last_used(&self, name: &str) -> Option<u64> {
        self.last_used.get(name)
    }

    /// Read the robots document again: robots created, revoked or deleted
    /// by other replicas sharing the store (config robots stay). Run every
    /// `storage.s3.refresh_interval`.
    pub async fn reload_robots(&self) -> Result<(), StoreError> {
        let (seq, doc) = self
            .store
            .meta()
            .read_in_turn(Doc::Robots, || self.next_robots_seq())
            .await?;
        let next = robots::merge(self.config_robots(), robots::decode(doc.as_deref())?);
        self.install_robots(next, seq);
        Ok(())
    }

    fn next_robots_seq(&self) -> u64 {
        self.robots_seq.0.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn config_robots(&self) -> Vec<Robot> {
        read_lock(&self.robots)
            .iter()
            .filter(|r| r.from_config)
            .cloned()
            .collect()
    }

    /// Make `next` (version `seq`) the robots of this replica, unless a
    /// newer version is installed already.
    fn install_robots(&self, next: Vec<Robot>, seq: u64) {
        let fingerprint = |all: &[Robot]| -> Vec<(String, String, bool)> {
            all.iter()
                .map(|r| (r.name.clone(), r.id.clone(), r.revoked))
                .collect()
        };
        let changed = {
            let mut all = write_lock(&self.robots);
            if self.robots_seq.1.load(Ordering::SeqCst) > seq {
                return;
            }
            self.robots_seq.1.store(seq, Ordering::SeqCst);
            let changed = fingerprint(&all) != fingerprint(&next);
            *all = next;
            changed
        };
        // Verified Basic credentials are cached by name: a deleted robot's
        // old token must not pass for a new robot of the same name, and a
        // robot new here was refused as unknown until now.
        if changed {
            self.verified.invalidate_all();
            self.guard.forget_known_bad();
        }
    }

    /// Change the robots: `f` edits the latest list (config robots and the
    /// robots document read under its lock and lease, see `store::meta`),
    /// which is saved and becomes this replica's at once.
    async fn change_robots<T>(
        &self,
        f: impl FnOnce(&mut Vec<Robot>) -> Result<T, RobotError>,
    ) -> Result<T, RobotError> {
        let config = self.config_robots();
        let (seq, all, out) = self
            .store
            .meta()
            .update(Doc::Robots, META_WAIT, |doc| {
                let mut all = robots::merge(config, robots::decode(doc.as_deref())?);
                let out = f(&mut all)?;
                let seq = self.next_robots_seq();
                Ok::<_, RobotError>((robots::encode(&all)?, (seq, all, out)))
            })
            .await?;
        self.install_robots(all, seq);
        Ok(out)
    }

    /// Robots, newest last.
    pub fn robots(&self) -> Vec<Robot> {
        read_lock(&self.robots).clone()
    }

    /// Create a robot; returns it and its token (shown once).
    pub async fn create_robot(
        &self,
        name: &str,
        permissions: BTreeMap<String, Perms>,
        expires_in: Option<Duration>,
    ) -> Result<(Robot, String), RobotError> {
        if !crate::config::valid_robot_name(name) {
            return Err(RobotError::Invalid(crate::config::ROBOT_NAME_RULE.into()));
        }
        let token = password::new_token();
        // Tens of milliseconds of argon2: on the blocking pool, not on a
        // runtime thread that serves other requests (and renews leases).
        let secret = token.clone();
        let hash = tokio::task::spawn_blocking(move || password::hash(&secret))
            .await
            .map_err(|e| RobotError::Invalid(format!("hashing failed: {e}")))?
            .map_err(|e| RobotError::Invalid(e.to_string()))?;
        let robot = Robot {
            name: name.to_string(),
            token_hash: hash,
            permissions,
            created_at: unix_now(),
            expires_at: expires_in.map(|d| unix_now().saturating_add(d.as_secs())),
            revoked: false,
            from_config: false,
            id: uuid::Uuid::new_v4().simple().to_string(),
        };
        self.change_robots(|all| {
            if all.iter().any(|r| r.name == name) {
                return Err(RobotError::Exists(name.into()));
            }
            all.push(robot.clone());
            Ok(())
        })
        .await?;
        Ok((robot, token))
    }

    /// Revoke a robot: its credentials and tokens stop working at once.
    pub async fn revoke_robot(&self, name: &str) -> Result<(), RobotError> {
        self.change_robots(|all| {
            let r = editable(all, name)?;
            all[r].revoked = true;
            Ok(())
        })
        .await
    }

    /// Remove a robot (revoking it at once), so its name can be reused.
    pub async fn delete_robot(&self, name: &str) -> Result<(), RobotError> {
        self.change_robots(|all| {
            let r = editable(all, name)?;
            all.remove(r);
            Ok(())
        })
        .await
    }
}

/// The index of robot `name`, if the API may change it.
fn editable(all: &[Robot], name: &str) -> Result<usize, RobotError> {
    let i = all
        .iter()
        .position(|r| r.name == name)
        .ok_or_else(|| RobotError::NotFound(name.into()))?;
    if all[i].from_config {
        return Err(RobotError::FromConfig(name.into()));
    }
    Ok(i)
}

/// A valid argon2 hash of a random string, verified against unknown users.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$3dDSk8Aiv8aFz7CkEMk2mxdH0dGVb+OTo8Pi3BD1K9k";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawConfig;

    /// `pub` is the one public project.
    struct Public;

    impl PublicProjects for Public {
        fn is_public(&self, p: &str) -> bool {
            p == "pub"
        }
    }

    async fn authz_in(dir: &std::path::Path) -> Authorizer {
        let admin = password::hash("adminpw").unwrap();
        let robot = password::hash("robotpw").unwrap();
        let toml = format!(
            r#"
[auth]
[[auth.admins]]
username = "admin"
password_hash = "{admin}"
[[auth.robots]]
name = "ci"
token_hash = "{robot}"
permissions = {{ a = ["push"], c = ["delete"] }}
"#
        );
        // A dropped authorizer's background save of a robot's last use may
        // still hold the store for a moment.
        let mut store = Store::open(dir);
        for _ in 0..100 {
            if !matches!(store, Err(StoreError::Locked(_))) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            store = Store::open(dir);
        }
        authz_on(store.unwrap(), &toml).await
    }

    async fn authz_on(store: Store, toml: &str) -> Authorizer {
        let cfg = RawConfig::parse(toml)
            .unwrap()
            .validate(&Default::default())
            .unwrap();
        Authorizer::new(&cfg.auth, &cfg.limits, store, Arc::new(Public))
            .await
            .unwrap()
    }

    async fn authz() -> (Authorizer, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        (authz_in(dir.path()).await, dir)
    }

    #[tokio::test]
    async fn permission_rules() {
        let (a, _d) = authz().await;
        assert!(a.enabled());
        let anon = Subject::Anonymous;
        let ci = a.check_basic("robot$ci", "robotpw", None).await.unwrap();
        let admin = a.check_basic("admin", "adminpw", None).await.unwrap();
        assert!(a.check_basic("robot$ci", "nope", None).await.is_err());
        assert!(a.check_basic("ghost", "adminpw", None).await.is_err());
        assert!(a.subject_allowed(&ci, "a/app", Action::Pull, false));
        assert!(a.subject_allowed(&ci, "a/app", Action::Push, false));
        assert!(!a.subject_allowed(&ci, "a/app", Action::Delete, false));
        assert!(!a.subject_allowed(&ci, "b/app", Action::Pull, false));
        assert!(a.subject_allowed(&ci, "c/app", Action::Delete, false));
        assert!(!a.subject_allowed(&ci, "c/app", Action::Pull, false));
        assert!(a.subject_allowed(&admin, "b/app", Action::Delete, false));
        assert!(a.subject_allowed(&anon, "pub/x", Action::Pull, false));
        assert!(!a.subject_allowed(&anon, "pub/x", Action::Push, false));
        assert!(!a.subject_allowed(&anon, "a/x", Action::Pull, false));
        assert!(a.subject_allowed(&anon, "docker.io/library/x", Action::Pull, true));
        assert!(!a.subject_allowed(&admin, "docker.io/library/x", Action::Push, true));
    }

    #[tokio::test]
    async fn tokens_carry_granted_subset() {
        let (a, _d) = authz().await;
        let ci = Subject::Robot("ci".into());
        let g = a
            .grant(&ci, "repository:a/app:pull,push,delete", |_| false)
            .unwrap();
        assert_eq!(g.actions, ["pull", "push"]);
        let g = a.grant(&ci, "repository:b/app:pull", |_| false).unwrap();
        assert!(g.actions.is_empty());
        let (t, _) = a
            .issue_token(
                &ci,
                vec![a.grant(&ci, "repository:a/app:pull", |_| false).unwrap()],
            )
            .unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            format!("Bearer {t}").parse().unwrap(),
        );
        let id = a.authenticate(&h, None).await.unwrap();
        assert!(a.allowed(&id, "a/app", Action::Pull, false));
        assert!(
            !a.allowed(&id, "a/app", Action::Push, false),
            "token did not grant push"
        );
        assert!(!a.allowed(&id, "a/other", Action::Pull, false));
    }

    #[tokio::test]
    async fn robots_lifecycle() {
        let (a, d) = authz().await;
        let mut perms = BTreeMap::new();
        perms.insert("a".to_string(), Perms::parse(&["pull".into()]).unwrap());
        let (_, tok) = a.create_robot("node-1", perms.clone(), None).await.unwrap();
        assert!(a.check_basic("robot$node-1", &tok, None).await.is_ok());
        assert!(matches!(
            a.create_robot("node-1", perms.clone(), None).await,
            Err(RobotError::Exists(_))
        ));
        assert!(matches!(
            a.create_robot("Bad Name", perms, None).await,
            Err(RobotError::Invalid(_))
        ));
        a.revoke_robot("node-1").await.unwrap();
        assert!(a.check_basic("robot$node-1", &tok, None).await.is_err());
        assert!(matches!(
            a.revoke_robot("ci").await,
            Err(RobotError::FromConfig(_))
        ));
        // Persisted: a new authorizer on the same store sees the revoked robot.
        drop(a);
        let b = authz_in(d.path()).await;
        assert!(b.robots().iter().any(|r| r.name == "node-1" && r.revoked));
    }

    #[tokio::test]
    async fn a_bearer_token_of_a_pull_token_issued_on_another_replica_is_accepted_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (sa, sb) = crate::store::test_replicas(dir.path());
        let a = authz_on(sa, "[auth]\n").await;
        let b = authz_on(sb, "[auth]\n").await;
        let template = pull_tokens::PullToken {
            id: String::new(),
            secret_sha256: String::new(),
            repository: "ci/app".into(),
            digest: "sha256:00".into(),
            tag: None,
            uses: 1,
            used: 0,
            created_at: 0,
            expires_at: 0,
            window_until: 0,
            created_by: "admin".into(),
        };
        let (t, _) = a
            .pull_tokens()
            .create(template, Duration::from_secs(60))
            .await
            .unwrap();
        let subject = Subject::PullToken(t.id.clone());
        let (jwt, _) = a.issue_token(&subject, Vec::new()).unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            format!("Bearer {jwt}").parse().unwrap(),
        );
        // b has not seen the token (no reload, no Basic login yet).
        let id = b.authenticate(&h, None).await.unwrap();
        assert_eq!(id.subject, subject);
    }

    #[tokio::test]
    async fn robots_made_at_once_through_two_replicas_both_stay() {
        use crate::store::PausePoint;
        let dir = tempfile::tempdir().unwrap();
        let (sa, sb) = crate::store::test_replicas(dir.path());
        let toml = "[auth]\n[[auth.admins]]\nusername = \"admin\"\npassword_hash = \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$3dDSk8Aiv8aFz7CkEMk2mxdH0dGVb+OTo8Pi3BD1K9k\"\n";
        let a = Arc::new(authz_on(sa.clone(), toml).await);
        let b = Arc::new(authz_on(sb, toml).await);
        // a holds the robots lease and is about to read the document.
        let hold = sa.pause_at(PausePoint::DocRead);
        let ta = tokio::spawn({
            let a = a.clone();
            async move { a.create_robot("one", BTreeMap::new(), None).await }
        });
        hold.reached.notified().await;
        let tb = tokio::spawn({
            let b = b.clone();
            async move { b.create_robot("two", BTreeMap::new(), None).await }
        });
        hold.resume.notify_one();
        let (_, tok1) = ta.await.unwrap().unwrap();
        let (_, tok2) = tb.await.unwrap().unwrap();
        // b changed the document after a: it has both at once; a after
        // its refresh.
        a.reload_robots().await.unwrap();
        for x in [&a, &b] {
            assert!(x.check_basic("robot$one", &tok1, None).await.is_ok());
            assert!(x.check_basic("robot$two", &tok2, None).await.is_ok());
        }
        // The same name through both: one creation, one clear refusal.
        let (r1, r2) = tokio::join!(
            a.create_robot("three", BTreeMap::new(), None),
            b.create_robot("three", BTreeMap::new(), None)
        );
        assert_eq!(r1.is_ok() as u8 + r2.is_ok() as u8, 1);
        assert!(matches!(r1.err().or(r2.err()), Some(RobotError::Exists(_))));
    }

    #[tokio::test]
    async fn open_without_accounts() {
        let cfg = crate::config::Config::load(None, &Default::default()).unwrap();
        let d = tempfile::tempdir().unwrap();
        let a = Authorizer::new(
            &cfg.auth,
            &cfg.limits,
            Store::open(d.path()).unwrap(),
            Arc::new(Public),
        )
        .await
        .unwrap();
        assert!(!a.enabled());
        assert!(a.subject_allowed(&Subject::Anonymous, "x/y", Action::Delete, false));
    }
}
