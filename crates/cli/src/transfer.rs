//! `steerfeed import` and `steerfeed export`: records in the export record format, as
//! JSON Lines or CSV, into and out of a stopped store (through [`Engine::import`] and
//! [`Engine::export`]) or a running sidecar (through `POST /v1/import` and
//! `GET /v1/export`).
//!
//! An import streams its file (memory stays constant), applies it in batches, writes the
//! lines it rejects to a file of their own (with the header, for CSV, so that the file
//! can be fixed and imported again), and after each batch records how far it got in
//! `<FILE>.import-state`, from which the next run resumes (`--restart` ignores it).
//! Re-running a whole file changes nothing: users and videos already stored so are left
//! alone and events are counted once per key.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use steerfeed::{Record, RecordKind};
use steerfeed_server::bulk::{ImportAnswer, ImportBody, ImportStatus};
use steerfeed_server::config::ServerConfig;

use crate::remote::Remote;

/// The file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON record a line, tagged by `record`.
    Jsonl,
    /// One kind per file, a header row naming the columns.
    Csv,
}

/// Arguments of `steerfeed import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The file to import.
    pub file: PathBuf,
    /// Its format (default: from the extension, `.csv` or else JSON Lines).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// The kind of record a CSV file holds (`users`, `videos`, `events`, `follows`,
    /// `blocks`, `mutes`, `consent`, `revocations`; default: from the file name).
    #[arg(long)]
    pub kind: Option<String>,
    /// Records per batch.
    #[arg(long, default_value_t = 2_000)]
    pub batch: usize,
    /// Where rejected lines go (default `<FILE>.rejected`).
    #[arg(long)]
    pub rejected: Option<PathBuf>,
    /// Start from the first line even if an earlier run left a state file.
    #[arg(long)]
    pub restart: bool,
    #[command(flatten)]
    pub remote: Remote,
}

/// Arguments of `steerfeed export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Where to write: a file for JSON Lines (default: standard output), a folder for CSV
    /// (one file per kind; parental controls and preferences, which CSV cannot hold, as
    /// `.jsonl` files beside them).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The format.
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: Format,
    /// Comma-separated kinds (default: all).
    #[arg(long)]
    pub kinds: Option<String>,
    /// Videos carry their embeddings.
    #[arg(long)]
    pub embeddings: bool,
    #[command(flatten)]
    pub remote: Remote,
}

/// What an import did, printed as JSON when it ends.
#[derive(Debug, Default, Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Records read (blank lines and the CSV header not counted).
    pub records: u64,
    /// Written.
    pub written: u64,
    /// Already stored so.
    pub unchanged: u64,
    /// Events logged before.
    pub duplicate: u64,
    /// Derived records, not imported.
    pub derived: u64,
    /// Rejected (in the rejected file).
    pub rejected: u64,
}

impl Tally {
    fn add(&mut self, status: ImportStatus) {
        match status {
            ImportStatus::Written => self.written += 1,
            ImportStatus::Unchanged => self.unchanged += 1,
            ImportStatus::Duplicate => self.duplicate += 1,
            ImportStatus::Derived => self.derived += 1,
            ImportStatus::Rejected => self.rejected += 1,
        }
    }
}

/// How far an import got: written after each batch, removed when the file is done.
#[derive(Debug, Serialize, Deserialize)]
struct ImportState {
    /// The file's length when the import started.
    len: u64,
    /// A hash of the file's first bytes, so that a state is not used for another file.
    head: u64,
    /// Where the records went: the store's path, or the sidecar's address.
    target: String,
    /// The byte offset of the first line not yet imported.
    offset: u64,
    /// The rejected file's length after the last batch (a batch cut short before its
    /// state was written may have added lines, which the resumed run writes again).
    rejected_len: u64,
    /// Its line number (1-based).
    line: u64,
    /// The counts so far.
    tally: Tally,
}

/// Where the records go: the engine on a stopped store, or a running sidecar.
trait Sink {
    /// One answer per record: its status, or why it was rejected.
    fn apply(&mut self, records: &[Record]) -> anyhow::Result<Vec<Result<ImportStatus, String>>>;

