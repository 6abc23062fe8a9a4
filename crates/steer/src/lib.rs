//! # steerfeed-steer
//!
//! Natural-language steering (DESIGN §4): the [`Encoder`] (all-MiniLM-L6-v2, int8 ONNX,
//! run by ONNX Runtime loaded dynamically, tokenised by `tokenizers`), and — built on it —
//! the taxonomy and the preference parser that turns plain text into
//! [`steerfeed_core::Constraints`].
//!
//! Nothing here downloads: the model, the tokenizer and the runtime library are fetched
//! and checked by the project's set-up script (`make setup`), and found through
//! [`EncoderConfig`] (`STEERFEED__MODEL__DIR`, `ORT_DYLIB_PATH`, or the set-up cache).

#![warn(missing_docs)]

pub mod config;
pub mod encoder;
pub mod error;

pub use config::EncoderConfig;
pub use encoder::{Encoder, MINILM_DIM};
pub use error::{Error, Result};
