//! `PreferenceParser`: plain-language feed preferences to [`Constraints`].
//!
//! The text is normalised and split into clauses (punctuation, "but", "however", ...),
//! each clause into items ("beauty and makeup"); slots are read first (following more or
//! less, freshness, a maximum duration, remixable, friends' cameos) and their words taken
//! out; then each item's polarity and intensity come from a small lexicon of markers
//! ("way more", "a bit less", "no more", "don't show", "only", "I hate", ...), an item
//! without a marker inheriting its clause's, and a bare topic meaning "more". What is
//! left of the item is its target phrase: all targets are embedded in one batch and
//! mapped to the closest taxonomy topic, if close enough. Policy is applied last: for a
//! teen account, positive requests for restricted or sensitive topics are not applied
//! and are listed under `rejected` with the reason. Nothing in the text can change the
//! audience or the policy: the parser only ever extracts typed facts.

use std::sync::Arc;

use steerfeed_core::{
    AgeBand, Concept, Constraints, Embedding, Error as CoreError, Freshness, Rejected, SafetyLabel,
    Shift, Timestamp, TopicId, Unclear, UnclearReason, WeightedConcept,
};

use crate::concepts::{ConceptResolver, PhraseCache};
use crate::encoder::Encoder;
use crate::error::Result;
use crate::reader::{ItemCues, Reader, TextCues};
use crate::safety::SafetyNet;
use crate::slots::{SlotExemplars, SlotKind, SlotMatch};
use crate::speller::Speller;
use crate::taxonomy::{Taxonomy, TopicMatch};

/// Tunables of the parser, one default each.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ParserConfig {
    /// A taxonomy file (`id<TAB>description` lines) replacing the default one.
    pub taxonomy: Option<std::path::PathBuf>,
    /// Topic exemplars (`topic<TAB>phrase, phrase, ...` lines) replacing the default ones
    /// (`data/exemplars.tsv`, used only with the default taxonomy).
    pub exemplars: Option<std::path::PathBuf>,
    /// Slot exemplars (`kind<TAB>phrase, phrase, ...` lines: what people call friends'
    /// cameos, the people they follow, strangers, remixes, originals) replacing the
    /// default ones (`data/slots.tsv`).
    pub slots: Option<std::path::PathBuf>,
    /// A table of restricted concepts for teen accounts (the `data/restricted.tsv`
    /// format) replacing the default one.
    pub restricted: Option<std::path::PathBuf>,
    /// Smallest similarity between a teen's request and a restricted exemplar for the
    /// request to be rejected. Default 0.6.
    pub safety_threshold: f32,
    /// Smallest similarity between a target phrase and a topic for the topic to apply. Default 0.55.
    pub topic_threshold: f32,
    /// A phrase without a marker of its own that comes within this much of
    /// `topic_threshold` is returned under `unclear` (a marked one always is). Default 0.1.
    pub unclear_margin: f32,
    /// Days until compiled constraints expire. Default 7.
    pub expiry_days: i64,
    /// Longest preference text accepted, in bytes. Default 2000.
    pub max_text_bytes: usize,
    /// Most clause items read from one text. Default 16.
    pub max_items: usize,
    /// Topics inferred for a caption when the app gives none: at most this many. Default 3.
    pub caption_max_topics: usize,
    /// ... each at least this similar to the caption. Default 0.35.
    pub caption_topic_threshold: f32,
    /// Reader weights (`data/reader/reader.json` format) replacing the shipped ones.
    pub reader: Option<std::path::PathBuf>,
    /// Let the learned reader decide each item's list and the following and friends'
    /// cameos slots. When false the word lists alone decide (the fallback). Default true.
    pub use_reader: bool,
}

impl Default for ParserConfig {
    fn default() -> Self {
        Self {
            taxonomy: None,
            exemplars: None,
            slots: None,
            restricted: None,
            safety_threshold: crate::safety::DEFAULT_THRESHOLD,
            topic_threshold: 0.55,
            unclear_margin: 0.1,
            expiry_days: 7,
            max_text_bytes: 2000,
            max_items: 16,
            caption_max_topics: 3,
            caption_topic_threshold: 0.35,
            reader: None,
            use_reader: true,
        }
    }
}

/// Which list an item goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Polarity {
    Boost,
    Reduce,
    Exclude,
    Only,
}

/// Markers, longest first so "way more" wins over "more" and "no more" over "more".
const MARKERS: &[(&str, Polarity, f32)] = &[
    ("not interested in", Polarity::Exclude, 1.0),
    ("get rid of", Polarity::Exclude, 1.0),
    ("do not show", Polarity::Exclude, 1.0),
    ("do not want", Polarity::Exclude, 1.0),
    ("keep away", Polarity::Exclude, 1.0),
    ("filter out", Polarity::Exclude, 1.0),
    ("stop showing", Polarity::Exclude, 1.0),
    ("never show", Polarity::Exclude, 1.0),
    ("don't show", Polarity::Exclude, 1.0),
    ("dont show", Polarity::Exclude, 1.0),
    ("don't want", Polarity::Exclude, 1.0),
    ("dont want", Polarity::Exclude, 1.0),
    ("can't stand", Polarity::Exclude, 1.0),
    ("cant stand", Polarity::Exclude, 1.0),
    ("nothing about", Polarity::Exclude, 1.0),
    ("deprioritize", Polarity::Reduce, 1.0),
    ("prioritize", Polarity::Boost, 1.0),
    ("none of", Polarity::Exclude, 1.0),
    ("no more", Polarity::Exclude, 1.0),
    ("nothing but", Polarity::Only, 1.0),
    ("anything but", Polarity::Exclude, 1.0),
    ("everything but", Polarity::Exclude, 1.0),
    ("exclusively", Polarity::Only, 1.0),
    ("a whole lot more", Polarity::Boost, 2.0),
    ("a whole lot less", Polarity::Reduce, 2.0),
    ("a lot more", Polarity::Boost, 2.0),
    ("a lot less", Polarity::Reduce, 2.0),
    ("a little more", Polarity::Boost, 0.5),
    ("a little less", Polarity::Reduce, 0.5),
    ("a bit more", Polarity::Boost, 0.5),
    ("a bit less", Polarity::Reduce, 0.5),
    ("slightly more", Polarity::Boost, 0.5),
    ("slightly less", Polarity::Reduce, 0.5),
    ("somewhat more", Polarity::Boost, 0.5),
    ("somewhat less", Polarity::Reduce, 0.5),
    ("bit more", Polarity::Boost, 0.5),
    ("bit less", Polarity::Reduce, 0.5),
    ("way more", Polarity::Boost, 2.0),
    ("way less", Polarity::Reduce, 2.0),
    ("much more", Polarity::Boost, 2.0),
    ("much less", Polarity::Reduce, 2.0),
    ("far more", Polarity::Boost, 2.0),
    ("far less", Polarity::Reduce, 2.0),
    ("lots more", Polarity::Boost, 2.0),
    ("lots of", Polarity::Boost, 2.0),
    ("tons of", Polarity::Boost, 2.0),
    ("loads of", Polarity::Boost, 2.0),
    ("so much", Polarity::Boost, 2.0),
    ("obsessed with", Polarity::Boost, 2.0),
    ("not so much", Polarity::Reduce, 1.0),
    ("not as much", Polarity::Reduce, 1.0),
    ("not too much", Polarity::Reduce, 1.0),
    ("cut down on", Polarity::Reduce, 1.0),
    ("cut back on", Polarity::Reduce, 1.0),
    ("tone down", Polarity::Reduce, 1.0),
    ("dial down", Polarity::Reduce, 1.0),
    ("dial back", Polarity::Reduce, 1.0),
    ("sick of", Polarity::Reduce, 1.5),
    ("tired of", Polarity::Reduce, 1.5),
    ("bored of", Polarity::Reduce, 1.5),
    ("bored with", Polarity::Reduce, 1.5),
    ("enough with", Polarity::Reduce, 1.5),
    ("fan of", Polarity::Boost, 1.0),
    ("into", Polarity::Boost, 1.0),
    ("hate", Polarity::Exclude, 1.0),
    ("never", Polarity::Exclude, 1.0),
    ("stop", Polarity::Exclude, 1.0),
    ("block", Polarity::Exclude, 1.0),
    ("ban", Polarity::Exclude, 1.0),
    ("hide", Polarity::Exclude, 1.0),
    ("remove", Polarity::Exclude, 1.0),
    ("without", Polarity::Exclude, 1.0),
    ("zero", Polarity::Exclude, 1.0),
    ("no", Polarity::Exclude, 1.0),
    ("nothing", Polarity::Exclude, 1.0),
    ("only", Polarity::Only, 1.0),
    ("solely", Polarity::Only, 1.0),
    ("fewer", Polarity::Reduce, 1.0),
    ("less", Polarity::Reduce, 1.0),
    ("les", Polarity::Reduce, 1.0),
    ("decrease", Polarity::Reduce, 1.0),
    ("lower", Polarity::Reduce, 1.0),
    ("demote", Polarity::Reduce, 1.0),
    ("reduce", Polarity::Reduce, 1.0),
    ("minimize", Polarity::Reduce, 1.0),
    ("limit", Polarity::Reduce, 1.0),
    ("more", Polarity::Boost, 1.0),
    ("moar", Polarity::Boost, 1.0),
    ("mor", Polarity::Boost, 1.0),
    ("moree", Polarity::Boost, 1.0),
    ("boost", Polarity::Boost, 1.0),
    ("promote", Polarity::Boost, 1.0),
    ("extra", Polarity::Boost, 1.0),
    ("love", Polarity::Boost, 1.0),
    ("adore", Polarity::Boost, 1.0),
    ("like", Polarity::Boost, 1.0),
    ("enjoy", Polarity::Boost, 1.0),
    ("want", Polarity::Boost, 1.0),
    ("need", Polarity::Boost, 1.0),
    ("increase", Polarity::Boost, 1.0),
];

