//! steerfeed's shared backend: several `steerfeed` processes serving one app from one
//! PostgreSQL database, one NATS JetStream stream and one Redis (a server or a cluster).
//!
//! - **PostgreSQL is the system of record** of what the app says about its catalogue and
//!   its people: every write (videos, deletions, accounts, follows, blocks and mutes,
//!   consent and revocations, parental controls, preferences, erasures) is one row of the
//!   change log `<namespace>.changes`, numbered by the one version in
//!   `<namespace>.change_meta`, committed in a transaction that holds that row's lock
//!   (with the other writes this process had queued meanwhile).
//! - **NATS JetStream is the event log**: one message per ingest batch (and one per
//!   served page), on file storage, acknowledged once the server has it (with the
//!   `sync_interval: always` the test servers use, once it is on disk). A batch retried
//!   within the stream's duplicate window is dropped by its message id, the hash of its
//!   events' keys; a key seen before in another batch is a duplicate when the batch is
//!   applied.
//! - **What the event log says of a person is sealed with their own key** (the `seal`
//!   module), kept in `<namespace>.person_keys`; erasing them removes it, so the stream
//!   keeps nothing readable of them.
//! - **Redis holds the counters replicas must agree on while ranking** (the `counters`
//!   module): the items reserved for a teen's pages each day, so that pages ranked at
//!   once on several replicas never serve more than the daily cap in all. It also holds
//!   the page pools (the `pools` module): a session's next page is picked from what its
//!   first ranking left on whichever replica it reaches.
//! - **Every process keeps a mirror**: an embedded [`Store`] in a temporary directory to
//!   which it applies the change log in version order and the event log in stream order,
//!   with the embedded backend's code. A write is validated by applying it to the
//!   writer's mirror while the version row is locked, after the mirror caught up to that
//!   version: what the embedded backend refuses is refused here and never logged. A
//!   message carries the change version its publisher had applied, and a mirror applies
//!   the changes up to it first (an event of a person created just before finds them).
//!   That is one order of both logs, which the relations both write (a follow from a
//!   video, a hidden creator; an unfollow, an unmute) keep on every mirror, whichever
//!   way round it met them (the `relations` module).
//!
//! [`Storage::catch_up`] reads both logs' heads and applies what the mirror lacks; the
//! engine calls it at the start of every feed (and export), or has the page pool's take
//! do it ([`SharedPools::take_pool`], in the same round trip), so a write acknowledged
//! by any process before a feed starts is in force for that feed on every process. Both
//! heads are one PostgreSQL row each: the change version, and the stream sequence of the
//! last acknowledged batch (`<namespace>.stream_head`, raised by the ingesting process
//! before it answers). Served pages' messages leave it alone, so no catch-up waits for
//! another process's page; each applies those its consumer already holds. The reads of
//! the ports then answer from the mirror.
//!
//! NATS must accept messages of a few megabytes (`max_payload: 8MB`): a batch of the
//! API's largest size is one message.
//!
//! The runtime the clients need is the store's own (one worker thread); its calls block
//! the caller's thread, which must not be an async task (the engine runs on blocking
//! threads).

#![warn(missing_docs)]

mod change;
mod counters;
mod impressions;
pub mod mirrors;
mod page;
mod pools;
mod relations;
mod seal;
pub mod servers;
pub mod snapshots;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use futures_util::{FutureExt, StreamExt};
use steerfeed_core::ports::{
    ActionCounts, ActionStats, CameoConsent, ConsentLedger, Engagement, EngagementStats,
    SocialGraph, UserHistory, VideoCatalog,
};
use steerfeed_core::storage::{
    CopyInfo, DamageReport, IngestReport, ItemAsk, ItemGrant, KeepDone, Logged, Preferences,
    Relation, Revocation, ServedPage, SharedPools, Storage,
};
use steerfeed_core::{
    Constraints, Error, Event, Result, Timestamp, TopicId, UserId, Video, VideoId,
};
use steerfeed_store::{Store, StoreOptions};
use tokio_postgres::GenericClient;

use change::Change;
use seal::{KeyId, PersonKey};

/// How long a write's or a catch-up's calls to PostgreSQL and NATS may take in all, and
/// how long a call to Redis may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long JetStream remembers a batch's message id to drop a retry of it.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Where the shared backend keeps its state.
#[derive(Debug, Clone)]
pub struct SharedOptions {
    /// PostgreSQL, e.g. `postgres://steerfeed@127.0.0.1:5432/steerfeed`.
    pub postgres_url: String,
    /// NATS with JetStream, e.g. `nats://127.0.0.1:4222`.
    pub nats_url: String,
    /// Redis, e.g. `redis://127.0.0.1:6379`: one server, or a node of a Redis Cluster
    /// when `redis_cluster` is set.
    pub redis_url: String,
    /// `redis_url` names a node of a Redis Cluster.
    pub redis_cluster: bool,
    /// Names this deployment's schema, stream and subject (lower-case letters, digits and
    /// `_`, at most 40): deployments on the same servers with different namespaces share
    /// nothing.
    pub namespace: String,
    /// The options of every process's mirror (the embedding dimension among them): the
    /// same on every process.
    pub store: StoreOptions,
    /// See [`DEFAULT_TIMEOUT`].
    pub timeout: Duration,
    /// The directory of the deployment's snapshots (`[shared] snapshot_dir`): a process
    /// opens its mirror from the newest mirror snapshot there (`mirrors`), catching up
    /// from its positions, and [`SharedStore::save_mirror`] writes one. `None`: the
    /// mirror is built from both logs' beginnings.
    pub mirror_snapshots: Option<std::path::PathBuf>,
}

impl SharedOptions {
    /// Options with the default timeout and one Redis server.
    pub fn new(
        postgres_url: &str,
        nats_url: &str,
        redis_url: &str,
        namespace: &str,
        store: StoreOptions,
    ) -> Self {
        SharedOptions {
            postgres_url: postgres_url.to_string(),
            nats_url: nats_url.to_string(),
            redis_url: redis_url.to_string(),
            redis_cluster: false,
            namespace: namespace.to_string(),
            store,
            timeout: DEFAULT_TIMEOUT,
            mirror_snapshots: None,
        }
    }
}

/// What kind of message a stream message is (its `Steerfeed-Kind` header).
const KIND: &str = "Steerfeed-Kind";
/// Which process published it (its `Steerfeed-Origin` header).
const ORIGIN: &str = "Steerfeed-Origin";
/// The change version its publisher had applied (its `Steerfeed-Version` header).
const STAMP: &str = "Steerfeed-Version";
/// How many changes one read of the change log brings.
const CHANGES_PER_READ: i64 = 500;
/// Stored bytes of the changes one read of the change log returns, at most (past the
/// first): a read of a few large changes (a thousand videos each, with embeddings) stays
/// well within the store's timeout.
const CHANGE_BYTES_PER_READ: i64 = 16 << 20;
/// How often, at most, a process reports where its mirror stands: when it catches up,
/// and while it applies the logs.
const REPORT_EVERY: Duration = Duration::from_secs(10);
/// How many outcomes of its own messages a process keeps for their publishers.
const KEPT_OUTCOMES: u64 = 100_000;

/// Messages a catch-up applies past the heads, of those the consumer already holds.
const DELIVERED_PER_CALL: u64 = 256;
/// How often, at most, a catch-up with nothing acknowledged to wait for makes a lost
/// stream consumer anew.
const REOPEN_EVERY: Duration = Duration::from_secs(1);
/// How often a catch-up asks whether the stream is still the one this process started
/// on (its ordered consumer would go on at its sequence on a stream made anew).
const STREAM_CHECK_EVERY: Duration = Duration::from_secs(10);
/// How long, at most, a catch-up spends applying what its consumer already holds past
/// the heads (or making a lost consumer anew).
const DELIVERED_WITHIN: Duration = Duration::from_millis(100);

/// What applying one of this process's messages gave, for its publisher.
enum Outcome {
    Events(Result<(IngestReport, Logged)>),
    /// A page, or another message no one waits on (what went wrong is logged).
    Other,
}

/// The person keys a process knows.
#[derive(Default)]
struct KeyCache {
    by_user: HashMap<UserId, Arc<PersonKey>>,
    by_id: HashMap<KeyId, Option<(UserId, Arc<PersonKey>)>>,
}

impl KeyCache {
    fn insert(&mut self, user: UserId, key: Arc<PersonKey>) {
        self.by_id
            .insert(key.id, Some((user.clone(), Arc::clone(&key))));
        self.by_user.insert(user, key);
    }

    /// Forgets the key of the person `change` erases (their sealed entries no longer
    /// open here) or writes: an account made again after an erasure gets a new key, so
    /// the next seal reads it again. What their current key sealed still opens: an
    /// account written again keeps its key.
    fn forget_for(&mut self, change: &Change) {
        match change {
            Change::Erase { user, .. } => self.forget(user),
            Change::User { user } => {
                self.by_user.remove(&user.id);
            }
            _ => {}
        }
    }

    /// Forgets an erased person's key: what it sealed no longer opens here.
    fn forget(&mut self, user: &UserId) {
        if let Some(key) = self.by_user.remove(user) {
            self.by_id.insert(key.id, None);
        }
    }
}

fn lock_keys(m: &std::sync::Mutex<KeyCache>) -> std::sync::MutexGuard<'_, KeyCache> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A write waiting for the next transaction of this process's writes.
struct Queued {
    /// Tells it apart in the queue.
    id: u64,
    change: Change,
    /// The change as the log stores it.
    body: String,
    done: tokio::sync::oneshot::Sender<Result<Option<steerfeed_core::ErasureReport>>>,
}

/// Change log rows to insert together.
#[derive(Default)]
struct Rows {
    versions: Vec<i64>,
    bodies: Vec<String>,
    people: Vec<String>,
    people_versions: Vec<i64>,
}

impl Rows {
    fn push(&mut self, version: u64, change: &Change, body: &str) {
        self.versions.push(version as i64);
        self.bodies.push(body.to_owned());
        for p in change.people() {
            self.people.push(p.as_str().to_owned());
            self.people_versions.push(version as i64);
        }
    }
}

/// The most writes one transaction commits.
const MAX_GROUP: usize = 256;

fn lock_queue(m: &std::sync::Mutex<Vec<Queued>>) -> std::sync::MutexGuard<'_, Vec<Queued>> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Answers every write of `group` as unavailable, in `e`'s words: what failed is this
/// process's or a server's, not the writes' (one the mirror refused is answered apart).
fn answer_all(group: Vec<Queued>, e: Error) {
    let what = e.to_string();
    for q in group {
        let _ = q.done.send(Err(Error::Unavailable { what: what.clone() }));
    }
}

/// The next writes of `queued` to commit together: up to [`MAX_GROUP`], an erasure alone
/// (its rewrite of earlier rows may take long, and it is rare).
fn next_group(queued: &mut Vec<Queued>) -> Vec<Queued> {
    let erasure = |q: &Queued| matches!(q.change, Change::Erase { .. });
    let n = match queued.first() {
        None => 0,
        Some(q) if erasure(q) => 1,
        Some(_) => queued
            .iter()
            .take(MAX_GROUP)
            .position(erasure)
            .unwrap_or(queued.len().min(MAX_GROUP)),
    };
    queued.drain(..n).collect()
}

fn dropped() -> Error {
    Error::internal("change log", "a queued write was dropped unanswered")
}

/// Pages sent, with their viewers, whose acknowledgement no one has waited for yet.
type PendingPages = Vec<(UserId, async_nats::jetstream::context::PublishAckFuture)>;

fn lock_pages(m: &std::sync::Mutex<PendingPages>) -> std::sync::MutexGuard<'_, PendingPages> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Pages sent before one waits for their acknowledgements.
const MAX_PENDING_PAGES: usize = 256;

/// How far the mirror has applied the two logs.
struct Applier {
    /// The last change version applied.
    version: u64,
    /// The last stream sequence applied.
    seq: u64,
    /// An ordered consumer delivering the stream from `seq + 1`, when one is open.
    messages: Option<jetstream::consumer::pull::Ordered>,
    /// Outcomes of this process's own messages, by stream sequence.
    outcomes: HashMap<u64, Outcome>,
    /// The consumer was made to start at `seq + 1` and delivered nothing applied yet:
    /// a first message past `seq + 1` means the ones between are gone from the stream.
    fresh: bool,
    /// A message was being read from the consumer or applied: when a call is given up
    /// on there, the consumer is made anew (delivering it again), and whether the stream
    /// still reaches the mirror checked.
    reading: bool,
    /// When a catch-up last made a lost consumer anew without waiting for a message.
    reopened: Option<std::time::Instant>,
    /// When a catch-up last asked whether the stream was made anew.
    checked: Option<std::time::Instant>,
    /// The latest relation writes applied, to order the two logs' (`relations`).
    recent: relations::Recent,
}

/// Which logs [`SharedStore::trim_logs`] trims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trim {
    /// The stream's messages: the events, sealed, which the mirrors and their snapshots
    /// hold as well.
    Stream,
    /// The stream's messages and the change log's rows. The change log is the record of
    /// every write about the catalogue and people; trimmed, what it held lives on only
    /// in the mirrors and their snapshots, so the snapshot directory must then be as
    /// durable as the database (replicated, backed up).
    Both,
}

/// What [`SharedStore::trim_logs`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trimmed {
    /// What was trimmed reaches up to this position: the stream's messages up to its
    /// `seq`, with [`Trim::Both`] the change log's rows up to its `version`.
    pub upto: mirrors::Position,
    /// Rows removed from the change log.
    pub changes: u64,
    /// Messages removed from the stream.
    pub messages: u64,
}

