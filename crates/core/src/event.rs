//! Interaction events. Every event has a timestamp and an idempotency key, so a retried
//! batch is counted once.

use jiff::Timestamp;

use crate::error::{Error, Result};
use crate::ids::{EventKey, UserId, VideoId};
use crate::user::CheckinAnswer;

/// Longest accepted watch time of one view (a day, in ms).
pub const MAX_WATCH_MS: u64 = 24 * 3_600 * 1_000;

/// One thing a user did.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    /// Idempotency key.
    pub key: EventKey,
    /// Who did it.
    pub user: UserId,
    /// When.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub at: Timestamp,
    /// What, and on which video.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// The kinds of event of DESIGN §2. In JSON the kind is the `kind` field, beside the
/// event's other fields: `{"key": "k1", "user": "u", "at": "...", "kind": "view",
/// "video": "v", "watch_ms": 5000, "completed": true}`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum EventKind {
    /// The video was shown (entered the viewport).
    Impression {
        /// The video.
        video: VideoId,
    },
    /// The video was watched.
    View {
        /// The video.
        video: VideoId,
        /// Watch time in milliseconds.
        watch_ms: u64,
        /// Watched to the end.
        #[serde(default)]
        completed: bool,
    },
    /// Liked.
    Like {
        /// The video.
        video: VideoId,
    },
    /// Commented on.
    Comment {
        /// The video.
        video: VideoId,
    },
    /// Shared.
    Share {
        /// The video.
        video: VideoId,
    },
    /// Followed the video's creator from the video.
    Follow {
        /// The video.
        video: VideoId,
    },
    /// Made a remix of the video.
    Remix {
        /// The remixed video.
        video: VideoId,
        /// The new video, when the app knows it already.
        #[serde(default)]
        new_video: Option<VideoId>,
    },
    /// Used a cameo from the video (put a featured person in a new video).
    CameoUse {
        /// The video.
        video: VideoId,
    },
    /// Created a video, inspired by `video` when given.
    Create {
        /// The video that inspired it, if any.
        #[serde(default)]
        video: Option<VideoId>,
    },
    /// Swiped away quickly.
    Skip {
        /// The video.
        video: VideoId,
    },
    /// Said "not interested".
    NotInterested {
        /// The video.
        video: VideoId,
    },
    /// Asked to see nothing more from the video's creator.
    HideCreator {
        /// The video.
        video: VideoId,
    },
    /// Reported the video.
    Report {
        /// The video.
        video: VideoId,
    },
    /// Answered a wellbeing check-in card.
    CheckinAnswer {
        /// The answer.
        answer: CheckinAnswer,
    },
}

impl EventKind {
    /// The video the event is about, if any.
    pub fn video(&self) -> Option<&VideoId> {
        match self {
            EventKind::Impression { video }
            | EventKind::View { video, .. }
            | EventKind::Like { video }
            | EventKind::Comment { video }
            | EventKind::Share { video }
            | EventKind::Follow { video }
            | EventKind::Remix { video, .. }
            | EventKind::CameoUse { video }
            | EventKind::Skip { video }
            | EventKind::NotInterested { video }
            | EventKind::HideCreator { video }
            | EventKind::Report { video } => Some(video),
            EventKind::Create { video } => video.as_ref(),
            EventKind::CheckinAnswer { .. } => None,
        }
    }

    /// The snake_case name of the kind, as in JSON.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Impression { .. } => "impression",
            EventKind::View { .. } => "view",
            EventKind::Like { .. } => "like",
            EventKind::Comment { .. } => "comment",
            EventKind::Share { .. } => "share",
            EventKind::Follow { .. } => "follow",
            EventKind::Remix { .. } => "remix",
            EventKind::CameoUse { .. } => "cameo_use",
            EventKind::Create { .. } => "create",
            EventKind::Skip { .. } => "skip",
            EventKind::NotInterested { .. } => "not_interested",
            EventKind::HideCreator { .. } => "hide_creator",
            EventKind::Report { .. } => "report",
            EventKind::CheckinAnswer { .. } => "checkin_answer",
        }
    }

    /// True for the actions that count as creation or participation (they end a passive
    /// streak and weigh most in the objective).
    pub fn is_active(&self) -> bool {
        matches!(
            self,
            EventKind::Like { .. }
                | EventKind::Comment { .. }
                | EventKind::Share { .. }
                | EventKind::Remix { .. }
                | EventKind::CameoUse { .. }
                | EventKind::Create { .. }
        )
    }
}

