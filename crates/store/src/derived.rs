//! Derived state: what events change besides the log, kept memory-first.
//!
//! The event log is the write-ahead log. Everything an event changes besides the log —
//! idempotency keys, counters, creator counts, wellbeing, interest, affinity, the seen and
//! history rings — first goes to the in-memory [`Overlay`] (readers look there before
//! sled), and is written to its sled tree later by [`Store::persist_round`], key by
//! key, each record ending in its *as-of number* (the last event sequence it reflects;
//! idempotency-key segments carry each key's own sequence number instead, and reading
//! one twice changes nothing);
//! once every key is on disk the tree's *watermark* moves there: every record of the
//! tree holds the events up to it. Follow and mute edges from events are rare and go to
//! their trees right away, with the watermark in the same batch.
//!
//! Opening replays the log after the smallest watermark and applies each event only to
//! the trees whose watermark is below it, and in them only to the records whose as-of
//! number is below it — a crash halfway through writing a tree leaves some records
//! newer than its watermark. Every acknowledged event is then counted exactly once,
//! whatever was persisted when the process died.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use sled::Tree;
use steerfeed_core::{Error, Result, UserId, VideoId};

use crate::codec::{self, CounterRec, Decayed, corrupt, pair, u64_of};
use crate::idempotency::{KEY_SEGMENT, KeyIndex, SEGMENT_KEYS};
use crate::records::WellbeingRec;
use crate::resident::Resident;
use crate::rings::{RingPending, Tail, Tails};
use crate::store::Store;
use crate::trees::{Trees, WATERMARK_KEY, db_err};

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

    #[cfg(feature = "test-hooks")]
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

/// The sled writes of one derived tree in a persist: applied key by key
/// ([`KeyWrites::apply`]), not as one `sled::Batch`.
#[derive(Default)]
pub(crate) struct KeyWrites(Vec<(Vec<u8>, Option<Vec<u8>>)>);

impl KeyWrites {
    pub(crate) fn insert(&mut self, k: impl Into<Vec<u8>>, v: impl Into<Vec<u8>>) {
        self.0.push((k.into(), Some(v.into())));
    }

    pub(crate) fn remove(&mut self, k: impl Into<Vec<u8>>) {
        self.0.push((k.into(), None));
    }

    /// Writes up to `limit` keys into `tree`, each on its own, in key order, except that
    /// the keys of one owner (the part before `\0`) are inserted before any is removed:
    /// a ring's new newest fragment is in sled before the fragments that fell out of the
    /// ring go, so a crash between them never leaves a ring without its newest entries
    /// (readers skip what is left below the ring). No key is both inserted and removed
    /// by one persist.
    ///
    /// sled 0.34 applies a batch under its process-wide write lock, which also stops
    /// every reader: a persist's batch of 100,000 keys would stall the log append, the
    /// group-commit flush and every sled read for its whole length. Single inserts share
    /// that lock; what makes a torn persist safe instead is each record's as-of number
    /// and the watermark written last ([`Store::write_layer`]).
    fn apply(mut self, tree: &Tree, limit: usize) -> Result<()> {
        let owner =
            |k: &[u8]| -> usize { k.iter().position(|&c| c == codec::SEP).unwrap_or(k.len()) };
        self.0.sort_by(|a, b| {
            let (oa, ob) = (&a.0[..owner(&a.0)], &b.0[..owner(&b.0)]);
            (oa, a.1.is_none(), &a.0).cmp(&(ob, b.1.is_none(), &b.0))
        });
        for (k, v) in self.0.into_iter().take(limit) {
            match v {
                Some(v) => tree.insert(k, v).map(|_| ()),
                None => tree.remove(k).map(|_| ()),
            }
            .map_err(db_err)?;
        }
        Ok(())
    }
}

/// What one persister thread wrote: its trees with their new watermarks, the ring
/// fragments it stored newest, and whether it left keys out (a torn persist in tests).
struct Written<'a> {
    trees: Vec<(Derived, u64)>,
    tails: Tails<'a>,
    torn: bool,
}

/// One generation of derived changes not yet in sled.
#[derive(Default)]
pub(crate) struct Layer {
    /// Idempotency keys logged: (key hash, sequence number).
    pub event_keys: Vec<(u64, u64)>,
    pub counters: HashMap<VideoId, CounterRec>,
    pub creators: HashMap<UserId, CounterRec>,
    pub wellbeing: HashMap<UserId, WellbeingRec>,
    pub interest: HashMap<UserId, (i64, Vec<f32>)>,
    pub affinity: HashMap<UserId, HashMap<UserId, Decayed>>,
    pub seen: HashMap<UserId, RingPending>,
    pub history: HashMap<UserId, RingPending>,
}

