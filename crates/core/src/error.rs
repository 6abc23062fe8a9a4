//! The error type of steerfeed's core.
//!
//! User errors (bad input, unknown ids, conflicts) are kept apart from internal ones
//! (a stage or a dependency failed) so that the HTTP edge can map each to a status with
//! one exhaustive match, and so that internal details are never shown to a client.

use std::fmt;

/// The result type of steerfeed's core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of entity an id refers to, for [`Error::NotFound`] and friends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    /// A video.
    Video,
    /// A user (viewer or creator).
    User,
    /// A taxonomy topic.
    Topic,
    /// An event, by idempotency key.
    Event,
    /// An item of a user's steering constraints, by its address.
    PreferenceItem,
    /// A backup, by its directory.
    Backup,
    /// A rank profile, by its name.
    Profile,
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Entity::Video => "video",
            Entity::User => "user",
            Entity::Topic => "topic",
            Entity::Event => "event",
            Entity::PreferenceItem => "preference item",
            Entity::Backup => "backup",
            Entity::Profile => "rank profile",
        })
    }
}

/// Broad classes of [`Error`], the only thing an outer layer needs to pick a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The caller sent something invalid; retrying the same input fails again (HTTP 400/422).
    InvalidInput,
    /// The input is larger than a configured limit (HTTP 413).
    TooLarge,
    /// An id the caller named does not exist (HTTP 404).
    NotFound,
    /// The request conflicts with the current state (HTTP 409).
    Conflict,
    /// A dependency is not ready yet, e.g. the index is still loading (HTTP 503).
    Unavailable,
    /// A bug or a failure inside steerfeed or a dependency (HTTP 500). Details are for logs only.
    Internal,
}

/// Errors of steerfeed's core types and pipeline.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A vector has the wrong number of dimensions.
    #[error("{field}: expected a vector of {expected} dimensions, got {got}")]
    WrongDimension {
        /// The offending field.
        field: &'static str,
        /// The dimension the engine is configured for.
        expected: usize,
        /// The dimension that was given.
        got: usize,
    },
    /// A number that must be finite is NaN or infinite.
    #[error("{field}: value at index {index} is not a finite number")]
    NonFinite {
        /// The offending field.
        field: &'static str,
        /// Position of the first bad value (0 for scalars).
        index: usize,
    },
    /// A vector that must have a direction has norm zero.
    #[error("{field}: the vector has norm zero")]
    ZeroVector {
        /// The offending field.
        field: &'static str,
    },
    /// An id or required string is empty.
    #[error("{field}: must not be empty")]
    Empty {
        /// The offending field.
        field: &'static str,
    },
    /// A number is outside its allowed range.
    #[error("{field}: {got} is out of range {min}..={max}")]
    OutOfRange {
        /// The offending field.
        field: &'static str,
        /// The value given.
        got: f64,
        /// Smallest allowed value.
        min: f64,
        /// Largest allowed value.
        max: f64,
    },
    /// A field is malformed in a way the other variants do not describe.
    #[error("{field}: {reason}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// What is wrong, in words for the caller.
        reason: String,
    },
    /// An input is larger than a configured limit.
    #[error("{field}: {got} exceeds the limit of {limit}")]
    TooLarge {
        /// The offending field.
        field: &'static str,
        /// The configured limit.
        limit: usize,
        /// The size given.
        got: usize,
    },
    /// An id the caller named does not exist.
    #[error("{entity} {id:?} not found")]
    NotFound {
        /// What kind of thing was looked up.
        entity: Entity,
        /// The id that was not found.
        id: String,
    },
    /// The request conflicts with the current state (for example a reused idempotency key
    /// with a different payload).
    #[error("{entity} {id:?}: {reason}")]
    Conflict {
        /// What kind of thing conflicts.
        entity: Entity,
        /// Its id.
        id: String,
        /// What the conflict is.
        reason: String,
    },
    /// A dependency is not ready (the index is loading, the store is closing).
    #[error("unavailable: {what}")]
    Unavailable {
        /// What is not available.
        what: String,
    },
    /// A pipeline stage failed. The stage's own error is the source.
    #[error("stage {stage} failed: {source}")]
    Stage {
        /// The name of the stage.
        stage: &'static str,
        /// What the stage returned.
        #[source]
        source: Box<Error>,
    },
    /// A failure inside steerfeed or one of its dependencies.
    #[error("internal error in {context}: {message}")]
    Internal {
        /// Where it happened (a component name).
        context: &'static str,
        /// What happened; for logs, never for clients.
        message: String,
    },
}

impl Error {
    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Error::Invalid {
            field,
            reason: reason.into(),
        }
    }

    /// Shorthand for [`Error::NotFound`].
    pub fn not_found(entity: Entity, id: impl fmt::Display) -> Self {
        Error::NotFound {
            entity,
            id: id.to_string(),
        }
    }

    /// Shorthand for [`Error::Internal`].
    pub fn internal(context: &'static str, message: impl fmt::Display) -> Self {
        Error::Internal {
            context,
            message: message.to_string(),
        }
    }

    /// The broad class of this error; a stage error has the class of what the stage returned.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::WrongDimension { .. }
            | Error::NonFinite { .. }
            | Error::ZeroVector { .. }
            | Error::Empty { .. }
            | Error::OutOfRange { .. }
            | Error::Invalid { .. } => ErrorClass::InvalidInput,
            Error::TooLarge { .. } => ErrorClass::TooLarge,
            Error::NotFound { .. } => ErrorClass::NotFound,
            Error::Conflict { .. } => ErrorClass::Conflict,
            Error::Unavailable { .. } => ErrorClass::Unavailable,
            Error::Stage { source, .. } => source.class(),
            Error::Internal { .. } => ErrorClass::Internal,
        }
    }

    /// True when the caller caused the error (anything but internal and unavailable).
    pub fn is_user_error(&self) -> bool {
        !matches!(self.class(), ErrorClass::Internal | ErrorClass::Unavailable)
    }

    /// The field a user error is about, if any (for the `field` of an HTTP error body).
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Error::WrongDimension { field, .. }
            | Error::NonFinite { field, .. }
            | Error::ZeroVector { field }
            | Error::Empty { field }
            | Error::OutOfRange { field, .. }
            | Error::Invalid { field, .. }
            | Error::TooLarge { field, .. } => Some(field),
            Error::Stage { source, .. } => source.field(),
            Error::NotFound { .. }
            | Error::Conflict { .. }
            | Error::Unavailable { .. }
            | Error::Internal { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_errors_keep_the_class_and_field_of_their_source() {
        let inner = Error::WrongDimension {
            field: "embedding",
            expected: 384,
            got: 3,
        };
        let err = Error::Stage {
            stage: "interest_ann",
            source: Box::new(inner),
        };
        assert_eq!(err.class(), ErrorClass::InvalidInput);
        assert_eq!(err.field(), Some("embedding"));
        assert!(err.is_user_error());
        assert!(err.to_string().contains("interest_ann"));
    }

    #[test]
    fn internal_errors_are_not_user_errors() {
        let err = Error::internal("store", "disk full");
        assert_eq!(err.class(), ErrorClass::Internal);
        assert!(!err.is_user_error());
        assert_eq!(err.field(), None);
    }
}
