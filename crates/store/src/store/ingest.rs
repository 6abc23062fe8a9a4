//! Event ingestion: validation, idempotency, and the derived state every event updates.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use jiff::tz::TimeZone;
use sled::{Batch, Tree};
use steerfeed_core::ports::Engagement;
use steerfeed_core::{Entity, Error, Event, EventKey, EventKind, Result, UserId, Video, VideoId};

use super::rings::Rings;
use crate::codec::{self, CounterRec, Decayed, ms, pair};
use crate::derived::Overlay;
use crate::mirror::Edge;
use crate::trees::WATERMARK_KEY;
use crate::trees::{Derived, Mask};
use steerfeed_core::storage::{IngestReport, Logged};

use crate::records::WellbeingRec;
use crate::store::Store;
use crate::trees::{Writes, db_err};

/// The derived changes of a run of events, computed against the overlay and sled but not
/// yet visible: [`Store::install`] moves them into the overlay.
pub(crate) struct Staged {
    last: u64,
    keys: Vec<(EventKey, u64)>,
    counters: HashMap<VideoId, CounterRec>,
    creators: HashMap<UserId, CounterRec>,
    wellbeing: HashMap<UserId, WellbeingRec>,
    interest: HashMap<UserId, (i64, Vec<f32>)>,
    affinity: HashMap<(UserId, UserId), Decayed>,
    rings: Rings,
    /// Edges with the trees (follows and followers, or mutes) that still need them.
    follows: Vec<(UserId, UserId, Mask)>,
    mutes: Vec<(UserId, UserId)>,
}

/// The state one run of events changes, loaded lazily (overlay first, then sled) and
/// computed once per key.
struct Staging<'s, 'o> {
    s: &'s Store,
    ov: &'o Overlay,
    wellbeing: HashMap<UserId, (WellbeingRec, TimeZone)>,
    staged: Staged,
}

/// A counter record: the overlay's (`mem`), else the read cache's (`cached`: valid
/// while the overlay is read-locked, see `Store::forget_layer`), else sled's; with its
/// as-of number (sled's only: copies in memory reflect every event applied so far).
fn load_counter(
    mem: Option<&CounterRec>,
    cached: impl FnOnce() -> Option<Option<CounterRec>>,
    tree: &Tree,
    key: &str,
    at_ms: i64,
) -> Result<(CounterRec, u64)> {
    if let Some(r) = mem {
        return Ok((*r, 0));
    }
    let stored = match cached() {
        Some(Some(r)) => return Ok((r, 0)),
        Some(None) => None,
        None => tree.get(key).map_err(db_err)?,
    };
    match stored {
        Some(b) => CounterRec::decode_asof(&b),
        None => Ok((
            CounterRec {
                at_ms,
                ..CounterRec::default()
            },
            0,
        )),
    }
}

/// The staged record of a key: the one already staged, else `load`'s (record, as-of
/// number) staged now; `None` when the record holds event `seq` already (its as-of
/// number is at or past it: a replay after a crash halfway through a persist). A
/// skipped record is not staged, so later events load and check it again.
fn staged_or_load<K: std::hash::Hash + Eq, V>(
    map: &mut HashMap<K, V>,
    key: K,
    seq: u64,
    load: impl FnOnce() -> Result<(V, u64)>,
) -> Result<Option<&mut V>> {
    Ok(match map.entry(key) {
        Entry::Occupied(x) => Some(x.into_mut()),
        Entry::Vacant(x) => {
            let (v, asof) = load()?;
            (seq > asof).then(|| x.insert(v))
        }
    })
}

fn is_creation(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Remix { .. } | EventKind::CameoUse { .. } | EventKind::Create { .. }
    )
}

impl<'s, 'o> Staging<'s, 'o> {
    fn new(s: &'s Store, ov: &'o Overlay) -> Self {
        Self {
            s,
            ov,
            wellbeing: HashMap::new(),
            staged: Staged {
                last: 0,
                keys: Vec::new(),
                counters: HashMap::new(),
                creators: HashMap::new(),
                wellbeing: HashMap::new(),
                interest: HashMap::new(),
                affinity: HashMap::new(),
                rings: Rings::default(),
                follows: Vec::new(),
                mutes: Vec::new(),
            },
        }
    }

