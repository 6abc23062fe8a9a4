//! `steerfeed prefs parse` and `steerfeed prefs eval` ([`score`] scores the parser
//! against labelled lines).

#![allow(clippy::print_stdout)] // a command prints its report on stdout

pub mod score;

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;

use self::score::{evaluate, read_jsonl};
use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use steerfeed::{AgeBand, Config, Timestamp, open_parser};
use steerfeed_steer::{reader, training as fit};

/// The audience of a preference.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Audience {
    /// 18 and over.
    Adult,
    /// Under 18.
    Teen,
}

impl From<Audience> for AgeBand {
    fn from(a: Audience) -> Self {
        match a {
            Audience::Adult => AgeBand::Adult,
            Audience::Teen => AgeBand::Teen,
        }
    }
}

/// Arguments of `steerfeed prefs parse`.
#[derive(Debug, Args)]
pub struct ParseArgs {
    /// The preference text.
    #[arg(required_unless_present = "jsonl", conflicts_with = "jsonl")]
    text: Option<String>,
    /// Audience of the text.
    #[arg(long, value_enum, default_value = "adult")]
    audience: Audience,
    /// Read lines {"text": ..., "audience": ...} and write one Constraints JSON per line.
    #[arg(long)]
    jsonl: Option<PathBuf>,
}

/// Arguments of `steerfeed prefs eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Labelled lines {"text", "audience", "expect"}.
    #[arg(long)]
    jsonl: PathBuf,
    /// Score only the corpus lines of this split (`train` or `holdout`).
    #[arg(long)]
    split: Option<String>,
    /// Read with the word lists alone (the reader's fallback), for comparison.
    #[arg(long)]
    no_reader: bool,
    /// Also print every line whose facts differ from the expected ones.
    #[arg(long)]
    errors: bool,
}

/// Arguments of `steerfeed prefs train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The corpus (`data/reader/corpus.jsonl` format); only its `train` lines are used.
    #[arg(long, default_value = "data/reader/corpus.jsonl")]
    corpus: PathBuf,
    /// Where to write the weights; their SHA-256 goes beside them (`<out>.sha256`).
    #[arg(long, default_value = "data/reader/reader.json")]
    out: PathBuf,
    /// L2 penalty of the heads.
    #[arg(long, default_value_t = fit::ALPHA)]
    alpha: f64,
}

#[derive(serde::Deserialize)]
struct Line {
    text: String,
    #[serde(default)]
    audience: Option<AgeBand>,
}

/// Prints the constraints of one text or of every line of a file.
pub fn parse(config: Config, args: ParseArgs) -> anyhow::Result<()> {
    let parser = open_parser(&config)?;
    let now = Timestamp::now();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if let Some(text) = args.text {
        let c = parser.parse(&text, args.audience.into(), now)?;
        writeln!(out, "{}", serde_json::to_string_pretty(&c)?)?;
        return Ok(());
    }
    let Some(path) = args.jsonl else {
        bail!("give a TEXT or --jsonl FILE");
    };
    let file = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("{}: line {}", path.display(), n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let l: Line = serde_json::from_str(&line)
            .with_context(|| format!("{}: line {}", path.display(), n + 1))?;
        let c = parser.parse(&l.text, l.audience.unwrap_or(AgeBand::Adult), now)?;
        writeln!(out, "{}", serde_json::to_string(&c)?)?;
    }
    Ok(())
}