    /// Once every batch is in: work the import leaves behind done before the command
    /// returns. Answers the seconds it took.
    fn finish(&mut self) -> f64 {
        0.0
    }
}

/// The engine on a stopped store, and the server settings that bound the dates a
/// client may give (the same as the sidecar's import applies).
struct EngineSink(crate::serve::ToolEngine, ServerConfig);

impl Sink for EngineSink {
    fn apply(&mut self, records: &[Record]) -> anyhow::Result<Vec<Result<ImportStatus, String>>> {
        self.0
            .import(records, self.1.latest_client_time())
            .into_iter()
            .map(|r| match r {
                Ok(i) => Ok(Ok(i.into())),
                Err(e) if e.is_user_error() => Ok(Err(e.to_string())),
                Err(e) => Err(anyhow::Error::new(e)
                    .context("the store failed; nothing after the last batch was imported")),
            })
            .collect()
    }

    /// New videos go into the vector index's live segment; an offline import ends with
    /// them folded into its graph, so that the store serves at full speed from its next
    /// open rather than compacting then.
    fn finish(&mut self) -> f64 {
        let started = Instant::now();
        self.0.settle_index();
        started.elapsed().as_secs_f64()
    }
}

struct HttpSink(Remote);

impl Sink for HttpSink {
    fn apply(&mut self, records: &[Record]) -> anyhow::Result<Vec<Result<ImportStatus, String>>> {
        let body = ImportBody {
            records: records.to_vec(),
        };
        let answer: ImportAnswer = self.0.post_json("/v1/import", &body)?;
        if answer.results.len() != records.len() {
            bail!(
                "the sidecar answered {} outcomes for {} records",
                answer.results.len(),
                records.len()
            );
        }
        Ok(answer
            .results
            .into_iter()
            .map(|o| match (o.status, o.error) {
                (ImportStatus::Rejected, e) => {
                    Err(e.map_or_else(|| "rejected".to_owned(), |e| e.message))
                }
                (status, _) => Ok(status),
            })
            .collect())
    }
}

/// One line read: its number, its bytes as they stand in the file (the raw CSV row),
/// and the record, or why it could not be read.
struct Line {
    number: u64,
    raw: Vec<u8>,
    record: Result<Record, String>,
}

/// Reads the records of a file from a byte offset on.
enum Reader {
    Jsonl {
        input: BufReader<File>,
        offset: u64,
        line: u64,
    },
    Csv {
        input: csv::Reader<File>,
        kind: RecordKind,
        header: csv::StringRecord,
    },
}

impl Reader {
    fn open(
        path: &Path,
        format: Format,
        kind: Option<RecordKind>,
        offset: u64,
        line: u64,
    ) -> anyhow::Result<Self> {
        let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        match format {
            Format::Jsonl => {
                file.seek(SeekFrom::Start(offset))?;
                Ok(Reader::Jsonl {
                    input: BufReader::with_capacity(1 << 20, file),
                    offset,
                    line,
                })
            }
            Format::Csv => {
                let kind = kind.context("a CSV file needs --kind (users, videos, events, ...)")?;
                let mut input = csv::ReaderBuilder::new()
                    .has_headers(true)
                    .flexible(false)
                    .from_reader(file);
                let header = input.headers().context("reading the CSV header")?.clone();
                check_header(kind, &header)?;
                if offset > 0 {
                    let mut pos = csv::Position::new();
                    pos.set_byte(offset).set_line(line);
                    input.seek(pos)?;
                }
                Ok(Reader::Csv {
                    input,
                    kind,
                    header,
                })
            }
        }
    }

    /// The byte offset and line number of the next line.
    fn position(&self) -> (u64, u64) {
        match self {
            Reader::Jsonl { offset, line, .. } => (*offset, *line),
            Reader::Csv { input, .. } => (input.position().byte(), input.position().line()),
        }
    }

