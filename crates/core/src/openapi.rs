//! OpenAPI schemas of the wire types whose rules a derive cannot state (feature
//! `openapi`): each says what the type's constructor or `validate` enforces, so that
//! every value the schema allows is one the server takes.
//!
//! JSON Schema counts the characters of a string where the engine counts UTF-8 bytes.
//! A bound of `n` bytes is stated as "any text of printable ASCII up to `n` characters,
//! or any text up to `n / 4` characters" (a character takes at most 4 bytes), which
//! admits no text the engine refuses. Patterns are ECMA-262, written with `\uXXXX`
//! escapes, and end with [`END`] rather than `$`, so that tools built on Python's `re`
//! (whose `$` also matches before a final newline) read them as ECMA-262 does.

use std::borrow::Cow;

use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::schema::{
    AllOf, AnyOf, ArrayBuilder, KnownFormat, Object, ObjectBuilder, OneOf, Schema, SchemaFormat,
    SchemaType, Type,
};
use utoipa::openapi::{RefOr, schema::AdditionalProperties};
use utoipa::{PartialSchema, ToSchema};

pub use crate::formats::{DateTime, TimeZoneName};

use crate::event::{Event, MAX_WATCH_MS};
use crate::feed::{Cursor, MAX_CURSOR_LEN};
use crate::ids::{EventKey, MAX_ID_LEN, SessionId, TopicId, UserId, VideoId};
use crate::vector::Embedding;
use crate::video::{MAX_CAMEOS, MAX_CAPTION_LEN, MAX_DURATION_S, MAX_TOPICS, Video};

/// The end of the text, in a form ECMA-262 and Python's `re` agree on.
pub const END: &str = r"(?![\s\S])";

/// The control characters `char::is_control` refuses in ids (general category Cc), as
/// an ECMA-262 class body.
const CONTROL: &str = r"\u0000-\u001f\u007f-\u009f";

/// White space as `str::trim` sees it is within ECMA-262's `\s` and U+0085, so a
/// character of this class is not trimmed away.
pub const NOT_BLANK: &str = r"[^\s\u0085]";

/// The pattern of an id: 1 to [`MAX_ID_LEN`] bytes of UTF-8 without control characters
/// (printable ASCII up to 128 characters, any other id up to 32).
pub fn id_pattern() -> String {
    format!(
        r"^(?:[\u0020-\u007e]{{1,{max}}}|[^{CONTROL}]{{1,{quarter}}}){END}",
        max = MAX_ID_LEN,
        quarter = MAX_ID_LEN / 4
    )
}

/// A pattern admitting text of at most `max_bytes` bytes of UTF-8 without a NUL
/// character (see the module doc); with `not_blank`, the text must also hold a character
/// that is not white space.
pub fn text_pattern(max_bytes: usize, not_blank: bool) -> String {
    let lookahead = if not_blank {
        format!(r"(?=[\s\S]*{NOT_BLANK})")
    } else {
        String::new()
    };
    format!(
        r"^{lookahead}(?:[\u0001-\u007f]{{0,{max_bytes}}}|[^\u0000]{{0,{quarter}}}){END}",
        quarter = max_bytes / 4
    )
}

/// A string schema for text of at most `max_bytes` bytes of UTF-8.
pub fn text_schema(max_bytes: usize, not_blank: bool, description: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(not_blank.then_some(1))
        .max_length(Some(max_bytes))
        .pattern(Some(text_pattern(max_bytes, not_blank)))
        .description(Some(description))
        .build()
}

/// The schema of an id type (`UserId`, `VideoId`, `SessionId`, `EventKey`).
pub(crate) fn id_schema(what: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_ID_LEN))
        .pattern(Some(id_pattern()))
        .description(Some(format!(
            "{what}: 1 to {MAX_ID_LEN} bytes of UTF-8 without control characters. \
             (JSON Schema counts characters: the pattern admits printable ASCII up to \
             {MAX_ID_LEN} characters and any other id up to {} characters.)",
            MAX_ID_LEN / 4
        )))
        .build()
}

/// A reference to the named schema of `T`.
pub(crate) fn reference<T: ToSchema>() -> RefOr<Schema> {
    RefOr::Ref(utoipa::openapi::Ref::from_schema_name(T::name()))
}

