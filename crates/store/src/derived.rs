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
use std::sync::Arc;
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
        let keep_from = self.head.saturating_sub(cap);
        for (seq, v) in self.entries.iter().filter(|(seq, _)| *seq >= keep_from) {
            b.insert(seq_key(user.as_str(), *seq), v.as_slice());
        }
        for seq in self.base.saturating_sub(cap)..self.base.min(keep_from) {
            b.remove(seq_key(user.as_str(), seq));
        }
        b.insert(user.as_str().as_bytes(), &self.head.to_be_bytes());
    }
}

/// One generation of derived changes not yet in sled.
#[derive(Default)]
pub(crate) struct Layer {
    pub event_keys: HashMap<EventKey, u64>,
    pub counters: HashMap<VideoId, CounterRec>,
    pub creators: HashMap<UserId, CounterRec>,
    pub wellbeing: HashMap<UserId, WellbeingRec>,
    pub interest: HashMap<UserId, (i64, Vec<f32>)>,
    pub affinity: HashMap<UserId, HashMap<UserId, Decayed>>,
    pub seen: HashMap<UserId, RingPending>,
    pub history: HashMap<UserId, RingPending>,
}

impl Layer {
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

    /// The sled batch that writes `d`'s changes and its watermark.
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

/// Derived state changed in memory and not yet in sled: the `active` layer writers
/// change, and the `frozen` one the persister is writing out. Readers look at `active`,
/// then `frozen`, then sled.
pub(crate) struct Overlay {
    /// The last event sequence whose effects are in the overlay or the trees.
    pub applied: u64,
    pub active: Layer,
    pub frozen: Option<Arc<Layer>>,
    /// The layer written last, kept as a read cache of what sled now holds (so the next
    /// batches need not read hot keys back from sled). Dropped whenever sled changes
    /// under it otherwise (video deletion, partial writes in tests).
    pub clean: Option<Arc<Layer>>,
    /// Roughly the number of sled writes pending in `active`.
    pub pending: usize,
    /// When `active` was last frozen.
    pub persisted_at: Instant,
    /// The watermark stored in each derived tree (never moved backwards).
    pub watermarks: [u64; 11],
}

impl Overlay {
    pub fn new(applied: u64) -> Self {
        Self {
            applied,
            active: Layer::default(),
            frozen: None,
            clean: None,
            pending: 0,
            persisted_at: Instant::now(),
            watermarks: [applied; 11],
        }
    }

    fn layers(&self) -> impl Iterator<Item = &Layer> {
        std::iter::once(&self.active)
            .chain(self.frozen.as_deref())
            .chain(self.clean.as_deref())
    }

    pub fn has_key(&self, k: &EventKey) -> bool {
        self.layers().any(|l| l.event_keys.contains_key(k))
    }

    pub fn counter(&self, id: &VideoId) -> Option<&CounterRec> {
        self.layers().find_map(|l| l.counters.get(id))
    }

    pub fn creator(&self, id: &UserId) -> Option<&CounterRec> {
        self.layers().find_map(|l| l.creators.get(id))
    }

    pub fn wellbeing(&self, u: &UserId) -> Option<&WellbeingRec> {
        self.layers().find_map(|l| l.wellbeing.get(u))
    }

    pub fn interest(&self, u: &UserId) -> Option<&(i64, Vec<f32>)> {
        self.layers().find_map(|l| l.interest.get(u))
    }

    pub fn affinity(&self, u: &UserId, c: &UserId) -> Option<&Decayed> {
        self.layers()
            .find_map(|l| l.affinity.get(u).and_then(|m| m.get(c)))
    }

    /// Every affinity of `u` in memory, newest layer winning.
    pub fn affinities(&self, u: &UserId) -> HashMap<UserId, Decayed> {
        let mut out = HashMap::new();
        for l in self.layers().collect::<Vec<_>>().into_iter().rev() {
            if let Some(m) = l.affinity.get(u) {
                out.extend(m.iter().map(|(c, d)| (c.clone(), *d)));
            }
        }
        out
    }

    /// `u`'s pending appends to a ring, newest layer first (not the clean layer: sled
    /// has those).
    pub fn rings<'a>(
        &'a self,
        u: &UserId,
        ring: fn(&Layer) -> &HashMap<UserId, RingPending>,
    ) -> Vec<&'a RingPending> {
        std::iter::once(&self.active)
            .chain(self.frozen.as_deref())
            .filter_map(|l| ring(l).get(u))
            .collect()
    }
}

impl Store {
    /// Writes `layer`'s changes for the trees in `which`, each tree in one batch with
    /// its watermark `applied`. Call holding the persist lock.
    fn write_layer(&self, layer: &Layer, which: Mask, applied: u64) -> Result<[u64; 11]> {
        let t = self.t();
        let mut wms = self.overlay_read().watermarks;
        for d in Derived::ALL {
            if !which.has(d) || matches!(d, Derived::Follows | Derived::Followers | Derived::Mutes)
            {
                continue;
            }
            let wm = wms[d as usize].max(applied);
            let b = layer.batch(self, d, wm)?;
            d.tree(t).apply_batch(b).map_err(db_err)?;
            wms[d as usize] = wm;
        }
        Ok(wms)
    }

