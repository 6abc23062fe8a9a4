//! Ranking constraints compiled from a user's plain-language preferences (docs/design.md §4).
//!
//! This is the public, documented JSON shape; every field is optional and an empty
//! object means "no steering". The parser in `steerfeed-steer` produces it; users and
//! apps can read and edit it.

use jiff::Timestamp;

use crate::error::{Error, Result};
use crate::ids::TopicId;

/// Longest accepted free phrase inside a constraint, in bytes.
pub const MAX_PHRASE_LEN: usize = 200;
/// Most concepts in one list (boost, reduce, exclude or only).
pub const MAX_CONCEPTS: usize = 32;
/// Largest accepted strength of a boost or reduce.
pub const MAX_STRENGTH: f32 = 3.0;

/// A weighted concept: a taxonomy topic, a free phrase, or both.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WeightedConcept {
    /// The taxonomy topic the phrase maps to, when it maps to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<TopicId>,
    /// The user's own words ("baking"), kept so two phrases that map to one topic stay apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phrase: Option<String>,
    /// How strongly: 0.5 for "a bit", 1 by default, 2 for "way more".
    #[serde(default = "one")]
    pub strength: f32,
    /// When this item stops applying, if before the whole set's `expires_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub expires_at: Option<Timestamp>,
    /// The item in plain words ("More cooking until 8 Dec"); filled in answers, ignored
    /// in requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn one() -> f32 {
    1.0
}

/// A hard concept (exclude or only): a topic, a free phrase, or both.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Concept {
    /// The taxonomy topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<TopicId>,
    /// The user's own words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phrase: Option<String>,
    /// When this item stops applying, if before the whole set's `expires_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub expires_at: Option<Timestamp>,
    /// The item in plain words ("No politics until 8 Dec"); filled in answers, ignored in
    /// requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// More or less of the people you follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Shift {
    /// More.
    More,
    /// Less.
    Less,
}

/// A freshness preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Freshness {
    /// Prefer newer videos.
    Newer,
}

/// A request that policy did not allow, with the reason shown to the user.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rejected {
    /// The topic asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<TopicId>,
    /// The restricted kind of content asked for, when the request named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<crate::video::SafetyLabel>,
    /// The words of the request, as the person wrote them (normalised).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phrase: Option<String>,
    /// Why it was not applied.
    pub reason: String,
}

/// Why part of a text was not turned into a constraint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum UnclearReason {
    /// No topic is close enough to the words to be sure what they mean.
    LowConfidence,
    /// The words are in a language the parser does not read.
    UnsupportedLanguage,
}

/// Part of a text that was not applied because its meaning is unclear: the app can ask
/// the person back ("did you mean cooking?") instead of steering by a guess.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Unclear {
    /// The person's words (normalised).
    pub phrase: String,
    /// Why they were not applied.
    pub reason: UnclearReason,
    /// The closest topic, when there is one to suggest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suggestion: Option<TopicId>,
}

/// Typed, inspectable ranking constraints.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Constraints {
    /// Concepts to see more of.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub boost: Vec<WeightedConcept>,
    /// Concepts to see less of.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reduce: Vec<WeightedConcept>,
    /// Concepts never to see.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<Concept>,
    /// When non-empty, only these concepts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub only: Vec<Concept>,
    /// More or less from people you follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub following: Option<Shift>,
    /// Prefer newer videos.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freshness: Option<Freshness>,
    /// Longest video to show, in seconds.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::wire::integral_opt"
    )]
    pub max_duration_s: Option<u32>,
    /// Prefer remixable content (or, when false, less of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remix: Option<bool>,
    /// Prefer videos featuring friends' cameos.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub friends_cameos: Option<bool>,
    /// Requests that policy did not allow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<Rejected>,
    /// Parts of the text that were not applied because their meaning is unclear.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unclear: Vec<Unclear>,
    /// When these constraints stop applying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub expires_at: Option<Timestamp>,
}

impl Constraints {
    /// The taxonomy topics of the `only` concepts (a phrase-only concept has none).
    pub fn only_topics(&self) -> Vec<TopicId> {
        self.only.iter().filter_map(|c| c.topic.clone()).collect()
    }

    /// True when nothing would change the ranking (rejections, unclear parts and expiry do
    /// not count).
    pub fn is_empty(&self) -> bool {
        self.boost.is_empty()
            && self.reduce.is_empty()
            && self.exclude.is_empty()
            && self.only.is_empty()
            && self.following.is_none()
            && self.freshness.is_none()
            && self.max_duration_s.is_none()
            && self.remix.is_none()
            && self.friends_cameos.is_none()
    }

    /// True when the constraints have an expiry at or before `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }

