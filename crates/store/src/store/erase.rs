//! A person's data: erasing them (logged first in the erasure log, `crate::erasure`,
//! then carried out in one transaction) and exporting what the store holds about them.
//!
//! What an erasure removes: the account; their follows both ways, their blocks and
//! mutes; their consent scope, approved list and revocations; parental controls and
//! preferences; wellbeing, interest, affinity, the seen and history rings; their events
//! in the log (each replaced by the erased marker, `codec::erase_in_record`, so the
//! numbering stays) and those events' idempotency keys; every video featuring them
//! (deleted, their id taken out of its cameo list); their own videos when asked
//! (deleted, with no caption, cameo, remix link or embedding left, and
//! `steerfeed_core::person::ERASED_CREATOR` as creator), with their creator counters.
//! What stays: counters and co-engagement of videos (anonymous sums their events added
//! to), other people's blocks and mutes of them (those protect the blocker), other
//! people's affinity toward them as a creator and other people's histories naming
//! their videos, and the erasure log's entry.

use std::collections::{BTreeSet, HashSet};

use steerfeed_core::{ErasureReport, OwnVideos, Record};

use super::*;
use crate::erasure::ErasureEntry;
use crate::idempotency::KEY_SEGMENT;
use crate::trees::ERASURES_APPLIED_KEY;

/// The sequence number and idempotency key of each erased event.
type ErasedEvents = Vec<(u64, steerfeed_core::EventKey)>;

impl Store {
    /// Erases `user` (see the module docs): logged in the erasure log first, then carried
    /// out in one transaction; durable and in force for every read that starts after it
    /// returns. A person erased before (and not stored again since) answers a report
    /// with `already_erased`; an id never stored is `NotFound`.
    pub fn erase_user(&self, user: &UserId, own: OwnVideos) -> Result<ErasureReport> {
        let log = &self.inner.erasures;
        let mut entries = log.lock();
        // An erasure logged before but not carried out (it failed) goes first: the count
        // the store keeps must never pass an entry it did not apply.
        let applied = self.erasures_applied()?;
        for (i, e) in entries.iter().enumerate().skip(applied as usize) {
            self.erase(&e.user, e.own_videos, i as u64 + 1)?;
        }
        if !self.t().users.contains_key(user.as_str()).map_err(db_err)? {
            if !entries.iter().any(|e| e.user == *user) {
                return Err(Error::not_found(Entity::User, user));
            }
            // Erased before; their videos kept then may be deleted now.
            let kept = self
                .t()
                .by_creator
                .scan_prefix(prefix(user.as_str()))
                .next()
                .is_some();
            if own == OwnVideos::Keep || !kept {
                let mut r = ErasureReport::new(user.clone());
                r.already_erased = true;
                return Ok(r);
            }
        }
        let entry = ErasureEntry {
            user: user.clone(),
            at: Timestamp::now(),
            own_videos: own,
            store: Some(self.inner.store_id.clone()),
        };
        log.append(&mut entries, entry)?;
        let applied = entries.len() as u64;
        self.erase(user, own, applied)
    }

    /// The store's identity, kept by its copies.
    pub fn store_id(&self) -> &str {
        &self.inner.store_id
    }

    /// The erasure log's entries, oldest first.
    pub fn erasures(&self) -> Vec<ErasureEntry> {
        self.inner.erasures.lock().clone()
    }

    /// Carries out the erasure log's entries this store has not applied (at open): one a
    /// crash cut short, or every entry logged after the copy this store was restored
    /// from was made.
    pub(super) fn apply_pending_erasures(&self) -> Result<()> {
        let entries = self.inner.erasures.lock().clone();
        let applied = self.erasures_applied()?;
        if applied > entries.len() as u64 {
            return Err(Error::invalid(
                "store.path",
                format!(
                    "the store has applied {applied} erasures but its erasure log ({}) holds {}: \
                     the log was lost or replaced; put it back (a restored store needs it to \
                     forget the people erased since its copy was made)",
                    self.inner.erasures.path_shown(),
                    entries.len()
                ),
            ));
        }
        for (i, e) in entries.iter().enumerate().skip(applied as usize) {
            let r = self.erase(&e.user, e.own_videos, i as u64 + 1)?;
            tracing::info!(
                events = r.events,
                records = r.records,
                videos = r.own_videos_deleted + r.cameo_videos_deleted,
                "store: applied an erasure from the erasure log"
            );
        }
        Ok(())
    }

