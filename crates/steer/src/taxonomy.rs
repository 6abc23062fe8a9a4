//! The topic taxonomy: ids with one-line descriptions, embedded once with the encoder.
//!
//! Each topic is matched by its description as a whole and by each of its comma-separated
//! keyword phrases; a text's similarity to a topic is the best of these. Short phrases
//! ("puppies", "news") then land on the keyword they paraphrase instead of being diluted
//! by the rest of the description.

use std::path::Path;

use steerfeed_core::policy::parse_taxonomy;
use steerfeed_core::{Embedding, SafetyLabel, TopicId};

use crate::encoder::Encoder;
use crate::error::{Error, Result};

/// The default taxonomy of docs/design.md §4 (`data/taxonomy.tsv`).
pub use steerfeed_core::policy::DEFAULT_TAXONOMY;

/// The default topic exemplars (`data/exemplars.tsv`).
pub const DEFAULT_EXEMPLARS: &str = include_str!("../../../data/exemplars.tsv");

/// The exemplars learned from the steering corpus (`data/reader/exemplars.tsv`): the
/// target phrases of its training split, by topic, added to the default ones.
pub const CORPUS_EXEMPLARS: &str = include_str!("../../../data/reader/exemplars.tsv");

/// One topic.
#[derive(Debug, Clone)]
pub struct Topic {
    /// Its id.
    pub id: TopicId,
    /// Its one-line description.
    pub description: String,
    /// Embeddings of the description and of each keyword phrase.
    vectors: Vec<Embedding>,
    /// Embeddings of the exemplar phrases (`data/exemplars.tsv`): matched against what
    /// people write, not against captions.
    exemplars: Vec<Embedding>,
    /// The safety label its videos carry (the taxonomy's policy column).
    pub label: Option<SafetyLabel>,
}

/// A topic and how similar a text is to it.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicMatch {
    /// The topic.
    pub topic: TopicId,
    /// Best cosine similarity between the text and the topic's phrases.
    pub similarity: f32,
}

/// A set of topics with their embeddings.
#[derive(Debug, Clone)]
pub struct Taxonomy {
    topics: Vec<Topic>,
    /// Every phrase embedded for the topics (descriptions, keywords, exemplars): the
    /// vocabulary the parser's spelling repair prefers.
    phrases: Vec<String>,
}

fn phrases(id: &TopicId, description: &str) -> Vec<String> {
    let mut p = vec![description.to_owned(), id.as_str().replace('_', " ")];
    for part in description.split([',', ';']) {
        let part = part.trim().trim_start_matches("and ").trim();
        if !part.is_empty() {
            p.push(part.to_owned());
        }
    }
    p.dedup();
    p
}

impl Taxonomy {
    /// Embeds every topic of `tsv` with `encoder` (once per model: the vectors are cached
    /// in the set-up cache's `embeddings/` folder).
    pub fn from_tsv(tsv: &str, encoder: &Encoder) -> Result<Self> {
        let entries = parse_taxonomy(tsv)?;
        let all: Vec<(usize, String)> = entries
            .iter()
            .enumerate()
            .flat_map(|(i, t)| {
                phrases(&t.id, &t.description)
                    .into_iter()
                    .map(move |p| (i, p))
            })
            .collect();
        let texts: Vec<&str> = all.iter().map(|(_, p)| p.as_str()).collect();
        let vectors = crate::cache::embed_in_setup_cache(encoder, &texts)?;
        let mut topics: Vec<Topic> = entries
            .into_iter()
            .map(|t| Topic {
                id: t.id,
                description: t.description,
                vectors: Vec::new(),
                exemplars: Vec::new(),
                label: t.label,
            })
            .collect();
        for ((i, _), v) in all.iter().zip(vectors) {
            topics[*i].vectors.push(v);
        }
        let phrases = all.into_iter().map(|(_, p)| p).collect();
        Ok(Self { topics, phrases })
    }

    /// The default taxonomy, embedded with `encoder`, with the default exemplars and
    /// those learned from the corpus.
    pub fn default_with(encoder: &Encoder) -> Result<Self> {
        Self::from_tsv(DEFAULT_TAXONOMY, encoder)?
            .with_exemplars(&format!("{DEFAULT_EXEMPLARS}\n{CORPUS_EXEMPLARS}"), encoder)
    }