    /// Checks an edited set of constraints before it is stored: sizes, strengths and that
    /// each concept names a topic or a phrase.
    pub fn validate(&self) -> Result<()> {
        for (field, n) in [
            ("boost", self.boost.len()),
            ("reduce", self.reduce.len()),
            ("exclude", self.exclude.len()),
            ("only", self.only.len()),
        ] {
            if n > MAX_CONCEPTS {
                return Err(Error::TooLarge {
                    field,
                    limit: MAX_CONCEPTS,
                    got: n,
                });
            }
        }
        for (field, list) in [("boost", &self.boost), ("reduce", &self.reduce)] {
            for c in list {
                check_concept(field, c.topic.as_ref(), c.phrase.as_deref())?;
                if !c.strength.is_finite() {
                    return Err(Error::NonFinite { field, index: 0 });
                }
                // Above 0 and not sub-normal: a strength too small for f32's normal range
                // is no strength.
                if !(c.strength >= f32::MIN_POSITIVE && c.strength <= MAX_STRENGTH) {
                    return Err(Error::OutOfRange {
                        field,
                        got: f64::from(c.strength),
                        min: f64::from(f32::MIN_POSITIVE),
                        max: f64::from(MAX_STRENGTH),
                    });
                }
            }
        }
        for (field, list) in [("exclude", &self.exclude), ("only", &self.only)] {
            for c in list {
                check_concept(field, c.topic.as_ref(), c.phrase.as_deref())?;
            }
        }
        for r in &self.rejected {
            if let Some(p) = &r.phrase {
                crate::wire::check_text("rejected", p)?;
            }
            crate::wire::check_text("rejected", &r.reason)?;
        }
        for u in &self.unclear {
            crate::wire::check_text("unclear", &u.phrase)?;
        }
        if let Some(p) = self
            .rejected
            .iter()
            .filter_map(|r| r.phrase.as_ref())
            .find(|p| p.len() > MAX_PHRASE_LEN)
        {
            return Err(Error::TooLarge {
                field: "rejected",
                limit: MAX_PHRASE_LEN,
                got: p.len(),
            });
        }
        if self.max_duration_s == Some(0) {
            return Err(Error::OutOfRange {
                field: "max_duration_s",
                got: 0.0,
                min: 1.0,
                max: f64::from(u32::MAX),
            });
        }
        Ok(())
    }
}

fn check_concept(field: &'static str, topic: Option<&TopicId>, phrase: Option<&str>) -> Result<()> {
    if let Some(p) = phrase {
        crate::wire::check_text(field, p)?;
    }
    match phrase {
        Some(p) if p.len() > MAX_PHRASE_LEN => Err(Error::TooLarge {
            field,
            limit: MAX_PHRASE_LEN,
            got: p.len(),
        }),
        Some(p) if p.trim().is_empty() && topic.is_none() => Err(Error::Empty { field }),
        None if topic.is_none() => {
            Err(Error::invalid(field, "a concept needs a topic or a phrase"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DESIGN_EXAMPLE: &str = r#"{
      "boost":   [{"topic": "cooking", "phrase": "baking", "strength": 1.0}],
      "reduce":  [{"topic": "politics", "phrase": "news", "strength": 0.5}],
      "exclude": [{"topic": "horror", "phrase": "jump scares"}],
      "only":    [{"topic": "pets", "phrase": "cats"}],
      "following": "more",
      "freshness": "newer",
      "max_duration_s": 15,
      "remix": true,
      "friends_cameos": true,
      "rejected": [{"topic": "mature", "reason": "not available for teen accounts"}],
      "expires_at": "2026-12-01T00:00:00Z"
    }"#;

    #[test]
    fn the_design_example_round_trips() {
        let c: Constraints = serde_json::from_str(DESIGN_EXAMPLE).unwrap();
        assert_eq!(c.boost[0].topic.as_ref().unwrap().as_str(), "cooking");
        assert_eq!(c.reduce[0].strength, 0.5);
        assert_eq!(c.following, Some(Shift::More));
        assert_eq!(c.max_duration_s, Some(15));
        c.validate().unwrap();
        let text = serde_json::to_string(&c).unwrap();
        let back: Constraints = serde_json::from_str(&text).unwrap();
        assert_eq!(back, c);
        let expected: serde_json::Value = serde_json::from_str(DESIGN_EXAMPLE).unwrap();
        assert_eq!(serde_json::to_value(&c).unwrap(), expected);
    }

    #[test]
    fn empty_constraints_serialise_to_an_empty_object() {
        let c = Constraints::default();
        assert!(c.is_empty());
        assert_eq!(serde_json::to_string(&c).unwrap(), "{}");
        let back: Constraints = serde_json::from_str("{}").unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn invalid_constraints_are_rejected() {
        assert!(serde_json::from_str::<Constraints>(r#"{"boots": []}"#).is_err());
        assert!(serde_json::from_str::<Constraints>(r#"{"following": "lots"}"#).is_err());
        let c: Constraints = serde_json::from_str(r#"{"boost": [{"strength": 1.0}]}"#).unwrap();
        assert_eq!(c.validate().unwrap_err().field(), Some("boost"));
        let c: Constraints =
            serde_json::from_str(r#"{"reduce": [{"topic": "sad", "strength": 9.0}]}"#).unwrap();
        assert_eq!(c.validate().unwrap_err().field(), Some("reduce"));
        // A sub-normal strength is refused; the smallest normal one is a strength.
        let c: Constraints =
            serde_json::from_str(r#"{"boost": [{"topic": "sad", "strength": 1e-39}]}"#).unwrap();
        assert!(c.boost[0].strength > 0.0);
        assert_eq!(c.validate().unwrap_err().field(), Some("boost"));
        let c: Constraints =
            serde_json::from_str(r#"{"boost": [{"topic": "sad", "strength": 1.1754944e-38}]}"#)
                .unwrap();
        c.validate().unwrap();
        let c: Constraints = serde_json::from_str(r#"{"max_duration_s": 0}"#).unwrap();
        assert_eq!(c.validate().unwrap_err().field(), Some("max_duration_s"));
    }

    #[test]
    fn expiry_is_inclusive() {
        let c: Constraints =
            serde_json::from_str(r#"{"expires_at": "2026-12-01T00:00:00Z"}"#).unwrap();
        let at: Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        assert!(c.is_expired(at));
        assert!(!c.is_expired("2026-11-30T23:59:59Z".parse().unwrap()));
    }
}
