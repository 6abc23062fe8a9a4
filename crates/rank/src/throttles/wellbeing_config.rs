use std::collections::HashSet;

use steerfeed_core::{Error, Result, SafetyLabel, TopicId, Video};

use super::TimeOfDay;

/// The tunables of every wellbeing and parental throttle and of the wellbeing terms of the
/// scorer (docs/design.md §6), one default each, stated once on each field.
///
/// Deserialise it from config (unknown fields are rejected, missing ones take their
/// default) and call [`WellbeingConfig::validate`] before use; the throttles and policy
/// functions assume a validated config, though none of them panics on a bad one.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WellbeingConfig {
    /// Teens' daily viewing limit in minutes (TikTok's and Instagram's teen default).
    /// Parental controls' `daily_limit_minutes` replaces it. Default 60; 1..=1440.
    pub teen_daily_minutes: u32,
    /// Teens' daily item cap: items served today. Default 300; 1..=100000.
    pub teen_daily_items: u32,
    /// Start of teens' bedtime, local time, inclusive. Default `"22:00"`.
    pub bedtime_start: TimeOfDay,
    /// End of teens' bedtime, local time, exclusive; the window wraps midnight when the
    /// end is not after the start. Default `"06:00"`; must differ from `bedtime_start`.
    pub bedtime_end: TimeOfDay,
    /// Minutes of continuous session between check-in cards. Default 30; 1..=1440.
    pub checkin_minutes: u32,
    /// Teens' minutes between check-in cards. Default 20; 1..=1440.
    pub teen_checkin_minutes: u32,
    /// Views in a row with no like, comment, remix or create after which a creation
    /// prompt is inserted and λ is raised. Default 20; 1..=10000.
    pub passive_streak: u32,
    /// Where in the page the creation prompt goes (index of the item it precedes; cut to
    /// the page length). Default 1, early in the page; 0..=100.
    pub creation_prompt_position: usize,
    /// How long a "not great" check-in answer counts as recent, in hours: it turns on
    /// [`lighter_mode`](super::lighter_mode) and makes a break card due. Default 2; 0..=168
    /// (0 turns both off).
    pub not_great_hours: f32,
    /// λ at the start of a session: the cost per unit of passive-view probability.
    /// Default 0.05; 0..=10.
    pub lambda_base: f32,
    /// λ added per hour of session. Default 0.45 (λ ≈ 0.5 after an hour); 0..=10.
    pub lambda_per_hour: f32,
    /// λ added once the passive streak reaches `passive_streak`, scaled by
    /// streak / threshold (so 0.2 at 20 passive views, 0.4 at 40). Default 0.2; 0..=10.
    pub lambda_streak: f32,
    /// The cap on λ. Default 0.8; at least `lambda_base`, at most 10.
    pub lambda_max: f32,
    /// Topics that count as light, for lighter mode (taxonomy ids). Default: comedy,
    /// pets, art, diy, cooking, music, dance, gardening, magic, ai_art, wildlife, anime,
    /// travel, home, science. Must not overlap `heavy_topics`.
    pub light_topics: Vec<String>,
    /// Topics that count as heavy, for lighter mode (taxonomy ids). Default: politics,
    /// sad, violence, horror, weight_loss, mature, finance, relationships. Any safety
    /// label also makes a video heavy.
    pub heavy_topics: Vec<String>,
}

const DEFAULT_BEDTIME_START: TimeOfDay = TimeOfDay::from_minutes_const(22 * 60);
const DEFAULT_BEDTIME_END: TimeOfDay = TimeOfDay::from_minutes_const(6 * 60);

impl Default for WellbeingConfig {
    fn default() -> Self {
        let owned = |xs: &[&str]| xs.iter().map(|&s| s.to_owned()).collect();
        Self {
            teen_daily_minutes: 60,
            teen_daily_items: 300,
            bedtime_start: DEFAULT_BEDTIME_START,
            bedtime_end: DEFAULT_BEDTIME_END,
            checkin_minutes: 30,
            teen_checkin_minutes: 20,
            passive_streak: 20,
            creation_prompt_position: 1,
            not_great_hours: 2.0,
            lambda_base: 0.05,
            lambda_per_hour: 0.45,
            lambda_streak: 0.2,
            lambda_max: 0.8,
            light_topics: owned(&[
                "comedy",
                "pets",
                "art",
                "diy",
                "cooking",
                "music",
                "dance",
                "gardening",
                "magic",
                "ai_art",
                "wildlife",
                "anime",
                "travel",
                "home",
                "science",
            ]),
            heavy_topics: owned(&[
                "politics",
                "sad",
                "violence",
                "horror",
                "weight_loss",
                "mature",
                "finance",
                "relationships",
            ]),
        }
    }
}

