//! The teen safety net: what a teen asks to see more of, checked phrase by phrase against
//! restricted concepts, independently of the parser.
//!
//! The parser maps what people write to topics, and a mapping can be wrong in the
//! dangerous direction ("spicy videos" read as a beauty boost). The net does not trust it:
//! it splits the text itself into requests, decides for each whether it asks for more
//! (a boost or an only) or for less, and matches every positive request against a table
//! of restricted concepts (`data/restricted.tsv`): letter by letter against the table's
//! words, tolerant of one typo, digits for letters and stretched letters ("s3xy",
//! "gamblin", "seeexy"), and by embedding similarity against its exemplar phrases
//! (euphemisms and slang the words miss). A match is rejected with the category's reason,
//! whatever the parser made of it. Exclusions stay exclusions: "no gore" asks for less
//! and is welcome.
//!
//! Which way a request points is read from its own first words ("no", "never show",
//! "don't want", "less" point away; "more", "show me", "only", "give me" toward), so a
//! negation elsewhere in the text ("I'm not a kid, show me ...") cannot hide a request.
//! When in doubt a request counts as positive: a false rejection costs a teen one boost,
//! a miss shows them what their account must not serve.

use std::path::Path;

use steerfeed_core::{Embedding, SafetyLabel, TopicId};

use crate::encoder::Encoder;
use crate::error::{Error, Result};

/// The default table of restricted concepts (`data/restricted.tsv`).
pub const DEFAULT_RESTRICTED: &str = include_str!("../../../data/restricted.tsv");

/// Default smallest similarity between a request and a restricted exemplar for a match.
pub const DEFAULT_THRESHOLD: f32 = 0.6;

/// What a bare phrase's similarity must clear above the threshold.
const PHRASE_MARGIN: f32 = 0.1;

/// Words of a request that name no content, for the `alone` words of the table.
const REQUEST_FILLER: &[&str] = &[
    "show", "me", "more", "videos", "video", "vids", "vid", "clips", "clip", "content", "stuff",
    "want", "i", "the", "some", "please", "pls", "plz", "of", "about", "give", "gimme", "see",
    "only", "just", "a", "to", "wanna", "need", "lots", "any", "posts", "reels", "things", "on",
    "my", "feed", "for", "like", "love", "can", "you", "get", "new", "newest", "latest", "short",
    "shorter", "under", "sec", "secs", "seconds", "minute", "minutes", "less", "fewer", "no",
    "and", "or", "with", "is", "are", "it", "how", "way", "ways", "tips", "ideas",
];

/// One category of restricted content.
#[derive(Debug, Clone, PartialEq)]
pub struct RestrictedCategory {
    /// Its id in the table (`gambling`).
    pub id: String,
    /// The safety label videos of this kind carry.
    pub label: SafetyLabel,
    /// The taxonomy topic it corresponds to, if any.
    pub topic: Option<TopicId>,
    /// What the person is told.
    pub reason: String,
}

/// A positive request that matched a restricted category.
#[derive(Debug, Clone, PartialEq)]
pub struct Flag {
    /// Index of the category in [`SafetyNet::categories`].
    pub category: usize,
    /// The request, as normalised words.
    pub phrase: String,
    /// What matched: a table word, or the exemplar phrase and its similarity.
    pub matched: String,
}

/// A multi-word term of the table, as normalised tokens.
type Term = Vec<String>;

/// Restricted concepts with their words and embedded exemplars.
#[derive(Debug, Clone)]
pub struct SafetyNet {
    categories: Vec<RestrictedCategory>,
    words: Vec<(usize, Term)>,
    allow: Vec<Term>,
    alone: Vec<(usize, String)>,
    exemplars: Vec<(usize, String, Embedding)>,
    threshold: f32,
}

fn label_named(name: &str) -> Option<SafetyLabel> {
    serde_json::from_value(serde_json::Value::String(name.to_owned())).ok()
}

fn invalid(line: usize, what: impl std::fmt::Display) -> Error {
    Error::from(steerfeed_core::Error::invalid(
        "restricted",
        format!("line {}: {what}", line + 1),
    ))
}

