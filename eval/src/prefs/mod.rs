//! `steerfeed prefs parse` and `steerfeed prefs eval` ([`score`] scores the parser
//! against labelled lines).

#![allow(clippy::print_stdout)] // a command prints its report on stdout

pub mod score;

use std::io::{BufRead, Write};
use std::path::PathBuf;

use self::score::{evaluate, read_jsonl};
use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use steerfeed::{AgeBand, Config, Timestamp, open_parser};

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
    /// Also print every line whose facts differ from the expected ones.
    #[arg(long)]
    errors: bool,
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
pub fn eval(config: Config, args: EvalArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.jsonl)
        .with_context(|| format!("reading {}", args.jsonl.display()))?;
    let lines = read_jsonl(&text)?;
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
    json["file"] = args.jsonl.display().to_string().into();
    println!("{json}");
    Ok(())
}
