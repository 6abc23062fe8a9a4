//! API keys and their scopes: which bearer tokens the sidecar accepts, and what each may
//! do.
//!
//! A key has one [`Scope`], and each route needs one ([`crate::api::ROUTES`]); the scopes
//! nest, `feed` ⊂ `write` ⊂ `admin`:
//!
//! | scope | may call |
//! |---|---|
//! | `feed` | `POST /v1/feed`, `GET /v1/users/{id}/profile`, `GET /v1/users/{id}/preferences`, `POST /v1/steering/parse` |
//! | `write` | the above and the other `/v1` writes (ingest, catalogue, users, relations, consent, parental controls, preference writes) |
//! | `admin` | everything: also a person's erasure and export, bulk import, export and backups, the model in force, the operator's reads (a person, a preview, a video's verdict, a video, stats), `GET /metrics`, and signing in to the console |
//!
//! A key whose scope is too narrow is answered 403 `forbidden`; a missing or unknown key
//! 401 `unauthorized`.
//!
//! The keys come from two places, merged into one [`KeySet`]:
//!
//! - `server.api_keys` (configuration, or `STEERFEED__SERVER__API_KEYS`): each of scope
//!   `admin`, for development and single-tenant setups;
//! - the key file `server.api_keys_file`, read at startup (the server does not start when
//!   it is missing or does not parse) and again on SIGHUP (`kill -HUP <pid>`), without a
//!   restart. A file that fails to parse on reload leaves the keys in force as they were.
//!
//! Auth is off only when neither is set, which the configuration allows only on a
//! loopback bind. A key file that holds no key still turns auth on: every request is
//! then 401.
//!
//! # The key file
//!
//! Text, one key per line:
//!
//! ```text
//! # scope  key                               name (optional)
//! feed     fk_9c1d0b7e54a24f31a8e2c6d90b3f   mobile-app
//! write    wk_2f6e8a1c9d3b47e0b5a1f7c2e8d4   ingest-worker
//! admin    ak_71b3e9d05c2f48a6b9e0d1c7f3a5   ops
//! ```
//!
//! - Fields are separated by white space: the scope (`feed`, `write` or `admin`), the key,
//!   and optionally a name for the logs (the request span records it as `key_name`; the key
//!   itself is never logged).
//!   More fields are an error.
//! - A `#` at the start of a line or of a field starts a comment that runs to the end of
//!   the line; blank lines are ignored. A `#` inside a field is part of it, so a key may
//!   hold `#` but not begin with one.
//! - A key is at least 16 characters, all visible ASCII, as in `server.api_keys`.
//! - A key may appear once, in the file or in `server.api_keys`, never in both.
//!
//! An error names the file and the line, never the key (nor any field of the line, which
//! could be a key written in the wrong place).
//!
//! Every key is compared with the token over every byte ([`KeySet::find`]), so the time a
//! check takes does not tell how much of a key a guess got right.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::config::{ServerConfig, valid_api_key};
use crate::ratelimit::KeyId;

/// What a key may do. Ordered: a key may call a route when its scope is at least the
/// route's.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Read a feed, a profile, preferences.
    Feed,
    /// Everything `feed` may, and every write of the `/v1` API.
    Write,
    /// Everything, and the operator's routes (`/metrics`).
    Admin,
}

impl Scope {
    /// Every scope, narrowest first.
    pub const ALL: [Scope; 3] = [Scope::Feed, Scope::Write, Scope::Admin];

