//! plot (arrives with the evaluation issue).
