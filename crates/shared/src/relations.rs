//! One order for the relations both logs write.
//!
//! Follows and mutes are written by the change log (a follow or unfollow through the
//! API, a mute or unmute, an erasure, which ends every relation of the person) and by
//! the event stream (a follow from a video, a hidden creator). A stream message carries
//! the change version its publisher had applied, and every mirror applies the changes
//! up to it before the message: so a message stamped `v` belongs between change `v` and
//! change `v + 1`. A mirror that applied change `v + 1` before the message reached it
//! (a replica that took the change meanwhile) would otherwise let the message's edge
//! override the later change, where another mirror, which applied them the other way
//! round, ends with the change: two replicas holding different relations.
//!
//! [`Recent`] keeps, per pair and relation, the latest write in that order among those
//! applied here within the last [`WINDOW`] versions; after a message's events are
//! applied, [`Recent::note_edges`] answers the edges a later change had already ended,
//! which the mirror then ends again. Changes need no such care: every message a mirror
//! applies before a change is stamped at most the change's version minus one, since
//! changes up to a message's stamp come first. The map is part of a mirror snapshot, so
//! a replica starting from one decides as the replica that wrote it would have.
//!
//! An erasure of `b` ends `a`'s follow of `b` as an unfollow would (the store makes no
//! follow of someone erased, so until an account is made again under their id, a follow
//! of them ends too); other people's mutes of an erased person stay, and an erased
//! person's own events are dropped or unreadable everywhere. Not covered: a video
//! whose creator changes between a follow's stamp and its apply here (the edge goes to
//! the creator this mirror has then).

use std::collections::HashMap;

use steerfeed_core::UserId;
use steerfeed_core::storage::Relation;

use crate::change::{Change, RelationKind as Kind};

/// How far back, in change versions, a message's stamp may lag the changes a mirror had
/// applied when the message reached it, for its edges to be ordered exactly. A message
/// lags by what its publisher's mirror missed between its catch-up and its publish, and
/// a catch-up applies each message right after the changes up to its stamp: a lag is a
/// few writes, not thousands.
pub(crate) const WINDOW: u64 = 100_000;

/// How many versions apart evictions of writes older than [`WINDOW`] run.
const EVICT_EVERY: u64 = 10_000;

/// Where a write stands in the one order: after change `version`, a change before the
/// messages stamped with it (`event` false), which come in stream order.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
struct At {
    version: u64,
    event: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Write {
    at: At,
    on: bool,
}

/// The relations events make: follows and mutes (blocks come only from changes).
fn made_by_events(r: Relation) -> Option<Kind> {
    match r {
        Relation::Follow => Some(Kind::Follow),
        Relation::Mute => Some(Kind::Mute),
        Relation::Block => None,
    }
}

/// The latest writes of follows and mutes applied lately (see the module doc).
#[derive(Debug, Default)]
pub(crate) struct Recent {
    pairs: HashMap<(UserId, UserId, Kind), Write>,
    /// People erased lately: the erasure's version, and that of the account made again
    /// under their id since, if one was.
    erased: HashMap<UserId, (u64, Option<u64>)>,
    /// The version of the last eviction.
    evicted: u64,
}

/// [`Recent`] as a mirror snapshot keeps it.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    pairs: Vec<(UserId, UserId, Kind, Write)>,
    erased: Vec<(UserId, u64, Option<u64>)>,
}