/// Words that negate what follows them, for reading litotes.
const LITOTES_NEGATIONS: &[&str] = &[
    "not", "no", "never", "nothing", "don't", "dont", "doesn't", "doesnt", "wouldn't", "wouldnt",
    "won't", "wont", "can't", "cant", "couldn't", "isn't", "would'nt",
];

/// Words that may stand between a litotes' negation and its predicate ("can't say i
/// dislike", "wouldn't really mind"); anything else there is what is negated ("no
/// politics, i hate it").
const LITOTES_GAP: &[&str] = &[
    "really", "even", "ever", "be", "have", "had", "to", "say", "i", "at", "all", "too", "much",
    "a", "any",
];

/// What someone says against something; negated, it asks for it mildly ("wouldn't mind
/// more", "not against", "no complaints about", "wouldn't say no to", "it wouldn't hurt").
const LITOTES_PREDICATES: &[&str] = &[
    "mind",
    "hate",
    "against",
    "complain",
    "complaints",
    "complaining",
    "object",
    "objection",
    "objections",
    "oppose",
    "opposed",
    "dislike",
    "problem",
    "problems",
    "issue",
    "issues",
    "refuse",
    "averse",
    "hurt",
    "bother",
    "bothers",
    "say no",
    "saying no",
    "turn down",
];

/// The words of a litotes in `w` (a negation, at most two words, something said against
/// what follows), if there is one.
fn litotes(w: &[&str]) -> Option<(usize, usize)> {
    for (i, x) in w.iter().enumerate() {
        if !LITOTES_NEGATIONS.contains(x) {
            continue;
        }
        for gap in 0..=2 {
            let at = i + 1 + gap;
            if !w[i + 1..w.len().min(at)]
                .iter()
                .all(|g| LITOTES_GAP.contains(g))
            {
                break;
            }
            for p in LITOTES_PREDICATES {
                let n = p.split(' ').count();
                if w.get(at..at + n).is_some_and(|s| s.join(" ") == *p) {
                    return Some((i, at + n));
                }
            }
        }
    }
    None
}

/// Intensity words that only scale a marker found elsewhere in the item.
const INTENSIFIERS: &[(&str, f32)] = &[
    ("really", 2.0),
    ("super", 2.0),
    ("totally", 2.0),
    ("absolutely", 2.0),
    ("a little", 0.5),
    ("a bit", 0.5),
    ("kinda", 0.5),
    ("kind of", 0.5),
    ("sort of", 0.5),
];

/// Words that carry no topic: taken out of target phrases.
const FILLER: &[&str] = &[
    "a",
    "about",
    "all",
    "also",
    "an",
    "and",
    "any",
    "anything",
    "are",
    "as",
    "at",
    "be",
    "can",
    "content",
    "could",
    "do",
    "does",
    "every",
    "everything",
    "feed",
    "first",
    "for",
    "from",
    "get",
    "give",
    "gimme",
    "go",
    "going",
    "good",
    "great",
    "have",
    "i",
    "i'd",
    "i'm",
    "in",
    "is",
    "it",
    "its",
    "it's",
    "just",
    "kind",
    "kinds",
    "let",
    "lot",
    "lots",
    "maybe",
    "me",
    "mine",
    "much",
    "my",
    "of",
    "on",
    "one",
    "ones",
    "or",
    "please",
    "pls",
    "plz",
    "post",
    "posts",
    "related",
    "see",
    "seeing",
    "show",
    "shows",
    "some",
    "something",
    "stuff",
    "that",
    "the",
    "them",
    "these",
    "thing",
    "things",
    "this",
    "those",
    "to",
    "too",
    "type",
    "types",
    "very",
    "video",
    "videos",
    "vids",
    "vid",
    "watch",
    "watching",
    "way",
    "we",
    "what",
    "when",
    "with",
    "would",
    "you",
    "your",
    "feel",
    "feels",
    "kinda",
    "like",
    "really",
    "so",
    "super",
    "actually",
    "honestly",
    "literally",
    "maybe",
    "okay",
    "ok",
    "yeah",
    "hey",
    "hi",
    "hello",
    "thanks",
    "thank",
    "now",
    "today",
    "anymore",
    "again",
    "here",
    "there",
    "time",
    "lately",
    "recently",
    "guys",
    "am",
    "was",
    "were",
    "been",
    "dont",
    "don't",
    "ever",
    "into",
    "id",
    "im",
    "u",
    "ur",
    "plus",
    "etc",
    "topics",
    "topic",
    "clips",
    "reels",
    "shorts",
    "better",
    "best",
    "make",
    "nice",
    "cool",
    "awesome",
    "interesting",
    "random",
    "instead",
    "basically",
    "i've",
    "ive",
    "been",
    "usually",
    "normally",
    "whatever",
    "keep",
    "could",
    "should",
    "will",
    "might",
    "need",
    "needs",
    "wanna",
    "gonna",
    "ones",
    "less",
    "more",
    // Discourse particles: "more jazz lol", "yo more jazz fr".
    "lol",
    "lmao",
    "haha",
    "fr",
    "ngl",
    "tbh",
    "rn",
    "thx",
    "ty",
    "imo",
    "idk",
    "um",
    "uh",
    "yo",
];

