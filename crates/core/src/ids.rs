//! Identifiers.
//!
//! External ids are strings chosen by the app (1 to [`MAX_ID_LEN`] bytes, no control
//! characters). They are validated when constructed — from code or from JSON — so the
//! rest of the engine never sees an empty or malformed id. They are backed by `Arc<str>`
//! because the pipeline clones them freely.

use std::fmt;
use std::sync::Arc;

use crate::error::{Error, Result};

/// The creator a deleted video of an erased person is left with: its record stays (an
/// event about it is still accepted and counts nowhere) but no longer names them. No user
/// may take this id.
pub const ERASED_CREATOR: &str = "(erased)";

/// Longest accepted id, in bytes.
pub const MAX_ID_LEN: usize = 128;

fn check_id(field: &'static str, s: &str) -> Result<()> {
    if s.is_empty() {
        return Err(Error::Empty { field });
    }
    if s.len() > MAX_ID_LEN {
        return Err(Error::TooLarge {
            field,
            limit: MAX_ID_LEN,
            got: s.len(),
        });
    }
    if s.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident, $field:literal) => {
        $(#[$meta])*
        #[derive(Clone, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Arc<str>);

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                // Ids are cloned freely, so a lookup often meets a clone of itself: the
                // same allocation is the same id, without reading the bytes (in a large
                // map, reading the stored key's bytes is a cache miss).
                Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
            }
        }

        // Hash and equality are the string's, so a map of ids can be searched by `&str`.
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl std::hash::Hash for $name {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                // As derived: the string's hash, so equal ids hash alike.
                self.0.hash(state);
            }
        }

        impl $name {
            /// Validates and wraps an id.
            pub fn new(id: impl AsRef<str>) -> Result<Self> {
                let id = id.as_ref();
                check_id($field, id)?;
                Ok(Self(Arc::from(id)))
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(s: String) -> Result<Self> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = Error;
            fn try_from(s: &str) -> Result<Self> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0.to_string()
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }
    };
}

string_id!(
    /// A video, as the app names it.
    VideoId,
    "video_id"
);
string_id!(
    /// A user (viewer, creator, or person appearing in a cameo), as the app names it.
    UserId,
    "user_id"
);
string_id!(
    /// A client session (one stretch of scrolling), as the app names it.
    SessionId,
    "session_id"
);
string_id!(
    /// The idempotency key of an event: a retried batch with the same keys is counted once.
    EventKey,
    "event_key"
);

/// A taxonomy topic id: 1 to 64 bytes of lowercase ASCII letters, digits and `_`,
/// starting with a letter (`cooking`, `extreme_sports`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TopicId(Arc<str>);

// The derived `Hash` hashes the text as `str` does, so lookups by `&str` agree.
impl std::borrow::Borrow<str> for TopicId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl TopicId {
    /// Longest accepted topic id.
    pub const MAX_LEN: usize = 64;

    /// Validates and wraps a topic id.
    pub fn new(id: impl AsRef<str>) -> Result<Self> {
        let id = id.as_ref();
        if id.is_empty() {
            return Err(Error::Empty { field: "topic" });
        }
        if id.len() > Self::MAX_LEN {
            return Err(Error::TooLarge {
                field: "topic",
                limit: Self::MAX_LEN,
                got: id.len(),
            });
        }
        let ok_first = id.as_bytes()[0].is_ascii_lowercase();
        let ok_rest = id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !(ok_first && ok_rest) {
            return Err(Error::invalid(
                "topic",
                format!("{id:?} must be lowercase letters, digits and '_', starting with a letter"),
            ));
        }
        Ok(Self(Arc::from(id)))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TopicId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Self::new(s)
    }
}

impl From<TopicId> for String {
    fn from(id: TopicId) -> String {
        id.0.to_string()
    }
}

impl fmt::Display for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TopicId({:?})", &*self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_reject_empty_long_and_control_characters() {
        assert!(matches!(
            VideoId::new(""),
            Err(Error::Empty { field: "video_id" })
        ));
        assert!(matches!(
            UserId::new("x".repeat(MAX_ID_LEN + 1)),
            Err(Error::TooLarge { .. })
        ));
        assert!(matches!(VideoId::new("a\nb"), Err(Error::Invalid { .. })));
        assert_eq!(VideoId::new("v-1").unwrap().as_str(), "v-1");
    }

    #[test]
    fn ids_validate_when_deserialized() {
        assert!(serde_json::from_str::<UserId>("\"\"").is_err());
        let id: UserId = serde_json::from_str("\"alice\"").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"alice\"");
    }

    #[test]
    fn topic_ids_are_lowercase_snake_case() {
        assert!(TopicId::new("extreme_sports").is_ok());
        assert!(TopicId::new("Cooking").is_err());
        assert!(TopicId::new("1abc").is_err());
        assert!(TopicId::new("a-b").is_err());
        assert!(TopicId::new("").is_err());
    }

    #[test]
    fn ids_compare_and_hash_by_their_text_whatever_the_allocation() {
        use std::collections::HashSet;
        use std::hash::BuildHasher;
        let a = VideoId::new("v1").unwrap_or_else(|e| panic!("{e}"));
        let same_text = VideoId::new(String::from("v1")).unwrap_or_else(|e| panic!("{e}"));
        let other = VideoId::new("v2").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a, a.clone());
        assert_eq!(a, same_text, "separate allocations of one id are equal");
        assert_ne!(a, other);
        let h = std::hash::RandomState::new();
        assert_eq!(h.hash_one(&a), h.hash_one(&same_text));
        assert_eq!(h.hash_one(&a), h.hash_one("v1"), "hashes as its text");
        let set: HashSet<VideoId> = [a.clone(), same_text, other].into_iter().collect();
        assert_eq!(set.len(), 2);
    }
}
