//! [`ShadowScorer`]: another profile's scorer, run beside the serving one.

use steerfeed_core::{Candidate, FeedContext, Result, Scorer};

/// Scores a copy of the candidates with another profile's scorer and keeps only its
/// score, in each candidate's `shadow_score`; the serving score, its terms and the heads'
/// inputs stay the serving scorer's. The selector serves the shadow's greedy pick at a
/// share of the slots, so the impression log holds what an off-policy estimate of that
/// profile needs.
pub struct ShadowScorer<S> {
    inner: S,
}

impl<S: Scorer> ShadowScorer<S> {
    /// The shadow of `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
}

impl<S: Scorer> Scorer for ShadowScorer<S> {
    fn score(&self, ctx: &FeedContext, candidates: &mut [Candidate]) -> Result<()> {
        let mut copy = candidates.to_vec();
        self.inner.score(ctx, &mut copy)?;
        for (c, s) in candidates.iter_mut().zip(&copy) {
            c.shadow_score = s.score;
        }
        Ok(())
    }

    fn name(&self) -> &'static str {
        "shadow"
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use steerfeed_core::{
        Candidate, FeedContext, FeedRequest, Reason, Result, Scorer, Timestamp, User, UserId,
        Video, VideoId,
    };

    use super::ShadowScorer;

    /// A scorer that gives each candidate its index times `k`, and marks the terms.
    struct Fixed(f32);

    impl Scorer for Fixed {
        fn score(&self, _: &FeedContext, candidates: &mut [Candidate]) -> Result<()> {
            for (i, c) in candidates.iter_mut().enumerate() {
                c.score = self.0 * i as f32;
                c.breakdown.total = -1.0;
            }
            Ok(())
        }
    }

    #[test]
    fn only_the_shadow_score_is_written() {
        let user = UserId::new("u").unwrap();
        let ctx = FeedContext::new(
            FeedRequest::new(user.clone(), 10).unwrap(),
            User::new(user),
            Timestamp::UNIX_EPOCH,
        );
        let mut cands: Vec<Candidate> = (0..4)
            .map(|i| {
                let v = Video::new(
                    VideoId::new(format!("v{i}")).unwrap(),
                    UserId::new("c").unwrap(),
                    Timestamp::UNIX_EPOCH,
                    10.0,
                );
                let mut c = Candidate::new(Arc::new(v), "popular", 0.0, Reason::FeaturesYou);
                c.score = 7.0;
                c
            })
            .collect();
        assert!(cands.iter().all(|c| c.shadow_score.is_nan()));
        ShadowScorer::new(Fixed(2.0))
            .score(&ctx, &mut cands)
            .unwrap();
        for (i, c) in cands.iter().enumerate() {
            assert_eq!(c.shadow_score, 2.0 * i as f32);
            assert_eq!(c.score, 7.0);
            assert_eq!(c.breakdown.total, 0.0);
        }
    }
}
