use std::sync::Arc;

use steerfeed_core::ports::{CameoConsent, ConsentLedger};
use steerfeed_core::{Candidate, ConsentScope, FeedContext, Filter, Filtered, Result};

/// The consent policy (docs/design.md §2): does this person's consent cover appearing in this
/// video? Revocation (of the video or of every video by its creator) always wins; the
/// scope a person set is clamped to mutuals for teens and to a stricter parental scope
/// when there is one; scopes nest (`nobody` ⊂ `approved` ⊂ `mutuals` ⊂ `everyone`).
pub fn consent_allows(f: &CameoConsent) -> bool {
    if f.revoked {
        return false;
    }
    match effective_scope(f) {
        ConsentScope::Nobody => false,
        ConsentScope::Approved => f.creator_approved,
        ConsentScope::Mutuals => f.creator_approved || f.mutual,
        ConsentScope::Everyone => true,
    }
}

/// The scope that decides: the one the person set, clamped to mutuals for a teen and to
/// a stricter parental scope when there is one.
pub fn effective_scope(f: &CameoConsent) -> ConsentScope {
    let scope = f.scope.clamp_for(f.age_band);
    f.parental_scope.map_or(scope, |p| scope.min(p))
}

/// A video is servable only while every person in its cameos still consents; the
/// creator's own likeness needs no consent. Unknown people never consented.
pub struct ConsentFilter {
    ledger: Arc<dyn ConsentLedger>,
}

impl ConsentFilter {
    /// A filter reading consent from `ledger`.
    pub fn new(ledger: Arc<dyn ConsentLedger>) -> Self {
        Self { ledger }
    }

    fn servable(&self, c: &Candidate) -> Result<bool> {
        let v = &c.video;
        for person in v.cameos.iter().filter(|p| **p != v.creator) {
            match self.ledger.cameo_consent(person, &v.creator, &v.id)? {
                Some(facts) if consent_allows(&facts) => {}
                _ => return Ok(false),
            }
        }
        Ok(true)
    }
}

impl Filter for ConsentFilter {
    fn filter(&self, _: &FeedContext, candidates: Vec<Candidate>) -> Result<Filtered> {
        let mut keep = Vec::with_capacity(candidates.len());
        for c in &candidates {
            keep.push(self.servable(c)?);
        }
        let mut flags = keep.into_iter();
        Ok(Filtered::partition(candidates, |_| {
            flags.next().unwrap_or(false)
        }))
    }

    fn name(&self) -> &'static str {
        "consent"
    }
}
