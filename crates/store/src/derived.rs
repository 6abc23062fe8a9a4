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

use steerfeed_core::{UserId, VideoId};

use crate::codec::{CounterRec, Decayed};
use crate::idempotency::KeyIndex;
use crate::layer::Layer;
use crate::records::WellbeingRec;
use crate::resident::Resident;
use crate::rings::RingPending;

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