/// A reference to the named schema of `T` with a description of its own (OpenAPI 3.1
/// lets a `$ref` carry one).
pub(crate) fn described<T: ToSchema>(description: &str) -> RefOr<Schema> {
    let mut r = utoipa::openapi::Ref::from_schema_name(T::name());
    r.description = description.to_owned();
    RefOr::Ref(r)
}

/// Adds `T` and what it refers to, to `out`.
pub(crate) fn collect<T: ToSchema>(out: &mut Vec<(String, RefOr<Schema>)>) {
    out.push((T::name().into_owned(), T::schema()));
    T::schemas(out);
}

fn integer(min: u64, max: u64, description: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(min as f64))
        .maximum(Some(max as f64))
        .description(Some(description))
        .build()
}

fn array_of(items: RefOr<Schema>, max: usize, description: &str) -> Schema {
    ArrayBuilder::new()
        .items(items)
        .max_items(Some(max))
        .description(Some(description))
        .into()
}

/// The schema of [`crate::Embedding`] without its dimension, which is the engine's (the
/// sidecar sets `minItems` and `maxItems`).
pub(crate) fn embedding_schema() -> RefOr<Schema> {
    let limit = f64::from(f32::MAX);
    let smallest = f64::from(f32::MIN_POSITIVE);
    // Not all zero: some component must stay non-zero once read as an f32.
    let contains = serde_json::json!({
        "type": "number",
        "anyOf": [{"minimum": smallest}, {"maximum": -smallest}]
    });
    let mut array = ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Float)))
                .minimum(Some(-limit))
                .maximum(Some(limit)),
        )
        .description(Some(format!(
            "A vector of the engine's dimension, of numbers an f32 holds (|x| <= {limit:e}), \
             not all zero (some |x| >= {smallest:e}; a sub-normal component, below it, reads \
             as 0); the server normalises it to unit length."
        )))
        .build();
    // `contains` has no field in utoipa's array type; extensions are written as they are.
    array.extensions = Some(Extensions::from_iter([("contains", contains)]));
    Schema::Array(array).into()
}

/// The schema of [`crate::Video`]: `Video::validate` and the store's rules.
pub(crate) fn video_schema() -> RefOr<Schema> {
    use crate::ids::{TopicId, UserId, VideoId};
    use crate::vector::Embedding;
    use crate::video::{Audience, SafetyLabel};
    let caption = text_schema(
        MAX_CAPTION_LEN,
        false,
        "The caption or prompt text, at most 2,000 bytes of UTF-8.",
    );
    let object = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("id", reference::<VideoId>())
        .property("creator", reference::<UserId>())
        .property("created_at", reference::<DateTime>())
        .property(
            "duration_s",
            ObjectBuilder::new()
                .schema_type(Type::Number)
                // `MIN_DURATION_S` as written: 0.001 in JSON reads as that f32.
                .minimum(Some(0.001))
                .maximum(Some(f64::from(MAX_DURATION_S)))
                .description(Some("Length in seconds: at least 0.001, at most 3,600.")),
        )
        .property("caption", caption)
        .property(
            "topics",
            array_of(
                reference::<TopicId>(),
                MAX_TOPICS,
                "Taxonomy topics (at most 16); inferred from the caption when empty.",
            ),
        )
        .property("embedding", reference::<Embedding>())
        .property(
            "remix_of",
            described::<VideoId>(
                "The video this one remixes (need not be stored yet); not the video itself \
                 (422, `field: remix_of`).",
            ),
        )
        .property(
            "cameos",
            array_of(
                reference::<UserId>(),
                MAX_CAMEOS,
                "People whose likeness appears (at most 16), each a known user (else 404).",
            ),
        )
        .property(
            "safety",
            ArrayBuilder::new()
                .items(reference::<SafetyLabel>())
                .description(Some("Safety labels.")),
        )
        .property("audience", reference::<Audience>())
        .property(
            "deleted",
            ObjectBuilder::new()
                .schema_type(Type::Boolean)
                .description(Some("Deleted videos are never served.")),
        )
        .required("id")
        .required("creator")
        .required("created_at")
        .required("duration_s")
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .build();
    // An embedding, or a caption to compute one from.
    // (Constraints only, without a type of their own.)
    let source = AnyOf::builder()
        .item(
            ObjectBuilder::new()
                .schema_type(SchemaType::AnyValue)
                .required("embedding"),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(SchemaType::AnyValue)
                .required("caption")
                .property(
                    "caption",
                    ObjectBuilder::new()
                        .schema_type(SchemaType::AnyValue)
                        .pattern(Some(NOT_BLANK)),
                ),
        )
        .build();
    AllOf::builder()
        .item(object)
        .item(Schema::AnyOf(source))
        .description(Some(
            "A video as the app describes it: an `embedding`, or a `caption` that is not blank \
             to compute one from. The creator and every cameo person must be known users \
             (else 404).",
        ))
        .into()
}

