//! The learned reader: softmax heads over the sentence encoder's embeddings that decide
//! what a person asked for.
//!
//! The parser cuts a text into items ("way less politics", "just cooking nothing else")
//! and maps each item's target words to a topic; the reader decides, per item, which
//! list the item goes to (boost, reduce, exclude, only) or that it is not a request at
//! all (drop) and how strongly it asks (mild, normal, strong), and, per text, whether the person asked for more or less from the people
//! they follow and for friends' cameos. Each decision is a multinomial logistic
//! regression over the MiniLM embedding of the item as written, the embedding of the
//! whole text, and a few cues the parser's word lists read (the marker they found, a
//! negation, "nothing else"): the word lists are features, the heads decide.
//!
//! The heads are fitted on `data/reader/corpus.jsonl` by `steerfeed prefs train` (with
//! the `train` feature, through `linfa-logistic`) and shipped as `data/reader/reader.json`
//! with its SHA-256 beside it; inference is a matrix product with `ndarray`.

use ndarray::{Array1, Array2};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The weights the project ships, fitted on the project's corpus.
pub const DEFAULT_READER: &str = include_str!("../../../data/reader/reader.json");
/// Their SHA-256, as `steerfeed prefs train` wrote it.
pub const DEFAULT_READER_SHA256: &str = include_str!("../../../data/reader/reader.json.sha256");

/// Layout of the features; a weights file of another layout is refused.
pub const FEATURES_VERSION: u32 = 5;

/// The item head's classes, in the order of its outputs.
pub const POLARITY_CLASSES: [&str; 5] = ["boost", "reduce", "exclude", "only", "drop"];
/// The following head's classes.
pub const FOLLOWING_CLASSES: [&str; 3] = ["none", "more", "less"];
/// The friends' cameos head's classes.
pub const FRIENDS_CLASSES: [&str; 3] = ["none", "more", "less"];
/// The intensity head's classes: how strongly an item asks ("a bit more", "more", "way
/// more").
pub const INTENSITY_CLASSES: [&str; 3] = ["mild", "normal", "strong"];
/// The strength of each intensity class, in the constraints' scale.
pub const INTENSITY_STRENGTHS: [f32; 3] = [0.5, 1.0, 2.0];

/// Words that say an item is negated, whatever marker the word lists found.
const NEGATIONS: &[&str] = &[
    "not", "no", "never", "none", "zero", "without", "don't", "dont", "doesn't", "isn't", "can't",
    "cant", "couldn't", "won't", "wouldn't", "nothing", "hate", "except", "but",
];

/// Words and phrases that close a request to everything else ("just X, nothing else").
const CLOSURES: &[&str] = &[
    "nothing else",
    "that's it",
    "thats it",
    "and only",
    "nothing more",
    "only",
    "just",
    "exclusively",
    "solely",
    "strictly",
    "all i want",
    "nothing but",
];

/// What the parser's word lists read of one item, as the reader's cues.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ItemCues {
    /// The list the word lists put the item in (0 none, 1 boost, 2 reduce, 3 exclude,
    /// 4 only).
    pub rule: usize,
    /// The item's own words carry the marker.
    pub marked: bool,
    /// The marker's strength (0.5 a little, 1, 2 a lot).
    pub strength: f32,
    /// The item's words hold a negation.
    pub negated: bool,
    /// Its marker is a negated objection ("wouldn't mind", "not against"): a request.
    pub litotes: bool,
    /// The whole text closes itself to everything else.
    pub closed: bool,
    /// Similarity of the item's target to its topic.
    pub similarity: f32,
    /// The item is the text's first.
    pub first: bool,
    /// The text has more than one item.
    pub several: bool,
}

/// Number of cue features of an item.
const ITEM_CUES: usize = 14;
/// Number of cue features of a text.
const TEXT_CUES: usize = 6;

