//! Per-user derived state kept resident for the write path.
//!
//! An event changes state of its user in five trees: `wellbeing`, `interest`,
//! `affinity`, and the heads of the `seen` and `history` rings. With many users, most
//! events touch a user whose state is neither in the overlay nor in sled's page cache,
//! so staging an event cost five cold sled reads (each one a page read and decode: the
//! 1M-video bench spent 80 % of its ingest time there). [`Resident`] mirrors what sled
//! holds in those trees for the users it has, so staging reads memory instead.
//!
//! It is a mirror of sled, so it sits below every overlay layer (active, frozen, clean)
//! and is changed only where those trees are: the persister updates it, under the
//! overlay lock, in the same step that drops the layer it has just written (readers see
//! the frozen layer until then). Users enter it in the background after open
//! ([`Store::warm_resident`]), read in key order in chunks while holding the persist
//! lock (no derived write to sled meanwhile) and the write lock; an entry holds a user's
//! whole state in those trees (absence included), so a miss in it is not a miss in
//! sled. If writing a layer fails halfway, the mirror is dropped (staging reads sled
//! again).
//!
//! Cost: about 2.3 KB per user at 384 dimensions (the interest vector is 1.5 KB of it;
//! about 230 MB at 100,000 users), bounded by [`MAX_RESIDENT_USERS`].

use std::collections::HashMap;

use steerfeed_core::UserId;

use crate::cache::FastMap;
use crate::codec::Decayed;
use crate::layer::Layer;
use crate::records::WellbeingRec;
use crate::rings::{TAIL_MAX, Tail, Tails};
use crate::trees::{Derived, Mask};

/// Users whose state is kept resident (about 2.3 KB each at 384 dimensions: at most
/// about 580 MB). Users past it are read from sled as before.
pub(crate) const MAX_RESIDENT_USERS: usize = 250_000;

/// One user's state in the per-user derived trees, as sled holds it.
#[derive(Debug, Clone, Default)]
pub(crate) struct ResidentUser {
    /// The `seen` ring's head: one past its newest entry.
    pub seen_head: u64,
    /// The `history` ring's head.
    pub history_head: u64,
    /// The `seen` ring's newest fragment, while it has fewer than `TAIL_MAX` entries
    /// (the next write adds to it instead of adding a key).
    pub seen_tail: Option<Tail>,
    /// The `history` ring's newest fragment, likewise.
    pub history_tail: Option<Tail>,
    /// `None`: no record stored.
    pub wellbeing: Option<WellbeingRec>,
    /// `None`: no vector stored.
    pub interest: Option<(i64, Vec<f32>)>,
    /// Every stored affinity of the user, by creator.
    pub affinity: HashMap<UserId, Decayed>,
}

/// A mirror of sled's per-user derived trees for some users (see the module docs).
#[derive(Default)]
pub(crate) struct Resident {
    users: FastMap<UserId, ResidentUser>,
}