/// A property of an event kind: its name, its schema, whether it is required.
type Field<'a> = (&'a str, RefOr<Schema>, bool);

/// The schema of [`crate::Event`]: one object per kind, each refusing the fields of the
/// others (what `WireEvent` enforces), with the bounds of `Event::validate`.
pub(crate) fn event_schema() -> RefOr<Schema> {
    use crate::ids::{EventKey, UserId, VideoId};
    use crate::user::CheckinAnswer;
    let video = |required: bool, what: &str| {
        (
            "video",
            described::<VideoId>(&format!("{what}; a known video (else 404).")),
            required,
        )
    };
    let kinds: Vec<(&str, &str, Vec<Field<'_>>)> = vec![
        (
            "impression",
            "The video was shown.",
            vec![video(true, "The video")],
        ),
        (
            "view",
            "The video was watched.",
            vec![
                video(true, "The video"),
                (
                    "watch_ms",
                    integer(
                        0,
                        MAX_WATCH_MS,
                        "Watch time in milliseconds, at most a day.",
                    )
                    .into(),
                    true,
                ),
                (
                    "completed",
                    ObjectBuilder::new()
                        .schema_type(Type::Boolean)
                        .description(Some("Watched to the end (default false)."))
                        .into(),
                    false,
                ),
            ],
        ),
        ("like", "Liked.", vec![video(true, "The video")]),
        ("comment", "Commented on.", vec![video(true, "The video")]),
        ("share", "Shared.", vec![video(true, "The video")]),
        (
            "follow",
            "Followed the video's creator from the video.",
            vec![video(true, "The video")],
        ),
        (
            "remix",
            "Made a remix of the video.",
            vec![
                video(true, "The remixed video"),
                (
                    "new_video",
                    described::<VideoId>(
                        "The new video, when the app knows it already; not the remixed video \
                         itself (422, `field: new_video`).",
                    ),
                    false,
                ),
            ],
        ),
        (
            "cameo_use",
            "Used a cameo from the video.",
            vec![video(true, "The video")],
        ),
        (
            "create",
            "Created a video, inspired by `video` when given.",
            vec![video(false, "The video that inspired it")],
        ),
        (
            "skip",
            "Swiped away quickly.",
            vec![video(true, "The video")],
        ),
        (
            "not_interested",
            "Said \"not interested\".",
            vec![video(true, "The video")],
        ),
        (
            "hide_creator",
            "Asked to see nothing more from the video's creator.",
            vec![video(true, "The video")],
        ),
        (
            "report",
            "Reported the video.",
            vec![video(true, "The video")],
        ),
        (
            "checkin_answer",
            "Answered a wellbeing check-in card.",
            vec![("answer", reference::<CheckinAnswer>(), true)],
        ),
    ];
    let mut one_of = OneOf::builder();
    for (kind, description, fields) in kinds {
        let mut b = ObjectBuilder::new()
            .schema_type(Type::Object)
            .title(Some(kind))
            .description(Some(description))
            .property(
                "key",
                described::<EventKey>(
                    "Idempotency key: a batch sent again with the same keys is counted once.",
                ),
            )
            .property(
                "user",
                described::<UserId>("Who did it; a known user (else 404)."),
            )
            .property(
                "at",
                described::<DateTime>(
                    "When. Unless the server runs with `server.allow_client_clock = true`, it \
                     must lie within [server time - `server.event_max_age_s` (7 days by default), \
                     server time + `server.event_max_ahead_s` (300 s by default)], else the batch \
                     is 422 (`field: events[i].at`).",
                ),
            )
            .property(
                "kind",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some([kind])),
            )
            .required("key")
            .required("user")
            .required("at")
            .required("kind")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        for (name, schema, required) in fields {
            b = b.property(name, schema);
            if required {
                b = b.required(name);
            }
        }
        one_of = one_of.item(b);
    }
    one_of
        .description(Some(
            "One thing a user did: `kind` and the fields of that kind, beside `key`, `user` and \
             `at`; a field of another kind, or no kind, is refused (422).",
        ))
        .into()
}