impl Recent {
    /// Notes change `version`, applied here.
    pub(crate) fn note_change(&mut self, change: &Change, version: u64) {
        let at = At {
            version,
            event: false,
        };
        match change {
            Change::Relations { .. } => {
                for (a, b, r, on) in change.relation_items() {
                    if let Some(kind) = made_by_events(r) {
                        self.pairs.insert((a, b, kind), Write { at, on });
                    }
                }
            }
            Change::Erase { user, .. } => {
                self.erased.insert(user.clone(), (version, None));
            }
            // The account of someone erased, made again: until then a follow of them
            // made no edge, so one stamped before it ends as one before the erasure.
            Change::User { user } => match self.erased.get_mut(&user.id) {
                Some((_, back @ None)) => *back = Some(version),
                _ => return,
            },
            _ => return,
        }
        if version >= self.evicted + EVICT_EVERY {
            self.evicted = version;
            let floor = version.saturating_sub(WINDOW);
            self.pairs.retain(|_, w| w.at.version >= floor);
            self.erased
                .retain(|_, (erased, back)| back.unwrap_or(*erased) >= floor);
        }
    }

    /// The latest write on `a`'s `kind` of `b` noted here: a change, or an erasure of
    /// `b`, which ends `a`'s follows of them (a person's mutes of someone erased stay,
    /// and an erased person's own events are dropped or unreadable everywhere).
    fn latest(&self, key: &(UserId, UserId, Kind)) -> Option<Write> {
        let erasure = match key.2 {
            Kind::Follow => self.erased.get(&key.1).map(|&(erased, back)| Write {
                at: At {
                    version: back.unwrap_or(erased),
                    event: false,
                },
                on: false,
            }),
            Kind::Mute | Kind::Block => None,
        };
        match (self.pairs.get(key).copied(), erasure) {
            (Some(w), Some(e)) => Some(if e.at > w.at { e } else { w }),
            (w, e) => w.or(e),
        }
    }

    /// Notes the edges (`a` follows or mutes `b`) that the events of a message stamped
    /// `stamp` made here, and answers those a change later in the one order already
    /// ended: the mirror must end them again.
    pub(crate) fn note_edges(
        &mut self,
        stamp: u64,
        edges: impl IntoIterator<Item = (UserId, UserId, Relation)>,
    ) -> Vec<(UserId, UserId, Relation)> {
        let at = At {
            version: stamp,
            event: true,
        };
        let mut ended = Vec::new();
        for (a, b, r) in edges {
            let Some(kind) = made_by_events(r) else {
                continue;
            };
            let key = (a, b, kind);
            match self.latest(&key) {
                Some(w) if w.at > at && !w.on => {
                    ended.push((key.0, key.1, kind.into()));
                }
                // A later follow or mute stands, as this one does.
                Some(w) if w.at > at => {}
                // Later than every write noted on the pair: a message stamped before
                // this one and applied after it must not be ended by them. With none
                // noted, no change here can end it but one applied later, which comes
                // after it anyway.
                Some(_) => {
                    self.pairs.insert(key, Write { at, on: true });
                }
                None => {}
            }
        }
        ended
    }

