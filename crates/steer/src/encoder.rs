//! The sentence encoder: all-MiniLM-L6-v2 (int8 ONNX) through ONNX Runtime.
//!
//! Texts are tokenised without padding, truncated deliberately to `max_tokens`, batched
//! with padding to the longest text of the batch (texts are sorted by length first, so a
//! batch pads little), run through the model, mean-pooled with the attention mask and
//! L2-normalised. Sessions sit in a small pool so several requests can embed at once.

use std::path::Path;
use std::sync::{Mutex, OnceLock};

use ndarray::{ArrayView2, ArrayView3, Axis};
use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::Tensor;
use steerfeed_core::Embedding;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::config::EncoderConfig;
use crate::error::{Error, Result};

/// Embedding dimension of all-MiniLM-L6-v2.
pub const MINILM_DIM: usize = 384;

/// The process-wide ONNX Runtime environment. ONNX Runtime allows one per process, and
/// the shared library is loaded once; later calls reuse it whatever path they name.
static ENVIRONMENT: OnceLock<std::result::Result<Environment, String>> = OnceLock::new();

fn environment(dylib: &Path) -> Result<&'static Environment> {
    let env = ENVIRONMENT.get_or_init(|| {
        if !dylib.is_file() {
            return Err(Error::Missing {
                what: "ONNX Runtime library",
                path: dylib.to_path_buf(),
                hint: "model.ort_dylib or ORT_DYLIB_PATH",
            }
            .to_string());
        }
        ort::init_from(dylib)
            .map_err(|e| format!("loading {}: {e}", dylib.display()))?
            .with_name("steerfeed")
            .build()
            .map_err(|e| e.to_string())
    });
    env.as_ref().map_err(|m| Error::Runtime(m.clone()))
}

/// A pool of model sessions and the tokenizer.
pub struct Encoder {
    sessions: Vec<Mutex<Session>>,
    tokenizer: Tokenizer,
    needs_token_type_ids: bool,
    batch_size: usize,
    dim: usize,
    fingerprint: u64,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("sessions", &self.sessions.len())
            .field("dim", &self.dim)
            .finish_non_exhaustive()
    }
}

impl Encoder {
    /// Loads the runtime, the model and the tokenizer named by `config`. A missing file
    /// is [`Error::Missing`], whose message says which command fetches it.
    pub fn open(config: &EncoderConfig) -> Result<Self> {
        config.validate()?;
        let dir = config.model_dir();
        let model_path = dir.join("model.onnx");
        let tokenizer_path = dir.join("tokenizer.json");
        for (what, path) in [("model", &model_path), ("tokenizer", &tokenizer_path)] {
            if !path.is_file() {
                return Err(Error::Missing {
                    what,
                    path: path.clone(),
                    hint: "model.dir or STEERFEED__MODEL__DIR",
                });
            }
        }
        let env = environment(&config.ort_dylib_path())?;

        let mut tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| Error::Tokenizer(format!("{}: {e}", tokenizer_path.display())))?;
        // The shipped tokenizer.json pads every input to 128 tokens, which costs 5x the time;
        // we pad per batch ourselves.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: config.max_tokens,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| Error::Tokenizer(e.to_string()))?;

