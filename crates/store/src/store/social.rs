//! Relations between people (follows, blocks, mutes) and cameo consent: scopes,
//! approvals, revocations and the per-person facts the consent filter reads.

use steerfeed_core::storage::Relation;

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rel {
    Follow,
    Block,
    Mute,
}

impl Rel {
    fn field(self) -> &'static str {
        match self {
            Rel::Follow => "follow",
            Rel::Block => "block",
            Rel::Mute => "mute",
        }
    }
}

pub(crate) fn revocation_key(person: &UserId, r: &Revocation) -> Vec<u8> {
    let mut k = prefix(person.as_str());
    match r {
        Revocation::Video(v) => {
            k.push(b'v');
            k.extend_from_slice(v.as_str().as_bytes());
        }
        Revocation::Creator(c) => {
            k.push(b'c');
            k.extend_from_slice(c.as_str().as_bytes());
        }
    }
    k
}

impl Store {
    fn relation(&self, a: &UserId, b: &UserId, rel: Rel, on: bool) -> Result<()> {
        self.relations(&[(a, b, rel, on)])
    }

    /// Sets relations in one durable write, in order, all or nothing: each names two
    /// distinct stored users.
    fn relations(&self, items: &[(&UserId, &UserId, Rel, bool)]) -> Result<()> {
        if let Some((_, _, rel, _)) = items.iter().find(|(a, b, _, _)| a == b) {
            return Err(Error::invalid(
                rel.field(),
                "a user cannot do this to themselves",
            ));
        }
        let mut users: Vec<&UserId> = items.iter().flat_map(|(a, b, _, _)| [*a, *b]).collect();
        users.sort_unstable();
        users.dedup();
        self.write_durably_for(
            &users,
            |s, w| {
                let t = s.t();
                for &(a, b, rel, on) in items {
                    let (ab, ba) = (pair(a.as_str(), b.as_str()), pair(b.as_str(), a.as_str()));
                    let mut keys = vec![(
                        match rel {
                            Rel::Follow => &t.follows,
                            Rel::Block => &t.blocks,
                            Rel::Mute => &t.mutes,
                        },
                        ab,
                    )];
                    if rel == Rel::Follow {
                        keys.push((&t.followers, ba));
                    }
                    for (tree, key) in keys {
                        if on {
                            w.insert(tree, key, []);
                        } else {
                            w.remove(tree, key);
                        }
                    }
                }
                Ok(())
            },
            |i| {
                let mut mirror = i.mirror.rel_mut();
                for &(a, b, rel, on) in items {
                    let edge = match rel {
                        Rel::Follow => Edge::Follow,
                        Rel::Block => Edge::Block,
                        Rel::Mute => Edge::Mute,
                    };
                    mirror.set(edge, a, b, on, &i.ids);
                }
            },
        )
    }

    /// Sets several follows, blocks and mutes (`(a, b, relation, on)`) in one durable
    /// write, in order, all or nothing: each names two distinct stored users.
    pub fn set_relations(&self, items: &[(UserId, UserId, Relation, bool)]) -> Result<()> {
        let items: Vec<(&UserId, &UserId, Rel, bool)> = items
            .iter()
            .map(|(a, b, r, on)| {
                let rel = match r {
                    Relation::Follow => Rel::Follow,
                    Relation::Block => Rel::Block,
                    Relation::Mute => Rel::Mute,
                };
                (a, b, rel, *on)
            })
            .collect();
        self.relations(&items)
    }

    /// `a` follows `b` (both must exist). Durable when it returns.
    pub fn follow(&self, a: &UserId, b: &UserId) -> Result<()> {
        self.relation(a, b, Rel::Follow, true)
    }

    /// `a` stops following `b`.
    pub fn unfollow(&self, a: &UserId, b: &UserId) -> Result<()> {
        self.relation(a, b, Rel::Follow, false)
    }

    /// `a` blocks `b` (both must exist). Durable when it returns.
    pub fn block(&self, a: &UserId, b: &UserId) -> Result<()> {
        self.relation(a, b, Rel::Block, true)
    }

    /// `a` unblocks `b`.
    pub fn unblock(&self, a: &UserId, b: &UserId) -> Result<()> {
        self.relation(a, b, Rel::Block, false)
    }

    /// `a` mutes `b` (both must exist).
    pub fn mute(&self, a: &UserId, b: &UserId) -> Result<()> {
        self.relation(a, b, Rel::Mute, true)
    }

    /// `a` unmutes `b`.
    pub fn unmute(&self, a: &UserId, b: &UserId) -> Result<()> {
        self.relation(a, b, Rel::Mute, false)
    }

