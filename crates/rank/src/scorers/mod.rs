//! scorers (in progress).