/// Items that try to talk the parser out of its rules carry no preference and are
/// dropped; the rest of the text is parsed as usual and policy applies to it (what policy
/// allows is decided by the audience, never by the text).
const INJECTION: &[&str] = &[
    "ignore",
    "disregard",
    "override",
    "jailbreak",
    "admin mode",
    "developer mode",
    "dev mode",
    "god mode",
    "you are now",
    "system",
    "instructions",
    "pretend",
    "act as",
    "forget the rules",
    "no rules",
    "bypass",
    "i'm actually",
    "im actually",
    "i am actually",
    "i'm an adult",
    "i am an adult",
    "i'm 18",
    "i am 18",
    "verified adult",
];

/// Clauses that describe what someone did, not what they want: unmarked items in them
/// are not requests ("I've been watching a lot of gym stuff", "my name is bob").
const NARRATIVE: &[&str] = &[
    "been watching",
    "i watch",
    "i watched",
    "i've watched",
    "ive watched",
    "i usually",
    "i normally",
    "i always watch",
    "i've seen",
    "ive seen",
    "my feed is",
    "my feed has",
    "i keep seeing",
    "i see",
    "my name is",
    "my name's",
    "i'm called",
    "call me",
];

/// Words that split a text into clauses.
const CLAUSE_BREAKS: &[&str] = &[
    "but", "however", "though", "although", "while", "whereas", "except", "instead",
];

/// Words that split a clause into items that share its polarity.
/// ("y", "und" and "et" split mixed-language texts, so the English items stay readable.)
const ITEM_BREAKS: &[&str] = &["and", "or", "&", "plus", "nor", "y", "und", "et"];

/// Lowercases, unifies apostrophes, keeps letters, digits and a few separators, and
/// squeezes spaces. Everything else (emoji, symbols, control characters) becomes a space.
fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let c = match c {
            '\u{2019}' | '\u{2018}' | '`' | '\u{b4}' => '\'',
            c => c,
        };
        if c.is_alphanumeric() || c == '\'' {
            out.extend(c.to_lowercase());
        } else if matches!(
            c,
            ',' | ';' | '.' | '!' | '?' | '\n' | ':' | '&' | '/' | '-'
        ) {
            out.push(' ');
            out.push(if c == '\n' { '.' } else { c });
            out.push(' ');
        } else {
            out.push(' ');
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn words(s: &str) -> Vec<&str> {
    s.split_whitespace().collect()
}

/// Finds `phrase` (space-separated words) in `w` at a word boundary.
fn find(w: &[&str], phrase: &str) -> Option<(usize, usize)> {
    let p: Vec<&str> = phrase.split(' ').collect();
    if p.is_empty() || w.len() < p.len() {
        return None;
    }
    (0..=w.len() - p.len())
        .find(|&i| w[i..i + p.len()] == p[..])
        .map(|i| (i, i + p.len()))
}

fn remove(w: &mut Vec<&str>, range: (usize, usize)) {
    w.drain(range.0..range.1);
}

fn contains_any(w: &[&str], phrases: &[&str]) -> bool {
    phrases.iter().any(|p| find(w, p).is_some())
}

/// Slots found in a clause.
#[derive(Debug, Default, Clone, PartialEq)]
struct Slots {
    following: Option<Shift>,
    freshness: Option<Freshness>,
    max_duration_s: Option<u32>,
    remix: Option<bool>,
    friends_cameos: Option<bool>,
}

const LESS_WORDS: &[&str] = &[
    "less",
    "fewer",
    "not so much",
    "not as much",
    "reduce",
    "cut down",
    "tired of",
    "sick of",
];
const NEG_WORDS: &[&str] = &[
    "no", "never", "don't", "dont", "not", "stop", "without", "hate", "block", "hide",
];

fn number_word(w: &str) -> Option<u32> {
    Some(match w {
        "five" => 5,
        "ten" => 10,
        "fifteen" => 15,
        "twenty" => 20,
        "thirty" => 30,
        "forty" | "fourty" => 40,
        "fifty" => 50,
        "sixty" => 60,
        "ninety" => 90,
        "a" | "one" => 1,
        "two" => 2,
        "three" => 3,
        "half" => 0,
        _ => return None,
    })
}

fn unit_seconds(w: &str) -> Option<u32> {
    match w {
        "s" | "sec" | "secs" | "second" | "seconds" => Some(1),
        "m" | "min" | "mins" | "minute" | "minutes" => Some(60),
        _ => None,
    }
}

/// Reads the slots of a clause and takes their words out of it.
fn take_slots(w: &mut Vec<&str>) -> Slots {
    let mut s = Slots::default();
    let negated = contains_any(w, NEG_WORDS);
    let lessened = contains_any(w, LESS_WORDS);

    // Maximum duration: "under 20 seconds", "shorter than a minute", "15 sec clips".
    for i in 0..w.len() {
        let n = w[i].parse::<u32>().ok().or_else(|| number_word(w[i]));
        let unit = w.get(i + 1).and_then(|u| unit_seconds(u));
        if let (Some(n), Some(unit)) = (n, unit) {
            let secs = if n == 0 { 30 } else { n.saturating_mul(unit) };
            let mut start = i;
            while start > 0
                && matches!(
                    w[start - 1],
                    "than"
                        | "under"
                        | "below"
                        | "shorter"
                        | "less"
                        | "max"
                        | "maximum"
                        | "at"
                        | "most"
                        | "within"
                        | "up"
                        | "to"
                        | "over"
                        | "longer"
                        | "not"
                        | "no"
                )
            {
                start -= 1;
            }
            let mut end = i + 2;
            while end < w.len()
                && matches!(w[end], "or" | "less" | "long" | "max" | "and" | "under")
            {
                end += 1;
            }
            s.max_duration_s = Some(secs.max(1));
            remove(w, (start, end.min(w.len())));
            break;
        }
    }
    if s.max_duration_s.is_none() {
        for phrase in [
            "short videos",
            "short video",
            "short clips",
            "shorter videos",
            "short ones",
            "quick videos",
            "quick clips",
            "bite sized",
            "no long videos",
        ] {
            if let Some(r) = find(w, phrase) {
                s.max_duration_s = Some(30);
                remove(w, r);
                break;
            }
        }
    }

    // Friends' cameos.
    if let Some(r) = ["cameos", "cameo"].iter().find_map(|p| find(w, p)) {
        let social = contains_any(
            w,
            &[
                "friend",
                "friends",
                "people i know",
                "people i follow",
                "me",
                "myself",
                "family",
                "mutuals",
                "buddies",
                "my crew",
                "i follow",
            ],
        );
        if social {
            s.friends_cameos = Some(!negated);
            w.retain(|x| {
                !matches!(
                    *x,
                    "cameos"
                        | "cameo"
                        | "friend"
                        | "friends"
                        | "featuring"
                        | "feature"
                        | "starring"
                        | "of"
                        | "with"
                )
            });
        } else {
            remove(w, r);
        }
    }

    // Following more or less; discovering new creators means less of the usual accounts.
    const FOLLOW: &[&str] = &[
        "people i follow",
        "accounts i follow",
        "creators i follow",
        "who i follow",
        "folks i follow",
        "ppl i follow",
        "people i'm following",
        "my follows",
        "my following",
        "my followings",
        "following",
    ];
    const DISCOVER: &[&str] = &[
        "new creators",
        "new people",
        "new accounts",
        "new faces",
        "people i don't follow",
        "people i dont follow",
        "outside my bubble",
        "strangers",
        "discover",
        "discovery",
        "explore",
        "unknown creators",
        "different creators",
    ];
    if let Some(r) = FOLLOW.iter().find_map(|p| find(w, p)) {
        s.following = Some(if lessened || negated {
            Shift::Less
        } else {
            Shift::More
        });
        remove(w, r);
        w.retain(|x| !matches!(*x, "friends" | "friend" | "from" | "by" | "of"));
    } else if let Some(r) = DISCOVER.iter().find_map(|p| find(w, p)) {
        s.following = Some(Shift::Less);
        remove(w, r);
        w.retain(|x| !matches!(*x, "help" | "new" | "more"));
    }

    // Remixable content.
    if let Some(r) = ["remixable", "remixes", "remixing", "remix"]
        .iter()
        .find_map(|p| find(w, p))
    {
        s.remix = Some(!(negated || lessened));
        remove(w, r);
        w.retain(|x| !matches!(*x, "i" | "can" | "could" | "to" | "templates" | "template"));
    }

    // Freshness.
    const FRESH: &[&str] = &[
        "just posted",
        "brand new",
        "up to date",
        "latest",
        "newest",
        "newer",
        "recent",
        "freshest",
        "fresh",
        "new ones",
        "new videos",
        "new stuff",
        "new content",
        "new uploads",
        "new posts",
        "new",
    ];
    if let Some(r) = FRESH.iter().find_map(|p| find(w, p)) {
        s.freshness = Some(Freshness::Newer);
        remove(w, r);
        w.retain(|x| !matches!(*x, "first" | "ones" | "uploads" | "stuff"));
    }
    s
}

/// One item of a clause: its polarity, strength and target phrase.
#[derive(Debug, Clone, PartialEq)]
struct Item {
    polarity: Option<Polarity>,
    /// True when the item's own words carry its polarity (not inherited, not defaulted).
    marked: bool,
    /// Its marker is a litotes ("wouldn't mind more").
    litotes: bool,
    strength: f32,
    target: String,
    /// The item's words as written (normalised), for what is shown back to the person.
    words: String,
    /// Written in a language the parser does not read.
    foreign: bool,
    /// Byte range of the item's words in the normalised text.
    span: (usize, usize),
    /// Byte ranges of the target's words in the normalised text.
    target_spans: Vec<(usize, usize)>,
}

/// Function words of the languages people most often mix in, none of them a word of
/// everyday English (so not "sin", "nada", "pas" or "sans"): one of them marks an item as
/// written in a language the parser does not read.
const FOREIGN_WORDS: &[&str] = &[
    // Spanish
    "más",
    "menos",
    "quiero",
    "recetas",
    "también",
    "muy",
    "mucho",
    "mucha",
    "pero",
    "noticias",
    "política",
    "videos de",
    "porfa",
    "gracias",
    "deportes",
    "comida",
    "ningún",
    "ninguna",
    "solamente",
    // French
    "moins",
    "je",
    "veux",
    "beaucoup",
    "vidéos",
    "merci",
    "avec",
    "très",
    "actualités",
    "recettes",
    "seulement",
    "j'aime",
    "j'adore",
    // German
    "mehr",
    "weniger",
    "bitte",
    "ich",
    "keine",
    "nicht",
    "möchte",
    "mich",
    "und",
    "oder",
    "nur",
    "gerne",
    "nachrichten",
    "rezepte",
    // Portuguese
    "mais",
    "quero",
    "sem",
    "muito",
    "não",
    "receitas",
    "notícias",
    "também",
    "só",
    // Italian
    "più",
    "meno",
    "voglio",
    "senza",
    "molto",
    "ricette",
    "notizie",
    "soltanto",
];

/// True when a word has letters outside the Latin script (Cyrillic, Greek, CJK, Arabic,
/// ...; styled Unicode letters such as "𝓶𝓸𝓻𝓮" count too).
fn is_non_latin(w: &str) -> bool {
    w.chars().any(|c| c.is_alphabetic() && c > '\u{24f}')
}

/// True when an item's words are not English: letters outside the Latin script, one of
/// [`FOREIGN_WORDS`], or two accented words (one is a loanword: "café", "pokémon").
fn is_foreign(words: &[&str]) -> bool {
    let accented = |w: &str| w.chars().any(|c| c.is_alphabetic() && !c.is_ascii());
    words.iter().any(|w| is_non_latin(w))
        || words.iter().any(|w| FOREIGN_WORDS.contains(w))
        || words
            .windows(2)
            .any(|p| FOREIGN_WORDS.contains(&p.join(" ").as_str()))
        || words.iter().filter(|w| accented(w)).count() >= 2
}

/// The byte ranges of an item's words outside its target.
fn frame_ranges(item: &Item) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = item.span.0;
    for &(start, end) in &item.target_spans {
        if start > at {
            out.push((at, start));
        }
        at = at.max(end);
    }
    if item.span.1 > at {
        out.push((at, item.span.1));
    }
    out
}

