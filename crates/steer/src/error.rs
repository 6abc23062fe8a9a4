//! Errors of the steering crate.

use std::path::PathBuf;

/// The result type of `steerfeed-steer`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the encoder and the preference parser.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file the encoder needs is not there: the set-up has not been run, or the
    /// configuration points elsewhere.
    #[error(
        "{what} not found at {}: run `make setup` (scripts/setup.sh) to fetch it, \
         or point {hint} at it", path.display()
    )]
    Missing {
        /// Which file.
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
        /// The setting or variable that chooses the path.
        hint: &'static str,
    },
    /// ONNX Runtime failed to load or to run the model.
    #[error("onnx runtime: {0}")]
    Runtime(String),
    /// The tokenizer failed to load or to encode.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The model's output does not have the expected shape.
    #[error("model output: {0}")]
    Output(String),
    /// The reader's weights are missing, malformed, of another layout, or do not match
    /// their checksum; or fitting them failed.
    #[error("reader: {0}")]
    Reader(String),
    /// Bad input (an error of the core types).
    #[error(transparent)]
    Core(#[from] steerfeed_core::Error),
}

impl From<Error> for steerfeed_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Core(e) => e,
            Error::Missing { .. } => steerfeed_core::Error::Unavailable {
                what: e.to_string(),
            },
            Error::Runtime(m) => steerfeed_core::Error::internal("encoder", m),
            Error::Tokenizer(m) => steerfeed_core::Error::internal("tokenizer", m),
            Error::Output(m) => steerfeed_core::Error::internal("encoder output", m),
            Error::Reader(m) => steerfeed_core::Error::internal("reader", m),
        }
    }
}