/// The shared backend (see the crate doc).
pub struct SharedStore {
    /// The clients' runtime; taken at drop and shut down without waiting (a store may be
    /// dropped inside another runtime's task, where waiting is not allowed).
    rt: Option<tokio::runtime::Runtime>,
    /// Where PostgreSQL is, to connect again after a lost connection.
    postgres_url: String,
    /// The stream sequence the mirror has applied (the applier's, readable without its
    /// lock).
    applied_seq: AtomicU64,
    /// The change version the mirror has applied (the applier's, readable without its
    /// lock).
    applied_version: AtomicU64,
    /// The newest page this process published and has not applied yet: a read of
    /// someone's serving state applies it first.
    unapplied: AtomicU64,
    /// Pages sent whose acknowledgement no one has waited for yet.
    pending_pages: std::sync::Mutex<PendingPages>,
    /// Person keys read or made so far: by person, and by key id (`None`: erased).
    keys: std::sync::Mutex<KeyCache>,
    /// The session holding the deployment's lead (an advisory lock), once taken.
    leader: tokio::sync::Mutex<Option<tokio_postgres::Client>>,
    /// Reads: the heads and the change log (shared by concurrent requests, which the
    /// client pipelines).
    reader: tokio::sync::Mutex<Arc<tokio_postgres::Client>>,
    /// Raises the stream head: its commits (each a flush to disk) never queue ahead of
    /// a feed's read of the heads on the reading connection.
    head_writer: tokio::sync::Mutex<Arc<tokio_postgres::Client>>,
    /// The largest stream head this process read or raised (committed, so every later
    /// read of the heads holds it).
    known_head: AtomicU64,
    /// Writes: one transaction at a time per process, each committing every write
    /// queued by then.
    writer: tokio::sync::Mutex<tokio_postgres::Client>,
    /// Writes waiting for the next transaction.
    queued: std::sync::Mutex<Vec<Queued>>,
    /// The id of the next write queued.
    next_write: AtomicU64,
    js: jetstream::Context,
    stream: jetstream::stream::Stream,
    /// When the stream was made, as it said at the start: a stream made anew since (a
    /// loss of acknowledged messages) stops this process.
    stream_created: async_nats::datetime::DateTime,
    subject: String,
    schema: String,
    origin: String,
    mirror: Store,
    /// The mirror's directory when it has one (it can then be snapshotted), removed
    /// when the store drops, after the mirror; and its owner lock, held until then.
    _mirror_dir: Option<(tempfile::TempDir, std::fs::File)>,
    mirror_snapshots: Option<mirrors::MirrorSnapshots>,
    /// The snapshot this process's mirror started from.
    started_from: Option<mirrors::Position>,
    /// The change version of the newest erasure this process applied: no mirror
    /// snapshot older than it may stay.
    erased_at: AtomicU64,
    counters: counters::Counters,
    pools: pools::Pools,
    /// Served pages' impressions, in a stream of their own (the `impressions` module).
    impressions: impressions::ImpressionLog,
    applier: tokio::sync::Mutex<Applier>,
    /// Set when the mirror took a write the database then did not commit: it no longer
    /// matches the log, and every call that reaches the servers fails until the process
    /// restarts.
    diverged: AtomicBool,
    /// Set when the mirror needs log entries that are gone (trimmed, or dropped by the
    /// stream's retention): it cannot follow the logs any more, and every call that
    /// reaches the servers fails until the process restarts from a mirror snapshot.
    cut_off: AtomicBool,
    /// When this process last reported its mirror's positions (milliseconds since
    /// `born`), so that trimming leaves what it still needs.
    reported_ms: AtomicU64,
    born: std::time::Instant,
    timeout: Duration,
    /// Test hook: the next publish stops the store right after the stream acknowledged
    /// it, before anything is applied, as a process killed there would.
    #[cfg(feature = "test-hooks")]
    crash_after_publish: AtomicBool,
    /// Test hook: runs once an ingest has validated its batch, before it publishes it.
    #[cfg(feature = "test-hooks")]
    before_publish: Hook,
    /// Test hook: runs once a group of writes is applied to the mirror, before the
    /// transaction that logs them is committed.
    #[cfg(feature = "test-hooks")]
    before_commit: Hook,
}

/// Test hook: what runs once at a point of the code, when a test set it.
#[cfg(feature = "test-hooks")]
#[derive(Default)]
struct Hook(std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>);

#[cfg(feature = "test-hooks")]
impl Hook {
    fn set(&self, f: Box<dyn FnOnce() + Send>) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(f);
    }

    /// Runs what was set, once.
    fn run(&self) {
        let f = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(f) = f {
            f();
        }
    }
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Unavailable {
        what: format!("{what}: {e}"),
    }
}

fn pg_error(e: tokio_postgres::Error) -> Error {
    match e.as_db_error() {
        // The server's own words say what went wrong ("db error" alone does not).
        Some(db) => unavailable(
            "postgresql",
            format!("{}: {}", db.code().code(), db.message()),
        ),
        None => unavailable("postgresql", e),
    }
}

/// What [`open_mirror`] answers: the mirror, its directory, the snapshot it started from
/// and the relation writes that snapshot held.
type Opened = (
    Store,
    Option<(tempfile::TempDir, std::fs::File)>,
    Option<mirrors::Position>,
    relations::Recent,
);

/// The mirror: from the newest of `snapshots` when there is one (copied into a
/// directory of its own), else empty. With snapshots it lives in a directory (in
/// `/dev/shm` where there is one, as sled's temporary stores do), which it needs to be
/// copied; without, in sled's temporary store.
fn open_mirror(opts: StoreOptions, snapshots: Option<&mirrors::MirrorSnapshots>) -> Result<Opened> {
    let Some(snapshots) = snapshots else {
        return Ok((
            Store::temporary(opts)?,
            None,
            None,
            relations::Recent::default(),
        ));
    };
    let shm = std::path::Path::new("/dev/shm");
    let parent = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    remove_dead_mirrors(&parent);
    let dir = tempfile::Builder::new()
        .prefix(&format!("{MIRROR_PREFIX}{}-", std::process::id()))
        .tempdir_in(&parent)
        .map_err(|e| Error::internal("mirror directory", e))?;
    // Held as long as the process lives (the kernel lets go when it dies): the sign, to
    // other processes, that this mirror is in use.
    let owner = owner_lock(dir.path()).map_err(|e| Error::internal("mirror directory", e))?;
    let path = dir.path().join("mirror");
    let erasures = dir.path().join("mirror.erasures.jsonl");
    // Newest first; one removed while it was copied (an erasure, or pruning) gives way
    // to the next.
    let mut started = None;
    let mut recent = relations::Recent::default();
    for (position, src) in snapshots.list()?.into_iter().rev() {
        let copied = steerfeed_store::copy_tree(&src.join(mirrors::STORE), &path)
            .and_then(|_| {
                std::fs::copy(src.join(mirrors::ERASURES), &erasures)
                    .map(drop)
                    .map_err(|e| Error::Unavailable {
                        what: format!("mirror snapshot {}: {e}", src.display()),
                    })
            })
            .and_then(|_| read_relations(&src.join(mirrors::RELATIONS)));
        match copied {
            Ok(held) => {
                recent = held;
                tracing::info!(
                    version = position.version,
                    seq = position.seq,
                    "mirror opened from a snapshot"
                );
                started = Some(position);
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "a mirror snapshot could not be copied; trying an older one");
                for leftover in [&path, &erasures] {
                    let _ = std::fs::remove_dir_all(leftover)
                        .or_else(|_| std::fs::remove_file(leftover));
                }
            }
        }
    }
    let store = Store::open_with_erasure_log(&path, opts, Some(&erasures))?;
    Ok((store, Some((dir, owner)), started, recent))
}

/// The start of a mirror directory's name, before its process's id.
const MIRROR_PREFIX: &str = "steerfeed-mirror-";

/// The file in a mirror directory its process holds an exclusive lock on.
const OWNER_LOCK: &str = "owner.lock";

/// Creates the lock file of a mirror directory, locked before it takes its name, so
/// that no one finds it unlocked.
fn owner_lock(dir: &std::path::Path) -> std::io::Result<std::fs::File> {
    let unnamed = dir.join(format!(".{OWNER_LOCK}"));
    let file = std::fs::File::create(&unnamed)?;
    file.lock()?;
    std::fs::rename(&unnamed, dir.join(OWNER_LOCK))?;
    Ok(file)
}

/// Removes the mirror directories in `parent` whose process no longer runs (killed, or
/// exited without unwinding): a mirror is a copy of the whole store, in memory when
/// `parent` is `/dev/shm`. Its lock file is what tells (a process id would not, between
/// containers sharing the directory); a directory without one is left alone.
fn remove_dead_mirrors(parent: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let ours = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(MIRROR_PREFIX));
        let unowned = ours
            && std::fs::File::open(entry.path().join(OWNER_LOCK))
                .is_ok_and(|f| f.try_lock().is_ok());
        if unowned {
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => {
                    tracing::info!(dir = %entry.path().display(), "removed the mirror of a process that no longer runs")
                }
                Err(e) => {
                    tracing::warn!(dir = %entry.path().display(), error = %e, "could not remove a dead process's mirror")
                }
            }
        }
    }
}

/// The relation writes a mirror snapshot holds; none when it has no such file (one
/// written before snapshots kept them).
fn read_relations(path: &std::path::Path) -> Result<relations::Recent> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(relations::Recent::default());
        }
        Err(e) => {
            return Err(Error::Unavailable {
                what: format!("mirror snapshot {}: {e}", path.display()),
            });
        }
    };
    relations::Recent::from_json(&bytes).map_err(|e| Error::Unavailable {
        what: format!("mirror snapshot {}: {e}", path.display()),
    })
}

fn valid_namespace(ns: &str) -> Result<()> {
    let ok = !ns.is_empty()
        && ns.len() <= 40
        && ns
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !ns.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "namespace",
            "must be 1 to 40 lower-case letters, digits or '_', not starting with a digit",
        ))
    }
}

/// The message id of a batch: a hash of its events' keys, in order.
fn batch_id(events: &[Event]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for e in events {
        let k = e.key.as_str().as_bytes();
        h.update((k.len() as u64).to_le_bytes());
        h.update(k);
    }
    let d = h.finalize();
    d[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Records that the process `origin` has applied both logs up to `at`.
async fn upsert_position(
    client: &tokio_postgres::Client,
    schema: &str,
    origin: &str,
    at: mirrors::Position,
) -> std::result::Result<u64, tokio_postgres::Error> {
    client
        .execute(
            &format!(
                "INSERT INTO {schema}.replicas (origin, version, seq, seen_at) \
                 VALUES ($1, $2, $3, now()) ON CONFLICT (origin) DO UPDATE \
                 SET version = EXCLUDED.version, seq = EXCLUDED.seq, seen_at = now()"
            ),
            &[&origin, &(at.version as i64), &(at.seq as i64)],
        )
        .await
}

async fn connect_pg(url: &str) -> Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(pg_error)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!(error = %e, "postgresql connection ended");
        }
    });
    Ok(client)
}

impl SharedStore {
    /// Connects, creates the schema and the stream when missing, and builds the mirror
    /// from both logs.
    pub fn open(opts: SharedOptions) -> Result<SharedStore> {
        valid_namespace(&opts.namespace)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("steerfeed-shared")
            .enable_all()
            .build()
            .map_err(|e| Error::internal("shared runtime", e))?;
        let schema = format!("sf_{}", opts.namespace);
        let subject = format!("steerfeed.{}.log", opts.namespace);
        let stream_name = format!("STEERFEED_{}", opts.namespace.to_ascii_uppercase());
        let timeout = opts.timeout;
        let (reader, head_writer, writer, js, stream, counters, impressions) =
            rt.block_on(async {
                tokio::time::timeout(timeout, async {
                    let reader = connect_pg(&opts.postgres_url).await?;
                    let head_writer = connect_pg(&opts.postgres_url).await?;
                    let mut writer = connect_pg(&opts.postgres_url).await?;
                    create_schema(&mut writer, &schema).await?;
                    let nats = async_nats::connect(&opts.nats_url)
                        .await
                        .map_err(|e| unavailable("nats", e))?;
                    let js = jetstream::new(nats);
                    let stream = js
                        .get_or_create_stream(jetstream::stream::Config {
                            name: stream_name.clone(),
                            subjects: vec![subject.clone()],
                            storage: jetstream::stream::StorageType::File,
                            duplicate_window: DUPLICATE_WINDOW,
                            ..Default::default()
                        })
                        .await
                        .map_err(|e| unavailable("nats stream", e))?;
                    let counters = counters::Counters::connect(
                        &opts.redis_url,
                        opts.redis_cluster,
                        &opts.namespace,
                    )
                    .await?;
                    let impressions = impressions::ImpressionLog::open(
                        &js,
                        &opts.namespace,
                        opts.store.impression_retention_h,
                    )
                    .await?;
                    Ok::<_, Error>((
                        reader,
                        head_writer,
                        writer,
                        js,
                        stream,
                        counters,
                        impressions,
                    ))
                })
                .await
                .map_err(|_| unavailable("connecting", "timed out"))?
            })?;
        let mirror_snapshots = opts
            .mirror_snapshots
            .as_deref()
            .map(|root| mirrors::MirrorSnapshots::open(root, &opts.namespace))
            .transpose()?;
        let (mirror, mirror_dir, started_from, recent) =
            open_mirror(opts.store, mirror_snapshots.as_ref())?;
        let start = started_from.unwrap_or(mirrors::Position { version: 0, seq: 0 });
        let store = SharedStore {
            rt: Some(rt),
            postgres_url: opts.postgres_url.clone(),
            leader: tokio::sync::Mutex::new(None),
            keys: std::sync::Mutex::new(KeyCache::default()),
            applied_seq: AtomicU64::new(start.seq),
            applied_version: AtomicU64::new(start.version),
            unapplied: AtomicU64::new(0),
            pending_pages: std::sync::Mutex::new(Vec::new()),
            reader: tokio::sync::Mutex::new(Arc::new(reader)),
            head_writer: tokio::sync::Mutex::new(Arc::new(head_writer)),
            known_head: AtomicU64::new(0),
            writer: tokio::sync::Mutex::new(writer),
            queued: std::sync::Mutex::new(Vec::new()),
            next_write: AtomicU64::new(0),
            js,
            stream_created: stream.cached_info().created,
            stream,
            subject,
            schema,
            origin: format!(
                "{}-{:x}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos())
            ),
            mirror,
            _mirror_dir: mirror_dir,
            mirror_snapshots,
            started_from,
            erased_at: AtomicU64::new(0),
            counters,
            pools: pools::Pools::new(),
            impressions,
            applier: tokio::sync::Mutex::new(Applier {
                version: start.version,
                seq: start.seq,
                messages: None,
                outcomes: HashMap::new(),
                fresh: false,
                reading: false,
                reopened: None,
                checked: None,
                recent,
            }),
            diverged: AtomicBool::new(false),
            cut_off: AtomicBool::new(false),
            reported_ms: AtomicU64::new(0),
            born: std::time::Instant::now(),
            timeout,
            #[cfg(feature = "test-hooks")]
            crash_after_publish: AtomicBool::new(false),
            #[cfg(feature = "test-hooks")]
            before_publish: Hook::default(),
            #[cfg(feature = "test-hooks")]
            before_commit: Hook::default(),
        };
        store.runtime().block_on(async {
            // Before the check: a trim from then on leaves what this process still has
            // to apply.
            store.report_position(start).await?;
            let checked = store.check_logs_reach(start).await;
            if checked.is_err() {
                // Refused: its report would hold trims back for nothing.
                let _ = store.bounded("postgresql", store.forget_position()).await;
            }
            checked
        })?;
        // Everything logged so far, pages included, however long that takes: only each
        // call to a server is bounded. The stream head is raised to the stream's end
        // too, which covers batches an older build (which records no head) logged.
        store.runtime().block_on(async {
            // The head first: a raise committed after it is of a message the stream
            // already holds when its end is read next.
            let head = store.heads().await?.1;
            let ends = store.ends().await?;
            if head > ends.1 {
                return Err(Error::Unavailable {
                    what: format!(
                        "the stream ends at message {} but a batch at {head} was \
                         acknowledged ({}.stream_head): the stream lost acknowledged \
                         messages (a server restored from an older copy, or the stream \
                         made anew); to serve without them, stop every process, set that \
                         row's seq to {} and start them again",
                        ends.1, store.schema, ends.1
                    ),
                });
            }
            store.raise_stream_head(ends.1).await?;
            store.catch_up_to(ends).await?;
            // Others' pages are then applied as they come, with no catch-up waiting.
            let mut a = store.applier.lock().await;
            if a.messages.is_none() {
                store.open_consumer(&mut a).await?;
            }
            drop(a);
            store.report_position(store.applied_position()).await
        })?;
        Ok(store)
    }