impl ItemCues {
    /// The cues of an item whose words are `words`, in a text `text` (both normalised).
    pub fn read(words: &str, text: &str) -> (bool, bool) {
        let negated = words.split(' ').any(|w| NEGATIONS.contains(&w));
        let padded = format!(" {text} ");
        let closed = CLOSURES.iter().any(|c| padded.contains(&format!(" {c} ")));
        (negated, closed)
    }

    fn push(&self, out: &mut Vec<f32>) {
        let mut rule = [0.0f32; 5];
        rule[self.rule.min(4)] = 1.0;
        out.extend_from_slice(&rule);
        out.push(f32::from(u8::from(self.marked)));
        out.push(f32::from(u8::from(self.strength < 1.0)));
        out.push(f32::from(u8::from(self.strength > 1.0)));
        out.push(f32::from(u8::from(self.negated)));
        out.push(f32::from(u8::from(self.litotes)));
        out.push(f32::from(u8::from(self.closed)));
        out.push(self.similarity);
        out.push(f32::from(u8::from(self.first)));
        out.push(f32::from(u8::from(self.several)));
    }
}

/// What the word lists read of a whole text's slots, as cues.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TextCues {
    /// Following: 0 not named, 1 more, 2 less.
    pub following: usize,
    /// Friends' cameos: 0 not named, 1 more, 2 less.
    pub friends: usize,
}

impl TextCues {
    fn push(&self, out: &mut Vec<f32>) {
        let mut f = [0.0f32; 6];
        f[self.following.min(2)] = 1.0;
        f[3 + self.friends.min(2)] = 1.0;
        out.extend_from_slice(&f);
    }
}

/// The features of an item: the embedding of its frame (its words other than the
/// target) in context, its target's embedding, the text's, its cues.
pub fn item_features(frame: &[f32], target: &[f32], text: &[f32], cues: &ItemCues) -> Vec<f32> {
    let mut out = Vec::with_capacity(frame.len() + target.len() + text.len() + ITEM_CUES);
    out.extend_from_slice(frame);
    out.extend_from_slice(target);
    out.extend_from_slice(text);
    cues.push(&mut out);
    out
}

/// The features of a text: its embedding and its slot cues.
pub fn text_features(text: &[f32], cues: &TextCues) -> Vec<f32> {
    let mut out = Vec::with_capacity(text.len() + TEXT_CUES);
    out.extend_from_slice(text);
    cues.push(&mut out);
    out
}

/// One softmax head.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    classes: Vec<String>,
    /// features × classes.
    weights: Array2<f32>,
    intercept: Array1<f32>,
}

impl Head {
    /// A head from its parts; the shapes must agree.
    pub fn new(classes: Vec<String>, weights: Array2<f32>, intercept: Array1<f32>) -> Result<Self> {
        if weights.ncols() != classes.len() || intercept.len() != classes.len() {
            return Err(Error::Reader(format!(
                "a head of {} classes has {} weight columns and {} intercepts",
                classes.len(),
                weights.ncols(),
                intercept.len()
            )));
        }
        if weights
            .iter()
            .chain(intercept.iter())
            .any(|v| !v.is_finite())
        {
            return Err(Error::Reader("a weight is not a finite number".into()));
        }
        Ok(Self {
            classes,
            weights,
            intercept,
        })
    }

    /// The class names, in output order.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Number of input features.
    pub fn inputs(&self) -> usize {
        self.weights.nrows()
    }

    /// Class probabilities of `features` (which must have [`Head::inputs`] values).
    pub fn probabilities(&self, features: &[f32]) -> Vec<f32> {
        let x = ndarray::ArrayView1::from(features);
        let mut z = x.dot(&self.weights) + &self.intercept;
        let max = z.fold(f32::MIN, |m, &v| m.max(v));
        z.mapv_inplace(|v| (v - max).exp());
        let sum = z.sum();
        z.mapv_inplace(|v| v / sum);
        z.to_vec()
    }