impl Layer {
    #[cfg(feature = "test-hooks")]
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

    /// The sled writes of `d`'s changes, each record as of `asof` (the tree's watermark
    /// once they are all written).
    fn writes<'a>(
        &'a self,
        s: &Store,
        d: Derived,
        asof: u64,
        written: &mut Tails<'a>,
    ) -> Result<KeyWrites> {
        let o = s.options();
        let mut b = KeyWrites::default();
        match d {
            Derived::EventKeys => {
                let mut keys = self.event_keys.clone();
                keys.sort_unstable_by_key(|&(_, seq)| seq);
                for seg in keys.chunks(SEGMENT_KEYS) {
                    let mut k = vec![KEY_SEGMENT];
                    k.extend_from_slice(&seg[0].1.to_be_bytes());
                    let mut v = Vec::with_capacity(seg.len() * 16);
                    for (h, seq) in seg {
                        v.extend_from_slice(&h.to_le_bytes());
                        v.extend_from_slice(&seq.to_le_bytes());
                    }
                    b.insert(k, v);
                }
            }
            Derived::Counters => {
                for (id, rec) in &self.counters {
                    b.insert(
                        id.as_str().as_bytes(),
                        codec::with_asof(&rec.encode(), asof),
                    );
                }
            }
            Derived::CreatorCounts => {
                for (id, rec) in &self.creators {
                    b.insert(
                        id.as_str().as_bytes(),
                        codec::with_asof(&rec.encode(), asof),
                    );
                }
            }
            Derived::Wellbeing => {
                for (u, rec) in &self.wellbeing {
                    b.insert(u.as_str().as_bytes(), codec::encode_wellbeing(rec, asof));
                }
            }
            Derived::Interest => {
                for (u, (at, vec)) in &self.interest {
                    b.insert(
                        u.as_str().as_bytes(),
                        codec::encode_interest(*at, vec, asof),
                    );
                }
            }
            Derived::Affinity => {
                for (u, m) in &self.affinity {
                    for (c, d) in m {
                        b.insert(
                            pair(u.as_str(), c.as_str()),
                            codec::with_asof(&d.encode(), asof),
                        );
                    }
                }
            }
            Derived::Seen | Derived::History => {
                let (rings, tree, cap) = match d {
                    Derived::Seen => (&self.seen, &s.t().seen, o.seen_per_user),
                    _ => (&self.history, &s.t().history, o.history_per_user),
                };
                // The resident newest fragments, copied out so writers are not held up
                // while the batch is built (only the persister changes them).
                let tails: HashMap<&UserId, Tail> = {
                    let ov = s.overlay_read();
                    rings
                        .keys()
                        .filter_map(|u| Some((u, ov.resident.tail(d, u)?.clone())))
                        .collect()
                };
                let out = match d {
                    Derived::Seen => &mut written.seen,
                    _ => &mut written.history,
                };
                for (u, r) in rings {
                    if let Some(t) = r.write(tree, u, cap, tails.get(u), asof, &mut b)? {
                        out.insert(u, t);
                    }
                }
            }
            Derived::Follows | Derived::Followers | Derived::Mutes => {}
        }
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
    /// The layers written so far, merged, kept as a read cache of what sled now holds
    /// (so later batches need not read hot keys back from sled; ring heads only), up to
    /// about 4 × `derived_max_pending` entries. Dropped whenever sled changes under it
    /// otherwise (video deletion, partial writes in tests).
    pub clean: Option<Arc<Layer>>,
    /// Roughly the number of sled writes pending in `active`.
    pub pending: usize,
    /// When `active` was last frozen.
    pub persisted_at: Instant,
    /// The watermark stored in each derived tree (never moved backwards).
    pub watermarks: [u64; 11],
    /// Every idempotency key logged (loaded at open, kept up to date by writes).
    pub keys: KeyIndex,
    /// A mirror of sled's per-user trees for some users, below every layer
    /// (`resident.rs`): changed with each layer written.
    pub resident: Resident,
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
            keys: KeyIndex::default(),
            resident: Resident::default(),
        }
    }

    fn layers(&self) -> impl Iterator<Item = &Layer> {
        std::iter::once(&self.active)
            .chain(self.frozen.as_deref())
            .chain(self.clean.as_deref())
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
    /// Writes `layer`'s changes for the trees in `which`, every record as of `applied`,
    /// then, once they are on disk, each tree's watermark; returns the watermarks and
    /// the ring fragments written newest. Call holding the persist lock.
    ///
    /// Keys go to sled one by one (see [`KeyWrites::apply`]). A crash halfway leaves a
    /// tree with some records as of `applied` and the rest older, under the older
    /// watermark: the replay then applies each event only to the records whose as-of
    /// number is below it.
    fn write_layer<'a>(
        &self,
        layer: &'a Layer,
        which: Mask,
        applied: u64,
    ) -> Result<([u64; 11], Tails<'a>)> {
        self.write_layer_keys(layer, which, applied, usize::MAX)?
            .ok_or_else(|| Error::internal("store", "a persist wrote only part of its keys"))
    }

    /// [`Store::write_layer`], writing at most `limit` keys per tree; `None` when that
    /// left some out (test support: a torn persist), and then no watermark moves.
    fn write_layer_keys<'a>(
        &self,
        layer: &'a Layer,
        which: Mask,
        applied: u64,
        limit: usize,
    ) -> Result<Option<([u64; 11], Tails<'a>)>> {
        let t = self.t();
        let mut wms = self.overlay_read().watermarks;
        // Two threads, each writing its own trees: sled's single inserts run in parallel,
        // and a persist keeps pace with a writer on another core. The split evens out
        // keys per event (an impression changes its user's wellbeing and seen ring).
        let trees = |second: bool| {
            Derived::ALL.into_iter().filter(move |&d| {
                which.has(d)
                    && !matches!(d, Derived::Follows | Derived::Followers | Derived::Mutes)
                    && second
                        == matches!(
                            d,
                            Derived::Wellbeing
                                | Derived::History
                                | Derived::Affinity
                                | Derived::CreatorCounts
                        )
            })
        };
        let write = |second: bool| -> Result<Written<'a>> {
            let mut tails = Tails::default();
            let mut written = Vec::new();
            let mut torn = false;
            for d in trees(second) {
                let wm = wms[d as usize].max(applied);
                let started = Instant::now();
                let w = layer.writes(self, d, wm, &mut tails)?;
                let built = started.elapsed();
                let keys = w.0.len();
                torn |= keys > limit;
                w.apply(d.tree(t), limit)?;
                tracing::debug!(
                    tree = ?d,
                    keys,
                    build_us = built.as_micros() as u64,
                    apply_us = (started.elapsed() - built).as_micros() as u64,
                    "store: derived tree written"
                );
                written.push((d, wm));
            }
            Ok(Written {
                trees: written,
                tails,
                torn,
            })
        };
        let (first, second) = std::thread::scope(|sc| {
            // Without a second thread (the system refused one), this one writes both.
            let second = std::thread::Builder::new()
                .name("steerfeed-persist".into())
                .spawn_scoped(sc, || write(true))
                .ok();
            let first = write(false);
            let second = match second {
                Some(h) => h.join().unwrap_or_else(|_| {
                    Err(Error::internal("store", "a persister thread panicked"))
                }),
                None => write(true),
            };
            (first, second)
        });
        let (first, second) = (first?, second?);
        let torn = first.torn || second.torn;
        let mut tails = first.tails;
        tails.seen.extend(second.tails.seen);
        tails.history.extend(second.tails.history);
        let written = first.trees.into_iter().chain(second.trees);
        // Every record the watermarks cover is on disk before any of them moves, whatever
        // order sled's recovery would keep.
        self.inner.db().flush().map_err(db_err)?;
        if torn {
            return Ok(None);
        }
        for (d, wm) in written {
            d.tree(t)
                .insert(WATERMARK_KEY, &wm.to_be_bytes())
                .map_err(db_err)?;
            wms[d as usize] = wm;
        }
        Ok(Some((wms, tails)))
    }

    /// Test support: writes at most `keep` keys of each derived tree from the active
    /// layer and no watermark, as a crash halfway through a persist would leave sled;
    /// the layer stays in memory. True when some keys were left out.
    #[cfg(feature = "test-hooks")]
    pub(crate) fn persist_torn(&self, keep: usize) -> Result<bool> {
        let _p = self.persist_lock();
        let _g = self.write_lock();
        let applied = self.overlay_read().applied;
        let layer = std::mem::take(&mut self.overlay_write().active);
        let res = self
            .write_layer_keys(&layer, Mask::ALL, applied, keep)
            .map(|w| w.is_none());
        self.overlay_write().active = layer;
        res
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
            Ok((wms, tails)) => {
                ov.resident.written(&layer, Mask::ALL, tails);
                for (w, n) in ov.watermarks.iter_mut().zip(wms) {
                    *w = (*w).max(n);
                }
                let frozen = ov.frozen.take();
                drop(layer);
                let limit = self.options().derived_max_pending.saturating_mul(4);
                let merged = match (ov.clean.take().map(Arc::try_unwrap), frozen) {
                    // The clean layer grows into a read cache of every hot key, so later
                    // batches do not read them back from sled (bounded: past the limit
                    // it starts over from the layer just written).
                    (Some(Ok(mut clean)), Some(f)) if clean.len() <= limit => {
                        match Arc::try_unwrap(f) {
                            Ok(f) => clean.absorb(f),
                            Err(f) => clean.absorb_ref(&f),
                        }
                        Some(Arc::new(clean))
                    }
                    (old, f) => {
                        if let Some(old) = old {
                            let old = old.unwrap_or_else(|a| (*a).clone_shallow());
                            self.forget_layer(Some(&old));
                        }
                        f.map(|f| {
                            let mut clean = Layer::default();
                            match Arc::try_unwrap(f) {
                                Ok(f) => clean.absorb(f),
                                Err(f) => clean.absorb_ref(&f),
                            }
                            Arc::new(clean)
                        })
                    }
                };
                ov.clean = merged;
                Ok(())
            }
            // Keep the frozen layer readable; the next round writes it again, merged
            // under the newer active layer.
            Err(e) => {
                // Some trees may hold the layer already: the mirror may be behind them.
                ov.resident.clear();
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
    #[cfg(feature = "test-hooks")]
    pub(crate) fn persist_some(&self, which: Mask) -> Result<()> {
        let _p = self.persist_lock();
        let _g = self.write_lock();
        let applied = self.overlay_read().applied;
        let layer = std::mem::take(&mut self.overlay_write().active);
        let res = self.write_layer(&layer, which, applied);
        let mut ov = self.overlay_write();
        let res = match res {
            Ok((wms, tails)) => {
                ov.resident.written(&layer, which, tails);
                Ok(wms)
            }
            Err(e) => {
                ov.resident.clear();
                Err(e)
            }
        };
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

    /// After a write: an active layer over its bound wakes the background persister,
    /// so the writer goes on while the layer is written. One that grew past three
    /// times its bound (the persister is behind) is written by the writer itself,
    /// after the round in progress: that bounds memory and holds writers back.
    pub(crate) fn persist_if_due(&self) -> Result<()> {
        let pending = self.overlay_read().pending;
        let max = self.options().derived_max_pending;
        if pending > max.saturating_mul(3) {
            self.persist_round()
        } else {
            if pending > max {
                self.inner.persist_wake().raise();
            }
            Ok(())
        }
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
            .next_seq()
            .load(std::sync::atomic::Ordering::Acquire)
            - 1;
        let keys = KeyIndex::load(&t.event_keys, &t.events)?;
        {
            let mut ov = self.overlay_write();
            ov.watermarks = wms;
            ov.applied = from - 1;
            ov.keys = keys;
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
                let edges = self.write_edges(&staged)?;
                self.install(staged, &edges)?;
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
    /// Roughly the number of entries held.
    fn len(&self) -> usize {
        self.counters.len()
            + self.creators.len()
            + self.wellbeing.len()
            + self.interest.len() * 16
            + self.affinity.values().map(HashMap::len).sum::<usize>()
            + self.seen.len()
            + self.history.len()
    }

    /// Puts `written` (a layer now in sled) on top of this clean layer: its values, and
    /// of its ring appends only the heads (sled has the entries).
    fn absorb(&mut self, written: Layer) {
        self.counters.extend(written.counters);
        self.creators.extend(written.creators);
        self.wellbeing.extend(written.wellbeing);
        self.interest.extend(written.interest);
        for (u, m) in written.affinity {
            self.affinity.entry(u).or_default().extend(m);
        }
        for (mine, theirs) in [
            (&mut self.seen, written.seen),
            (&mut self.history, written.history),
        ] {
            for (u, r) in theirs {
                mine.insert(u, RingPending::at(r.head));
            }
        }
    }

    /// [`Layer::absorb`] of a layer still shared.
    fn absorb_ref(&mut self, written: &Layer) {
        self.counters
            .extend(written.counters.iter().map(|(k, v)| (k.clone(), *v)));
        self.creators
            .extend(written.creators.iter().map(|(k, v)| (k.clone(), *v)));
        self.wellbeing.extend(
            written
                .wellbeing
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        self.interest
            .extend(written.interest.iter().map(|(k, v)| (k.clone(), v.clone())));
        for (u, m) in &written.affinity {
            self.affinity
                .entry(u.clone())
                .or_default()
                .extend(m.iter().map(|(c, d)| (c.clone(), *d)));
        }
        for (mine, theirs) in [
            (&mut self.seen, &written.seen),
            (&mut self.history, &written.history),
        ] {
            for (u, r) in theirs {
                mine.insert(u.clone(), RingPending::at(r.head));
            }
        }
    }

    /// The keys of a shared layer (for [`Store::forget_layer`]).
    fn clone_shallow(&self) -> Layer {
        let mut l = Layer::default();
        l.absorb_ref(self);
        l
    }

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