    /// Fails when either log no longer holds what comes after `start` (the stream's
    /// messages removed by its retention or a purge, the change log's rows by
    /// [`SharedStore::trim_logs`]): a mirror missing them would serve without them; and
    /// when the mirror's snapshot is past either log.
    async fn check_logs_reach(&self, start: mirrors::Position) -> Result<()> {
        let first_message = self.first_message().await?;
        let seq = start.seq;
        if first_message > seq + 1 {
            return Err(Error::Unavailable {
                what: format!(
                    "the event log starts at message {first_message} but this process's \
                     mirror stands at {seq}: messages {} to {} are gone from the stream; \
                     start from a newer mirror snapshot ([shared] snapshot_dir)",
                    seq + 1,
                    first_message - 1
                ),
            });
        }
        let (version, last) = self.ends().await?;
        let first = self.first_change().await?;
        if version > start.version && first.is_none_or(|f| f > start.version + 1) {
            let first = first.unwrap_or(version + 1);
            return Err(Error::Unavailable {
                what: format!(
                    "the change log starts at version {first} but this process's mirror \
                     stands at {}: versions {} to {} were trimmed away; start from a newer \
                     mirror snapshot ([shared] snapshot_dir)",
                    start.version,
                    start.version + 1,
                    first - 1
                ),
            });
        }
        // A snapshot past the logs (a server restored from an older backup, a stream made
        // anew) would skip what they log next.
        if self.started_from.is_some() && (start.seq > last || start.version > version) {
            return Err(Error::Unavailable {
                what: format!(
                    "the mirror snapshot {start:?} is past the logs (change version {version}, \
                     stream sequence {last}): it belongs to another deployment or to servers \
                     restored since; remove it"
                ),
            });
        }
        Ok(())
    }

    /// The sequence of the stream's first message (one past its last when it is empty).
    /// A stream made anew since this process started stops it: the messages it applied
    /// are gone, and the new ones are numbered as if they followed them.
    async fn first_message(&self) -> Result<u64> {
        let mut stream = self.stream.clone();
        let info = self
            .bounded("nats stream", stream.info())
            .await?
            .map_err(|e| unavailable("nats stream", e))?;
        if info.created != self.stream_created {
            return Err(self.fell_behind(
                "the stream was made anew since this process started: it lost acknowledged \
                 messages"
                    .into(),
            ));
        }
        Ok(info.state.first_sequence)
    }

    /// The oldest version the change log holds (`None`: it holds none).
    async fn first_change(&self) -> Result<Option<u64>> {
        let row = self
            .bounded(
                "postgresql",
                self.reader().await?.query_one(
                    &format!("SELECT min(version) FROM {}.changes", self.schema),
                    &[],
                ),
            )
            .await?
            .map_err(pg_error)?;
        Ok(row.get::<_, Option<i64>>(0).map(|v| v as u64))
    }

    /// Records where this process's mirror stands (in `<schema>.replicas`, by its
    /// origin), so that [`SharedStore::trim_logs`] leaves what it has still to apply.
    async fn report_position(&self, at: mirrors::Position) -> Result<()> {
        let reader = self.reader().await?;
        self.bounded(
            "postgresql",
            upsert_position(&reader, &self.schema, &self.origin, at),
        )
        .await?
        .map_err(pg_error)?;
        self.reported_ms
            .store(self.born.elapsed().as_millis() as u64, Ordering::Release);
        Ok(())
    }

    /// Removes this process's report of where its mirror stands.
    async fn forget_position(&self) -> Result<()> {
        self.reader()
            .await?
            .execute(
                &format!("DELETE FROM {}.replicas WHERE origin = $1", self.schema),
                &[&self.origin],
            )
            .await
            .map(drop)
            .map_err(pg_error)
    }