    /// How many erasure log entries this store has carried out.
    pub(super) fn erasures_applied(&self) -> Result<u64> {
        Ok(
            match self.t().meta.get(ERASURES_APPLIED_KEY).map_err(db_err)? {
                Some(b) => u64_of(&b).ok_or_else(|| corrupt("erasures applied"))?,
                None => 0,
            },
        )
    }

    /// Log records (by first sequence number) holding an event of `user`, from `from`.
    fn records_of(&self, user: &UserId, from: u64, out: &mut BTreeSet<u64>) -> Result<()> {
        let t = self.t();
        let start = match t.events.range(..=from.to_be_bytes()).next_back() {
            Some(kv) => u64_of(&kv.map_err(db_err)?.0).ok_or_else(|| corrupt("event key"))?,
            None => from,
        };
        for kv in t.events.range(start.to_be_bytes()..) {
            let (k, v) = kv.map_err(db_err)?;
            let first = u64_of(&k).ok_or_else(|| corrupt("event key"))?;
            let mut hit = false;
            codec::decode_record(&v, 0, |_, e| {
                hit |= e.user == *user;
                Ok(())
            })?;
            if hit {
                out.insert(first);
            }
        }
        Ok(())
    }

    /// Videos `user` made or appears in, deleted ones included (a pass over the whole
    /// catalogue; unreadable records are skipped).
    /// Adds to `out` the impression log entries from `from` on whose page was served to
    /// `user`; returns the last entry number read (`from − 1` when none was).
    fn impressions_of(&self, user: &UserId, from: u64, out: &mut Vec<u64>) -> Result<u64> {
        let mut last = from.saturating_sub(1);
        for kv in self.t().impressions.range(from.to_be_bytes()..) {
            let (k, v) = kv.map_err(db_err)?;
            let seq = u64_of(&k).ok_or_else(|| corrupt("impression key"))?;
            last = seq;
            // An unreadable entry may be theirs: it goes too.
            if crate::impressions::user_of(&v).map_or(true, |u| u == user.as_str()) {
                out.push(seq);
            }
        }
        Ok(last)
    }

    fn videos_of(&self, user: &UserId) -> Result<BTreeSet<VideoId>> {
        let mut out = BTreeSet::new();
        for kv in self.t().videos.iter() {
            let (k, b) = kv.map_err(db_err)?;
            if let Ok(v) = decode_video(&b)
                && (v.creator == *user || v.cameos.contains(user))
            {
                out.insert(video_of(&k)?);
            }
        }
        Ok(out)
    }

    /// The ids of the live videos a time index lists under `owner`.
    fn indexed_under(&self, tree: &Tree, owner: &UserId) -> Result<Vec<VideoId>> {
        tree.scan_prefix(prefix(owner.as_str()))
            .map(|kv| {
                let (k, _) = kv.map_err(db_err)?;
                let rest = after_sep(&k).ok_or_else(|| corrupt("time index key"))?;
                video_of(rest.get(8..).ok_or_else(|| corrupt("time index key"))?)
            })
            .collect()
    }

