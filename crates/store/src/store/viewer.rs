//! What a feed request reads about its viewer, and what a served page writes:
//! wellbeing, seen history, interest, creator affinity, the viewer's relations.

use super::*;

/// Impression log entries held in memory past which the persister is woken.
const IMPRESSIONS_PENDING_MAX: usize = 4_096;
/// Chunks of old entries a flush of the impression log removes at most.
const TRIM_CHUNKS_PER_FLUSH: usize = 8;

impl Store {
    // -----------------------------------------------------------------------------------
    // Wellbeing, seen history, interest, viewer.

    pub(crate) fn wellbeing_rec(&self, user: &UserId) -> Result<WellbeingRec> {
        if let Some(r) = self.overlay_read().wellbeing(user) {
            return Ok(r.clone());
        }
        self.stored_wellbeing(user).map(|(r, _)| r)
    }

    /// The wellbeing record in sled (the overlay may hold a newer one) and its as-of
    /// number (0 when it has none).
    pub(crate) fn stored_wellbeing(&self, user: &UserId) -> Result<(WellbeingRec, u64)> {
        match self.t().wellbeing.get(user.as_str()).map_err(db_err)? {
            Some(b) => codec::decode_wellbeing(&b),
            None => Ok((WellbeingRec::default(), 0)),
        }
    }

    /// Wellbeing counters as of `now`: the daily counters restart at local midnight in
    /// the user's time zone, and a session idle for longer than the session gap has ended.
    pub fn wellbeing(&self, user: &UserId, now: Timestamp) -> Result<WellbeingState> {
        let tz = self.time_zone(user)?;
        Ok(self.wellbeing_rec(user)?.view(&tz, now, self.gap_ms()))
    }

    /// Records the page served to `user` at `now`: the items enter the seen history and
    /// the session counters. Not waited on for durability (a lost record only means an
    /// item may be served again); sled writes it within `flush_every_ms`.
    pub fn record_served(&self, user: &UserId, videos: &[VideoId], now: Timestamp) -> Result<()> {
        self.record_page(
            user,
            &ServedPage {
                videos,
                ..ServedPage::default()
            },
            now,
        )
    }

    /// Records what one served page changes for its viewer, in one write (one lock, one
    /// overlay update; not waited on): its items are seen and counted in the session,
    /// the check-in or break card it showed is noted (a break card once per "not great"
    /// answer per session), and its impressions, when given, enter the impression log.
    pub fn record_page(&self, user: &UserId, page: &ServedPage<'_>, now: Timestamp) -> Result<()> {
        {
            let _g = self.write_lock();
            // A page served to a person erased while it was ranked records nothing.
            if self.erasure_epoch() > 0 && self.user(user)?.is_none() {
                return Ok(());
            }
            self.log_impressions(user, page, now)?;
            let mut rec = self.wellbeing_rec(user)?;
            let videos = page.videos;
            if !videos.is_empty() {
                rec.touch(now, self.gap_ms());
                rec.state.session_items = rec
                    .state
                    .session_items
                    .saturating_add(u32::try_from(videos.len()).unwrap_or(u32::MAX));
            }
            let st = &mut rec.state;
            if page.checkin && st.last_checkin.is_none_or(|t| t < now) {
                st.last_checkin = Some(now);
            }
            if page.break_card && st.last_break.is_none_or(|t| t < now) {
                st.last_break = Some(now);
            }
            let mut ring = super::rings::Rings::default();
            {
                let ov = self.overlay_read();
                for v in videos {
                    ring.push_seen(self, &ov, (user, u64::MAX), ms(now), v)?;
                }
            }
            let mut ov = self.overlay_write();
            let added = ring.install(self, &mut ov);
            ov.pending +=
                added + usize::from(ov.active.wellbeing.insert(user.clone(), rec).is_none());
        }
        self.persist_if_due()
    }

