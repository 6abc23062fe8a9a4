//! Wellbeing throttles (stand-in until the throttles land: the policy functions the
//! scorer calls).

use steerfeed_core::{CheckinAnswer, FeedContext, Video};

/// Wellbeing tunables.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WellbeingConfig {
    /// λ at the start of a session.
    pub lambda_base: f32,
    /// λ added per hour of session.
    pub lambda_per_hour: f32,
    /// Cap.
    pub lambda_max: f32,
    /// Hours a "not great" answer lasts.
    pub not_great_hours: f32,
    /// Light topics.
    pub light_topics: Vec<String>,
    /// Heavy topics.
    pub heavy_topics: Vec<String>,
}

impl Default for WellbeingConfig {
    fn default() -> Self {
        Self {
            lambda_base: 0.05,
            lambda_per_hour: 0.45,
            lambda_max: 0.6,
            not_great_hours: 2.0,
            light_topics: ["comedy", "pets", "art", "diy", "cooking", "music", "dance"]
                .map(String::from)
                .to_vec(),
            heavy_topics: [
                "politics",
                "sad",
                "violence",
                "horror",
                "weight_loss",
                "mature",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

impl WellbeingConfig {
    /// Light video.
    pub fn is_light(&self, v: &Video) -> bool {
        v.topics
            .iter()
            .any(|t| self.light_topics.iter().any(|l| l == t.as_str()))
    }
    /// Heavy video.
    pub fn is_heavy(&self, v: &Video) -> bool {
        !v.safety.is_empty()
            || v.topics
                .iter()
                .any(|t| self.heavy_topics.iter().any(|l| l == t.as_str()))
    }
}

/// λ(session).
pub fn consumption_lambda(cfg: &WellbeingConfig, ctx: &FeedContext) -> f32 {
    (cfg.lambda_base + cfg.lambda_per_hour * ctx.session_minutes() / 60.0).min(cfg.lambda_max)
}

/// Recent "not great".
pub fn lighter_mode(cfg: &WellbeingConfig, ctx: &FeedContext) -> bool {
    matches!(ctx.wellbeing.last_answer, Some((CheckinAnswer::NotGreat, at))
        if steerfeed_core::minutes_between(at, ctx.now) <= cfg.not_great_hours * 60.0)
}
