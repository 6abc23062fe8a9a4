//! Derived state: what events change besides the log, kept memory-first.
//!
//! The event log is the write-ahead log. Everything an event changes besides the log —
//! idempotency keys, counters, creator counts, wellbeing, interest, affinity, the seen and
//! history rings — first goes to the in-memory [`Overlay`] (readers look there before
//! sled), and is written to its sled tree later by [`Store::persist_derived`], one
//! `apply_batch` per tree that also sets the tree's *watermark*: the last event sequence
//! whose effects that tree holds. Follow and mute edges from events are rare and go to
//! their trees right away, with the watermark in the same batch.
//!
//! A per-tree batch is atomic, so after a crash each tree holds exactly the events up to
//! its own watermark; opening replays the log after the smallest watermark and applies
//! each event only to the trees that do not have it yet. Every acknowledged event is then
//! counted exactly once, whatever was persisted when the process died.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use sled::{Batch, Tree};
use steerfeed_core::{EventKey, Result, UserId, VideoId};

use crate::codec::{self, CounterRec, Decayed, corrupt, pair, seq_key, u64_of};
use crate::store::{Store, Trees, WellbeingRec, db_err};

/// The key of a derived tree's watermark (`u64` BE). `0xFF` never starts a UTF-8 id, so
/// no id or prefix scan ever meets it.
pub(crate) const WATERMARK_KEY: &[u8] = b"\xff\xffapplied";

/// The trees derived from the log, each with its own watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Derived {
    EventKeys,
    Counters,
    CreatorCounts,
    Wellbeing,
    Interest,
    Affinity,
    Seen,
    History,
    Follows,
    Followers,
    Mutes,
}

impl Derived {
    pub const ALL: [Derived; 11] = [
        Derived::EventKeys,
        Derived::Counters,
        Derived::CreatorCounts,
        Derived::Wellbeing,
        Derived::Interest,
        Derived::Affinity,
        Derived::Seen,
        Derived::History,
        Derived::Follows,
        Derived::Followers,
        Derived::Mutes,
    ];

