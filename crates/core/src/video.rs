//! Videos.

use jiff::Timestamp;

use crate::error::{Error, Result};
use crate::ids::{TopicId, UserId, VideoId};
use crate::vector::Embedding;

/// Longest accepted caption, in bytes.
pub const MAX_CAPTION_LEN: usize = 2_000;
/// Most topics one video may carry.
pub const MAX_TOPICS: usize = 16;
/// Most people one video may feature in cameos.
pub const MAX_CAMEOS: usize = 16;
/// Longest accepted duration, in seconds (one hour).
pub const MAX_DURATION_S: f32 = 3_600.0;
/// Shortest accepted duration, in seconds (a millisecond).
pub const MIN_DURATION_S: f32 = 0.001;

/// A safety label on a video. Age-band rules live in the ranking policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum SafetyLabel {
    /// Adult content: never served to teens.
    Mature,
    /// Depictions of violence: capped for teens.
    Violence,
    /// Sensitive themes (self-image, distress): capped for teens.
    Sensitive,
    /// Weight-loss and dieting content: capped for teens.
    WeightLoss,
    /// Sad or distressing content: capped for teens.
    Sad,
    /// Gambling, betting and casinos: never served to teens.
    Gambling,
    /// Alcohol, tobacco, vaping and drugs: never served to teens.
    AlcoholDrugs,
    /// Weapons and firearms: capped for teens.
    Weapons,
    /// Self-harm and suicide: never served to teens.
    SelfHarm,
}

impl SafetyLabel {
    /// Every label, in the order the store encodes them.
    pub const ALL: [SafetyLabel; 9] = [
        SafetyLabel::Mature,
        SafetyLabel::Violence,
        SafetyLabel::Sensitive,
        SafetyLabel::WeightLoss,
        SafetyLabel::Sad,
        SafetyLabel::Gambling,
        SafetyLabel::AlcoholDrugs,
        SafetyLabel::Weapons,
        SafetyLabel::SelfHarm,
    ];

    /// The label's name, as JSON and the taxonomy file write it.
    pub fn name(self) -> &'static str {
        match self {
            SafetyLabel::Mature => "mature",
            SafetyLabel::Violence => "violence",
            SafetyLabel::Sensitive => "sensitive",
            SafetyLabel::WeightLoss => "weight_loss",
            SafetyLabel::Sad => "sad",
            SafetyLabel::Gambling => "gambling",
            SafetyLabel::AlcoholDrugs => "alcohol_drugs",
            SafetyLabel::Weapons => "weapons",
            SafetyLabel::SelfHarm => "self_harm",
        }
    }

    /// The label named `name` ([`SafetyLabel::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.name() == name)
    }

    /// Why a teen's request for more of a topic with this label is not applied.
    pub fn teen_refusal(self) -> &'static str {
        if self.is_teen_restricted() {
            "not available for teen accounts"
        } else {
            "sensitive content is limited for teen accounts and cannot be boosted"
        }
    }

    /// True when a video with this label is never served to a teen (the others are
    /// capped for teens by the selector).
    pub fn is_teen_restricted(self) -> bool {
        match self {
            SafetyLabel::Mature
            | SafetyLabel::Gambling
            | SafetyLabel::AlcoholDrugs
            | SafetyLabel::SelfHarm => true,
            SafetyLabel::Violence
            | SafetyLabel::Sensitive
            | SafetyLabel::WeightLoss
            | SafetyLabel::Sad
            | SafetyLabel::Weapons => false,
        }
    }
}

/// Who may be shown a video.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Audience {
    /// Anyone.
    #[default]
    Public,
    /// Only the creator's followers.
    Followers,
    /// Only people who follow the creator and whom the creator follows back.
    Mutuals,
}

/// A video as the app describes it. Every video is generated; `cameos` lists the people
/// whose likeness appears, each of whom must still consent for the video to be served.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Video {
    /// The app's id.
    pub id: VideoId,
    /// Who made it.
    pub creator: UserId,
    /// When it was posted.
    pub created_at: Timestamp,
    /// Length in seconds.
    pub duration_s: f32,
    /// The caption or prompt text.
    #[serde(default)]
    pub caption: String,
    /// Taxonomy topics; inferred from the caption when empty.
    #[serde(default)]
    pub topics: Vec<TopicId>,
    /// The content embedding; computed from the caption when absent (left out, not
    /// `null`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::wire::present"
    )]
    pub embedding: Option<Embedding>,
    /// The video this one remixes (left out, not `null`, when none).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::wire::present"
    )]
    pub remix_of: Option<VideoId>,
    /// People whose likeness appears.
    #[serde(default)]
    pub cameos: Vec<UserId>,
    /// Safety labels.
    #[serde(default)]
    pub safety: Vec<SafetyLabel>,
    /// Who may see it.
    #[serde(default)]
    pub audience: Audience,
    /// Deleted videos are never served.
    #[serde(default)]
    pub deleted: bool,
}