    /// Stages the effects of event `seq` on the trees in `mask`.
    fn apply(&mut self, seq: u64, e: &Event, mask: Mask) -> Result<()> {
        let s = self.s;
        self.staged.last = self.staged.last.max(seq);
        let weight = (s.options().weight)(&e.kind);
        let weight = if weight.is_finite() {
            weight.max(0.0)
        } else {
            0.0
        };
        let video: Option<Arc<Video>> = match e.kind.video() {
            Some(id) => Some(
                s.video(id)?
                    .ok_or_else(|| Error::not_found(Entity::Video, id))?,
            ),
            None => None,
        };
        if mask.has(Derived::EventKeys) {
            self.staged.keys.push((e.key.clone(), seq));
        }
        if let Some(v) = video.as_deref().filter(|v| !v.deleted) {
            self.stage_counters(seq, e, v, weight, mask)?;
        }
        if mask.has(Derived::Wellbeing) {
            self.stage_wellbeing(seq, e)?;
        }
        self.stage_rings(seq, e, video.is_some(), weight, mask)?;
        let Some(v) = video else { return Ok(()) };
        if mask.has(Derived::Interest) && weight > 0.0 {
            self.stage_interest(seq, e, &v, weight)?;
        }
        // An erased person's deleted video names no one: no affinity, follow or mute.
        if v.creator != e.user && v.creator.as_str() != steerfeed_core::person::ERASED_CREATOR {
            self.stage_creator_relation(seq, e, &v, weight, mask)?;
        }
        Ok(())
    }

    /// The video's counters (live videos only) and its creator's sums.
    fn stage_counters(
        &mut self,
        seq: u64,
        e: &Event,
        v: &Video,
        weight: f32,
        mask: Mask,
    ) -> Result<()> {
        let s = self.s;
        let ov = self.ov;
        let st = &mut self.staged;
        let t = s.t();
        let at = ms(e.at);
        let hl = s.half_life_ms();
        let creation = is_creation(&e.kind);
        let add =
            |c: &mut steerfeed_core::ports::ActionCounts, pop: &mut f32, rmx: &mut f32, k: f32| {
                c.add(&e.kind, k);
                *pop += weight * k;
                if creation {
                    *rmx += k;
                }
            };
        if mask.has(Derived::Counters)
            && let Some(rec) = staged_or_load(&mut st.counters, v.id.clone(), seq, || {
                load_counter(
                    ov.counter(&v.id),
                    || {
                        let c = s.inner.counter_cache().read();
                        c.unwrap_or_else(|e| e.into_inner()).get(&v.id).copied()
                    },
                    &t.counters,
                    v.id.as_str(),
                    at,
                )
            })?
        {
            rec.add(at, hl, add);
        }
        if mask.has(Derived::CreatorCounts)
            && let Some(rec) = staged_or_load(&mut st.creators, v.creator.clone(), seq, || {
                load_counter(
                    ov.creator(&v.creator),
                    || {
                        let c = s.inner.creator_cache().read();
                        c.unwrap_or_else(|e| e.into_inner())
                            .get(&v.creator)
                            .copied()
                    },
                    &t.creator_counts,
                    v.creator.as_str(),
                    at,
                )
            })?
        {
            rec.add(at, hl, add);
        }
        Ok(())
    }

    /// The user's wellbeing counters: items and minutes today, the passive streak, the
    /// last check-in answer.
    fn stage_wellbeing(&mut self, seq: u64, e: &Event) -> Result<()> {
        let s = self.s;
        let ov = self.ov;
        if let Some((rec, tz)) = staged_or_load(&mut self.wellbeing, e.user.clone(), seq, || {
            let (rec, asof) = match (ov.wellbeing(&e.user), ov.resident.get(&e.user)) {
                (Some(r), _) => (r.clone(), 0),
                (None, Some(r)) => (r.wellbeing.clone().unwrap_or_default(), 0),
                (None, None) => s.stored_wellbeing(&e.user)?,
            };
            Ok(((rec, s.time_zone_for_write(&e.user)?), asof))
        })? {
            rec.touch(e.at, s.gap_ms());
            let today = rec.roll(tz, e.at);
            match &e.kind {
                EventKind::Impression { video: id } | EventKind::View { video: id, .. } => {
                    if rec.last_item.as_ref() != Some(id) {
                        if today {
                            rec.state.items_today = rec.state.items_today.saturating_add(1);
                        }
                        rec.last_item = Some(id.clone());
                    }
                    if let EventKind::View { watch_ms, .. } = &e.kind {
                        if today {
                            rec.state.minutes_today += (*watch_ms as f64 / 60_000.0) as f32;
                        }
                        rec.state.passive_streak = rec.state.passive_streak.saturating_add(1);
                    }
                }
                EventKind::CheckinAnswer { answer } => {
                    if rec.state.last_answer.is_none_or(|(_, t0)| t0 <= e.at) {
                        rec.state.last_answer = Some((*answer, e.at));
                    }
                    if rec.state.last_checkin.is_none_or(|t0| t0 < e.at) {
                        rec.state.last_checkin = Some(e.at);
                    }
                }
                k if k.is_active() => rec.state.passive_streak = 0,
                _ => {}
            }
        }
        Ok(())
    }