        let mut sessions = Vec::with_capacity(config.sessions);
        for _ in 0..config.sessions {
            let session = Session::builder(env)
                .map_err(|e| Error::Runtime(e.to_string()))?
                .with_optimization_level(GraphOptimizationLevel::Level3)
                .map_err(|e| Error::Runtime(e.to_string()))?
                .with_intra_threads(config.intra_threads)
                .map_err(|e| Error::Runtime(e.to_string()))?
                .commit_from_file(&model_path)
                .map_err(|e| Error::Runtime(format!("{}: {e}", model_path.display())))?;
            sessions.push(Mutex::new(session));
        }
        let needs_token_type_ids = sessions
            .first()
            .and_then(|s| s.lock().ok())
            .is_some_and(|s| s.inputs().iter().any(|i| i.name() == "token_type_ids"));
        let mut fp = steerfeed_core::hash::Fnv1a::new();
        for path in [&model_path, &tokenizer_path] {
            let bytes = std::fs::read(path)
                .map_err(|e| Error::Runtime(format!("{}: {e}", path.display())))?;
            fp.update(&bytes);
        }
        fp.update(&(config.max_tokens as u64).to_le_bytes());
        let encoder = Self {
            sessions,
            tokenizer,
            needs_token_type_ids,
            batch_size: config.batch_size,
            dim: MINILM_DIM,
            fingerprint: fp.finish(),
        };
        // One probe checks that the model gives vectors of the dimension we expect.
        let probe = encoder.embed("steerfeed")?;
        if probe.dim() != MINILM_DIM {
            return Err(Error::Output(format!(
                "expected {MINILM_DIM} dimensions, the model gives {}",
                probe.dim()
            )));
        }
        tracing::info!(model = %model_path.display(), sessions = encoder.sessions.len(), "encoder ready");
        Ok(encoder)
    }

    /// The whole words of the tokenizer's vocabulary (not word pieces), with their ids.
    pub fn vocabulary(&self) -> Vec<(String, u32)> {
        self.tokenizer
            .get_vocab(false)
            .into_iter()
            .filter(|(w, _)| !w.starts_with("##") && !w.starts_with('['))
            .collect()
    }

    /// The embedding dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// A fingerprint of the model, the tokenizer and the truncation length: embeddings
    /// cached under one fingerprint are valid only for it.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Embeds one text.
    pub fn embed(&self, text: &str) -> Result<Embedding> {
        let mut out = self.embed_batch(&[text])?;
        out.pop()
            .ok_or_else(|| Error::Output("no embedding returned".into()))
    }

    /// Embeds many texts; the result is in input order.
    pub fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Embedding>> {
        let mut order: Vec<usize> = (0..texts.len()).collect();
        // Sorting by length keeps padding small within each batch.
        order.sort_by_key(|&i| texts[i].len());
        let mut out: Vec<Option<Embedding>> = vec![None; texts.len()];
        // Every row of a batch is padded to its longest, so a batch also ends where a
        // text is much longer than the batch's first (a whole sentence after short
        // phrases runs on its own rather than making every phrase as long as itself).
        let mut chunks: Vec<&[usize]> = Vec::new();
        let mut start = 0;
        for end in 1..=order.len() {
            let full = end - start == self.batch_size;
            let jump =
                end < order.len() && texts[order[end]].len() > 2 * texts[order[start]].len() + 16;
            if end == order.len() || full || jump {
                chunks.push(&order[start..end]);
                start = end;
            }
        }
        for chunk in chunks {
            let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
            for (slot, e) in chunk.iter().zip(self.run_batch(&batch)?) {
                out[*slot] = Some(e);
            }
        }
        out.into_iter()
            .map(|e| e.ok_or_else(|| Error::Output("missing embedding".into())))
            .collect()
    }

    /// Embeds `text` and, from the same run, each of `parts` (each a set of byte ranges
    /// of `text`): the mean of the states of the tokens inside the part's ranges,
    /// normalised: the part read in the context of the whole text. A part holding no
    /// token gives `None`. The third value is where the model's reading ended (the end
    /// byte of the last token it read: less than the text's length when it was cut at
    /// `max_tokens`).
    pub fn embed_spans(
        &self,
        text: &str,
        parts: &[Vec<(usize, usize)>],
    ) -> Result<(Embedding, Vec<Option<Embedding>>, usize)> {
        self.with_token_states(&[text], |encodings, states| {
            let enc = &encodings[0];
            let tokens = states.index_axis(Axis(0), 0);
            let whole = mean_pool(tokens, enc, |_| true)
                .ok_or_else(|| Error::Output("no token states".into()))?;
            let special = enc.get_special_tokens_mask();
            let offsets = enc.get_offsets();
            let parts = parts
                .iter()
                .map(|ranges| {
                    mean_pool(tokens, enc, |col| {
                        special.get(col) == Some(&0)
                            && offsets.get(col).is_some_and(|&(a, b)| {
                                a < b && ranges.iter().any(|&(start, end)| a >= start && b <= end)
                            })
                    })
                })
                .collect();
            let covered = offsets
                .iter()
                .zip(special)
                .filter(|(_, s)| **s == 0)
                .map(|(o, _)| o.1)
                .max()
                .unwrap_or(0);
            Ok((whole, parts, covered))
        })?
    }

    fn run_batch(&self, texts: &[&str]) -> Result<Vec<Embedding>> {
        self.with_token_states(texts, |encodings, hidden| {
            hidden
                .axis_iter(Axis(0))
                .zip(encodings)
                .map(|(tokens, enc)| {
                    mean_pool(tokens, enc, |_| true)
                        .ok_or_else(|| Error::Output("no token states".into()))
                })
                .collect()
        })?
    }

    /// Runs the model on `texts` and hands `read` the tokenizer's encodings and the last
    /// hidden states (batch × tokens × dim; padding rows of shorter texts have a zero
    /// mask), read in place.
    fn with_token_states<R>(
        &self,
        texts: &[&str],
        read: impl FnOnce(&[tokenizers::Encoding], ArrayView3<'_, f32>) -> R,
    ) -> Result<R> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let batch = encodings.len();
        let seq = encodings.iter().map(|e| e.len()).max().unwrap_or(0).max(1);
        let mut ids = vec![0i64; batch * seq];
        let mut mask = vec![0i64; batch * seq];
        for (row, enc) in encodings.iter().enumerate() {
            for (col, (&id, &m)) in enc
                .get_ids()
                .iter()
                .zip(enc.get_attention_mask())
                .enumerate()
            {
                ids[row * seq + col] = i64::from(id);
                mask[row * seq + col] = i64::from(m);
            }
        }
        let shape = [batch, seq];
        let tensor =
            |v: Vec<i64>| Tensor::from_array((shape, v)).map_err(|e| Error::Runtime(e.to_string()));
        let mut inputs = ort::inputs![
            "input_ids" => tensor(ids)?,
            "attention_mask" => tensor(mask)?,
        ];
        if self.needs_token_type_ids {
            inputs.push((
                "token_type_ids".into(),
                tensor(vec![0i64; batch * seq])?.into(),
            ));
        }

        let mut session = self.session();
        let outputs = session
            .run(inputs)
            .map_err(|e| Error::Runtime(e.to_string()))?;
        let (out_shape, data) = outputs[0]
            .try_extract_tensor::<f32>()
            .map_err(|e| Error::Output(e.to_string()))?;
        let dims: Vec<usize> = out_shape.iter().map(|&d| d as usize).collect();
        if dims.len() != 3 || dims[0] != batch || dims[1] != seq {
            return Err(Error::Output(format!(
                "expected [{batch}, {seq}, dim], got {dims:?}"
            )));
        }
        let hidden = ArrayView3::from_shape((batch, seq, dims[2]), data)
            .map_err(|e| Error::Output(e.to_string()))?;
        Ok(read(&encodings, hidden))
    }

    /// Takes a free session, or waits for the first one.
    fn session(&self) -> std::sync::MutexGuard<'_, Session> {
        for s in &self.sessions {
            if let Ok(guard) = s.try_lock() {
                return guard;
            }
        }
        // All busy: wait on the first. A poisoned lock only means another inference
        // panicked; the session itself holds no state between runs.
        self.sessions[0]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The mean of the states of the tokens `keep` selects among those the attention mask
/// covers, L2-normalised; `None` when it selects none.
fn mean_pool(
    tokens: ArrayView2<'_, f32>,
    enc: &tokenizers::Encoding,
    keep: impl Fn(usize) -> bool,
) -> Option<Embedding> {
    let mask = enc.get_attention_mask();
    let mut sum = vec![0f32; tokens.ncols()];
    let mut count = 0f32;
    for (col, token) in tokens.axis_iter(Axis(0)).enumerate() {
        if mask.get(col).is_some_and(|&m| m != 0) && keep(col) {
            count += 1.0;
            for (s, v) in sum.iter_mut().zip(token.iter()) {
                *s += v;
            }
        }
    }
    if count == 0.0 {
        return None;
    }
    sum.iter_mut().for_each(|s| *s /= count);
    Embedding::normalized("embedding", &sum).ok()
}
