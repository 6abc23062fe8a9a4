//! In-memory mirrors of the index trees a feed request reads: the time indexes
//! (`by_creator`, `newest`, `featuring`, `by_topic`), the relation trees (`follows`,
//! `blocks`, `mutes`), `approved` and `revocations`.
//!
//! sled stays the record: each mirror is loaded from its tree at open and changed by the
//! writer right after its sled commit, still under the store's write lock, so it holds
//! exactly what sled holds for every write that returned (a revocation or a deletion is
//! in force in the mirror before its call returns). A feed then reads sets and ordered
//! sets in memory instead of walking sled's pages for every candidate: consent checks
//! (revocations, approvals, mutual follows), the following and cameo sources, the fresh
//! and topic sources, and the viewer's relations.
//!
//! Orders match sled's byte order (ids compare as bytes, time keys newest first), so a
//! mirror read returns what the tree scan returned.

use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use steerfeed_core::{Result, TopicId, UserId, Video, VideoId};

use crate::cache::{FastMap, FastSet, Ids};
use crate::codec::{after_sep, corrupt, from_newest_first, ms};
use crate::damage::{DamageLog, DamageRule};
use steerfeed_core::storage::Revocation;

use crate::trees::{Trees, db_err};

/// Newest first; equal times in id order (sled's key order).
pub(crate) type Timeline = BTreeSet<(Reverse<i64>, VideoId)>;

/// The time indexes.
#[derive(Default)]
pub(crate) struct TimeIndex {
    pub newest: Timeline,
    pub by_creator: FastMap<UserId, Timeline>,
    pub featuring: FastMap<UserId, Timeline>,
    pub by_topic: FastMap<TopicId, Timeline>,
}

impl TimeIndex {
    /// Adds a live video to every index it belongs to (with the store's shared ids).
    pub fn index(&mut self, v: &Video, ids: &Ids) {
        let key = (Reverse(ms(v.created_at)), ids.video(&v.id));
        self.newest.insert(key.clone());
        self.by_creator
            .entry(ids.user(&v.creator))
            .or_default()
            .insert(key.clone());
        for p in &v.cameos {
            self.featuring
                .entry(ids.user(p))
                .or_default()
                .insert(key.clone());
        }
        for t in &v.topics {
            self.by_topic
                .entry(t.clone())
                .or_default()
                .insert(key.clone());
        }
    }

    /// Removes a video from every index (its fields as they were indexed).
    pub fn unindex(&mut self, v: &Video) {
        let key = (Reverse(ms(v.created_at)), v.id.clone());
        self.newest.remove(&key);
        remove_from(&mut self.by_creator, &v.creator, &key);
        for p in &v.cameos {
            remove_from(&mut self.featuring, p, &key);
        }
        for t in &v.topics {
            remove_from(&mut self.by_topic, t, &key);
        }
    }
}

fn remove_from<K: std::hash::Hash + Eq>(
    map: &mut FastMap<K, Timeline>,
    owner: &K,
    key: &(Reverse<i64>, VideoId),
) {
    if let Some(set) = map.get_mut(owner) {
        set.remove(key);
        if set.is_empty() {
            map.remove(owner);
        }
    }
}

/// `a → {b}` for one relation tree (`a \0 b` keys).
pub(crate) type Edges = FastMap<UserId, FastSet<UserId>>;

/// Which relation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Edge {
    Follow,
    Block,
    Mute,
}

/// The relation trees, `approved` and `revocations`.
#[derive(Default)]
pub(crate) struct Relations {
    pub follows: Edges,
    pub blocks: Edges,
    pub mutes: Edges,
    /// `person → {user}`: `person` approved `user` to use their likeness.
    pub approved: FastMap<UserId, FastSet<UserId>>,
    /// `person → {what they revoked}`.
    pub revocations: FastMap<UserId, FastSet<Revocation>>,
    /// People with an unreadable consent or revocation record: every video featuring
    /// them reads as revoked (`damage.rs`).
    pub likeness_withheld: FastSet<UserId>,
    /// A revocation whose person cannot be read: every cameo reads as revoked.
    pub all_cameos_withheld: bool,
    /// Viewers with an unreadable block or mute record.
    pub restricted_viewers: FastSet<UserId>,
    /// A block or mute whose viewer cannot be read: every viewer is restricted.
    pub all_viewers_restricted: bool,
}