    /// The most probable class's index and its probability; `None` when no probability
    /// is a number (it cannot be with finite weights and features) or the features are
    /// not [`Head::inputs`] long: then the head decides nothing.
    pub fn predict(&self, features: &[f32]) -> Option<(usize, f32)> {
        if features.len() != self.inputs() {
            return None;
        }
        self.probabilities(features)
            .into_iter()
            .enumerate()
            .filter(|(_, p)| p.is_finite())
            .fold(None, |best: Option<(usize, f32)>, (i, p)| match best {
                Some((_, b)) if b >= p => best,
                _ => Some((i, p)),
            })
    }
}

/// The four heads.
#[derive(Debug, Clone, PartialEq)]
pub struct Reader {
    /// Per item: boost, reduce, exclude, only or drop.
    pub polarity: Head,
    /// Per item: how strongly it asks (mild, normal, strong).
    pub intensity: Head,
    /// Per text: following more, less or not named.
    pub following: Head,
    /// Per text: friends' cameos more, less or not named.
    pub friends: Head,
    /// SHA-256 of the corpus the heads were fitted on.
    pub corpus_sha256: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HeadFile {
    name: String,
    classes: Vec<String>,
    inputs: usize,
    intercept: Vec<f32>,
    /// Row-major, inputs × classes.
    weights: Vec<f32>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReaderFile {
    format: String,
    features_version: u32,
    embedding_dim: usize,
    corpus_sha256: String,
    heads: Vec<HeadFile>,
}

const FORMAT: &str = "steerfeed-reader";

/// The hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Reader {
    /// The shipped reader, checked against its checksum, for an encoder of `dim`.
    pub fn default_for(dim: usize) -> Result<Self> {
        Self::from_json_checked(DEFAULT_READER, Some(DEFAULT_READER_SHA256), dim)
    }

    /// A reader from a weights file, checked against the `<file>.sha256` that
    /// `steerfeed prefs train` writes beside it (which must be there).
    pub fn from_file(path: &std::path::Path, dim: usize) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Reader(format!("reading {}: {e}", path.display())))?;
        let mut sum_path = path.as_os_str().to_owned();
        sum_path.push(".sha256");
        let sum = std::fs::read_to_string(&sum_path).map_err(|e| {
            Error::Reader(format!(
                "reading the checksum {}: {e}",
                std::path::Path::new(&sum_path).display()
            ))
        })?;
        Self::from_json_checked(&text, Some(&sum), dim)
    }

    /// A reader from weights JSON; `sha256` (hex, as written beside the file) must match
    /// when given.
    pub fn from_json_checked(json: &str, sha256: Option<&str>, dim: usize) -> Result<Self> {
        if let Some(expected) = sha256 {
            let expected = expected.split_whitespace().next().unwrap_or_default();
            let got = sha256_hex(json.as_bytes());
            if got != expected {
                return Err(Error::Reader(format!(
                    "the weights' SHA-256 is {got}, their checksum file says {expected}"
                )));
            }
        }
        let file: ReaderFile = serde_json::from_str(json)
            .map_err(|e| Error::Reader(format!("reading the weights: {e}")))?;
        if file.format != FORMAT || file.features_version != FEATURES_VERSION {
            return Err(Error::Reader(format!(
                "weights of format {} version {}; this build reads {FORMAT} version {FEATURES_VERSION}",
                file.format, file.features_version
            )));
        }
        if file.embedding_dim != dim {
            return Err(Error::Reader(format!(
                "weights for {}-dimensional embeddings, the encoder gives {dim}",
                file.embedding_dim
            )));
        }
        let mut heads = std::collections::HashMap::new();
        for h in file.heads {
            if h.weights.len() != h.inputs * h.classes.len() {
                return Err(Error::Reader(format!(
                    "head {} holds {} weights, not {} × {}",
                    h.name,
                    h.weights.len(),
                    h.inputs,
                    h.classes.len()
                )));
            }
            let weights = Array2::from_shape_vec((h.inputs, h.classes.len()), h.weights)
                .map_err(|e| Error::Reader(e.to_string()))?;
            let head = Head::new(h.classes, weights, Array1::from(h.intercept))?;
            heads.insert(h.name, head);
        }
        let mut take = |name: &str, classes: &[&str], inputs: usize| -> Result<Head> {
            let head = heads
                .remove(name)
                .ok_or_else(|| Error::Reader(format!("the weights have no {name} head")))?;
            if head.classes != classes || head.inputs() != inputs {
                return Err(Error::Reader(format!(
                    "head {name} has classes {:?} over {} inputs; this build expects {classes:?} over {inputs}",
                    head.classes,
                    head.inputs()
                )));
            }
            Ok(head)
        };
        Ok(Self {
            polarity: take("polarity", &POLARITY_CLASSES, 3 * dim + ITEM_CUES)?,
            intensity: take("intensity", &INTENSITY_CLASSES, 3 * dim + ITEM_CUES)?,
            following: take("following", &FOLLOWING_CLASSES, dim + TEXT_CUES)?,
            friends: take("friends_cameos", &FRIENDS_CLASSES, dim + TEXT_CUES)?,
            corpus_sha256: file.corpus_sha256,
        })
    }

    /// The weights as JSON (what [`Reader::from_json_checked`] reads), deterministic.
    pub fn to_json(&self, dim: usize) -> Result<String> {
        let head = |name: &str, h: &Head| HeadFile {
            name: name.to_owned(),
            classes: h.classes.clone(),
            inputs: h.inputs(),
            intercept: h.intercept.to_vec(),
            weights: h.weights.iter().copied().collect(),
        };
        let file = ReaderFile {
            format: FORMAT.to_owned(),
            features_version: FEATURES_VERSION,
            embedding_dim: dim,
            corpus_sha256: self.corpus_sha256.clone(),
            heads: vec![
                head("polarity", &self.polarity),
                head("intensity", &self.intensity),
                head("following", &self.following),
                head("friends_cameos", &self.friends),
            ],
        };
        serde_json::to_string(&file).map_err(|e| Error::Reader(e.to_string()))
    }
}