/// Byte offset of `word`, a slice of `base`, in `base`.
fn offset_in(base: &str, word: &str) -> usize {
    (word.as_ptr() as usize).saturating_sub(base.as_ptr() as usize)
}

/// Reads one item's words, slices of the normalised text `base`.
fn read_item(base: &str, mut w: Vec<&str>) -> Item {
    let words = w.join(" ");
    // The words are slices of `base`: their addresses give the item's place.
    let span = (
        w.first().map_or(0, |x| offset_in(base, x)),
        w.last().map_or(0, |x| offset_in(base, x) + x.len()),
    );
    let foreign = is_foreign(&w);
    // "don't ever show", "never even show": the marker is the words around it.
    w.retain(|x| !matches!(*x, "ever" | "even"));
    let mut polarity = None;
    let mut strength = 1.0f32;
    // "wouldn't mind more", "not against": a mild request; "wouldn't mind less" keeps
    // the direction of the marker that follows, mildly.
    let litotes = litotes(&w);
    if let Some(r) = litotes {
        remove(&mut w, r);
    }
    for (marker, p, s) in MARKERS {
        if let Some(r) = find(&w, marker) {
            if polarity.is_none() {
                polarity = Some(*p);
                strength = *s;
            }
            remove(&mut w, r);
        }
    }
    if litotes.is_some() {
        if !matches!(polarity, Some(Polarity::Reduce | Polarity::Exclude)) {
            polarity = Some(Polarity::Boost);
        }
        strength = 0.5;
    }
    if polarity.is_some() {
        for (word, factor) in INTENSIFIERS {
            if let Some(r) = find(&w, word) {
                if strength == 1.0 {
                    strength = *factor;
                }
                remove(&mut w, r);
            }
        }
    }
    let target: Vec<&str> = w
        .into_iter()
        .filter(|x| !FILLER.contains(x) && !x.chars().all(|c| c == '\''))
        .collect();
    let target_spans = target
        .iter()
        .map(|x| {
            let start = offset_in(base, x);
            (start, start + x.len())
        })
        .collect();
    Item {
        marked: polarity.is_some(),
        litotes: litotes.is_some(),
        polarity,
        strength,
        target: target.join(" "),
        words,
        foreign,
        span,
        target_spans,
    }
}