    /// Erases `user` in one transaction (the log entry is already written), recording
    /// `applied` as the erasure log entries this store has carried out.
    fn erase(&self, user: &UserId, own: OwnVideos, applied: u64) -> Result<ErasureReport> {
        let mut report = ErasureReport::new(user.clone());
        // The long passes (the whole log, the whole catalogue) run before the locks; what
        // was written meanwhile is read again under them.
        let scanned_to = self.event_count();
        let mut records = BTreeSet::new();
        self.records_of(user, 1, &mut records)?;
        let mut videos = self.videos_of(user)?;
        let mut impressions = Vec::new();
        self.flush_impressions()?;
        let impressions_scanned = self.impressions_of(user, 1, &mut impressions)?;
        let _epoch = EpochBump(self);
        let generation = {
            let _p = self.persist_lock();
            let _g = self.write_lock();
            let t = self.t();
            self.records_of(user, scanned_to + 1, &mut records)?;
            videos.extend(self.indexed_under(&t.by_creator, user)?);
            videos.extend(self.indexed_under(&t.featuring, user)?);
            // Pages recorded since are in memory: written first, then read.
            self.flush_impressions()?;
            self.impressions_of(user, impressions_scanned + 1, &mut impressions)?;
            let mut w = Writes::default();
            for seq in &impressions {
                w.remove(&t.impressions, seq.to_be_bytes());
            }
            report.records += impressions.len() as u64;

            // The event log and the idempotency keys of the erased events.
            let mut erased: ErasedEvents = Vec::new();
            for first in &records {
                let Some(b) = t.events.get(first.to_be_bytes()).map_err(db_err)? else {
                    continue;
                };
                if let Some((rewritten, which)) = codec::erase_in_record(&b, |e| e.user == *user)? {
                    w.insert(&t.events, first.to_be_bytes(), rewritten);
                    erased.extend(which.into_iter().map(|(i, e)| (first + i, e.key)));
                }
            }
            report.events = erased.len() as u64;
            let seqs: HashSet<u64> = erased.iter().map(|(s, _)| *s).collect();
            if !seqs.is_empty() {
                for kv in t.event_keys.range([KEY_SEGMENT]..[KEY_SEGMENT + 1]) {
                    let (k, v) = kv.map_err(db_err)?;
                    let kept: Vec<u8> = v
                        .chunks_exact(16)
                        .filter(|e| codec::u64_le(e, 8).is_none_or(|s| !seqs.contains(&s)))
                        .flatten()
                        .copied()
                        .collect();
                    if kept.len() != v.len() {
                        report.records += ((v.len() - kept.len()) / 16) as u64;
                        if kept.is_empty() {
                            w.remove(&t.event_keys, k);
                        } else {
                            w.insert(&t.event_keys, k, kept);
                        }
                    }
                }
                // One key per entry, as schema version 3 and older stored them.
                for (_, key) in &erased {
                    if t.event_keys.contains_key(key.as_str()).map_err(db_err)? {
                        w.remove(&t.event_keys, key.as_str());
                        report.records += 1;
                    }
                }
            }

            // Their records, and their relations both ways.
            let u = user.as_str();
            let n = &mut report.records;
            for tree in [
                &t.users,
                &t.parental,
                &t.prefs,
                &t.consent,
                &t.wellbeing,
                &t.interest,
            ] {
                gone(&mut w, n, tree, u.as_bytes())?;
            }
            for tree in [
                &t.approved,
                &t.revocations,
                &t.blocks,
                &t.mutes,
                &t.affinity,
                &t.seen,
                &t.history,
            ] {
                for kv in tree.scan_prefix(prefix(u)) {
                    let (k, _) = kv.map_err(db_err)?;
                    gone(&mut w, n, tree, &k)?;
                }
            }
            // Ring heads of schema 3 and older stores: the bare id.
            gone(&mut w, n, &t.seen, u.as_bytes())?;
            gone(&mut w, n, &t.history, u.as_bytes())?;
            // Others' approvals of them (a person stored again under the id is someone
            // else, and may not inherit them), found in the mirror of `approved`.
            let approving = self.inner.mirror.rel().approving(user);
            for p in &approving {
                gone(&mut w, n, &t.approved, &pair(p.as_str(), u))?;
            }
            let following = self.second_ids(&t.follows, user)?;
            let followers = self.second_ids(&t.followers, user)?;
            for b in &following {
                gone(&mut w, n, &t.follows, &pair(u, b.as_str()))?;
                gone(&mut w, n, &t.followers, &pair(b.as_str(), u))?;
            }
            for a in &followers {
                gone(&mut w, n, &t.followers, &pair(u, a.as_str()))?;
                gone(&mut w, n, &t.follows, &pair(a.as_str(), u))?;
            }
            if own == OwnVideos::Delete {
                gone(&mut w, n, &t.creator_counts, u.as_bytes())?;
            }

            // Videos featuring them, and their own when asked: deleted, and scrubbed.
            let mut deleted = Vec::new();
            let mut unindexed = Vec::new();
            for id in &videos {
                let Some(b) = t.videos.get(id.as_str()).map_err(db_err)? else {
                    continue;
                };
                let Ok(mut v) = decode_video(&b) else {
                    continue;
                };
                let mine = v.creator == *user;
                let goes = v.cameos.contains(user) || (mine && own == OwnVideos::Delete);
                if !goes {
                    continue;
                }
                if !v.deleted {
                    self.unindex(&mut w, &v);
                    unindexed.push(v.clone());
                }
                if mine {
                    v.caption.clear();
                    v.cameos.clear();
                    v.remix_of = None;
                    v.creator = UserId::new(steerfeed_core::person::ERASED_CREATOR)?;
                    report.own_videos_deleted += 1;
                } else {
                    v.cameos.retain(|p| p != user);
                    report.cameo_videos_deleted += 1;
                }
                v.deleted = true;
                w.insert(&t.videos, id.as_str(), encode_video(&v));
                w.remove(&t.embeddings, id.as_str());
                w.remove(&t.counters, id.as_str());
                deleted.push(v.id);
            }
            let live = self.adjust_live(&mut w, -(unindexed.len() as i64));
            let version = (!deleted.is_empty()).then(|| self.bump_catalog(&mut w, deleted.iter()));
            w.insert(&t.meta, ERASURES_APPLIED_KEY, applied.to_be_bytes());
            let generation = self.commit_writes(w)?;

            // Memory follows sled.
            let i = &self.inner;
            i.live_videos.store(live, Ordering::Release);
            if let Some(version) = version {
                i.catalog_version.store(version, Ordering::Release);
            }
            {
                let mut time = i.mirror.time_mut();
                for v in &unindexed {
                    time.unindex(v);
                }
            }
            i.mirror.rel_mut().forget_person(user, &followers);
            i.users.invalidate(user);
            i.prefs.invalidate(user);
            i.parental.invalidate(user);
            i.time_zones
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(user);
            i.person_facts
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(user);
            {
                let mut ov = self.overlay_write();
                ov.active.forget_user(user, own == OwnVideos::Delete);
                ov.active.event_keys.retain(|(_, s)| !seqs.contains(s));
                for (seq, key) in &erased {
                    ov.keys.forget(key, *seq);
                }
                ov.resident.remove(user);
                // The clean layer may hold their ring heads: it goes whole.
                let old = ov.clean.take();
                self.forget_layer(old.as_deref());
            }
            if own == OwnVideos::Delete {
                // Epoch first: a reader that began before must not cache what it read.
                i.counter_epoch.fetch_add(1, Ordering::AcqRel);
                i.creator_cache
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(user);
            }
            self.forget_deleted_videos(&deleted.iter().collect::<Vec<_>>());
            report.deleted = deleted;
            i.erasure_epoch.fetch_add(1, Ordering::AcqRel);
            generation
        };
        self.durable(generation)?;
        Ok(report)
    }