/// Fitting the heads (the `train` feature): multinomial logistic regression with an L2
/// penalty, by `linfa-logistic`'s L-BFGS from zero weights, so the same examples give
/// the same weights.
#[cfg(feature = "train")]
pub mod fit {
    use linfa::prelude::*;
    use linfa_logistic::MultiLogisticRegression;

    use super::Head;
    use crate::error::{Error, Result};

    /// Fits a head on `examples` (features, class index) over `classes`. Every class
    /// must occur at least once.
    pub fn head(
        examples: &[(Vec<f32>, usize)],
        classes: &[&str],
        alpha: f64,
        max_iterations: u64,
    ) -> Result<Head> {
        let Some(inputs) = examples.first().map(|e| e.0.len()) else {
            return Err(Error::Reader("no examples to fit".into()));
        };
        for (i, c) in classes.iter().enumerate() {
            if !examples.iter().any(|e| e.1 == i) {
                return Err(Error::Reader(format!("no example of class {c}")));
            }
        }
        let flat: Vec<f64> = examples
            .iter()
            .flat_map(|e| e.0.iter().map(|&v| f64::from(v)))
            .collect();
        let x = ndarray016::Array2::from_shape_vec((examples.len(), inputs), flat)
            .map_err(|e| Error::Reader(e.to_string()))?;
        let y = ndarray016::Array1::from_iter(examples.iter().map(|e| e.1));
        let data = Dataset::new(x, y);
        let model = MultiLogisticRegression::default()
            .alpha(alpha)
            .max_iterations(max_iterations)
            .fit(&data)
            .map_err(|e| Error::Reader(format!("fitting: {e}")))?;
        // The model's columns follow its sorted class labels, which are the indices
        // that occur: all of them, checked above.
        let cols: Vec<usize> = model.classes().to_vec();
        let mut weights = ndarray::Array2::<f32>::zeros((inputs, classes.len()));
        let mut intercept = ndarray::Array1::<f32>::zeros(classes.len());
        for (j, &class) in cols.iter().enumerate() {
            for i in 0..inputs {
                weights[[i, class]] = model.params()[[i, j]] as f32;
            }
            intercept[class] = model.intercept()[j] as f32;
        }
        Head::new(
            classes.iter().map(|c| (*c).to_owned()).collect(),
            weights,
            intercept,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(weights: Vec<f32>, inputs: usize, intercept: Vec<f32>) -> Head {
        let classes = (0..intercept.len()).map(|i| format!("c{i}")).collect();
        Head::new(
            classes,
            Array2::from_shape_vec((inputs, intercept.len()), weights).unwrap(),
            Array1::from(intercept),
        )
        .unwrap()
    }

    #[test]
    fn softmax_matches_a_hand_computation() {
        // z = x·W + b = [1·1 + 2·0 + 0, 1·0 + 2·1 + 1] = [1, 3]
        let h = head(vec![1.0, 0.0, 0.0, 1.0], 2, vec![0.0, 1.0]);
        let p = h.probabilities(&[1.0, 2.0]);
        let e = (2.0f32).exp();
        assert!((p[0] - 1.0 / (1.0 + e)).abs() < 1e-6);
        assert!((p[1] - e / (1.0 + e)).abs() < 1e-6);
        assert_eq!(h.predict(&[1.0, 2.0]).unwrap().0, 1);
        // Large logits do not overflow.
        let p = h.probabilities(&[1e4, 0.0]);
        assert!(p.iter().all(|v| v.is_finite()));
        assert_eq!(h.predict(&[1e4, 0.0]).unwrap().0, 0);
        // Features of the wrong length decide nothing.
        assert_eq!(h.predict(&[1.0]), None);
    }

    #[test]
    fn a_head_with_mismatched_shapes_or_non_finite_weights_is_refused() {
        let w = Array2::from_shape_vec((2, 2), vec![0.0; 4]).unwrap();
        assert!(Head::new(vec!["a".into()], w.clone(), Array1::from(vec![0.0, 0.0])).is_err());
        let bad = Array2::from_shape_vec((2, 2), vec![0.0, f32::NAN, 0.0, 0.0]).unwrap();
        assert!(
            Head::new(
                vec!["a".into(), "b".into()],
                bad,
                Array1::from(vec![0.0, 0.0])
            )
            .is_err()
        );
    }

    #[test]
    fn cues_read_negations_and_closures() {
        assert_eq!(
            ItemCues::read("don't care about golf at all", "x"),
            (true, false)
        );
        assert_eq!(
            ItemCues::read("just cooking", "just cooking , nothing else"),
            (false, true)
        );
        assert_eq!(
            ItemCues::read("more golf", "more golf please"),
            (false, false)
        );
    }

    #[test]
    fn the_shipped_weights_match_their_checksum_and_load() {
        let sum = DEFAULT_READER_SHA256.split_whitespace().next().unwrap();
        assert_eq!(sha256_hex(DEFAULT_READER.as_bytes()), sum);
        let reader = Reader::default_for(crate::MINILM_DIM).unwrap();
        assert_eq!(reader.polarity.classes().len(), POLARITY_CLASSES.len());
        // A round trip through JSON keeps every weight.
        let again = Reader::from_json_checked(
            &reader.to_json(crate::MINILM_DIM).unwrap(),
            None,
            crate::MINILM_DIM,
        )
        .unwrap();
        assert_eq!(again, reader);
        // Another dimension, or a changed byte, is refused.
        assert!(Reader::default_for(crate::MINILM_DIM + 1).is_err());
        let tampered = DEFAULT_READER.replacen("polarity", "polarify", 1);
        assert!(
            Reader::from_json_checked(&tampered, Some(DEFAULT_READER_SHA256), crate::MINILM_DIM)
                .is_err()
        );
    }
}