/// The parsed table, before embedding.
#[derive(Debug, Default)]
struct Table {
    categories: Vec<RestrictedCategory>,
    words: Vec<(usize, Term)>,
    allow: Vec<Term>,
    alone: Vec<(usize, String)>,
    phrases: Vec<(usize, String)>,
}

fn parse_table(text: &str) -> Result<Table> {
    let mut t = Table::default();
    let category = |t: &mut Table, id: &str| -> usize {
        match t.categories.iter().position(|c| c.id == id) {
            Some(i) => i,
            None => {
                t.categories.push(RestrictedCategory {
                    id: id.to_owned(),
                    label: SafetyLabel::Sensitive,
                    topic: None,
                    reason: String::new(),
                });
                t.categories.len() - 1
            }
        }
    };
    let mut labelled = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let parts: Vec<&str> = line.split('\t').collect();
        let [id, kind, value] = parts[..] else {
            return Err(invalid(
                n,
                "expected category, kind and text separated by tabs",
            ));
        };
        let value = value.trim();
        if value.is_empty() {
            return Err(invalid(n, "empty text"));
        }
        if kind == "allow" {
            t.allow.extend(
                value
                    .split(',')
                    .map(tokens)
                    .filter(|w: &Term| !w.is_empty()),
            );
            continue;
        }
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            return Err(invalid(n, format!("bad category id {id:?}")));
        }
        let i = category(&mut t, id);
        match kind {
            "label" => {
                t.categories[i].label = label_named(value)
                    .ok_or_else(|| invalid(n, format!("unknown label {value:?}")))?;
                labelled.push(i);
            }
            "topic" => {
                t.categories[i].topic = Some(TopicId::new(value).map_err(|e| invalid(n, e))?);
            }
            "reason" => t.categories[i].reason = value.to_owned(),
            "word" => t.words.extend(
                value
                    .split(',')
                    .map(tokens)
                    .filter(|w: &Term| !w.is_empty())
                    .map(|w| (i, w)),
            ),
            "phrase" => t.phrases.push((i, value.to_owned())),
            "alone" => t.alone.extend(
                value
                    .split(',')
                    .map(tokens)
                    .filter(|w: &Term| w.len() == 1)
                    .map(|mut w| (i, w.remove(0))),
            ),
            other => return Err(invalid(n, format!("unknown kind {other:?}"))),
        }
    }
    for (i, c) in t.categories.iter().enumerate() {
        if !labelled.contains(&i) || c.reason.is_empty() {
            return Err(Error::from(steerfeed_core::Error::invalid(
                "restricted",
                format!("category {:?} needs a label and a reason", c.id),
            )));
        }
    }
    if t.categories.is_empty() {
        return Err(Error::from(steerfeed_core::Error::invalid(
            "restricted",
            "no categories",
        )));
    }
    Ok(t)
}

impl SafetyNet {
    /// Reads a table (the `restricted.tsv` format) and embeds its words and phrases
    /// (cached like the taxonomy's).
    pub fn from_tsv(tsv: &str, encoder: &Encoder, threshold: f32) -> Result<Self> {
        let table = parse_table(tsv)?;
        // Only the phrases are embedded: a lone word's embedding sits close to unrelated
        // phrases that share its frame ("drinking games", "board games").
        let texts: Vec<(usize, String)> = table.phrases.clone();
        let refs: Vec<&str> = texts.iter().map(|(_, p)| p.as_str()).collect();
        let vectors = crate::cache::embed_in_setup_cache(encoder, &refs)?;
        Ok(Self {
            categories: table.categories,
            words: table.words,
            allow: table.allow,
            alone: table.alone,
            exemplars: texts
                .into_iter()
                .zip(vectors)
                .map(|((i, p), v)| (i, p, v))
                .collect(),
            threshold,
        })
    }