    /// The seen ring (any event on a video but its creation) and the history ring
    /// (events that weigh, on a known video).
    fn stage_rings(
        &mut self,
        seq: u64,
        e: &Event,
        on_video: bool,
        weight: f32,
        mask: Mask,
    ) -> Result<()> {
        let (s, ov, at) = (self.s, self.ov, ms(e.at));
        let st = &mut self.staged;
        // Any event on a video says the user met it (shown, watched, engaged with,
        // skipped, reported): it is not served to them again while in the ring. A video
        // they created is excluded by the seen filter as theirs.
        if mask.has(Derived::Seen)
            && !matches!(e.kind, EventKind::Create { .. })
            && let Some(id) = e.kind.video()
        {
            st.rings.push_seen(s, ov, (&e.user, seq), at, id)?;
        }
        if mask.has(Derived::History) && weight > 0.0 && on_video {
            st.rings.push_history(s, ov, (&e.user, seq), at, &e.kind)?;
        }
        Ok(())
    }

    /// The user's interest vector: a decayed, weighted sum of engaged embeddings.
    fn stage_interest(&mut self, seq: u64, e: &Event, v: &Video, weight: f32) -> Result<()> {
        let s = self.s;
        let ov = self.ov;
        let st = &mut self.staged;
        let t = s.t();
        let o = s.options();
        let at = ms(e.at);
        if let Some(emb) = &v.embedding
            && let Some((ref_ms, vec)) =
                staged_or_load(&mut st.interest, e.user.clone(), seq, || {
                    let resident = ov.resident.get(&e.user).map(|r| &r.interest);
                    Ok(match (ov.interest(&e.user), resident) {
                        (Some(iv), _) => (iv.clone(), 0),
                        (None, Some(Some(iv))) => (iv.clone(), 0),
                        (None, Some(None)) => ((at, vec![0.0; o.dim]), 0),
                        (None, None) => match t.interest.get(e.user.as_str()).map_err(db_err)? {
                            Some(b) => codec::decode_interest(&b, o.dim)?,
                            None => ((at, vec![0.0; o.dim]), 0),
                        },
                    })
                })?
        {
            let ihl = o.interest_half_life_h * 3_600_000.0;
            let k = if at >= *ref_ms {
                let f = codec::decay_factor(*ref_ms, at, ihl);
                vec.iter_mut().for_each(|x| *x *= f);
                *ref_ms = at;
                weight
            } else {
                weight * codec::decay_factor(at, *ref_ms, ihl)
            };
            for (x, y) in vec.iter_mut().zip(emb.as_slice()) {
                *x += k * y;
            }
        }
        Ok(())
    }

    /// The user's affinity to the video's creator, and the mute or follow the event
    /// makes (events on the user's own videos change none of them).
    fn stage_creator_relation(
        &mut self,
        seq: u64,
        e: &Event,
        v: &Video,
        weight: f32,
        mask: Mask,
    ) -> Result<()> {
        let s = self.s;
        let ov = self.ov;
        let st = &mut self.staged;
        let t = s.t();
        let o = s.options();
        let at = ms(e.at);
        let key = (e.user.clone(), v.creator.clone());
        if mask.has(Derived::Affinity)
            && weight > 0.0
            && let Some(d) = staged_or_load(&mut st.affinity, key, seq, || {
                let none = Decayed {
                    at_ms: at,
                    value: 0.0,
                };
                let mem = ov.affinity(&e.user, &v.creator);
                let resident = ov.resident.get(&e.user).map(|r| &r.affinity);
                Ok(match (mem, resident) {
                    (Some(d), _) => (*d, 0),
                    (None, Some(all)) => (all.get(&v.creator).copied().unwrap_or(none), 0),
                    (None, None) => {
                        let k = pair(e.user.as_str(), v.creator.as_str());
                        match t.affinity.get(k).map_err(db_err)? {
                            Some(b) => Decayed::decode_asof(&b)?,
                            None => (none, 0),
                        }
                    }
                })
            })?
        {
            d.add(at, weight, o.affinity_half_life_h * 3_600_000.0);
        }
        match &e.kind {
            EventKind::HideCreator { .. } if mask.has(Derived::Mutes) => {
                st.mutes.push((e.user.clone(), v.creator.clone()));
            }
            // A follow of a creator who is no one (erased, their videos kept) follows
            // no one: an erasure after the event would have removed the edge, and
            // one before it leaves none either.
            EventKind::Follow { .. }
                if (mask.has(Derived::Follows) || mask.has(Derived::Followers))
                    && s.user(&v.creator)?.is_some() =>
            {
                st.follows.push((e.user.clone(), v.creator.clone(), mask));
            }
            _ => {}
        }
        Ok(())
    }