    /// The scope's name, as in the key file and the OpenAPI document.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Feed => "feed",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    /// The scope named `name` exactly (`feed`, `write`, `admin`).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// True when a key of this scope may call a route that needs `needed`.
    pub fn allows(self, needed: Scope) -> bool {
        self >= needed
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One accepted key.
#[derive(Clone)]
pub struct ApiKey {
    secret: Box<str>,
    scope: Scope,
    name: Option<String>,
    id: KeyId,
}

impl ApiKey {
    fn new(secret: &str, scope: Scope, name: Option<String>) -> Self {
        Self {
            secret: secret.into(),
            scope,
            name,
            id: KeyId::of(secret),
        }
    }

    /// What the key may do.
    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// The key's name from the key file, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The key's rate-limit bucket.
    pub fn id(&self) -> KeyId {
        self.id
    }
}

// The secret stays out of every `Debug` (the state is `Debug`, and so may end up in a log).
impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("scope", &self.scope)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The keys in force, and whether auth is on at all.
#[derive(Debug, Clone)]
pub struct KeySet {
    keys: Vec<ApiKey>,
    required: bool,
}

impl KeySet {
    /// No keys, auth off: every request is let through (a loopback bind without keys).
    pub fn open() -> Self {
        Self {
            keys: Vec::new(),
            required: false,
        }
    }

    /// No keys, auth on: every request is 401. What a state starts with when its key file
    /// cannot be read ([`crate::AppState::new`]).
    pub fn deny_all() -> Self {
        Self {
            keys: Vec::new(),
            required: true,
        }
    }

    /// The keys `server` configures: `server.api_keys` (each `admin`) and the keys of
    /// `server.api_keys_file`, read now.
    pub fn load(server: &ServerConfig) -> Result<Self, KeyFileError> {
        let (path, file) = match &server.api_keys_file {
            None => (None, None),
            Some(path) => (Some(path), Some(read_key_file(path)?)),
        };
        Self::from_parts(&server.api_keys, file).map_err(|source| KeyFileError::Parse {
            path: path.cloned().unwrap_or_default(),
            source,
        })
    }

    /// The set of `admin` keys `config_keys` and the keys of a key file (`None`: no file
    /// set). A file key equal to one of `config_keys` is an error on its line.
    pub fn from_parts(
        config_keys: &[String],
        file: Option<Vec<FileKey>>,
    ) -> Result<Self, LineError> {
        let required = !config_keys.is_empty() || file.is_some();
        let mut keys: Vec<ApiKey> = config_keys
            .iter()
            .map(|k| ApiKey::new(k, Scope::Admin, None))
            .collect();
        for k in file.into_iter().flatten() {
            if config_keys.iter().any(|c| c.as_str() == k.key) {
                return Err(LineError::new(
                    k.line,
                    "the same key as one in server.api_keys (a key has one scope: keep it in \
                     one place)",
                ));
            }
            keys.push(ApiKey::new(&k.key, k.scope, k.name));
        }
        Ok(Self { keys, required })
    }

    /// True when requests must carry a key (some key or a key file is configured).
    pub fn required(&self) -> bool {
        self.required
    }

    /// How many keys are in force.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is in force.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// How many keys of `scope` are in force.
    pub fn count(&self, scope: Scope) -> usize {
        self.keys.iter().filter(|k| k.scope == scope).count()
    }

    /// The key equal to `token`, if any. Every key is compared, each over every byte, so
    /// the time taken does not tell how much of a key a guess got right.
    pub fn find(&self, token: &[u8]) -> Option<&ApiKey> {
        let found = self.keys.iter().enumerate().fold(None, |found, (i, k)| {
            let hit = constant_time_eq(k.secret.as_bytes(), token);
            found.or(hit.then_some(i))
        });
        found.and_then(|i| self.keys.get(i))
    }

    /// The key in force whose bucket is `id` (a console session remembers its key by
    /// this id, never by the key itself).
    pub fn by_id(&self, id: KeyId) -> Option<&ApiKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// True when rate-limit bucket `id` belongs to a key in force (or is the shared bucket
    /// of a server without auth).
    pub fn has_bucket(&self, id: KeyId) -> bool {
        if !self.required {
            return id == KeyId::SHARED;
        }
        self.keys.iter().any(|k| k.id == id)
    }
}

/// Compares `a` and `b` over the length of the longer, whatever they hold.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().max(b.len());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= std::hint::black_box(x ^ y);
    }
    diff == 0
}

/// One line of a key file.
#[derive(Clone, PartialEq, Eq)]
pub struct FileKey {
    /// The line it is on, from 1.
    pub line: usize,
    /// What it may do.
    pub scope: Scope,
    /// The key.
    pub key: String,
    /// Its name for the logs, if any.
    pub name: Option<String>,
}

impl fmt::Debug for FileKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileKey")
            .field("line", &self.line)
            .field("scope", &self.scope)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// What is wrong with one line of a key file (never showing the line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct LineError {
    /// The line, from 1.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

