#![allow(clippy::print_stdout, missing_docs)]
use std::collections::BTreeMap;
use steerfeed::{Config, Engine, FeedRequest, UserId};
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("dir")?;
    let mut config = Config::default();
    config.store.path = dir.into();
    let engine = Engine::open(config)?;
    let now = steerfeed::Timestamp::from_second(1_795_000_000)?;
    let mut acc: BTreeMap<&'static str, (u64, usize, usize)> = BTreeMap::new();
    let n = 300;
    let t = std::time::Instant::now();
    for i in 0..n {
        let u = UserId::new(format!("u{}", (i * 37) % 10000))?;
        let (_, trace) = engine.feed_traced(&FeedRequest::new(u, 20)?.at(now))?;
        for s in trace.stages {
            let e = acc.entry(s.stage).or_default();
            e.0 += s.micros; e.1 += s.output; e.2 += 1;
        }
    }
    println!("total {:.2} ms/request", t.elapsed().as_secs_f64() * 1000.0 / n as f64);
    for (k, (us, out, c)) in acc { println!("{k:>20} {:>8.1} us  out {:>6.1}", us as f64 / c as f64, out as f64 / c as f64); }
    Ok(())
}