    /// Reports the mirror's positions in the background when the last report is older
    /// than [`REPORT_EVERY`] (a catch-up calls it; nothing waits on it).
    fn report_position_when_due(&self) {
        let now = self.born.elapsed().as_millis() as u64;
        let last = self.reported_ms.load(Ordering::Acquire);
        if now.saturating_sub(last) < REPORT_EVERY.as_millis() as u64
            || self
                .reported_ms
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return;
        }
        let at = self.applied_position();
        let reader = self.reader.try_lock().ok().map(|c| Arc::clone(&c));
        let (Some(reader), schema, origin) = (reader, self.schema.clone(), self.origin.clone())
        else {
            // The connection is being replaced: the next catch-up reports.
            self.reported_ms.store(last, Ordering::Release);
            return;
        };
        let timeout = self.timeout;
        self.runtime().spawn(async move {
            let done =
                tokio::time::timeout(timeout, upsert_position(&reader, &schema, &origin, at)).await;
            if !matches!(done, Ok(Ok(_))) {
                tracing::warn!("could not report this replica's log positions");
            }
        });
    }

    /// Where the mirror stands, read without the applier's lock (at most what it has
    /// applied).
    fn applied_position(&self) -> mirrors::Position {
        mirrors::Position {
            version: self.applied_version.load(Ordering::Acquire),
            seq: self.applied_seq.load(Ordering::Acquire),
        }
    }

    /// The mirror snapshot this process started from (`None`: it replayed both logs).
    pub fn started_from(&self) -> Option<mirrors::Position> {
        self.started_from
    }

    /// Writes a snapshot of this process's mirror to the deployment's mirror snapshots
    /// (see [`mirrors`]), caught up first: the files are copied while the process serves, then its applying
    /// of both logs waits while the copy is brought up to one instant, whose positions
    /// name the snapshot. A snapshot an erasure logged meanwhile would predate is
    /// removed again. Answers where the snapshot stands.
    pub fn save_mirror(&self) -> Result<mirrors::Saved> {
        let snapshots = self.mirror_snapshots.as_ref().ok_or_else(|| {
            Error::invalid(
                "shared.snapshot_dir",
                "mirror snapshots need a snapshot directory",
            )
        })?;
        // As new as the logs are: what the copy holds is then what any replica holds.
        self.catch_up()?;
        let mut copied = None;
        let position = snapshots.publish(|dir| {
            let (info, (applier, position)) = self.mirror.copy_to_holding(
                &dir.join(mirrors::STORE),
                &dir.join(mirrors::ERASURES),
                || {
                    let a = self.runtime().block_on(self.applier.lock());
                    let position = mirrors::Position {
                        version: a.version,
                        seq: a.seq,
                    };
                    (a, position)
                },
            )?;
            let recent = applier
                .recent
                .to_json()
                .map_err(|e| Error::internal("mirror snapshot", e));
            // A write that failed to commit after its change reached the mirror sets
            // this while it holds the applier: the copy may hold that change.
            let diverged = self.check();
            drop(applier);
            steerfeed_store::write_synced(&dir.join(mirrors::RELATIONS), &recent?)?;
            copied = Some(info);
            diverged.map(|()| position)
        })?;
        let (bytes, held_ms) = copied.map_or((0, 0), |c| (c.bytes, c.writes_held_ms));
        tracing::info!(
            version = position.version,
            seq = position.seq,
            bytes,
            held_ms,
            "mirror snapshot written"
        );
        // An erasure committed before the snapshot was renamed into place, but after
        // its own removal of older snapshots ran, is in the log now.
        self.catch_up()?;
        let erased = self.erased_at.load(Ordering::Acquire);
        if erased > position.version {
            snapshots.remove_older_than(erased)?;
        }
        Ok(mirrors::Saved {
            position,
            bytes,
            held_ms,
        })
    }

    /// Removes from the logs what no replica needs any more: the stream's messages (and,
    /// with [`Trim::Both`], the change log's rows) up to the oldest kept mirror
    /// snapshot, or up to where a process seen within `live_within` stands, when that is
    /// further back (a process reports its positions as it catches up). A replica
    /// starting afterwards starts from a mirror snapshot; one without any, or a process
    /// that fell further behind unseen, is refused with the gap named. Answers `None`
    /// when there is no mirror snapshot to trim to.
    pub fn trim_logs(&self, live_within: Duration, which: Trim) -> Result<Option<Trimmed>> {
        let snapshots = self.mirror_snapshots.as_ref().ok_or_else(|| {
            Error::invalid(
                "shared.snapshot_dir",
                "trimming the logs needs mirror snapshots to start from",
            )
        })?;
        let Some((oldest, _)) = snapshots.list()?.into_iter().next() else {
            return Ok(None);
        };
        self.block("trimming the logs", async {
            // This process's own report may be older than what it holds.
            self.report_position(self.applied_position()).await?;
            let reader = self.reader().await?;
            let live = reader
                .query_one(
                    &format!(
                        "SELECT min(version), min(seq) FROM {}.replicas \
                         WHERE seen_at > now() - make_interval(secs => $1)",
                        self.schema
                    ),
                    &[&live_within.as_secs_f64()],
                )
                .await
                .map_err(pg_error)?;
            let floor = mirrors::Position {
                version: live
                    .get::<_, Option<i64>>(0)
                    .map_or(oldest.version, |v| oldest.version.min(v as u64)),
                seq: live
                    .get::<_, Option<i64>>(1)
                    .map_or(oldest.seq, |s| oldest.seq.min(s as u64)),
            };
            let mut changes = 0;
            if which == Trim::Both {
                // Under the version row's lock, as writes are: an erasure rewriting old
                // rows and this deleting them never wait on each other's rows.
                let mut client = connect_pg(&self.postgres_url).await?;
                let tx = client.transaction().await.map_err(pg_error)?;
                tx.execute(
                    &format!(
                        "SELECT version FROM {}.change_meta WHERE id = 1 FOR UPDATE",
                        self.schema
                    ),
                    &[],
                )
                .await
                .map_err(pg_error)?;
                changes = tx
                    .execute(
                        &format!("DELETE FROM {}.changes WHERE version <= $1", self.schema),
                        &[&(floor.version as i64)],
                    )
                    .await
                    .map_err(pg_error)?;
                tx.execute(
                    &format!(
                        "DELETE FROM {}.change_people WHERE version <= $1",
                        self.schema
                    ),
                    &[&(floor.version as i64)],
                )
                .await
                .map_err(pg_error)?;
                tx.commit().await.map_err(pg_error)?;
            }
            reader
                .execute(
                    &format!(
                        "DELETE FROM {}.replicas WHERE seen_at < now() - interval '7 days'",
                        self.schema
                    ),
                    &[],
                )
                .await
                .map_err(pg_error)?;
            // Everything before `floor.seq + 1`.
            let messages = self
                .stream
                .purge()
                .sequence(floor.seq + 1)
                .await
                .map_err(|e| unavailable("nats stream purge", e))?
                .purged;
            tracing::info!(
                version = floor.version,
                seq = floor.seq,
                changes,
                messages,
                "logs trimmed"
            );
            Ok(Some(Trimmed {
                upto: floor,
                changes,
                messages,
            }))
        })
    }

    /// True when mirror snapshots are kept and none is newer than the last erasure this
    /// process applied (or there is none): a replica starting now would find none.
    pub fn mirror_snapshot_missing(&self) -> bool {
        let Some(snapshots) = &self.mirror_snapshots else {
            return false;
        };
        match snapshots.newest() {
            Ok(Some((p, _))) => p.version < self.erased_at.load(Ordering::Acquire),
            Ok(None) => true,
            Err(_) => false,
        }
    }

    /// Notes an erasure at change `version` and removes the mirror snapshots older than
    /// it.
    fn erased(&self, version: u64) {
        self.erased_at.fetch_max(version, Ordering::AcqRel);
        if let Some(snapshots) = &self.mirror_snapshots
            && let Err(e) = snapshots.remove_older_than(version)
        {
            tracing::error!(error = %e, "erasure: cannot remove the mirror snapshots older than it");
        }
    }

    /// Test hook: the next message published stops this store once the stream has
    /// acknowledged it, before this process records the stream's head or applies
    /// anything (every later call fails), as a process killed between the two would.
    #[cfg(feature = "test-hooks")]
    pub fn crash_after_next_publish(&self) {
        self.crash_after_publish.store(true, Ordering::Release);
    }

    /// Test hook: drops the stream consumer and what its client received but this
    /// process has not applied, as a lost connection would; the next catch-up reads the
    /// stream again after the last message applied.
    #[cfg(feature = "test-hooks")]
    pub fn drop_stream_consumer(&self) {
        self.runtime().block_on(self.applier.lock()).messages = None;
    }

    /// Test hook: `f` runs once the next ingest has validated its batch (its mirror
    /// caught up), before it publishes it, as a write on another replica landing
    /// between the two would.
    #[cfg(feature = "test-hooks")]
    pub fn before_next_publish(&self, f: Box<dyn FnOnce() + Send>) {
        self.before_publish.set(f);
    }

    /// Test hook: `f` runs once the next group of writes is applied to the mirror,
    /// before the transaction that logs them commits, as a server lost at that moment
    /// would be.
    #[cfg(feature = "test-hooks")]
    pub fn before_next_commit(&self, f: Box<dyn FnOnce() + Send>) {
        self.before_commit.set(f);
    }

    /// Test hook: how long before its cutoff a read of the impression log starts, by
    /// the time the stream took each page (a day unless set).
    #[cfg(feature = "test-hooks")]
    pub fn set_impression_read_margin(&self, margin: Duration) {
        self.impressions.margin_ms.store(
            i64::try_from(margin.as_millis()).unwrap_or(i64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Test hook: records a page as builds before the impression stream did, its
    /// impressions in the page's own message (every mirror that applies it logs them).
    #[cfg(feature = "test-hooks")]
    pub fn record_page_as_an_older_build(
        &self,
        user: &UserId,
        page: &ServedPage<'_>,
        now: Timestamp,
    ) -> Result<()> {
        let message = page::Page {
            impressions: page.impressions.cloned(),
            ..page_message(user, page, now)
        };
        self.send_page(message, None)
    }

    /// True while this process leads the deployment (writes its index snapshots): the
    /// first to take PostgreSQL's advisory lock of the namespace holds it as long as its
    /// session lives, so another process takes over when it dies.
    pub fn try_lead(&self) -> Result<bool> {
        self.block("postgresql", async {
            let mut leader = self.leader.lock().await;
            if leader.as_ref().is_some_and(|c| !c.is_closed()) {
                return Ok(true);
            }
            *leader = None;
            let client = connect_pg(&self.postgres_url).await?;
            let took: bool = client
                .query_one(
                    "SELECT pg_try_advisory_lock(hashtext($1))",
                    &[&format!("steerfeed lead {}", self.schema)],
                )
                .await
                .map_err(pg_error)?
                .get(0);
            if took {
                *leader = Some(client);
            }
            Ok(took)
        })
    }

    /// The mirror this process answers from.
    pub fn mirror(&self) -> &Store {
        &self.mirror
    }

    /// The change version and stream sequence this process's mirror has applied.
    pub fn applied(&self) -> (u64, u64) {
        let a = self.runtime().block_on(self.applier.lock());
        (a.version, a.seq)
    }

    fn check(&self) -> Result<()> {
        if self.diverged.load(Ordering::Acquire) {
            return Err(Error::Unavailable {
                what: "this process's mirror took a write the database did not commit; \
                       restart the process"
                    .into(),
            });
        }
        if self.cut_off.load(Ordering::Acquire) {
            return Err(Error::Unavailable {
                what: "this process's mirror fell behind what the logs keep (entries it \
                       still needed were trimmed or expired); restart the process: it then \
                       starts from the newest mirror snapshot"
                    .into(),
            });
        }
        Ok(())
    }

    /// True once the mirror met a gap in either log (entries it needed were trimmed or
    /// expired): the process serves nothing more and must be restarted.
    pub fn cut_off(&self) -> bool {
        self.cut_off.load(Ordering::Acquire)
    }

    /// True once the process can serve nothing more until it is started again: its
    /// mirror fell behind what the logs keep ([`SharedStore::cut_off`]), or may hold what
    /// they do not (a write whose commit failed, a logged change or batch that did not
    /// apply here).
    pub fn must_restart(&self) -> bool {
        self.cut_off() || self.diverged.load(Ordering::Acquire)
    }

    /// Marks the mirror as unable to follow the logs (see `cut_off`) and answers why.
    fn fell_behind(&self, what: String) -> Error {
        self.cut_off.store(true, Ordering::Release);
        tracing::error!(gap = %what, "this process's mirror needs log entries that are gone; restart it");
        Error::Unavailable {
            what: format!(
                "{what}: this process's mirror needs log entries that are gone; restart it"
            ),
        }
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        match &self.rt {
            Some(rt) => rt,
            // Only `drop` takes it.
            None => unreachable!("the runtime is taken only when the store is dropped"),
        }
    }

    /// Runs `f` on the store's runtime within the timeout.
    fn block<T>(&self, what: &str, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        self.check()?;
        self.runtime()
            .block_on(async { self.bounded(what, f).await? })
    }

    /// The reading connection, connected again first when the last one was lost.
    async fn reader(&self) -> Result<Arc<tokio_postgres::Client>> {
        self.connected(&self.reader).await
    }

    /// The client in `slot`, connected again first when the last one was lost.
    async fn connected(
        &self,
        slot: &tokio::sync::Mutex<Arc<tokio_postgres::Client>>,
    ) -> Result<Arc<tokio_postgres::Client>> {
        let mut client = slot.lock().await;
        if client.is_closed() {
            *client = Arc::new(connect_pg(&self.postgres_url).await?);
        }
        Ok(Arc::clone(&client))
    }

    /// What every write acknowledged so far is within: the change log's version and the
    /// stream sequence of the last event batch acknowledged (`stream_head`), in one
    /// PostgreSQL round trip. Pages' messages, which no caller waits for, do not count:
    /// a feed waits for no other feed's page.
    async fn heads(&self) -> Result<(u64, u64)> {
        // The simple protocol: one round trip (an extended query would prepare first).
        let read = async {
            let rows = self
                .reader()
                .await?
                .simple_query(&format!(
                    "SELECT m.version, h.seq FROM {0}.change_meta m, {0}.stream_head h \
                     WHERE m.id = 1 AND h.id = 1",
                    self.schema
                ))
                .await
                .map_err(pg_error)?;
            let row = rows.iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
                _ => None,
            });
            let column = |i: usize| {
                row.and_then(|r| r.get(i))
                    .and_then(|v| v.parse::<u64>().ok())
            };
            match (column(0), column(1)) {
                (Some(version), Some(seq)) => {
                    self.known_head.fetch_max(seq, Ordering::AcqRel);
                    Ok((version, seq))
                }
                _ => Err(Error::internal(
                    "change log",
                    "no version or stream head row",
                )),
            }
        };
        self.bounded("reading the logs' heads", read).await?
    }

    /// The change log's version and the stream's last sequence, whatever the message
    /// (pages included).
    async fn ends(&self) -> Result<(u64, u64)> {
        let seq = async {
            self.stream
                .get_info()
                .await
                .map(|i| i.state.last_sequence)
                .map_err(|e| unavailable("nats stream", e))
        };
        let (heads, seq) = self
            .bounded("reading the logs' ends", async {
                tokio::join!(self.heads(), seq)
            })
            .await?;
        Ok((heads?.0, seq?))
    }

    /// Records that the batch at `seq` was acknowledged: every catch-up from then on
    /// applies the stream up to it. Idempotent, and in any order.
    async fn raise_stream_head(&self, seq: u64) -> Result<()> {
        if self.known_head.load(Ordering::Acquire) >= seq {
            // A head read or raised since holds it already.
            return Ok(());
        }
        let statement = format!(
            "UPDATE {}.stream_head SET seq = greatest(seq, {seq}) WHERE id = 1",
            self.schema
        );
        self.bounded("postgresql", async {
            self.connected(&self.head_writer)
                .await?
                .simple_query(&statement)
                .await
                .map_err(pg_error)
        })
        .await??;
        self.known_head.fetch_max(seq, Ordering::AcqRel);
        Ok(())
    }

    /// Applies the changes after the mirror's version up to `upto`, read through `client`.
    async fn apply_changes(
        &self,
        a: &mut Applier,
        client: &impl GenericClient,
        upto: u64,
    ) -> Result<()> {
        while a.version < upto {
            self.apply_change_page(a, client, upto).await?;
        }
        Ok(())
    }

    /// Applies the next [`CHANGES_PER_READ`] changes after the mirror's version (fewer
    /// when they hold more than [`CHANGE_BYTES_PER_READ`]; at least one), up to
    /// `upto`.
    async fn apply_change_page(
        &self,
        a: &mut Applier,
        client: &impl GenericClient,
        upto: u64,
    ) -> Result<()> {
        let rows = self
            .bounded(
                "postgresql",
                client.query(
                    &format!(
                        "SELECT version, body::text FROM (\
                           SELECT version, body, sum(pg_column_size(body)) \
                             OVER (ORDER BY version) - pg_column_size(body) AS before \
                           FROM (SELECT version, body FROM {}.changes \
                                 WHERE version > $1 AND version <= $2 \
                                 ORDER BY version LIMIT {}) page\
                         ) sized WHERE before < {} ORDER BY version",
                        self.schema, CHANGES_PER_READ, CHANGE_BYTES_PER_READ
                    ),
                    &[&(a.version as i64), &(upto as i64)],
                ),
            )
            .await?
            .map_err(pg_error)?;
        if rows.is_empty() {
            return Err(self.fell_behind(format!(
                "the change log lacks versions {} to {upto}",
                a.version + 1
            )));
        }
        for row in rows {
            let version = row.get::<_, i64>(0) as u64;
            if version != a.version + 1 {
                return Err(self.fell_behind(format!(
                    "the change log lacks versions {} to {}",
                    a.version + 1,
                    version - 1
                )));
            }
            let body: String = row.get(1);
            let change: Change = serde_json::from_str(&body)
                .map_err(|e| Error::internal("change log", format!("version {version}: {e}")))?;
            lock_keys(&self.keys).forget_for(&change);
            if let Err(e) = change.apply(&self.mirror) {
                // Every mirror applies the same changes in the same order, and a change
                // depends only on earlier changes: one the writer's mirror took and this
                // one refuses means this mirror failed (its disk, say).
                self.diverged.store(true, Ordering::Release);
                tracing::error!(version, error = %e, "a logged change did not apply here");
                return Err(e);
            }
            self.applied_change(a, &change, version);
        }
        Ok(())
    }

    /// Notes that the mirror holds change `version` (applied from the log, or written
    /// here and committed).
    fn applied_change(&self, a: &mut Applier, change: &Change, version: u64) {
        if matches!(change, Change::Erase { .. }) {
            self.erased(version);
        }
        a.recent.note_change(change, version);
        a.version = version;
        self.applied_version.store(version, Ordering::Release);
        self.report_position_when_due();
    }

    /// `f` within the timeout of one call to a server.
    async fn bounded<T>(&self, what: &str, f: impl std::future::Future<Output = T>) -> Result<T> {
        tokio::time::timeout(self.timeout, f)
            .await
            .map_err(|_| unavailable(what, "timed out"))
    }

    /// Applies the stream's messages after the mirror's sequence up to `upto`.
    async fn apply_messages(&self, a: &mut Applier, upto: u64) -> Result<()> {
        self.apply_stream(a, upto, true).await
    }

    /// Opens an ordered consumer delivering the stream from the mirror's next message;
    /// fails when messages after the mirror are gone (trimmed, or expired): what
    /// follows would be applied without them.
    async fn open_consumer(&self, a: &mut Applier) -> Result<()> {
        let first = self.first_message().await?;
        if first > a.seq + 1 {
            return Err(self.lacks_messages(a, first));
        }
        let consumer = self
            .stream
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: a.seq + 1,
                },
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable("nats consumer", e))?;
        a.messages = Some(
            consumer
                .messages()
                .await
                .map_err(|e| unavailable("nats consumer", e))?,
        );
        a.fresh = true;
        Ok(())
    }

    /// The stream holds no messages between the mirror's last one and `next`: what
    /// follows would be applied without them.
    fn lacks_messages(&self, a: &Applier, next: u64) -> Error {
        self.fell_behind(format!(
            "the stream lacks messages {} to {}",
            a.seq + 1,
            next - 1
        ))
    }

    /// [`SharedStore::apply_messages`]; without `wait`, only what the consumer already
    /// holds, at most [`DELIVERED_PER_CALL`] messages.
    async fn apply_stream(&self, a: &mut Applier, upto: u64, wait: bool) -> Result<()> {
        if a.reading {
            a.messages = None;
            a.reading = false;
        }
        let mut budget = if wait { u64::MAX } else { DELIVERED_PER_CALL };
        while a.seq < upto && budget > 0 {
            budget -= 1;
            if a.messages.is_none() {
                if !wait {
                    // Made by the next call that waits (no round trip here).
                    return Ok(());
                }
                self.open_consumer(a).await?;
            }
            let Some(messages) = a.messages.as_mut() else {
                continue;
            };
            // Until the message is applied: a call given up on before makes the consumer
            // anew, which delivers it again.
            a.reading = true;
            let next = if wait {
                self.bounded("nats consumer", messages.next()).await
            } else {
                match messages.next().now_or_never() {
                    Some(next) => Ok(next),
                    None => {
                        a.reading = false;
                        return Ok(());
                    }
                }
            };
            let message = match next.inspect_err(|_| a.messages = None)? {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    a.messages = None;
                    return Err(unavailable("nats consumer", e));
                }
                None => {
                    a.messages = None;
                    return Err(unavailable("nats consumer", "ended"));
                }
            };
            let seq = match message.info() {
                Ok(info) => info.stream_sequence,
                Err(e) => {
                    a.messages = None;
                    return Err(unavailable("nats message", e));
                }
            };
            if seq <= a.seq {
                a.reading = false;
                continue;
            }
            if seq > a.seq + 1 {
                a.messages = None;
                a.reading = false;
                if a.fresh {
                    // Messages missing inside the stream (deleted one by one).
                    return Err(self.lacks_messages(a, seq));
                }
                // A message was taken from the consumer but not applied (a call given up
                // on at an await), or the stream lost some: a consumer made anew from
                // the last one applied tells the two apart.
                continue;
            }
            // The writes its publisher had applied come first (an event of a person
            // created just before it must find them).
            let stamp = message
                .headers
                .as_ref()
                .and_then(|h| h.get(STAMP))
                .and_then(|v| v.as_str().parse::<u64>().ok())
                .unwrap_or(0);
            if stamp > a.version {
                let reader = self.reader().await?;
                self.apply_changes(a, &*reader, stamp).await?;
            }
            let own = message
                .headers
                .as_ref()
                .and_then(|h| h.get(ORIGIN))
                .is_some_and(|o| o.as_str() == self.origin);
            let kind = message
                .headers
                .as_ref()
                .and_then(|h| h.get(KIND))
                .map(|k| k.as_str().to_string())
                .unwrap_or_default();
            let plain = match self.open_sealed(&message.payload).await {
                Ok(plain) => plain,
                Err(e) => {
                    // Not applied: the next call reads it again.
                    a.messages = None;
                    return Err(e);
                }
            };
            let outcome = self.apply_message(seq, (&kind, stamp), plain, &mut a.recent);
            a.seq = seq;
            a.reading = false;
            self.applied_seq.store(seq, Ordering::Release);
            self.report_position_when_due();
            a.fresh = false;
            if own {
                a.outcomes.insert(seq, outcome);
                if a.outcomes.len() as u64 > KEPT_OUTCOMES {
                    let floor = seq.saturating_sub(KEPT_OUTCOMES);
                    a.outcomes.retain(|s, _| *s > floor);
                }
            }
        }
        Ok(())
    }

    /// Applies one stream message to the mirror, given the plaintexts of its entries
    /// (`None`: sealed with the key of a person erased since, left out).
    /// `kind` and `stamp` are the message's headers.
    fn apply_message(
        &self,
        seq: u64,
        (kind, stamp): (&str, u64),
        plain: Vec<Option<Vec<u8>>>,
        recent: &mut relations::Recent,
    ) -> Outcome {
        match kind {
            "events" => {
                let mut events = Vec::with_capacity(plain.len());
                for p in plain.into_iter().flatten() {
                    match serde_json::from_slice::<Event>(&p) {
                        Ok(e) => events.push(e),
                        Err(e) => {
                            tracing::error!(seq, error = %e, "unreadable event in the event log");
                            return Outcome::Events(Err(Error::internal("event log", e)));
                        }
                    }
                }
                Outcome::Events(self.apply_batch(seq, events, stamp, recent))
            }
            "page" => {
                let Some(Some(p)) = plain.into_iter().next() else {
                    // The page of a person erased since: nothing to record.
                    return Outcome::Other;
                };
                let page = match page::Page::decode(&p) {
                    Ok(page) => page,
                    Err(e) => {
                        tracing::error!(seq, error = %e, "unreadable page in the event log");
                        return Outcome::Other;
                    }
                };
                let served = ServedPage {
                    videos: &page.videos,
                    checkin: page.checkin,
                    break_card: page.break_card,
                    impressions: page.impressions.as_ref(),
                };
                if let Err(e) = self.mirror.record_page(&page.user, &served, page.at) {
                    // A lost page only means an item may be served again.
                    tracing::error!(seq, error = %e, "a logged page did not apply here");
                }
                Outcome::Other
            }
            other => {
                tracing::error!(
                    seq,
                    kind = other,
                    "a message of unknown kind in the event log"
                );
                Outcome::Other
            }
        }
    }

    /// The plaintexts of a sealed message's entries, each `None` when its person's key
    /// is gone (erased).
    async fn open_sealed(&self, payload: &[u8]) -> Result<Vec<Option<Vec<u8>>>> {
        let entries = seal::entries(payload)?;
        let missing: Vec<Vec<u8>> = {
            let cache = lock_keys(&self.keys);
            let mut ids: Vec<KeyId> = entries
                .iter()
                .map(|e| e.key)
                .filter(|k| !cache.by_id.contains_key(k))
                .collect();
            ids.sort_unstable();
            ids.dedup();
            ids.into_iter().map(|k| k.to_vec()).collect()
        };
        if !missing.is_empty() {
            let rows = self
                .reader()
                .await?
                .query(
                    &format!(
                        "SELECT user_id, key_id, key FROM {}.person_keys WHERE key_id = ANY($1)",
                        self.schema
                    ),
                    &[&missing],
                )
                .await
                .map_err(pg_error)?;
            let mut cache = lock_keys(&self.keys);
            for row in rows {
                let user = UserId::new(row.get::<_, String>(0))?;
                // An erased person's row keeps no key.
                if let Some(bytes) = row.get::<_, Option<Vec<u8>>>(2) {
                    let key = PersonKey::from_parts(row.get(1), &bytes)?;
                    cache.insert(user, Arc::new(key));
                }
            }
            for id in &missing {
                if let Ok(id) = KeyId::try_from(id.as_slice()) {
                    cache.by_id.entry(id).or_insert(None);
                }
            }
        }
        let cache = lock_keys(&self.keys);
        Ok(entries
            .iter()
            .map(|e| match cache.by_id.get(&e.key) {
                Some(Some((_, key))) => e.open(key),
                _ => None,
            })
            .collect())
    }

    /// The keys of `users`, made (in PostgreSQL, once per person) when missing.
    async fn keys_for(&self, users: &[&UserId]) -> Result<HashMap<UserId, Arc<PersonKey>>> {
        let mut out = HashMap::with_capacity(users.len());
        let mut missing = Vec::new();
        {
            let cache = lock_keys(&self.keys);
            for u in users {
                match cache.by_user.get(*u) {
                    Some(k) => {
                        out.insert((*u).clone(), Arc::clone(k));
                    }
                    None => missing.push((*u).clone()),
                }
            }
        }
        missing.sort();
        missing.dedup();
        if missing.is_empty() {
            return Ok(out);
        }
        let names: Vec<String> = missing.iter().map(|u| u.as_str().to_owned()).collect();
        let (ids, keys): (Vec<Vec<u8>>, Vec<Vec<u8>>) = missing
            .iter()
            .map(|_| {
                let (id, key) = seal::new_key();
                (id.to_vec(), key)
            })
            .unzip();
        let reader = self.reader().await?;
        // A key made by another process first wins: the insert leaves it alone.
        reader
            .execute(
                &format!(
                    "INSERT INTO {}.person_keys (user_id, key_id, key) \
                     SELECT * FROM unnest($1::text[], $2::bytea[], $3::bytea[]) \
                     ON CONFLICT (user_id) DO NOTHING",
                    self.schema
                ),
                &[&names, &ids, &keys],
            )
            .await
            .map_err(pg_error)?;
        let rows = reader
            .query(
                &format!(
                    "SELECT user_id, key_id, key FROM {}.person_keys WHERE user_id = ANY($1)",
                    self.schema
                ),
                &[&names],
            )
            .await
            .map_err(pg_error)?;
        let mut cache = lock_keys(&self.keys);
        for row in rows {
            let user = UserId::new(row.get::<_, String>(0))?;
            let Some(bytes) = row.get::<_, Option<Vec<u8>>>(2) else {
                // Erased: nothing more is published about them.
                return Err(Error::not_found(steerfeed_core::Entity::User, &user));
            };
            let key = Arc::new(PersonKey::from_parts(row.get(1), &bytes)?);
            cache.insert(user.clone(), Arc::clone(&key));
            out.insert(user, key);
        }
        Ok(out)
    }

    /// Applies a logged batch. It was valid when logged; an event that no longer is (its
    /// user erased since) is left out and the rest apply, on every process alike.
    /// The follows and mutes its events made that a change later in the one order of
    /// both logs had ended here are then ended again (`relations`).
    fn apply_batch(
        &self,
        seq: u64,
        mut events: Vec<Event>,
        stamp: u64,
        recent: &mut relations::Recent,
    ) -> Result<(IngestReport, Logged)> {
        if self.mirror.validate_events(&events).is_err() {
            let before = events.len();
            events.retain(|e| self.mirror.validate_events(std::slice::from_ref(e)).is_ok());
            tracing::warn!(
                seq,
                dropped = before - events.len(),
                "events no longer valid were left out of a logged batch"
            );
        }
        let applied = self.mirror.apply_logged_events(&events);
        match &applied {
            Ok((_, logged)) => {
                let edges: Vec<_> = logged
                    .accepted
                    .iter()
                    .filter_map(|&i| events.get(i))
                    .filter_map(|e| {
                        let (video, relation) = match &e.kind {
                            steerfeed_core::EventKind::Follow { video } => {
                                (video, Relation::Follow)
                            }
                            steerfeed_core::EventKind::HideCreator { video } => {
                                (video, Relation::Mute)
                            }
                            _ => return None,
                        };
                        let creator = self.mirror.video(video).ok()??.creator.clone();
                        Some((e.user.clone(), creator, relation))
                    })
                    .collect();
                // Both people known: a follow of someone erased was never made here.
                let known = |u: &UserId| self.mirror.user(u).is_ok_and(|u| u.is_some());
                let ended: Vec<_> = recent
                    .note_edges(stamp, edges)
                    .into_iter()
                    .filter(|(a, b, _)| known(a) && known(b))
                    .map(|(a, b, r)| (a, b, r, false))
                    .collect();
                if !ended.is_empty() {
                    tracing::debug!(
                        seq,
                        ended = ended.len(),
                        "relations a later change had ended"
                    );
                    if let Err(e) = self.mirror.set_relations(&ended) {
                        self.diverged.store(true, Ordering::Release);
                        tracing::error!(seq, error = %e, "a logged batch's relations did not apply here");
                        return Err(e);
                    }
                }
            }
            Err(e) => {
                // Valid events the mirror could not take: it no longer follows the log.
                self.diverged.store(true, Ordering::Release);
                tracing::error!(seq, error = %e, "a logged batch did not apply here");
            }
        }
        applied
    }

    /// Brings the mirror up to both logs' heads.
    async fn catch_up_async(&self) -> Result<()> {
        self.report_position_when_due();
        let heads = self.heads().await?;
        self.catch_up_to(heads).await
    }

    /// Brings the mirror up to both logs' ends: every page's message too, which a
    /// catch-up does not wait for (an export holds every page served).
    fn catch_up_to_ends(&self) -> Result<()> {
        self.block("catching up", async {
            let ends = self.ends().await?;
            self.catch_up_to(ends).await
        })
    }

    /// Brings the mirror up to `(version, seq)`: the heads, or the logs' ends.
    async fn catch_up_to(&self, (version, seq): (u64, u64)) -> Result<()> {
        // Nothing new: no wait for the applier (which a mirror snapshot settling holds).
        if version <= self.applied_version.load(Ordering::Acquire)
            && seq <= self.applied_seq.load(Ordering::Acquire)
        {
            if let Ok(mut a) = self.applier.try_lock() {
                self.apply_delivered(&mut a).await;
            }
            return self.check();
        }
        let mut a = self.applier.lock().await;
        // The messages first: each comes right after the changes up to its stamp, which
        // is the one order of both logs (`relations`), then the changes after them.
        self.apply_messages(&mut a, seq).await?;
        let reader = self.reader().await?;
        self.apply_changes(&mut a, &*reader, version).await?;
        self.apply_delivered(&mut a).await;
        // A gap, or a change that would not apply, found past the heads stops this
        // process now.
        self.check()
    }

    /// Applies the messages the consumer already holds (others' pages, mostly: the
    /// heads leave them out), without waiting for any, at most [`DELIVERED_PER_CALL`].
    /// The mirror holds every acknowledged write already, so nothing here fails the
    /// catch-up or holds it past [`DELIVERED_WITHIN`]: what cannot be applied now is left
    /// for a later one. A lost consumer is made anew, at most once every
    /// [`REOPEN_EVERY`].
    async fn apply_delivered(&self, a: &mut Applier) {
        let within = DELIVERED_WITHIN.min(self.timeout);
        if tokio::time::timeout(within, self.apply_delivered_unbounded(a))
            .await
            .is_err()
        {
            tracing::debug!("others' pages left for a later catch-up: out of time");
        }
    }

    /// [`SharedStore::apply_delivered`] without its bound: a call given up on leaves
    /// `reading` set, so the consumer is made anew.
    async fn apply_delivered_unbounded(&self, a: &mut Applier) {
        if a.reading {
            a.messages = None;
            a.reading = false;
        }
        if a.checked.is_none_or(|t| t.elapsed() >= STREAM_CHECK_EVERY) {
            a.checked = Some(std::time::Instant::now());
            // A stream made anew stops the process there; a NATS that cannot answer
            // now is asked again next time.
            if let Err(e) = self.first_message().await {
                tracing::debug!(error = %e, "whether the stream was made anew is not known");
            }
        }
        if a.messages.is_none() {
            if a.reopened.is_some_and(|t| t.elapsed() < REOPEN_EVERY) {
                return;
            }
            a.reopened = Some(std::time::Instant::now());
            // Given up on half made, nothing is left to undo: `messages` stays empty.
            if let Err(e) = self.open_consumer(a).await {
                tracing::warn!(error = %e, "the stream's consumer could not be made again");
                return;
            }
        }
        if let Err(e) = self.apply_stream(a, u64::MAX, false).await {
            tracing::warn!(error = %e, "others' pages left for a later catch-up");
            a.messages = None;
        }
    }

    /// Logs one change and applies it (see the crate doc).
    fn write(&self, change: Change) -> Result<Option<steerfeed_core::ErasureReport>> {
        let body = serde_json::to_string(&change).map_err(|e| Error::internal("change", e))?;
        // PostgreSQL's jsonb refuses U+0000. Refused here, before the mirror takes the
        // change: refused after, the mirror would be ahead of the log and the process
        // would stop serving.
        if holds_nul(&body) {
            return Err(Error::invalid(
                "text",
                "holds a NUL character (U+0000), which text may not",
            ));
        }
        self.check()?;
        let (done, mut answer) = tokio::sync::oneshot::channel();
        let id = self.next_write.fetch_add(1, Ordering::Relaxed);
        lock_queue(&self.queued).push(Queued {
            id,
            change,
            body,
            done,
        });
        self.runtime().block_on(async {
            // Whoever holds the writing connection commits every write queued by then:
            // one transaction, one flush to disk, for all the writes that came in while
            // the last one committed.
            let Ok(mut client) = tokio::time::timeout(self.timeout, self.writer.lock()).await
            else {
                // Still queued: withdrawn, logged nowhere. Taken into a group: its answer
                // comes once that group's commit ends.
                let withdrawn = {
                    let mut queued = lock_queue(&self.queued);
                    let at = queued.iter().position(|q| q.id == id);
                    at.map(|i| queued.remove(i))
                };
                if withdrawn.is_some() {
                    return Err(unavailable("postgresql", "waiting to write timed out"));
                }
                return answer.await.unwrap_or_else(|_| Err(dropped()));
            };
            loop {
                match answer.try_recv() {
                    Ok(done) => return done,
                    Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {
                        return Err(dropped());
                    }
                    Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {}
                }
                let group = next_group(&mut lock_queue(&self.queued));
                if group.is_empty() {
                    return Err(dropped());
                }
                self.commit_group(&mut client, group).await;
            }
        })
    }

    /// Logs `group` (see [`SharedStore::write`]) in one transaction: each change is
    /// applied to the mirror in turn (one the mirror refuses is answered with its error
    /// and logged nowhere) and inserted under the next version; the version row is
    /// locked throughout. Every write's answer goes to its caller; an error before any
    /// change applied is answered to all of them.
    async fn commit_group(&self, client: &mut tokio_postgres::Client, group: Vec<Queued>) {
        if let Err(e) = self.check() {
            return answer_all(group, e);
        }
        // The applier before the version row: a process whose applier waits (a mirror
        // snapshot settling) then holds up its own writes, not every process's.
        let mut a = self.applier.lock().await;
        // Each call to the server is bounded, not the whole: a write abandoned between
        // the mirror taking it and the commit would leave the two apart unnoticed.
        let setup = async {
            if client.is_closed() {
                *client = self
                    .bounded("postgresql", connect_pg(&self.postgres_url))
                    .await??;
            }
            let tx = self
                .bounded("postgresql", client.transaction())
                .await?
                .map_err(pg_error)?;
            let lock_version = format!(
                "SELECT version FROM {}.change_meta WHERE id = 1 FOR UPDATE",
                self.schema
            );
            let version = self
                .bounded("postgresql", tx.query_one(&lock_version, &[]))
                .await?
                .map_err(pg_error)?
                .get::<_, i64>(0) as u64;
            Ok::<_, Error>((tx, version))
        };
        let (tx, version) = match setup.await {
            Ok(t) => t,
            Err(e) => return answer_all(group, e),
        };
        if let Err(e) = self.apply_changes(&mut a, &tx, version).await {
            return answer_all(group, e);
        }
        // Applied to the mirror, to be committed: (version, change, report, caller).
        let mut applied = Vec::with_capacity(group.len());
        let mut next = version;
        for q in group {
            match q.change.apply(&self.mirror) {
                Ok(report) => {
                    next += 1;
                    applied.push((next, q, report));
                }
                Err(e) => {
                    let _ = q.done.send(Err(e));
                }
            }
        }
        if applied.is_empty() {
            return;
        }
        // The mirror now holds the changes: from here on, failing to commit them leaves
        // the mirror ahead of the log.
        for (_, q, _) in &applied {
            lock_keys(&self.keys).forget_for(&q.change);
        }
        #[cfg(feature = "test-hooks")]
        self.before_commit.run();
        let committed = async {
            let mut rows = Rows::default();
            for (version, q, _) in &applied {
                if matches!(q.change, Change::Erase { .. } | Change::User { .. }) {
                    // What it does to keys and earlier rows needs those rows in the log.
                    self.insert_rows(&tx, &mut rows).await?;
                    self.change_keys(&tx, &q.change).await?;
                }
                rows.push(*version, &q.change, &q.body);
            }
            self.insert_rows(&tx, &mut rows).await?;
            tx.execute(
                &format!(
                    "UPDATE {}.change_meta SET version = $1 WHERE id = 1",
                    self.schema
                ),
                &[&(next as i64)],
            )
            .await?;
            tx.commit().await
        };
        let committed = self
            .bounded("postgresql", committed)
            .await
            .and_then(|r| r.map_err(pg_error));
        match committed {
            Ok(()) => {
                for (version, q, report) in applied {
                    self.applied_change(&mut a, &q.change, version);
                    let _ = q.done.send(Ok(report));
                }
            }
            Err(e) => {
                self.diverged.store(true, Ordering::Release);
                tracing::error!(error = %e, writes = applied.len(), "writes applied to the mirror were not committed");
                let group = applied.into_iter().map(|(_, q, _)| q).collect();
                answer_all(group, e)
            }
        }
    }

    /// What logging `change` does to person keys: an erasure removes the person's key
    /// (and scrubs the earlier rows naming them), an account made anew gets a new one.
    async fn change_keys(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        change: &Change,
    ) -> std::result::Result<(), tokio_postgres::Error> {
        match change {
            Change::Erase { user, .. } => {
                // The key goes; the row stays as a tombstone, so that nothing published
                // for them afterwards makes a new one.
                tx.execute(
                    &format!(
                        "UPDATE {}.person_keys SET key = NULL WHERE user_id = $1",
                        self.schema
                    ),
                    &[&user.as_str()],
                )
                .await?;
                self.scrub(tx, user.as_str()).await
            }
            Change::User { user } => {
                // A person erased before and created again gets a new key.
                tx.execute(
                    &format!(
                        "DELETE FROM {}.person_keys WHERE user_id = $1 AND key IS NULL",
                        self.schema
                    ),
                    &[&user.id.as_str()],
                )
                .await
                .map(drop)
            }
            _ => Ok(()),
        }
    }

    /// Inserts `rows` into the change log and its index of people in `tx`, two
    /// statements for all of them, and empties it.
    async fn insert_rows(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        rows: &mut Rows,
    ) -> std::result::Result<(), tokio_postgres::Error> {
        if rows.versions.is_empty() {
            return Ok(());
        }
        tx.execute(
            &format!(
                "INSERT INTO {}.changes (version, body) \
                 SELECT v, b::jsonb FROM unnest($1::bigint[], $2::text[]) AS r(v, b)",
                self.schema
            ),
            &[&rows.versions, &rows.bodies],
        )
        .await?;
        if !rows.people.is_empty() {
            tx.execute(
                &format!(
                    "INSERT INTO {}.change_people (user_id, version) \
                     SELECT * FROM unnest($1::text[], $2::bigint[]) ON CONFLICT DO NOTHING",
                    self.schema
                ),
                &[&rows.people, &rows.people_versions],
            )
            .await?;
        }
        *rows = Rows::default();
        Ok(())
    }

    /// Rewrites the earlier changes that say something of `user`, whom the change being
    /// logged in `tx` erases ([`Change::scrubbed`]).
    async fn scrub(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        user: &str,
    ) -> std::result::Result<(), tokio_postgres::Error> {
        let Ok(erased) = UserId::new(user) else {
            return Ok(());
        };
        // The changes naming them, by the log's index of people.
        let rows = tx
            .query(
                &format!(
                    "SELECT c.version, c.body::text FROM {s}.changes c \
                     JOIN {s}.change_people p ON p.version = c.version \
                     WHERE p.user_id = $1",
                    s = self.schema
                ),
                &[&user],
            )
            .await?;
        for row in rows {
            let version: i64 = row.get(0);
            let Ok(change) = serde_json::from_str::<Change>(row.get(1)) else {
                continue;
            };
            if let Some(scrubbed) = change.scrubbed(&erased)
                && let Ok(body) = serde_json::to_string(&scrubbed)
            {
                tx.execute(
                    &format!(
                        "UPDATE {}.changes SET body = $2::text::jsonb WHERE version = $1",
                        self.schema
                    ),
                    &[&version, &body],
                )
                .await?;
            }
        }
        // What is left naming them (their bare account) no longer needs finding.
        tx.execute(
            &format!(
                "DELETE FROM {}.change_people WHERE user_id = $1",
                self.schema
            ),
            &[&user],
        )
        .await?;
        Ok(())
    }

    /// Publishes one message to the event log and applies the log up to it; answers what
    /// applying it gave, or `None` when the stream dropped it as a retry.
    fn publish(
        &self,
        kind: &str,
        id: Option<String>,
        entries: Vec<(&UserId, Vec<u8>)>,
    ) -> Result<Option<Outcome>> {
        self.block("nats", async {
            let ack = self.send(kind, id, entries, true).await?;
            if ack.sequence == 0 {
                // A duplicate of a message the stream has not stored yet (its original
                // still in flight): nothing to wait for yet; the client retries.
                return Err(unavailable(
                    "nats publish",
                    "a retry of a batch still being stored",
                ));
            }
            #[cfg(feature = "test-hooks")]
            if self.crash_after_publish.swap(false, Ordering::AcqRel) {
                self.diverged.store(true, Ordering::Release);
                return Err(unavailable("test hook", "stopped after the publish"));
            }
            // Before anyone is answered: every catch-up from now on waits for it.
            self.raise_stream_head(ack.sequence).await?;
            let mut a = self.applier.lock().await;
            self.apply_messages(&mut a, ack.sequence).await?;
            if ack.duplicate {
                return Ok(None);
            }
            // Applied, here or by a catch-up meanwhile, and kept: missing, the stream
            // numbered the message again, having lost acknowledged ones.
            a.outcomes.remove(&ack.sequence).map(Some).ok_or_else(|| {
                self.fell_behind(format!(
                    "the stream acknowledged message {} that this process's mirror had \
                     applied as another: it lost acknowledged messages",
                    ack.sequence
                ))
            })
        })
    }

    /// Seals `entries` with their people's keys and publishes them as one message;
    /// answers the stream's acknowledgement. With `awaited`, this process keeps what
    /// applying it gives for [`SharedStore::publish`].
    async fn send(
        &self,
        kind: &str,
        id: Option<String>,
        entries: Vec<(&UserId, Vec<u8>)>,
        awaited: bool,
    ) -> Result<async_nats::jetstream::publish::PublishAck> {
        self.send_unacked(kind, id, entries, awaited)
            .await?
            .await
            .map_err(|e| unavailable("nats publish", e))
    }

    /// [`SharedStore::send`] without waiting for the stream's acknowledgement.
    async fn send_unacked(
        &self,
        kind: &str,
        id: Option<String>,
        entries: Vec<(&UserId, Vec<u8>)>,
        awaited: bool,
    ) -> Result<async_nats::jetstream::context::PublishAckFuture> {
        {
            // What the mirror had applied when the entries were validated, or since.
            let stamp = self.applied_version.load(Ordering::Acquire);
            let payload = self.seal_for(entries).await?;
            let mut message = jetstream::message::PublishMessage::build()
                .header(KIND, kind)
                .header(STAMP, stamp.to_string())
                .payload(payload.into());
            if awaited {
                message = message.header(ORIGIN, self.origin.as_str());
            }
            if let Some(id) = id {
                message = message.message_id(id);
            }
            self.js
                .send_publish(self.subject.clone(), message)
                .await
                .map_err(|e| unavailable("nats publish", e))
        }
    }

    /// Publishes a page's record (see [`Storage::record_page`]), then its impressions'
    /// (`impressions`, in the impression log's encoding), both in one call to the
    /// runtime. The page is recorded whatever becomes of its impressions: losing them
    /// costs the log one page, as a lost acknowledgement would, never the page.
    fn send_page(&self, message: page::Page, impressions: Option<Vec<u8>>) -> Result<()> {
        let user = &message.user;
        let payload = message
            .encode()
            .ok_or_else(|| Error::internal("page", "an id too long for the page format"))?;
        // Sent, not waited on (a page record may be lost, as the embedded store's may):
        // the next read of this viewer's serving state in this process waits for its
        // acknowledgement and applies it, another process's next catch-up finds it in
        // the stream.
        let (sent, logged) = self.block("nats", async {
            let sent = self
                .send_unacked("page", None, vec![(user, payload)], false)
                .await;
            let logged = match impressions {
                Some(record) if sent.is_ok() => Some(
                    async {
                        let sealed = self.seal_for(vec![(user, record)]).await?;
                        self.impressions.send(user, message.at, sealed).await
                    }
                    .await,
                ),
                _ => None,
            };
            Ok((sent, logged))
        })?;
        match logged {
            // Erased while the page was ranked: nothing to log.
            None | Some(Ok(()) | Err(Error::NotFound { .. })) => {}
            Some(Err(e)) => {
                tracing::warn!(user = %user, error = %e, "a served page's impressions were not logged")
            }
        }
        match sent {
            Ok(ack) => {
                let mut pending = lock_pages(&self.pending_pages);
                pending.push((user.clone(), ack));
                let full = pending.len() >= MAX_PENDING_PAGES;
                drop(pending);
                if full {
                    self.settle()?;
                }
                Ok(())
            }
            // A page served to a person erased while it was ranked records nothing.
            Err(Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `entries` sealed, each with its person's key (made when missing), as one payload.
    async fn seal_for(&self, entries: Vec<(&UserId, Vec<u8>)>) -> Result<Vec<u8>> {
        let users: Vec<&UserId> = entries.iter().map(|(u, _)| *u).collect();
        let keys = self.keys_for(&users).await?;
        let sealed: Vec<(Arc<PersonKey>, Vec<u8>)> = entries
            .into_iter()
            .map(|(u, plain)| {
                keys.get(u)
                    .map(|k| (Arc::clone(k), plain))
                    .ok_or_else(|| Error::internal("seal", "a person's key is missing"))
            })
            .collect::<Result<_>>()?;
        seal::seal(&sealed)
    }

    /// The earliest serving time (milliseconds) a read of the impression log from
    /// `since` gives: `since`, or the retention before the newest page when later.
    fn impression_cutoff(&self, since: Timestamp) -> Result<i64> {
        Ok(self
            .block("nats", self.impressions.cutoff(since))?
            .unwrap_or_else(|| since.as_millisecond()))
    }

    /// Calls `f` with the pages of the impression stream served at or after `cutoff`
    /// (milliseconds; see [`impressions::ImpressionLog::reader`]), numbered by their
    /// stream sequence; a page whose viewer was erased, or that does not read, is left
    /// out.
    fn read_impressions(
        &self,
        user: Option<&UserId>,
        cutoff: i64,
        f: &mut dyn FnMut(steerfeed_core::LoggedPage) -> Result<()>,
    ) -> Result<()> {
        /// Messages read, and opened, in one call to the servers.
        const BATCH: usize = 256;
        let Some(mut reader) = self.block("nats", self.impressions.reader(user, cutoff))? else {
            return Ok(());
        };
        while !reader.done() {
            let opened = self.block("nats", async {
                let batch = reader.next_batch(&self.impressions, BATCH).await?;
                let mut out = Vec::with_capacity(batch.len());
                for m in batch {
                    let plain = self.open_sealed(&m.payload).await?;
                    out.push((m.seq, plain.into_iter().next().flatten()));
                }
                Ok(out)
            })?;
            for (seq, plain) in opened {
                // Erased: their key is gone.
                let Some(plain) = plain else { continue };
                match steerfeed_store::decode_impressions(&plain) {
                    Ok(p) if user.is_none_or(|u| *u == p.user) => {
                        f(steerfeed_core::LoggedPage { seq, ..p })?;
                    }
                    Ok(_) => {
                        tracing::warn!(
                            seq,
                            "impression log: a message that names another page skipped"
                        );
                    }
                    Err(e) => {
                        tracing::warn!(seq, error = %e, "impression log: unreadable message skipped");
                    }
                }
            }
        }
        Ok(())
    }

    /// Applies the pages this process published and has not applied yet, so that a
    /// read of someone's serving state after their page was recorded sees it.
    fn settle(&self) -> Result<()> {
        self.settle_for(None)
    }

    /// Waits for the acknowledgements of the pages this process sent to `user` (every
    /// page with `None`) and applies the stream up to them: a read of someone's serving
    /// state then holds every page served to them, without waiting on others' pages (a
    /// page changes only its viewer's state).
    fn settle_for(&self, user: Option<&UserId>) -> Result<()> {
        let pending: Vec<_> = {
            let mut all = lock_pages(&self.pending_pages);
            match user {
                None => std::mem::take(&mut *all),
                Some(u) => {
                    let (mine, others) = std::mem::take(&mut *all)
                        .into_iter()
                        .partition(|(viewer, _)| viewer == u);
                    *all = others;
                    mine
                }
            }
        };
        if !pending.is_empty() {
            self.block("nats", async {
                for (_, ack) in pending {
                    match ack.await {
                        Ok(ack) => {
                            self.unapplied.fetch_max(ack.sequence, Ordering::AcqRel);
                        }
                        // A page record may be lost (an item may be served again).
                        Err(e) => tracing::warn!(error = %e, "a served page was not logged"),
                    }
                }
                Ok(())
            })?;
        }
        let wanted = self.unapplied.load(Ordering::Acquire);
        if wanted <= self.applied_seq.load(Ordering::Acquire) {
            return Ok(());
        }
        self.block("nats", async {
            let mut a = self.applier.lock().await;
            self.apply_messages(&mut a, wanted).await
        })
    }
}

/// What a served page's message carries: what serving state needs of it (its
/// impressions go to the impression stream).
fn page_message(user: &UserId, page: &ServedPage<'_>, now: Timestamp) -> page::Page {
    page::Page {
        user: user.clone(),
        videos: page.videos.to_vec(),
        checkin: page.checkin,
        break_card: page.break_card,
        at: now,
        impressions: None,
    }
}

/// Creates the schema's tables when missing, under an advisory lock so that processes
/// starting together do not race.
async fn create_schema(client: &mut tokio_postgres::Client, schema: &str) -> Result<()> {
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.execute("SELECT pg_advisory_xact_lock(7406013261)", &[])
        .await
        .map_err(pg_error)?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.change_meta (
             id int PRIMARY KEY CHECK (id = 1),
             version bigint NOT NULL
         );
         INSERT INTO {schema}.change_meta (id, version) VALUES (1, 0) ON CONFLICT DO NOTHING;
         CREATE TABLE IF NOT EXISTS {schema}.changes (
             version bigint PRIMARY KEY,
             at timestamptz NOT NULL DEFAULT now(),
             body jsonb NOT NULL
         );
         CREATE TABLE IF NOT EXISTS {schema}.change_people (
             user_id text NOT NULL,
             version bigint NOT NULL,
             PRIMARY KEY (user_id, version)
         );
         CREATE INDEX IF NOT EXISTS change_people_version ON {schema}.change_people (version);
         CREATE TABLE IF NOT EXISTS {schema}.person_keys (
             user_id text PRIMARY KEY,
             key_id bytea NOT NULL UNIQUE,
             key bytea
         );
         CREATE TABLE IF NOT EXISTS {schema}.stream_head (
             id int PRIMARY KEY CHECK (id = 1),
             seq bigint NOT NULL
         );
         INSERT INTO {schema}.stream_head (id, seq) VALUES (1, 0) ON CONFLICT DO NOTHING;
         CREATE TABLE IF NOT EXISTS {schema}.replicas (
             origin text PRIMARY KEY,
             version bigint NOT NULL,
             seq bigint NOT NULL,
             seen_at timestamptz NOT NULL
         );"
    ))
    .await
    .map_err(pg_error)?;
    tx.commit().await.map_err(pg_error)
}

