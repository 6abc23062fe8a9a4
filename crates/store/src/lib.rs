//! # steerfeed-store
//!
//! The embedded store on sled 0.34 (DESIGN §2, §10). [`Store`] keeps videos, users, the
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
//! | `videos` | video | binary record (everything but the embedding, see `codec.rs`) |
//! | `embeddings` | video | `dim` × `f32` LE |
//! | `by_creator` | creator `\0` time↓ video | — |
//! | `newest` | time↓ video | — |
//! | `featuring` | person `\0` time↓ video | — |
//! | `users` | user | JSON `User` |
//! | `follows` / `followers` | a `\0` b / b `\0` a | — (a follows b) |
//! | `blocks`, `mutes` | a `\0` b | — |
//! | `consent` | person | JSON `{scope}` |
//! | `approved` | person `\0` user | — |
//! | `revocations` | person `\0` `v` video, person `\0` `c` creator | — |
//! | `parental`, `prefs`, `wellbeing` | user | JSON |
//! | `seen`, `history` | user `\0` seq `u64` BE; user → next seq | ms `i64` LE + video / + JSON kind |
//! | `counters` | video | ms `i64` LE, 11 counts, popular, remix (`f32` LE) |
//! | `creator_counts` | creator | same as `counters` |
//! | `interest` | user | ms `i64` LE, `dim` × `f32` LE (decayed weighted sum) |
//! | `affinity` | user `\0` creator | ms `i64` LE, `f32` LE |
//! | `events` | seq `u64` BE | JSON `Event` |
//! | `event_keys` | idempotency key | seq `u64` BE |
//!
//! `time↓` is the 8-byte descending millisecond timestamp. `seen` and `history` are
//! per-user rings: appending seq `n` deletes seq `n − cap` in the same batch, so each user
//! keeps exactly the newest `cap` entries (arrival order) and a reverse prefix scan
//! reads them newest first. Deleted videos keep their record (flagged) and embedding,
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
//! (default [`default_weight`], the same table as `steerfeed_rank::engagement_weight`,
//! repeated because the store must not depend on the ranking crate; the engine may pass
//! the rank function instead). Affinity is `1 − 2^(−w / affinity_scale)` of the decayed
//! weight `w`, in `[0, 1)`.
//!
//! ## Durability and atomicity
//!
//! - **One writer at a time.** Writes take a store-wide mutex while they read, compute
//!   and apply their changes, so read-modify-write (counters, vectors, rings, the event
//!   sequence) needs no optimistic retries. sled work is CPU-bound, so this costs little.
//! - **Atomic logical changes.** Each write builds one `sled::Batch` per tree it touches
//!   and applies them in one multi-tree sled transaction (a single `apply_batch` when one
//!   tree is touched). A crash leaves all of a change or none of it: an event batch, its
//!   idempotency keys and every counter it moved land together, so replaying a batch
//!   after a crash can never count it twice.
//! - **Acknowledged means durable.** Every write API except [`Store::record_served`] and
//!   [`Store::record_checkin_shown`] returns only after `db.flush()` has covered it:
//!   consent, revocations, deletions, blocks, parental controls, and every event batch.
//!   Served pages are written but not waited on (losing one only means an item may be
//!   served again); sled writes them within `flush_every_ms`.
//! - **Group commit.** After applying its batch (under the mutex) a writer takes a write
//!   generation and, outside the mutex, waits until the durable generation reaches it.
//!   The first waiter becomes the leader and flushes everything applied so far; writers
//!   arriving meanwhile apply their batches and are covered by the next flush. N
//!   concurrent callers share about two fsyncs instead of N (see `commit.rs`).
//! - **Caches never serve stale data.** The decoded-video cache is invalidated after the
//!   sled write and before the call returns, with a per-shard version that stops a
//!   reader from caching a value read before the write; a deleted video is flagged on
//!   the very next read.
//! - **Schema header.** A new store gets a header with [`SCHEMA_VERSION`] and the
//!   embedding dimension; opening checks both, refuses a sled database without the
//!   header, and reports corrupt files as errors (sled's open is also guarded against
//!   panics).
//!
//! ## Validation
//!
//! Writes validate everything first and change nothing on bad input: videos must
//! validate for the store's dimension and carry an embedding; an event batch with an
//! invalid event or an unknown video is rejected whole with an error naming the first
//! bad event's index (`Error::Invalid { field: "events", .. }`); follows, blocks, mutes,
//! consent, parental controls and preferences need known users. Events from users the
//! store does not know are accepted (treated as adults in UTC until upserted).

#![warn(missing_docs)]

mod cache;
mod codec;
mod commit;
mod derived;
mod ingest;
mod options;
mod ports;
mod store;
mod toplist;

pub use options::{StoreOptions, WeightFn, default_weight};
pub use store::{IngestReport, Preferences, Revocation, SCHEMA_VERSION, Store};
