//! # steerfeed-steer
//!
//! Natural-language steering (docs/design.md §4): the [`Encoder`] (all-MiniLM-L6-v2, int8 ONNX,
//! run by ONNX Runtime loaded dynamically, tokenised by `tokenizers`), the [`Taxonomy`]
//! (topics with descriptions, embedded once), and the [`PreferenceParser`] that turns
//! plain text into [`steerfeed_core::Constraints`], with the policy check for teen
//! accounts. [`eval`] scores the parser against labelled lines.
//!
//! Nothing here downloads: the model, the tokenizer and the runtime library are fetched
//! and checked by the project's set-up script (`make setup`), and found through
//! [`EncoderConfig`] (`STEERFEED__MODEL__DIR`, `ORT_DYLIB_PATH`, or the set-up cache).

#![warn(missing_docs)]

pub mod cache;
pub mod concepts;
pub mod config;
pub mod encoder;
pub mod error;
pub mod parser;
pub mod reader;
pub mod safety;
pub mod slots;
pub mod speller;
pub mod taxonomy;
#[cfg(feature = "train")]
pub mod training;

pub use concepts::{ConceptResolver, PhraseCache, Resolved};
pub use config::EncoderConfig;
pub use encoder::{Encoder, MINILM_DIM};
pub use error::{Error, Result};
pub use parser::{ParserConfig, PreferenceParser};
pub use reader::Reader;
pub use safety::{Flag, RestrictedCategory, SafetyNet};
pub use taxonomy::{Taxonomy, TopicMatch};