    /// The default table, embedded with `encoder`.
    pub fn default_with(encoder: &Encoder) -> Result<Self> {
        Self::from_tsv(DEFAULT_RESTRICTED, encoder, DEFAULT_THRESHOLD)
    }

    /// Reads a table file and embeds it.
    pub fn from_file(path: &Path, encoder: &Encoder, threshold: f32) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::from(steerfeed_core::Error::invalid(
                "restricted",
                format!("{}: {e}", path.display()),
            ))
        })?;
        Self::from_tsv(&text, encoder, threshold)
    }

    /// Every word of the table's restricted words, ambiguous words, allowed phrases and
    /// exemplars: words the parser's spelling repair must never change.
    pub fn vocabulary(&self) -> impl Iterator<Item = &str> {
        self.words
            .iter()
            .flat_map(|(_, t)| t.iter())
            .chain(self.allow.iter().flatten())
            .map(String::as_str)
            .chain(self.alone.iter().map(|(_, w)| w.as_str()))
            .chain(self.exemplars.iter().flat_map(|(_, p, _)| p.split(' ')))
    }

    /// The categories of the table.
    pub fn categories(&self) -> &[RestrictedCategory] {
        &self.categories
    }

    /// The category of `label`, if the table has one.
    pub fn category_of(&self, label: SafetyLabel) -> Option<&RestrictedCategory> {
        self.categories.iter().find(|c| c.label == label)
    }

    /// Every positive request of `text` that matches a restricted category, in text order.
    pub fn check(&self, encoder: &Encoder, text: &str) -> Result<Vec<Flag>> {
        let requests: Vec<Vec<String>> = requests(text)
            .into_iter()
            .filter(|r| r.positive)
            .map(|r| r.words)
            .collect();
        let mut flags = Vec::new();
        let mut unmatched = Vec::new();
        for words in &requests {
            match self.lexical(words) {
                Some((category, matched)) => flags.push(Flag {
                    category,
                    phrase: words.join(" "),
                    matched,
                }),
                None => {
                    // Embedded without the words that name no content, which would pull
                    // every request toward every exemplar alike.
                    let content: Vec<&str> = words
                        .iter()
                        .map(String::as_str)
                        .filter(|w| !REQUEST_FILLER.contains(w))
                        .collect();
                    if !content.is_empty() {
                        unmatched.push((words.join(" "), content.join(" ")));
                    }
                }
            }
        }
        if !unmatched.is_empty() {
            let refs: Vec<&str> = unmatched.iter().map(|(_, c)| c.as_str()).collect();
            for ((phrase, _), v) in unmatched.iter().zip(encoder.embed_batch(&refs)?) {
                if let Some((category, matched)) = self.semantic(&v) {
                    flags.push(Flag {
                        category,
                        phrase: phrase.clone(),
                        matched,
                    });
                }
            }
        }
        Ok(flags)
    }

    /// The category a single phrase (a parser target, already embedded) falls in, if any.
    /// A bare phrase is closer to everything than a whole request, so its similarity must
    /// clear a higher bar.
    pub fn check_phrase(&self, phrase: &str, embedding: &Embedding) -> Option<usize> {
        self.lexical(&tokens(phrase))
            .or_else(|| self.semantic_above(embedding, self.threshold + PHRASE_MARGIN))
            .map(|(c, _)| c)
    }

    /// A table word found in `words`, outside the allowed everyday phrases.
    fn lexical(&self, words: &[String]) -> Option<(usize, String)> {
        let allowed: Vec<bool> = {
            let mut a = vec![false; words.len()];
            for term in &self.allow {
                for start in 0..words.len() {
                    if words.len() - start >= term.len()
                        && term
                            .iter()
                            .zip(&words[start..])
                            .all(|(t, w)| same_word(w, t))
                    {
                        a[start..start + term.len()].fill(true);
                    }
                }
            }
            a
        };
        let content: Vec<&String> = words
            .iter()
            .filter(|w| !REQUEST_FILLER.contains(&w.as_str()))
            .collect();
        if let [only] = content[..]
            && let Some((category, word)) = self
                .alone
                .iter()
                .find(|(_, a)| a == only || leet(only).as_deref() == Some(a.as_str()))
                .or_else(|| self.alone.iter().find(|(_, a)| same_word_any(only, a)))
        {
            return Some((*category, word.clone()));
        }
        for (category, term) in &self.words {
            if term.len() > 1 {
                let joined = term.concat();
                if let Some(i) = words.iter().position(|w| same_word_any(w, &joined))
                    && !allowed[i]
                {
                    return Some((*category, term.join(" ")));
                }
            }
            for start in 0..words.len() {
                if words.len() - start >= term.len()
                    && !allowed[start..start + term.len()].iter().any(|&a| a)
                    && term
                        .iter()
                        .zip(&words[start..])
                        .all(|(t, w)| same_word_any(w, t))
                {
                    return Some((*category, term.join(" ")));
                }
            }
        }
        None
    }

    /// The most similar exemplar, if it reaches the threshold.
    fn semantic(&self, v: &Embedding) -> Option<(usize, String)> {
        self.semantic_above(v, self.threshold)
    }

    fn semantic_above(&self, v: &Embedding, threshold: f32) -> Option<(usize, String)> {
        self.exemplars
            .iter()
            .map(|(c, p, e)| (c, p, e.dot(v)))
            .filter(|(_, _, s)| *s >= threshold)
            .max_by(|a, b| a.2.total_cmp(&b.2))
            .map(|(c, p, s)| (*c, format!("{p} ({s:.2})")))
    }
}