    fn finish(self) -> Staged {
        let mut staged = self.staged;
        staged.wellbeing = self
            .wellbeing
            .into_iter()
            .map(|(u, (rec, _))| (u, rec))
            .collect();
        staged
    }
}

impl Store {
    /// Computes the derived effects of `items` (sequence, event, trees that need it) in
    /// order, without changing anything. Call under the write lock.
    pub(crate) fn stage(&self, items: &[(u64, &Event, Mask)]) -> Result<Staged> {
        let ov = self.overlay_read();
        let mut st = Staging::new(self, &ov);
        for (seq, e, mask) in items {
            st.apply(*seq, e, *mask)?;
        }
        Ok(st.finish())
    }

    /// The follow and mute edges of staged events, one batch per edge tree with the
    /// tree's new watermark (in the batch too): rare, so they go to their trees with the
    /// log, not through the overlay.
    fn edge_batches(&self, st: &Staged) -> Vec<(Derived, Batch, u64)> {
        let mut out: Vec<(Derived, Batch, u64)> = Vec::new();
        let wms = self.overlay_read().watermarks;
        let mut add = |d: Derived, k: Vec<u8>| {
            let i = match out.iter().position(|(x, _, _)| *x == d) {
                Some(i) => i,
                None => {
                    let wm = wms[d as usize].max(st.last);
                    let mut b = Batch::default();
                    b.insert(WATERMARK_KEY, &wm.to_be_bytes());
                    out.push((d, b, wm));
                    out.len() - 1
                }
            };
            out[i].1.insert(k, &[]);
        };
        for (u, c, mask) in &st.follows {
            if mask.has(Derived::Follows) {
                add(Derived::Follows, pair(u.as_str(), c.as_str()));
            }
            if mask.has(Derived::Followers) {
                add(Derived::Followers, pair(c.as_str(), u.as_str()));
            }
        }
        for (u, c) in &st.mutes {
            add(Derived::Mutes, pair(u.as_str(), c.as_str()));
        }
        out
    }

    /// Stages' edges written on their own (replay: the log has the events already).
    pub(crate) fn write_edges(&self, st: &Staged) -> Result<Vec<(Derived, u64)>> {
        let mut done = Vec::new();
        for (d, b, wm) in self.edge_batches(st) {
            d.tree(self.t()).apply_batch(b).map_err(db_err)?;
            done.push((d, wm));
        }
        Ok(done)
    }

    /// Makes staged effects visible: into the overlay, the top lists updated, the edge
    /// trees' watermarks (`edges`: the edge batches written with the log, or by
    /// [`Store::write_edges`]) and the relation mirror moved. Call under the write lock,
    /// after the events and their edges are in sled.
    pub(crate) fn install(&self, st: Staged, edges: &[(Derived, u64)]) -> Result<()> {
        let mut ov = self.overlay_write();
        let ov = &mut *ov;
        let mut added = 0;
        for (k, seq) in &st.keys {
            let h = crate::idempotency::key_hash(k.as_str().as_bytes());
            ov.keys.add(h, k, *seq);
            ov.active.event_keys.push((h, *seq));
        }
        added += st.keys.len();
        {
            let mut popular = self
                .inner
                .popular()
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let mut remix = self.inner.remix().lock().unwrap_or_else(|e| e.into_inner());
            for (id, rec) in &st.counters {
                popular.update(id, rec.popular, rec.at_ms);
                remix.update(id, rec.remix, rec.at_ms);
            }
        }
        for (id, rec) in st.counters {
            added += usize::from(ov.active.counters.insert(id, rec).is_none());
        }
        for (id, rec) in st.creators {
            added += usize::from(ov.active.creators.insert(id, rec).is_none());
        }
        for (u, rec) in st.wellbeing {
            added += usize::from(ov.active.wellbeing.insert(u, rec).is_none());
        }
        for (u, iv) in st.interest {
            added += usize::from(ov.active.interest.insert(u, iv).is_none());
        }
        for ((u, c), d) in st.affinity {
            added += usize::from(
                ov.active
                    .affinity
                    .entry(u)
                    .or_default()
                    .insert(c, d)
                    .is_none(),
            );
        }
        added += st.rings.install(self, ov);
        ov.pending += added;
        ov.applied = ov.applied.max(st.last);

        for &(d, wm) in edges {
            ov.watermarks[d as usize] = ov.watermarks[d as usize].max(wm);
        }
        // The relation mirror follows the trees (the mirror is reloaded at open anyway).
        let mut rel = self.inner.mirror().rel_mut();
        for (u, c, _) in &st.follows {
            rel.set(Edge::Follow, u, c, true, self.inner.ids());
        }
        for (u, c) in &st.mutes {
            rel.set(Edge::Mute, u, c, true, self.inner.ids());
        }
        Ok(())
    }

