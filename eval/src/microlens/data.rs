//! Loading MicroLens files: `pairs.tsv` (`user<TAB>item item ...`), `titles.csv`
//! (`item,title`, quoted CSV) and an optional test file (`user<TAB>item`), and the split.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, bail};

/// The catalogue: every item with a title, numbered densely in file order.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    /// The item id of each dense index.
    pub ids: Vec<u64>,
    /// The title of each dense index.
    pub titles: Vec<String>,
    /// Dense index of each item id.
    pub index: HashMap<u64, u32>,
}

impl Catalogue {
    /// Number of items.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// One user's chronological sequence of dense item indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequence {
    /// The user id as written in the file.
    pub user: String,
    /// Dense item indices, oldest first.
    pub items: Vec<u32>,
}

/// One evaluation case: what the method sees and the item it must find.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// The user, as written in the file.
    pub user: String,
    /// The user's history (dense indices, oldest first).
    pub history: Vec<u32>,
    /// The held-out item.
    pub target: u32,
}

/// Training sequences and the test cases built from them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Sequences the methods learn from.
    pub train: Vec<Sequence>,
    /// One case per user, in the order of `train`.
    pub cases: Vec<Case>,
}

/// Parses quoted CSV text into records (fields may hold commas, `""` quotes and newlines).
/// Each record comes with the line it starts on (from 1).
pub fn parse_csv(text: &str, file: &str) -> anyhow::Result<Vec<(usize, Vec<String>)>> {
    let mut records = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut line = 1usize;
    let mut start = 1usize;
    let mut in_quotes = false;
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() && !quoted => {
                in_quotes = true;
                quoted = true;
            }
            '"' => bail!("{file}:{line}: stray quote inside an unquoted field"),
            ',' => {
                fields.push(std::mem::take(&mut field));
                quoted = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                fields.push(std::mem::take(&mut field));
                quoted = false;
                if !(fields.len() == 1 && fields[0].is_empty()) {
                    records.push((start, std::mem::take(&mut fields)));
                }
                fields.clear();
                line += 1;
                start = line;
            }
            _ => {
                if quoted {
                    bail!("{file}:{line}: text after a closing quote");
                }
                field.push(c);
            }
        }
    }
    if in_quotes {
        bail!("{file}:{start}: quoted field never closed");
    }
    if !field.is_empty() || !fields.is_empty() || quoted {
        fields.push(field);
        records.push((start, fields));
    }
    Ok(records)
}

/// Parses `titles.csv` (header `item,title`).
pub fn parse_titles(text: &str, file: &str) -> anyhow::Result<Catalogue> {
    let records = parse_csv(text, file)?;
    let mut it = records.into_iter();
    match it.next() {
        Some((_, h)) if h.len() == 2 && h[0].trim() == "item" && h[1].trim() == "title" => {}
        Some((line, _)) => bail!("{file}:{line}: expected the header `item,title`"),
        None => bail!("{file}: empty file"),
    }
    let mut cat = Catalogue::default();
    for (line, rec) in it {
        if rec.len() != 2 {
            bail!(
                "{file}:{line}: expected 2 fields (item,title), found {}",
                rec.len()
            );
        }
        let id: u64 = rec[0]
            .trim()
            .parse()
            .with_context(|| format!("{file}:{line}: item `{}` is not a number", rec[0]))?;
        let idx = u32::try_from(cat.ids.len()).context("too many items")?;
        if cat.index.insert(id, idx).is_some() {
            bail!("{file}:{line}: item {id} listed twice");
        }
        cat.ids.push(id);
        cat.titles.push(rec[1].clone());
    }
    if cat.is_empty() {
        bail!("{file}: no titles");
    }
    Ok(cat)
}

fn item_index(cat: &Catalogue, tok: &str, file: &str, line: usize) -> anyhow::Result<u32> {
    let id: u64 = tok
        .parse()
        .with_context(|| format!("{file}:{line}: item `{tok}` is not a number"))?;
    cat.index
        .get(&id)
        .copied()
        .with_context(|| format!("{file}:{line}: item {id} has no title"))
}

/// Parses `pairs.tsv`: `user<TAB>item item ...`, oldest first. Blank lines are skipped.
pub fn parse_pairs(text: &str, file: &str, cat: &Catalogue) -> anyhow::Result<Vec<Sequence>> {
    let mut out = Vec::new();
    let mut seen = HashMap::new();
    for (n, raw) in text.lines().enumerate() {
        let line = n + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let Some((user, items)) = raw.split_once('\t') else {
            bail!("{file}:{line}: expected `user<TAB>item item ...`");
        };
        let user = user.trim();
        if user.is_empty() {
            bail!("{file}:{line}: empty user");
        }
        let items = items
            .split_whitespace()
            .map(|t| item_index(cat, t, file, line))
            .collect::<anyhow::Result<Vec<u32>>>()?;
        if items.is_empty() {
            bail!("{file}:{line}: user {user} has an empty history");
        }
        if seen.insert(user.to_owned(), line).is_some() {
            bail!("{file}:{line}: user {user} appears twice");
        }
        out.push(Sequence {
            user: user.to_owned(),
            items,
        });
    }
    if out.is_empty() {
        bail!("{file}: no users");
    }
    Ok(out)
}

/// Leave-last-out: the last item of each sequence is the target, the rest is both the
/// history and the training data. Sequences of one item cannot be split: an error.
pub fn leave_last_out(seqs: &[Sequence]) -> anyhow::Result<Split> {
    let mut train = Vec::with_capacity(seqs.len());
    let mut cases = Vec::with_capacity(seqs.len());
    for s in seqs {
        let Some((&target, history)) = s.items.split_last() else {
            bail!("user {} has an empty history", s.user);
        };
        if history.is_empty() {
            bail!(
                "user {} has a single item: nothing left to learn from",
                s.user
            );
        }
        train.push(Sequence {
            user: s.user.clone(),
            items: history.to_vec(),
        });
        cases.push(Case {
            user: s.user.clone(),
            history: history.to_vec(),
            target,
        });
    }
    Ok(Split { train, cases })
}

/// Test-file mode: train on every sequence; each test line (`user<TAB>item`) is a case whose
/// history is the user's whole sequence. Users of `pairs` missing from the test are not cases.
pub fn with_test(
    seqs: Vec<Sequence>,
    test: &str,
    file: &str,
    cat: &Catalogue,
) -> anyhow::Result<Split> {
    let by_user: HashMap<&str, usize> = seqs
        .iter()
        .enumerate()
        .map(|(i, s)| (s.user.as_str(), i))
        .collect();
    let mut cases = Vec::new();
    for (n, raw) in test.lines().enumerate() {
        let line = n + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let Some((user, item)) = raw.split_once('\t') else {
            bail!("{file}:{line}: expected `user<TAB>item`");
        };
        let user = user.trim();
        let &i = by_user
            .get(user)
            .with_context(|| format!("{file}:{line}: unknown user {user} (not in the pairs)"))?;
        let target = item_index(cat, item.trim(), file, line)?;
        cases.push(Case {
            user: user.to_owned(),
            history: seqs[i].items.clone(),
            target,
        });
    }
    if cases.is_empty() {
        bail!("{file}: no test lines");
    }
    Ok(Split { train: seqs, cases })
}

/// Reads a file with its path in the error.
pub fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}
