//! Feed requests and responses.

use jiff::Timestamp;

use crate::constraints::Constraints;
use crate::error::{Error, Result};
use crate::explain::Explanation;
use crate::ids::{SessionId, UserId, VideoId};
use crate::score::ScoreBreakdown;

/// Smallest page size.
pub const MIN_LIMIT: u16 = 1;
/// Largest page size.
pub const MAX_LIMIT: u16 = 100;
/// Longest accepted cursor, in bytes.
pub const MAX_CURSOR_LEN: usize = 512;

/// An opaque pagination cursor returned with each page.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cursor(String);

impl Cursor {
    /// Wraps a cursor string (1 to [`MAX_CURSOR_LEN`] printable ASCII bytes).
    pub fn new(s: impl Into<String>) -> Result<Self> {
        let s = s.into();
        if s.is_empty() {
            return Err(Error::Empty { field: "cursor" });
        }
        if s.len() > MAX_CURSOR_LEN {
            return Err(Error::TooLarge {
                field: "cursor",
                limit: MAX_CURSOR_LEN,
                got: s.len(),
            });
        }
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::invalid("cursor", "not a cursor this engine issued"));
        }
        Ok(Self(s))
    }

    /// The cursor text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Cursor {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Self::new(s)
    }
}

impl From<Cursor> for String {
    fn from(c: Cursor) -> String {
        c.0
    }
}

/// One feed request. Constructed only through [`FeedRequest::new`] or deserialisation,
/// both of which check the limit.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "FeedRequestWire")]
pub struct FeedRequest {
    user: UserId,
    session: Option<SessionId>,
    limit: u16,
    cursor: Option<Cursor>,
    now: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    profile: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedRequestWire {
    user: UserId,
    #[serde(default)]
    session: Option<SessionId>,
    #[serde(default = "default_limit", deserialize_with = "crate::wire::integral")]
    limit: u32,
    #[serde(default)]
    cursor: Option<Cursor>,
    #[serde(default)]
    now: Option<Timestamp>,
    #[serde(default)]
    profile: Option<String>,
}

fn default_limit() -> u32 {
    20
}

impl TryFrom<FeedRequestWire> for FeedRequest {
    type Error = Error;
    fn try_from(w: FeedRequestWire) -> Result<Self> {
        let limit = check_limit(w.limit)?;
        let req = Self {
            user: w.user,
            session: w.session,
            limit,
            cursor: w.cursor,
            now: w.now,
            profile: None,
        };
        match w.profile {
            Some(p) => req.with_profile(p),
            None => Ok(req),
        }
    }
}

fn check_limit(limit: u32) -> Result<u16> {
    if (u32::from(MIN_LIMIT)..=u32::from(MAX_LIMIT)).contains(&limit) {
        Ok(limit as u16)
    } else {
        Err(Error::OutOfRange {
            field: "limit",
            got: f64::from(limit),
            min: f64::from(MIN_LIMIT),
            max: f64::from(MAX_LIMIT),
        })
    }
}

impl FeedRequest {
    /// A first-page request of `limit` items (1..=100) for `user`.
    pub fn new(user: UserId, limit: u32) -> Result<Self> {
        Ok(Self {
            user,
            session: None,
            limit: check_limit(limit)?,
            cursor: None,
            now: None,
            profile: None,
        })
    }

    /// Serves the request with the rank profile `name` instead of the one the user's
    /// experiment assignment gives (for internal testing): 1 to 64 ASCII letters,
    /// digits, `_` or `-`. Whether the profile exists is the engine's to say.
    pub fn with_profile(mut self, name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let ok = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !ok {
            return Err(Error::invalid(
                "profile",
                "a profile name is 1 to 64 ASCII letters, digits, '_' or '-'",
            ));
        }
        self.profile = Some(name);
        Ok(self)
    }