/// One request of a text: its words and whether it asks for more.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Normalised words, cue words included.
    pub words: Vec<String>,
    /// True when it asks for more (or only), false when for less or none.
    pub positive: bool,
}

/// Words that turn a request away ("no gore", "never show", "less news").
const NEGATORS: &[&str] = &[
    "no", "not", "never", "don't", "dont", "do'nt", "doesn't", "without", "stop", "hide", "block",
    "less", "fewer", "avoid", "remove", "exclude", "filter", "ban", "hate", "none", "nothing",
    "zero", "reduce", "limit", "skip", "mute", "except", "minus", "nix", "mute", "tired", "sick",
    "enough", "can't", "cant", "cannot", "won't", "wont", "dislike",
];

/// Words that open a request for something ("more", "show me", "i like", "only").
const ASKERS: &[&str] = &[
    "more", "show", "give", "gimme", "want", "wanna", "need", "only", "just", "love", "like",
    "enable", "unlock", "allow", "add", "boost", "send", "find", "let", "lots", "tons", "moar",
    "into", "obsessed", "see", "watch", "how",
];

/// Askers strong enough to turn a request that started negative ("not a kid, give me").
const TURNING_ASKERS: &[&str] = &[
    "more", "show", "give", "gimme", "want", "wanna", "need", "only", "enable", "unlock", "send",
    "moar",
];

/// Negators that turn a request that started positive ("more cooking less news",
/// "dancing without the twerking"). Others ("stop", "hide", "not") inside a request are
/// usually part of what is asked for ("how to stop eating").
const TURNING_NEGATORS: &[&str] = &[
    "no", "never", "without", "less", "fewer", "except", "minus", "none", "nothing",
];

/// Filler a request may start with before its cue.
const LEAD_FILLER: &[&str] = &[
    "i",
    "do",
    "does",
    "i'd",
    "id",
    "i'm",
    "im",
    "please",
    "pls",
    "plz",
    "so",
    "also",
    "then",
    "oh",
    "ok",
    "okay",
    "honestly",
    "really",
    "can",
    "you",
    "could",
    "would",
    "and",
    "well",
    "hey",
    "and",
    "actually",
    "seriously",
    "kinda",
    "definitely",
    "absolutely",
];

/// Verbs that, negated, ask for more ("don't hide the ...", "stop filtering").
const UNDO: &[&str] = &[
    "hide",
    "block",
    "filter",
    "filtering",
    "remove",
    "exclude",
    "limit",
    "restrict",
    "censor",
    "ban",
    "avoid",
    "skip",
    "hiding",
    "blocking",
    "censoring",
    "restricting",
];