/// Scores the parser on labelled lines.
pub fn eval(mut config: Config, args: EvalArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.jsonl)
        .with_context(|| format!("reading {}", args.jsonl.display()))?;
    let mut lines = read_jsonl(&text)?;
    if let Some(split) = &args.split {
        lines.retain(|l| l.split.as_deref() == Some(split.as_str()));
        if lines.is_empty() {
            bail!("no line of {} is in split {split}", args.jsonl.display());
        }
    }
    if args.no_reader {
        config.steering.use_reader = false;
    }
    let parser = open_parser(&config)?;
    let (score, results) = evaluate(&parser, &lines, Timestamp::now())?;
    if args.errors {
        for r in results.iter().filter(|r| r.expected != r.got) {
            eprintln!(
                "{:?}\n  expected {:?}\n  got      {:?}",
                r.text, r.expected, r.got
            );
        }
    }
    let mut json = serde_json::to_value(&score)?;
    // Lines written per category of case: their scores per category too.
    let mut categories: BTreeMap<&str, Vec<&score::LineResult>> = BTreeMap::new();
    for (line, result) in lines.iter().zip(&results) {
        if let Some(c) = &line.category {
            categories.entry(c.as_str()).or_default().push(result);
        }
    }
    if !categories.is_empty() {
        let by: serde_json::Map<String, serde_json::Value> = categories
            .into_iter()
            .map(|(c, rs)| {
                let (_, _, f1, exact, n) = score::micro(rs);
                let v = serde_json::json!({"lines": n, "f1": f1, "exact_match": exact});
                (c.to_owned(), v)
            })
            .collect();
        json["by_category"] = by.into();
    }
    let (labelled, accuracy) = score::intensity_accuracy(&lines, &results);
    if labelled > 0 {
        json["intensity"] = serde_json::json!({"lines": labelled, "accuracy": accuracy});
    }
    json["file"] = args.jsonl.display().to_string().into();
    if let Some(split) = &args.split {
        json["split"] = split.as_str().into();
    }
    json["reader"] = parser.reader().is_some().into();
    println!("{json}");
    Ok(())
}

/// The training lines of a corpus: its `train` split, adult lines, with their lists and
/// slots as the reader's classes.
pub fn training_lines(lines: &[score::Labelled]) -> anyhow::Result<Vec<fit::TrainingLine>> {
    let mut out = Vec::new();
    for l in lines.iter().filter(|l| l.split.as_deref() == Some("train")) {
        if l.audience.unwrap_or(AgeBand::Adult) != AgeBand::Adult {
            continue;
        }
        let mut lists = Vec::new();
        for (class, name) in reader::POLARITY_CLASSES.iter().enumerate() {
            if let Some(topics) = l.expect.get(*name).and_then(|v| v.as_array()) {
                for t in topics.iter().filter_map(|t| t.as_str()) {
                    lists.push((steerfeed::TopicId::new(t)?, class));
                }
            }
        }
        let following = match l.expect.get("following").and_then(|v| v.as_str()) {
            None => 0,
            Some("more") => 1,
            Some("less") => 2,
            Some(other) => bail!("{:?}: following {other:?} is neither more nor less", l.text),
        };
        let friends = match l
            .expect
            .get("friends_cameos")
            .and_then(serde_json::Value::as_bool)
        {
            None => 0,
            Some(true) => 1,
            Some(false) => 2,
        };
        let remix = match l.expect.get("remix").and_then(serde_json::Value::as_bool) {
            None => 0,
            Some(true) => 1,
            Some(false) => 2,
        };
        let intensity = match l.intensity.as_deref() {
            None => None,
            Some(name) => Some(
                reader::INTENSITY_CLASSES
                    .iter()
                    .position(|c| *c == name)
                    .with_context(|| format!("{:?}: intensity {name:?} is not a class", l.text))?,
            ),
        };
        out.push(fit::TrainingLine {
            text: l.text.clone(),
            lists,
            following,
            friends,
            remix,
            intensity,
        });
    }
    Ok(out)
}

/// Fits the reader on a corpus's `train` split and writes the weights and their SHA-256.
pub fn train(mut config: Config, args: TrainArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.corpus)
        .with_context(|| format!("reading {}", args.corpus.display()))?;
    let text = String::from_utf8(bytes.clone())
        .with_context(|| format!("{} is not UTF-8", args.corpus.display()))?;
    let lines = training_lines(&read_jsonl(&text)?)?;
    if lines.is_empty() {
        bail!("{} has no train lines", args.corpus.display());
    }
    config.steering.use_reader = false;
    let parser = open_parser(&config)?;
    let started = std::time::Instant::now();
    let fitted = fit::reader(&parser, &lines, &reader::sha256_hex(&bytes), args.alpha)?;
    let json = fitted.to_json(parser.encoder().dim())?;
    std::fs::write(&args.out, &json).with_context(|| format!("writing {}", args.out.display()))?;
    let mut sum_path = args.out.clone().into_os_string();
    sum_path.push(".sha256");
    std::fs::write(
        &sum_path,
        format!("{}\n", reader::sha256_hex(json.as_bytes())),
    )
    .with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!(
        "fitted on {} lines of {} (alpha {}) in {:.1} s; wrote {}",
        lines.len(),
        args.corpus.display(),
        args.alpha,
        started.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(())
}
