//! The records the store keeps beside the core types: a person's consent scope, their
//! wellbeing counters with what it takes to keep them, and the consent facts a feed
//! reads per person. The codec encodes them; nothing here depends on sled.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use steerfeed_core::{ConsentScope, Error, VideoId, WellbeingState};

/// The error of a stored record that does not decode.
pub(crate) fn corrupt(what: &str) -> Error {
    Error::internal("store", format!("corrupt {what} record"))
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct ConsentRec {
    pub scope: ConsentScope,
}

/// Wellbeing counters plus what the store needs to keep them: the local day they count,
/// the last activity (sessions end after a gap) and the last counted item (an impression
/// followed by a view of the same video counts one item).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct WellbeingRec {
    pub state: WellbeingState,
    pub day: Option<jiff::civil::Date>,
    pub last_active: Option<Timestamp>,
    pub last_item: Option<VideoId>,
}

impl WellbeingRec {
    /// Moves the daily counters to the local day of `at`; true when `at` falls on the
    /// counted day (an event from an earlier day does not count towards today).
    pub fn roll(&mut self, tz: &TimeZone, at: Timestamp) -> bool {
        let d = tz.to_datetime(at).date();
        match self.day {
            Some(cur) if d < cur => false,
            Some(cur) if d == cur => true,
            _ => {
                self.day = Some(d);
                self.state.minutes_today = 0.0;
                self.state.items_today = 0;
                true
            }
        }
    }

    /// Records activity at `at`: a gap longer than `gap_ms` starts a new session.
    pub fn touch(&mut self, at: Timestamp, gap_ms: i64) {
        match self.last_active {
            Some(last) if at < last => {}
            Some(last)
                if at.as_millisecond() - last.as_millisecond() <= gap_ms
                    && self.state.session_started.is_some() =>
            {
                self.last_active = Some(at);
            }
            _ => {
                self.state.session_started = Some(at);
                self.state.session_items = 0;
                self.last_active = Some(at);
            }
        }
    }

    /// The state as of `now`: daily counters of an earlier local day read as zero, and a
    /// session idle for longer than `gap_ms` has ended.
    pub fn view(&self, tz: &TimeZone, now: Timestamp, gap_ms: i64) -> WellbeingState {
        let mut s = self.state.clone();
        if let Some(day) = self.day
            && tz.to_datetime(now).date() > day
        {
            s.minutes_today = 0.0;
            s.items_today = 0;
        }
        if self
            .last_active
            .is_none_or(|last| now.as_millisecond() - last.as_millisecond() > gap_ms)
        {
            s.session_started = None;
            s.session_items = 0;
        }
        s
    }
}

/// What the consent filter needs of a person, whatever the video: cached per person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PersonFacts {
    pub age_band: steerfeed_core::AgeBand,
    pub scope: ConsentScope,
    pub parental_scope: Option<ConsentScope>,
}