    /// Edge trees hold every edge up to `applied` already: move their watermarks there.
    /// Call under the write lock.
    fn raise_edge_watermarks(&self, ov: &mut Overlay) -> Result<()> {
        for d in [Derived::Follows, Derived::Followers, Derived::Mutes] {
            if ov.watermarks[d as usize] < ov.applied {
                d.tree(self.t())
                    .insert(WATERMARK_KEY, &ov.applied.to_be_bytes())
                    .map_err(db_err)?;
                ov.watermarks[d as usize] = ov.applied;
            }
        }
        Ok(())
    }

    /// Writes the derived state in memory to sled: freezes the active layer (briefly
    /// under the write lock), writes it out while writers go on with a fresh one, then
    /// drops it. Readers see the frozen layer until its trees have it.
    pub(crate) fn persist_round(&self) -> Result<()> {
        let _p = self.persist_lock();
        let (layer, applied) = {
            let _g = self.write_lock();
            let mut ov = self.overlay_write();
            self.raise_edge_watermarks(&mut ov)?;
            ov.persisted_at = Instant::now();
            if ov.pending == 0 {
                return Ok(());
            }
            let layer = Arc::new(std::mem::take(&mut ov.active));
            ov.frozen = Some(Arc::clone(&layer));
            ov.pending = 0;
            (layer, ov.applied)
        };
        let res = self.write_layer(&layer, Mask::ALL, applied);
        let mut ov = self.overlay_write();
        match res {
            Ok(wms) => {
                for (w, n) in ov.watermarks.iter_mut().zip(wms) {
                    *w = (*w).max(n);
                }
                let frozen = ov.frozen.take();
                let old = std::mem::replace(&mut ov.clean, frozen);
                self.forget_layer(old.as_deref());
                Ok(())
            }
            // Keep the frozen layer readable; the next round writes it again, merged
            // under the newer active layer.
            Err(e) => {
                ov.frozen = None;
                if let Ok(mut merged) = Arc::try_unwrap(layer) {
                    merged.merge(std::mem::take(&mut ov.active));
                    ov.active = merged;
                    ov.pending += 1;
                }
                Err(e)
            }
        }
    }

    /// Test support: writes only the trees in `which` from the active layer.
    pub(crate) fn persist_some(&self, which: Mask) -> Result<()> {
        let _p = self.persist_lock();
        let _g = self.write_lock();
        let applied = self.overlay_read().applied;
        let layer = std::mem::take(&mut self.overlay_write().active);
        let res = self.write_layer(&layer, which, applied);
        let mut ov = self.overlay_write();
        ov.active = layer;
        let old = ov.clean.take();
        self.forget_layer(old.as_deref());
        let wms = res?;
        for d in Derived::ALL {
            if which.has(d) {
                ov.active.clear(d);
                ov.watermarks[d as usize] = wms[d as usize];
            }
        }
        if which.has(Derived::Follows) {
            self.raise_edge_watermarks(&mut ov)?;
        }
        Ok(())
    }

    /// True when the active layer is over its bound and the caller should persist.
    pub(crate) fn persist_due(&self) -> bool {
        self.overlay_read().pending > self.options().derived_max_pending
    }

    /// Replays the log after the smallest watermark into the derived state (at open).
    pub(crate) fn replay(&self) -> Result<u64> {
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
        let mut apply = |chunk: &mut Vec<(u64, steerfeed_core::Event)>| -> Result<()> {
            let items: Vec<_> = chunk
                .iter()
                .map(|(seq, e)| (*seq, e, Mask::needing(&wms, *seq)))
                .collect();
            {
                let _g = self.write_lock();
                let staged = self.stage(&items)?;
                self.install(staged)?;
            }
            replayed += chunk.len() as u64;
            chunk.clear();
            if self.persist_due() {
                self.persist_round()?;
            }
            Ok(())
        };
        crate::ingest::for_each_logged(&t.events, from, |seq, e| {
            chunk.push((seq, e));
            if chunk.len() == 1_000 {
                apply(&mut chunk)?;
            }
            Ok(())
        })?;
        if !chunk.is_empty() {
            apply(&mut chunk)?;
        }
        self.overlay_write().applied = last;
        self.persist_round()?;
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

impl Layer {
    /// Puts `newer` on top of `self`.
    fn merge(&mut self, newer: Layer) {
        self.event_keys.extend(newer.event_keys);
        self.counters.extend(newer.counters);
        self.creators.extend(newer.creators);
        self.wellbeing.extend(newer.wellbeing);
        self.interest.extend(newer.interest);
        for (u, m) in newer.affinity {
            self.affinity.entry(u).or_default().extend(m);
        }
        for (mine, theirs) in [
            (&mut self.seen, newer.seen),
            (&mut self.history, newer.history),
        ] {
            for (u, r) in theirs {
                match mine.get_mut(&u) {
                    Some(old) => {
                        old.head = r.head;
                        old.entries.extend(r.entries);
                    }
                    None => {
                        mine.insert(u, r);
                    }
                }
            }
        }
    }
}
