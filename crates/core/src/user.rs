//! Users, consent, parental controls and wellbeing state.

use jiff::Timestamp;

use crate::error::{Error, Result};
use crate::ids::UserId;

/// Age band of a user; it selects the safety and wellbeing policy.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum AgeBand {
    /// Under 18: stricter safety, daily limits, bedtime.
    Teen,
    /// 18 and over.
    #[default]
    Adult,
}

/// A user as the app describes them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct User {
    /// The app's id.
    pub id: UserId,
    /// Age band.
    #[serde(default)]
    pub age_band: AgeBand,
    /// IANA time zone name (`Europe/Paris`), for bedtime and daily counters (default `UTC`).
    #[serde(default = "default_tz")]
    #[cfg_attr(feature = "openapi", schema(value_type = crate::formats::TimeZoneName))]
    pub time_zone: String,
}

fn default_tz() -> String {
    "UTC".to_owned()
}

impl User {
    /// An adult in UTC.
    pub fn new(id: UserId) -> Self {
        Self {
            id,
            age_band: AgeBand::Adult,
            time_zone: default_tz(),
        }
    }

    /// Checks that the id is not the reserved [`crate::ids::ERASED_CREATOR`] and the
    /// time zone is known.
    pub fn validate(&self) -> Result<()> {
        if self.id.as_str() == crate::ids::ERASED_CREATOR {
            return Err(Error::invalid(
                "id",
                format!(
                    "{:?} is reserved: it names the creator of an erased person's deleted videos",
                    crate::ids::ERASED_CREATOR
                ),
            ));
        }
        jiff::tz::TimeZone::get(&self.time_zone)
            .map(|_| ())
            .map_err(|_| {
                Error::invalid(
                    "time_zone",
                    format!("unknown time zone {:?}", self.time_zone),
                )
            })
    }
}

/// Who may use a person's likeness in a cameo.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ConsentScope {
    /// Nobody.
    #[default]
    Nobody,
    /// Only users the person approved one by one.
    Approved,
    /// Mutual follows.
    Mutuals,
    /// Everyone (not available to teens).
    Everyone,
}

impl ConsentScope {
    /// The widest scope an age band may choose (teens: at most mutuals).
    pub fn clamp_for(self, age: AgeBand) -> Self {
        match age {
            AgeBand::Teen => self.min(ConsentScope::Mutuals),
            AgeBand::Adult => self,
        }
    }
}

/// Parental controls on a (teen) account. `None` fields fall back to the defaults.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ParentalControls {
    /// When false, the feed any viewer of the same age band with the same follows would
    /// get: nothing learned from the viewer's history (no interest vector, no creator
    /// affinity, no co-engagement) and no steering (preferences are kept, not applied).
    /// Candidates come only from the sources that know nothing of the viewer but their
    /// follows: `following`, `social_cameo`, `remix_trends`, `trending`, `popular` and `fresh`.
    /// Safety, consent, blocks, wellbeing limits and the seen list still apply.
    #[serde(default = "yes")]
    pub personalization: bool,
    /// Most items per session, 1 to 10,000.
    #[serde(default, deserialize_with = "crate::wire::integral_opt")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10000))]
    pub scroll_cap: Option<u32>,
    /// Daily viewing limit in minutes, 1 to 1,440, replacing the age band's default.
    #[serde(default, deserialize_with = "crate::wire::integral_opt")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1440))]
    pub daily_limit_minutes: Option<u32>,
    /// Narrowest cameo scope the account may use.
    #[serde(default)]
    pub cameo_scope: Option<ConsentScope>,
}

fn yes() -> bool {
    true
}

impl Default for ParentalControls {
    fn default() -> Self {
        Self {
            personalization: true,
            scroll_cap: None,
            daily_limit_minutes: None,
            cameo_scope: None,
        }
    }
}

impl ParentalControls {
    /// Largest `scroll_cap` (the OpenAPI document states it too).
    pub const MAX_SCROLL_CAP: u32 = 10_000;
    /// Largest `daily_limit_minutes`: a day (the OpenAPI document states it too).
    pub const MAX_DAILY_LIMIT_MINUTES: u32 = 24 * 60;

    /// Checks the ranges: a cap of zero would be a lock-out and is spelled as a limit of 1.
    pub fn validate(&self) -> Result<()> {
        if let Some(cap) = self.scroll_cap {
            in_range("scroll_cap", cap, 1, Self::MAX_SCROLL_CAP)?;
        }
        if let Some(min) = self.daily_limit_minutes {
            in_range("daily_limit_minutes", min, 1, Self::MAX_DAILY_LIMIT_MINUTES)?;
        }
        Ok(())
    }
}

fn in_range(field: &'static str, got: u32, min: u32, max: u32) -> Result<()> {
    if (min..=max).contains(&got) {
        Ok(())
    } else {
        Err(Error::OutOfRange {
            field,
            got: f64::from(got),
            min: f64::from(min),
            max: f64::from(max),
        })
    }
}

/// The answer to a wellbeing check-in card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum CheckinAnswer {
    /// Feeling good: nothing changes.
    Great,
    /// Neutral.
    Okay,
    /// Not great: lighter, creation-oriented content, and a break is offered.
    NotGreat,
}

/// Wellbeing counters of one user, kept by the store from events and served pages.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WellbeingState {
    /// When the current session started.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub session_started: Option<Timestamp>,
    /// Items served in the current session.
    pub session_items: u32,
    /// Minutes watched today, in the user's time zone.
    pub minutes_today: f32,
    /// Items served today.
    pub items_today: u32,
    /// Views in a row with no like, comment, remix or create.
    pub passive_streak: u32,
    /// When the last check-in card was shown.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub last_checkin: Option<Timestamp>,
    /// The last check-in answer and when it was given.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<String>>))]
    pub last_answer: Option<(CheckinAnswer, Timestamp)>,
    /// When a break card was last served.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub last_break: Option<Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn teens_cannot_widen_cameo_consent_past_mutuals() {
        assert_eq!(
            ConsentScope::Everyone.clamp_for(AgeBand::Teen),
            ConsentScope::Mutuals
        );
        assert_eq!(
            ConsentScope::Approved.clamp_for(AgeBand::Teen),
            ConsentScope::Approved
        );
        assert_eq!(
            ConsentScope::Everyone.clamp_for(AgeBand::Adult),
            ConsentScope::Everyone
        );
    }

    #[test]
    fn unknown_time_zones_and_zero_caps_are_rejected() {
        let mut u = User::new(UserId::new("u").unwrap());
        u.validate().unwrap();
        u.time_zone = "Mars/Olympus".into();
        assert_eq!(u.validate().unwrap_err().field(), Some("time_zone"));
        let reserved = User::new(UserId::new(crate::ids::ERASED_CREATOR).unwrap());
        assert_eq!(reserved.validate().unwrap_err().field(), Some("id"));
        let pc = ParentalControls {
            scroll_cap: Some(0),
            ..ParentalControls::default()
        };
        assert_eq!(pc.validate().unwrap_err().field(), Some("scroll_cap"));
    }
}