impl Event {
    /// Checks what the type system does not: watch time bounds, and that a remix does not
    /// name itself as its new video.
    pub fn validate(&self) -> Result<()> {
        match &self.kind {
            EventKind::View { watch_ms, .. } if *watch_ms > MAX_WATCH_MS => {
                Err(Error::OutOfRange {
                    field: "watch_ms",
                    got: *watch_ms as f64,
                    min: 0.0,
                    max: MAX_WATCH_MS as f64,
                })
            }
            EventKind::Remix {
                video,
                new_video: Some(new),
            } if new == video => Err(Error::invalid(
                "new_video",
                "a remix cannot be the video it remixes",
            )),
            _ => Ok(()),
        }
    }
}

/// How much an engagement says about interest: creation and participation above views,
/// negative signals and impressions nothing. One table for the store (interest vectors,
/// creator affinity, history), co-engagement and the co-engagement source.
pub fn engagement_weight(kind: &EventKind) -> f32 {
    match kind {
        EventKind::View {
            completed: true, ..
        } => 1.0,
        EventKind::View {
            completed: false,
            watch_ms,
            ..
        } => {
            if *watch_ms >= 3_000 {
                0.3
            } else {
                0.0
            }
        }
        EventKind::Like { .. } | EventKind::Follow { .. } => 2.0,
        EventKind::Comment { .. } | EventKind::Share { .. } => 3.0,
        EventKind::Remix { .. } | EventKind::CameoUse { .. } | EventKind::Create { .. } => 6.0,
        EventKind::Impression { .. }
        | EventKind::Skip { .. }
        | EventKind::NotInterested { .. }
        | EventKind::HideCreator { .. }
        | EventKind::Report { .. }
        | EventKind::CheckinAnswer { .. } => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_json() {
        let v = || VideoId::new("v").unwrap();
        let kinds = vec![
            EventKind::Impression { video: v() },
            EventKind::View {
                video: v(),
                watch_ms: 5_000,
                completed: true,
            },
            EventKind::Like { video: v() },
            EventKind::Comment { video: v() },
            EventKind::Share { video: v() },
            EventKind::Follow { video: v() },
            EventKind::Remix {
                video: v(),
                new_video: Some(VideoId::new("w").unwrap()),
            },
            EventKind::CameoUse { video: v() },
            EventKind::Create { video: None },
            EventKind::Skip { video: v() },
            EventKind::NotInterested { video: v() },
            EventKind::HideCreator { video: v() },
            EventKind::Report { video: v() },
            EventKind::CheckinAnswer {
                answer: CheckinAnswer::NotGreat,
            },
        ];
        for kind in kinds {
            let e = Event {
                key: EventKey::new(format!("k-{}", kind.name())).unwrap(),
                user: UserId::new("u").unwrap(),
                at: Timestamp::UNIX_EPOCH,
                kind,
            };
            let json = serde_json::to_value(&e).unwrap();
            assert_eq!(json["kind"], e.kind.name());
            let back: Event = serde_json::from_value(json).unwrap();
            assert_eq!(back, e);
            e.validate().unwrap();
        }
    }

    #[test]
    fn malformed_events_are_rejected() {
        let base = r#"{"key":"k","user":"u","at":"2026-01-01T00:00:00Z""#;
        assert!(serde_json::from_str::<Event>(&format!(r#"{base},"kind":"like"}}"#)).is_err());
        assert!(
            serde_json::from_str::<Event>(&format!(r#"{base},"kind":"binge","video":"v"}}"#))
                .is_err()
        );
        let e: Event = serde_json::from_str(&format!(
            r#"{base},"kind":"view","video":"v","watch_ms":99999999999}}"#
        ))
        .unwrap();
        assert_eq!(e.validate().unwrap_err().field(), Some("watch_ms"));
        let e: Event = serde_json::from_str(&format!(
            r#"{base},"kind":"remix","video":"v","new_video":"v"}}"#
        ))
        .unwrap();
        assert_eq!(e.validate().unwrap_err().field(), Some("new_video"));
    }
}