    pub(super) fn second_ids(&self, tree: &Tree, a: &UserId) -> Result<Vec<UserId>> {
        tree.scan_prefix(prefix(a.as_str()))
            .map(|kv| {
                let (k, _) = kv.map_err(db_err)?;
                user_of(after_sep(&k).ok_or_else(|| corrupt("relation key"))?)
            })
            .collect()
    }

    /// Who follows `user`.
    pub fn followers(&self, user: &UserId) -> Result<Vec<UserId>> {
        self.second_ids(&self.t().followers, user)
    }

    /// Whom `user` blocked.
    pub fn blocked(&self, user: &UserId) -> Result<Vec<UserId>> {
        Ok(self.inner.mirror.rel().from(Edge::Block, user))
    }

    /// Whom `user` muted (including creators hidden with "hide creator").
    pub fn muted(&self, user: &UserId) -> Result<Vec<UserId>> {
        Ok(self.inner.mirror.rel().from(Edge::Mute, user))
    }

    pub(crate) fn following_ids(&self, user: &UserId) -> Result<Vec<UserId>> {
        Ok(self.inner.mirror.rel().from(Edge::Follow, user))
    }

    pub(crate) fn follows_edge(&self, a: &UserId, b: &UserId) -> Result<bool> {
        Ok(self.inner.mirror.rel().has(Edge::Follow, a, b))
    }

    // -----------------------------------------------------------------------------------
    // Consent, parental controls, preferences.

    /// Sets who may use `person`'s likeness and, for [`ConsentScope::Approved`], the
    /// approved users (replacing the previous list). Stored as given: the teen clamp is
    /// policy, applied by the ranking. Durable when it returns.
    pub fn set_consent(
        &self,
        person: &UserId,
        scope: ConsentScope,
        approved: &[UserId],
    ) -> Result<()> {
        if approved.len() > self.inner.opts.max_approved {
            return Err(Error::TooLarge {
                field: "approved",
                limit: self.inner.opts.max_approved,
                got: approved.len(),
            });
        }
        let rec = json(&ConsentRec { scope })?;
        // Everyone approved must be stored, and still be when the write goes in: an
        // approval of an id not (or no longer) a user's would pass the consent to whoever
        // is created under it later.
        let people: Vec<&UserId> = std::iter::once(person).chain(approved).collect();
        let _epoch = EpochBump(self);
        self.write_durably_for(
            &people,
            |s, w| {
                let t = s.t();
                w.insert(&t.consent, person.as_str(), rec);
                for kv in t.approved.scan_prefix(prefix(person.as_str())) {
                    let (k, _) = kv.map_err(db_err)?;
                    w.remove(&t.approved, k);
                }
                for a in approved {
                    w.insert(&t.approved, pair(person.as_str(), a.as_str()), []);
                }
                Ok(())
            },
            |i| i.mirror.rel_mut().set_approved(person, approved, &i.ids),
        )
    }

    /// The scope `person` set ([`ConsentScope::Nobody`] when none, and when the record
    /// cannot be read: an unreadable consent fails closed, see `damage.rs`).
    pub(crate) fn consent_scope(&self, person: &UserId) -> Result<ConsentScope> {
        Ok(
            match self.t().consent.get(person.as_str()).map_err(db_err)? {
                Some(b) => match unjson::<ConsentRec>(&b, "consent") {
                    Ok(rec) => rec.scope,
                    Err(_) => {
                        self.inner.damage.note(
                            "consent",
                            person.as_str().as_bytes(),
                            DamageRule::LikenessWithheld,
                        );
                        ConsentScope::Nobody
                    }
                },
                None => ConsentScope::Nobody,
            },
        )
    }

    /// The scope `person` set and their approved list.
    pub fn consent(&self, person: &UserId) -> Result<(ConsentScope, Vec<UserId>)> {
        Ok((
            self.consent_scope(person)?,
            self.second_ids(&self.t().approved, person)?,
        ))
    }

    /// `person` withdraws consent for one video or for every video of one creator. The
    /// next [`ConsentLedger`](steerfeed_core::ports::ConsentLedger) read sees it; durable
    /// when it returns.
    pub fn revoke_consent(&self, person: &UserId, revocation: &Revocation) -> Result<()> {
        let key = revocation_key(person, revocation);
        self.write_durably_for(
            &[person],
            |s, w| {
                w.insert(&s.t().revocations, key, []);
                Ok(())
            },
            |i| {
                i.mirror
                    .rel_mut()
                    .revoke(person, revocation.clone(), &i.ids)
            },
        )
    }

    /// True when `person` revoked `revocation`.
    pub fn is_revoked(&self, person: &UserId, revocation: &Revocation) -> Result<bool> {
        let rel = self.inner.mirror.rel();
        Ok(match revocation {
            Revocation::Video(v) => rel.revoked(person, Some(v), None),
            Revocation::Creator(c) => rel.revoked(person, None, Some(c)),
        })
    }
}