    /// Logs and counts a batch of events, all or nothing.
    ///
    /// The whole batch is validated first: an invalid event rejects the batch with an
    /// error naming the first bad event's index, one of a user or naming a video the
    /// store does not know with [`Error::NotFound`], and nothing changes. Events whose
    /// idempotency key is already logged (or repeats within the batch) are counted once
    /// and reported as duplicates — a retried batch is not an error.
    ///
    /// Each accepted event updates: the event log; the video's and its creator's decayed
    /// counters, popularity and remix velocity (videos not deleted); the user's wellbeing
    /// counters; seen history (every event on a video but its creation); engagement history,
    /// interest vector and creator affinity (events of positive weight); mutes (hide
    /// creator) and follows (follow from a video). Readers see all of it when this
    /// returns. Returns once the batch is durable in the log (group commit: concurrent
    /// callers share one flush); the rest is derived from the log and replayed after a
    /// crash (see the crate docs).
    pub fn ingest_events(&self, events: &[Event]) -> Result<IngestReport> {
        self.ingest_events_logged(events).map(|(r, _)| r)
    }

    /// Checks a batch as [`Store::ingest_events`] does before it logs anything: every
    /// event valid, its user and its video (deleted or not) known. Changes nothing.
    pub fn validate_events(&self, events: &[Event]) -> Result<()> {
        for (i, e) in events.iter().enumerate() {
            let bad = |err: Error| {
                Error::invalid(
                    "events",
                    format!("event {i} (key {:?}): {err}", e.key.as_str()),
                )
            };
            e.validate().map_err(bad)?;
            // Unknown references are NotFound, whether the user or the video: an event of
            // a user the store does not know could not apply their age band or time zone.
            if self.user(&e.user)?.is_none() {
                return Err(Error::not_found(Entity::User, &e.user));
            }
            if let Some(v) = e.kind.video()
                && self.video(v)?.is_none()
            {
                return Err(Error::not_found(Entity::Video, v));
            }
        }
        Ok(())
    }