impl Relations {
    fn edges_mut(&mut self, which: Edge) -> &mut Edges {
        match which {
            Edge::Follow => &mut self.follows,
            Edge::Block => &mut self.blocks,
            Edge::Mute => &mut self.mutes,
        }
    }

    fn edges(&self, which: Edge) -> &Edges {
        match which {
            Edge::Follow => &self.follows,
            Edge::Block => &self.blocks,
            Edge::Mute => &self.mutes,
        }
    }

    /// Sets or clears the edge `a → b` (kept with the store's shared ids).
    pub fn set(&mut self, which: Edge, a: &UserId, b: &UserId, on: bool, ids: &Ids) {
        let edges = self.edges_mut(which);
        if on {
            edges.entry(ids.user(a)).or_default().insert(ids.user(b));
        } else if let Some(set) = edges.get_mut(a) {
            set.remove(b);
            if set.is_empty() {
                edges.remove(a);
            }
        }
    }

    /// True when the edge `a → b` is there.
    pub fn has(&self, which: Edge, a: &UserId, b: &UserId) -> bool {
        self.edges(which).get(a).is_some_and(|s| s.contains(b))
    }

    /// Everyone `a` points at, in id order (sled's).
    pub fn from(&self, which: Edge, a: &UserId) -> Vec<UserId> {
        let mut out: Vec<UserId> = self
            .edges(which)
            .get(a)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        out.sort_unstable();
        out
    }

    /// `a` and `b` follow each other.
    pub fn mutual(&self, a: &UserId, b: &UserId) -> bool {
        self.has(Edge::Follow, a, b) && self.has(Edge::Follow, b, a)
    }

    /// Replaces `person`'s approved list.
    pub fn set_approved(&mut self, person: &UserId, approved: &[UserId], ids: &Ids) {
        if approved.is_empty() {
            self.approved.remove(person);
        } else {
            self.approved.insert(
                ids.user(person),
                approved.iter().map(|a| ids.user(a)).collect(),
            );
        }
    }

    /// Forgets an erased person's relations: their follows, blocks and mutes, the
    /// follows of `followers` to them, their approvals and revocations, and others'
    /// approvals of them.
    pub fn forget_person(&mut self, person: &UserId, followers: &[UserId]) {
        self.follows.remove(person);
        self.blocks.remove(person);
        self.mutes.remove(person);
        for a in followers {
            if let Some(set) = self.follows.get_mut(a) {
                set.remove(person);
                if set.is_empty() {
                    self.follows.remove(a);
                }
            }
        }
        self.approved.remove(person);
        self.approved.retain(|_, set| {
            set.remove(person);
            !set.is_empty()
        });
        self.revocations.remove(person);
    }

    /// Who approved `user` to use their likeness, in id order.
    pub fn approving(&self, user: &UserId) -> Vec<UserId> {
        let mut out: Vec<UserId> = self
            .approved
            .iter()
            .filter(|(_, set)| set.contains(user))
            .map(|(p, _)| p.clone())
            .collect();
        out.sort_unstable();
        out
    }

    /// True when `person` approved `user`.
    pub fn is_approved(&self, person: &UserId, user: &UserId) -> bool {
        self.approved.get(person).is_some_and(|s| s.contains(user))
    }

    /// Records a revocation.
    pub fn revoke(&mut self, person: &UserId, r: Revocation, ids: &Ids) {
        let r = match r {
            Revocation::Video(v) => Revocation::Video(ids.video(&v)),
            Revocation::Creator(c) => Revocation::Creator(ids.user(&c)),
        };
        self.revocations
            .entry(ids.user(person))
            .or_default()
            .insert(r);
    }