    /// The next line, `None` at the end of the file.
    fn next(&mut self) -> anyhow::Result<Option<Line>> {
        match self {
            Reader::Jsonl {
                input,
                offset,
                line,
            } => loop {
                let mut raw = Vec::new();
                let n = input.read_until(b'\n', &mut raw)?;
                if n == 0 {
                    return Ok(None);
                }
                *offset += n as u64;
                let number = *line;
                *line += 1;
                while raw.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    raw.pop();
                }
                if raw.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let record = match std::str::from_utf8(&raw) {
                    Err(e) => Err(format!("not UTF-8 ({e})")),
                    Ok(text) => serde_json::from_str::<Record>(text)
                        .map_err(|e| format!("not a record: {e}")),
                };
                return Ok(Some(Line {
                    number,
                    raw,
                    record,
                }));
            },
            Reader::Csv {
                input,
                kind,
                header,
            } => {
                let number = input.position().line();
                let mut row = csv::ByteRecord::new();
                match input.read_byte_record(&mut row) {
                    Ok(false) => Ok(None),
                    Ok(true) => {
                        let raw = csv_row(&row)?;
                        let record = match csv::StringRecord::from_byte_record(row) {
                            Err(e) => Err(format!("not UTF-8 ({e})")),
                            Ok(row) => record_of_row(*kind, header, &row),
                        };
                        Ok(Some(Line {
                            number,
                            raw,
                            record,
                        }))
                    }
                    // A row with the wrong number of fields, or unreadable: its own error.
                    Err(e) if matches!(e.kind(), csv::ErrorKind::UnequalLengths { .. }) => {
                        let number = e.position().map_or(number, csv::Position::line);
                        Ok(Some(Line {
                            number,
                            raw: csv_row(&row)?,
                            record: Err(e.to_string()),
                        }))
                    }
                    Err(e) => Err(e.into()),
                }
            }
        }
    }
}

fn csv_row(row: &csv::ByteRecord) -> anyhow::Result<Vec<u8>> {
    let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
    w.write_byte_record(row)?;
    let mut raw = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    while raw.last() == Some(&b'\n') {
        raw.pop();
    }
    Ok(raw)
}

/// The format of `path`: the one asked for, else `.csv` is CSV and anything else JSON
/// Lines.
fn format_of(path: &Path, asked: Option<Format>) -> Format {
    asked.unwrap_or_else(|| {
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
        {
            Format::Csv
        } else {
            Format::Jsonl
        }
    })
}

/// The kind a CSV file holds: the one asked for, else its file name (`users.csv`).
fn csv_kind(path: &Path, asked: Option<&str>) -> anyhow::Result<RecordKind> {
    let name = match asked {
        Some(k) => k.to_owned(),
        None => path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned(),
    };
    let kind = RecordKind::parse(&name).with_context(|| {
        format!(
            "{name:?} names no kind of record: give --kind (one of {})",
            steerfeed_server::bulk::kind_names()
        )
    })?;
    if csv_columns(kind).is_none() {
        bail!("{} records do not fit CSV: use JSON Lines", kind.name());
    }
    Ok(kind)
}

/// FNV-1a of the file's first 64 KiB: tells a state file's file from another.
fn head_hash(path: &Path) -> anyhow::Result<u64> {
    let mut buf = Vec::new();
    File::open(path)?.take(64 << 10).read_to_end(&mut buf)?;
    Ok(buf.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    }))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// True when the byte before `offset` in `path` ends a line (or `offset` is 0): a state's
/// offset is always the start of a line of the file it was written for.
fn ends_a_line(path: &Path, offset: u64) -> anyhow::Result<bool> {
    if offset == 0 {
        return Ok(true);
    }
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(offset - 1))?;
    let mut b = [0u8; 1];
    f.read_exact(&mut b)?;
    Ok(b[0] == b'\n')
}

