//! [`DiversityMethod`]: which diversity re-rank the selector runs.

/// The diversity re-rank over embeddings (see the [module docs](super) for the
/// measurements behind the default).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum DiversityMethod {
    /// Maximal marginal relevance: `λ·quality − (1 − λ)·max similarity to the page so far`.
    Mmr,
    /// Greedy MAP of a determinantal point process over a sliding window of the last
    /// `dpp_window` picks, kernel `L = diag(q)·S·diag(q)` (quality × cosine similarity).
    /// The default.
    #[default]
    Dpp,
}
