//! What the engine keeps in its store, as types every store implementation shares.

use crate::{Constraints, EventKey, UserId, VideoId};

/// What a revocation covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Revocation {
    /// One video.
    Video(VideoId),
    /// Every video of one creator, present and future.
    Creator(UserId),
}

impl Revocation {
    /// The revocation a record names by its two optional fields: exactly one is set.
    pub fn from_parts(video: Option<&VideoId>, creator: Option<&UserId>) -> crate::Result<Self> {
        match (video, creator) {
            (Some(v), None) => Ok(Revocation::Video(v.clone())),
            (None, Some(c)) => Ok(Revocation::Creator(c.clone())),
            _ => Err(crate::Error::invalid(
                "revocation",
                "exactly one of `video` and `creator`",
            )),
        }
    }

    /// The two optional fields a record names it by ([`Revocation::from_parts`]).
    pub fn parts(&self) -> (Option<VideoId>, Option<UserId>) {
        match self {
            Revocation::Video(v) => (Some(v.clone()), None),
            Revocation::Creator(c) => (None, Some(c.clone())),
        }
    }
}

/// The outcome of an event batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestReport {
    /// Events newly logged and counted.
    pub accepted: usize,
    /// Keys of events already logged (or repeated within the batch): not counted again.
    pub duplicates: Vec<EventKey>,
}

/// A user's preference text and the constraints compiled from it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Preferences {
    /// What the user wrote (texts added by later edits follow, separated by " / ").
    pub text: String,
    /// What it compiled to (with its expiry), as edited since.
    pub constraints: Constraints,
    /// The constraints in plain words, one sentence each; filled in answers, not stored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub summary: Vec<String>,
}

/// An edit of a user's constraints: items removed, items changed, then new text added
/// (compiled with the user's policy and merged in). Applied whole or not at all.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PreferenceEdit {
    /// Items to take out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<crate::preference_edit::ItemAddress>,
    /// Items to change (strength, own expiry).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub change: Vec<crate::preference_edit::ItemChange>,
    /// New preferences in words, added to the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add: Option<String>,
}

/// What a served page changes for its viewer (recorded in one write).
#[derive(Debug, Clone, Copy, Default)]
pub struct ServedPage<'a> {
    /// The items served, in page order.
    pub videos: &'a [VideoId],
    /// A check-in card was shown.
    pub checkin: bool,
    /// A break card was shown.
    pub break_card: bool,
    /// The page for the impression log, when it is kept.
    pub impressions: Option<&'a crate::ImpressionPage>,
}

/// Where a batch's accepted events went in the event log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Logged {
    /// The sequence number of the first accepted event (0 when none was accepted); the
    /// others follow it one by one, in batch order.
    pub first_seq: u64,
    /// The indexes in the batch of the accepted events, in order.
    pub accepted: Vec<usize>,
}

/// What a copy of a store holds ([`Storage::copy_to`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CopyInfo {
    /// The catalog version of the copy.
    pub catalog_version: u64,
    /// Events in the copy's log.
    pub events: u64,
    /// Entries of the erasure log the copy has carried out (the log copied beside it
    /// holds at least these).
    pub erasures: u64,
    /// Bytes copied.
    pub bytes: u64,
    /// How long writers waited for the copy, in milliseconds.
    pub writes_held_ms: u64,
    /// The store's identity, which the copy keeps and its erasure log's entries name.
    pub store_id: String,
    /// True when the files held still through a whole check of the copy (the backend's
    /// own housekeeping, which reads keep going, may move pages even while every write
    /// is held): the copy is then the files at one moment.
    pub settled: bool,
    /// Every file of the copy: its path inside `dest` (`/`-separated), length and
    /// CRC-32 (IEEE); empty when the backend did not checksum them.
    pub files: Vec<(String, u64, u32)>,
}

/// What the store does about an unreadable record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DamageRule {
    /// The video is left out of the vector index and never served.
    VideoWithheld,
    /// The person's likeness is never served.
    LikenessWithheld,
    /// No video with a cameo is served.
    AllCameosWithheld,
    /// The viewer is served only people they follow.
    ViewerRestricted,
    /// Every viewer is served only people they follow.
    AllViewersRestricted,
    /// The entry is left out: it could only have made more videos servable.
    Dropped,
}

/// One unreadable record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DamagedRecord {
    /// The sled tree holding it.
    pub tree: &'static str,
    /// Its key, printable (bytes outside ASCII escaped).
    pub key: String,
    /// What the store does about it.
    pub rule: DamageRule,
}

