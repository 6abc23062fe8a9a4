//! Event ingestion: validation, idempotency, and the derived state every event updates.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use jiff::tz::TimeZone;
use sled::Tree;
use steerfeed_core::ports::Engagement;
use steerfeed_core::{Entity, Error, Event, EventKind, Result, UserId, Video, VideoId};

use crate::codec::{self, CounterRec, Decayed, corrupt, ms, pair, prefix, seq_key, u64_of};
use crate::store::{IngestReport, Store, WellbeingRec, Writes, db_err};

/// Pending appends to the bounded per-user rings (seen history, engagement history).
///
/// Layout: `user \0 seq` (big-endian, per-user arrival order) → entry, and the bare
/// `user` → next `seq`. Appending `seq` removes `seq − cap`, so each user keeps exactly
/// the newest `cap` entries and a reverse prefix scan reads them newest first.
#[derive(Default)]
struct Ring {
    heads: HashMap<UserId, u64>,
    entries: Vec<(UserId, u64, Vec<u8>)>,
}

impl Ring {
    fn push(&mut self, tree: &Tree, user: &UserId, value: Vec<u8>) -> Result<()> {
        let head = match self.heads.get_mut(user) {
            Some(h) => h,
            None => {
                let h = match tree.get(user.as_str()).map_err(db_err)? {
                    Some(b) => u64_of(&b).ok_or_else(|| corrupt("ring head"))?,
                    None => 0,
                };
                self.heads.entry(user.clone()).or_insert(h)
            }
        };
        let seq = *head;
        *head += 1;
        self.entries.push((user.clone(), seq, value));
        Ok(())
    }

    fn write<'a>(self, tree: &'a Tree, cap: u64, w: &mut Writes<'a>) {
        for (u, seq, v) in self.entries {
            w.insert(tree, seq_key(u.as_str(), seq), v);
            if seq >= cap {
                w.remove(tree, seq_key(u.as_str(), seq - cap));
            }
        }
        for (u, h) in self.heads {
            w.insert(tree, u.as_str(), h.to_be_bytes());
        }
    }
}

/// The seen and history rings of one write.
#[derive(Default)]
pub(crate) struct Rings {
    seen: Ring,
    history: Ring,
}

impl Rings {
    pub fn push_seen(
        &mut self,
        s: &Store,
        user: &UserId,
        at_ms: i64,
        video: &VideoId,
    ) -> Result<()> {
        let mut v = at_ms.to_le_bytes().to_vec();
        v.extend_from_slice(video.as_str().as_bytes());
        self.seen.push(&s.t().seen, user, v)
    }

    fn push_history(
        &mut self,
        s: &Store,
        user: &UserId,
        at_ms: i64,
        kind: &EventKind,
    ) -> Result<()> {
        let mut v = at_ms.to_le_bytes().to_vec();
        v.extend_from_slice(&serde_json::to_vec(kind).map_err(|e| Error::internal("store", e))?);
        self.history.push(&s.t().history, user, v)
    }

    pub fn write<'a>(self, s: &'a Store, w: &mut Writes<'a>) {
        let o = s.options();
        self.seen.write(&s.t().seen, o.seen_per_user, w);
        self.history.write(&s.t().history, o.history_per_user, w);
    }
}

/// Up to `limit` entries of `user`'s ring, newest first.
pub(crate) fn read_ring<T>(
    tree: &Tree,
    user: &UserId,
    limit: usize,
    f: impl Fn(&[u8]) -> Result<T>,
) -> Result<Vec<T>> {
    tree.scan_prefix(prefix(user.as_str()))
        .rev()
        .take(limit)
        .map(|kv| {
            let (_, v) = kv.map_err(db_err)?;
            if v.len() < 8 {
                return Err(corrupt("ring entry"));
            }
            f(&v)
        })
        .collect()
}

pub(crate) fn read_history(s: &Store, user: &UserId, limit: usize) -> Result<Vec<Engagement>> {
    let mut out = Vec::new();
    for e in read_ring(&s.t().history, user, limit, |v| {
        let at = codec::i64_le(v, 0).ok_or_else(|| corrupt("history"))?;
        let kind: EventKind = serde_json::from_slice(&v[8..]).map_err(|_| corrupt("history"))?;
        Ok((kind, codec::ts_of_ms(at)))
    })? {
        let (kind, at) = e;
        if let Some(video) = kind.video().cloned() {
            out.push(Engagement { video, kind, at });
        }
    }
    Ok(out)
}

/// The writes of a batch, the next sequence number, and the counters it changed.
type Staged<'s> = (Writes<'s>, u64, Vec<(VideoId, CounterRec)>);

/// The state one batch changes, loaded lazily and written once per key.
struct Staging<'s> {
    s: &'s Store,
    seq: u64,
    log: Vec<(u64, Vec<u8>, &'s Event)>,
    counters: HashMap<VideoId, CounterRec>,
    creators: HashMap<UserId, CounterRec>,
    wellbeing: HashMap<UserId, (WellbeingRec, TimeZone)>,
    interest: HashMap<UserId, (i64, Vec<f32>)>,
    affinity: HashMap<(UserId, UserId), Decayed>,
    rings: Rings,
    mutes: HashSet<(UserId, UserId)>,
    follows: HashSet<(UserId, UserId)>,
}