impl Resident {
    pub fn get(&self, u: &UserId) -> Option<&ResidentUser> {
        self.users.get(u)
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// The newest fragment of `u`'s ring `d` (seen or history), if it is resident and
    /// still takes entries.
    pub fn tail(&self, d: Derived, u: &UserId) -> Option<&Tail> {
        let r = self.users.get(u)?;
        match d {
            Derived::Seen => r.seen_tail.as_ref(),
            Derived::History => r.history_tail.as_ref(),
            _ => None,
        }
    }

    /// `layer`'s trees in `which` are now in sled: mirror them for the resident users,
    /// with `tails`, the newest ring fragments the write stored.
    pub fn written(&mut self, layer: &Layer, which: Mask, mut tails: Tails<'_>) {
        if self.users.is_empty() {
            return;
        }
        if which.has(Derived::Wellbeing) {
            for (u, rec) in &layer.wellbeing {
                if let Some(r) = self.users.get_mut(u) {
                    r.wellbeing = Some(rec.clone());
                }
            }
        }
        if which.has(Derived::Interest) {
            for (u, iv) in &layer.interest {
                if let Some(r) = self.users.get_mut(u) {
                    r.interest = Some(iv.clone());
                }
            }
        }
        if which.has(Derived::Affinity) {
            for (u, m) in &layer.affinity {
                if let Some(r) = self.users.get_mut(u) {
                    r.affinity.extend(m.iter().map(|(c, d)| (c.clone(), *d)));
                }
            }
        }
        // A ring with nothing written keeps its tail.
        let newest = |tail: &mut Option<Tail>, written: Option<Tail>| {
            if let Some(t) = written {
                *tail = (t.len() < TAIL_MAX).then_some(t);
            }
        };
        if which.has(Derived::Seen) {
            for (u, p) in &layer.seen {
                if let Some(r) = self.users.get_mut(u) {
                    r.seen_head = p.head;
                    newest(&mut r.seen_tail, tails.seen.remove(u));
                }
            }
        }
        if which.has(Derived::History) {
            for (u, p) in &layer.history {
                if let Some(r) = self.users.get_mut(u) {
                    r.history_head = p.head;
                    newest(&mut r.history_tail, tails.history.remove(u));
                }
            }
        }
    }

    /// Forgets `u` (their trees changed outside the persister: an erasure); staging
    /// reads sled for them again.
    pub fn remove(&mut self, u: &UserId) {
        self.users.remove(u);
    }

    /// Adds `u`'s state as read from sled.
    pub fn insert(&mut self, u: UserId, state: ResidentUser) {
        self.users.insert(u, state);
    }

    /// Forgets everything (sled may hold something the mirror does not).
    pub fn clear(&mut self) {
        self.users = FastMap::default();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use steerfeed_core::{Embedding, Event, EventKey, EventKind, Timestamp, User, Video, VideoId};

    use crate::Store;
    use crate::StoreOptions;
    use crate::codec;
    use crate::rings::{ring_head, ring_tail};

    const DIM: usize = 4;

    fn uid(s: &str) -> UserId {
        UserId::new(s).unwrap()
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_795_000_000 + secs).unwrap()
    }

    /// A store with small rings (entries fall out of them) and frequent persists.
    fn store() -> Store {
        let mut o = StoreOptions::with_dim(DIM);
        o.warm_video_cache = false;
        o.seen_per_user = 5;
        o.history_per_user = 3;
        o.derived_max_pending = 7;
        let s = Store::temporary(o).unwrap();
        for i in 0..7 {
            let mut u = User::new(uid(&format!("u{i}")));
            if i % 2 == 1 {
                u.time_zone = "Asia/Tokyo".into();
            }
            s.upsert_user(&u).unwrap();
        }
        let videos: Vec<Video> = (0..6)
            .map(|i| {
                let v: Vec<f32> = (0..DIM).map(|d| (i * 3 + d) as f32 - 4.5).collect();
                Video {
                    embedding: Some(Embedding::new("embedding", &v, DIM).unwrap()),
                    ..Video::new(
                        VideoId::new(format!("v{i}")).unwrap(),
                        uid(&format!("u{}", i % 2)),
                        at(0),
                        30.0,
                    )
                }
            })
            .collect();
        s.upsert_videos(&videos).unwrap();
        s
    }

    /// Round `r`'s events: every user sees, watches and likes videos of both creators.
    fn round(r: i64) -> Vec<Event> {
        let mut out = Vec::new();
        for i in 0..7i64 {
            let user = uid(&format!("u{i}"));
            for j in 0..4i64 {
                let video = VideoId::new(format!("v{}", (i + j + r) % 6)).unwrap();
                let kind = match (i + j + r) % 4 {
                    0 => EventKind::Impression { video },
                    1 => EventKind::View {
                        video,
                        watch_ms: 20_000,
                        completed: false,
                    },
                    2 => EventKind::Like { video },
                    _ => EventKind::Share { video },
                };
                out.push(Event {
                    key: EventKey::new(format!("r{r}-{i}-{j}")).unwrap(),
                    user: user.clone(),
                    at: at(3_600 * 5 * r + 60 * j),
                    kind,
                });
            }
        }
        out
    }

    /// Every resident user's entry equals what sled holds.
    fn assert_mirrors(s: &Store) {
        let t = s.t();
        let ov = s.overlay_read();
        assert!(ov.resident.len() == 7, "every known user is resident");
        for (u, r) in &ov.resident.users {
            assert_eq!(r.seen_head, ring_head(&t.seen, u).unwrap(), "{u} seen");
            assert_eq!(r.history_head, ring_head(&t.history, u).unwrap(), "{u}");
            let seen = (r.seen_head, r.seen_tail.clone());
            assert_eq!(seen, ring_tail(&t.seen, u).unwrap(), "{u} seen tail");
            let history = (r.history_head, r.history_tail.clone());
            assert_eq!(
                history,
                ring_tail(&t.history, u).unwrap(),
                "{u} history tail"
            );
            // Records compare by value: sled's also carry their as-of numbers.
            let wb = t.wellbeing.get(u.as_str()).unwrap();
            let wb = wb.map(|b| codec::decode_wellbeing(&b).unwrap().0);
            assert_eq!(r.wellbeing, wb, "{u} wellbeing");
            let iv = t.interest.get(u.as_str()).unwrap();
            let iv = iv.map(|b| codec::decode_interest(&b, s.options().dim).unwrap().0);
            assert_eq!(r.interest, iv, "{u} interest");
            let stored: HashMap<Vec<u8>, Decayed> = t
                .affinity
                .scan_prefix(codec::prefix(u.as_str()))
                .map(|kv| {
                    let (k, v) = kv.unwrap();
                    (k.to_vec(), Decayed::decode(&v).unwrap())
                })
                .collect();
            let mine: HashMap<Vec<u8>, Decayed> = r
                .affinity
                .iter()
                .map(|(c, d)| (codec::pair(u.as_str(), c.as_str()), *d))
                .collect();
            assert_eq!(mine, stored, "{u} affinity");
        }
    }

    /// The derived trees but the rings, whose fragments differ in layout: a resident
    /// user's write adds to the newest fragment (compared through their reads below).
    fn derived_trees(s: &Store) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
        let t = s.t();
        [
            &t.wellbeing,
            &t.interest,
            &t.affinity,
            &t.counters,
            &t.creator_counts,
        ]
        .iter()
        .map(|tree| {
            tree.iter()
                .map(|kv| {
                    let (k, v) = kv.unwrap();
                    (k.to_vec(), v.to_vec())
                })
                .collect()
        })
        .collect()
    }

