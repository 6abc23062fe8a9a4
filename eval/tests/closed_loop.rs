#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The learning loop closed in the simulator: a run with the configured heads, training
//! on the engine's own impression log, and a run with the trained model, per seed.

use steerfeed::Config;
use steerfeed::model::HAND_SET;
use steerfeed_eval::closed_loop::{Estimate, LoopOptions, METRICS, TrainConfig, closed_loop, t975};
use steerfeed_eval::sim::Behaviour;

#[test]
fn the_loop_trains_on_its_own_log_and_serves_the_trained_model_without_violations() {
    let o = LoopOptions {
        users: 60,
        videos: 600,
        days: 2,
        seeds: vec![7, 8],
        explore: 0.2,
        behaviour: Behaviour::Hidden,
        train: TrainConfig::default(),
        progress: false,
        shadow_share: 0.3,
    };
    let r = closed_loop(&Config::default(), &o).unwrap();
    assert_eq!(r.runs.len(), 2);
    for run in &r.runs {
        // The first arm served the configured heads, the second the model trained on
        // the first arm's log.
        assert_eq!(run.defaults.model, HAND_SET);
        assert_eq!(run.trained.model, run.model);
        assert_ne!(run.model, HAND_SET);
        assert!((run.defaults.explore - 0.2).abs() < 1e-6);
        // Training read every item the first arm served (the simulator counts them on
        // its own side of the engine), and fitted at least the frequent heads.
        assert_eq!(run.train.rows as u64, run.defaults.items_served);
        let fitted: Vec<&str> = run
            .train
            .heads
            .iter()
            .filter(|h| h.fitted)
            .map(|h| h.head.as_str())
            .collect();
        assert!(
            fitted.contains(&"complete_view") && fitted.contains(&"like"),
            "{fitted:?}"
        );
        for arm in [&run.defaults, &run.trained] {
            assert!(arm.items_served > 0);
            assert_eq!(arm.consent_violations, 0);
            assert_eq!(arm.teen_limit_violations, 0);
            assert_eq!(arm.hard_exclusion_violations, 0);
        }
        // Same seed, same world and schedule: as many sessions start in both arms, and
        // the same revocations happen.
        assert_eq!(run.defaults.sessions, run.trained.sessions);
        assert_eq!(
            run.defaults.revocations_during_run,
            run.trained.revocations_during_run
        );
        // The third run served the configured heads with the trained model as their
        // shadow: every one of its slots is weighed, unevenly.
        let sh = run.shadow.as_ref().expect("a shadow run was asked for");
        assert_eq!(sh.rewards.len(), 3);
        for r in &sh.rewards {
            assert_eq!(r.estimate.units, r.logged.units, "{r:?}");
            assert!(r.estimate.max_weight > 1.0, "{r:?}");
            assert!(
                r.estimate.effective_units < r.estimate.units as f64,
                "{r:?}"
            );
        }
    }
    // Each summary is the mean over the seeds of what the runs measured.
    for (m, (name, get)) in r.metrics.iter().zip(METRICS) {
        assert_eq!(m.metric, name);
        let want: f64 = r
            .runs
            .iter()
            .map(|x| get(&x.trained) - get(&x.defaults))
            .sum::<f64>()
            / r.runs.len() as f64;
        assert!((m.difference.mean - want).abs() < 1e-9, "{name}");
        // Two runs: the interval is mean ± t(1)·|a − b|/2 (sd |a − b|/√2, over √2).
        let a: Vec<f64> = r.runs.iter().map(|x| get(&x.defaults)).collect();
        let half = 12.706 * (a[0] - a[1]).abs() / 2.0;
        let (lo, hi) = (m.defaults.low.unwrap(), m.defaults.high.unwrap());
        assert!((hi - m.defaults.mean - half).abs() < 1e-9, "{name}");
        assert!((m.defaults.mean - lo - half).abs() < 1e-9, "{name}");
    }
}

#[test]
fn bad_options_are_refused_with_what_is_wrong() {
    let base = LoopOptions {
        users: 10,
        videos: 100,
        days: 1,
        seeds: vec![1],
        explore: 0.1,
        behaviour: Behaviour::Hidden,
        train: TrainConfig::default(),
        progress: false,
        shadow_share: 0.0,
    };
    let with_train = |t: TrainConfig| LoopOptions {
        train: t,
        ..base.clone()
    };
    let bad = [
        (
            LoopOptions {
                seeds: Vec::new(),
                ..base.clone()
            },
            "seed",
        ),
        (
            LoopOptions {
                explore: 2.0,
                ..base.clone()
            },
            "explore",
        ),
        (
            LoopOptions {
                explore: f32::NAN,
                ..base.clone()
            },
            "explore",
        ),
        (
            LoopOptions {
                shadow_share: 0.95,
                ..base.clone()
            },
            "shadow",
        ),
        (
            with_train(TrainConfig {
                holdout: 1.0,
                ..TrainConfig::default()
            }),
            "holdout",
        ),
        (
            with_train(TrainConfig {
                alpha: -1.0,
                ..TrainConfig::default()
            }),
            "alpha",
        ),
    ];
    for (o, word) in bad {
        let err = closed_loop(&Config::default(), &o).unwrap_err().to_string();
        assert!(err.contains(word), "{err}");
    }
}

#[test]
fn intervals_match_worked_examples() {
    // 1..=5: mean 3, sample sd √2.5, standard error √0.5, t(4) = 2.776.
    let e = Estimate::of(&[1.0, 2.0, 3.0, 4.0, 5.0]);
    assert_eq!(e.n, 5);
    assert!((e.mean - 3.0).abs() < 1e-12);
    let half = 2.776 * 0.5f64.sqrt();
    let (lo, hi) = (e.low.unwrap(), e.high.unwrap());
    assert!((hi - 3.0 - half).abs() < 1e-9 && (3.0 - lo - half).abs() < 1e-9);
    // Two equal values: no spread.
    let e = Estimate::of(&[2.5, 2.5]);
    assert_eq!((e.low, e.high), (Some(2.5), Some(2.5)));
    // One value: a mean and no interval.
    let e = Estimate::of(&[4.0]);
    assert_eq!((e.n, e.mean, e.low, e.high), (1, 4.0, None, None));
    // The table's ends, the rows beyond it (never narrower than the true quantile:
    // t(35) = 2.030, t(50) = 2.009, t(100) = 1.984), and the normal limit.
    assert!((t975(1) - 12.706).abs() < 1e-9);
    assert!((t975(30) - 2.042).abs() < 1e-9);
    assert!(t975(35) >= 2.030 && t975(50) >= 2.009 && t975(100) >= 1.984);
    assert!((t975(40) - 2.021).abs() < 1e-9 && (t975(120) - 1.980).abs() < 1e-9);
    assert!(t975(100_000) >= 1.96 && t975(100_000) < 1.981);
}
