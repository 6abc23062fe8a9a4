//! selectors (in progress).