    /// True when `person` revoked the video `video` or every video of `creator`.
    pub fn revoked(
        &self,
        person: &UserId,
        video: Option<&VideoId>,
        creator: Option<&UserId>,
    ) -> bool {
        if self.all_cameos_withheld || self.likeness_withheld.contains(person) {
            return true;
        }
        let Some(set) = self.revocations.get(person) else {
            return false;
        };
        video.is_some_and(|v| set.contains(&Revocation::Video(v.clone())))
            || creator.is_some_and(|c| set.contains(&Revocation::Creator(c.clone())))
    }
}

/// Both mirrors, each behind its own lock.
#[derive(Default)]
pub(crate) struct Mirror {
    time: RwLock<TimeIndex>,
    rel: RwLock<Relations>,
}

impl Mirror {
    pub fn time(&self) -> RwLockReadGuard<'_, TimeIndex> {
        self.time.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn time_mut(&self) -> RwLockWriteGuard<'_, TimeIndex> {
        self.time.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn rel(&self) -> RwLockReadGuard<'_, Relations> {
        self.rel.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn rel_mut(&self) -> RwLockWriteGuard<'_, Relations> {
        self.rel.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Fills both mirrors from the trees (at open, after the log replay), with the
    /// store's shared ids. An unreadable key does not stop the load: it falls under its
    /// tree's rule in `damage.rs` and is noted in `damage`. Only sled's own errors fail.
    pub fn load(&self, t: &Trees, ids: &Ids, damage: &DamageLog) -> Result<()> {
        let mut time = TimeIndex::default();
        for kv in t.newest.iter() {
            let (k, _) = kv.map_err(db_err)?;
            match timed_entry(&k, ids) {
                Ok(entry) => {
                    time.newest.insert(entry);
                }
                Err(_) => damage.note("newest", &k, DamageRule::Dropped),
            }
        }
        let user = |s: &str| Ok(ids.user(&user_id(s)?));
        load_timed(
            &t.by_creator,
            "by_creator",
            &mut time.by_creator,
            user,
            ids,
            damage,
        )?;
        load_timed(
            &t.featuring,
            "featuring",
            &mut time.featuring,
            user,
            ids,
            damage,
        )?;
        load_timed(
            &t.by_topic,
            "by_topic",
            &mut time.by_topic,
            |s| TopicId::new(s).map_err(|_| corrupt("topic index key")),
            ids,
            damage,
        )?;
        let mut rel = Relations::default();
        for (tree, name, which) in [
            (&t.follows, "follows", Edge::Follow),
            (&t.blocks, "blocks", Edge::Block),
            (&t.mutes, "mutes", Edge::Mute),
        ] {
            for kv in tree.iter() {
                let (k, _) = kv.map_err(db_err)?;
                match split_pair(&k) {
                    Ok(Some((a, b))) => rel.set(which, &a, &b, true, ids),
                    Ok(None) => {}
                    // An unreadable follow can only serve less (followers-only videos).
                    Err(_) if which == Edge::Follow => {
                        damage.note(name, &k, DamageRule::Dropped);
                    }
                    // An unreadable block or mute: whoever it hides is unknown.
                    Err(_) => match owner_of(&k) {
                        Some(viewer) => {
                            damage.note(name, &k, DamageRule::ViewerRestricted);
                            rel.restricted_viewers.insert(ids.user(&viewer));
                        }
                        None => {
                            damage.note(name, &k, DamageRule::AllViewersRestricted);
                            rel.all_viewers_restricted = true;
                        }
                    },
                }
            }
        }
        for kv in t.approved.iter() {
            let (k, _) = kv.map_err(db_err)?;
            match split_pair(&k) {
                Ok(Some((person, user))) => {
                    rel.approved
                        .entry(ids.user(&person))
                        .or_default()
                        .insert(ids.user(&user));
                }
                Ok(None) => {}
                Err(_) => damage.note("approved", &k, DamageRule::Dropped),
            }
        }
        for kv in t.revocations.iter() {
            let (k, _) = kv.map_err(db_err)?;
            match revocation_of(&k) {
                Ok((person, r)) => rel.revoke(&person, r, ids),
                Err(_) => match owner_of(&k) {
                    Some(person) => {
                        damage.note("revocations", &k, DamageRule::LikenessWithheld);
                        rel.likeness_withheld.insert(ids.user(&person));
                    }
                    None => {
                        damage.note("revocations", &k, DamageRule::AllCameosWithheld);
                        rel.all_cameos_withheld = true;
                    }
                },
            }
        }
        *self.time_mut() = time;
        *self.rel_mut() = rel;
        Ok(())
    }
}

