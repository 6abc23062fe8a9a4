//! Records the store could not read, and the rule each one fell under.
//!
//! A store written by this build never holds an unreadable record, but one written by an
//! older build with a bug, or damaged on disk, may. Opening such a store must neither
//! fail (the app would lose its feed) nor serve what the record might forbid. So every
//! kind of record has a rule, chosen to fail closed:
//!
//! | record | rule |
//! |---|---|
//! | a video or its embedding | the video is left out of the index and never served until upserted again; deleting it removes the record ([`DamageRule::VideoWithheld`]) |
//! | a counter | its video is left out of the popular lists until its next event ([`DamageRule::Dropped`]) |
//! | a consent record, or a revocation of a readable person | that person's likeness is never served ([`DamageRule::LikenessWithheld`]) |
//! | a revocation whose person cannot be read | no video with a cameo is served ([`DamageRule::AllCameosWithheld`]) |
//! | a block or mute of a readable viewer | that viewer is served only the people they follow ([`DamageRule::ViewerRestricted`]) |
//! | a block or mute whose viewer cannot be read | every viewer is served only the people they follow ([`DamageRule::AllViewersRestricted`]) |
//! | a follow, an approval, a time-index entry | left out, which can only serve less ([`DamageRule::Dropped`]) |
//!
//! Each one is logged when found and listed by [`Store::damage`](crate::Store::damage).

use std::sync::Mutex;

pub use steerfeed_core::storage::{DamageReport, DamageRule, DamagedRecord};

/// The store's running report.
#[derive(Debug, Default)]
pub(crate) struct DamageLog(Mutex<(DamageReport, std::collections::HashSet<(String, String)>)>);

impl DamageLog {
    /// Records listed at most (the count goes on).
    pub const KEEP: usize = 1_000;

    /// Notes a record once (a record read again is not counted again).
    pub fn note(&self, tree: &'static str, key: &[u8], rule: DamageRule) {
        let key = key.escape_ascii().to_string();
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (report, known) = &mut *g;
        if !known.insert((tree.to_owned(), key.clone())) {
            return;
        }
        tracing::error!(tree, key = %key, ?rule, "store: unreadable record");
        report.total += 1;
        if report.records.len() < Self::KEEP {
            report.records.push(DamagedRecord { tree, key, rule });
        }
    }

    pub fn report(&self) -> DamageReport {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).0.clone()
    }
}