fn write_state(path: &Path, state: &ImportState) -> anyhow::Result<()> {
    let tmp = with_suffix(path, ".tmp");
    {
        let mut f = File::create(&tmp)?;
        serde_json::to_writer(&mut f, state)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// `steerfeed import`.
pub fn import(
    config: steerfeed::Config,
    server: &ServerConfig,
    shared: &steerfeed_server::config::SharedConfig,
    args: &ImportArgs,
) -> anyhow::Result<()> {
    let format = format_of(&args.file, args.format);
    let kind = match format {
        Format::Csv => Some(csv_kind(&args.file, args.kind.as_deref())?),
        Format::Jsonl if args.kind.is_some() => {
            bail!("--kind is for CSV files; a JSON line names its kind in `record`")
        }
        Format::Jsonl => None,
    };
    if args.batch == 0 || args.batch > steerfeed_server::bulk::MAX_IMPORT_BATCH {
        bail!(
            "--batch must be 1 to {}",
            steerfeed_server::bulk::MAX_IMPORT_BATCH
        );
    }
    let len = std::fs::metadata(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?
        .len();
    let head = head_hash(&args.file)?;
    let state_path = with_suffix(&args.file, ".import-state");
    let rejected_path = args
        .rejected
        .clone()
        .unwrap_or_else(|| with_suffix(&args.file, ".rejected"));

    let target = match &args.remote.url {
        Some(url) => url.clone(),
        None => config.store.path.display().to_string(),
    };
    let resumed = match std::fs::read(&state_path) {
        Ok(b) if !args.restart => {
            let state: ImportState = serde_json::from_slice(&b).with_context(|| {
                format!(
                    "reading {} (remove it or pass --restart)",
                    state_path.display()
                )
            })?;
            if state.target != target {
                bail!(
                    "{} was left by an import into {}, not {target}: pass --restart to import from the first line",
                    state_path.display(),
                    state.target
                );
            }
            if state.head != head
                || state.len > len
                || state.offset > len
                || (format == Format::Jsonl && !ends_a_line(&args.file, state.offset)?)
            {
                bail!(
                    "{} was left by an import of another file (or of this one before it changed): pass --restart to import from the first line",
                    state_path.display()
                );
            }
            Some(state)
        }
        _ => None,
    };
    let (offset, line, mut tally) = match &resumed {
        Some(s) => (s.offset, s.line, s.tally.clone()),
        None => (0, 1, Tally::default()),
    };
    if let Some(s) = &resumed {
        eprintln!(
            "resuming {} at line {} ({} records done)",
            args.file.display(),
            s.line,
            s.tally.records
        );
    }

    let mut sink: Box<dyn Sink> = match args.remote.url {
        Some(_) => Box::new(HttpSink(args.remote.clone())),
        None => Box::new(EngineSink(
            crate::open_stopped(config, shared)?,
            server.clone(),
        )),
    };
    let mut reader = Reader::open(&args.file, format, kind, offset, line)?;
    let mut rejected = open_rejected(
        &rejected_path,
        resumed.as_ref().map(|s| s.rejected_len),
        &reader,
    )?;

    let bar = progress_bar(len, offset);
    let started = Instant::now();
    let first_record = tally.records;
    loop {
        let mut lines = Vec::with_capacity(args.batch);
        let mut bytes = 0;
        while lines.len() < args.batch && bytes < (4 << 20) {
            match reader.next()? {
                Some(l) => {
                    bytes += l.raw.len();
                    lines.push(l);
                }
                None => break,
            }
        }
        if lines.is_empty() {
            break;
        }
        let records: Vec<Record> = lines
            .iter()
            .filter_map(|l| l.record.as_ref().ok().cloned())
            .collect();
        let mut answers = sink.apply(&records)?.into_iter();
        for l in &lines {
            tally.records += 1;
            let outcome = match &l.record {
                Err(e) => Err(e.clone()),
                Ok(_) => answers.next().context("an answer missing")?,
            };
            match outcome {
                Ok(status) => tally.add(status),
                Err(why) => {
                    tally.add(ImportStatus::Rejected);
                    eprintln!("line {}: {why}", l.number);
                    rejected.write_all(&l.raw)?;
                    rejected.write_all(b"\n")?;
                }
            }
        }
        rejected.flush()?;
        rejected.get_ref().sync_data()?;
        let (offset, line) = reader.position();
        write_state(
            &state_path,
            &ImportState {
                len,
                head,
                target: target.clone(),
                offset,
                rejected_len: rejected.get_ref().metadata()?.len(),
                line,
                tally: tally.clone(),
            },
        )?;
        bar.set_position(offset);
    }
    bar.finish_and_clear();
    let settle = sink.finish();
    drop(sink);
    std::fs::remove_file(&state_path).ok();
    if tally.rejected == 0 {
        drop(rejected);
        std::fs::remove_file(&rejected_path).ok();
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut summary = serde_json::to_value(&tally)?;
    summary["seconds"] = seconds.into();
    summary["records_per_s"] = (((tally.records - first_record) as f64) / seconds.max(1e-9))
        .round()
        .into();
    if tally.rejected > 0 {
        summary["rejected_file"] = rejected_path.display().to_string().into();
    }
    if let Some(s) = &resumed {
        summary["resumed_at_line"] = s.line.into();
    }
    summary["index_settle_s"] = settle.into();
    crate::say(serde_json::to_string_pretty(&summary)?)?;
    Ok(())
}

/// The rejected file: new, or (resuming) cut to the length the last completed batch left
/// it at, then appended to.
fn open_rejected(
    path: &Path,
    resumed_len: Option<u64>,
    reader: &Reader,
) -> anyhow::Result<BufWriter<File>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(resumed_len.is_some())
        .write(true)
        .truncate(resumed_len.is_none())
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    if let Some(len) = resumed_len
        && file.metadata()?.len() > len
    {
        file.set_len(len)?;
    }
    let empty = file.metadata()?.len() == 0;
    let mut w = BufWriter::new(file);
    if let (Reader::Csv { header, .. }, true) = (reader, empty) {
        w.write_all(&csv_row(header.as_byte_record())?)?;
        w.write_all(b"\n")?;
    }
    Ok(w)
}

fn progress_bar(len: u64, at: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_position(at);
    bar
}

// ---------------------------------------------------------------------------------------
// CSV.

/// The columns of a kind's CSV file (`None`: the kind does not fit CSV), in the JSON
/// field names of its record (for users, videos and events, of the inner object).
fn csv_columns(kind: RecordKind) -> Option<&'static [&'static str]> {
    Some(match kind {
        RecordKind::User => &["id", "age_band", "time_zone"],
        RecordKind::Video => &[
            "id",
            "creator",
            "created_at",
            "duration_s",
            "caption",
            "topics",
            "remix_of",
            "cameos",
            "safety",
            "audience",
            "deleted",
            "embedding",
        ],
        RecordKind::Follow => &["user", "creator"],
        RecordKind::Block | RecordKind::Mute => &["user", "other"],
        RecordKind::Consent => &["person", "scope", "approved"],
        RecordKind::Revocation => &["person", "video", "creator"],
        RecordKind::Event => &[
            "key",
            "user",
            "at",
            "kind",
            "video",
            "watch_ms",
            "completed",
            "new_video",
            "answer",
        ],
        RecordKind::ParentalControls | RecordKind::Preferences => return None,
    })
}

/// Columns whose cells are lists, `|`-separated.
const LIST_COLUMNS: &[&str] = &["topics", "cameos", "safety", "approved"];
/// Columns whose cells are JSON numbers or booleans.
const TYPED_COLUMNS: &[&str] = &["duration_s", "deleted", "watch_ms", "completed"];

/// The field a kind's record nests its object under (`{"record": "user", "user": {…}}`).
fn nested(kind: RecordKind) -> Option<&'static str> {
    match kind {
        RecordKind::User => Some("user"),
        RecordKind::Video => Some("video"),
        RecordKind::Event => Some("event"),
        _ => None,
    }
}

fn check_header(kind: RecordKind, header: &csv::StringRecord) -> anyhow::Result<()> {
    let columns = csv_columns(kind).context("this kind does not fit CSV")?;
    for (i, h) in header.iter().enumerate() {
        if header.iter().take(i).any(|earlier| earlier == h) {
            bail!(
                "the CSV header names the column {h:?} twice: which value a row means is unclear"
            );
        }
        if !columns.contains(&h) {
            bail!(
                "the CSV header has a column {h:?}, which {} records do not have (columns: {})",
                kind.name(),
                columns.join(", ")
            );
        }
    }
    Ok(())
}

fn record_of_row(
    kind: RecordKind,
    header: &csv::StringRecord,
    row: &csv::StringRecord,
) -> Result<Record, String> {
    let mut fields = Map::new();
    for (name, cell) in header.iter().zip(row.iter()) {
        let list = LIST_COLUMNS.contains(&name);
        if cell.is_empty() && !list {
            continue;
        }
        let value = if list {
            Value::Array(
                cell.split('|')
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_owned()))
                    .collect(),
            )
        } else if name == "embedding" {
            let mut xs = Vec::new();
            for x in cell.split_whitespace() {
                let x: f64 = x
                    .parse()
                    .map_err(|_| format!("embedding: {x:?} is not a number"))?;
                xs.push(
                    serde_json::Number::from_f64(x)
                        .map(Value::Number)
                        .ok_or_else(|| format!("embedding: {x} is not a finite number"))?,
                );
            }
            Value::Array(xs)
        } else if TYPED_COLUMNS.contains(&name) {
            serde_json::from_str(cell)
                .map_err(|_| format!("{name}: {cell:?} is not a number or a boolean"))?
        } else {
            Value::String(cell.to_owned())
        };
        fields.insert(name.to_owned(), value);
    }
    let mut record = Map::new();
    record.insert("record".into(), kind.name().into());
    match nested(kind) {
        Some(field) => {
            record.insert(field.into(), Value::Object(fields));
        }
        None => record.extend(fields),
    }
    serde_json::from_value(Value::Object(record)).map_err(|e| e.to_string())
}

