//! The engine: what an app opens once and calls from any thread.

use steerfeed_core::{Embedding, Result};
use steerfeed_steer::Encoder;

use crate::config::Config;

/// The steerfeed engine. `Send + Sync`: share it behind an `Arc`.
#[derive(Debug)]
pub struct Engine {
    config: Config,
    encoder: Encoder,
}

impl Engine {
    /// Opens the engine: checks the configuration and loads the encoder (the model and
    /// the runtime fetched by `make setup`). A missing file is an
    /// [`Unavailable`](steerfeed_core::Error::Unavailable) error naming the command to run.
    pub fn open(config: Config) -> Result<Self> {
        config.validate()?;
        let encoder = Encoder::open(&config.model)?;
        Ok(Self { config, encoder })
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