impl WellbeingConfig {
    /// Checks every field's range and that the bedtime window and the topic lists make
    /// sense. Errors name the field.
    pub fn validate(&self) -> Result<()> {
        in_range("teen_daily_minutes", self.teen_daily_minutes, 1, 24 * 60)?;
        in_range("teen_daily_items", self.teen_daily_items, 1, 100_000)?;
        if self.bedtime_start == self.bedtime_end {
            return Err(Error::invalid(
                "bedtime_end",
                "bedtime must end at a different time than it starts",
            ));
        }
        in_range("checkin_minutes", self.checkin_minutes, 1, 24 * 60)?;
        in_range(
            "teen_checkin_minutes",
            self.teen_checkin_minutes,
            1,
            24 * 60,
        )?;
        in_range("passive_streak", self.passive_streak, 1, 10_000)?;
        if self.creation_prompt_position > 100 {
            return Err(Error::OutOfRange {
                field: "creation_prompt_position",
                got: self.creation_prompt_position as f64,
                min: 0.0,
                max: 100.0,
            });
        }
        in_range_f("not_great_hours", self.not_great_hours, 0.0, 168.0)?;
        in_range_f("lambda_base", self.lambda_base, 0.0, 10.0)?;
        in_range_f("lambda_per_hour", self.lambda_per_hour, 0.0, 10.0)?;
        in_range_f("lambda_streak", self.lambda_streak, 0.0, 10.0)?;
        in_range_f("lambda_max", self.lambda_max, self.lambda_base, 10.0)?;
        check_topics("light_topics", &self.light_topics)?;
        check_topics("heavy_topics", &self.heavy_topics)?;
        let heavy: HashSet<&str> = self.heavy_topics.iter().map(String::as_str).collect();
        if let Some(both) = self
            .light_topics
            .iter()
            .find(|t| heavy.contains(t.as_str()))
        {
            return Err(Error::invalid(
                "light_topics",
                format!("{both:?} is listed as both light and heavy"),
            ));
        }
        Ok(())
    }

    /// True when the video is heavy: it carries a heavy topic or any safety label.
    pub fn is_heavy(&self, video: &Video) -> bool {
        video.safety.iter().any(|&l| is_heavy_label(l))
            || video.topics.iter().any(|t| contains(&self.heavy_topics, t))
    }

    /// True when the video is light: it carries a light topic and is not heavy.
    pub fn is_light(&self, video: &Video) -> bool {
        !self.is_heavy(video) && video.topics.iter().any(|t| contains(&self.light_topics, t))
    }
}

/// Every current safety label marks heavy content; the match is exhaustive so a new label
/// has to be classified here.
fn is_heavy_label(label: SafetyLabel) -> bool {
    match label {
        SafetyLabel::Mature
        | SafetyLabel::Violence
        | SafetyLabel::Sensitive
        | SafetyLabel::WeightLoss
        | SafetyLabel::Sad
        | SafetyLabel::Gambling
        | SafetyLabel::AlcoholDrugs
        | SafetyLabel::Weapons
        | SafetyLabel::SelfHarm => true,
    }
}

fn contains(list: &[String], topic: &TopicId) -> bool {
    list.iter().any(|t| t == topic.as_str())
}

fn check_topics(field: &'static str, topics: &[String]) -> Result<()> {
    for t in topics {
        TopicId::new(t)
            .map_err(|e| Error::invalid(field, format!("{t:?} is not a topic id: {e}")))?;
    }
    Ok(())
}

fn in_range(field: &'static str, got: u32, min: u32, max: u32) -> Result<()> {
    if (min..=max).contains(&got) {
        Ok(())
    } else {
        Err(Error::OutOfRange {
            field,
            got: f64::from(got),
            min: f64::from(min),
            max: f64::from(max),
        })
    }
}

fn in_range_f(field: &'static str, got: f32, min: f32, max: f32) -> Result<()> {
    if !got.is_finite() {
        return Err(Error::NonFinite { field, index: 0 });
    }
    if (min..=max).contains(&got) {
        Ok(())
    } else {
        Err(Error::OutOfRange {
            field,
            got: f64::from(got),
            min: f64::from(min),
            max: f64::from(max),
        })
    }
}