    /// Sets the session.
    pub fn with_session(mut self, session: SessionId) -> Self {
        self.session = Some(session);
        self
    }

    /// Sets the cursor of the page to continue from.
    pub fn with_cursor(mut self, cursor: Cursor) -> Self {
        self.cursor = Some(cursor);
        self
    }

    /// Pins the request's clock (for replay and tests); otherwise the engine uses the wall clock.
    pub fn at(mut self, now: Timestamp) -> Self {
        self.now = Some(now);
        self
    }

    /// The user.
    pub fn user(&self) -> &UserId {
        &self.user
    }

    /// The session, if the app named one.
    pub fn session(&self) -> Option<&SessionId> {
        self.session.as_ref()
    }

    /// Page size, 1..=100.
    pub fn limit(&self) -> usize {
        usize::from(self.limit)
    }

    /// The cursor, if continuing.
    pub fn cursor(&self) -> Option<&Cursor> {
        self.cursor.as_ref()
    }

    /// The pinned clock, if any.
    pub fn now(&self) -> Option<Timestamp> {
        self.now
    }

    /// The rank profile the request names, if any.
    pub fn profile(&self) -> Option<&str> {
        self.profile.as_deref()
    }
}

/// The kinds of card the engine puts in a feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum CardKind {
    /// "How are you feeling?" every N minutes of session.
    Checkin,
    /// "Make something?" after a long passive streak.
    CreationPrompt,
    /// The daily viewing limit is reached (gate: no items).
    LimitReached,
    /// It is bedtime in the user's time zone (gate: no items).
    Bedtime,
    /// The session's scroll cap is reached (gate: no items).
    CaughtUp,
    /// An offer to take a break after a "not great" check-in.
    Break,
}

/// A card shown in the feed in place of, or between, videos.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Card {
    /// Which card.
    pub kind: CardKind,
    /// Index in `items` before which the card is shown (0 for gate cards).
    pub position: usize,
    /// The text shown.
    pub message: String,
}

/// One served video.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeedItem {
    /// The video.
    pub video: VideoId,
    /// Its final score.
    pub score: f32,
    /// The source that proposed it.
    pub source: String,
    /// How the score was made.
    pub breakdown: ScoreBreakdown,
    /// Why it is here, for the user.
    pub explanation: Explanation,
}

/// One page of feed.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeedResponse {
    /// The videos, in order.
    pub items: Vec<FeedItem>,
    /// Cards to show, with their positions.
    pub cards: Vec<Card>,
    /// The cursor for the next page, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<Cursor>,
    /// The steering constraints that were applied to this page.
    pub applied: Constraints,
    /// The request's id, under which the impression log keeps the page.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub request_id: String,
    /// The rank profile that served it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub profile: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_is_checked_at_construction_and_deserialisation() {
        let u = || UserId::new("u").unwrap();
        assert!(FeedRequest::new(u(), 0).is_err());
        assert!(FeedRequest::new(u(), 101).is_err());
        assert_eq!(FeedRequest::new(u(), 100).unwrap().limit(), 100);
        let err = serde_json::from_str::<FeedRequest>(r#"{"user":"u","limit":0}"#).unwrap_err();
        assert!(err.to_string().contains("limit"), "{err}");
        let r: FeedRequest = serde_json::from_str(r#"{"user":"u"}"#).unwrap();
        assert_eq!(r.limit(), 20);
        assert!(serde_json::from_str::<FeedRequest>(r#"{"user":"","limit":5}"#).is_err());
        assert!(serde_json::from_str::<FeedRequest>(r#"{"user":"u","limt":5}"#).is_err());
    }

    #[test]
    fn cursors_must_be_printable() {
        assert!(Cursor::new("abc.123").is_ok());
        assert!(Cursor::new("").is_err());
        assert!(Cursor::new("a b").is_err());
        assert!(Cursor::new("x".repeat(MAX_CURSOR_LEN + 1)).is_err());
    }
}