impl Video {
    /// A public video with no caption, topics, embedding, cameos or labels; fill in the rest
    /// with struct update syntax and call [`Video::validate`].
    pub fn new(id: VideoId, creator: UserId, created_at: Timestamp, duration_s: f32) -> Self {
        Self {
            id,
            creator,
            created_at,
            duration_s,
            caption: String::new(),
            topics: Vec::new(),
            embedding: None,
            remix_of: None,
            cameos: Vec::new(),
            safety: Vec::new(),
            audience: Audience::Public,
            deleted: false,
        }
    }

    /// Checks everything the type system does not: the duration, sizes, the embedding's
    /// dimension (`dim`), that a video does not remix itself, and that it has either an
    /// embedding or a caption to compute one from.
    pub fn validate(&self, dim: usize) -> Result<()> {
        if !self.duration_s.is_finite() {
            return Err(Error::NonFinite {
                field: "duration_s",
                index: 0,
            });
        }
        if !(MIN_DURATION_S..=MAX_DURATION_S).contains(&self.duration_s) {
            return Err(Error::OutOfRange {
                field: "duration_s",
                got: f64::from(self.duration_s),
                min: f64::from(MIN_DURATION_S),
                max: f64::from(MAX_DURATION_S),
            });
        }
        check_len("caption", self.caption.len(), MAX_CAPTION_LEN)?;
        crate::wire::check_text("caption", &self.caption)?;
        check_len("topics", self.topics.len(), MAX_TOPICS)?;
        check_len("cameos", self.cameos.len(), MAX_CAMEOS)?;
        if let Some(e) = &self.embedding {
            e.check_dim("embedding", dim)?;
        } else if self.caption.trim().is_empty() {
            return Err(Error::invalid(
                "embedding",
                "a video needs an embedding or a caption to compute one from",
            ));
        }
        if self.remix_of.as_ref() == Some(&self.id) {
            return Err(Error::invalid("remix_of", "a video cannot remix itself"));
        }
        Ok(())
    }

    /// True when the video carries `label`.
    pub fn has_label(&self, label: SafetyLabel) -> bool {
        self.safety.contains(&label)
    }
}

fn check_len(field: &'static str, got: usize, limit: usize) -> Result<()> {
    if got > limit {
        Err(Error::TooLarge { field, limit, got })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video() -> Video {
        Video {
            caption: "a cat bakes bread".into(),
            ..Video::new(
                VideoId::new("v1").unwrap(),
                UserId::new("u1").unwrap(),
                Timestamp::UNIX_EPOCH,
                12.0,
            )
        }
    }

    #[test]
    fn a_valid_video_passes() {
        video().validate(4).unwrap();
    }

    #[test]
    fn bad_videos_fail_with_the_field_named() {
        let mut v = video();
        v.duration_s = f32::NAN;
        assert_eq!(v.validate(4).unwrap_err().field(), Some("duration_s"));
        let mut v = video();
        v.duration_s = 0.0;
        assert_eq!(v.validate(4).unwrap_err().field(), Some("duration_s"));
        // The bounds are inclusive: a millisecond passes, less does not.
        let mut v = video();
        v.duration_s = MIN_DURATION_S;
        v.validate(4).unwrap();
        v.duration_s = 0.0009;
        assert_eq!(v.validate(4).unwrap_err().field(), Some("duration_s"));
        let mut v = video();
        v.caption = "a cat\0".into();
        assert_eq!(v.validate(4).unwrap_err().field(), Some("caption"));
        // Left out is none; `null` is refused.
        let json =
            r#"{"id":"v","creator":"u","created_at":"2026-01-01T00:00:00Z","duration_s":5.0"#;
        let read = |rest: &str| serde_json::from_str::<Video>(&format!("{json}{rest}}}"));
        assert!(read("").unwrap().embedding.is_none());
        assert!(read(r#","embedding":null"#).is_err());
        assert!(read(r#","remix_of":null"#).is_err());
        let mut v = video();
        v.embedding = Some(Embedding::normalized("embedding", &[1.0, 0.0]).unwrap());
        assert!(matches!(
            v.validate(4),
            Err(Error::WrongDimension {
                expected: 4,
                got: 2,
                ..
            })
        ));
        let mut v = video();
        v.caption.clear();
        assert_eq!(v.validate(4).unwrap_err().field(), Some("embedding"));
        let mut v = video();
        v.remix_of = Some(v.id.clone());
        assert_eq!(v.validate(4).unwrap_err().field(), Some("remix_of"));
        let mut v = video();
        v.caption = "x".repeat(MAX_CAPTION_LEN + 1);
        assert!(matches!(v.validate(4), Err(Error::TooLarge { .. })));
    }

    #[test]
    fn video_json_rejects_unknown_fields_and_labels() {
        let ok = r#"{"id":"v","creator":"c","created_at":"2026-01-01T00:00:00Z","duration_s":9,
                     "caption":"hi","safety":["mature"],"audience":"followers"}"#;
        let v: Video = serde_json::from_str(ok).unwrap();
        assert!(v.has_label(SafetyLabel::Mature));
        assert_eq!(v.audience, Audience::Followers);
        let unknown_field = ok.replace("\"caption\"", "\"captoin\"");
        assert!(serde_json::from_str::<Video>(&unknown_field).is_err());
        let unknown_label = ok.replace("mature", "spicy");
        assert!(serde_json::from_str::<Video>(&unknown_label).is_err());
    }
}