/// Words that split a text into clauses, and a clause into requests.
const BREAKS: &[&str] = &[
    ".", "but", "however", "though", "although", "while", "whereas", "instead", "and", "or",
    "plus", "&", "nor", "also", "then",
];

/// Lowercased words with digits and symbols read as the letters they stand for where a
/// word mixes them ("s3xy", "p0rn", "$lots"), letters stretched over three or more
/// repeats squeezed ("seeexy"), and punctuation as `.`.
pub fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut Vec<String>| {
        if !word.is_empty() {
            let w = read_word(word);
            if !w.is_empty() {
                out.push(w);
            }
            word.clear();
        }
    };
    for c in text.chars() {
        let c = match c {
            '\u{2019}' | '\u{2018}' | '`' | '\u{b4}' => '\'',
            c => c,
        };
        if c.is_alphanumeric()
            || c == '\''
            || c == '$'
            || c == '@'
            || (c == '*' && !word.is_empty())
            || (c == '+' && word.chars().last().is_some_and(|l| l.is_ascii_digit()))
        {
            word.extend(c.to_lowercase());
        } else {
            flush(&mut word, &mut out);
            if matches!(c, '.' | ',' | ';' | ':' | '!' | '?' | '\n' | '(' | ')') {
                out.push(".".to_owned());
            }
        }
    }
    flush(&mut word, &mut out);
    out
}

fn read_word(word: &str) -> String {
    if !word.chars().any(char::is_alphanumeric) {
        return String::new();
    }
    let mapped = word.to_owned();
    let mapped = mapped.trim_end_matches('*').to_owned();
    let mut squeezed = String::with_capacity(mapped.len());
    let chars: Vec<char> = mapped.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let mut j = i;
        while j < chars.len() && chars[j] == chars[i] {
            j += 1;
        }
        let run = j - i;
        let keep = if run >= 3 && chars[i].is_alphabetic() {
            1
        } else {
            run
        };
        squeezed.extend(std::iter::repeat_n(chars[i], keep));
        i = j;
    }
    squeezed
}

/// A word with digits and symbols read as the letters they stand for, when it mixes
/// them with letters ("s3xy", "p0rn", "$lut"); `None` otherwise.
fn leet(word: &str) -> Option<String> {
    let has_letter = word.chars().any(char::is_alphabetic);
    let has_other = word
        .chars()
        .any(|c| c.is_ascii_digit() || c == '$' || c == '@');
    (has_letter && has_other).then(|| {
        word.chars()
            .map(|c| match c {
                '0' => 'o',
                '1' => 'i',
                '3' => 'e',
                '4' => 'a',
                '5' | '$' => 's',
                '7' => 't',
                '8' => 'b',
                '@' => 'a',
                c => c,
            })
            .collect()
    })
}

/// [`same_word`] on the word as written or as its digits read as letters.
fn same_word_any(w: &str, t: &str) -> bool {
    same_word(w, t) || leet(w).is_some_and(|l| l != w && same_word(&l, t))
}

/// True when the text's word `w` is the table's word `t`: equal, an inflection of it
/// ("ending" for "end", "guns" for "gun"), its singular ("pill" for "pills"), any reflexive pronoun for "myself", or one
/// typo away (an insertion, deletion, substitution or swap) for words that start alike,
/// one of them six letters or more and the other five or more.
fn same_word(w: &str, t: &str) -> bool {
    if w == t || (t == "myself" && REFLEXIVES.contains(&w)) {
        return true;
    }
    if base(w) == t || t.strip_suffix('s') == Some(w) || t.strip_suffix("es") == Some(w) {
        return true;
    }
    if w.contains('*') {
        return masked(w, t);
    }
    let (wc, tc): (Vec<char>, Vec<char>) = (w.chars().collect(), t.chars().collect());
    if squeeze(&wc) == squeeze(&tc) && wc.len().min(tc.len()) >= 4 {
        return true;
    }
    if wc.len() == 4 && tc.len() == 4 && wc[0] == tc[0] {
        // One swap of neighbours ("pron").
        let d: Vec<usize> = (0..4).filter(|&i| wc[i] != tc[i]).collect();
        return matches!(d[..], [i, j] if j == i + 1 && wc[i] == tc[j] && wc[j] == tc[i]);
    }
    // A substitution in a shorter word is too often another word ("piston", "heroic",
    // "stones"): only letters left out, added or swapped count there.
    let substitution = wc.len() == tc.len() && !is_swap(&wc, &tc);
    wc.len().max(tc.len()) >= 6
        && wc.len().min(tc.len()) >= 5
        && wc[0] == tc[0]
        && (!substitution || wc.len() >= 9)
        && within_one_edit(&wc, &tc)
}

