//! # steerfeed-store
//!
//! The embedded store on sled 0.34 (docs/design.md §2, §10). [`Store`] keeps videos, users, the
//! follow graph, blocks and mutes, cameo consent, parental controls, preferences,
//! wellbeing counters, seen and engagement history, decayed action counters, interest
//! vectors, creator affinity and the idempotent event log, and implements core's ports:
//! [`VideoCatalog`], [`SocialGraph`], [`EngagementStats`], [`ActionStats`],
//! [`UserHistory`] and [`ConsentLedger`] (`VectorSearch` belongs to the ANN index and
//! `CoEngagement` to the in-memory index the engine rebuilds with
//! [`Store::for_each_event`]).
//!
//! [`VideoCatalog`]: steerfeed_core::ports::VideoCatalog
//! [`SocialGraph`]: steerfeed_core::ports::SocialGraph
//! [`EngagementStats`]: steerfeed_core::ports::EngagementStats
//! [`ActionStats`]: steerfeed_core::ports::ActionStats
//! [`UserHistory`]: steerfeed_core::ports::UserHistory
//! [`ConsentLedger`]: steerfeed_core::ports::ConsentLedger
//!
//! ## Key layout
//!
//! Ids are validated by core: 1–128 bytes of UTF-8 without control characters, so never
//! a NUL byte. Composite keys join ids with `\0`, which makes `a \0` an exact prefix of
//! `a`'s keys ("whom does `a` follow" is a prefix scan, and user `a` never sees the keys
//! of user `ab`). Integers in keys are big-endian so byte order is numeric order; time
//! keys store `!(ms ^ 2^63)` so a forward scan is newest first.
//!
//! | tree | key | value |
//! |---|---|---|
//! | `meta` | `header` | `steerfeed-store\0`, schema version `u32` BE, dim `u32` BE |
//! | `meta` | `live_videos` | `u64` BE |
//! | `meta` | `catalog_version` | `u64` BE, bumped by every video upsert and deletion |
//! | `meta` | `catalog_log_floor` | `u64` BE: `catalog_log` holds every change above this version |
//! | `meta` | `erasures_applied` | `u64` BE: the erasure log entries this store has carried out (`erasure.rs`) |
//! | `videos` | video | binary record (everything but the embedding, see `codec.rs`) |
//! | `embeddings` | video | `dim` × `f32` LE |
//! | `by_creator` | creator `\0` time↓ video | — |
//! | `newest` | time↓ video | — |
//! | `featuring` | person `\0` time↓ video | — |
//! | `by_topic` | topic `\0` time↓ video | — |
//! | `users` | user | JSON `User` |
//! | `follows` / `followers` | a `\0` b / b `\0` a | — (a follows b) |
//! | `blocks`, `mutes` | a `\0` b | — |
//! | `consent` | person | JSON `{scope}` |
//! | `approved` | person `\0` user | — |
//! | `revocations` | person `\0` `v` video, person `\0` `c` creator | — |
//! | `parental`, `prefs` | user | JSON |
//! | `wellbeing` | user | binary record (version byte 2, `codec::encode_wellbeing`, with its as-of number; version byte 1 of schema 5 and JSON from schema 4 and older still read) |
//! | `seen`, `history` | user `\0` `0xFE` first seq `u64` BE (a fragment of consecutive entries; schema 3 and older: user `\0` seq `u64` BE, one entry, and user → next seq; the head is now one past the newest entry) | count `u32` LE, then per entry `len u32` LE + ms `i64` LE + video / + binary kind; then as-of |
//! | `counters` | video | ms `i64` LE, 11 counts, popular, remix (`f32` LE); as-of |
//! | `creator_counts` | creator | same as `counters` |
//! | `interest` | user | ms `i64` LE, `dim` × `f32` LE (decayed weighted sum); as-of |
//! | `affinity` | user `\0` creator | ms `i64` LE, `f32` LE; as-of |
//! | `events` | seq `u64` BE of the record's first event | up to 48 binary event records (version byte 2; one-event records of version byte 1 or JSON from older schemas still read, see `codec.rs`); an erased person's event is the one byte `0xEE` (schema 8) |
//! | `event_keys` | `0xFE` first seq `u64` BE | up to 256 × (key hash `u64` LE, seq `u64` LE); schema 3 and older: idempotency key → seq `u64` BE |
//! | `catalog_log` | catalog version `u64` BE, video | — (the video was upserted or deleted at that version) |
//! | `impressions` | entry number `u64` BE, from 1, in serving order | a served page for the impression log: version, viewer, time, request id, profile, model, then per item its video, position, source, propensity, head inputs, the choice exploration faced at its slot and score terms (`impressions.rs`; version byte 2, version byte 1 of schema 9 still reads); written by the persister with the rest of the served state, kept `impression_retention_h`, erased with the viewer |
//! | each derived tree | `\xff\xffapplied` | watermark: last event seq `u64` BE the tree holds |
//!
//! "as-of" is the sequence number of the last event the record reflects, `u64` LE,
//! ending every record the persister writes since schema version 6 but the
//! `event_keys` segments, whose entries carry their own sequence numbers (records
//! without one still read, as of 0).
//!
//! The derived trees are `event_keys`, `counters`, `creator_counts`, `wellbeing`,
//! `interest`, `affinity`, `seen`, `history`, `follows`, `followers` and `mutes`; their
//! watermark key starts with `0xFF`, which never starts a UTF-8 id, so no id lookup or
//! prefix scan meets it. Schema version 1 stores (JSON events and history kinds, no
//! watermarks) are upgraded in place at open: both encodings are read, and every
//! watermark starts at the last logged event.
//!
//! `time↓` is the 8-byte descending millisecond timestamp. `seen` and `history` are
//! per-user rings: each write of a user's appends stores them as one fragment (one new
//! sled key, not one per entry; for a user in the resident mirror, the appends are added
//! to the newest fragment while it holds fewer than 32 entries, rewriting that key) and
//! then deletes the fragments (and older one-entry keys)
//! wholly out of the ring, so each user keeps the newest `cap` entries
//! (arrival order; readers skip the older part of a fragment partly out) and a reverse
//! prefix scan reads them newest first. Deleted videos keep their record (flagged) and embedding,
//! and leave the time indexes, the counters and the top lists.
//!
//! Decayed values (counters, popularity, remix velocity, interest, affinity) are stored
//! with the time they are valid at and decayed lazily: an update first moves the value
//! to the event's time (an older event is added already decayed), a read decays it to
//! `now`. The popular and remix-trending lists live in memory and are rebuilt from
//! `counters` at open; because every score decays at the same rate their order never
//! changes with time, so a score is kept as `log2(score) + t / half_life` and the top
//! `top_lists` entries are exact as scores grow.
//!
//! Interest vectors and creator affinity weigh events with [`StoreOptions::weight`]
//! (default [`default_weight`], which is `steerfeed_core::event::engagement_weight`, the
//! one table the co-engagement model uses too). Affinity is `1 − 2^(−w / affinity_scale)` of the decayed
//! weight `w`, in `[0, 1)`.
//!
//! ## Read caches
//!
//! Decoded videos (`cache.rs`), per-person consent facts (scope, age band, parental
//! scope: tagged with a write epoch bumped by every user, consent or parental change, so
//! an entry read before such a change is never used after it; revocations are always
//! read fresh), and per-video and per-creator counters (consulted after the overlay,
//! by readers and by writers staging events;
//! an entry is dropped when an overlay layer holding its key leaves the overlay, since
//! the layer may be newer than the cached value, and fills are skipped when a drop
//! happened since the read began).
//!
//! ## Durability and atomicity
//!
//! - **The event log is the write-ahead log.** [`Store::ingest_events`] validates the
//!   batch, drops events whose idempotency key is known, computes the batch's derived
//!   effects (nothing changes yet, so a failure leaves no trace), appends the events to
//!   `events` in one `apply_batch` (atomic), and waits for that append to be durable by
//!   group commit. That, and only that, is what the acknowledgement promises.
//! - **Idempotency keys live in memory.** Every logged key is in an in-memory index
//!   (key hash → seq, confirmed against the log on a hit, so it is exact), loaded from
//!   `event_keys` at open and completed by the replay; checking a batch reads no sled key,
//!   and the persister writes one `event_keys` segment per 256 keys.
//! - **Derived state is memory-first.** Right after the append (still under the write
//!   lock) the batch's effects — aggregated per key, one read-modify-write per touched key
//!   per batch — go into an in-memory overlay: idempotency keys, counters, creator counts,
//!   wellbeing, interest, affinity and ring appends. Readers (`video_counts`,
//!   `load_viewer`, `wellbeing`, `interest`, `seen`, `recent_engagements`, the ports) look
//!   at the overlay before sled, so a caller sees its events once the call returned.
//!   Follow and mute edges from events are rare and go straight to their trees, in the
//!   same atomic write as the log records (sled 0.34 takes one process-wide write lock
//!   per `apply_batch` or transaction, which also stops every reader, so a writer takes
//!   it once per batch).
//! - **Per-user state resident for writers.** Staging an event reads its user's
//!   wellbeing, interest, affinities and ring heads; for users in the resident mirror
//!   (`resident.rs`: what sled holds in those trees, loaded for the known users by the
//!   background warmer after the video cache, up to 250,000 users at about 2.3 KB each,
//!   and changed by the persister together with each layer it writes) that is memory,
//!   not five cold sled reads. It sits below every overlay layer, so it never hides a
//!   newer value.
//! - **Watermarks, one per derived tree.** A background persister (every
//!   [`StoreOptions::derived_persist_ms`], or woken as soon as a write leaves more than
//!   [`StoreOptions::derived_max_pending`] changes pending; on [`Store::flush`] and at
//!   close; a writer writes the layer itself only past three times that bound, which
//!   bounds memory when the persister falls behind)
//!   freezes the active layer (briefly under the write lock; writers go on with a fresh
//!   one, readers see active, then frozen, then sled) and writes it key by key, each
//!   record ending in its as-of number (the layer's last event), then flushes, then moves
//!   each tree's watermark. Not one `apply_batch` per tree: sled 0.34 applies a batch
//!   under a process-wide write lock that also stops every reader, so a 100,000-key
//!   batch stalled the log append, the group-commit flush and the writers' sled reads
//!   for its whole length (single inserts share that lock). A tree's watermark says
//!   every record in it holds the events up to it; a record's as-of number says it holds
//!   those up to its own. Edge trees get their watermark in the batch that adds the
//!   edges. The layer last written stays as a read cache until the next one.
//! - **Recovery replays the log.** Opening reads every watermark and replays the log
//!   after the smallest one, applying each event only to the trees whose watermark is
//!   below its sequence number, and within a tree only to the records whose as-of number
//!   is below it. After a crash (even one halfway through writing a derived tree, which
//!   leaves some of its records newer than its watermark) every acknowledged event is
//!   counted exactly once, and retried batches are still recognised. sled recovers a
//!   prefix of its log, so no tree can hold an event the log lost. Replay uses the
//!   current video records and time zones: a video deleted or a user moved between an
//!   event and a crash is handled as of the replay.
//! - **One writer at a time.** Writes take a store-wide mutex while they read, compute
//!   and apply their changes, so read-modify-write (counters, vectors, rings, the event
//!   sequence) needs no optimistic retries. The persister writes outside it.
//! - **Other writes stay atomic.** Videos, users, relations, consent, revocations,
//!   parental controls and preferences build one `sled::Batch` per tree they touch and
//!   apply them in one multi-tree sled transaction (a single `apply_batch` for one tree).
//! - **Acknowledged means durable.** Every write API except [`Store::record_page`] (and
//!   [`Store::record_served`], the same for a page without cards) returns only after
//!   `db.flush()` has covered it: consent, revocations, deletions, blocks, parental
//!   controls, and every event batch (its log records). Served pages and shown cards are
//!   not in the log: they live in the overlay and reach the disk with the next persist
//!   (within about `derived_persist_ms`); losing one only means an item may be served
//!   again.
//! - **Group commit.** After its append (under the mutex) a writer takes a write
//!   generation and, outside the mutex, waits until the durable generation reaches it.
//!   The first waiter becomes the leader and flushes everything applied so far; writers
//!   arriving meanwhile apply their batches and are covered by the next flush. N
//!   concurrent callers share about two fsyncs instead of N (see `commit.rs`).
//! - **Caches never serve stale data.** The decoded-video cache is invalidated after the
//!   sled write and before the call returns, with a per-shard version that stops a
//!   reader from caching a value read before the write; a deleted video is flagged on
//!   the very next read. The user, preference and parental-control caches follow the
//!   same rule with one version each.
//! - **The feed reads memory.** The time indexes, relations, approvals and revocations
//!   are mirrored in memory (`mirror.rs`): loaded at open, and changed right after each
//!   write's sled commit under the write lock, so a revocation, a block or a deletion is
//!   in force for the next feed when its call returns. The video cache (1M videos by
//!   default) and the counters are warmed in the background after open.
//! - **The catalog log.** Every [`Store::upsert_videos`] and [`Store::delete_video`]
//!   bumps `catalog_version` and adds one `catalog_log` key per video it touches, in the
//!   same transaction. A vector index saved with the catalog version it reflects is
//!   brought up to date at the next open by [`Store::catalog_changes_since`] (the
//!   videos to re-read) instead of being rebuilt; once a newer index is saved,
//!   [`Store::trim_catalog_log`] raises the floor (durably) and then drops the entries
//!   at or below it. A store upgraded from schema 6 or older starts its log at the
//!   catalog version it had.
//! - **Schema header.** A new store gets a header with [`SCHEMA_VERSION`] and the
//!   embedding dimension; opening checks both, refuses a sled database without the
//!   header, and reports corrupt files as errors (sled's open is also guarded against
//!   panics).
//!
//! ## Validation
//!
//! Writes validate everything first and change nothing on bad input: videos must
//! validate for the store's dimension and carry an embedding, and their creator and the
//! people in their cameos must be known users; an event batch with an invalid event is
//! rejected whole with an error naming the first bad event's index
//! (`Error::Invalid { field: "events", .. }`), one naming an unknown user or video with
//! `Error::NotFound`; follows, blocks, mutes, consent, parental controls and preferences
//! need known users.

