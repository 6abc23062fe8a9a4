//! filters (in progress).
