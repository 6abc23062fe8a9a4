//! Persisting the derived state: the persister writes a frozen [`Layer`] to its sled
//! trees key by key, then each tree's watermark; opening replays the log after the
//! smallest watermark (see `derived.rs` for the rules that make this exact).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use steerfeed_core::{Error, Result, UserId};

use crate::codec::{self, pair};
use crate::derived::Overlay;
use crate::idempotency::{KEY_SEGMENT, KeyIndex, SEGMENT_KEYS};
use crate::layer::Layer;
use crate::rings::{Tail, Tails};
use crate::trees::{Derived, KeyWrites, Mask, WATERMARK_KEY, db_err, watermark};

use super::Store;

/// What one persister thread wrote: its trees with their new watermarks, the ring
/// fragments it stored newest, and whether it left keys out (a torn persist in tests).
struct Written<'a> {
    trees: Vec<(Derived, u64)>,
    tails: Tails<'a>,
    torn: bool,
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
                let w = self.layer_writes(layer, d, wm, &mut tails)?;
                let built = started.elapsed();
                let keys = w.len();
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
        self.flush_impressions()?;
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
        crate::log::for_each_logged(&t.events, from, |seq, e| {
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

    /// The sled writes of `d`'s changes in `layer`, each record as of `asof` (the tree's watermark
    /// once they are all written).
    fn layer_writes<'a>(
        &self,
        layer: &'a Layer,
        d: Derived,
        asof: u64,
        written: &mut Tails<'a>,
    ) -> Result<KeyWrites> {
        let o = self.options();
        let mut b = KeyWrites::default();
        match d {
            Derived::EventKeys => {
                let mut keys = layer.event_keys.clone();
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
                for (id, rec) in &layer.counters {
                    b.insert(
                        id.as_str().as_bytes(),
                        codec::with_asof(&rec.encode(), asof),
                    );
                }
            }
            Derived::CreatorCounts => {
                for (id, rec) in &layer.creators {
                    b.insert(
                        id.as_str().as_bytes(),
                        codec::with_asof(&rec.encode(), asof),
                    );
                }
            }
            Derived::Wellbeing => {
                for (u, rec) in &layer.wellbeing {
                    b.insert(u.as_str().as_bytes(), codec::encode_wellbeing(rec, asof));
                }
            }
            Derived::Interest => {
                for (u, (at, vec)) in &layer.interest {
                    b.insert(
                        u.as_str().as_bytes(),
                        codec::encode_interest(*at, vec, asof),
                    );
                }
            }
            Derived::Affinity => {
                for (u, m) in &layer.affinity {
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
                    Derived::Seen => (&layer.seen, &self.t().seen, o.seen_per_user),
                    _ => (&layer.history, &self.t().history, o.history_per_user),
                };
                // The resident newest fragments, copied out so writers are not held up
                // while the batch is built (only the persister changes them).
                let tails: HashMap<&UserId, Tail> = {
                    let ov = self.overlay_read();
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