    pub fn tree(self, t: &Trees) -> &Tree {
        match self {
            Derived::EventKeys => &t.event_keys,
            Derived::Counters => &t.counters,
            Derived::CreatorCounts => &t.creator_counts,
            Derived::Wellbeing => &t.wellbeing,
            Derived::Interest => &t.interest,
            Derived::Affinity => &t.affinity,
            Derived::Seen => &t.seen,
            Derived::History => &t.history,
            Derived::Follows => &t.follows,
            Derived::Followers => &t.followers,
            Derived::Mutes => &t.mutes,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Derived::EventKeys => "event_keys",
            Derived::Counters => "counters",
            Derived::CreatorCounts => "creator_counts",
            Derived::Wellbeing => "wellbeing",
            Derived::Interest => "interest",
            Derived::Affinity => "affinity",
            Derived::Seen => "seen",
            Derived::History => "history",
            Derived::Follows => "follows",
            Derived::Followers => "followers",
            Derived::Mutes => "mutes",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of derived trees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mask(u16);

impl Mask {
    pub const ALL: Mask = Mask((1 << Derived::ALL.len()) - 1);
    pub const NONE: Mask = Mask(0);

    pub fn has(self, d: Derived) -> bool {
        self.0 & d.bit() != 0
    }

    pub fn with(self, d: Derived) -> Mask {
        Mask(self.0 | d.bit())
    }

    /// The trees whose watermark is below `seq`: those that still need event `seq`.
    pub fn needing(watermarks: &[u64; 11], seq: u64) -> Mask {
        Derived::ALL
            .iter()
            .zip(watermarks)
            .filter(|(_, wm)| **wm < seq)
            .fold(Mask::NONE, |m, (d, _)| m.with(*d))
    }
}

/// The watermark of `d`'s tree (0 when none is stored).
pub(crate) fn watermark(t: &Trees, d: Derived) -> Result<u64> {
    match d.tree(t).get(WATERMARK_KEY).map_err(db_err)? {
        Some(b) => u64_of(&b).ok_or_else(|| corrupt("watermark")),
        None => Ok(0),
    }
}

/// Appends not yet written to one user's ring (seen or history).
///
/// `base` is the ring head in sled, `head` the next sequence number; `entries` holds the
/// newest appended entries (at most the ring's bound). Writing inserts them, deletes the
/// sled entries that fell out of the ring and stores the head.
#[derive(Debug, Clone, Default)]
pub(crate) struct RingPending {
    pub base: u64,
    pub head: u64,
    pub entries: VecDeque<(u64, Vec<u8>)>,
}

impl RingPending {
    pub fn push(&mut self, value: Vec<u8>, cap: u64) {
        self.entries.push_back((self.head, value));
        self.head += 1;
        while self.entries.len() as u64 > cap {
            self.entries.pop_front();
        }
    }

    fn write(&self, user: &UserId, cap: u64, b: &mut Batch) {
        for (seq, v) in &self.entries {
            b.insert(seq_key(user.as_str(), *seq), v.as_slice());
        }
        let keep_from = self.head.saturating_sub(cap);
        for seq in self.base.saturating_sub(cap)..self.base.min(keep_from) {
            b.remove(seq_key(user.as_str(), seq));
        }
        b.insert(user.as_str().as_bytes(), &self.head.to_be_bytes());
    }
}

/// Derived state changed in memory and not yet written to sled.
pub(crate) struct Overlay {
    /// The last event sequence whose effects are in the overlay or the trees.
    pub applied: u64,
    pub event_keys: HashMap<EventKey, u64>,
    pub counters: HashMap<VideoId, CounterRec>,
    pub creators: HashMap<UserId, CounterRec>,
    pub wellbeing: HashMap<UserId, WellbeingRec>,
    pub interest: HashMap<UserId, (i64, Vec<f32>)>,
    pub affinity: HashMap<UserId, HashMap<UserId, Decayed>>,
    pub seen: HashMap<UserId, RingPending>,
    pub history: HashMap<UserId, RingPending>,
    /// Roughly the number of pending sled writes.
    pub pending: usize,
    /// When the overlay was last written out.
    pub persisted_at: Instant,
    /// The watermark stored in each derived tree (never moved backwards).
    pub watermarks: [u64; 11],
}

impl Overlay {
    pub fn new(applied: u64) -> Self {
        Self {
            applied,
            event_keys: HashMap::new(),
            counters: HashMap::new(),
            creators: HashMap::new(),
            wellbeing: HashMap::new(),
            interest: HashMap::new(),
            affinity: HashMap::new(),
            seen: HashMap::new(),
            history: HashMap::new(),
            pending: 0,
            persisted_at: Instant::now(),
            watermarks: [applied; 11],
        }
    }

    fn clear(&mut self, d: Derived) {
        match d {
            Derived::EventKeys => self.event_keys.clear(),
            Derived::Counters => self.counters.clear(),
            Derived::CreatorCounts => self.creators.clear(),
            Derived::Wellbeing => self.wellbeing.clear(),
            Derived::Interest => self.interest.clear(),
            Derived::Affinity => self.affinity.clear(),
            Derived::Seen => self.seen.clear(),
            Derived::History => self.history.clear(),
            Derived::Follows | Derived::Followers | Derived::Mutes => {}
        }
    }

    /// The sled batch that writes `d`'s pending changes and its watermark.
    fn batch(&self, s: &Store, d: Derived, watermark: u64) -> Result<Batch> {
        let o = s.options();
        let mut b = Batch::default();
        match d {
            Derived::EventKeys => {
                for (k, seq) in &self.event_keys {
                    b.insert(k.as_str().as_bytes(), &seq.to_be_bytes());
                }
            }
            Derived::Counters => {
                for (id, rec) in &self.counters {
                    b.insert(id.as_str().as_bytes(), rec.encode().as_slice());
                }
            }
            Derived::CreatorCounts => {
                for (id, rec) in &self.creators {
                    b.insert(id.as_str().as_bytes(), rec.encode().as_slice());
                }
            }
            Derived::Wellbeing => {
                for (u, rec) in &self.wellbeing {
                    b.insert(u.as_str().as_bytes(), Store::encode_wellbeing(rec)?);
                }
            }
            Derived::Interest => {
                for (u, (at, vec)) in &self.interest {
                    let mut v = at.to_le_bytes().to_vec();
                    codec::encode_f32s(&mut v, vec);
                    b.insert(u.as_str().as_bytes(), v);
                }
            }
            Derived::Affinity => {
                for (u, m) in &self.affinity {
                    for (c, d) in m {
                        b.insert(pair(u.as_str(), c.as_str()), d.encode().as_slice());
                    }
                }
            }
            Derived::Seen => {
                for (u, r) in &self.seen {
                    r.write(u, o.seen_per_user, &mut b);
                }
            }
            Derived::History => {
                for (u, r) in &self.history {
                    r.write(u, o.history_per_user, &mut b);
                }
            }
            Derived::Follows | Derived::Followers | Derived::Mutes => {}
        }
        b.insert(WATERMARK_KEY, &watermark.to_be_bytes());
        Ok(b)
    }
}

impl Store {
    /// Writes the overlay's changes for the trees in `which` to sled, each tree in one
    /// batch with its watermark, and forgets them. Call under the write lock.
    pub(crate) fn persist_derived(&self, ov: &mut Overlay, which: Mask) -> Result<()> {
        let t = self.t();
        for d in Derived::ALL {
            if !which.has(d) {
                continue;
            }
            let wm = ov.watermarks[d as usize].max(ov.applied);
            let b = ov.batch(self, d, wm)?;
            d.tree(t).apply_batch(b).map_err(db_err)?;
            ov.watermarks[d as usize] = wm;
            ov.clear(d);
        }
        if which == Mask::ALL {
            ov.pending = 0;
        }
        ov.persisted_at = Instant::now();
        Ok(())
    }

    /// Persists the whole overlay when it is large or old enough. Call under the write lock.
    pub(crate) fn maybe_persist(&self, ov: &mut Overlay) -> Result<()> {
        let o = self.options();
        if ov.pending > o.derived_max_pending
            || (ov.pending > 0
                && ov.persisted_at.elapsed().as_millis() >= u128::from(o.derived_persist_ms))
        {
            self.persist_derived(ov, Mask::ALL)?;
        }
        Ok(())
    }

    /// Replays the log after the smallest watermark into the derived state (at open).
    pub(crate) fn replay(&self) -> Result<u64> {
        let _g = self.write_lock();
        let t = self.t();
        let mut wms = [0u64; 11];
        for (wm, d) in wms.iter_mut().zip(Derived::ALL) {
            *wm = watermark(t, d)?;
        }
        let from = wms.iter().copied().min().unwrap_or(0) + 1;
        let last = self
            .inner
            .next_seq
            .load(std::sync::atomic::Ordering::Acquire)
            - 1;
        {
            let mut ov = self.overlay_write();
            ov.watermarks = wms;
            ov.applied = from - 1;
        }
        if from > last {
            self.overlay_write().applied = last;
            return Ok(0);
        }
        let mut replayed = 0u64;
        let mut chunk = Vec::with_capacity(1_000);
        let mut iter = t.events.range(from.to_be_bytes()..);
        loop {
            chunk.clear();
            for kv in iter.by_ref() {
                let (k, v) = kv.map_err(db_err)?;
                let seq = u64_of(&k).ok_or_else(|| corrupt("event key"))?;
                chunk.push((seq, codec::decode_event(&v)?));
                if chunk.len() == 1_000 {
                    break;
                }
            }
            if chunk.is_empty() {
                break;
            }
            let items: Vec<_> = chunk
                .iter()
                .map(|(seq, e)| (*seq, e, Mask::needing(&wms, *seq)))
                .collect();
            let staged = self.stage(&items)?;
            self.install(staged)?;
            replayed += chunk.len() as u64;
            let mut ov = self.overlay_write();
            self.maybe_persist(&mut ov)?;
        }
        let mut ov = self.overlay_write();
        ov.applied = last;
        self.persist_derived(&mut ov, Mask::ALL)?;
        drop(ov);
        if replayed > 0 {
            tracing::info!(
                replayed,
                from,
                "store: replayed the event log into derived state"
            );
        }
        Ok(replayed)
    }
}
