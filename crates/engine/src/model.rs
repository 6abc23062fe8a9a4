//! Trained models of the action heads: the file `steerfeed train` writes and the
//! engine serves.
//!
//! A model file is one header line, `steerfeed-model <format> crc32:<8 hex digits>`,
//! then a JSON body whose CRC-32 the header holds. The body names its feature schema
//! (the features of every head, in order) and the heads, each a map from feature to
//! coefficient; it may hold a learned second stage of the blend (`ranker`: its own
//! feature schema, the trees, how many candidates it re-scores, and the line that puts
//! its output on the action value's scale); it may hold each head's value scale (the
//! factor on the head's weight in the objective, 1 when absent) and, for a head
//! calibrated after fitting, its calibration map (knots from logit to probability); and
//! it carries the training's metadata. A file whose checksum, format or schemas do not
//! match this build's is refused with the reason. Format 2 added the ranker and format 3
//! the value scales and calibration maps; format 1 and 2 files still load.

use std::collections::BTreeMap;
use std::path::Path;

use steerfeed_core::impression::HEADS;
use steerfeed_core::{Error, Result};
use steerfeed_rank::scorers::{BlendRankerFile, Calibration, FEATURES, HeadModels, ScoringModel};

const MAGIC: &str = "steerfeed-model";
/// The model file format this build writes.
pub const MODEL_FORMAT: u32 = 3;
/// The oldest model file format this build reads.
const OLDEST_FORMAT: u32 = 1;
/// The id of the hand-set heads (no trained model in force).
pub const HAND_SET: &str = "hand-set";

/// A model of the action heads, as its file holds it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RankModel {
    /// Its id (`m-` and the body's checksum when trained without one).
    pub id: String,
    /// The features of every head, in order.
    pub features: Vec<String>,
    /// Per head, per feature, the coefficient.
    pub heads: BTreeMap<String, BTreeMap<String, f32>>,
    /// The learned second stage of the blend, if trained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranker: Option<BlendRankerFile>,
    /// Per head, the factor on its weight in the objective (every head 1 when empty).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub value_scale: BTreeMap<String, f32>,
    /// Per calibrated head, its map's knots: (logit, probability), logits rising.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub calibration: BTreeMap<String, Vec<[f32; 2]>>,
    /// How it was trained: data, split, fitting, measured quality.
    #[serde(default)]
    pub metadata: serde_json::Value,
}

impl RankModel {
    /// The model of `heads`, named `id`.
    pub fn from_heads(
        id: impl Into<String>,
        heads: &HeadModels,
        metadata: serde_json::Value,
    ) -> Self {
        Self {
            id: id.into(),
            features: FEATURES.iter().map(|f| (*f).to_owned()).collect(),
            heads: HEADS
                .iter()
                .zip(&heads.coef)
                .map(|(h, c)| {
                    let by_feature = FEATURES
                        .iter()
                        .map(|f| (*f).to_owned())
                        .zip(c.iter().copied());
                    ((*h).to_owned(), by_feature.collect())
                })
                .collect(),
            ranker: None,
            value_scale: if heads.value_scale == [1.0; 8] {
                BTreeMap::new()
            } else {
                HEADS
                    .iter()
                    .map(|h| (*h).to_owned())
                    .zip(heads.value_scale)
                    .collect()
            },
            calibration: HEADS
                .iter()
                .zip(&heads.calibration)
                .filter_map(|(h, c)| {
                    let knots = c.as_ref()?.knots().map(|(x, p)| [x, p]).collect();
                    Some(((*h).to_owned(), knots))
                })
                .collect(),
            metadata,
        }
    }

    /// The model with `ranker` as its second stage.
    pub fn with_ranker(mut self, ranker: BlendRankerFile) -> Self {
        self.ranker = Some(ranker);
        self
    }

    /// What the scorer applies: the checked heads, and the checked ranker if any.
    pub fn scoring_model(&self) -> Result<ScoringModel> {
        Ok(ScoringModel {
            heads: self.head_models()?,
            ranker: self
                .ranker
                .as_ref()
                .map(BlendRankerFile::compile)
                .transpose()?,
        })
    }