/// Every unreadable record a store found since it opened (the first thousand listed).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DamageReport {
    /// The records, in the order found.
    pub records: Vec<DamagedRecord>,
    /// How many were found, listed or not.
    pub total: u64,
}

impl DamageReport {
    /// True when nothing unreadable was found.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

/// What the engine asks of its store: the seam between the engine and a storage backend.
///
/// The embedded backend is `steerfeed-store` (sled); another (a database shared by several
/// sidecars) implements the same trait and passes the same contract tests
/// (`steerfeed_store::contract`). Everything the ranking pipeline reads comes through the
/// ports the trait extends; the methods here are the writes, the context a request loads,
/// the catalogue's version and change log, and the event log's replay.
///
/// The rules every implementation keeps (the contract tests in `steerfeed-store`'s
/// `contract` module check them):
///
/// - **Validated, all or nothing.** A bad write is an error and changes nothing: videos
///   validate for the store's dimension and carry an embedding, and their creator and
///   cameo persons must be known; an event's user and video must be known (an event
///   about a *deleted* video is accepted and counts nowhere); relations, consent,
///   parental controls and preferences need a known user, and a relation with oneself is
///   invalid. Revocations may name a video or creator not stored yet (the engine checks
///   existence for its callers); approved lists are stored as given, whatever the scope.
///   Reads about unknown users answer defaults (no constraints, empty lists, UTC).
/// - **Durable when it returns**, but [`Storage::record_page`], which a crash may lose
///   (an item may then be served again).
/// - **In force when it returns**: a deletion, a block or a revocation is seen by every
///   read that starts after the call returned. Revocations are permanent.
/// - **Idempotent events**: keys are global (not per user); an event whose key was
///   logged before, or repeats in its batch, is reported as a duplicate and counted once
///   (the first copy wins). Validation runs before deduplication.
/// - **Gapless numbering**: accepted events get the sequence numbers after the last
///   logged one, consecutive in batch order ([`Logged::first_seq`]), so the log replays
///   in order; the catalogue version goes up by one per successful video write call.
/// - **A log of the videos each catalogue version changed**, from which an index saved at
///   an older version catches up; it reaches back to a floor that only rises.
/// - **Orders**: time indexes newest first (ties in id order); rings newest first in
///   arrival order; embeddings in byte order of the ids.
///
/// How events change the derived state (which kinds enter the seen and history rings,
/// how wellbeing counts items, minutes and sessions, how counters decay) is sled's today
/// and the contract tests state it; another backend computes the same.
pub trait Storage:
    crate::ports::VideoCatalog
    + crate::ports::SocialGraph
    + crate::ports::EngagementStats
    + crate::ports::ActionStats
    + crate::ports::UserHistory
    + crate::ports::ConsentLedger
    + Send
    + Sync
{
    /// Brings what this process reads up to every write acknowledged before the call,
    /// wherever it was made: a backend several processes share applies here what the
    /// others wrote. The engine calls it at the start of every feed and export (other
    /// reads answer from what this process has applied). The embedded store is always
    /// current, and answers at once.
    fn catch_up(&self) -> crate::Result<()> {
        Ok(())
    }

    // The catalogue.

    /// Inserts or replaces videos, all or nothing (a repeated id: the last one wins).
    fn upsert_videos(&self, videos: &[crate::Video]) -> crate::Result<()>;
    /// Marks a video deleted; unknown ids are `NotFound`, deleting twice is not an error.
    fn delete_video(&self, id: &VideoId) -> crate::Result<()>;
    /// The store's own allocation of `id`, for ids kept long (an index's id table): the
    /// store's lookups then compare them by pointer.
    fn intern_video(&self, id: &VideoId) -> VideoId;
    /// The catalogue version: bumped, durably, by every video write.
    fn catalog_version(&self) -> u64;
    /// The distinct videos changed at versions after `version`, or `None` when the log no
    /// longer reaches back that far (or `version` is ahead of the store).
    fn catalog_changes_since(&self, version: u64) -> crate::Result<Option<Vec<VideoId>>>;
    /// Forgets the log up to `version` (an index saved at `version` no longer needs it).
    fn trim_catalog_log(&self, version: u64) -> crate::Result<()>;
    /// Calls `f` with every live video's embedding and topics, in id order (to build an
    /// index); an unreadable one is skipped and withheld.
    fn for_each_embedding(
        &self,
        f: &mut dyn FnMut(VideoId, crate::Embedding, Vec<crate::TopicId>) -> crate::Result<()>,
    ) -> crate::Result<()>;
    /// Videos not deleted.
    fn video_count(&self) -> u64;
    /// Accounts (erased people not counted). May scan: for operators, not for the
    /// ranking path.
    fn user_count(&self) -> crate::Result<u64>;

    // People and their relations.

    /// Adds or replaces a user.
    fn upsert_user(&self, user: &crate::User) -> crate::Result<()>;
    /// A stored user.
    fn user(&self, id: &UserId) -> crate::Result<Option<crate::User>>;
    /// Sets or clears `a`'s follow, block or mute of `b`.
    fn set_relation(
        &self,
        a: &UserId,
        b: &UserId,
        relation: Relation,
        on: bool,
    ) -> crate::Result<()>;
    /// Sets several follows, blocks and mutes, `(a, b, relation, on)`, in one durable
    /// write, in order, all or nothing (one invalid item and none is set).
    fn set_relations(&self, items: &[(UserId, UserId, Relation, bool)]) -> crate::Result<()>;
    /// Who may use `person`'s likeness, and the approved list (replacing it). `person` and
    /// everyone approved must be stored (`NotFound` otherwise, and nothing changes).
    fn set_consent(
        &self,
        person: &UserId,
        scope: crate::ConsentScope,
        approved: &[UserId],
    ) -> crate::Result<()>;
    /// `person` withdraws consent for one video or one creator's videos.
    fn revoke_consent(&self, person: &UserId, revocation: &Revocation) -> crate::Result<()>;
    /// Sets a user's parental controls.
    fn set_parental_controls(
        &self,
        user: &UserId,
        controls: &crate::ParentalControls,
    ) -> crate::Result<()>;
    /// A user's parental controls (defaults when none are set).
    fn parental_controls(&self, user: &UserId) -> crate::Result<crate::ParentalControls>;
    /// Stores a user's preference text and its compiled constraints.
    fn set_preferences(
        &self,
        user: &UserId,
        text: &str,
        constraints: &Constraints,
    ) -> crate::Result<()>;
    /// A user's preferences, if set.
    fn preferences(&self, user: &UserId) -> crate::Result<Option<Preferences>>;
    /// Forgets a user's preferences.
    fn clear_preferences(&self, user: &UserId) -> crate::Result<()>;

    // What a request loads.

    /// The user's constraints in force at `now` (expired ones are empty).
    fn active_constraints(&self, user: &UserId, now: jiff::Timestamp)
    -> crate::Result<Constraints>;
    /// The user's wellbeing counters as of `now` (the day rolled in their time zone).
    fn wellbeing(
        &self,
        user: &UserId,
        now: jiff::Timestamp,
    ) -> crate::Result<crate::WellbeingState>;
    /// The viewer's relations and recent history.
    fn load_viewer(&self, user: &UserId, now: jiff::Timestamp) -> crate::Result<crate::Viewer>;
    /// The user's interest vector, if any.
    fn interest(&self, user: &UserId) -> crate::Result<Option<crate::Embedding>>;
    /// The user's seen history, newest first.
    fn seen(&self, user: &UserId) -> crate::Result<Vec<(VideoId, jiff::Timestamp)>>;
    /// Records what a served page changes for its viewer, in one write.
    fn record_page(
        &self,
        user: &UserId,
        page: &ServedPage<'_>,
        now: jiff::Timestamp,
    ) -> crate::Result<()>;

    /// Reserves what `ask` may have of `user`'s daily allowance before a page is ranked,
    /// by [`ItemAsk::grant`] over the items reserved that day so far. Atomic across every
    /// process the store is shared by: pages reserved at once never grant more than the
    /// cap in all. A grant no one releases stays spent (a page that failed half-way
    /// serves nothing more that day, rather than more than the cap).
    fn reserve_items(&self, user: &UserId, ask: ItemAsk) -> crate::Result<ItemGrant>;
    /// Gives back `unused` items of `grant` that its page did not serve: once per grant
    /// (a second release returns nothing), never more than it granted.
    fn release_items(&self, user: &UserId, grant: &ItemGrant, unused: u32) -> crate::Result<()>;

    /// Calls `f` with every page of the impression log served at or after `since`, in
    /// log order. The log keeps what [`Storage::record_page`] was given for the
    /// retention the store was opened with, and an erasure removes the person's pages.
    fn for_each_impression(
        &self,
        since: jiff::Timestamp,
        f: &mut dyn FnMut(crate::LoggedPage) -> crate::Result<()>,
    ) -> crate::Result<()>;

    // The event log.

    /// Logs and counts a batch of events, all or nothing, durable when it returns; says
    /// where the accepted ones went in the log. An event whose key was logged before (or
    /// came earlier in the batch) with the same content is a duplicate, not counted
    /// again; with other content it is `Conflict`, and nothing of the batch is logged.
    fn ingest_events(&self, events: &[crate::Event]) -> crate::Result<(IngestReport, Logged)>;
    /// Events logged so far (sequence numbers start at 1).
    fn event_count(&self) -> u64;
    /// Calls `f(seq, event)` for every logged event from `from` on, in log order.
    fn for_each_event(
        &self,
        from: u64,
        f: &mut dyn FnMut(u64, crate::Event) -> crate::Result<()>,
    ) -> crate::Result<()>;

    // A person's data.

    /// Erases a person: their account, relations both ways, consent grants and
    /// revocations, parental controls, preferences, wellbeing, history and seen rings,
    /// interest, affinity, their events in the event log with those events' idempotency
    /// keys; every video featuring them is deleted, and their own as `own_videos` says.
    /// Durable and in force for every read that starts after it returns, all or nothing,
    /// and recorded so that a store restored from an older copy forgets them again.
    /// Idempotent: a person erased before answers `already_erased`; an id never stored
    /// is `NotFound`. [`crate::ErasureReport::deleted`] lists the videos deleted.
    fn erase_user(
        &self,
        user: &UserId,
        own_videos: crate::OwnVideos,
    ) -> crate::Result<crate::ErasureReport>;
    /// The people erased from this store, oldest first (its erasure log).
    fn erased(&self) -> crate::Result<Vec<UserId>>;
    /// What `user` and others set about them, in the export record format and the
    /// order [`Storage::export_user`] starts with: the account, follows both ways, their
    /// blocks and mutes, consent, revocations, parental controls and preferences; no
    /// event, derived state or video. Reads no event log. Empty for an unknown or
    /// erased user.
    fn account_records(&self, user: &UserId) -> crate::Result<Vec<crate::Record>>;
    /// Everything stored about `user`, in the export record format; empty for an
    /// unknown or erased user.
    fn export_user(&self, user: &UserId, now: jiff::Timestamp)
    -> crate::Result<Vec<crate::Record>>;

    /// Calls `f` with every record of `kinds` (what the app told the engine: see
    /// [`crate::RecordKind`]), kind by kind in [`crate::RecordKind::ALL`]'s order and
    /// each kind in id order, so that the output imports in its own order; videos carry
    /// their embedding when `embeddings` is set (and always when they have no caption to
    /// compute one from). Deleted videos are listed, except those
    /// of erased people. Not a snapshot: a write made meanwhile may or may not be seen.
    fn for_each_record(
        &self,
        kinds: &[crate::RecordKind],
        embeddings: bool,
        f: &mut dyn FnMut(crate::Record) -> crate::Result<()>,
    ) -> crate::Result<()>;

    // Operation.

    /// Copies the store, consistent at one instant, into the new directory `dest` (which
    /// this backend's open can open), and its erasure log as it stood then to
    /// `erasures`, while the store goes on serving: writers may wait for part of the copy,
    /// readers do not. A copy opened later replays what its derived state lacks and
    /// carries out the erasures its log lists beyond what it applied.
    fn copy_to(
        &self,
        dest: &std::path::Path,
        erasures: &std::path::Path,
    ) -> crate::Result<CopyInfo>;

    /// Makes everything written so far durable.
    fn flush(&self) -> crate::Result<()>;
    /// True once background warm-up after open is done.
    fn is_warm(&self) -> bool;
    /// An error when this store cannot serve now: until its process restarts (a shared
    /// backend whose mirror no longer follows the logs) or until a server it needs
    /// answers again; the sidecar's `/readyz` answers 503 with it. May block.
    fn health(&self) -> crate::Result<()> {
        Ok(())
    }
    /// Records found unreadable since open, and what was done about each.
    fn damage(&self) -> DamageReport;
    /// Where page pools are kept when every process serving this store must read them
    /// (the shared backend: a later page of a session may reach another replica than
    /// its first); `None` when each process keeps its own in memory.
    fn shared_pools(&self) -> Option<&dyn SharedPools> {
        None
    }
}

/// What [`SharedPools::keep_pool`] is told once the store answered: true when the pool
/// was kept, false when the person's stamp had moved.
pub type KeepDone = Box<dyn FnOnce(crate::Result<bool>) + Send>;

/// Seconds a [`SharedPools`] store remembers a stamp after the forget that moved it.
pub const POOL_STAMP_GUARD_S: u64 = 120;

/// Page pools kept where every process serving a store reads them, one per person, as
/// bytes the engine encodes. Each person also has a stamp, which every forget moves to a
/// value it never had before (an absent stamp reads 0, which no forget gives): a ranking
/// reads it while it catches up, and keeps its pool only if its catch-up holds every
/// write the stamp's forgets were for and no write forgot the person's pool since
/// ([`SharedPools::keep_pool`]).
///
/// A moved stamp is remembered [`POOL_STAMP_GUARD_S`] seconds: a ranking keeps its pool
/// only within half that of reading the stamp.
pub trait SharedPools: Send + Sync {
    /// The person's stamp, and their pool taken out (no other request gets it; `None`
    /// when they have none), read while the store catches up ([`Storage::catch_up`]).
    /// The stamp is `None` when a write the catch-up may not hold moved it (one
    /// acknowledged during the call, or one the store cannot place in its logs): a
    /// ranking keeps no pool then. `Err`: the
    /// catch-up failed; `Ok(Err(_))`: caught up, but the pool could not be read.
    #[allow(clippy::type_complexity)]
    fn take_pool(
        &self,
        user: &UserId,
    ) -> crate::Result<crate::Result<(Option<u64>, Option<Vec<u8>>)>>;
    /// Sends `pool` to be kept as the person's for at least `ttl_s` seconds, unless
    /// their stamp is no longer `stamp`, and returns without waiting for the store's
    /// answer, which `done` is given once it comes (true: kept; `done` may run on
    /// another thread, and not at all when the store closes first). The keep is on its
    /// way first: a take this store starts after the call returns reaches the store
    /// after it, as far as the store's connection keeps its calls in order (a store
    /// says when it may not). `Err`: nothing was sent, and `done` is dropped.
    fn keep_pool(
        &self,
        user: &UserId,
        stamp: u64,
        pool: &[u8],
        ttl_s: u64,
        done: KeepDone,
    ) -> crate::Result<()>;
    /// Drops the person's pool and moves their stamp on: a ranking that read the stamp
    /// before cannot keep one. Call once the write that made it stale is done.
    fn forget_pool(&self, user: &UserId) -> crate::Result<()>;
    /// [`SharedPools::forget_pool`] for each of `users`: a store may send them at once
    /// and wait once. The first error, after every user was tried.
    fn forget_pools(&self, users: &[UserId]) -> crate::Result<()> {
        let mut first = Ok(());
        for user in users {
            let r = self.forget_pool(user);
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
    /// The person's pool, left in place (operators and tests).
    fn peek_pool(&self, user: &UserId) -> crate::Result<Option<Vec<u8>>>;
}

/// Items of a person's daily allowance reserved for one page
/// ([`Storage::reserve_items`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemGrant {
    /// The local date the items count against.
    pub day: jiff::civil::Date,
    /// Items counted that day before this grant.
    pub before: u32,
    /// Items this page may serve.
    pub granted: u32,
    /// Names the grant for [`Storage::release_items`] (unique per person).
    pub id: u64,
}

/// What a page asks of a person's daily allowance ([`Storage::reserve_items`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemAsk {
    /// Their local date, which the items count against.
    pub day: jiff::civil::Date,
    /// Items their own reports counted that day.
    pub floor: u32,
    /// Items the page would serve.
    pub want: u32,
    /// Items a day at most.
    pub cap: u32,
}

impl ItemAsk {
    /// The reservation rule every backend keeps: the day's count is the larger of the
    /// items reserved so far (`reserved`) and the reported floor, and the page gets what
    /// the cap leaves of it, at most what it wants. Returns `(before, granted)`.
    pub fn grant(&self, reserved: u32) -> (u32, u32) {
        let before = reserved.max(self.floor);
        (before, self.want.min(self.cap.saturating_sub(before)))
    }
}

/// A relation one person sets on another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Relation {
    /// Follows: their videos come first, and followers-only videos are theirs to see.
    Follow,
    /// Blocks: nothing by or featuring them is served.
    Block,
    /// Mutes: nothing by them is served.
    Mute,
}