impl LineError {
    fn new(line: usize, reason: impl Into<String>) -> Self {
        Self {
            line,
            reason: reason.into(),
        }
    }
}

/// Why the keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The key file could not be read.
    #[error("cannot read the key file {} (server.api_keys_file): {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line of the key file is wrong.
    #[error("key file {} (server.api_keys_file), {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The line and what is wrong with it.
        source: LineError,
    },
}

/// Reads and parses the key file at `path`.
pub fn read_key_file(path: &Path) -> Result<Vec<FileKey>, KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_key_file(&text).map_err(|source| KeyFileError::Parse {
        path: path.to_owned(),
        source,
    })
}

/// Parses the text of a key file (the format is in the module doc): its keys, each with
/// its line, or the first wrong line.
pub fn parse_key_file(text: &str) -> Result<Vec<FileKey>, LineError> {
    let mut keys = Vec::new();
    // Key -> the line it was first seen on.
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let mut fields = line
            .split_ascii_whitespace()
            .take_while(|f| !f.starts_with('#'));
        let Some(scope) = fields.next() else {
            continue;
        };
        let scope = Scope::from_name(scope).ok_or_else(|| {
            LineError::new(
                n,
                "the first field is not a scope (feed, write or admin); a line reads \
                 `<scope> <key> [<name>]`",
            )
        })?;
        let key = fields
            .next()
            .ok_or_else(|| LineError::new(n, "a scope without a key"))?;
        if !valid_api_key(key) {
            return Err(LineError::new(
                n,
                "the key must be at least 16 characters, all visible ASCII (letters, \
                 digits, punctuation)",
            ));
        }
        let name = fields.next().map(str::to_owned);
        let extra = fields.count();
        if extra > 0 {
            return Err(LineError::new(
                n,
                format!(
                    "{} fields; a line reads `<scope> <key> [<name>]` (a name has no spaces)",
                    3 + extra
                ),
            ));
        }
        if let Some(first) = seen.insert(key, n) {
            return Err(LineError::new(
                n,
                format!("the same key as line {first} (a key has one scope)"),
            ));
        }
        keys.push(FileKey {
            line: n,
            scope,
            key: key.to_owned(),
            name,
        });
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FEED: &str = "feed_key_0123456789";
    const WRITE: &str = "write_key_0123456789";
    const ADMIN: &str = "admin_key_0123456789";

    #[test]
    fn scopes_nest_and_read_as_their_names() {
        assert!(Scope::Feed < Scope::Write && Scope::Write < Scope::Admin);
        assert!(Scope::Admin.allows(Scope::Feed) && Scope::Write.allows(Scope::Write));
        assert!(!Scope::Feed.allows(Scope::Write) && !Scope::Write.allows(Scope::Admin));
        for s in Scope::ALL {
            assert_eq!(Scope::from_name(s.as_str()), Some(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{s}\""));
        }
        assert_eq!(Scope::from_name("Admin"), None);
        assert_eq!(Scope::from_name("read"), None);
    }

    #[test]
    fn a_good_file_with_comments_blank_lines_and_names() {
        let text = format!(
            "# the keys of the sidecar\n\
             \n\
             feed {FEED} mobile-app\n\
             \t  write\t{WRITE}   # the ingest worker\n\
             admin {ADMIN}#not-a-comment\n\
             \x20  # an indented comment\n\
             feed feed#key#with#hashes  app#2 # named with a hash\n"
        );
        let keys = parse_key_file(&text).unwrap();
        let got: Vec<(usize, Scope, &str, Option<&str>)> = keys
            .iter()
            .map(|k| (k.line, k.scope, k.key.as_str(), k.name.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                (3, Scope::Feed, FEED, Some("mobile-app")),
                (4, Scope::Write, WRITE, None),
                (5, Scope::Admin, "admin_key_0123456789#not-a-comment", None),
                (7, Scope::Feed, "feed#key#with#hashes", Some("app#2")),
            ]
        );
        assert_eq!(parse_key_file(""), Ok(Vec::new()));
        assert_eq!(parse_key_file("# nothing yet\n\n   \n"), Ok(Vec::new()));
        // Windows line ends.
        let crlf = format!("feed {FEED}\r\nwrite {WRITE}\r\n");
        assert_eq!(parse_key_file(&crlf).map(|k| k.len()), Ok(2));
    }

    #[test]
    fn each_bad_line_is_named_by_its_number_and_never_shows_the_key() {
        let secret = "s3cret_s3cret_s3cret";
        let ok = format!("# header\nfeed {FEED}\n\n");
        for (bad, line, says) in [
            (format!("reed {secret}"), 4, "not a scope"),
            (format!("Admin {secret}"), 4, "not a scope"),
            // The key written first: the "scope" is the key, and is not shown either.
            (format!("{secret} admin"), 4, "not a scope"),
            ("write".to_owned(), 4, "without a key"),
            ("write # key to come".to_owned(), 4, "without a key"),
            ("admin s3cret_short".to_owned(), 4, "at least 16"),
            (format!("admin {secret}\u{e9}"), 4, "visible ASCII"),
            (format!("admin {secret} name extra"), 4, "4 fields"),
            (format!("admin {secret} my name is long"), 4, "6 fields"),
            (
                format!("admin {secret}\nwrite {secret}"),
                5,
                "same key as line 4",
            ),
            (format!("write {FEED}"), 4, "same key as line 2"),
        ] {
            let text = format!("{ok}{bad}\n");
            let err = parse_key_file(&text).expect_err(&bad);
            assert_eq!(err.line, line, "{bad:?}: {err}");
            let shown = err.to_string();
            assert!(shown.starts_with(&format!("line {line}: ")), "{shown}");
            assert!(shown.contains(says), "{bad:?}: {shown}");
            for part in [secret, "s3cret_short", FEED] {
                assert!(!shown.contains(part), "{shown} shows a key");
            }
        }
    }

    #[test]
    fn a_file_key_may_not_repeat_a_configured_one() {
        let file = parse_key_file(&format!("feed {FEED}\nwrite {ADMIN}\n")).unwrap();
        let err = KeySet::from_parts(&[ADMIN.to_owned()], Some(file)).unwrap_err();
        assert_eq!(err.line, 2);
        assert!(!err.to_string().contains(ADMIN), "{err}");
    }

    #[test]
    fn configured_keys_are_admin_and_a_file_turns_auth_on_even_empty() {
        let set = KeySet::from_parts(&[ADMIN.to_owned()], None).unwrap();
        assert!(set.required());
        assert_eq!(
            set.find(ADMIN.as_bytes()).map(ApiKey::scope),
            Some(Scope::Admin)
        );

        let set = KeySet::from_parts(&[], Some(Vec::new())).unwrap();
        assert!(set.required() && set.is_empty());
        assert!(set.find(b"").is_none());

        let set = KeySet::from_parts(&[], None).unwrap();
        assert!(!set.required());
        assert!(set.has_bucket(KeyId::SHARED));
    }

    #[test]
    fn keys_match_only_exactly() {
        let file = parse_key_file(&format!(
            "feed {}\nwrite {}\n",
            "a".repeat(16),
            "b".repeat(16)
        ))
        .unwrap();
        let set = KeySet::from_parts(&[], Some(file)).unwrap();
        let found = set.find("b".repeat(16).as_bytes()).map(ApiKey::scope);
        assert_eq!(found, Some(Scope::Write));
        assert!(set.find("b".repeat(15).as_bytes()).is_none());
        assert!(set.find("b".repeat(17).as_bytes()).is_none());
        assert!(set.find(b"").is_none());
        assert!(KeySet::open().find(b"").is_none());
        // A key's bucket is its own, wherever it sits in the file.
        let b = set.find("b".repeat(16).as_bytes()).map(ApiKey::id);
        assert_eq!(b, Some(KeyId::of(&"b".repeat(16))));
        assert!(set.has_bucket(KeyId::of(&"a".repeat(16))));
        assert!(!set.has_bucket(KeyId::SHARED));
    }

    #[test]
    fn debug_never_shows_a_key() {
        let file = parse_key_file(&format!("feed {FEED} app\n")).unwrap();
        let shown = format!("{file:?}");
        assert!(shown.contains("app") && !shown.contains(FEED), "{shown}");
        let set = KeySet::from_parts(&[ADMIN.to_owned()], Some(file)).unwrap();
        let shown = format!("{set:?}");
        assert!(!shown.contains(FEED) && !shown.contains(ADMIN), "{shown}");
    }
}
