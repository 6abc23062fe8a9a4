//! The record formats of older schemas that this build still reads where they lie.
//!
//! An upgrade at open (`store/open.rs`, `upgrade_schema`) changes a store only where
//! the new schema needs something the old one never wrote (watermarks, the topic index,
//! the catalogue log); records in an older format stay as written until their key is
//! next written in the current format. Their readers are here, each naming the schema
//! versions that wrote its format, and the current readers (`codec.rs`, `rings.rs`,
//! `idempotency.rs`, `store/viewer.rs`) hand a record they do not recognise to them.
//!
//! Three older forms differ from the current one only by a field, and are read by the
//! current reader with that field defaulted, so they have no reader of their own:
//! - a derived record without its as-of number (schemas 5 and older) reads as of 0
//!   (`codec::fixed_asof`, `codec::split_fragment` and the wellbeing and interest
//!   readers);
//! - a binary wellbeing record of version byte 1 (schema 5) is version 2 without the
//!   as-of number (`codec::decode_wellbeing`);
//! - an impression record of version byte 1 (schema 9) is version 2 without slot draws
//!   (`impressions::decode`).
//!
//! Schema 3 and older also wrote one event per log record (`codec::decode_record` reads
//! a record that is not a batch as one event).

use steerfeed_core::{Event, EventKind, Result};

use crate::records::{WellbeingRec, corrupt};

/// Whether a record is JSON (older schemas' form; no binary record starts with `{`).
pub(crate) fn is_json(b: &[u8]) -> bool {
    b.first() == Some(&b'{')
}

/// An event log record of schema 1: the event as JSON.
pub(crate) fn event_json(b: &[u8]) -> Result<Event> {
    // Those builds wrote an absent `new_video` (and a create's absent `video`) as `null`,
    // which the wire format refuses: dropped here, such a member reads as left out.
    let mut v: serde_json::Value = serde_json::from_slice(b).map_err(|_| corrupt("event"))?;
    if let Some(members) = v.as_object_mut() {
        members.retain(|_, x| !x.is_null());
    }
    serde_json::from_value(v).map_err(|_| corrupt("event"))
}

/// A history ring entry's event kind of schema 1, as JSON.
pub(crate) fn kind_json(b: &[u8]) -> Result<EventKind> {
    serde_json::from_slice(b).map_err(|_| corrupt("history"))
}

/// A wellbeing record of schemas 1 to 4, as JSON; it has no as-of number (as of 0).
pub(crate) fn wellbeing_json(b: &[u8]) -> Result<(WellbeingRec, u64)> {
    serde_json::from_slice(b)
        .map(|r| (r, 0))
        .map_err(|_| corrupt("wellbeing"))
}

/// The sequence number of a one-entry ring key of schema 3 and older, `owner \0 seq`
/// (`rest` is the key after `owner \0`: the sequence number, `u64` BE); its value is
/// the entry itself.
pub(crate) fn one_entry_ring_key(rest: &[u8]) -> Option<u64> {
    (rest.len() == 8).then(|| be_u64(rest)).flatten()
}

/// The first 8 bytes as a `u64` BE (older records were read this leniently).
fn be_u64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(..8)?.try_into().ok()?))
}

/// The head of a ring with no entry left, which schema 3 and older stored under the
/// bare user key (`u64` BE).
pub(crate) fn bare_ring_head(v: &[u8]) -> Result<u64> {
    be_u64(v).ok_or_else(|| corrupt("ring head"))
}

/// An idempotency key of schema 3 and older, stored one per sled key (the key itself)
/// with its event's sequence number (`u64` BE) as the value.
pub(crate) fn single_key_seq(v: &[u8]) -> Result<u64> {
    be_u64(v).ok_or_else(|| corrupt("idempotency key"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn fixed_width_fields_of_older_keys_read_and_other_widths_are_refused() {
        assert_eq!(one_entry_ring_key(&7u64.to_be_bytes()), Some(7));
        assert_eq!(one_entry_ring_key(&[0; 7]), None);
        assert_eq!(bare_ring_head(&9u64.to_be_bytes()).unwrap(), 9);
        assert!(bare_ring_head(&[1, 2, 3]).is_err());
        assert_eq!(single_key_seq(&3u64.to_be_bytes()).unwrap(), 3);
        assert!(single_key_seq(&[0; 7]).is_err());
    }

    #[test]
    fn a_schema_1_event_with_null_members_reads_as_left_out() {
        let remix = br#"{"key":"k","user":"u","at":"2026-01-01T00:00:00Z","kind":"remix","video":"v","new_video":null}"#;
        let e = event_json(remix).unwrap();
        assert!(matches!(
            e.kind,
            EventKind::Remix {
                new_video: None,
                ..
            }
        ));
        let create =
            br#"{"key":"k","user":"u","at":"2026-01-01T00:00:00Z","kind":"create","video":null}"#;
        assert!(matches!(
            event_json(create).unwrap().kind,
            EventKind::Create { video: None }
        ));
        assert!(event_json(br#"{"key":"k"}"#).is_err());
    }

    #[test]
    fn json_records_are_recognised_by_their_first_byte() {
        assert!(is_json(b"{\"a\":1}"));
        assert!(!is_json(&[2, b'{']));
        assert!(!is_json(b""));
        assert!(wellbeing_json(b"{not json").is_err());
    }
}