/// A record's cells in its kind's CSV columns.
fn row_of_record(kind: RecordKind, record: &Record) -> anyhow::Result<Vec<String>> {
    let mut value = serde_json::to_value(record)?;
    let object = match nested(kind) {
        Some(field) => value.get_mut(field).map(Value::take),
        None => Some(value),
    };
    let Some(Value::Object(fields)) = object else {
        bail!("a {} record is not an object", kind.name());
    };
    let columns = csv_columns(kind).context("this kind does not fit CSV")?;
    columns
        .iter()
        .map(|c| {
            Ok(match fields.get(*c) {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(xs)) => {
                    let sep = if *c == "embedding" { " " } else { "|" };
                    let mut items = Vec::with_capacity(xs.len());
                    for x in xs {
                        items.push(match x {
                            // An id holding the separator would come back as two ids.
                            Value::String(s) if s.contains('|') => bail!(
                                "{} {c}: {s:?} holds '|', the CSV list separator: export JSON Lines",
                                kind.name()
                            ),
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        });
                    }
                    items.join(sep)
                }
                Some(other) => other.to_string(),
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Export.

/// Where exported records go.
enum Out {
    Jsonl(Box<dyn Write>),
    Csv {
        dir: PathBuf,
        files: Vec<(RecordKind, OutFile)>,
    },
}

enum OutFile {
    Csv(Box<csv::Writer<BufWriter<File>>>),
    Jsonl(BufWriter<File>),
}

impl Out {
    fn write(&mut self, record: &Record) -> anyhow::Result<()> {
        match self {
            Out::Jsonl(w) => {
                serde_json::to_writer(&mut *w, record)?;
                w.write_all(b"\n")?;
            }
            Out::Csv { dir, files } => {
                let kind = record.kind().context("a derived record in a bulk export")?;
                let at = match files.iter().position(|(k, _)| *k == kind) {
                    Some(i) => i,
                    None => {
                        let file = match csv_columns(kind) {
                            Some(columns) => {
                                let path = dir.join(format!("{}.csv", csv_file_stem(kind)));
                                let mut w =
                                    csv::Writer::from_writer(BufWriter::new(File::create(&path)?));
                                w.write_record(columns)?;
                                OutFile::Csv(Box::new(w))
                            }
                            None => OutFile::Jsonl(BufWriter::new(File::create(
                                dir.join(format!("{}.jsonl", csv_file_stem(kind))),
                            )?)),
                        };
                        files.push((kind, file));
                        files.len() - 1
                    }
                };
                match &mut files[at].1 {
                    OutFile::Csv(w) => w.write_record(row_of_record(kind, record)?)?,
                    OutFile::Jsonl(w) => {
                        serde_json::to_writer(&mut *w, record)?;
                        w.write_all(b"\n")?;
                    }
                }
            }
        }
        Ok(())
    }

    fn finish(self) -> anyhow::Result<()> {
        match self {
            Out::Jsonl(mut w) => w.flush()?,
            Out::Csv { files, .. } => {
                for (_, f) in files {
                    match f {
                        OutFile::Csv(mut w) => w.flush()?,
                        OutFile::Jsonl(mut w) => w.flush()?,
                    }
                }
            }
        }
        Ok(())
    }
}

/// The file name (without extension) of a kind in a CSV export: `users`, `consent`.
fn csv_file_stem(kind: RecordKind) -> String {
    match kind {
        RecordKind::Consent | RecordKind::Preferences | RecordKind::ParentalControls => {
            kind.name().to_owned()
        }
        _ => format!("{}s", kind.name()),
    }
}

/// Parses a comma-separated list of kinds.
pub fn parse_kinds(list: Option<&str>) -> anyhow::Result<Vec<RecordKind>> {
    match list {
        None => Ok(RecordKind::ALL.to_vec()),
        Some(list) => list
            .split(',')
            .map(|k| {
                RecordKind::parse(k).with_context(|| {
                    format!(
                        "unknown kind {k:?}: the kinds are {}",
                        steerfeed_server::bulk::kind_names()
                    )
                })
            })
            .collect(),
    }
}

/// `steerfeed export`.
pub fn export(
    config: steerfeed::Config,
    shared: &steerfeed_server::config::SharedConfig,
    args: &ExportArgs,
) -> anyhow::Result<()> {
    let kinds = parse_kinds(args.kinds.as_deref())?;
    let mut out = match (args.format, &args.out) {
        (Format::Jsonl, None) => Out::Jsonl(Box::new(BufWriter::new(std::io::stdout().lock()))),
        (Format::Jsonl, Some(path)) => Out::Jsonl(Box::new(BufWriter::new(
            File::create(path).with_context(|| format!("creating {}", path.display()))?,
        ))),
        (Format::Csv, None) => bail!("a CSV export writes one file per kind: give --out FOLDER"),
        (Format::Csv, Some(dir)) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            Out::Csv {
                dir: dir.clone(),
                files: Vec::new(),
            }
        }
    };
    let mut count = 0u64;
    match &args.remote.url {
        Some(_) => {
            let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
            let path = format!(
                "/v1/export?kinds={}&embeddings={}",
                names.join(","),
                args.embeddings
            );
            let body = args.remote.get_reader(&path)?;
            for line in BufReader::with_capacity(1 << 20, body).lines() {
                let line =
                    line.context("reading the sidecar's export (it may have ended early)")?;
                if line.is_empty() {
                    continue;
                }
                let record: Record =
                    serde_json::from_str(&line).context("a record from the sidecar")?;
                out.write(&record)?;
                count += 1;
            }
        }
        None => {
            let engine = crate::open_stopped(config, shared)?;
            let mut failed = None;
            engine
                .export(&kinds, args.embeddings, &mut |record| {
                    if let Err(e) = out.write(&record) {
                        failed = Some(e);
                        return Err(steerfeed::Error::internal("export", "writing failed"));
                    }
                    count += 1;
                    Ok(())
                })
                .map_err(|e| failed.take().unwrap_or_else(|| e.into()))?;
        }
    }
    out.finish()?;
    eprintln!("exported {count} records");
    Ok(())
}
