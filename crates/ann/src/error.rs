//! Errors of the vector indexes.

use std::path::PathBuf;

/// The result type of `steerfeed-ann`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the vector indexes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad input: a wrong dimension, NaN, a zero vector, a bad parameter.
    #[error(transparent)]
    Input(#[from] steerfeed_core::Error),
    /// The id is already in the index (ids are never reused; give an update a fresh id).
    #[error("id {0} is already in the index")]
    DuplicateId(u32),
    /// An index file is corrupt, truncated, or from another version or dimension.
    #[error("index file {}: {reason}", path.display())]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading or writing an index file failed.
    #[error("index file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A build could not write or map the file its exact vectors spill to.
    #[error("spilling a build's vectors to {}: {source}", dir.display())]
    Spill {
        /// The spill directory.
        dir: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl From<Error> for steerfeed_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Input(e) => e,
            Error::DuplicateId(id) => steerfeed_core::Error::Conflict {
                entity: steerfeed_core::Entity::Video,
                id: id.to_string(),
                reason: "already indexed".into(),
            },
            e @ (Error::BadFile { .. } | Error::Io { .. } | Error::Spill { .. }) => {
                steerfeed_core::Error::internal("index file", e)
            }
        }
    }
}