    /// Checks that no key of `events` names another event than one logged under it or
    /// earlier in the batch ([`Store::ingest_events`] refuses such a batch with
    /// `Conflict`), without the write lock: for a caller that logs the batch elsewhere
    /// first (the shared backend publishes it), where a batch logged meanwhile under the
    /// same keys is the log's to order.
    pub fn check_event_keys(&self, events: &[Event]) -> Result<()> {
        let t = self.t();
        let ov = self.overlay_read();
        let mut first: HashMap<&EventKey, &Event> = HashMap::with_capacity(events.len());
        for e in events {
            match first.entry(&e.key) {
                Entry::Occupied(o) => key_reused(o.get(), e)?,
                Entry::Vacant(v) => {
                    v.insert(e);
                    if let Some(seq) = ov.keys.find(&e.key, &t.events)? {
                        key_logged(&t.events, seq, e)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// [`Store::ingest_events`], also saying where the accepted events went in the log:
    /// for in-memory indexes fed in log order (co-engagement) without reading the log
    /// back.
    ///
    /// An idempotency key names one event: the same event again is a retry (a duplicate,
    /// not counted again); another event under a key logged before or earlier in the
    /// batch is `Conflict`, and nothing of the batch is logged, rather than a different
    /// event dropped without a word.
    pub fn ingest_events_logged(&self, events: &[Event]) -> Result<(IngestReport, Logged)> {
        self.ingest(events, true)
    }

    /// Applies a batch another process logged (the shared backend's event log): as
    /// [`Store::ingest_events_logged`], except that an event under a key already used
    /// counts as a duplicate whatever its content, since the log, not this process,
    /// decided the batch's order.
    pub fn apply_logged_events(&self, events: &[Event]) -> Result<(IngestReport, Logged)> {
        self.ingest(events, false)
    }

    fn ingest(&self, events: &[Event], refuse_reused: bool) -> Result<(IngestReport, Logged)> {
        let erasures = self.erasure_epoch();
        self.validate_events(events)?;
        let mut report = IngestReport::default();
        let mut logged = Logged::default();
        let generation = {
            let _g = self.write_lock();
            self.still_known(erasures, events.iter().map(|e| &e.user))?;
            let t = self.t();
            let mut items = Vec::with_capacity(events.len());
            {
                let ov = self.overlay_read();
                let mut keys: HashMap<&EventKey, &Event> = HashMap::with_capacity(events.len());
                let mut seq = self.inner.next_seq().load(Ordering::Acquire);
                for (i, e) in events.iter().enumerate() {
                    let duplicate = match keys.entry(&e.key) {
                        Entry::Occupied(o) => {
                            if refuse_reused {
                                key_reused(o.get(), e)?;
                            }
                            true
                        }
                        Entry::Vacant(v) => {
                            v.insert(e);
                            match ov.keys.find(&e.key, &t.events)? {
                                Some(logged) if refuse_reused => {
                                    key_logged(&t.events, logged, e)?;
                                    true
                                }
                                Some(_) => true,
                                None => false,
                            }
                        }
                    };
                    if duplicate {
                        report.duplicates.push(e.key.clone());
                    } else {
                        items.push((seq, e, Mask::ALL));
                        logged.accepted.push(i);
                        seq += 1;
                    }
                }
            }
            report.accepted = items.len();
            logged.first_seq = items.first().map_or(0, |i| i.0);
            if items.is_empty() {
                // A retry of a batch another caller may still be flushing: acknowledge it
                // only once that flush is done.
                self.inner.commit().written()
            } else {
                // Everything that can fail on bad state fails here, before the log moves.
                let staged = self.stage(&items)?;
                // The log and the edges in one atomic write: sled takes its global write
                // lock once, not once per tree.
                let mut w = Writes::default();
                let log = w.batch(&t.events);
                for run in items.chunks(codec::EVENTS_PER_RECORD) {
                    log.insert(
                        &run[0].0.to_be_bytes(),
                        codec::encode_events(run.iter().map(|(_, e, _)| *e)),
                    );
                }
                let mut edges = Vec::new();
                for (d, b, wm) in self.edge_batches(&staged) {
                    *w.batch(d.tree(t)) = b;
                    edges.push((d, wm));
                }
                w.commit()?;
                let generation = self.inner.commit().written();
                let next = items.last().map_or(0, |i| i.0) + 1;
                self.inner.next_seq().store(next, Ordering::Release);
                self.install(staged, &edges)?;
                generation
            }
        };
        self.persist_if_due()?;
        self.durable(generation)?;
        Ok((report, logged))
    }

    /// The user's recent engagements (events of positive weight), newest first.
    pub fn recent_engagements(&self, user: &UserId, limit: usize) -> Result<Vec<Engagement>> {
        super::rings::read_history(self, user, limit)
    }
}

/// An event as the log stores it: what a key's first event is compared in.
fn as_logged(e: &Event) -> Result<Event> {
    codec::decode_event(&codec::encode_event(e))
}

/// `Conflict` unless `again`, under the key of `first` earlier in its batch, is the same
/// event.
fn key_reused(first: &Event, again: &Event) -> Result<()> {
    if as_logged(first)? == as_logged(again)? {
        Ok(())
    } else {
        Err(key_conflict(
            again,
            "the batch holds two different events under this key",
        ))
    }
}

/// `Conflict` unless `e` is the event logged at `seq` under its key.
fn key_logged(log: &Tree, seq: u64, e: &Event) -> Result<()> {
    match crate::log::logged_event(log, seq)? {
        Some(logged) if logged != as_logged(e)? => Err(key_conflict(
            e,
            "another event was logged under this key: a retry resends the same event, a new event needs a new key",
        )),
        _ => Ok(()),
    }
}

fn key_conflict(e: &Event, reason: &str) -> Error {
    Error::Conflict {
        entity: Entity::Event,
        id: e.key.as_str().to_owned(),
        reason: reason.to_owned(),
    }
}
