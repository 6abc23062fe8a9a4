//! What the engine keeps in its store, as types every store implementation shares.

use crate::{Constraints, EventKey, UserId, VideoId};

/// What a revocation covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Revocation {
    /// One video.
    Video(VideoId),
    /// Every video of one creator, present and future.
    Creator(UserId),
}

/// The outcome of an event batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestReport {
    /// Events newly logged and counted.
    pub accepted: usize,
    /// Keys of events already logged (or repeated within the batch): not counted again.
    pub duplicates: Vec<EventKey>,
}

/// A user's preference text and the constraints compiled from it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Preferences {
    /// What the user wrote.
    pub text: String,
    /// What it compiled to (with its expiry).
    pub constraints: Constraints,
}

/// What a served page changes for its viewer (recorded in one write).
#[derive(Debug, Clone, Copy, Default)]
pub struct ServedPage<'a> {
    /// The items served, in page order.
    pub videos: &'a [VideoId],
    /// A check-in card was shown.
    pub checkin: bool,
    /// A break card was shown.
    pub break_card: bool,
}

/// Where a batch's accepted events went in the event log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Logged {
    /// The sequence number of the first accepted event (0 when none was accepted); the
    /// others follow it one by one, in batch order.
    pub first_seq: u64,
    /// The indexes in the batch of the accepted events, in order.
    pub accepted: Vec<usize>,
}

/// What the store does about an unreadable record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DamageRule {
    /// The video is left out of the vector index and never served.
    VideoWithheld,
    /// The person's likeness is never served.
    LikenessWithheld,
    /// No video with a cameo is served.
    AllCameosWithheld,
    /// The viewer is served only people they follow.
    ViewerRestricted,
    /// Every viewer is served only people they follow.
    AllViewersRestricted,
    /// The entry is left out: it could only have made more videos servable.
    Dropped,
}

/// One unreadable record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DamagedRecord {
    /// The sled tree holding it.
    pub tree: &'static str,
    /// Its key, printable (bytes outside ASCII escaped).
    pub key: String,
    /// What the store does about it.
    pub rule: DamageRule,
}

/// Every unreadable record a store found since it opened (the first thousand listed).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DamageReport {
    /// The records, in the order found.
    pub records: Vec<DamagedRecord>,
    /// How many were found, listed or not.
    pub total: u64,
}

impl DamageReport {
    /// True when nothing unreadable was found.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}