    fn drop_clean(s: &Store) {
        let mut ov = s.overlay_write();
        let old = ov.clean.take();
        s.forget_layer(old.as_deref());
    }

    #[test]
    fn resident_state_mirrors_sled_and_changes_nothing() {
        // `a` stages from the resident mirror, `b` from sled: same events, same trees.
        let (a, b) = (store(), store());
        for s in [&a, &b] {
            s.ingest_events(&round(0)).unwrap();
            s.flush().unwrap();
        }
        assert_eq!(a.warm_resident().unwrap(), 7);
        assert_mirrors(&a);
        for r in 1..6 {
            let events = round(r);
            for s in [&a, &b] {
                // Two batches per round, the second partly a retry; no clean layer, so
                // state not in the active layer comes from the mirror (`a`) or sled.
                drop_clean(s);
                s.ingest_events(&events[..10]).unwrap();
                drop_clean(s);
                s.ingest_events(&events[5..]).unwrap();
                if r % 2 == 0 {
                    s.flush().unwrap();
                }
            }
            if r % 2 == 0 {
                assert_mirrors(&a);
            }
            // The feed's reads of interest and affinity: the mirror (`a`) or sled (`b`),
            // each under the overlay.
            let now = at(3_600 * 30);
            for i in 0..7 {
                let u = uid(&format!("u{i}"));
                assert_eq!(a.interest(&u).unwrap(), b.interest(&u).unwrap(), "{u}");
                assert_eq!(
                    a.creator_affinity(&u, now).unwrap(),
                    b.creator_affinity(&u, now).unwrap(),
                    "{u}"
                );
            }
        }
        a.flush().unwrap();
        b.flush().unwrap();
        assert_mirrors(&a);
        assert!(
            derived_trees(&a) == derived_trees(&b),
            "the derived trees differ"
        );
        let now = at(3_600 * 30);
        for i in 0..7 {
            let u = uid(&format!("u{i}"));
            assert_eq!(
                format!("{:?}", a.wellbeing(&u, now).unwrap()),
                format!("{:?}", b.wellbeing(&u, now).unwrap())
            );
            assert_eq!(a.seen(&u).unwrap(), b.seen(&u).unwrap());
            assert_eq!(
                a.recent_engagements(&u, 10).unwrap(),
                b.recent_engagements(&u, 10).unwrap()
            );
        }
        // Resident users' rings grew their newest fragments instead of adding keys.
        let keys = |s: &Store| (s.t().seen.len(), s.t().history.len());
        let (ka, kb) = (keys(&a), keys(&b));
        assert!(ka.0 < kb.0 && ka.1 < kb.1, "{ka:?} vs {kb:?} ring keys");
    }
}
