//! Where the model and the runtime are, and how to run them.

use std::path::PathBuf;

/// Environment variable that overrides the ONNX Runtime library path.
pub const ORT_DYLIB_ENV: &str = "ORT_DYLIB_PATH";
/// Environment variable that overrides the model directory.
pub const MODEL_DIR_ENV: &str = "STEERFEED__MODEL__DIR";
/// Environment variable that moves the whole set-up cache.
pub const CACHE_ENV: &str = "STEERFEED_CACHE";
/// File name of the runtime library the set-up extracts.
pub const ORT_LIB_NAME: &str = "libonnxruntime.so.1.31.1";

/// Settings of the sentence encoder (`[model]` in the config file).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EncoderConfig {
    /// Directory holding `model.onnx` and `tokenizer.json`. Default: `model/` in the
    /// set-up cache (`$STEERFEED_CACHE`, else `~/.cache/steerfeed`).
    pub dir: Option<PathBuf>,
    /// Path of `libonnxruntime.so`. Default: `onnxruntime/` in the set-up cache.
    pub ort_dylib: Option<PathBuf>,
    /// Threads ONNX Runtime uses inside one inference (intra-op). Default 1: the server
    /// runs many requests at once, and a short sentence gains little from more.
    pub intra_threads: usize,
    /// Sessions in the pool, i.e. inferences that may run at the same time. Default 2.
    pub sessions: usize,
    /// Longest input in tokens; longer inputs are truncated (MiniLM was trained on 256). Default 256.
    pub max_tokens: usize,
    /// Most texts per inference call; larger batches are split. Default 32.
    pub batch_size: usize,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        Self {
            dir: None,
            ort_dylib: None,
            intra_threads: 1,
            sessions: 2,
            max_tokens: 256,
            batch_size: 32,
        }
    }
}

/// The set-up cache: `$STEERFEED_CACHE`, else `~/.cache/steerfeed`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(CACHE_ENV).filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map_or_else(std::env::temp_dir, PathBuf::from);
    home.join(".cache").join("steerfeed")
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

impl EncoderConfig {
    /// The model directory: the setting, else `STEERFEED__MODEL__DIR`, else the cache.
    pub fn model_dir(&self) -> PathBuf {
        self.dir
            .clone()
            .or_else(|| env_path(MODEL_DIR_ENV))
            .unwrap_or_else(|| cache_dir().join("model"))
    }

    /// The runtime library: the setting, else `ORT_DYLIB_PATH`, else the cache.
    pub fn ort_dylib_path(&self) -> PathBuf {
        self.ort_dylib
            .clone()
            .or_else(|| env_path(ORT_DYLIB_ENV))
            .unwrap_or_else(|| cache_dir().join("onnxruntime").join(ORT_LIB_NAME))
    }

    /// Checks the numbers.
    pub fn validate(&self) -> steerfeed_core::Result<()> {
        for (field, v, max) in [
            ("model.intra_threads", self.intra_threads, 64),
            ("model.sessions", self.sessions, 64),
            ("model.max_tokens", self.max_tokens, 512),
            ("model.batch_size", self.batch_size, 1024),
        ] {
            if !(1..=max).contains(&v) {
                return Err(steerfeed_core::Error::OutOfRange {
                    field,
                    got: v as f64,
                    min: 1.0,
                    max: max as f64,
                });
            }
        }
        Ok(())
    }
}
