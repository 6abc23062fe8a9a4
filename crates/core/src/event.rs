//! Interaction events. Every event has a timestamp and an idempotency key, so a retried
//! batch is counted once.

use jiff::Timestamp;

use crate::error::{Error, Result};
use crate::ids::{EventKey, UserId, VideoId};
use crate::user::CheckinAnswer;

/// Longest accepted watch time of one view (a day, in ms).
pub const MAX_WATCH_MS: u64 = 24 * 3_600 * 1_000;

/// One thing a user did. In JSON every field sits at one level beside `kind`, and a
/// field the kind does not have is refused (a typo such as `"complete"` for `completed`
/// would otherwise be dropped without a word).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "WireEvent")]
pub struct Event {
    /// Idempotency key.
    pub key: EventKey,
    /// Who did it.
    pub user: UserId,
    /// When.
    pub at: Timestamp,
    /// What, and on which video.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// The kinds of event of docs/design.md §2. In JSON the kind is the `kind` field, beside the
/// event's other fields: `{"key": "k1", "user": "u", "at": "...", "kind": "view",
/// "video": "v", "watch_ms": 5000, "completed": true}`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
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
        #[serde(default, skip_serializing_if = "Option::is_none")]
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
        #[serde(default, skip_serializing_if = "Option::is_none")]
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

/// An event as JSON carries it: every field any kind has, each optional, and nothing else.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WireEvent {
    key: EventKey,
    user: UserId,
    at: Timestamp,
    kind: KindTag,
    #[serde(default, deserialize_with = "crate::wire::present")]
    video: Option<VideoId>,
    #[serde(default, deserialize_with = "crate::wire::integral_opt")]
    watch_ms: Option<u64>,
    #[serde(default, deserialize_with = "crate::wire::present")]
    completed: Option<bool>,
    #[serde(default, deserialize_with = "crate::wire::present")]
    new_video: Option<VideoId>,
    #[serde(default, deserialize_with = "crate::wire::present")]
    answer: Option<CheckinAnswer>,
}

#[derive(Debug, Clone, Copy, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum KindTag {
    Impression,
    View,
    Like,
    Comment,
    Share,
    Follow,
    Remix,
    CameoUse,
    Create,
    Skip,
    NotInterested,
    HideCreator,
    Report,
    CheckinAnswer,
}

impl TryFrom<WireEvent> for Event {
    type Error = String;

    fn try_from(w: WireEvent) -> std::result::Result<Self, String> {
        use KindTag as K;
        let name = format!("{:?}", w.kind);
        let allowed: &[&str] = match w.kind {
            K::View => &["video", "watch_ms", "completed"],
            K::Remix => &["video", "new_video"],
            K::CheckinAnswer => &["answer"],
            _ => &["video"],
        };
        let present = [
            ("video", w.video.is_some()),
            ("watch_ms", w.watch_ms.is_some()),
            ("completed", w.completed.is_some()),
            ("new_video", w.new_video.is_some()),
            ("answer", w.answer.is_some()),
        ];
        if let Some((field, _)) = present
            .iter()
            .find(|(f, here)| *here && !allowed.contains(f))
        {
            return Err(format!(
                "`{field}` is not a field of a {} event (it takes {})",
                snake(&name),
                allowed.join(", ")
            ));
        }
        let required = |v: Option<VideoId>| {
            v.ok_or_else(|| format!("missing field `video` (a {} event needs it)", snake(&name)))
        };
        let kind = match w.kind {
            K::Impression => EventKind::Impression {
                video: required(w.video)?,
            },
            K::View => EventKind::View {
                video: required(w.video)?,
                watch_ms: w
                    .watch_ms
                    .ok_or("missing field `watch_ms` (a view event needs it)")?,
                completed: w.completed.unwrap_or(false),
            },
            K::Like => EventKind::Like {
                video: required(w.video)?,
            },
            K::Comment => EventKind::Comment {
                video: required(w.video)?,
            },
            K::Share => EventKind::Share {
                video: required(w.video)?,
            },
            K::Follow => EventKind::Follow {
                video: required(w.video)?,
            },
            K::Remix => EventKind::Remix {
                video: required(w.video)?,
                new_video: w.new_video,
            },
            K::CameoUse => EventKind::CameoUse {
                video: required(w.video)?,
            },
            K::Create => EventKind::Create { video: w.video },
            K::Skip => EventKind::Skip {
                video: required(w.video)?,
            },
            K::NotInterested => EventKind::NotInterested {
                video: required(w.video)?,
            },
            K::HideCreator => EventKind::HideCreator {
                video: required(w.video)?,
            },
            K::Report => EventKind::Report {
                video: required(w.video)?,
            },
            K::CheckinAnswer => EventKind::CheckinAnswer {
                answer: w
                    .answer
                    .ok_or("missing field `answer` (a checkin_answer event needs it)")?,
            },
        };
        Ok(Event {
            key: w.key,
            user: w.user,
            at: w.at,
            kind,
        })
    }
}

/// `CameoUse` → `cameo_use`.
fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
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

    #[test]
    fn unknown_and_foreign_fields_are_refused_not_dropped() {
        let base = r#"{"key":"k","user":"u","at":"2026-01-01T00:00:00Z""#;
        let parse = |rest: &str| serde_json::from_str::<Event>(&format!("{base},{rest}}}"));
        // A typo of `completed`, and a field no event has.
        let typo = parse(r#""kind":"view","video":"v","watch_ms":5000,"complete":true"#);
        assert!(typo.unwrap_err().to_string().contains("complete"));
        assert!(parse(r#""kind":"like","video":"v","colour":"red""#).is_err());
        // Fields of another kind.
        let foreign = parse(r#""kind":"like","video":"v","watch_ms":5"#).unwrap_err();
        assert!(
            foreign.to_string().contains("not a field of a like event"),
            "{foreign}"
        );
        assert!(parse(r#""kind":"checkin_answer","answer":"great","video":"v""#).is_err());
        assert!(
            parse(r#""kind":"cameo_use""#)
                .unwrap_err()
                .to_string()
                .contains("cameo_use")
        );
        assert!(parse(r#""kind":"view","video":"v""#).is_err());
        assert!(parse(r#""kind":"checkin_answer""#).is_err());
        // A field written `null` is not a field left out.
        for nulled in [
            r#""kind":"like","video":null"#,
            r#""kind":"like","video":"v","answer":null"#,
            r#""kind":"view","video":"v","watch_ms":5000,"completed":null"#,
            r#""kind":"remix","video":"v","new_video":null"#,
            r#""kind":"create","video":null"#,
        ] {
            assert!(parse(nulled).is_err(), "{nulled}");
        }
        assert!(parse(r#""kind":"create""#).is_ok());
        assert!(parse(r#""kind":"remix","video":"v""#).is_ok());
        // What each kind has still reads, optional fields defaulted.
        let e = parse(r#""kind":"view","video":"v","watch_ms":5000"#).unwrap();
        assert!(matches!(
            e.kind,
            EventKind::View {
                completed: false,
                ..
            }
        ));
        assert!(matches!(
            parse(r#""kind":"create""#).unwrap().kind,
            EventKind::Create { video: None }
        ));
    }
}
