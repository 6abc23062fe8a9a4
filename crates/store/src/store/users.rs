//! Users, their time zones (cached for the write path), parental controls and
//! preferences.

use super::*;

impl Store {
    // -----------------------------------------------------------------------------------
    // Existence checks.

    pub(super) fn require_user(&self, id: &UserId) -> Result<()> {
        if self.t().users.contains_key(id.as_str()).map_err(db_err)? {
            Ok(())
        } else {
            Err(Error::not_found(Entity::User, id))
        }
    }

    /// The erasure epoch, to read before a write checks its users.
    pub(super) fn erasure_epoch(&self) -> u64 {
        self.inner.erasure_epoch.load(Ordering::Acquire)
    }

    /// Under the write lock: checks `ids` again if a person was erased since `epoch`
    /// (read before they were first checked), so that no write made for a person erased
    /// in between lands after their erasure.
    pub(super) fn still_known<'a>(
        &self,
        epoch: u64,
        ids: impl IntoIterator<Item = &'a UserId>,
    ) -> Result<()> {
        if self.erasure_epoch() != epoch {
            for id in ids {
                self.require_user(id)?;
            }
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------
    // Users and the social graph.

    /// Inserts or replaces a user ([`User::validate`]: not the reserved id, a known time
    /// zone).
    pub fn upsert_user(&self, user: &User) -> Result<()> {
        user.validate()?;
        let b = json(user)?;
        let _epoch = EpochBump(self);
        self.write_durably(
            |s, w| {
                w.insert(&s.t().users, user.id.as_str(), b);
                // Under the write lock: no batch can cache the old zone again.
                s.inner
                    .time_zones
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&user.id);
                Ok(())
            },
            |i| i.users.invalidate(&user.id),
        )
    }

    /// The user, if known.
    pub fn user(&self, id: &UserId) -> Result<Option<User>> {
        let version = match self.inner.users.get(id) {
            Ok(u) => return Ok(u),
            Err(version) => version,
        };
        let u = match self.t().users.get(id.as_str()).map_err(db_err)? {
            Some(b) => Some(unjson::<User>(&b, "user")?),
            None => None,
        };
        self.inner.users.insert(id, u.clone(), version);
        Ok(u)
    }

    /// The user's time zone, cached for later batches. Call under the write lock (the
    /// cache is filled only there, so an upsert can never be overtaken by a stale zone).
    pub(crate) fn time_zone_for_write(&self, id: &UserId) -> Result<TimeZone> {
        if let Some(tz) = self.cached_time_zone(id) {
            return Ok(tz);
        }
        let tz = self.time_zone(id)?;
        let mut c = self
            .inner
            .time_zones
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if c.len() >= MAX_CACHED_ZONES {
            c.clear();
        }
        c.insert(id.clone(), tz.clone());
        Ok(tz)
    }

    pub(super) fn cached_time_zone(&self, id: &UserId) -> Option<TimeZone> {
        self.inner
            .time_zones
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    pub(crate) fn time_zone(&self, id: &UserId) -> Result<TimeZone> {
        if let Some(tz) = self.cached_time_zone(id) {
            return Ok(tz);
        }
        Ok(self
            .user(id)?
            .and_then(|u| TimeZone::get(&u.time_zone).ok())
            .unwrap_or(TimeZone::UTC))
    }

    /// Sets a user's parental controls. Durable when it returns.
    pub fn set_parental_controls(&self, user: &UserId, controls: &ParentalControls) -> Result<()> {
        controls.validate()?;
        let b = json(controls)?;
        let _epoch = EpochBump(self);
        self.write_durably_for(
            &[user],
            |s, w| {
                w.insert(&s.t().parental, user.as_str(), b);
                Ok(())
            },
            |i| i.parental.invalidate(user),
        )
    }

    /// A user's parental controls (defaults when none are set).
    pub fn parental_controls(&self, user: &UserId) -> Result<ParentalControls> {
        let version = match self.inner.parental.get(user) {
            Ok(p) => return Ok(p),
            Err(version) => version,
        };
        let p = match self.t().parental.get(user.as_str()).map_err(db_err)? {
            Some(b) => unjson::<ParentalControls>(&b, "parental controls")?,
            None => ParentalControls::default(),
        };
        self.inner.parental.insert(user, p.clone(), version);
        Ok(p)
    }

    /// A person's consent facts, from the per-person cache when it is current.
    pub(crate) fn person_facts(&self, person: &UserId) -> Result<Option<PersonFacts>> {
        let epoch = self.inner.consent_epoch.load(Ordering::Acquire);
        if let Some((e, f)) = self
            .inner
            .person_facts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(person)
            && *e == epoch
        {
            return Ok(*f);
        }
        let facts = match self.user(person)? {
            None => None,
            Some(u) => Some(PersonFacts {
                age_band: u.age_band,
                scope: self.consent_scope(person)?,
                parental_scope: self.parental_controls(person)?.cameo_scope,
            }),
        };
        let mut cache = self
            .inner
            .person_facts
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_PERSON_FACTS {
            cache.clear();
        }
        // Tagged with the epoch read *before* the reads: if a write landed meanwhile,
        // the entry is already stale and is never used.
        cache.insert(person.clone(), (epoch, facts));
        Ok(facts)
    }

    /// Stores a user's preference text and its compiled constraints (replacing any).
    pub fn set_preferences(
        &self,
        user: &UserId,
        text: &str,
        constraints: &Constraints,
    ) -> Result<()> {
        let limit = self.inner.opts.max_preference_bytes;
        if text.len() > limit {
            return Err(Error::TooLarge {
                field: "text",
                limit,
                got: text.len(),
            });
        }
        steerfeed_core::wire::check_text("text", text)?;
        constraints.validate()?;
        let b = json(&Preferences {
            text: text.to_owned(),
            constraints: constraints.clone().without_descriptions(),
            summary: Vec::new(),
        })?;
        self.write_durably_for(
            &[user],
            |s, w| {
                w.insert(&s.t().prefs, user.as_str(), b);
                Ok(())
            },
            |i| i.prefs.invalidate(user),
        )
    }

    /// Removes a user's preferences.
    pub fn clear_preferences(&self, user: &UserId) -> Result<()> {
        self.write_durably(
            |s, w| {
                w.remove(&s.t().prefs, user.as_str());
                Ok(())
            },
            |i| i.prefs.invalidate(user),
        )
    }

    /// A user's preferences, expired or not.
    pub fn preferences(&self, user: &UserId) -> Result<Option<Preferences>> {
        let version = match self.inner.prefs.get(user) {
            Ok(p) => return Ok(p.map(|p| Preferences::clone(&p))),
            Err(version) => version,
        };
        let p = match self.t().prefs.get(user.as_str()).map_err(db_err)? {
            Some(b) => Some(Arc::new(unjson::<Preferences>(&b, "preferences")?)),
            None => None,
        };
        self.inner.prefs.insert(user, p.clone(), version);
        Ok(p.map(|p| Preferences::clone(&p)))
    }

    /// The constraints in force at `now`: empty when none are set or they expired,
    /// without the items whose own expiry passed.
    pub fn active_constraints(&self, user: &UserId, now: Timestamp) -> Result<Constraints> {
        Ok(self
            .preferences(user)?
            .map(|p| p.constraints.active(now))
            .unwrap_or_default())
    }
}