    /// What `user` and others set about them, as export records, without reading the
    /// event log: the account, follows both ways, their blocks and mutes, consent,
    /// revocations, parental controls and preferences. Empty for an unknown (or erased)
    /// user.
    pub fn account_records(&self, user: &UserId) -> Result<Vec<Record>> {
        let Some(account) = self.user(user)? else {
            return Ok(Vec::new());
        };
        let t = self.t();
        let mut out = vec![Record::User { user: account }];
        for creator in self.following_ids(user)? {
            out.push(Record::Follow {
                user: user.clone(),
                creator,
            });
        }
        for follower in self.followers(user)? {
            out.push(Record::Follow {
                user: follower,
                creator: user.clone(),
            });
        }
        for other in self.blocked(user)? {
            out.push(Record::Block {
                user: user.clone(),
                other,
            });
        }
        for other in self.muted(user)? {
            out.push(Record::Mute {
                user: user.clone(),
                other,
            });
        }
        if t.consent.contains_key(user.as_str()).map_err(db_err)? {
            let (scope, approved) = self.consent(user)?;
            out.push(Record::Consent {
                person: user.clone(),
                scope,
                approved,
            });
        }
        for kv in t.revocations.scan_prefix(prefix(user.as_str())) {
            let (video, creator) = match crate::mirror::revocation_of(&kv.map_err(db_err)?.0)?.1 {
                Revocation::Video(v) => (Some(v), None),
                Revocation::Creator(c) => (None, Some(c)),
            };
            out.push(Record::Revocation {
                person: user.clone(),
                video,
                creator,
            });
        }
        if t.parental.contains_key(user.as_str()).map_err(db_err)? {
            out.push(Record::ParentalControls {
                user: user.clone(),
                controls: self.parental_controls(user)?,
            });
        }
        if let Some(p) = self.preferences(user)? {
            out.push(Record::Preferences {
                user: user.clone(),
                text: p.text,
                constraints: p.constraints,
            });
        }
        Ok(out)
    }