/// Adds the components [`event_schema`] and [`video_schema`] refer to.
pub(crate) fn collect_event_refs(out: &mut Vec<(String, RefOr<Schema>)>) {
    collect::<crate::ids::EventKey>(out);
    collect::<crate::ids::UserId>(out);
    collect::<crate::ids::VideoId>(out);
    collect::<DateTime>(out);
    collect::<crate::user::CheckinAnswer>(out);
}

/// Adds the components [`video_schema`] refers to.
pub(crate) fn collect_video_refs(out: &mut Vec<(String, RefOr<Schema>)>) {
    collect::<crate::ids::UserId>(out);
    collect::<crate::ids::VideoId>(out);
    collect::<crate::ids::TopicId>(out);
    collect::<DateTime>(out);
    collect::<crate::vector::Embedding>(out);
    collect::<crate::video::SafetyLabel>(out);
    collect::<crate::video::Audience>(out);
}

// The core types whose schemas are written here rather than derived.

/// Implements `ToSchema` for a string type whose schema `$schema` (an expression giving a
/// `utoipa::openapi::schema::Object`) builds.
macro_rules! string_schema {
    ($name:ident, $schema:expr) => {
        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                let object: Object = $schema;
                object.into()
            }
        }

        impl ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
        }
    };
}

string_schema!(VideoId, id_schema("VideoId"));
string_schema!(UserId, id_schema("UserId"));
string_schema!(SessionId, id_schema("SessionId"));
string_schema!(EventKey, id_schema("EventKey"));
string_schema!(
    TopicId,
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(TopicId::MAX_LEN))
        .pattern(Some(format!("^[a-z][a-z0-9_]*{}", END)))
        .description(Some(
            "A taxonomy topic id (`cooking`, `extreme_sports`): 1 to 64 lowercase ASCII \
             letters, digits and `_`, starting with a letter.",
        ))
        .build()
);

string_schema!(
    Cursor,
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_CURSOR_LEN))
        .pattern(Some(format!(r"^[\u0021-\u007e]*{}", END)))
        .description(Some(
            "An opaque cursor from a previous feed answer (`next_cursor`): 1 to 512 printable \
             ASCII characters. Only a cursor this server issued is taken; another is 422 \
             (`field: cursor`).",
        ))
        .build()
);

// Written by hand: one object per kind, each closed to the fields of the others (see
// `event_schema`).
impl PartialSchema for Event {
    fn schema() -> RefOr<Schema> {
        event_schema()
    }
}

impl ToSchema for Event {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Event")
    }

    fn schemas(out: &mut Vec<(String, RefOr<Schema>)>) {
        collect_event_refs(out);
    }
}

// Written by hand: the schema says what `validate` and the store check (see
// `video_schema`).
impl PartialSchema for Video {
    fn schema() -> RefOr<Schema> {
        video_schema()
    }
}

impl ToSchema for Video {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Video")
    }

    fn schemas(out: &mut Vec<(String, RefOr<Schema>)>) {
        collect_video_refs(out);
    }
}

impl PartialSchema for Embedding {
    fn schema() -> RefOr<Schema> {
        embedding_schema()
    }
}

impl ToSchema for Embedding {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Embedding")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_built_from_the_limits() {
        assert_eq!(
            id_pattern(),
            r"^(?:[\u0020-\u007e]{1,128}|[^\u0000-\u001f\u007f-\u009f]{1,32})(?![\s\S])"
        );
        assert_eq!(
            text_pattern(2000, true),
            r"^(?=[\s\S]*[^\s\u0085])(?:[\u0001-\u007f]{0,2000}|[^\u0000]{0,500})(?![\s\S])"
        );
    }
}
