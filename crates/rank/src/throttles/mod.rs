//! throttles (in progress).
