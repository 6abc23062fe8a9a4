//! One generation of derived changes not yet in sled (see `derived.rs`): what a run of
//! events changed in each derived tree, and how generations merge.

use std::collections::HashMap;

use steerfeed_core::{UserId, VideoId};

use crate::codec::{CounterRec, Decayed};
use crate::records::WellbeingRec;
use crate::rings::RingPending;
#[cfg(feature = "test-hooks")]
use crate::trees::Derived;

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
    pub(crate) fn clear(&mut self, d: Derived) {
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
}

impl Layer {
    /// Drops what the layer holds of an erased person: their wellbeing, interest,
    /// affinities and ring appends (and their creator counters, with `as_creator`).
    pub(crate) fn forget_user(&mut self, u: &UserId, as_creator: bool) {
        self.wellbeing.remove(u);
        self.interest.remove(u);
        self.affinity.remove(u);
        self.seen.remove(u);
        self.history.remove(u);
        if as_creator {
            self.creators.remove(u);
        }
    }

    /// Roughly the number of entries held.
    pub(crate) fn len(&self) -> usize {
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
    pub(crate) fn absorb(&mut self, written: Layer) {
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
    pub(crate) fn absorb_ref(&mut self, written: &Layer) {
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
    pub(crate) fn clone_shallow(&self) -> Layer {
        let mut l = Layer::default();
        l.absorb_ref(self);
        l
    }

    /// Puts `newer` on top of `self`.
    pub(crate) fn merge(&mut self, newer: Layer) {
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