impl Drop for SharedStore {
    fn drop(&mut self) {
        // Pages whose acknowledgement no one waited for let go while their client's
        // tasks still run (what the stream took stays there).
        lock_pages(&self.pending_pages).clear();
        self.impressions.abandon();
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Storage for SharedStore {
    fn catch_up(&self) -> Result<()> {
        self.block("catching up", self.catch_up_async())
    }

    fn upsert_videos(&self, videos: &[Video]) -> Result<()> {
        self.write(Change::Videos {
            videos: videos.to_vec(),
        })
        .map(drop)
    }

    fn delete_video(&self, id: &VideoId) -> Result<()> {
        self.write(Change::DeleteVideo { video: id.clone() })
            .map(drop)
    }

    fn intern_video(&self, id: &VideoId) -> VideoId {
        self.mirror.intern_video(id)
    }

    fn catalog_version(&self) -> u64 {
        Storage::catalog_version(&self.mirror)
    }

    fn catalog_changes_since(&self, version: u64) -> Result<Option<Vec<VideoId>>> {
        self.mirror.catalog_changes_since(version)
    }

    fn trim_catalog_log(&self, version: u64) -> Result<()> {
        self.mirror.trim_catalog_log(version)
    }

    fn for_each_embedding(
        &self,
        f: &mut dyn FnMut(
            VideoId,
            steerfeed_core::Embedding,
            Vec<steerfeed_core::TopicId>,
        ) -> Result<()>,
    ) -> Result<()> {
        Storage::for_each_embedding(&self.mirror, f)
    }

    fn video_count(&self) -> u64 {
        Storage::video_count(&self.mirror)
    }

    fn user_count(&self) -> Result<u64> {
        Storage::user_count(&self.mirror)
    }

    fn upsert_user(&self, user: &steerfeed_core::User) -> Result<()> {
        self.write(Change::User { user: user.clone() }).map(drop)
    }

    fn user(&self, id: &UserId) -> Result<Option<steerfeed_core::User>> {
        Storage::user(&self.mirror, id)
    }

    fn set_relation(&self, a: &UserId, b: &UserId, relation: Relation, on: bool) -> Result<()> {
        self.set_relations(&[(a.clone(), b.clone(), relation, on)])
    }

    fn set_relations(&self, items: &[(UserId, UserId, Relation, bool)]) -> Result<()> {
        self.write(Change::relations(items)).map(drop)
    }

    fn set_consent(
        &self,
        person: &UserId,
        scope: steerfeed_core::ConsentScope,
        approved: &[UserId],
    ) -> Result<()> {
        self.write(Change::Consent {
            person: person.clone(),
            scope,
            approved: approved.to_vec(),
        })
        .map(drop)
    }

    fn revoke_consent(&self, person: &UserId, revocation: &Revocation) -> Result<()> {
        self.write(Change::revoke(person, revocation)).map(drop)
    }

    fn set_parental_controls(
        &self,
        user: &UserId,
        controls: &steerfeed_core::ParentalControls,
    ) -> Result<()> {
        self.write(Change::ParentalControls {
            user: user.clone(),
            controls: controls.clone(),
        })
        .map(drop)
    }

    fn parental_controls(&self, user: &UserId) -> Result<steerfeed_core::ParentalControls> {
        Storage::parental_controls(&self.mirror, user)
    }

    fn set_preferences(&self, user: &UserId, text: &str, constraints: &Constraints) -> Result<()> {
        self.write(Change::Preferences {
            user: user.clone(),
            text: text.to_string(),
            constraints: constraints.clone(),
        })
        .map(drop)
    }

    fn preferences(&self, user: &UserId) -> Result<Option<Preferences>> {
        Storage::preferences(&self.mirror, user)
    }

    fn clear_preferences(&self, user: &UserId) -> Result<()> {
        self.write(Change::ClearPreferences { user: user.clone() })
            .map(drop)
    }

    fn active_constraints(&self, user: &UserId, now: Timestamp) -> Result<Constraints> {
        Storage::active_constraints(&self.mirror, user, now)
    }

    fn wellbeing(&self, user: &UserId, now: Timestamp) -> Result<steerfeed_core::WellbeingState> {
        self.settle_for(Some(user))?;
        Storage::wellbeing(&self.mirror, user, now)
    }

    fn load_viewer(&self, user: &UserId, now: Timestamp) -> Result<steerfeed_core::Viewer> {
        self.settle_for(Some(user))?;
        Storage::load_viewer(&self.mirror, user, now)
    }

    fn interest(&self, user: &UserId) -> Result<Option<steerfeed_core::Embedding>> {
        Storage::interest(&self.mirror, user)
    }

    fn seen(&self, user: &UserId) -> Result<Vec<(VideoId, Timestamp)>> {
        self.settle_for(Some(user))?;
        Storage::seen(&self.mirror, user)
    }

    fn record_page(&self, user: &UserId, page: &ServedPage<'_>, now: Timestamp) -> Result<()> {
        let message = page_message(user, page, now);
        let impressions = page
            .impressions
            .filter(|p| self.impressions.enabled() && !p.items.is_empty())
            .map(|imp| steerfeed_store::encode_impressions(user, now, imp));
        self.send_page(message, impressions)
    }

    fn ingest_events(&self, events: &[Event]) -> Result<(IngestReport, Logged)> {
        if events.is_empty() {
            return self.mirror.ingest_events_logged(events);
        }
        // Validated against every write acknowledged before the call, then logged.
        self.catch_up()?;
        {
            // With the applier held, the mirror holds committed writes only (a group of
            // writes being committed holds it from their apply to their commit), which
            // the message's stamp then covers.
            let _applier = self.runtime().block_on(self.applier.lock());
            self.mirror.validate_events(events)?;
            self.mirror.check_event_keys(events)?;
        }
        #[cfg(feature = "test-hooks")]
        self.before_publish.run();
        let entries = events
            .iter()
            .map(|e| {
                serde_json::to_vec(e)
                    .map(|p| (&e.user, p))
                    .map_err(|err| Error::internal("events", err))
            })
            .collect::<Result<Vec<_>>>()?;
        match self.publish("events", Some(batch_id(events)), entries)? {
            Some(Outcome::Events(r)) => r,
            // Another kind of message of this process's under the batch's number: the
            // stream numbered the batch again, having lost acknowledged messages.
            Some(Outcome::Other) => Err(self.fell_behind(
                "the stream acknowledged a batch under the number of another message this \
                 process's mirror had applied: it lost acknowledged messages"
                    .into(),
            )),
            // A retry of a batch the stream already holds: every event is a duplicate.
            None => Ok((
                IngestReport {
                    accepted: 0,
                    duplicates: events.iter().map(|e| e.key.clone()).collect(),
                },
                Logged::default(),
            )),
        }
    }

    fn event_count(&self) -> u64 {
        Storage::event_count(&self.mirror)
    }

    fn for_each_impression(
        &self,
        since: Timestamp,
        f: &mut dyn FnMut(steerfeed_core::LoggedPage) -> Result<()>,
    ) -> Result<()> {
        // Pages an older build logged with their page message, in the mirrors; then the
        // impression stream's, numbered after them.
        self.settle()?;
        self.catch_up_to_ends()?;
        let cutoff = self.impression_cutoff(since)?;
        let mut last = 0;
        Storage::for_each_impression(&self.mirror, since, &mut |p| {
            if p.at.as_millisecond() < cutoff {
                return Ok(());
            }
            last = p.seq;
            f(p)
        })?;
        self.read_impressions(None, cutoff, &mut |mut p| {
            p.seq += last;
            f(p)
        })
    }

    fn for_each_event(&self, from: u64, f: &mut dyn FnMut(u64, Event) -> Result<()>) -> Result<()> {
        Storage::for_each_event(&self.mirror, from, f)
    }

    fn erase_user(
        &self,
        user: &UserId,
        own_videos: steerfeed_core::OwnVideos,
    ) -> Result<steerfeed_core::ErasureReport> {
        let report = self
            .write(Change::Erase {
                user: user.clone(),
                own_videos,
            })?
            .ok_or_else(|| Error::internal("erasure", "no report"))?;
        // Their counters are keyed by a digest of their id and expire within days; a
        // failure here leaves them until then. Their page pool goes, and their pool stamp
        // moves on (it and its position hold numbers only), so no ranking begun before
        // keeps one.
        if let Err(e) = self.block("redis", self.counters.forget(user)) {
            tracing::warn!(error = %e, "erasure: could not remove the person's counters");
        }
        if let Err(e) = self.forget_pool(user) {
            tracing::warn!(error = %e, "erasure: could not drop the person's page pool");
        }
        // Unreadable already (their key is gone); removed from the stream too.
        if let Err(e) = self.block("nats", self.impressions.purge(user)) {
            tracing::warn!(error = %e, "erasure: could not purge the person's impressions");
        }
        Ok(report)
    }

    fn reserve_items(&self, user: &UserId, ask: ItemAsk) -> Result<ItemGrant> {
        self.block("redis", self.counters.reserve(user, ask))
    }

    fn release_items(&self, user: &UserId, grant: &ItemGrant, unused: u32) -> Result<()> {
        self.block("redis", self.counters.release(user, grant, unused))
    }

    fn erased(&self) -> Result<Vec<UserId>> {
        Storage::erased(&self.mirror)
    }

    fn account_records(&self, user: &UserId) -> Result<Vec<steerfeed_core::Record>> {
        Storage::account_records(&self.mirror, user)
    }

    fn export_user(&self, user: &UserId, now: Timestamp) -> Result<Vec<steerfeed_core::Record>> {
        self.settle_for(Some(user))?;
        self.catch_up_to_ends()?;
        let mut out = Storage::export_user(&self.mirror, user, now)?;
        if out.is_empty() {
            return Ok(out);
        }
        // Pages an older build logged in the mirror, within the retention; then the
        // stream's, where the embedded store lists them: after the events, before the
        // videos.
        let cutoff = self.impression_cutoff(Timestamp::UNIX_EPOCH)?;
        out.retain(|r| match r {
            steerfeed_core::Record::Impression { at, .. } => at.as_millisecond() >= cutoff,
            _ => true,
        });
        let mut theirs = Vec::new();
        self.read_impressions(Some(user), cutoff, &mut |p| {
            theirs.push(steerfeed_core::Record::Impression {
                user: p.user,
                at: p.at,
                page: p.page,
            });
            Ok(())
        })?;
        let at = out
            .iter()
            .position(|r| {
                matches!(
                    r,
                    steerfeed_core::Record::Video { .. } | steerfeed_core::Record::Cameo { .. }
                )
            })
            .unwrap_or(out.len());
        out.splice(at..at, theirs);
        Ok(out)
    }

    fn for_each_record(
        &self,
        kinds: &[steerfeed_core::RecordKind],
        embeddings: bool,
        f: &mut dyn FnMut(steerfeed_core::Record) -> Result<()>,
    ) -> Result<()> {
        Storage::for_each_record(&self.mirror, kinds, embeddings, f)
    }

    fn copy_to(&self, _dest: &std::path::Path, _erasures: &std::path::Path) -> Result<CopyInfo> {
        Err(Error::invalid(
            "backup",
            "the shared backend is backed up with its servers' own tools (pg_dump, and \
             JetStream backups of its event and impression streams), not copied to a \
             directory",
        ))
    }

    fn flush(&self) -> Result<()> {
        // Every write is durable in PostgreSQL or JetStream when it returns; the pages
        // and impressions sent are once acknowledged.
        self.block("nats", async {
            self.impressions.settle().await;
            Ok(())
        })?;
        self.settle()
    }

    fn is_warm(&self) -> bool {
        self.mirror.is_warm()
    }

    fn health(&self) -> Result<()> {
        self.block("redis", self.counters.ping())
    }

    fn damage(&self) -> DamageReport {
        self.mirror.damage()
    }

    fn shared_pools(&self) -> Option<&dyn SharedPools> {
        Some(self)
    }
}

/// How long a page pool's call to Redis may take (at most the store's timeout): a feed
/// that cannot reach its pool ranks from scratch rather than wait.
const POOL_TIMEOUT: Duration = Duration::from_secs(2);

impl SharedStore {
    /// Runs a page pool's call within [`POOL_TIMEOUT`].
    fn pool_call<T>(&self, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        self.block("redis", async {
            tokio::time::timeout(POOL_TIMEOUT, f)
                .await
                .map_err(|_| unavailable("redis page pool", "timed out"))?
        })
    }
}

impl SharedStore {
    /// [`SharedStore::applied`] without waiting for the applier: at or past every write
    /// this process has had acknowledged, as it applies its own writes before they are.
    fn applied_so_far(&self) -> (u64, u64) {
        (
            self.applied_version.load(Ordering::Acquire),
            self.applied_seq.load(Ordering::Acquire),
        )
    }

    /// Where in the logs every write this process has had acknowledged is: what it
    /// applied, its stream sequence no further than the head it read or raised (the
    /// pages it applied past the head are no write a forget is for, and a taker's
    /// catch-up need not wait for them).
    fn acknowledged_so_far(&self) -> (u64, u64) {
        let (version, seq) = self.applied_so_far();
        (version, seq.min(self.known_head.load(Ordering::Acquire)))
    }
}

impl SharedPools for SharedStore {
    /// The take, and the catch-up from its read of the logs' heads on, at once (Redis
    /// and PostgreSQL in one round trip), each within its own bound: a Redis that cannot
    /// answer costs the pool, never the catch-up.
    fn take_pool(&self, user: &UserId) -> Result<Result<(Option<u64>, Option<Vec<u8>>)>> {
        self.check()?;
        self.runtime().block_on(async {
            let take = async {
                let bound = POOL_TIMEOUT.min(self.timeout);
                tokio::time::timeout(bound, self.pools.take(&self.counters, user))
                    .await
                    .map_err(|_| unavailable("redis page pool", "timed out"))?
            };
            let catch_up = self.bounded("catching up", self.catch_up_async());
            let (taken, caught_up) = tokio::join!(take, catch_up);
            caught_up??;
            // What the mirror holds now: the heads, and what it applied past them.
            let held = self.applied_so_far();
            Ok(taken.map(|t| (t.stamp_within(held), t.pool)))
        })
    }

    /// The keep's commands are handed to the Redis connection before this returns, which
    /// sends every call's in order: this process's next take of the person finds the
    /// pool. Not so while the connection is being made again (the calls waiting for it
    /// go in any order), nor always on a Redis Cluster, whose client may retry a call
    /// (a slot moved): the take then finds no pool, and the page is ranked afresh.
    /// Redis's answer is waited for by a task of the store's runtime; a keep that times
    /// out is told as failed, though Redis may still keep it.
    fn keep_pool(
        &self,
        user: &UserId,
        stamp: u64,
        pool: &[u8],
        ttl_s: u64,
        done: KeepDone,
    ) -> Result<()> {
        self.check()?;
        let keep = self.pools.keep(&self.counters, user, stamp, pool, ttl_s);
        let mut keep = Box::pin(async move {
            tokio::time::timeout(POOL_TIMEOUT, keep)
                .await
                .map_err(|_| unavailable("redis page pool", "timed out"))?
        });
        self.runtime().block_on(async move {
            // Polled once here, so its commands are on the connection now.
            let first = std::future::poll_fn(|cx| std::task::Poll::Ready(keep.as_mut().poll(cx)));
            match first.await {
                std::task::Poll::Ready(outcome) => done(outcome),
                std::task::Poll::Pending => {
                    tokio::spawn(async move { done(keep.await) });
                }
            }
        });
        Ok(())
    }

    fn forget_pool(&self, user: &UserId) -> Result<()> {
        let at = self.acknowledged_so_far();
        self.pool_call(self.pools.forget(&self.counters, user, at))
    }

    /// Every forget at once, so a batch naming many people waits on Redis once.
    fn forget_pools(&self, users: &[UserId]) -> Result<()> {
        let at = self.acknowledged_so_far();
        self.pool_call(async {
            let all = users
                .iter()
                .map(|u| self.pools.forget(&self.counters, u, at));
            let results = futures_util::future::join_all(all).await;
            results.into_iter().find(Result::is_err).unwrap_or(Ok(()))
        })
    }

    fn peek_pool(&self, user: &UserId) -> Result<Option<Vec<u8>>> {
        self.pool_call(self.pools.peek(&self.counters, user))
    }
}

impl VideoCatalog for SharedStore {
    fn video(&self, id: &VideoId) -> Result<Option<Arc<Video>>> {
        self.mirror.video(id)
    }

    fn recent_by_creator(
        &self,
        creator: &UserId,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<Arc<Video>>> {
        self.mirror.recent_by_creator(creator, since, limit)
    }

    fn newest(&self, since: Timestamp, limit: usize) -> Result<Vec<Arc<Video>>> {
        self.mirror.newest(since, limit)
    }

    fn featuring(&self, person: &UserId, limit: usize) -> Result<Vec<Arc<Video>>> {
        self.mirror.featuring(person, limit)
    }

    fn recent_by_topic(
        &self,
        topic: &TopicId,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<Arc<Video>>> {
        self.mirror.recent_by_topic(topic, since, limit)
    }

    fn creator_video_count(&self, creator: &UserId, up_to: usize) -> Result<usize> {
        self.mirror.creator_video_count(creator, up_to)
    }
}

impl EngagementStats for SharedStore {
    fn popular(&self, now: Timestamp, limit: usize) -> Result<Vec<(VideoId, f32)>> {
        self.mirror.popular(now, limit)
    }

    fn remix_trending(&self, now: Timestamp, limit: usize) -> Result<Vec<(VideoId, f32)>> {
        self.mirror.remix_trending(now, limit)
    }
}

impl UserHistory for SharedStore {
    fn recent_engagements(&self, user: &UserId, limit: usize) -> Result<Vec<Engagement>> {
        UserHistory::recent_engagements(&self.mirror, user, limit)
    }
}

impl SocialGraph for SharedStore {
    fn following(&self, user: &UserId) -> Result<Vec<UserId>> {
        self.mirror.following(user)
    }

    fn follows(&self, a: &UserId, b: &UserId) -> Result<bool> {
        self.mirror.follows(a, b)
    }

    fn is_mutual(&self, a: &UserId, b: &UserId) -> Result<bool> {
        self.mirror.is_mutual(a, b)
    }
}

impl ActionStats for SharedStore {
    fn video_counts(&self, videos: &[&VideoId], now: Timestamp) -> Result<Vec<ActionCounts>> {
        self.mirror.video_counts(videos, now)
    }

    fn creator_counts(&self, creator: &UserId, now: Timestamp) -> Result<ActionCounts> {
        self.mirror.creator_counts(creator, now)
    }
}

impl ConsentLedger for SharedStore {
    fn cameo_consent(
        &self,
        person: &UserId,
        creator: &UserId,
        video: &VideoId,
    ) -> Result<Option<CameoConsent>> {
        self.mirror.cameo_consent(person, creator, video)
    }
}

/// True when JSON text `json` (as serde_json writes it) holds U+0000 in a string: the
/// escape `\u0000`, told apart from a backslash written `\\` before the text `u0000`
/// by the number of backslashes before it (odd: the last one starts the escape).
fn holds_nul(json: &str) -> bool {
    let bytes = json.as_bytes();
    json.match_indices("u0000").any(|(at, _)| {
        let slashes = bytes[..at]
            .iter()
            .rev()
            .take_while(|&&b| b == b'\\')
            .count();
        slashes % 2 == 1
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::{MIRROR_PREFIX, holds_nul, owner_lock, remove_dead_mirrors};

    #[test]
    fn a_nul_is_found_in_json_text_and_a_written_backslash_is_not_one() {
        let json = |s: &str| serde_json::json!({ "caption": s }).to_string();
        assert!(holds_nul(&json("a\0b")));
        // A backslash, then a NUL.
        assert!(holds_nul(&json("\\\0")));
        // The text `\u0000` (a backslash and five characters), and `u0000` alone.
        assert!(!holds_nul(&json("a\\u0000b")));
        assert!(!holds_nul(&json("u0000")));
        assert!(!holds_nul(&json("plain text")));
    }

    #[test]
    fn the_mirrors_of_processes_that_no_longer_run_are_removed_and_no_other() {
        let parent = tempfile::tempdir().unwrap();
        let names = [
            format!("{MIRROR_PREFIX}1-live"),
            format!("{MIRROR_PREFIX}2-gone"),
            format!("{MIRROR_PREFIX}3-no-lock-file"),
            "someone-elses".to_owned(),
        ];
        for n in &names {
            std::fs::create_dir(parent.path().join(n)).unwrap();
            std::fs::write(parent.path().join(n).join("db"), b"x").unwrap();
        }
        let live = owner_lock(&parent.path().join(&names[0])).unwrap();
        // A process that died: its lock file is there, its lock let go.
        drop(owner_lock(&parent.path().join(&names[1])).unwrap());
        remove_dead_mirrors(parent.path());
        let left: Vec<bool> = names
            .iter()
            .map(|n| parent.path().join(n).exists())
            .collect();
        assert_eq!(left, [true, false, true, true]);
        drop(live);
        remove_dead_mirrors(parent.path());
        assert!(!parent.path().join(&names[0]).exists());
    }

    #[test]
    fn a_group_of_writes_is_at_most_max_group_long_and_an_erasure_goes_alone() {
        use super::{Change, MAX_GROUP, Queued, next_group};
        let user = steerfeed_core::UserId::new("u").unwrap();
        let queued = |erase: bool, id: u64| Queued {
            id,
            change: if erase {
                Change::Erase {
                    user: user.clone(),
                    own_videos: steerfeed_core::OwnVideos::Keep,
                }
            } else {
                Change::ClearPreferences { user: user.clone() }
            },
            body: String::new(),
            done: tokio::sync::oneshot::channel().0,
        };
        let mut q: Vec<Queued> = [false, false, true, true, false]
            .iter()
            .enumerate()
            .map(|(i, &e)| queued(e, i as u64))
            .collect();
        let ids = |g: Vec<Queued>| g.iter().map(|q| q.id).collect::<Vec<_>>();
        assert_eq!(ids(next_group(&mut q)), [0, 1]);
        assert_eq!(ids(next_group(&mut q)), [2]);
        assert_eq!(ids(next_group(&mut q)), [3]);
        assert_eq!(ids(next_group(&mut q)), [4]);
        assert!(next_group(&mut q).is_empty());
        let mut many: Vec<Queued> = (0..MAX_GROUP as u64 + 3)
            .map(|i| queued(false, i))
            .collect();
        assert_eq!(next_group(&mut many).len(), MAX_GROUP);
        assert_eq!(next_group(&mut many).len(), 3);
    }
}