/// The id before the first `\0` of a composite key, when it reads as a user id.
fn owner_of(k: &[u8]) -> Option<UserId> {
    let end = k.iter().position(|&b| b == crate::codec::SEP)?;
    std::str::from_utf8(&k[..end])
        .ok()
        .and_then(|s| UserId::new(s).ok())
}

fn user_id(s: &str) -> Result<UserId> {
    UserId::new(s).map_err(|_| corrupt("user id in a key"))
}

fn text<'a>(b: &'a [u8], what: &'static str) -> Result<&'a str> {
    std::str::from_utf8(b).map_err(|_| corrupt(what))
}

/// `time↓ video` → the timeline entry.
fn timed_entry(rest: &[u8], ids: &Ids) -> Result<(Reverse<i64>, VideoId)> {
    let at = from_newest_first(rest).ok_or_else(|| corrupt("time index key"))?;
    let id =
        VideoId::new(text(&rest[8..], "time index key")?).map_err(|_| corrupt("time index key"))?;
    Ok((Reverse(at), ids.video(&id)))
}

/// Loads one per-owner time index; an unreadable key is dropped (noted in `damage`): the
/// video stays servable through the other indexes, and its own record is untouched.
fn load_timed<K: std::hash::Hash + Eq + Clone>(
    tree: &sled::Tree,
    name: &'static str,
    into: &mut FastMap<K, Timeline>,
    owner: impl Fn(&str) -> Result<K>,
    ids: &Ids,
    damage: &DamageLog,
) -> Result<()> {
    // Keys of one owner are adjacent: parse the owner once per run of keys.
    let mut current: Option<(Vec<u8>, K)> = None;
    for kv in tree.iter() {
        let (k, _) = kv.map_err(db_err)?;
        let mut entry = || -> Result<(K, (Reverse<i64>, VideoId))> {
            let rest = after_sep(&k).ok_or_else(|| corrupt("time index key"))?;
            let head = &k[..k.len() - rest.len() - 1];
            let o = match &current {
                Some((h, o)) if h.as_slice() == head => o.clone(),
                _ => {
                    let o = owner(text(head, "time index key")?)?;
                    current = Some((head.to_vec(), o.clone()));
                    o
                }
            };
            Ok((o, timed_entry(rest, ids)?))
        };
        match entry() {
            Ok((o, e)) => {
                into.entry(o).or_default().insert(e);
            }
            Err(_) => damage.note(name, &k, DamageRule::Dropped),
        }
    }
    Ok(())
}

/// `a \0 b` → `(a, b)`; the watermark key of a derived tree gives `None`.
pub(crate) fn split_pair(k: &[u8]) -> Result<Option<(UserId, UserId)>> {
    if k.first() == Some(&0xFF) {
        return Ok(None);
    }
    let b = after_sep(k).ok_or_else(|| corrupt("relation key"))?;
    let a = &k[..k.len() - b.len() - 1];
    Ok(Some((
        user_id(text(a, "relation key")?)?,
        user_id(text(b, "relation key")?)?,
    )))
}

/// `person \0 v video` or `person \0 c creator`.
pub(crate) fn revocation_of(k: &[u8]) -> Result<(UserId, Revocation)> {
    let rest = after_sep(k).ok_or_else(|| corrupt("revocation key"))?;
    let person = user_id(text(&k[..k.len() - rest.len() - 1], "revocation key")?)?;
    let (kind, id) = rest
        .split_first()
        .ok_or_else(|| corrupt("revocation key"))?;
    let id = text(id, "revocation key")?;
    let r = match kind {
        b'v' => Revocation::Video(VideoId::new(id).map_err(|_| corrupt("revocation key"))?),
        b'c' => Revocation::Creator(user_id(id)?),
        _ => return Err(corrupt("revocation key")),
    };
    Ok((person, r))
}
