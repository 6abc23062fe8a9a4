//! A generated impression log with known truth, for the training benchmark and tests:
//! pages of ten items whose head inputs are drawn from fixed distributions and whose
//! outcomes are drawn from a known logistic model of those inputs ([`truth`]), unlike
//! the hand-set heads, so a fit has something to find and its calibration can be
//! checked against what generated the labels.

use steerfeed::rank::scorers::{HeadModels, ScorerConfig};
use steerfeed::{
    HeadInputs, LabeledImpression, Outcomes, ScoreBreakdown, Timestamp, UserId, VideoId,
};

/// The base rates of the heads, in `steerfeed_core::impression::HEADS` order.
const BASE: [f64; 8] = [0.003, 0.005, 0.002, 0.01, 0.01, 0.005, 0.06, 0.35];

/// SplitMix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A standard normal draw (Box–Muller).
    fn normal(&mut self) -> f64 {
        let u = self.unit().max(1e-12);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

fn logit(p: f64) -> f64 {
    (p / (1.0 - p)).ln()
}

/// The model that generates the labels: per head, bias −0.3, prior 0.9, interest 2.5,
/// tie 0.4, co-engagement 3, creator 0.7; following a creator lifts like, comment and
/// follow-back by 0.8, a remix chain lifts remix by 1.8, a friend's cameo lifts
/// cameo_use by 1.5.
pub fn truth() -> HeadModels {
    let mut coef = [[0.0f32; 9]; 8];
    for c in &mut coef {
        *c = [-0.3, 0.9, 2.5, 0.4, 3.0, 0.7, 0.0, 0.0, 0.0];
    }
    for a in [3, 5, 6] {
        coef[a][6] = 0.8;
    }
    coef[1][7] = 1.8;
    coef[2][8] = 1.5;
    HeadModels::unscaled(coef)
}

/// The heads' probabilities under `heads`, as the scorer logs them.
fn logged_probs(heads: &HeadModels, x: &HeadInputs) -> steerfeed::ActionProbs {
    steerfeed::ActionProbs::from_heads(std::array::from_fn(|a| {
        1.0 / (1.0 + (-heads.logit(a, x)).exp())
    }))
}

/// `rows` served items (pages of ten, one second apart) with outcomes drawn from
/// [`truth`], seeded by `seed`. The logged score is the hand-set heads' action value.
pub fn generate(rows: usize, seed: u64) -> Vec<LabeledImpression> {
    let truth = truth();
    let hand = HeadModels::from_config(&ScorerConfig::default());
    let weights = ScorerConfig::default().weights.heads();
    let mut rng = Rng(seed ^ 0x5eed_1e55_0000_0000);
    let start = Timestamp::from_second(1_790_000_000).unwrap_or(Timestamp::UNIX_EPOCH);
    let mut out = Vec::with_capacity(rows);
    let users: Vec<UserId> = (0..5_000)
        .filter_map(|i| UserId::new(format!("su{i}")).ok())
        .collect();
    let videos: Vec<VideoId> = (0..50_000)
        .filter_map(|i| VideoId::new(format!("sv{i}")).ok())
        .collect();
    for n in 0..rows {
        let page = n / 10;
        let tie = if rng.unit() < 0.7 { 0.0 } else { rng.unit() };
        let x = HeadInputs {
            prior: std::array::from_fn(|a| (logit(BASE[a]) + 0.8 * rng.normal()) as f32),
            creator: std::array::from_fn(|_| (0.4 * rng.normal()) as f32),
            interest: (0.2 * rng.normal()) as f32,
            tie: tie as f32,
            co_engagement: if rng.unit() < 0.85 {
                0.0
            } else {
                rng.unit() as f32
            },
            followed: tie > 0.5,
            remix_chain: rng.unit() < 0.2,
            friend_cameo: rng.unit() < 0.05,
        };
        let mut heads = [false; 8];
        for (a, h) in heads.iter_mut().enumerate() {
            let p = 1.0 / (1.0 + (-f64::from(truth.logit(a, &x))).exp());
            *h = rng.unit() < p;
        }
        let total: f32 = weights
            .iter()
            .enumerate()
            .map(|(a, &wa)| wa / (1.0 + (-hand.logit(a, &x)).exp()))
            .sum();
        let outcomes = Outcomes {
            create: heads[0],
            remix: heads[1],
            cameo_use: heads[2],
            comment: heads[3],
            share: heads[4],
            follow: heads[5],
            like: heads[6],
            complete_view: heads[7],
            view: true,
            ..Outcomes::default()
        };
        out.push(LabeledImpression {
            request: format!("sr{page}"),
            user: users[page % users.len()].clone(),
            profile: steerfeed::DEFAULT_PROFILE.to_owned(),
            model: steerfeed::model::HAND_SET.to_owned(),
            at: start
                .checked_add(jiff::SignedDuration::from_secs(page as i64))
                .unwrap_or(start),
            position: (n % 10) as u32,
            video: videos[(n * 7_919) % videos.len()].clone(),
            source: "synthetic".to_owned(),
            propensity: 1.0,
            draw: None,
            shadow: None,
            inputs: x,
            breakdown: ScoreBreakdown {
                actions: logged_probs(&hand, &x),
                action_value: total,
                total,
                ..ScoreBreakdown::default()
            },
            outcomes,
            complete: true,
        });
    }
    out
}
