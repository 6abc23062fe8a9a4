use steerfeed_core::{
    Candidate, ConceptVector, FeedContext, Filter, Filtered, Result, TopicId, Video,
};

use super::FilterConfig;

/// How well `video` matches `concept`: 1 when the video carries the concept's topic,
/// otherwise the cosine similarity of their embeddings (0 without an embedding).
pub fn concept_match(video: &Video, concept: &ConceptVector) -> f32 {
    if concept
        .topic
        .as_ref()
        .is_some_and(|t| video.topics.contains(t))
    {
        return 1.0;
    }
    video
        .embedding
        .as_ref()
        .map_or(0.0, |e| e.dot(&concept.vector))
}

fn has_topic(video: &Video, topics: &[&TopicId]) -> bool {
    topics.iter().any(|t| video.topics.contains(t))
}

/// Steering's hard constraints: `exclude` removes every match ("no politics"), `only`
/// keeps matches alone ("only cats"). A concept matches by topic, or by embedding
/// similarity to its phrase above the configured threshold.
///
/// Topics are read from the constraints themselves as well as from the resolved
/// concept vectors, so a topic exclusion holds even before its phrase is embedded.
pub struct SteeringFilter {
    cfg: FilterConfig,
}

impl SteeringFilter {
    /// A filter with these thresholds.
    pub fn new(cfg: FilterConfig) -> Self {
        Self { cfg }
    }
}

impl Filter for SteeringFilter {
    fn filter(&self, ctx: &FeedContext, candidates: Vec<Candidate>) -> Result<Filtered> {
        let excluded: Vec<&TopicId> = ctx
            .constraints
            .exclude
            .iter()
            .filter_map(|c| c.topic.as_ref())
            .collect();
        let only: Vec<&TopicId> = ctx
            .constraints
            .only
            .iter()
            .filter_map(|c| c.topic.as_ref())
            .collect();
        let any_only = !only.is_empty() || !ctx.only.is_empty();
        Ok(Filtered::partition(candidates, |c| {
            let v = &c.video;
            if has_topic(v, &excluded)
                || ctx
                    .exclude
                    .iter()
                    .any(|x| concept_match(v, x) >= self.cfg.exclude_similarity)
            {
                return false;
            }
            !any_only
                || has_topic(v, &only)
                || ctx
                    .only
                    .iter()
                    .any(|x| concept_match(v, x) >= self.cfg.only_similarity)
        }))
    }

    fn name(&self) -> &'static str {
        "steering"
    }
}
