//! Steering constraints as directions in the catalog's embedding space: what the
//! ranking stages match videos against; and the one cache of phrase embeddings the parser
//! and the resolver share, so a phrase a person wrote is embedded once.

use std::collections::HashMap;
use std::sync::RwLock;

use steerfeed_core::{ConceptVector, Constraints, Embedding, TopicId};

use crate::encoder::Encoder;
use crate::error::Result;
use crate::taxonomy::Taxonomy;

/// Most phrases remembered before the cache starts over.
const MAX_CACHED: usize = 10_000;

/// Embeddings of phrases people wrote, by exact phrase.
#[derive(Debug, Default)]
pub struct PhraseCache {
    map: RwLock<HashMap<String, Embedding>>,
}

impl PhraseCache {
    /// The embeddings of `phrases`, in order: cached ones from the cache, the rest in one
    /// batch through `encoder` (and remembered).
    pub fn embed(&self, encoder: &Encoder, phrases: &[&str]) -> Result<Vec<Embedding>> {
        let mut out: Vec<Option<Embedding>> = {
            let map = self
                .map
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            phrases.iter().map(|p| map.get(*p).cloned()).collect()
        };
        let missing: Vec<usize> = (0..phrases.len()).filter(|&i| out[i].is_none()).collect();
        if !missing.is_empty() {
            let texts: Vec<&str> = missing.iter().map(|&i| phrases[i]).collect();
            let vectors = encoder.embed_batch(&texts)?;
            let mut map = self
                .map
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if map.len() + vectors.len() > MAX_CACHED {
                map.clear();
            }
            for (&i, v) in missing.iter().zip(vectors) {
                map.insert(phrases[i].to_owned(), v.clone());
                out[i] = Some(v);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// Forgets every phrase.
    pub fn clear(&self) {
        self.map
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }

    /// How many phrases are cached.
    pub fn len(&self) -> usize {
        self.map
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Resolves concepts to vectors: a phrase through the shared [`PhraseCache`] (the parser
/// embedded it when the person wrote it, and it comes back on every feed request of a
/// steered user), a bare topic through its taxonomy centroid.
#[derive(Debug)]
pub struct ConceptResolver<'a> {
    /// The encoder, for phrases not cached.
    pub encoder: &'a Encoder,
    /// The taxonomy, for bare topics.
    pub taxonomy: &'a Taxonomy,
    /// The phrase cache.
    pub cache: &'a PhraseCache,
}

/// The resolved concepts of one set of constraints.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    /// Boosts (positive weights) and reductions (negative).
    pub concepts: Vec<ConceptVector>,
    /// Exclusions.
    pub exclude: Vec<ConceptVector>,
    /// `only`.
    pub only: Vec<ConceptVector>,
}

impl ConceptResolver<'_> {
    fn phrase(&self, phrase: &str) -> Result<Embedding> {
        let mut v = self.cache.embed(self.encoder, &[phrase])?;
        v.pop().ok_or_else(|| {
            steerfeed_core::Error::invalid("phrase", "the encoder returned no vector").into()
        })
    }

    fn one(
        &self,
        topic: Option<&TopicId>,
        phrase: Option<&str>,
        weight: f32,
    ) -> Result<Option<ConceptVector>> {
        let vector = match (phrase, topic) {
            (Some(p), _) if !p.trim().is_empty() => self.phrase(p)?,
            (_, Some(t)) => match self.taxonomy.centroid(t) {
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
    pub fn resolve(&self, c: &Constraints) -> Result<Resolved> {
        let mut r = Resolved::default();
        for (list, sign) in [(&c.boost, 1.0f32), (&c.reduce, -1.0)] {
            for w in list {
                let t = w.topic.as_ref();
                if let Some(v) = self.one(t, w.phrase.as_deref(), sign * w.strength)? {
                    r.concepts.push(v);
                }
            }
        }
        for (list, out) in [(&c.exclude, &mut r.exclude), (&c.only, &mut r.only)] {
            for x in list {
                if let Some(v) = self.one(x.topic.as_ref(), x.phrase.as_deref(), 0.0)? {
                    out.push(v);
                }
            }
        }
        Ok(r)
    }
}