    /// Appends the page's impressions to the impression log (under the write lock), and
    /// every so often removes entries past the retention, oldest first.
    fn log_impressions(&self, user: &UserId, page: &ServedPage<'_>, now: Timestamp) -> Result<()> {
        let i = &self.inner;
        let retention_h = i.opts.impression_retention_h;
        let Some(imp) = page
            .impressions
            .filter(|p| retention_h > 0 && !p.items.is_empty())
        else {
            return Ok(());
        };
        let seq = i.next_impression.fetch_add(1, Ordering::AcqRel);
        let record = crate::impressions::encode(user, now, imp);
        let mut pending = i
            .impressions_pending
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        pending.push((seq, ms(now), record));
        if pending.len() >= IMPRESSIONS_PENDING_MAX {
            i.persist_wake.raise();
        }
        Ok(())
    }

    /// Writes the impression log entries held in memory to sled in one batch, then
    /// removes entries older than the retention before the newest one written (on the
    /// serving clock), a few chunks at a time. The persister calls it every round; reads
    /// of the log and erasures call it first.
    pub(super) fn flush_impressions(&self) -> Result<()> {
        let pending = std::mem::take(
            &mut *self
                .inner
                .impressions_pending
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        let Some(newest) = pending.iter().map(|p| p.1).max() else {
            return Ok(());
        };
        let mut batch = sled::Batch::default();
        for (seq, _, record) in pending {
            batch.insert(&seq.to_be_bytes(), record);
        }
        self.t().impressions.apply_batch(batch).map_err(db_err)?;
        let hours =
            i64::try_from(self.inner.opts.impression_retention_h).unwrap_or(i64::MAX / 3_600_000);
        let cutoff = newest.saturating_sub(hours.saturating_mul(3_600_000));
        for _ in 0..TRIM_CHUNKS_PER_FLUSH {
            if self.trim_impressions(cutoff)? < TRIM_CHUNK {
                break;
            }
        }
        Ok(())
    }

    /// Removes impression log entries served before `cutoff_ms`, from the front, at most
    /// [`TRIM_CHUNK`] of them (entries are in serving order, so the front is oldest);
    /// returns how many went.
    fn trim_impressions(&self, cutoff_ms: i64) -> Result<usize> {
        let t = self.t();
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for kv in t.impressions.iter().take(TRIM_CHUNK) {
            let (k, v) = kv.map_err(db_err)?;
            match crate::impressions::at_of(&v) {
                Ok(at) if ms(at) >= cutoff_ms => break,
                _ => {
                    batch.remove(k);
                    n += 1;
                }
            }
        }
        t.impressions.apply_batch(batch).map_err(db_err)?;
        Ok(n)
    }

    /// At open: applies the retention to the whole impression log, measured from its
    /// newest entry (retention is on the serving clock); a retention of 0 empties it.
    pub(super) fn trim_impressions_at_open(&self) -> Result<()> {
        let t = self.t();
        let hours = self.inner.opts.impression_retention_h;
        if hours == 0 {
            return t.impressions.clear().map_err(db_err);
        }
        let Some((_, newest)) = t.impressions.last().map_err(db_err)? else {
            return Ok(());
        };
        let Ok(newest) = crate::impressions::at_of(&newest) else {
            return Ok(());
        };
        let hours = i64::try_from(hours).unwrap_or(i64::MAX / 3_600_000);
        let cutoff = ms(newest).saturating_sub(hours.saturating_mul(3_600_000));
        while self.trim_impressions(cutoff)? == TRIM_CHUNK {}
        Ok(())
    }

    /// Calls `f` with every impression log page served at or after `since`, in log
    /// order; an unreadable entry is skipped (and logged).
    pub fn for_each_impression(
        &self,
        since: Timestamp,
        f: &mut dyn FnMut(steerfeed_core::LoggedPage) -> Result<()>,
    ) -> Result<()> {
        self.flush_impressions()?;
        for kv in self.t().impressions.iter() {
            let (k, v) = kv.map_err(db_err)?;
            let seq = u64_of(&k).unwrap_or(0);
            match crate::impressions::at_of(&v) {
                Ok(at) if at < since => continue,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(seq, error = %e, "impression log: unreadable entry skipped");
                    continue;
                }
            }
            match crate::impressions::decode(seq, &v) {
                Ok(page) => f(page)?,
                Err(e) => {
                    tracing::warn!(seq, error = %e, "impression log: unreadable entry skipped")
                }
            }
        }
        Ok(())
    }

