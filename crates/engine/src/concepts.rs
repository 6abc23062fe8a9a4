//! Steering constraints as directions in the catalog's embedding space: what the
//! ranking stages match videos against.

use std::collections::HashMap;
use std::sync::RwLock;

use steerfeed_core::{ConceptVector, Constraints, Embedding, Result, TopicId};
use steerfeed_steer::{Encoder, Taxonomy};

/// Most phrases remembered before the cache starts over.
const MAX_CACHED: usize = 10_000;

/// Resolves concepts to vectors: a phrase through the encoder (cached, since the same
/// phrases come back on every feed request of a steered user), a bare topic through its
/// taxonomy centroid.
#[derive(Debug, Default)]
pub(crate) struct ConceptResolver {
    cache: RwLock<HashMap<String, Embedding>>,
}

/// The resolved concepts of one set of constraints.
#[derive(Debug, Clone, Default)]
pub(crate) struct Resolved {
    pub concepts: Vec<ConceptVector>,
    pub exclude: Vec<ConceptVector>,
    pub only: Vec<ConceptVector>,
}

impl ConceptResolver {
    fn phrase(&self, encoder: &Encoder, phrase: &str) -> Result<Embedding> {
        if let Some(e) = self
            .cache
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(phrase)
        {
            return Ok(e.clone());
        }
        let e = encoder.embed(phrase)?;
        let mut cache = self
            .cache
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(phrase.to_owned(), e.clone());
        Ok(e)
    }

    fn one(
        &self,
        encoder: &Encoder,
        taxonomy: &Taxonomy,
        topic: Option<&TopicId>,
        phrase: Option<&str>,
        weight: f32,
    ) -> Result<Option<ConceptVector>> {
        let vector = match (phrase, topic) {
            (Some(p), _) if !p.trim().is_empty() => self.phrase(encoder, p)?,
            (_, Some(t)) => match taxonomy.centroid(t) {
                Some(c) => c,
                None => return Ok(None),
            },
            _ => return Ok(None),
        };
        let label = match (phrase, topic) {
            (Some(p), _) if !p.trim().is_empty() => p.to_owned(),
            (_, Some(t)) => t.as_str().replace('_', " "),
            _ => String::new(),
        };
        Ok(Some(ConceptVector {
            label,
            topic: topic.cloned(),
            vector,
            weight,
        }))
    }

    /// Resolves every concept of `c`: boosts with positive weights, reductions with
    /// negative ones, exclusions and `only` with weight 0.
    pub fn resolve(
        &self,
        encoder: &Encoder,
        taxonomy: &Taxonomy,
        c: &Constraints,
    ) -> Result<Resolved> {
        let mut r = Resolved::default();
        for (list, sign) in [(&c.boost, 1.0f32), (&c.reduce, -1.0)] {
            for w in list {
                let t = w.topic.as_ref();
                if let Some(v) =
                    self.one(encoder, taxonomy, t, w.phrase.as_deref(), sign * w.strength)?
                {
                    r.concepts.push(v);
                }
            }
        }
        for (list, out) in [(&c.exclude, &mut r.exclude), (&c.only, &mut r.only)] {
            for x in list {
                if let Some(v) = self.one(
                    encoder,
                    taxonomy,
                    x.topic.as_ref(),
                    x.phrase.as_deref(),
                    0.0,
                )? {
                    out.push(v);
                }
            }
        }
        Ok(r)
    }
}