    /// Adds exemplar phrases (`topic<TAB>phrase, phrase, ...` lines, `#` comments): what
    /// people call a topic, matched against their requests. A topic this taxonomy does
    /// not have is an error.
    pub fn with_exemplars(mut self, tsv: &str, encoder: &Encoder) -> Result<Self> {
        let all = phrase_table(tsv, "exemplars", "a topic", |id| {
            self.topics
                .iter()
                .position(|t| t.id.as_str() == id)
                .ok_or_else(|| format!("unknown topic {id:?}"))
        })?;
        let texts: Vec<&str> = all.iter().map(|(_, p)| p.as_str()).collect();
        let vectors = crate::cache::embed_in_setup_cache(encoder, &texts)?;
        for ((i, _), v) in all.iter().zip(vectors) {
            self.topics[*i].exemplars.push(v);
        }
        self.phrases.extend(all.into_iter().map(|(_, p)| p));
        Ok(self)
    }

    /// Reads an exemplar file and adds it.
    pub fn with_exemplars_file(self, path: &Path, encoder: &Encoder) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::from(steerfeed_core::Error::invalid(
                "exemplars",
                format!("{}: {e}", path.display()),
            ))
        })?;
        self.with_exemplars(&text, encoder)
    }

    /// Reads a taxonomy file (the TSV format) and embeds it.
    pub fn from_file(path: &Path, encoder: &Encoder) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::from(steerfeed_core::Error::invalid(
                "taxonomy",
                format!("{}: {e}", path.display()),
            ))
        })?;
        Self::from_tsv(&text, encoder)
    }

    /// The topics.
    pub fn topics(&self) -> &[Topic] {
        &self.topics
    }

    /// True when `id` is a topic of this taxonomy.
    pub fn contains(&self, id: &TopicId) -> bool {
        self.topics.iter().any(|t| t.id == *id)
    }

    /// The safety label of `topic`'s videos, by the taxonomy's policy column.
    pub fn label(&self, topic: &TopicId) -> Option<SafetyLabel> {
        self.topics
            .iter()
            .find(|t| t.id == *topic)
            .and_then(|t| t.label)
    }

    /// Every topic with the text's similarity to it, most similar first.
    pub fn rank(&self, text: &Embedding) -> Vec<TopicMatch> {
        let mut out: Vec<TopicMatch> = self
            .topics
            .iter()
            .map(|t| TopicMatch {
                topic: t.id.clone(),
                similarity: best_similarity(&t.vectors, text),
            })
            .collect();
        out.sort_by(|a, b| {
            b.similarity
                .total_cmp(&a.similarity)
                .then_with(|| a.topic.cmp(&b.topic))
        });
        out
    }

    /// The best topic for a phrase someone wrote, by its description, keywords and
    /// exemplars, if its similarity reaches `threshold`. A phrase that
    /// names a topic outright (the id's words, e.g. "sports" or "ai art") gets a small
    /// lexical bonus, so a general topic named by the user wins over a close specific one.
    pub fn best_for(
        &self,
        phrase: &str,
        embedding: &Embedding,
        threshold: f32,
    ) -> Option<TopicMatch> {
        const NAMED_BONUS: f32 = 0.08;
        let words: Vec<&str> = phrase.split_whitespace().collect();
        let names = |id: &TopicId| {
            let id_words: Vec<&str> = id.as_str().split('_').collect();
            words.windows(id_words.len()).any(|w| {
                w.iter()
                    .zip(&id_words)
                    .all(|(a, b)| a == b || a.strip_suffix('s') == Some(b))
            })
        };
        self.topics
            .iter()
            .map(|t| TopicMatch {
                topic: t.id.clone(),
                similarity: best_similarity(&t.vectors, embedding)
                    .max(best_similarity(&t.exemplars, embedding)),
            })
            .map(|mut m| {
                if names(&m.topic) {
                    m.similarity += NAMED_BONUS;
                }
                m
            })
            .max_by(|a, b| a.similarity.total_cmp(&b.similarity))
            .filter(|m| m.similarity >= threshold)
    }

    /// Every phrase the topics are matched by: descriptions, keywords and exemplars.
    pub fn phrases(&self) -> &[String] {
        &self.phrases
    }

    /// The best topic, if its similarity reaches `threshold`.
    pub fn best(&self, text: &Embedding, threshold: f32) -> Option<TopicMatch> {
        self.rank(text)
            .into_iter()
            .next()
            .filter(|m| m.similarity >= threshold)
    }

    /// Topics of a caption: up to `max` topics whose similarity reaches `threshold`.
    pub fn infer(&self, caption: &Embedding, max: usize, threshold: f32) -> Vec<TopicId> {
        self.rank(caption)
            .into_iter()
            .take(max)
            .filter(|m| m.similarity >= threshold)
            .map(|m| m.topic)
            .collect()
    }

    /// The mean direction of a topic (for steering by topic in the embedding space).
    pub fn centroid(&self, id: &TopicId) -> Option<Embedding> {
        let t = self.topics.iter().find(|t| t.id == *id)?;
        let dim = t.vectors.first()?.dim();
        let mut sum = vec![0f32; dim];
        for v in &t.vectors {
            for (s, x) in sum.iter_mut().zip(v.as_slice()) {
                *s += x;
            }
        }
        Embedding::normalized("topic", &sum).ok()
    }
}

