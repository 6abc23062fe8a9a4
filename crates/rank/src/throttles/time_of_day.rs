use std::fmt;

use steerfeed_core::{Error, Result};

/// Minutes in a day.
const DAY_MINUTES: u16 = 24 * 60;

/// A wall-clock time of day with minute precision, in the user's local time.
///
/// Written in config as an `"HH:MM"` string (24-hour clock, `"00:00"` to `"23:59"`) or as
/// minutes since midnight (`0` to `1439`); always serialised as `"HH:MM"`. A value of this
/// type is valid by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeOfDay(u16);

impl TimeOfDay {
    /// Midnight, `00:00`.
    pub const MIDNIGHT: TimeOfDay = TimeOfDay(0);

    /// `minutes` after midnight, for constants; `minutes` must be below 1440.
    pub(super) const fn from_minutes_const(minutes: u16) -> Self {
        assert!(minutes < DAY_MINUTES, "a time of day is below 24:00");
        Self(minutes)
    }

    /// `hour:minute`; hours 0..=23, minutes 0..=59.
    pub fn new(hour: u8, minute: u8) -> Result<Self> {
        if hour > 23 {
            return Err(Error::OutOfRange {
                field: "hour",
                got: f64::from(hour),
                min: 0.0,
                max: 23.0,
            });
        }
        if minute > 59 {
            return Err(Error::OutOfRange {
                field: "minute",
                got: f64::from(minute),
                min: 0.0,
                max: 59.0,
            });
        }
        Ok(Self(u16::from(hour) * 60 + u16::from(minute)))
    }

    /// `minutes` after midnight, 0..=1439.
    pub fn from_minutes(minutes: u32) -> Result<Self> {
        match u16::try_from(minutes) {
            Ok(m) if m < DAY_MINUTES => Ok(Self(m)),
            _ => Err(Error::OutOfRange {
                field: "time_of_day",
                got: f64::from(minutes),
                min: 0.0,
                max: f64::from(DAY_MINUTES - 1),
            }),
        }
    }

    /// Parses `"HH:MM"` (two digits each, 24-hour clock).
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || {
            Error::invalid(
                "time_of_day",
                format!("{s:?} is not a time of day; write \"HH:MM\", e.g. \"22:00\""),
            )
        };
        let (h, m) = s.split_once(':').ok_or_else(bad)?;
        let two_digits = |p: &str| p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit());
        if !two_digits(h) || !two_digits(m) {
            return Err(bad());
        }
        let hour: u8 = h.parse().map_err(|_| bad())?;
        let minute: u8 = m.parse().map_err(|_| bad())?;
        Self::new(hour, minute).map_err(|_| bad())
    }

    /// Minutes after midnight, 0..=1439.
    pub fn minutes(self) -> u16 {
        self.0
    }

    /// True when `self` lies in the window from `start` (inclusive) to `end` (exclusive),
    /// which wraps midnight when `end` is not after `start` (`22:00`–`06:00`). An empty
    /// window (`start == end`) contains nothing.
    pub fn is_within(self, start: TimeOfDay, end: TimeOfDay) -> bool {
        if start <= end {
            start <= self && self < end
        } else {
            self >= start || self < end
        }
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

impl std::str::FromStr for TimeOfDay {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl serde::Serialize for TimeOfDay {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum TimeOfDayWire {
    Minutes(u32),
    Text(String),
}

impl<'de> serde::Deserialize<'de> for TimeOfDay {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match TimeOfDayWire::deserialize(d)? {
            TimeOfDayWire::Minutes(m) => Self::from_minutes(m),
            TimeOfDayWire::Text(s) => Self::parse(&s),
        }
        .map_err(serde::de::Error::custom)
    }
}