    /// The coefficients the scorer applies, once the schema is this build's: the same
    /// features in the same order, every head present with every feature, nothing
    /// else, every coefficient a number within ±100; and the value scales, of every
    /// head or none, each within `MAX_VALUE_SCALE` of 1 either way.
    pub fn head_models(&self) -> Result<HeadModels> {
        if self.features.iter().map(String::as_str).ne(FEATURES) {
            return Err(Error::invalid(
                "model.features",
                format!(
                    "the model's feature schema {:?} does not match this engine's {:?}",
                    self.features, FEATURES
                ),
            ));
        }
        known_heads("model.heads", self.heads.keys())?;
        let mut coef = [[0.0f32; 9]; 8];
        for (a, head) in HEADS.iter().enumerate() {
            let Some(c) = self.heads.get(*head) else {
                return Err(Error::invalid("model.heads", format!("no head {head:?}")));
            };
            if c.len() != FEATURES.len() {
                return Err(Error::invalid(
                    "model.heads",
                    format!(
                        "head {head:?} has {} coefficients, the schema {}",
                        c.len(),
                        FEATURES.len()
                    ),
                ));
            }
            for (f, feature) in FEATURES.iter().enumerate() {
                coef[a][f] = *c.get(*feature).ok_or_else(|| {
                    Error::invalid("model.heads", format!("head {head:?} has no {feature:?}"))
                })?;
            }
        }
        let mut m = HeadModels::unscaled(coef);
        if !self.value_scale.is_empty() {
            known_heads("model.value_scale", self.value_scale.keys())?;
            for (a, head) in HEADS.iter().enumerate() {
                m.value_scale[a] = *self.value_scale.get(*head).ok_or_else(|| {
                    Error::invalid(
                        "model.value_scale",
                        format!("no value scale for head {head:?} (give every head or none)"),
                    )
                })?;
            }
        }
        known_heads("model.calibration", self.calibration.keys())?;
        for (a, head) in HEADS.iter().enumerate() {
            if let Some(knots) = self.calibration.get(*head) {
                let knots: Vec<(f32, f32)> = knots.iter().map(|&[x, p]| (x, p)).collect();
                m.calibration[a] =
                    Some(Calibration::new(&knots).map_err(|e| {
                        Error::invalid("model.calibration", format!("{head}: {e}"))
                    })?);
            }
        }
        m.validate()?;
        Ok(m)
    }

    /// The file's bytes: the header line, then the body.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let body = serde_json::to_vec_pretty(self).map_err(|e| Error::internal("model", e))?;
        let mut out = format!(
            "{MAGIC} {MODEL_FORMAT} crc32:{:08x}\n",
            crc32fast::hash(&body)
        )
        .into_bytes();
        out.extend_from_slice(&body);
        out.push(b'\n');
        Ok(out)
    }

    /// Reads a model file's bytes, checking the header, the checksum and the schema.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let bad = |why: String| Error::invalid("model", why);
        let nl = bytes
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| bad("not a steerfeed model file (no header line)".into()))?;
        let header = std::str::from_utf8(&bytes[..nl])
            .map_err(|_| bad("not a steerfeed model file (the header is not text)".into()))?;
        let parts: Vec<&str> = header.split(' ').collect();
        let [magic, format, crc] = parts[..] else {
            return Err(bad(format!(
                "not a steerfeed model file (header {header:?})"
            )));
        };
        if magic != MAGIC {
            return Err(bad(format!(
                "not a steerfeed model file (header {header:?})"
            )));
        }
        if !(OLDEST_FORMAT..=MODEL_FORMAT).any(|f| format == f.to_string()) {
            return Err(bad(format!(
                "model file format {format}, but this build reads formats {OLDEST_FORMAT} to \
                 {MODEL_FORMAT}"
            )));
        }
        let want = crc
            .strip_prefix("crc32:")
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| bad(format!("the header's checksum {crc:?} is unreadable")))?;
        let mut body = &bytes[nl + 1..];
        if body.last() == Some(&b'\n') {
            body = &body[..body.len() - 1];
        }
        let got = crc32fast::hash(body);
        if got != want {
            return Err(bad(format!(
                "the body's checksum is {got:08x}, the header says {want:08x}: the file is damaged"
            )));
        }
        let model: Self =
            serde_json::from_slice(body).map_err(|e| bad(format!("unreadable body: {e}")))?;
        if model.id.is_empty() || model.id.len() > 128 {
            return Err(bad("the model's id must be 1 to 128 bytes".into()));
        }
        if format == "1" && model.ranker.is_some() {
            return Err(bad("a format 1 model file has no ranker".into()));
        }
        if (format == "1" || format == "2")
            && !(model.value_scale.is_empty() && model.calibration.is_empty())
        {
            return Err(bad(format!(
                "a format {format} model file has no value scales or calibration maps"
            )));
        }
        model.scoring_model()?;
        Ok(model)
    }

    /// Reads and checks the model file at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::invalid("model", format!("{}: {e}", path.display())))?;
        Self::from_bytes(&bytes)
            .map_err(|e| Error::invalid("model", format!("{}: {e}", path.display())))
    }

    /// Writes the model file at `path` (through a temporary file beside it, renamed).
    pub fn save(&self, path: &Path) -> Result<()> {
        let io = |e: std::io::Error| Error::internal("model", format!("{}: {e}", path.display()));
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, self.to_bytes()?).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }
}