/// True when `a` is `b` with two neighbouring letters swapped.
fn is_swap(a: &[char], b: &[char]) -> bool {
    let d: Vec<usize> = (0..a.len().min(b.len()))
        .filter(|&i| a[i] != b[i])
        .collect();
    a.len() == b.len() && matches!(d[..], [i, j] if j == i + 1 && a[i] == b[j] && a[j] == b[i])
}

/// Letters with every run of a repeated letter cut to one ("sexxy", "druggs").
fn squeeze(w: &[char]) -> Vec<char> {
    let mut out = w.to_vec();
    out.dedup();
    out
}

/// A word with letters masked by `*` ("s*icide", "p*rn"): each `*` stands for one to two
/// letters, the rest must match.
fn masked(w: &str, t: &str) -> bool {
    fn go(w: &[char], t: &[char]) -> bool {
        match (w.first(), t.first()) {
            (None, None) => true,
            (Some('*'), _) => {
                (!t.is_empty() && go(&w[1..], &t[1..])) || (t.len() >= 2 && go(&w[1..], &t[2..]))
            }
            (Some(a), Some(b)) if a == b => go(&w[1..], &t[1..]),
            _ => false,
        }
    }
    let (wc, tc): (Vec<char>, Vec<char>) = (w.chars().collect(), t.chars().collect());
    wc.iter().filter(|&&c| c != '*').count() >= 2 && go(&wc, &tc)
}

const REFLEXIVES: &[&str] = &[
    "myself",
    "yourself",
    "yourselves",
    "himself",
    "herself",
    "themselves",
    "themself",
    "ourselves",
    "oneself",
];

/// A word without its inflection ("-ing", "-ed", "-es", "-s", a doubled last consonant
/// undone: "cutting" is "cut"), when at least three letters remain.
fn base(w: &str) -> String {
    for suffix in ["ing", "ed", "es", "s"] {
        if let Some(s) = w.strip_suffix(suffix)
            && s.chars().count() >= 3
        {
            let c: Vec<char> = s.chars().collect();
            let doubled = c.len() >= 4 && c[c.len() - 1] == c[c.len() - 2] && suffix != "s";
            return if doubled {
                c[..c.len() - 1].iter().collect()
            } else {
                s.to_owned()
            };
        }
    }
    w.to_owned()
}

/// Damerau distance at most one.
fn within_one_edit(a: &[char], b: &[char]) -> bool {
    if a.len().abs_diff(b.len()) > 1 {
        return false;
    }
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let (ra, rb) = (&a[prefix..], &b[prefix..]);
    match (ra.len(), rb.len()) {
        (0, 0) => true,
        (x, y) if x == y => {
            ra[1..] == rb[1..] || (x >= 2 && ra[0] == rb[1] && ra[1] == rb[0] && ra[2..] == rb[2..])
        }
        (x, y) if x > y => ra[1..] == *rb,
        _ => *ra == rb[1..],
    }
}

