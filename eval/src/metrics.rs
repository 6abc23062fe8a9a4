//! metrics (arrives with the evaluation issue).