fn load_counter(tree: &Tree, key: &str, at_ms: i64) -> Result<CounterRec> {
    match tree.get(key).map_err(db_err)? {
        Some(b) => CounterRec::decode(&b),
        None => Ok(CounterRec {
            at_ms,
            ..CounterRec::default()
        }),
    }
}

fn is_creation(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Remix { .. } | EventKind::CameoUse { .. } | EventKind::Create { .. }
    )
}

impl<'s> Staging<'s> {
    fn new(s: &'s Store) -> Self {
        Self {
            s,
            seq: s.inner.next_seq.load(Ordering::Acquire),
            log: Vec::new(),
            counters: HashMap::new(),
            creators: HashMap::new(),
            wellbeing: HashMap::new(),
            interest: HashMap::new(),
            affinity: HashMap::new(),
            rings: Rings::default(),
            mutes: HashSet::new(),
            follows: HashSet::new(),
        }
    }

    fn apply(&mut self, e: &'s Event) -> Result<()> {
        let s = self.s;
        let t = s.t();
        let o = s.options();
        let at = ms(e.at);
        let hl = s.half_life_ms();
        let weight = (o.weight)(&e.kind);
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

        let json = serde_json::to_vec(e).map_err(|err| Error::internal("store", err))?;
        self.log.push((self.seq, json, e));
        self.seq += 1;

        // Counters (live videos only) and the creator's sums.
        if let Some(v) = video.as_deref().filter(|v| !v.deleted) {
            let creation = is_creation(&e.kind);
            let add = |c: &mut steerfeed_core::ports::ActionCounts,
                       pop: &mut f32,
                       rmx: &mut f32,
                       k: f32| {
                c.add(&e.kind, k);
                *pop += weight * k;
                if creation {
                    *rmx += k;
                }
            };
            let rec = match self.counters.entry(v.id.clone()) {
                std::collections::hash_map::Entry::Occupied(x) => x.into_mut(),
                std::collections::hash_map::Entry::Vacant(x) => {
                    x.insert(load_counter(&t.counters, v.id.as_str(), at)?)
                }
            };
            rec.add(at, hl, add);
            let rec = match self.creators.entry(v.creator.clone()) {
                std::collections::hash_map::Entry::Occupied(x) => x.into_mut(),
                std::collections::hash_map::Entry::Vacant(x) => {
                    x.insert(load_counter(&t.creator_counts, v.creator.as_str(), at)?)
                }
            };
            rec.add(at, hl, add);
        }

        // Wellbeing.
        let (rec, tz) = match self.wellbeing.entry(e.user.clone()) {
            std::collections::hash_map::Entry::Occupied(x) => x.into_mut(),
            std::collections::hash_map::Entry::Vacant(x) => {
                x.insert((s.wellbeing_rec(&e.user)?, s.time_zone(&e.user)?))
            }
        };
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

        // Seen history and engagement history.
        if let EventKind::Impression { video: id }
        | EventKind::View { video: id, .. }
        | EventKind::NotInterested { video: id } = &e.kind
        {
            self.rings.push_seen(s, &e.user, at, id)?;
        }
        if weight > 0.0 && video.is_some() {
            self.rings.push_history(s, &e.user, at, &e.kind)?;
        }

        let Some(v) = video else { return Ok(()) };

        // Interest vector: a decayed, weighted sum of engaged embeddings.
        if weight > 0.0
            && let Some(emb) = &v.embedding
        {
            let ihl = o.interest_half_life_h * 3_600_000.0;
            let (ref_ms, vec) = match self.interest.entry(e.user.clone()) {
                std::collections::hash_map::Entry::Occupied(x) => x.into_mut(),
                std::collections::hash_map::Entry::Vacant(x) => {
                    let loaded = match t.interest.get(e.user.as_str()).map_err(db_err)? {
                        Some(b) => {
                            let at0 = codec::i64_le(&b, 0).ok_or_else(|| corrupt("interest"))?;
                            let v = codec::decode_f32s(&b[8..])
                                .filter(|v| v.len() == o.dim)
                                .ok_or_else(|| corrupt("interest"))?;
                            (at0, v)
                        }
                        None => (at, vec![0.0; o.dim]),
                    };
                    x.insert(loaded)
                }
            };
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

        // Creator affinity, hide-creator mutes, follows from a video.
        if v.creator != e.user {
            if weight > 0.0 {
                let ahl = o.affinity_half_life_h * 3_600_000.0;
                let key = (e.user.clone(), v.creator.clone());
                let d = match self.affinity.entry(key) {
                    std::collections::hash_map::Entry::Occupied(x) => x.into_mut(),
                    std::collections::hash_map::Entry::Vacant(x) => {
                        let k = pair(e.user.as_str(), v.creator.as_str());
                        let d = match t.affinity.get(k).map_err(db_err)? {
                            Some(b) => Decayed::decode(&b)?,
                            None => Decayed {
                                at_ms: at,
                                value: 0.0,
                            },
                        };
                        x.insert(d)
                    }
                };
                d.add(at, weight, ahl);
            }
            match &e.kind {
                EventKind::HideCreator { .. } => {
                    self.mutes.insert((e.user.clone(), v.creator.clone()));
                }
                EventKind::Follow { .. } => {
                    self.follows.insert((e.user.clone(), v.creator.clone()));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn into_writes(self) -> Result<Staged<'s>> {
        let s = self.s;
        let t = s.t();
        let mut w = Writes::default();
        for (seq, json, e) in &self.log {
            w.insert(&t.events, seq.to_be_bytes(), json);
            w.insert(&t.event_keys, e.key.as_str(), seq.to_be_bytes());
        }
        for (id, rec) in &self.counters {
            w.insert(&t.counters, id.as_str(), rec.encode());
        }
        for (id, rec) in &self.creators {
            w.insert(&t.creator_counts, id.as_str(), rec.encode());
        }
        for (u, (rec, _)) in &self.wellbeing {
            w.insert(&t.wellbeing, u.as_str(), Store::encode_wellbeing(rec)?);
        }
        for (u, (at, vec)) in &self.interest {
            let mut b = at.to_le_bytes().to_vec();
            codec::encode_f32s(&mut b, vec);
            w.insert(&t.interest, u.as_str(), b);
        }
        for ((u, c), d) in &self.affinity {
            w.insert(&t.affinity, pair(u.as_str(), c.as_str()), d.encode());
        }
        for (u, c) in &self.mutes {
            w.insert(&t.mutes, pair(u.as_str(), c.as_str()), []);
        }
        for (u, c) in &self.follows {
            w.insert(&t.follows, pair(u.as_str(), c.as_str()), []);
            w.insert(&t.followers, pair(c.as_str(), u.as_str()), []);
        }
        self.rings.write(s, &mut w);
        Ok((w, self.seq, self.counters.into_iter().collect()))
    }
}

impl Store {
    /// Logs and counts a batch of events, all or nothing.
    ///
    /// The whole batch is validated first: an invalid event, or one naming a video the
    /// store does not know, rejects the batch with an error naming the first bad event's
    /// index, and nothing changes. Events whose idempotency key is already logged (or
    /// repeats within the batch) are counted once and reported as duplicates — a retried
    /// batch is not an error. Events from users the store does not know are accepted (the
    /// user is treated as an adult in UTC until upserted).
    ///
    /// Each accepted event updates: the event log; the video's and its creator's decayed
    /// counters, popularity and remix velocity (videos not deleted); the user's wellbeing
    /// counters; seen history (impressions, views, "not interested"); engagement history,
    /// interest vector and creator affinity (events of positive weight); mutes (hide
    /// creator) and follows (follow from a video). Returns once the batch is durable
    /// (group commit: concurrent callers share one flush).
    pub fn ingest_events(&self, events: &[Event]) -> Result<IngestReport> {
        for (i, e) in events.iter().enumerate() {
            let bad = |err: Error| {
                Error::invalid(
                    "events",
                    format!("event {i} (key {:?}): {err}", e.key.as_str()),
                )
            };
            e.validate().map_err(bad)?;
            if let Some(v) = e.kind.video()
                && self.video(v)?.is_none()
            {
                return Err(bad(Error::not_found(Entity::Video, v)));
            }
        }
        let mut report = IngestReport::default();
        let generation = {
            let _g = self.write_lock();
            let t = self.t();
            let mut keys = HashSet::with_capacity(events.len());
            let mut staging = Staging::new(self);
            for e in events {
                if !keys.insert(&e.key)
                    || t.event_keys.contains_key(e.key.as_str()).map_err(db_err)?
                {
                    report.duplicates.push(e.key.clone());
                } else {
                    staging.apply(e)?;
                    report.accepted += 1;
                }
            }
            if report.accepted == 0 {
                // A retry of a batch another caller may still be flushing: acknowledge it
                // only once that flush is done.
                self.inner.commit.written()
            } else {
                let (w, next_seq, counters) = staging.into_writes()?;
                let generation = self.commit_writes(w)?;
                self.inner.next_seq.store(next_seq, Ordering::Release);
                let mut popular = self.inner.popular.lock().unwrap_or_else(|e| e.into_inner());
                let mut remix = self.inner.remix.lock().unwrap_or_else(|e| e.into_inner());
                for (id, rec) in &counters {
                    popular.update(id, rec.popular, rec.at_ms);
                    remix.update(id, rec.remix, rec.at_ms);
                }
                generation
            }
        };
        self.durable(generation)?;
        Ok(report)
    }

    /// The user's recent engagements (events of positive weight), newest first.
    pub fn recent_engagements(&self, user: &UserId, limit: usize) -> Result<Vec<Engagement>> {
        read_history(self, user, limit)
    }
}