/// Splits `text` into requests and reads which way each points.
pub fn requests(text: &str) -> Vec<Request> {
    let words = tokens(text);
    let mut out: Vec<Request> = Vec::new();
    let mut current: Vec<String> = Vec::new();
    // The previous request of the same clause, for "no horror and violence".
    let mut clause_negative = false;
    let finish = |current: &mut Vec<String>,
                  out: &mut Vec<Request>,
                  clause_negative: &mut bool,
                  end_of_clause: bool| {
        if !current.is_empty() {
            for r in split_request(current, *clause_negative) {
                *clause_negative = !r.positive;
                out.push(r);
            }
            current.clear();
        }
        if end_of_clause {
            *clause_negative = false;
        }
    };
    let mut prev = "";
    for w in &words {
        let w = w.as_str();
        // "nothing but X" asks for only X; "anything but X" for none of X.
        if w == "but" && matches!(prev, "nothing" | "anything" | "everything" | "all") {
            current.push(w.to_owned());
        } else if w == "."
            || matches!(
                w,
                "but" | "however" | "though" | "although" | "while" | "whereas" | "instead"
            )
        {
            finish(&mut current, &mut out, &mut clause_negative, true);
        } else if BREAKS.contains(&w) {
            finish(&mut current, &mut out, &mut clause_negative, false);
        } else {
            current.push(w.to_owned());
        }
        prev = w;
    }
    finish(&mut current, &mut out, &mut clause_negative, true);
    out
}

/// Reads one request's direction from its first words, and splits it where a later cue
/// turns it ("not a kid give me ...").
fn split_request(words: &[String], inherit_negative: bool) -> Vec<Request> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut positive = lead_direction(words).unwrap_or(!inherit_negative);
    let mut i = 1;
    while i < words.len() {
        let w = words[i].as_str();
        // "don't ever show me": a negator up to two words back.
        let negated = is_negator(&words[i - 1])
            || (i >= 2
                && is_negator(&words[i - 2])
                && matches!(
                    words[i - 1].as_str(),
                    "ever" | "even" | "really" | "please" | "to"
                ));
        // "girls with no clothes" describes what is asked for.
        let described = words[i - 1] == "with";
        // "show" asks only as "show me"/"show us" ("less tv show clips" is one request).
        let asks = TURNING_ASKERS.contains(&w)
            && (w != "show" || matches!(words.get(i + 1).map(String::as_str), Some("me" | "us")));
        let turn = if asks && !negated && !positive {
            Some(true)
        } else if positive
            && TURNING_NEGATORS.contains(&w)
            && !negated
            && !described
            && !followed_by_undo(words, i)
            && !matches!(w, "nothing" | "anything")
        {
            Some(false)
        } else {
            None
        };
        if let Some(p) = turn {
            if i > start {
                out.push(Request {
                    words: words[start..i].to_vec(),
                    positive,
                });
            }
            start = i;
            positive = p;
        }
        i += 1;
    }
    out.push(Request {
        words: words[start..].to_vec(),
        positive,
    });
    out
}

fn is_negator(w: &str) -> bool {
    NEGATORS.contains(&w)
}

fn followed_by_undo(words: &[String], i: usize) -> bool {
    words[i + 1..]
        .iter()
        .take(2)
        .any(|w| UNDO.contains(&w.as_str()))
}