/// Splits normalised text into clauses of items, reading slots per clause.
fn analyse(text: &str, max_items: usize) -> (Vec<Item>, Slots) {
    let mut slots = Slots::default();
    let mut items = Vec::new();
    let all = words(text);
    let mut clauses: Vec<Vec<&str>> = vec![Vec::new()];
    let mut prev = "";
    for w in all {
        // "nothing but" and "anything but" are markers, not clause breaks.
        let protected = w == "but" && matches!(prev, "nothing" | "anything" | "everything");
        if !protected
            && (matches!(w, "," | ";" | "." | "!" | "?" | ":" | "/" | "-")
                || CLAUSE_BREAKS.contains(&w))
        {
            clauses.push(Vec::new());
        } else if let Some(last) = clauses.last_mut() {
            last.push(w);
        }
        prev = w;
    }
    let mut previous: Option<(Polarity, f32)> = None;
    for mut clause in clauses.into_iter().filter(|c| !c.is_empty()) {
        let narrative = contains_any(&clause, NARRATIVE);
        let found = take_slots(&mut clause);
        merge(&mut slots, found);
        let mut clause_polarity: Option<(Polarity, f32)> = None;
        let mut current: Vec<&str> = Vec::new();
        let mut parts = Vec::new();
        for w in clause {
            if ITEM_BREAKS.contains(&w) {
                parts.push(std::mem::take(&mut current));
            } else {
                current.push(w);
            }
        }
        parts.push(current);
        let mut previous_foreign = false;
        for part in parts.into_iter().filter(|p| !p.is_empty()) {
            if contains_any(&part, INJECTION) {
                continue;
            }
            // Words in another script are said back on their own; the rest of the item
            // is read as usual.
            let (alien, part): (Vec<&str>, Vec<&str>) =
                part.into_iter().partition(|w| is_non_latin(w));
            if !alien.is_empty() && items.len() < max_items {
                items.push(Item {
                    polarity: None,
                    marked: false,
                    litotes: false,
                    strength: 1.0,
                    target: String::new(),
                    words: alien.join(" "),
                    foreign: true,
                    span: (0, 0),
                    target_spans: Vec::new(),
                });
            }
            if part.is_empty() {
                continue;
            }
            let mut item = read_item(text, part);
            // "je veux plus de musique": what follows a foreign item without a marker of
            // its own is part of it.
            item.foreign |= previous_foreign && !item.marked;
            previous_foreign = item.foreign;
            if item.foreign {
                if items.len() < max_items {
                    items.push(item);
                }
                continue;
            }
            match (item.polarity, clause_polarity) {
                (Some(p), _) => clause_polarity = Some((p, item.strength)),
                (None, Some((p, s))) => {
                    item.polarity = Some(p);
                    item.strength = s;
                }
                (None, None) if narrative => continue,
                // A short unmarked clause after a marked one continues its list:
                // "more gaming, anime" boosts both.
                (None, None) => {
                    if let Some((p, s)) = previous.filter(|_| item.target.split(' ').count() <= 3) {
                        item.polarity = Some(p);
                        item.strength = s;
                    }
                }
            }
            if (!item.target.is_empty() || item.foreign) && items.len() < max_items {
                items.push(item);
            }
        }
        if clause_polarity.is_some() {
            previous = clause_polarity;
        }
    }
    (items, slots)
}

fn push_unclear(
    c: &mut Constraints,
    words: &str,
    reason: UnclearReason,
    suggestion: Option<TopicId>,
) {
    let phrase: String = clip(words);
    if c.unclear.len() < steerfeed_core::constraints::MAX_CONCEPTS
        && !c.unclear.iter().any(|u| u.phrase == phrase)
    {
        c.unclear.push(Unclear {
            phrase,
            reason,
            suggestion,
        });
    }
}