/// The best cosine similarity of `text` to any of `vectors` (minus infinity for none).
/// Reads `key<TAB>phrase, phrase, ...` lines (`#` comments, blank lines skipped), each
/// key through `key` (which says why it refuses one): the key's value and each phrase.
/// Errors name `what` and the line.
pub(crate) fn phrase_table<K>(
    tsv: &str,
    what: &'static str,
    key_name: &str,
    key: impl Fn(&str) -> std::result::Result<K, String>,
) -> Result<Vec<(K, String)>>
where
    K: Copy,
{
    let mut all = Vec::new();
    for (n, line) in tsv.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: String| {
            Error::from(steerfeed_core::Error::invalid(
                what,
                format!("line {}: {why}", n + 1),
            ))
        };
        let (k, phrases) = line
            .split_once('\t')
            .ok_or_else(|| bad(format!("expected {key_name}, a tab and phrases")))?;
        let k = key(k.trim()).map_err(bad)?;
        all.extend(
            phrases
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| (k, p.to_owned())),
        );
    }
    Ok(all)
}

fn best_similarity(vectors: &[Embedding], text: &Embedding) -> f32 {
    vectors
        .iter()
        .map(|v| v.dot(text))
        .fold(f32::NEG_INFINITY, f32::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phrase_table_reads_its_lines_and_names_the_bad_one() {
        let key = |k: &str| match k {
            "a" => Ok(1u8),
            "b" => Ok(2u8),
            other => Err(format!("unknown key {other:?}")),
        };
        let all = phrase_table("# c\n\na\tx, y ,\nb\tz\n", "t", "a key", key).unwrap();
        assert_eq!(
            all,
            vec![
                (1, "x".to_owned()),
                (1, "y".to_owned()),
                (2, "z".to_owned())
            ]
        );
        let err = phrase_table("a\tx\nq\ty", "t", "a key", key).unwrap_err();
        assert!(err.to_string().contains("line 2") && err.to_string().contains("\"q\""));
        let err = phrase_table("a x", "t", "a key", key).unwrap_err();
        assert!(err.to_string().contains("expected a key, a tab"));
    }

    #[test]
    fn the_default_taxonomy_has_the_design_topics() {
        let t = parse_taxonomy(DEFAULT_TAXONOMY).unwrap();
        assert_eq!(t.len(), 39);
        for id in [
            "comedy",
            "extreme_sports",
            "ai_art",
            "mature",
            "weight_loss",
        ] {
            assert!(t.iter().any(|x| x.id.as_str() == id), "{id}");
        }
    }

    #[test]
    fn keyword_phrases_are_split_from_descriptions() {
        let id = TopicId::new("pets").unwrap();
        let p = phrases(&id, "pets, cute dogs, and cats");
        assert!(p.contains(&"cute dogs".to_owned()));
        assert!(p.contains(&"cats".to_owned()));
        assert!(p.contains(&"pets".to_owned()));
    }
}
