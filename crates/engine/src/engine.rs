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

    /// Validates videos and fills in what the app left out: the embedding from the
    /// caption, the topics from the embedding. A bad video is an error naming its field,
    /// and then no video of the batch is changed.
    pub fn prepare_videos(&self, videos: &mut [steerfeed_core::Video]) -> Result<()> {
        let dim = self.encoder.dim();
        for v in videos.iter() {
            v.validate(dim)?;
        }
        let mut prepared = videos.to_vec();
        self.parser.prepare_videos(&mut prepared)?;
        videos.clone_from_slice(&prepared);
        Ok(())
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
    fn videos_without_embeddings_or_topics_are_completed_from_the_caption() {
        let engine = Engine::open(Config::default()).unwrap_or_else(|e| panic!("{e}"));
        let mut videos = vec![steerfeed_core::Video {
            caption: "a tabby kitten chases a laser pointer".into(),
            ..steerfeed_core::Video::new(
                steerfeed_core::VideoId::new("v1").unwrap(),
                steerfeed_core::UserId::new("u1").unwrap(),
                Timestamp::UNIX_EPOCH,
                9.0,
            )
        }];
        engine.prepare_videos(&mut videos).unwrap();
        assert_eq!(videos[0].embedding.as_ref().unwrap().dim(), 384);
        assert!(
            videos[0].topics.iter().any(|t| t.as_str() == "pets"),
            "{:?}",
            videos[0].topics
        );
        let mut bad = videos.clone();
        bad.push(steerfeed_core::Video::new(
            steerfeed_core::VideoId::new("v2").unwrap(),
            steerfeed_core::UserId::new("u1").unwrap(),
            Timestamp::UNIX_EPOCH,
            0.0,
        ));
        let before = bad.clone();
        assert!(engine.prepare_videos(&mut bad).is_err());
        assert_eq!(bad, before, "a failed batch changes nothing");
    }

    #[test]
    fn the_engine_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Engine>();
    }
}
