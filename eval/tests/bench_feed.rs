#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `steerfeed bench feed` at a tiny size: the report is sane, and a second run reuses the
//! cached store and reloads the index checkpoint instead of rebuilding. No wall-clock
//! thresholds: only orderings and non-zero rates.

use steerfeed::Config;
use steerfeed_eval::bench_feed::{FeedArgs, MARKER_FILE, OpenMode, run};

fn tiny(cache: &std::path::Path) -> FeedArgs {
    let mut args = FeedArgs::new(2000, 200, 7);
    args.requests = 50;
    args.warmup = 10;
    args.threads = 2;
    args.ingest_events = 2000;
    args.events_per_user = 5;
    args.load_threads = 8;
    args.cache_dir = Some(cache.to_path_buf());
    args
}

fn check(json: &serde_json::Value) {
    let f = |path: &str| {
        json.pointer(path)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or_else(|| panic!("{path} missing in {json:#}"))
    };
    assert_eq!(json["bench"], "feed");
    assert!(f("/feed/p50_ms") <= f("/feed/p95_ms"));
    assert!(f("/feed/p95_ms") <= f("/feed/p99_ms"));
    assert!(f("/feed/p99_ms") <= f("/feed/max_ms"));
    assert!(f("/feed/mean_items") > 0.0);
    assert!(f("/feed/qps") > 0.0);
    // Every measured request was ranked or stopped by a gate.
    assert_eq!(f("/feed/requests") + f("/feed/gated/requests"), 50.0);
    assert!(f("/feed/requests") > 0.0);
    assert_eq!(f("/feed/threads"), 2.0);
    assert!(f("/ingest/events_per_s") > 0.0);
    // The sustained rate waits for the persister: never above the acknowledged one.
    assert!(f("/ingest/events_per_s") <= f("/ingest/acknowledged_per_s"));
    assert!(f("/ingest/catch_up_ms") >= 0.0);
    assert!(f("/ingest/threaded_events_per_s") <= f("/ingest/threaded_acknowledged_per_s"));
    assert_eq!(f("/ingest/events"), 2000.0);
    assert!(f("/ingest/threaded_events_per_s") > 0.0);
    assert!(f("/build/videos_per_s") > 0.0);
    assert!(f("/build/events_per_s") > 0.0);
    assert!(f("/open_ms") >= 0.0);
    assert_eq!(f("/video_count"), 2000.0);
    assert!(f("/index/file_bytes") > 0.0);
}

#[test]
fn a_tiny_bench_reports_sane_numbers_and_the_second_run_reuses_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let args = tiny(dir.path());

    let first = run(Config::default(), &args).unwrap();
    let json = serde_json::to_value(&first).unwrap();
    check(&json);
    assert!(!first.cache.reused);
    assert_eq!(first.open_mode, OpenMode::Rebuild);
    assert!(first.cache.dir.join(MARKER_FILE).exists());
    let events_after_first = first.event_count;

    let second = run(Config::default(), &args).unwrap();
    let json = serde_json::to_value(&second).unwrap();
    check(&json);
    assert!(second.cache.reused, "the second run rebuilt: {json:#}");
    assert_eq!(json["open_mode"], "reload");
    // Build stats come from the marker, a JSON file: equal up to the last digit of a
    // float (serde_json's float parsing is not exactly round-trip).
    assert!(
        close(
            &serde_json::to_value(&second.build).unwrap(),
            &serde_json::to_value(&first.build).unwrap()
        ),
        "build stats come from the marker"
    );
    // Fresh keys each run: the second run's ingest added events.
    assert!(second.event_count > events_after_first);

    // A cache without its marker (a build killed midway) is rebuilt.
    std::fs::remove_file(second.cache.dir.join(MARKER_FILE)).unwrap();
    let mut args = args;
    args.requests = 5;
    args.ingest_events = 100;
    args.threads = 1;
    let third = run(Config::default(), &args).unwrap();
    assert!(!third.cache.reused);
    assert_eq!(third.open_mode, OpenMode::Rebuild);
    assert!(third.event_count < second.event_count);
}

/// Equal JSON values, numbers within a relative 1e-9.
fn close(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0)
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| close(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| close(v, w))
        }
        _ => a == b,
    }
}
