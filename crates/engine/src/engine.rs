//! The engine: what an app opens once and calls from any thread.

use std::sync::Arc;

use steerfeed_core::{AgeBand, Constraints, Embedding, Result, Timestamp};
use steerfeed_steer::{Encoder, PreferenceParser, Taxonomy};

use crate::config::Config;

/// The steerfeed engine. `Send + Sync`: share it behind an `Arc`.
#[derive(Debug)]
pub struct Engine {
    config: Config,
    encoder: Arc<Encoder>,
    parser: PreferenceParser,
}

impl Engine {
    /// Opens the engine: checks the configuration and loads the encoder (the model and
    /// the runtime fetched by `make setup`). A missing file is an
    /// [`Unavailable`](steerfeed_core::Error::Unavailable) error naming the command to run.
    pub fn open(config: Config) -> Result<Self> {
        config.validate()?;
        let encoder = Arc::new(Encoder::open(&config.model)?);
        let taxonomy = match &config.steering.taxonomy {
            Some(path) => Taxonomy::from_file(path, &encoder)?,
            None => Taxonomy::default_with(&encoder)?,
        };
        let parser =
            PreferenceParser::new(encoder.clone(), Arc::new(taxonomy), config.steering.clone());
        Ok(Self {
            config,
            encoder,
            parser,
        })
    }

    /// Compiles plain-language preferences into constraints for a viewer of `audience`
    /// (policy applied), expiring `steering.expiry_days` after `now`.
    pub fn parse_preferences(
        &self,
        text: &str,
        audience: AgeBand,
        now: Timestamp,
    ) -> Result<Constraints> {
        Ok(self.parser.parse(text, audience, now)?)
    }

    /// The preference parser.
    pub fn parser(&self) -> &PreferenceParser {
        &self.parser
    }

    /// The configuration the engine runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Embeds a text with the engine's language model.
    pub fn embed(&self, text: &str) -> Result<Embedding> {
        Ok(self.encoder.embed(text)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Engine>();
    }
}