/// `text` cut to the longest phrase constraints keep, at a character boundary.
fn clip(text: &str) -> String {
    let mut end = text.len().min(steerfeed_core::constraints::MAX_PHRASE_LEN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// The safety net's words of a phrase, without the marks the parser's own normalising
/// drops ("18+" is "18").
fn plain_words(phrase: &str) -> Vec<String> {
    crate::safety::tokens(phrase)
        .into_iter()
        .map(|w| w.trim_end_matches(['+', '*']).to_owned())
        .filter(|w| !w.is_empty() && w != ".")
        .collect()
}

fn merge(into: &mut Slots, from: Slots) {
    into.following = from.following.or(into.following);
    into.freshness = from.freshness.or(into.freshness);
    into.max_duration_s = from.max_duration_s.or(into.max_duration_s);
    into.remix = from.remix.or(into.remix);
    into.friends_cameos = from.friends_cameos.or(into.friends_cameos);
}

/// Smallest probability with which a slot head overrides what the word lists read.
const SLOT_CONFIDENCE: f32 = 0.5;
/// Smallest probability with which the intensity head overrides the word lists'
/// strength.
const INTENSITY_CONFIDENCE: f32 = 0.8;

/// One item with what the reader decides from.
struct ReadItem {
    item: Item,
    target: Embedding,
    topic: Option<TopicMatch>,
    /// The slot the target asks about, when it is closer to one than to any topic.
    slot: Option<SlotMatch>,
    features: Vec<f32>,
}

/// A text read up to the reader's decisions.
struct Reading {
    items: Vec<ReadItem>,
    foreign: Vec<Item>,
    slots: Slots,
    text_features: Vec<f32>,
}

/// What the reader sees of one text (see [`PreferenceParser::reader_inputs`]).
#[derive(Debug, Clone)]
pub struct ReaderInputs {
    /// Per item: its closest topic and slot and the item head's features.
    pub items: Vec<ReaderItem>,
    /// The text heads' features.
    pub text: Vec<f32>,
    /// Similarity under which an item's topic is not applied.
    pub topic_threshold: f32,
}

/// What the reader sees of one item.
#[derive(Debug, Clone)]
pub struct ReaderItem {
    /// Its closest topic.
    pub topic: Option<TopicMatch>,
    /// The slot it asks about, when its target is closer to one than to any topic.
    pub slot: Option<SlotKind>,
    /// The word lists read it as an exclusion.
    pub excluding: bool,
    /// The item head's features (empty past the model's longest input).
    pub features: Vec<f32>,
}

/// Turns plain-language preferences into constraints.
#[derive(Debug, Clone)]
pub struct PreferenceParser {
    encoder: Arc<Encoder>,
    taxonomy: Arc<Taxonomy>,
    safety: Arc<SafetyNet>,
    reader: Option<Arc<Reader>>,
    slots: Arc<SlotExemplars>,
    speller: Arc<Speller>,
    phrases: Arc<PhraseCache>,
    config: ParserConfig,
}

impl PreferenceParser {
    /// A parser over `taxonomy`, embedding with `encoder`, checking teens' requests
    /// against `safety`, its items read by `reader` (by the word lists alone when none).
    pub fn new(
        encoder: Arc<Encoder>,
        taxonomy: Arc<Taxonomy>,
        safety: Arc<SafetyNet>,
        reader: Option<Arc<Reader>>,
        config: ParserConfig,
    ) -> Self {
        Self {
            encoder,
            taxonomy,
            safety,
            reader,
            slots: Arc::new(SlotExemplars::default()),
            speller: Arc::new(Speller::default()),
            phrases: Arc::new(PhraseCache::default()),
            config,
        }
    }

    /// The same parser matching requests' targets against `slots` too (none by
    /// default: only the word lists and the text heads read slots).
    pub fn with_slots(mut self, slots: Arc<SlotExemplars>) -> Self {
        self.slots = slots;
        self
    }

    /// The same parser with another reader (none: the word lists alone).
    pub fn with_reader(mut self, reader: Option<Arc<Reader>>) -> Self {
        self.reader = reader;
        self
    }

    /// The same parser repairing spelling with `speller` before it reads (no repair by
    /// default).
    pub fn with_speller(mut self, speller: Arc<Speller>) -> Self {
        self.speller = speller;
        self
    }

    /// The learned reader, when one is in use.
    pub fn reader(&self) -> Option<&Reader> {
        self.reader.as_deref()
    }

    /// Resolves constraints to directions in the embedding space, through the phrase
    /// embeddings this parser computed when the person wrote them.
    pub fn concepts(&self) -> ConceptResolver<'_> {
        ConceptResolver {
            encoder: &self.encoder,
            taxonomy: &self.taxonomy,
            cache: &self.phrases,
        }
    }

    /// A parser with the taxonomy and the restricted-concept table `config` names (the
    /// defaults when it names none).
    pub fn open(encoder: Arc<Encoder>, config: ParserConfig) -> Result<Self> {
        let taxonomy = match (&config.taxonomy, &config.exemplars) {
            (Some(path), None) => Taxonomy::from_file(path, &encoder)?,
            (Some(path), Some(ex)) => {
                Taxonomy::from_file(path, &encoder)?.with_exemplars_file(ex, &encoder)?
            }
            (None, None) => Taxonomy::default_with(&encoder)?,
            (None, Some(ex)) => Taxonomy::from_tsv(crate::taxonomy::DEFAULT_TAXONOMY, &encoder)?
                .with_exemplars_file(ex, &encoder)?,
        };
        let safety = match &config.restricted {
            Some(path) => SafetyNet::from_file(path, &encoder, config.safety_threshold)?,
            None => SafetyNet::from_tsv(
                crate::safety::DEFAULT_RESTRICTED,
                &encoder,
                config.safety_threshold,
            )?,
        };
        let slots = match &config.slots {
            Some(path) => SlotExemplars::from_file(path, &encoder)?,
            None => SlotExemplars::from_tsv(crate::slots::DEFAULT_SLOTS, &encoder)?,
        };
        let reader = match (&config.reader, config.use_reader) {
            (_, false) => None,
            (Some(path), true) => Some(Arc::new(Reader::from_file(path, encoder.dim())?)),
            (None, true) => Some(Arc::new(Reader::default_for(encoder.dim())?)),
        };
        // Misspelt words are repaired toward the words topics and slots are matched by;
        // the parser's own words and the safety table's are never changed.
        let speller = Speller::new(
            encoder.vocabulary(),
            taxonomy
                .phrases()
                .iter()
                .chain(slots.phrases())
                .cloned()
                .collect::<Vec<_>>(),
        )
        .with_reserved(
            MARKERS
                .iter()
                .map(|m| m.0)
                .chain(INTENSIFIERS.iter().map(|i| i.0))
                .chain(
                    [
                        FILLER,
                        LITOTES_NEGATIONS,
                        LITOTES_PREDICATES,
                        INJECTION,
                        NARRATIVE,
                        CLAUSE_BREAKS,
                        ITEM_BREAKS,
                        LESS_WORDS,
                        NEG_WORDS,
                        FOREIGN_WORDS,
                    ]
                    .into_iter()
                    .flatten()
                    .copied(),
                )
                .chain(safety.vocabulary()),
        );
        Ok(Self::new(
            encoder,
            Arc::new(taxonomy),
            Arc::new(safety),
            reader,
            config,
        )
        .with_slots(Arc::new(slots))
        .with_speller(Arc::new(speller)))
    }

    /// Longest preference text accepted, in bytes.
    pub fn max_text_bytes(&self) -> usize {
        self.config.max_text_bytes
    }

    /// The teen safety net.
    pub fn safety(&self) -> &SafetyNet {
        &self.safety
    }

    /// The encoder it embeds phrases with.
    pub fn encoder(&self) -> &Arc<Encoder> {
        &self.encoder
    }

    /// The taxonomy topics are matched against.
    pub fn taxonomy(&self) -> &Taxonomy {
        &self.taxonomy
    }

    /// Fills in what the app left out of videos: the embedding from the caption (all
    /// captions in one batch) and the topics inferred from the embedding; then adds the
    /// safety label the taxonomy gives each of a video's topics.
    pub fn prepare_videos(&self, videos: &mut [steerfeed_core::Video]) -> Result<()> {
        let missing: Vec<usize> = (0..videos.len())
            .filter(|&i| videos[i].embedding.is_none())
            .collect();
        if !missing.is_empty() {
            let captions: Vec<&str> = missing
                .iter()
                .map(|&i| videos[i].caption.as_str())
                .collect();
            let vectors = self.encoder.embed_batch(&captions)?;
            for (&i, v) in missing.iter().zip(vectors) {
                videos[i].embedding = Some(v);
            }
        }
        for v in videos.iter_mut().filter(|v| v.topics.is_empty()) {
            if let Some(e) = &v.embedding
                && e.dim() == self.encoder.dim()
            {
                v.topics = self.taxonomy.infer(
                    e,
                    self.config.caption_max_topics,
                    self.config.caption_topic_threshold,
                );
            }
        }
        // The taxonomy's policy: a topic's label goes on its videos, whether the app
        // named the topic or it was inferred, besides the labels the app gave.
        for v in videos.iter_mut() {
            for label in v.topics.iter().filter_map(|t| self.taxonomy.label(t)) {
                if !v.safety.contains(&label) {
                    v.safety.push(label);
                }
            }
        }
        Ok(())
    }

    /// Parses `text` for a viewer of `audience`. Text with no usable intent gives empty
    /// constraints; text longer than `max_text_bytes` is an error.
    pub fn parse(&self, text: &str, audience: AgeBand, now: Timestamp) -> Result<Constraints> {
        if text.len() > self.config.max_text_bytes {
            return Err(CoreError::TooLarge {
                field: "text",
                limit: self.config.max_text_bytes,
                got: text.len(),
            }
            .into());
        }
        steerfeed_core::wire::check_text("text", text)?;
        // A teen's text is read as written: the safety net reads it as written too, and
        // a repair must never turn what it flags into something else.
        let reading = self.read(text, self.reader.is_some(), audience != AgeBand::Teen)?;
        let Reading {
            items,
            foreign,
            mut slots,
            text_features,
        } = reading;
        if let Some(reader) = self.reader.as_ref().filter(|_| !text_features.is_empty()) {
            // A head overrides the word lists only when it is sure enough.
            let sure = |d: Option<(usize, f32)>| d.filter(|d| d.1 >= SLOT_CONFIDENCE).map(|d| d.0);
            if let Some(class) = sure(reader.following.predict(&text_features)) {
                slots.following = match class {
                    1 => Some(Shift::More),
                    2 => Some(Shift::Less),
                    _ => None,
                };
            }
            if let Some(class) = sure(reader.friends.predict(&text_features)) {
                slots.friends_cameos = match class {
                    1 => Some(true),
                    2 => Some(false),
                    _ => None,
                };
            }
        }
        let mut c = Constraints {
            following: slots.following,
            freshness: slots.freshness,
            max_duration_s: slots.max_duration_s,
            remix: slots.remix,
            friends_cameos: slots.friends_cameos,
            ..Constraints::default()
        };
        let teen = audience == AgeBand::Teen;
        // The requests the teen safety net flagged, as word sets.
        let mut flagged: Vec<Vec<String>> = Vec::new();
        if teen {
            // The net reads the text on its own; what it flags is rejected whatever the
            // items below map to.
            for flag in self.safety.check(&self.encoder, text)? {
                self.reject_restricted(&mut c, flag.category, &flag.phrase);
                flagged.push(plain_words(&flag.phrase));
            }
        }
        for ReadItem {
            item,
            target: v,
            topic,
            slot,
            features,
        } in &items
        {
            let rule = item.polarity.unwrap_or(Polarity::Boost);
            // The reader's list for the item, or None when it reads no request in it.
            // (An item past the model's longest input has no features and the reader
            // decides nothing: the word lists read it.)
            let decided = self
                .reader
                .as_ref()
                .and_then(|r| r.polarity.predict(features));
            let polarity = match decided {
                Some((0, _)) => Some(Polarity::Boost),
                Some((1, _)) => Some(Polarity::Reduce),
                Some((2, _)) => Some(Polarity::Exclude),
                Some((3, _)) => Some(Polarity::Only),
                Some(_) => None,
                None => Some(rule),
            };
            // How strongly it asks: the reader's intensity head when it is sure, else the
            // word lists.
            let strength = self
                .reader
                .as_ref()
                .and_then(|r| r.intensity.predict(features))
                .filter(|(_, p)| *p >= INTENSITY_CONFIDENCE)
                .and_then(|(class, _)| crate::reader::INTENSITY_STRENGTHS.get(class).copied())
                .unwrap_or(item.strength);
            let is_positive = |p: Polarity| matches!(p, Polarity::Boost | Polarity::Only);
            // For a teen, an item either reading finds positive is checked.
            let positive = is_positive(rule) || polarity.is_some_and(is_positive);
            if teen && positive {
                if let Some(category) = self.safety.check_phrase(&item.target, v) {
                    self.reject_restricted(&mut c, category, &item.target);
                    continue;
                }
                // Part of a request the net flagged ("more cooking with beer" is rejected
                // as a whole; the cooking part is not applied on its own).
                let words = plain_words(&item.target);
                if flagged.iter().any(|f| words.iter().all(|w| f.contains(w))) {
                    continue;
                }
            }
            // A teen's positive request whose topic the policy refuses is refused, even
            // when its words are closer still to a slot.
            let refusable = teen
                && positive
                && topic.as_ref().is_some_and(|m| {
                    m.similarity >= self.config.topic_threshold
                        && self.taxonomy.label(&m.topic).is_some()
                });
            if let Some(slot) = slot.filter(|_| !refusable) {
                // A request about a slot ("more vids with my pals in them", "fewer
                // randoms"): the list sets its direction, and it names no topic.
                if let Some(p) = polarity {
                    let on = is_positive(p) != slot.kind.inverted();
                    match slot.kind {
                        SlotKind::Friends => c.friends_cameos = Some(on),
                        SlotKind::Following | SlotKind::Strangers => {
                            c.following = Some(if on { Shift::More } else { Shift::Less });
                        }
                        SlotKind::Remix | SlotKind::Originals => c.remix = Some(on),
                    }
                }
                continue;
            }
            let Some(m) = topic.clone() else {
                continue;
            };
            let refused = teen && self.taxonomy.label(&m.topic).is_some();
            if polarity.is_none() && !item.marked && !refused {
                continue;
            }
            if m.similarity < self.config.topic_threshold {
                // Asked for in so many words, or close to a topic without reaching it:
                // said back rather than dropped or guessed (with the topic when it came
                // close).
                let near = m.similarity >= self.config.topic_threshold - self.config.unclear_margin;
                if item.marked || near {
                    // Never suggest to a teen what a teen may not ask for.
                    let suggestion = near
                        .then_some(m.topic)
                        .filter(|t| !(teen && self.taxonomy.label(t).is_some()));
                    push_unclear(
                        &mut c,
                        &item.words,
                        UnclearReason::LowConfidence,
                        suggestion,
                    );
                }
                continue;
            }
            if refused {
                // For a teen, a topic the policy refuses is refused when either reading
                // finds the item positive (the reader reading "show adult content" as an
                // exclusion, or dropping a bare "sad videos", must not hide the refusal),
                // and excluded or reduced when the word lists read it so: both apply.
                if matches!(rule, Polarity::Exclude | Polarity::Reduce) {
                    self.add(
                        &mut c,
                        rule,
                        strength,
                        m.topic.clone(),
                        &item.target,
                        audience,
                    );
                }
                if positive {
                    self.add(
                        &mut c,
                        Polarity::Boost,
                        strength,
                        m.topic,
                        &item.target,
                        audience,
                    );
                }
                continue;
            }
            let Some(polarity) = polarity else {
                continue;
            };
            self.add(&mut c, polarity, strength, m.topic, &item.target, audience);
        }
        for item in &foreign {
            push_unclear(
                &mut c,
                &item.words,
                UnclearReason::UnsupportedLanguage,
                None,
            );
        }
        if !c.is_empty() || !c.rejected.is_empty() {
            c.expires_at = now
                .checked_add(jiff::SignedDuration::from_hours(
                    24 * self.config.expiry_days,
                ))
                .ok();
        }
        Ok(c)
    }

    /// Reads `text` up to what the reader decides from: its items with their target
    /// embeddings, topics and features, the items in a language the parser does not
    /// read, the word lists' slots and the text's features. All phrases are embedded
    /// in one batch; the items' words and the whole text too when `features` is set.
    fn read(&self, text: &str, features: bool, repair: bool) -> Result<Reading> {
        let written = normalise(text);
        let normalised = if repair {
            self.speller.correct(&written)
        } else {
            written
        };
        let (all_items, slots) = analyse(&normalised, self.config.max_items);
        let (foreign, items): (Vec<Item>, Vec<Item>) =
            all_items.into_iter().partition(|i| i.foreign);
        let targets: Vec<&str> = items.iter().map(|i| i.target.as_str()).collect();
        let targets = if targets.is_empty() {
            Vec::new()
        } else {
            self.phrases.embed(&self.encoder, &targets)?
        };
        // Each item's frame (its words other than the target: "can't get enough of",
        // "just ... nothing else") read in the context of the whole text: one run of
        // the model over the text, each frame the mean of its tokens' states.
        let (whole, words, covered) = if features && !normalised.is_empty() {
            let frames: Vec<Vec<(usize, usize)>> = items.iter().map(frame_ranges).collect();
            let (whole, words, covered) = self.encoder.embed_spans(&normalised, &frames)?;
            (Some(whole), words, covered)
        } else {
            (None, Vec::new(), 0)
        };
        let several = items.len() > 1;
        let mut read = Vec::with_capacity(items.len());
        for (i, (item, target)) in items.into_iter().zip(targets).enumerate() {
            let topic = self.taxonomy.best_for(&item.target, &target, f32::MIN);
            let slot = self.slots.best(&target).filter(|s| {
                s.similarity >= self.config.topic_threshold
                    && topic.as_ref().is_none_or(|t| s.similarity > t.similarity)
            });
            let zeros;
            // An item the model did not read to its end (past its longest input) has
            // no features: the word lists read it.
            let frame = match words.get(i).filter(|_| item.span.1 <= covered) {
                Some(Some(w)) => Some(w.as_slice()),
                // An item that is all target ("cat videos") has an empty frame.
                Some(None) => {
                    zeros = vec![0.0; self.encoder.dim()];
                    Some(zeros.as_slice())
                }
                None => None,
            };
            let features = match (frame, &whole) {
                (Some(w), Some(t)) => {
                    let (negated, closed) = ItemCues::read(&item.words, &normalised);
                    let cues = ItemCues {
                        rule: match item.polarity {
                            None => 0,
                            Some(Polarity::Boost) => 1,
                            Some(Polarity::Reduce) => 2,
                            Some(Polarity::Exclude) => 3,
                            Some(Polarity::Only) => 4,
                        },
                        marked: item.marked,
                        strength: item.strength,
                        negated,
                        litotes: item.litotes,
                        closed,
                        similarity: topic.as_ref().map_or(0.0, |m| m.similarity),
                        first: i == 0,
                        several,
                    };
                    crate::reader::item_features(w, target.as_slice(), t.as_slice(), &cues)
                }
                _ => Vec::new(),
            };
            read.push(ReadItem {
                item,
                target,
                topic,
                slot,
                features,
            });
        }
        let text_features = whole.map_or_else(Vec::new, |t| {
            let cues = TextCues {
                following: match slots.following {
                    None => 0,
                    Some(Shift::More) => 1,
                    Some(Shift::Less) => 2,
                },
                friends: match slots.friends_cameos {
                    None => 0,
                    Some(true) => 1,
                    Some(false) => 2,
                },
            };
            crate::reader::text_features(t.as_slice(), &cues)
        });
        Ok(Reading {
            items: read,
            foreign,
            slots,
            text_features,
        })
    }

    /// What the reader sees of `text`, for fitting it: per item its topic (with the
    /// similarity) and features, and the text's features.
    pub fn reader_inputs(&self, text: &str) -> Result<ReaderInputs> {
        let reading = self.read(text, true, true)?;
        Ok(ReaderInputs {
            items: reading
                .items
                .into_iter()
                .map(|r| ReaderItem {
                    topic: r.topic,
                    slot: r.slot.map(|s| s.kind),
                    excluding: r.item.polarity == Some(Polarity::Exclude),
                    features: r.features,
                })
                .collect(),
            text: reading.text_features,
            topic_threshold: self.config.topic_threshold,
        })
    }

    /// Lists a request the teen safety net matched under `rejected`, once per category.
    fn reject_restricted(&self, c: &mut Constraints, category: usize, phrase: &str) {
        let Some(cat) = self.safety.categories().get(category) else {
            return;
        };
        if c.rejected.iter().any(|r| r.label == Some(cat.label)) {
            return;
        }
        let topic = cat.topic.clone().filter(|t| self.taxonomy.contains(t));
        c.rejected.push(Rejected {
            topic,
            label: Some(cat.label),
            phrase: Some(clip(phrase)),
            reason: cat.reason.clone(),
        });
    }

    fn add(
        &self,
        c: &mut Constraints,
        polarity: Polarity,
        strength: f32,
        topic: TopicId,
        phrase: &str,
        audience: AgeBand,
    ) {
        let phrase: String = clip(phrase);
        let positive = matches!(polarity, Polarity::Boost | Polarity::Only);
        if positive
            && audience == AgeBand::Teen
            && let Some(reason) = self.taxonomy.label(&topic).map(SafetyLabel::teen_refusal)
        {
            if !c.rejected.iter().any(|r| r.topic.as_ref() == Some(&topic)) {
                c.rejected.push(Rejected {
                    topic: Some(topic),
                    label: None,
                    phrase: Some(phrase),
                    reason: reason.to_owned(),
                });
            }
            return;
        }
        match polarity {
            Polarity::Boost | Polarity::Reduce => {
                let list = if polarity == Polarity::Boost {
                    &mut c.boost
                } else {
                    &mut c.reduce
                };
                if let Some(existing) = list.iter_mut().find(|x| {
                    x.topic.as_ref() == Some(&topic) && x.phrase.as_deref() == Some(phrase.as_str())
                }) {
                    existing.strength = existing.strength.max(strength);
                } else {
                    list.push(WeightedConcept {
                        topic: Some(topic),
                        phrase: Some(phrase),
                        strength: strength.min(steerfeed_core::constraints::MAX_STRENGTH),
                        expires_at: None,
                        description: None,
                    });
                }
            }
            Polarity::Exclude | Polarity::Only => {
                let list = if polarity == Polarity::Exclude {
                    &mut c.exclude
                } else {
                    &mut c.only
                };
                let concept = Concept {
                    topic: Some(topic),
                    phrase: Some(phrase),
                    expires_at: None,
                    description: None,
                };
                if !list.contains(&concept) {
                    list.push(concept);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(text: &str) -> Vec<(Option<Polarity>, String)> {
        analyse(&normalise(text), 16)
            .0
            .into_iter()
            .map(|i| (i.polarity, i.target))
            .collect()
    }

    #[test]
    fn clauses_items_and_markers() {
        assert_eq!(
            targets("Way more cooking, less news; NO horror!"),
            vec![
                (Some(Polarity::Boost), "cooking".into()),
                (Some(Polarity::Reduce), "news".into()),
                (Some(Polarity::Exclude), "horror".into()),
            ]
        );
        assert_eq!(
            targets("less beauty and makeup"),
            vec![
                (Some(Polarity::Reduce), "beauty".into()),
                (Some(Polarity::Reduce), "makeup".into())
            ]
        );
        assert_eq!(
            targets("I don’t want politics"),
            vec![(Some(Polarity::Exclude), "politics".into())]
        );
        assert_eq!(
            targets("travel videos please"),
            vec![(None, "travel".into())]
        );
        assert!(targets("I like videos").is_empty());
        assert!(targets("").is_empty());
        assert!(targets("?!?! ... 🙂🙂").is_empty());
    }

    #[test]
    fn litotes_ask_mildly_and_plain_negations_still_exclude() {
        for text in [
            "i wouldn't mind more jazz",
            "not against some jazz",
            "no complaints about more jazz",
            "i'd not say no to jazz",
            "it wouldn't hurt to see jazz",
            "i have nothing against jazz",
        ] {
            let (items, _) = analyse(&normalise(text), 16);
            assert_eq!(items.len(), 1, "{text}");
            assert_eq!(items[0].polarity, Some(Polarity::Boost), "{text}");
            assert!(items[0].litotes, "{text}");
            assert_eq!(items[0].target, "jazz", "{text}");
        }
        let (items, _) = analyse(&normalise("i wouldn't mind less jazz"), 16);
        assert_eq!(items[0].polarity, Some(Polarity::Reduce));
        assert_eq!(items[0].strength, 0.5);
        for text in [
            "no jazz",
            "never jazz, it's bad",
            "i don't want jazz",
            "zero jazz please",
            "no jazz i hate it",
        ] {
            let (items, _) = analyse(&normalise(text), 16);
            assert!(!items[0].litotes, "{text}");
            assert_eq!(items[0].polarity, Some(Polarity::Exclude), "{text}");
            assert!(items[0].target.contains("jazz"), "{text}");
        }
    }

    #[test]
    fn intensity() {
        let (items, _) = analyse(&normalise("a bit more anime but way less drama"), 16);
        assert_eq!(items[0].strength, 0.5);
        assert_eq!(items[1].strength, 2.0);
        assert_eq!(items[1].polarity, Some(Polarity::Reduce));
    }

    #[test]
    fn slots() {
        let s = |t: &str| analyse(&normalise(t), 16).1;
        assert_eq!(s("videos shorter than 20 seconds").max_duration_s, Some(20));
        assert_eq!(s("nothing over 2 minutes").max_duration_s, Some(120));
        assert_eq!(
            s("show me more posts from people I follow").following,
            Some(Shift::More)
        );
        assert_eq!(s("less from people i follow").following, Some(Shift::Less));
        assert_eq!(
            s("help me discover new creators").following,
            Some(Shift::Less)
        );
        assert_eq!(s("latest videos first").freshness, Some(Freshness::Newer));
        assert_eq!(s("show me things I can remix").remix, Some(true));
        assert_eq!(s("show me cameos of my friends").friends_cameos, Some(true));
        let t = analyse(&normalise("show me things I can remix"), 16).0;
        assert!(t.is_empty(), "{t:?}");
    }
}
