//! OpenAPI schemas of the formats the wire types share that no Rust type states (feature
//! `openapi`): a date and time as the engine reads it, and a time zone name the server
//! knows. `openapi.rs` re-exports them.

use std::borrow::Cow;

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::{PartialSchema, ToSchema};

/// A date and time: RFC 3339 as the engine reads it (`jiff::Timestamp`), whose range ends
/// on 9999-12-30, so the schema stops at the year 9998.
#[derive(Debug)]
pub struct DateTime;

impl PartialSchema for DateTime {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .pattern(Some(
                r"^(?:[0-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])-",
            ))
            .description(Some(
                "An RFC 3339 date and time with its offset (`2026-05-01T12:00:00Z`), \
                 years 0000 to 9998.",
            ))
            .into()
    }
}

impl ToSchema for DateTime {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("DateTime")
    }
}

/// An IANA time zone name the server's time zone database knows (the names are read
/// from it when the document is built, so the list is exactly what the server takes).
#[derive(Debug)]
pub struct TimeZoneName;

impl PartialSchema for TimeZoneName {
    fn schema() -> RefOr<Schema> {
        let mut names: Vec<String> = jiff::tz::db()
            .available()
            .map(|n| n.to_string())
            .filter(|n| jiff::tz::TimeZone::get(n).is_ok())
            .collect();
        if !names.iter().any(|n| n == "UTC") {
            names.push("UTC".to_owned());
        }
        names.sort();
        names.dedup();
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(names))
            .description(Some(
                "An IANA time zone name (`Europe/Paris`) from the server's time zone database.",
            ))
            .into()
    }
}

impl ToSchema for TimeZoneName {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("TimeZoneName")
    }
}