#![warn(missing_docs)]

mod cache;
mod codec;
mod commit;
#[cfg(feature = "contract")]
pub mod contract;
mod damage;
mod derived;
mod erasure;
mod idempotency;
mod impressions;
mod layer;
mod legacy;
mod log;
mod mirror;
mod options;
mod ports;
mod records;
mod resident;
mod rings;
mod served;
mod storage;
mod store;
mod toplist;
mod trees;

pub use erasure::{ErasureEntry, erasure_log_beside};
pub use options::{StoreOptions, WeightFn, default_weight};
pub use steerfeed_core::storage::{
    DamageReport, DamageRule, DamagedRecord, IngestReport, Logged, Preferences, Relation,
    Revocation, ServedPage, Storage,
};
pub use store::{SCHEMA_VERSION, Store, copy_tree, write_synced};

/// The impression log's binary record of `page`, served to `user` at `at`: what the log
/// keeps for one page (and what a shared store's page messages carry).
pub fn encode_impressions(
    user: &steerfeed_core::UserId,
    at: steerfeed_core::Timestamp,
    page: &steerfeed_core::ImpressionPage,
) -> Vec<u8> {
    impressions::encode(user, at, page)
}

/// Reads a record [`encode_impressions`] wrote (or one of an older version); its `seq`
/// is 0. A cut or damaged record is an error.
pub fn decode_impressions(bytes: &[u8]) -> steerfeed_core::Result<steerfeed_core::LoggedPage> {
    impressions::decode(0, bytes)
}