    /// Everything stored about `user`, as export records: the account, relations both
    /// ways, consent, parental controls, preferences, wellbeing (as of `now`), the seen
    /// and history rings, interest, affinity (as of `now`), their events in the log, the
    /// pages served to them that the impression log keeps, their videos and the videos
    /// they appear in. Empty for an unknown (or erased) user. Reads the whole event log,
    /// impression log and catalogue.
    pub fn export_user(&self, user: &UserId, now: Timestamp) -> Result<Vec<Record>> {
        let mut out = self.account_records(user)?;
        if out.is_empty() {
            return Ok(out);
        }
        let wellbeing = self.wellbeing(user, now)?;
        if wellbeing != WellbeingState::default() {
            out.push(Record::Wellbeing {
                user: user.clone(),
                state: wellbeing,
            });
        }
        for (video, at) in self.seen(user)? {
            out.push(Record::Seen {
                user: user.clone(),
                video,
                at,
            });
        }
        for e in super::rings::read_history(self, user, usize::MAX)? {
            out.push(Record::Engagement {
                user: user.clone(),
                action: e.kind,
                at: e.at,
            });
        }
        if let Some(v) = self.interest(user)? {
            out.push(Record::Interest {
                user: user.clone(),
                vector: v.as_slice().to_vec(),
            });
        }
        let mut affinity: Vec<_> = self.creator_affinity(user, now)?.into_iter().collect();
        affinity.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (creator, value) in affinity {
            out.push(Record::Affinity {
                user: user.clone(),
                creator,
                value,
            });
        }
        self.for_each_event(1, |seq, event| {
            if event.user == *user {
                out.push(Record::Event { seq, event });
            }
            Ok(())
        })?;
        // Only their entries are decoded (found, as an erasure finds them, by the viewer
        // each names at its head).
        self.flush_impressions()?;
        let mut theirs = Vec::new();
        self.impressions_of(user, 1, &mut theirs)?;
        for seq in theirs {
            let Some(v) = self
                .t()
                .impressions
                .get(seq.to_be_bytes())
                .map_err(db_err)?
            else {
                continue;
            };
            match crate::impressions::decode(seq, &v) {
                Ok(p) => out.push(Record::Impression {
                    user: p.user,
                    at: p.at,
                    page: p.page,
                }),
                Err(e) => {
                    tracing::warn!(seq, error = %e, "unreadable impression entry left out of an export")
                }
            }
        }
        for id in self.videos_of(user)? {
            let Some(v) = self.video(&id)? else { continue };
            let mut v = (*v).clone();
            // Only a video with no caption keeps its embedding: without either, its
            // record could not be imported again.
            if !v.caption.trim().is_empty() {
                v.embedding = None;
            }
            if v.creator == *user {
                out.push(Record::Video { video: v });
            } else {
                out.push(Record::Cameo {
                    video: v.id,
                    creator: v.creator,
                    person: user.clone(),
                });
            }
        }
        Ok(out)
    }
}

/// Removes `key` from `tree` in `w`, counting it in `n` when it is there.
fn gone<'a>(w: &mut Writes<'a>, n: &mut u64, tree: &'a Tree, key: &[u8]) -> Result<()> {
    if tree.contains_key(key).map_err(db_err)? {
        *n += 1;
    }
    w.remove(tree, key);
    Ok(())
}