    /// The user's seen history, newest first (at most `seen_per_user`).
    pub fn seen(&self, user: &UserId) -> Result<Vec<(VideoId, Timestamp)>> {
        let ov = self.overlay_read();
        let cap = self.inner.opts.seen_per_user;
        crate::rings::read_ring(
            &self.t().seen,
            &ov.rings(user, |l| &l.seen),
            user,
            cap,
            usize::try_from(cap).unwrap_or(usize::MAX),
            |v| {
                let at = codec::i64_le(v, 0).ok_or_else(|| corrupt("seen"))?;
                Ok((video_of(&v[8..])?, codec::ts_of_ms(at)))
            },
        )
    }

    /// The user's interest vector: the recency-weighted average of the embeddings of the
    /// videos they engaged with, each weighted by [`StoreOptions::weight`].
    pub fn interest(&self, user: &UserId) -> Result<Option<Embedding>> {
        {
            // The overlay, else the resident copy of sled, read under one lock.
            let ov = self.overlay_read();
            let resident = ov.resident.get(user).map(|r| &r.interest);
            match (ov.interest(user), resident) {
                (Some((_, v)), _) | (None, Some(Some((_, v)))) => {
                    return Ok(Embedding::normalized("interest", v).ok());
                }
                (None, Some(None)) => return Ok(None),
                (None, None) => {}
            }
        }
        match self.t().interest.get(user.as_str()).map_err(db_err)? {
            Some(b) => {
                let ((_, v), _) = codec::decode_interest(&b, self.inner.opts.dim)?;
                Ok(Embedding::normalized("interest", &v).ok())
            }
            None => Ok(None),
        }
    }

    /// Decayed interaction strength of `user` with each creator, in `[0, 1)`.
    pub fn creator_affinity(
        &self,
        user: &UserId,
        now: Timestamp,
    ) -> Result<steerfeed_core::IdMap<UserId, f32>> {
        let o = &self.inner.opts;
        let hl = o.affinity_half_life_h * 3_600_000.0;
        let ov = self.overlay_read();
        // The resident copy of sled when it has the user, else sled; the overlay on top.
        let mut all = match ov.resident.get(user) {
            Some(r) => r.affinity.clone(),
            None => {
                let mut all = std::collections::HashMap::new();
                for kv in self.t().affinity.scan_prefix(prefix(user.as_str())) {
                    let (k, v) = kv.map_err(db_err)?;
                    all.insert(
                        user_of(after_sep(&k).ok_or_else(|| corrupt("affinity key"))?)?,
                        Decayed::decode(&v)?,
                    );
                }
                all
            }
        };
        all.extend(ov.affinities(user));
        drop(ov);
        Ok(all
            .into_iter()
            .filter_map(|(c, d)| {
                let a = 1.0 - (-d.at(ms(now), hl) / o.affinity_scale).exp2();
                (a >= o.affinity_floor).then_some((c, a))
            })
            .collect())
    }

    /// Everything the ranking needs to know about the viewer's relations and history.
    pub fn load_viewer(&self, user: &UserId, now: Timestamp) -> Result<Viewer> {
        let own: steerfeed_core::IdSet<VideoId> = self
            .inner
            .mirror
            .time()
            .by_creator
            .get(user)
            .map(|tl| {
                tl.iter()
                    .take(self.inner.opts.own_recent)
                    .map(|(_, id)| id.clone())
                    .collect()
            })
            .unwrap_or_default();
        let relations_unreadable = {
            let rel = self.inner.mirror.rel();
            rel.all_viewers_restricted || rel.restricted_viewers.contains(user)
        };
        Ok(Viewer {
            relations_unreadable,
            following: self.following_ids(user)?.into_iter().collect(),
            blocked: self.blocked(user)?.into_iter().collect(),
            muted: self.muted(user)?.into_iter().collect(),
            seen: self.seen(user)?.into_iter().map(|(v, _)| v).collect(),
            own_videos: own,
            creator_affinity: self.creator_affinity(user, now)?,
        })
    }
}
