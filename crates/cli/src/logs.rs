//! `steerfeed logs`: the impression log of the stopped store, joined to outcomes.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use steerfeed::{LabeledImpression, Timestamp};

/// `steerfeed logs export`.
#[derive(clap::Args)]
pub struct ExportArgs {
    /// Items served at or after this: an RFC 3339 time (`2026-12-01T00:00:00Z`) or an
    /// age before now (`90m`, `24h`, `7d`).
    #[arg(long)]
    pub since: String,
    /// Output format: one JSON object per served item.
    #[arg(long, default_value = "jsonl", value_parser = ["jsonl"])]
    pub format: String,
    /// Write to this file instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Reads `--since`: an RFC 3339 time, or an age of minutes, hours or days before `now`.
pub fn parse_since(s: &str, now: Timestamp) -> anyhow::Result<Timestamp> {
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = match n.parse() {
        Ok(n) => n,
        Err(_) => bail!("--since {s:?}: expected an RFC 3339 time or an age such as 24h"),
    };
    let secs = match unit {
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => bail!("--since {s:?}: the age's unit must be m, h or d"),
    };
    let ms = n
        .checked_mul(secs * 1_000)
        .and_then(|d| now.as_millisecond().checked_sub(d))
        .context("--since: too far back")?;
    Timestamp::from_millisecond(ms).map_err(|_| anyhow::anyhow!("--since {s:?}: too far back"))
}

/// Writes every served item since `--since` with its outcomes, one JSON line each, and
/// says on standard error how many it wrote and how many had each outcome.
pub fn export(engine: &steerfeed::Engine, args: &ExportArgs) -> anyhow::Result<()> {
    let since = parse_since(&args.since, Timestamp::now())?;
    let mut out: Box<dyn Write> = match &args.out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut rows = 0u64;
    let mut positives = [0u64; 8];
    let mut failed: Option<std::io::Error> = None;
    engine
        .for_each_labeled_impression(since, &mut |row| {
            for (n, on) in positives.iter_mut().zip(row.outcomes.heads()) {
                *n += u64::from(on);
            }
            rows += 1;
            let written = serde_json::to_writer(&mut out, &row)
                .map_err(std::io::Error::from)
                .and_then(|()| out.write_all(b"\n"));
            if let Err(e) = written {
                failed = Some(e);
                return Err(steerfeed::Error::internal(
                    "logs export",
                    "the output failed",
                ));
            }
            Ok(())
        })
        .map_err(|e| match failed.take() {
            Some(io) => anyhow::Error::from(io),
            None => anyhow::Error::from(e),
        })?;
    out.flush()?;
    let heads: Vec<String> = steerfeed::impression::HEADS
        .iter()
        .zip(positives)
        .map(|(h, n)| format!("{h} {n}"))
        .collect();
    eprintln!(
        "{rows} served items since {since}; positives: {}",
        heads.join(", ")
    );
    Ok(())
}

/// Reads served items from the JSON lines of `steerfeed logs export`.
pub fn read_rows(
    path: &std::path::Path,
    since: Timestamp,
) -> anyhow::Result<Vec<LabeledImpression>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut rows = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("{}: line {}", path.display(), n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let row: LabeledImpression = serde_json::from_str(&line)
            .with_context(|| format!("{}: line {} is not a served item", path.display(), n + 1))?;
        if row.at >= since {
            rows.push(row);
        }
    }
    Ok(rows)
}

/// `steerfeed eval offpolicy`: the served items with outcomes, from an export file or
/// the stopped store, and the estimate.
pub fn offpolicy(
    config: steerfeed::Config,
    shared: &steerfeed_server::config::SharedConfig,
    args: &steerfeed_eval::offpolicy::Args,
) -> anyhow::Result<()> {
    let since = parse_since(&args.since, Timestamp::now())?;
    let rows = match &args.input {
        Some(path) => read_rows(path, since)?,
        None => {
            let engine = crate::open_stopped(config.clone(), shared)?;
            let mut rows = Vec::new();
            engine.for_each_labeled_impression(since, &mut |r| {
                rows.push(r);
                Ok(())
            })?;
            rows
        }
    };
    let report = steerfeed_eval::offpolicy::report(&config, args, rows)?;
    if args.json {
        return crate::say(serde_json::to_string(&report)?);
    }
    let (unit, per) = match report.unit {
        steerfeed_eval::offpolicy::Unit::Slot => ("slots", "per explorable slot"),
        steerfeed_eval::offpolicy::Unit::Page => ("pages", "per item, averaged page by page"),
    };
    let line = |name: &str, e: &steerfeed_eval::offpolicy::Estimate| {
        format!(
            "{name:<28} {:.4} [{:.4}, {:.4}] over {} {unit} (effective {:.0}, largest weight {:.2})",
            e.value, e.low, e.high, e.units, e.effective_units, e.max_weight
        )
    };
    crate::say(format!(
        "{} {per}\n{}\n{}",
        report.reward.name(),
        line(
            &format!("logged ({})", report.logged_profile),
            &report.logged
        ),
        line(
            &format!(
                "{} ({}explore {})",
                report.profile.as_deref().unwrap_or("estimate"),
                if report.shadow { "shadow, " } else { "" },
                report.explore
            ),
            &report.estimate
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_reads_a_time_or_an_age() {
        let now: Timestamp = "2026-12-03T12:00:00Z".parse().unwrap();
        assert_eq!(
            parse_since("2026-12-01T00:00:00Z", now).unwrap(),
            "2026-12-01T00:00:00Z".parse::<Timestamp>().unwrap()
        );
        assert_eq!(
            parse_since("90m", now).unwrap(),
            "2026-12-03T10:30:00Z".parse::<Timestamp>().unwrap()
        );
        assert_eq!(
            parse_since("2d", now).unwrap(),
            "2026-12-01T12:00:00Z".parse::<Timestamp>().unwrap()
        );
        for bad in ["", "h", "5w", "-3h", "yesterday", "99999999999999d"] {
            assert!(parse_since(bad, now).is_err(), "{bad:?}");
        }
    }
}