/// The direction the first cue of a request gives, after leading filler: `Some(true)`
/// for more, `Some(false)` for less or none, `None` when it starts with no cue.
fn lead_direction(words: &[String]) -> Option<bool> {
    let mut i = 0;
    while i < words.len() && LEAD_FILLER.contains(&words[i].as_str()) {
        i += 1;
    }
    let w = words.get(i)?.as_str();
    let next = |k: usize| words.get(i + k).map(String::as_str).unwrap_or("");
    if w == "nothing" && next(1) == "but" {
        return Some(true);
    }
    // Negators that say yes: "can't get enough of", "don't mind", "not scared of".
    if matches!(w, "can't" | "cant" | "cannot") && next(1) == "get" && next(2) == "enough" {
        return Some(true);
    }
    if matches!(w, "don't" | "dont" | "do'nt") && next(1) == "mind" {
        return Some(true);
    }
    if w == "not" && matches!(next(1), "scared" | "afraid" | "bothered") {
        return Some(true);
    }
    // Asking for less in more than one word: "get rid of", "tone down", "anything but".
    if (w == "get" && next(1) == "rid")
        || (matches!(w, "tone" | "dial" | "cut" | "turn") && matches!(next(1), "down" | "back"))
        || (matches!(w, "anything" | "everything") && matches!(next(1), "but" | "except"))
        || (w == "keep" && next(1) == "away")
        || (w == "filter" && next(1) == "out")
    {
        return Some(false);
    }
    if is_negator(w) {
        return Some(followed_by_undo(words, i));
    }
    if ASKERS.contains(&w) {
        return Some(true);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs(text: &str) -> Vec<(String, bool)> {
        requests(text)
            .into_iter()
            .map(|r| (r.words.join(" "), r.positive))
            .collect()
    }

    #[test]
    fn words_are_read_through_digits_symbols_and_stretching() {
        assert_eq!(
            tokens("S3XY p0rn, seeexy $tuff"),
            ["s3xy", "p0rn", ".", "sexy", "$tuff"]
        );
        assert_eq!(leet("s3xy").as_deref(), Some("sexy"));
        assert_eq!(leet("$tuff").as_deref(), Some("stuff"));
        assert_eq!(leet("420"), None);
        assert!(same_word_any("p0rn", "porn"));
        assert!(same_word_any("rule34", "rule34"));
        assert!(!same_word_any("ribs", "r18"));
        assert!(tokens("more spicy $").iter().all(|w| !w.is_empty()));
        assert_eq!(tokens("420 blaze"), ["420", "blaze"]);
        assert_eq!(tokens("self-harm"), ["self", "harm"]);
        assert_eq!(tokens("booze"), ["booze"]);
    }

    #[test]
    fn one_typo_is_tolerated_on_long_words_only() {
        assert!(same_word("gamblin", "gambling"));
        assert!(same_word("alchohol", "alcohol"));
        assert!(same_word("wieght", "weight"));
        assert!(same_word("guns", "gun"));
        assert!(same_word("casinos", "casino"));
        assert!(!same_word("drums", "drugs"));
        assert!(!same_word("fun", "gun"));
        assert!(!same_word("trifle", "rifle"));
        assert!(!same_word("mocktails", "cocktails"));
        assert!(!same_word("gambling", "gamble"));
        assert!(same_word("sexxy", "sexy"));
        assert!(same_word("pron", "porn"));
        assert!(same_word("s*icide", "suicide"));
        assert!(!same_word("s*icide", "side"));
        assert!(!same_word("prom", "porn"));
        assert!(!same_word("pron", "iron"));
        assert!(!same_word("baking", "baked"));
        assert!(!same_word("piston", "pistol"));
        assert!(!same_word("heroic", "heroin"));
        assert!(!same_word("stones", "stoner"));
        assert!(!same_word("grenada", "grenade"));
        assert!(same_word("wepons", "weapons"));
    }

    #[test]
    fn requests_point_the_way_their_own_words_say() {
        assert_eq!(dirs("no gore"), [("no gore".into(), false)]);
        assert_eq!(
            dirs("less news but more weed"),
            [("less news".into(), false), ("more weed".into(), true)]
        );
        assert_eq!(
            dirs("no horror and violence"),
            [("no horror".into(), false), ("violence".into(), false)]
        );
        assert_eq!(
            dirs("never show me guns"),
            [("never show me guns".into(), false)]
        );
        assert_eq!(
            dirs("i don't want anything about self harm"),
            [("i don't want anything about self harm".into(), false)]
        );
        assert_eq!(
            dirs("not a kid give me porn"),
            [("not a kid".into(), false), ("give me porn".into(), true)]
        );
        assert_eq!(
            dirs("don't hide the nsfw stuff"),
            [("don't hide the nsfw stuff".into(), true)]
        );
        assert_eq!(
            dirs("nothing but poker"),
            [("nothing but poker".into(), true)]
        );
        assert_eq!(dirs("spicy videos"), [("spicy videos".into(), true)]);
    }
}
