//! Spelling repair of what people write ("orhcid care", "gamplay vieos", "basketbal"):
//! a word neither the model's vocabulary nor the topic vocabulary knows (nor the
//! parser's own words, nor an inflection of a known word: "chats", "venting") is replaced
//! by the closest word of the topic vocabulary, at one edit (a letter dropped, added,
//! changed, or two swapped), or at two for a long word with the same first letter.
//!
//! Only toward the topic vocabulary: the model's vocabulary is thirty thousand word
//! pieces, not a dictionary, and repairing toward it turns real words it lacks into
//! others ("despise" into "despite"). Short words are left alone: slang ("ngl", "rn",
//! "tbh") is short.

use std::collections::{HashMap, HashSet};

/// Shortest word repaired.
const MIN_LEN: usize = 5;
/// Longest word repaired (a longer one is no misspelling of a word people use, and the
/// edits of a word grow with its length).
const MAX_LEN: usize = 30;
/// Shortest word repaired at two edits.
const MIN_LEN_TWO_EDITS: usize = 8;
/// Endings of inflected words: a word is known when its stem (or the stem with an "e")
/// is ("chats", "venting", "browsing").
const ENDINGS: &[&str] = &["s", "es", "ies", "ing", "ed", "er", "ers", "ly", "y"];

/// Words known to the model and to the topic vocabulary.
#[derive(Debug, Clone, Default)]
pub struct Speller {
    /// Words of the topic vocabulary (taxonomy, exemplars, slots): the repairs.
    domain: HashSet<String>,
    /// Whole words of the model's vocabulary, with their rank (lower is more frequent).
    model: HashMap<String, u32>,
    /// Other words never repaired (the parser's markers, fillers, foreign words).
    reserved: HashSet<String>,
}

impl Speller {
    /// A speller over the model's whole words (`vocab`: word and token id, the tokenizer's
    /// vocabulary; ids rank words by frequency) and the topic vocabulary `domain`.
    pub fn new(
        vocab: impl IntoIterator<Item = (String, u32)>,
        domain: impl IntoIterator<Item = String>,
    ) -> Self {
        let model: HashMap<String, u32> = vocab
            .into_iter()
            .filter(|(w, _)| w.len() >= 2 && w.chars().all(|c| c.is_ascii_lowercase()))
            .collect();
        let words: HashSet<String> = domain
            .into_iter()
            .flat_map(|p| {
                p.to_lowercase()
                    .split(|c: char| !c.is_alphanumeric() && c != '\'')
                    .filter(|w| !w.is_empty())
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect();
        // The topic vocabulary holds misspellings of its own (exemplars learned from
        // what people write): one that is a word the model knows and the vocabulary
        // holds too with a letter dropped or two swapped is left out, so a right word is
        // never "repaired" into it ("monstera" stays beside "monsters").
        let domain = words
            .iter()
            .filter(|w| {
                model.contains_key(w.as_str())
                    || !edits(w).iter().any(|(e, kind)| {
                        *kind <= Edit::Swap && words.contains(e) && model.contains_key(e)
                    })
            })
            .cloned()
            .collect();
        Self {
            domain,
            model,
            reserved: HashSet::new(),
        }
    }

    /// The same speller, never repairing `words`.
    pub fn with_reserved<'a>(mut self, words: impl IntoIterator<Item = &'a str>) -> Self {
        self.reserved.extend(
            words
                .into_iter()
                .flat_map(|w| w.split(' '))
                .map(str::to_owned),
        );
        self
    }

    fn known(&self, w: &str) -> bool {
        let plain = |w: &str| {
            self.domain.contains(w) || self.model.contains_key(w) || self.reserved.contains(w)
        };
        plain(w)
            || ENDINGS.iter().any(|e| {
                w.strip_suffix(e)
                    .filter(|stem| stem.len() >= 3)
                    .is_some_and(|stem| {
                        plain(stem)
                            || plain(&format!("{stem}e"))
                            || (*e == "ies" && plain(&format!("{stem}y")))
                    })
            })
    }

    /// `text` (normalised: lower case, words split by single spaces) with its unknown
    /// words repaired.
    pub fn correct(&self, text: &str) -> String {
        if self.model.is_empty() && self.domain.is_empty() {
            return text.to_owned();
        }
        let words: Vec<String> = text
            .split(' ')
            .map(|w| self.repair(w).unwrap_or_else(|| w.to_owned()))
            .collect();
        words.join(" ")
    }

    /// The repair of one word, if it needs one and one is found.
    fn repair(&self, w: &str) -> Option<String> {
        if !(MIN_LEN..=MAX_LEN).contains(&w.len())
            || !w.chars().all(|c| c.is_ascii_lowercase())
            || self.known(w)
        {
            return None;
        }
        let one = edits(w);
        if let Some(best) = self.best(&one) {
            return Some(best);
        }
        if w.len() < MIN_LEN_TWO_EDITS {
            return None;
        }
        let first = w.chars().next();
        // Two edits: the topic vocabulary only, scanned (generating every string two
        // edits away would cost far more than the few thousand words it holds).
        self.domain
            .iter()
            .filter(|d| d.len().abs_diff(w.len()) <= 2 && d.chars().next() == first)
            .map(|d| (distance(w, d), d))
            .filter(|(n, _)| *n <= 2)
            .min()
            .map(|(_, d)| d.clone())
    }

    /// The best candidate of the topic vocabulary: by the kind of edit (a dropped letter
    /// is the commonest slip), then the model's rank (frequent words first), then
    /// alphabetically, so the choice does not depend on the order of edits.
    fn best(&self, candidates: &[(String, Edit)]) -> Option<String> {
        let rank = |w: &str| self.model.get(w).copied().unwrap_or(u32::MAX);
        candidates
            .iter()
            .filter(|(c, _)| self.domain.contains(c.as_str()))
            .min_by(|(a, ka), (b, kb)| {
                ka.cmp(kb)
                    .then_with(|| rank(a).cmp(&rank(b)))
                    .then_with(|| a.cmp(b))
            })
            .map(|(c, _)| c.clone())
    }
}

/// The optimal string alignment distance between `a` and `b` (deletions, insertions,
/// substitutions and swaps of neighbours).
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// How a repair changes a written word, in the order repairs are preferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Edit {
    /// A letter inserted: the writer dropped one.
    Insert,
    /// Two neighbours swapped back.
    Swap,
    /// A letter replaced.
    Replace,
    /// A letter deleted: the writer typed one too many.
    Delete,
}