/// Refuses `keys` that are not this engine's heads, naming them.
fn known_heads<'a>(field: &'static str, keys: impl Iterator<Item = &'a String>) -> Result<()> {
    let extra: Vec<&String> = keys.filter(|h| !HEADS.contains(&h.as_str())).collect();
    if extra.is_empty() {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("unknown heads {extra:?}; this engine's are {HEADS:?}"),
        ))
    }
}

/// The model in force and what a rollback returns to.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelInfo {
    /// The id of the model in force ([`HAND_SET`] for the hand-set heads).
    pub id: String,
    /// Its training metadata (null for the hand-set heads).
    pub metadata: serde_json::Value,
    /// The id a rollback would put back in force, if any.
    pub previous: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use steerfeed_rank::scorers::ScorerConfig;

    fn model() -> RankModel {
        let mut h = HeadModels::from_config(&ScorerConfig::default());
        h.coef[6][3] = 1.25;
        RankModel::from_heads("m-test", &h, serde_json::json!({"rows": 10}))
    }

    #[test]
    fn a_model_file_reads_back_as_written() {
        let m = model();
        let back = RankModel::from_bytes(&m.to_bytes().unwrap()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.head_models().unwrap().coef[6][3], 1.25);
    }

    #[test]
    fn a_damaged_or_foreign_file_is_refused_with_its_reason() {
        let bytes = model().to_bytes().unwrap();
        let err = |b: &[u8]| RankModel::from_bytes(b).unwrap_err().to_string();
        // One changed digit of a coefficient.
        let text = String::from_utf8(bytes.clone()).unwrap();
        let flipped = text.replacen("1.25", "1.35", 1);
        assert!(err(flipped.as_bytes()).contains("damaged"));
        assert!(err(&bytes[..bytes.len() / 2]).contains("damaged"));
        assert!(err(b"{}\n").contains("not a steerfeed model"));
        assert!(
            err(&text
                .replacen("steerfeed-model 3", "steerfeed-model 4", 1)
                .into_bytes())
            .contains("format 4")
        );
    }

    /// A body under a header of `format`, checksummed.
    fn file_of(format: u32, m: &RankModel) -> Vec<u8> {
        let body = serde_json::to_vec_pretty(m).unwrap();
        let mut file = format!(
            "steerfeed-model {format} crc32:{:08x}\n",
            crc32fast::hash(&body)
        )
        .into_bytes();
        file.extend_from_slice(&body);
        file
    }

    /// A ranker of one stump on `interest`.
    fn ranker() -> BlendRankerFile {
        use steerfeed_rank::scorers::BLEND_FEATURES;
        use steerfeed_rank::scorers::blend::BlendTree;
        BlendRankerFile {
            features: BLEND_FEATURES.iter().map(|f| (*f).to_owned()).collect(),
            depth: 50,
            base_score: 0.0,
            shift: 0.5,
            scale: 1.5,
            trees: vec![BlendTree {
                feature: vec![24, -1, -1],
                threshold: vec![0.0, 0.0, 0.0],
                left: vec![1, 0, 0],
                right: vec![2, 0, 0],
                value: vec![0.0, -0.5, 0.75],
            }],
        }
    }

    #[test]
    fn a_model_with_a_ranker_reads_back_and_format_1_files_still_load() {
        let m = model().with_ranker(ranker());
        let back = RankModel::from_bytes(&m.to_bytes().unwrap()).unwrap();
        assert_eq!(back, m);
        let scoring = back.scoring_model().unwrap();
        assert_eq!(scoring.ranker.unwrap().depth(), 50);
        // A file an earlier build wrote: format 1, heads only.
        let old = RankModel::from_bytes(&file_of(1, &model())).unwrap();
        assert_eq!(old, model());
        assert!(old.scoring_model().unwrap().ranker.is_none());
        // Format 1 never had a ranker.
        assert!(
            RankModel::from_bytes(&file_of(1, &m))
                .unwrap_err()
                .to_string()
                .contains("no ranker")
        );
        // A damaged ranker is refused with the whole file.
        let mut bad = ranker();
        bad.trees[0].left[0] = 0;
        let m = model().with_ranker(bad);
        assert!(
            RankModel::from_bytes(&file_of(2, &m))
                .unwrap_err()
                .to_string()
                .contains("model.ranker")
        );
    }

    #[test]
    fn value_scales_read_back_and_an_incomplete_or_out_of_range_set_is_refused() {
        let mut h = HeadModels::from_config(&ScorerConfig::default());
        h.value_scale = [17.0, 30.5, 1.0, 9.0, 11.0, 10.0, 6.0, 3.25];
        let m = RankModel::from_heads("m-scaled", &h, serde_json::Value::Null);
        assert_eq!(m.value_scale.len(), 8);
        let back = RankModel::from_bytes(&m.to_bytes().unwrap()).unwrap();
        assert_eq!(back.head_models().unwrap(), h);
        // Unscaled heads write no scales, and a file without them reads as all 1.
        assert!(model().value_scale.is_empty());
        assert_eq!(model().head_models().unwrap().value_scale, [1.0; 8]);
        // Formats 1 and 2 had none.
        for format in [1, 2] {
            let e = RankModel::from_bytes(&file_of(format, &m)).unwrap_err();
            assert!(e.to_string().contains("no value scales"), "{e}");
        }
        let refused = |edit: &dyn Fn(&mut RankModel)| {
            let mut bad = m.clone();
            edit(&mut bad);
            let e = RankModel::from_bytes(&file_of(MODEL_FORMAT, &bad)).unwrap_err();
            assert!(e.to_string().contains("model.value_scale"), "{e}");
        };
        refused(&|b| {
            b.value_scale.remove("share");
        });
        refused(&|b| {
            b.value_scale.insert("watch_time".into(), 2.0);
        });
        // (JSON has no NaN or infinity: serde writes them as null, which does not read.)
        for v in [0.0, -1.0, 2.0e4, 1.0e-5] {
            refused(&|b| {
                b.value_scale.insert("like".into(), v);
            });
        }
    }

    #[test]
    fn calibration_maps_read_back_and_a_broken_one_is_refused() {
        let mut h = HeadModels::from_config(&ScorerConfig::default());
        h.calibration[7] = Some(Calibration::new(&[(-3.0, 0.02), (0.0, 0.3), (2.0, 0.5)]).unwrap());
        let m = RankModel::from_heads("m-calibrated", &h, serde_json::Value::Null);
        assert_eq!(m.calibration.len(), 1);
        assert!(m.value_scale.is_empty());
        let back = RankModel::from_bytes(&m.to_bytes().unwrap()).unwrap();
        assert_eq!(back.head_models().unwrap(), h);
        for format in [1, 2] {
            let e = RankModel::from_bytes(&file_of(format, &m)).unwrap_err();
            assert!(
                e.to_string().contains("no value scales or calibration"),
                "{e}"
            );
        }
        let refused = |knots: Vec<[f32; 2]>, head: &str| {
            let mut bad = m.clone();
            bad.calibration.insert(head.into(), knots);
            let e = RankModel::from_bytes(&file_of(MODEL_FORMAT, &bad)).unwrap_err();
            assert!(e.to_string().contains("model.calibration"), "{e}");
        };
        refused(vec![[0.0, 0.5], [1.0, 0.4]], "like");
        refused(vec![[0.0, 0.5], [0.0, 0.6]], "like");
        refused(vec![[0.0, 1.5], [1.0, 1.6]], "like");
        refused(vec![[0.0, 0.5]], "like");
        refused(vec![[0.0, 0.1], [1.0, 0.2]], "watch_time");
    }

    #[test]
    fn a_schema_other_than_the_engines_is_refused() {
        let mut m = model();
        m.features.swap(2, 3);
        assert!(
            m.head_models()
                .unwrap_err()
                .to_string()
                .contains("feature schema")
        );
        let mut m = model();
        m.heads.get_mut("like").unwrap().remove("tie");
        assert!(m.head_models().is_err());
        let mut m = model();
        let like = m.heads["like"].clone();
        m.heads.insert("watch_time".into(), like);
        assert!(
            m.head_models()
                .unwrap_err()
                .to_string()
                .contains("unknown heads")
        );
        let mut m = model();
        m.heads.remove("share");
        assert!(m.head_models().is_err());
        let mut m = model();
        m.heads
            .get_mut("like")
            .unwrap()
            .insert("tie".into(), f32::INFINITY);
        assert!(m.head_models().is_err());
        // A re-checksummed file with another schema is refused too.
        let mut m = model();
        m.features.pop();
        assert!(
            RankModel::from_bytes(&file_of(MODEL_FORMAT, &m))
                .unwrap_err()
                .to_string()
                .contains("feature schema")
        );
    }
}
