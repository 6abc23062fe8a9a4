//! A person's data as a store holds it: the records an export lists (the one record
//! format of exports, per person and in bulk), and what erasing a person did.

use crate::{
    ConsentScope, Constraints, Event, EventKind, ParentalControls, Timestamp, User, UserId,
    VideoId, WellbeingState,
};

/// One stored fact, as exports write it: JSON with its kind in `record`, one per line in
/// bulk exports (`{"record": "follow", "user": "a", "creator": "b"}`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "record", rename_all = "snake_case", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Record {
    /// The account.
    User {
        /// The stored user.
        user: User,
    },
    /// `user` follows `creator`.
    Follow {
        /// Who follows.
        user: UserId,
        /// Whom.
        creator: UserId,
    },
    /// `user` blocked `other`.
    Block {
        /// Who blocked.
        user: UserId,
        /// Whom.
        other: UserId,
    },
    /// `user` muted `other` (or hid their videos).
    Mute {
        /// Who muted.
        user: UserId,
        /// Whom.
        other: UserId,
    },
    /// Who may use `person`'s likeness.
    Consent {
        /// The person.
        person: UserId,
        /// The scope they set.
        scope: ConsentScope,
        /// The creators they approved.
        approved: Vec<UserId>,
    },
    /// `person` withdrew consent for one video or all of one creator's.
    Revocation {
        /// The person.
        person: UserId,
        /// The video, when one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        video: Option<VideoId>,
        /// The creator, when all of theirs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        creator: Option<UserId>,
    },
    /// A user's parental controls.
    ParentalControls {
        /// The user.
        user: UserId,
        /// The controls.
        controls: ParentalControls,
    },
    /// A user's preferences in words and what they compiled to.
    Preferences {
        /// The user.
        user: UserId,
        /// What they wrote.
        text: String,
        /// The constraints.
        constraints: Constraints,
    },
    /// A user's wellbeing counters (as stored, not rolled to today).
    Wellbeing {
        /// The user.
        user: UserId,
        /// The counters.
        #[cfg_attr(feature = "openapi", schema(value_type = Object))]
        state: WellbeingState,
    },
    /// A video served to `user` (their seen history).
    Seen {
        /// The viewer.
        user: UserId,
        /// The video.
        video: VideoId,
        /// When.
        #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
        at: Timestamp,
    },
    /// Something `user` did with a video (their engagement history).
    Engagement {
        /// The user.
        user: UserId,
        /// What, on which video (an event's `kind` and its fields).
        #[cfg_attr(feature = "openapi", schema(value_type = Object))]
        action: EventKind,
        /// When.
        #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
        at: Timestamp,
    },
    /// A user's interest vector (a decayed sum of what they engaged with).
    Interest {
        /// The user.
        user: UserId,
        /// The vector (unit length).
        vector: Vec<f32>,
    },
    /// How close `user` is to `creator`, in `[0, 1)`, from their events.
    Affinity {
        /// The user.
        user: UserId,
        /// The creator.
        creator: UserId,
        /// The affinity at the time of the export.
        value: f32,
    },
    /// A logged event.
    Event {
        /// Its sequence number in the log (an import ignores it and may leave it out).
        #[serde(default, deserialize_with = "crate::wire::integral")]
        seq: u64,
        /// The event, as it was ingested (unset optional fields left out).
        event: Event,
    },
    /// A video (in a person's export: one they made).
    Video {
        /// The video, as stored (a deleted one may have no caption); the embedding when
        /// a bulk export asked for it, and always for a video with no caption.
        video: crate::Video,
    },
    /// A video of someone else in which the person appears.
    Cameo {
        /// The video.
        video: VideoId,
        /// Its creator.
        creator: UserId,
        /// The person.
        person: UserId,
    },
    /// A page served to `user` as the impression log keeps it: per item its position,
    /// source, propensity, what the action heads read and the terms of its score.
    Impression {
        /// The viewer.
        user: UserId,
        /// When it was served.
        #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
        at: Timestamp,
        /// The page: request id, rank profile, model and items.
        #[cfg_attr(feature = "openapi", schema(value_type = Object))]
        page: crate::ImpressionPage,
    },
}

/// The kinds of record a bulk export lists and an import applies: what the app told the
/// engine. Everything else a store holds (wellbeing, seen and history rings, interest,
/// affinity, counters) is derived from these and rebuilt by replaying the events, but
/// for the impression log, which holds only the pages this store served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordKind {
    /// Accounts.
    User,
    /// The catalogue, deleted videos included.
    Video,
    /// Follows.
    Follow,
    /// Blocks.
    Block,
    /// Mutes.
    Mute,
    /// Consent scopes and approved lists.
    Consent,
    /// Revocations.
    Revocation,
    /// Parental controls.
    ParentalControls,
    /// Preferences in words and their constraints.
    Preferences,
    /// The event log.
    Event,
}