/// Every string one edit from `w` (letters a-z), with the kind of edit.
fn edits(w: &str) -> Vec<(String, Edit)> {
    let chars: Vec<char> = w.chars().collect();
    let n = chars.len();
    let mut out = Vec::with_capacity(54 * n + 25);
    let build = |parts: &[&[char]]| parts.iter().flat_map(|p| p.iter()).collect::<String>();
    for i in 0..=n {
        for c in 'a'..='z' {
            out.push((build(&[&chars[..i], &[c], &chars[i..]]), Edit::Insert));
        }
    }
    for i in 0..n.saturating_sub(1) {
        out.push((
            build(&[&chars[..i], &[chars[i + 1], chars[i]], &chars[i + 2..]]),
            Edit::Swap,
        ));
    }
    for i in 0..n {
        for c in 'a'..='z' {
            if c != chars[i] {
                out.push((build(&[&chars[..i], &[c], &chars[i + 1..]]), Edit::Replace));
            }
        }
    }
    for i in 0..n {
        out.push((build(&[&chars[..i], &chars[i + 1..]]), Edit::Delete));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn speller() -> Speller {
        let vocab = [
            "videos",
            "reviews",
            "travel",
            "navel",
            "gavel",
            "pals",
            "the",
            "more",
            "chat",
            "vent",
            "despite",
            "illusionist",
        ]
        .iter()
        .enumerate()
        .map(|(i, w)| ((*w).to_owned(), i as u32 + 1000));
        Speller::new(
            vocab,
            [
                "orchid care".to_owned(),
                "rescue dogs, basketball drills".to_owned(),
                "motorcycle rides, travel, gadget reviews".to_owned(),
                "illusionist shows, illusionst shows, cats".to_owned(),
            ],
        )
        .with_reserved(["adore", "moins de"])
    }

    #[test]
    fn repairs_one_edit_of_every_kind_and_two_for_long_domain_words() {
        let s = speller();
        // Swap, insertion, deletion, substitution; two edits on a long word.
        assert_eq!(s.correct("more orhcid care"), "more orchid care");
        assert_eq!(s.correct("recue dogs"), "rescue dogs");
        assert_eq!(s.correct("basketbal drills"), "basketball drills");
        assert_eq!(s.correct("gadget rviews"), "gadget reviews");
        assert_eq!(s.correct("moorcyle rides"), "motorcycle rides");
    }

    #[test]
    fn the_topic_vocabulary_wins_a_tie_and_known_short_or_odd_words_stay() {
        let s = speller();
        // "tavel" is one edit from travel, navel and gavel: the topic word wins.
        assert_eq!(s.correct("solo tavel"), "solo travel");
        // Short words (slang), known words, numbers and words with marks stay.
        // Inflections of known words, reserved words, and words only the model's
        // vocabulary is near ("despise", one edit from "despite") stay too.
        for text in [
            "ngl rn tbh",
            "the pals",
            "and1 mixtapes",
            "don't",
            "zzzzzzzzz",
            "chats venting",
            "adore moins",
            "despise",
        ] {
            assert_eq!(s.correct(text), text);
        }
    }

    #[test]
    fn a_misspelling_inside_the_topic_vocabulary_is_never_a_repair() {
        let s = speller();
        assert_eq!(s.correct("illusionst"), "illusionist");
        assert_eq!(s.correct("illusionist"), "illusionist");
    }

    #[test]
    fn a_dropped_letter_is_the_preferred_repair() {
        // "trigers" is a letter from "triggers" (dropped) and from "tigers" (one too
        // many): the dropped letter wins even against a more frequent word.
        let s = Speller::new(
            [("tigers".to_owned(), 1), ("triggers".to_owned(), 9000)],
            ["tigers, tingle triggers".to_owned()],
        );
        assert_eq!(s.correct("trigers"), "triggers");
    }

    #[test]
    fn distance_counts_each_kind_of_edit_once() {
        assert_eq!(distance("orchid", "orhcid"), 1);
        assert_eq!(distance("rescue", "recue"), 1);
        assert_eq!(distance("motorcycle", "moorcyle"), 2);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("", "abc"), 3);
    }

    #[test]
    fn long_and_non_ascii_words_are_left_alone() {
        let s = speller();
        let long = "q".repeat(2000);
        assert_eq!(s.correct(&long), long);
        assert_eq!(s.correct("ñandú recüe"), "ñandú recüe");
    }

    #[test]
    fn an_empty_speller_changes_nothing() {
        let s = Speller::default();
        assert_eq!(s.correct("orhcid care"), "orhcid care");
    }
}
