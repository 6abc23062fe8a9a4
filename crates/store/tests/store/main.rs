#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Integration tests of the store, in one test binary. What they check:
//!
//! 1. the contract every `Storage` backend must pass (`contract`: the list is in
//!    `steerfeed_store::contract`), on a fresh temporary sled store per contract;
//! 2. the configured ring bounds and counter half-life are the ones applied (`options`);
//! 3. reopening persists everything, including the rebuilt popular list; the catalogue
//!    log and its floor survive a reopen and a trim frees the tree (`durability`);
//! 4. the log is the write-ahead log: derived state left behind the log (a simulated
//!    crash, or one halfway through writing the derived trees) is replayed exactly once,
//!    each tree from its own watermark, and idempotency keys hold across the replay;
//!    four writers with overlapping batches count every distinct event once, before and
//!    after a crash (`durability`);
//! 5. a crash test: a child process (this binary, running `durability::crash_child`) is
//!    killed with SIGKILL mid-write 20 times; every acknowledged write is found after
//!    reopening, and the derived counters, seen and history rings equal a recount of the
//!    log (`durability`);
//! 6. a store with another schema version, dimension, a foreign sled database or garbage
//!    files is refused with a clear error, never a panic; older formats read and are
//!    upgraded: version 3 event logs and rings, version 4 JSON wellbeing, overlapping
//!    ring fragments, a schema 6 store without a catalogue log (`formats`);
//! 7. unreadable records fail closed and the store still opens (`damage`);
//! 8. the in-memory mirrors always equal the trees, warming fills the caches up to their
//!    size and never shadows a write, a cached video reads as deleted after its
//!    deletion, rings read across memory and sled keep order and bounds (`caches`);
//! 9. an erased person leaves no record in any tree (a byte scan of the raw database),
//!    others' events keep their numbers and keys, the erasure survives a crash and is
//!    carried out again in a store restored from an older copy, a child process killed
//!    with SIGKILL while erasing leaves each person whole or erased, never half; writes
//!    racing an erasure leave nothing; an export lists every kind of record stored about
//!    a person (`erasure`).

mod caches;
mod contract;
mod damage;
mod durability;
mod erasure;
mod formats;
mod options;
mod support;