impl RecordKind {
    /// Every kind, in the order a bulk export writes them: each kind refers only to
    /// kinds before it (videos to their creators, events to users and videos), so a file
    /// imports in its own order.
    pub const ALL: [RecordKind; 10] = [
        RecordKind::User,
        RecordKind::Video,
        RecordKind::Follow,
        RecordKind::Block,
        RecordKind::Mute,
        RecordKind::Consent,
        RecordKind::Revocation,
        RecordKind::ParentalControls,
        RecordKind::Preferences,
        RecordKind::Event,
    ];

    /// The name a record of this kind has in its `record` field.
    pub fn name(self) -> &'static str {
        match self {
            RecordKind::User => "user",
            RecordKind::Video => "video",
            RecordKind::Follow => "follow",
            RecordKind::Block => "block",
            RecordKind::Mute => "mute",
            RecordKind::Consent => "consent",
            RecordKind::Revocation => "revocation",
            RecordKind::ParentalControls => "parental_controls",
            RecordKind::Preferences => "preferences",
            RecordKind::Event => "event",
        }
    }

    /// The kind named `name` (its record name, or that name in the plural: `users`).
    pub fn parse(name: &str) -> Option<Self> {
        let name = name.trim();
        Self::ALL.into_iter().find(|k| {
            let n = k.name();
            name == n || name.strip_suffix('s') == Some(n)
        })
    }
}

impl Record {
    /// The kind of an importable record; `None` for what is derived from events
    /// (wellbeing, seen, engagement, interest, affinity), for cameo mentions and for
    /// logged pages.
    pub fn kind(&self) -> Option<RecordKind> {
        Some(match self {
            Record::User { .. } => RecordKind::User,
            Record::Video { .. } => RecordKind::Video,
            Record::Follow { .. } => RecordKind::Follow,
            Record::Block { .. } => RecordKind::Block,
            Record::Mute { .. } => RecordKind::Mute,
            Record::Consent { .. } => RecordKind::Consent,
            Record::Revocation { .. } => RecordKind::Revocation,
            Record::ParentalControls { .. } => RecordKind::ParentalControls,
            Record::Preferences { .. } => RecordKind::Preferences,
            Record::Event { .. } => RecordKind::Event,
            Record::Wellbeing { .. }
            | Record::Seen { .. }
            | Record::Engagement { .. }
            | Record::Interest { .. }
            | Record::Affinity { .. }
            | Record::Cameo { .. }
            | Record::Impression { .. } => return None,
        })
    }
}

pub use crate::ids::ERASED_CREATOR;

/// What happens to the videos a person made when they are erased.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum OwnVideos {
    /// Deleted, like every video featuring them: never served again, their records
    /// keep no caption, cameo or embedding, and name [`ERASED_CREATOR`] as creator.
    Delete,
    /// Kept in the catalogue under their creator id (served as before, where their
    /// cameos' consent allows).
    Keep,
}

/// What an erasure did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErasureReport {
    /// The person.
    pub user: UserId,
    /// True when the person had been erased before and nothing was left to erase.
    pub already_erased: bool,
    /// Events of theirs made unreadable in the event log.
    pub events: u64,
    /// Stored records removed (account, relations, consent, preferences, wellbeing,
    /// history and seen fragments, interest, affinity, idempotency keys).
    pub records: u64,
    /// Their own videos deleted.
    pub own_videos_deleted: u64,
    /// Videos of others featuring them, deleted.
    pub cameo_videos_deleted: u64,
    /// Every video deleted, own and cameo (the vector index drops them).
    #[serde(skip)]
    pub deleted: Vec<VideoId>,
}

impl ErasureReport {
    /// A report of nothing erased yet.
    pub fn new(user: UserId) -> Self {
        Self {
            user,
            already_erased: false,
            events: 0,
            records: 0,
            own_videos_deleted: 0,
            cameo_videos_deleted: 0,
            deleted: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_tagged_and_refuse_unknown_fields() {
        let r = Record::Follow {
            user: UserId::new("a").unwrap(),
            creator: UserId::new("b").unwrap(),
        };
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"record": "follow", "user": "a", "creator": "b"})
        );
        assert_eq!(serde_json::from_value::<Record>(json).unwrap(), r);
        let extra = serde_json::json!({"record": "follow", "user": "a", "creator": "b", "x": 1});
        assert!(serde_json::from_value::<Record>(extra).is_err());
        let kind = Record::Engagement {
            user: UserId::new("a").unwrap(),
            action: EventKind::Like {
                video: VideoId::new("v").unwrap(),
            },
            at: Timestamp::UNIX_EPOCH,
        };
        let json = serde_json::to_value(&kind).unwrap();
        assert_eq!(json["record"], "engagement");
        assert_eq!(json["action"]["kind"], "like");
        assert_eq!(json["action"]["video"], "v");
        assert_eq!(serde_json::from_value::<Record>(json).unwrap(), kind);
    }
}