    /// What a mirror snapshot keeps of it.
    pub(crate) fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&Saved {
            pairs: self
                .pairs
                .iter()
                .map(|((a, b, k), w)| (a.clone(), b.clone(), *k, *w))
                .collect(),
            erased: self
                .erased
                .iter()
                .map(|(u, (e, b))| (u.clone(), *e, *b))
                .collect(),
        })
    }

    /// Reads back what [`Recent::to_json`] wrote.
    pub(crate) fn from_json(bytes: &[u8]) -> Result<Recent, serde_json::Error> {
        let saved: Saved = serde_json::from_slice(bytes)?;
        Ok(Recent {
            pairs: saved
                .pairs
                .into_iter()
                .map(|(a, b, k, w)| ((a, b, k), w))
                .collect(),
            erased: saved
                .erased
                .into_iter()
                .map(|(u, e, b)| (u, (e, b)))
                .collect(),
            evicted: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uid(s: &str) -> UserId {
        UserId::new(s).unwrap()
    }

    fn unfollow(version: u64, recent: &mut Recent) {
        let change = Change::relations(&[(uid("a"), uid("b"), Relation::Follow, false)]);
        recent.note_change(&change, version);
    }

    fn follow_event(stamp: u64, recent: &mut Recent) -> Vec<(UserId, UserId, Relation)> {
        recent.note_edges(stamp, [(uid("a"), uid("b"), Relation::Follow)])
    }

    #[test]
    fn an_edge_stamped_before_an_unfollow_applied_here_is_ended_again() {
        let mut r = Recent::default();
        unfollow(11, &mut r);
        assert_eq!(
            follow_event(10, &mut r),
            vec![(uid("a"), uid("b"), Relation::Follow)]
        );
    }

    #[test]
    fn an_edge_stamped_at_or_after_the_unfollow_stands() {
        let mut r = Recent::default();
        unfollow(11, &mut r);
        assert!(follow_event(11, &mut r).is_empty());
        assert!(follow_event(12, &mut r).is_empty());
    }

    #[test]
    fn a_later_edge_than_the_unfollow_stands_for_a_late_message_too() {
        let mut r = Recent::default();
        unfollow(11, &mut r);
        // A follow from a message stamped after the unfollow, then a late one stamped
        // before it: the first is the latest in the order, and it follows.
        assert!(follow_event(12, &mut r).is_empty());
        assert!(follow_event(10, &mut r).is_empty());
    }

    #[test]
    fn an_erasure_after_the_stamp_ends_the_edge_and_other_kinds_are_apart() {
        let mut r = Recent::default();
        let erase = Change::Erase {
            user: uid("b"),
            own_videos: steerfeed_core::OwnVideos::Keep,
        };
        r.note_change(&erase, 20);
        assert_eq!(follow_event(19, &mut r).len(), 1);
        assert!(follow_event(20, &mut r).is_empty());
        // Made again at 30: a follow stamped between the erasure and then made no edge
        // where it came in time, and ends; one stamped after stands; an update of the
        // account later moves nothing.
        let again = Change::User {
            user: steerfeed_core::User {
                id: uid("b"),
                age_band: Default::default(),
                time_zone: "UTC".into(),
            },
        };
        r.note_change(&again, 30);
        r.note_change(&again, 40);
        assert_eq!(follow_event(25, &mut r).len(), 1);
        assert!(follow_event(35, &mut r).is_empty());
        // Mutes of someone erased stay: a mute stamped before the erasure stands.
        assert!(
            r.note_edges(19, [(uid("a"), uid("b"), Relation::Mute)])
                .is_empty()
        );
        // A mute on another pair is not touched by a's unfollow of b.
        let mut r = Recent::default();
        unfollow(11, &mut r);
        assert!(
            r.note_edges(5, [(uid("a"), uid("c"), Relation::Mute)])
                .is_empty()
        );
        assert!(
            r.note_edges(5, [(uid("a"), uid("b"), Relation::Mute)])
                .is_empty()
        );
    }

    #[test]
    fn an_edge_on_a_pair_no_write_was_noted_on_is_not_kept() {
        let mut r = Recent::default();
        for stamp in 0..1_000 {
            assert!(
                r.note_edges(
                    stamp,
                    [(uid("a"), uid(&format!("c{stamp}")), Relation::Follow)]
                )
                .is_empty()
            );
        }
        assert!(r.pairs.is_empty());
    }

    #[test]
    fn a_snapshot_of_it_decides_as_the_original() {
        let mut r = Recent::default();
        unfollow(11, &mut r);
        let mut back = Recent::from_json(&r.to_json().unwrap()).unwrap();
        assert_eq!(follow_event(10, &mut back).len(), 1);
    }

    #[test]
    fn writes_older_than_the_window_are_forgotten() {
        let mut r = Recent::default();
        unfollow(11, &mut r);
        let other = Change::relations(&[(uid("x"), uid("y"), Relation::Follow, true)]);
        r.note_change(&other, 12 + WINDOW);
        r.note_change(&other, 12 + WINDOW + EVICT_EVERY);
        assert!(follow_event(10, &mut r).is_empty());
    }
}
