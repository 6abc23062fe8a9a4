//! Slot exemplars: what people call the feed's slots (friends' cameos, the people they
//! follow, strangers, remixes, originals), matched against each request's target like
//! the topic exemplars. "more vids with my pals in them" is a request about friends'
//! cameos, not about a topic: its target is closer to a friends exemplar than to any
//! topic, and the list the reader gives the item sets the slot's direction.

use std::path::Path;

use steerfeed_core::Embedding;

use crate::encoder::Encoder;
use crate::error::{Error, Result};

/// The default slot exemplars (`data/slots.tsv`).
pub const DEFAULT_SLOTS: &str = include_str!("../../../data/slots.tsv");

/// A kind of slot request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotKind {
    /// Friends' cameos.
    Friends,
    /// The people one follows.
    Following,
    /// People one does not follow: more of them is less of the followed.
    Strangers,
    /// Remixes.
    Remix,
    /// Original videos: more of them is fewer remixes.
    Originals,
}

impl SlotKind {
    /// Whether asking for more of this kind turns its slot down: more strangers is
    /// less of the people one follows, more originals fewer remixes.
    pub fn inverted(self) -> bool {
        matches!(self, Self::Strangers | Self::Originals)
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "friends" => Self::Friends,
            "following" => Self::Following,
            "strangers" => Self::Strangers,
            "remix" => Self::Remix,
            "originals" => Self::Originals,
            _ => return None,
        })
    }
}

/// A target's closest slot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlotMatch {
    /// The kind.
    pub kind: SlotKind,
    /// Cosine similarity to its closest exemplar.
    pub similarity: f32,
}

/// The slot exemplars, embedded.
#[derive(Debug, Clone, Default)]
pub struct SlotExemplars {
    kinds: Vec<(SlotKind, Vec<Embedding>)>,
    phrases: Vec<String>,
}

impl SlotExemplars {
    /// Reads `kind<TAB>phrase, phrase, ...` lines (`#` comments) and embeds the phrases.
    pub fn from_tsv(tsv: &str, encoder: &Encoder) -> Result<Self> {
        let all = crate::taxonomy::phrase_table(tsv, "slots", "a kind", |k| {
            SlotKind::parse(k).ok_or_else(|| format!("unknown slot kind {k:?}"))
        })?;
        let texts: Vec<&str> = all.iter().map(|(_, p)| p.as_str()).collect();
        let vectors = crate::cache::embed_in_setup_cache(encoder, &texts)?;
        let mut out = Self::default();
        for ((kind, phrase), v) in all.into_iter().zip(vectors) {
            match out.kinds.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, vs)) => vs.push(v),
                None => out.kinds.push((kind, vec![v])),
            }
            out.phrases.push(phrase);
        }
        Ok(out)
    }

    /// Reads a slot exemplar file.
    pub fn from_file(path: &Path, encoder: &Encoder) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::from(steerfeed_core::Error::invalid(
                "slots",
                format!("{}: {e}", path.display()),
            ))
        })?;
        Self::from_tsv(&text, encoder)
    }

    /// The exemplar phrases.
    pub fn phrases(&self) -> &[String] {
        &self.phrases
    }

    /// The closest slot kind of a target's embedding.
    pub fn best(&self, target: &Embedding) -> Option<SlotMatch> {
        self.kinds
            .iter()
            .map(|(kind, vs)| SlotMatch {
                kind: *kind,
                similarity: vs
                    .iter()
                    .map(|v| v.dot(target))
                    .fold(f32::NEG_INFINITY, f32::max),
            })
            .max_by(|a, b| a.similarity.total_cmp(&b.similarity))
    }
}
