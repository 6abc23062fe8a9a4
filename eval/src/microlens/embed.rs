//! Title embeddings from the real encoder, cached on disk keyed by the model's
//! fingerprint and a hash of the titles.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rayon::prelude::*;
use steerfeed::hash::Fnv1a;
use steerfeed::steer::Encoder;

use crate::progress::Progress;

const MAGIC: &[u8; 8] = b"SFEMB001";
const HEADER: usize = 8 + 4 * 8;

/// Row-major unit vectors, one row per catalogue item.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    /// Dimension of a row.
    pub dim: usize,
    /// `len * dim` values.
    pub data: Vec<f32>,
}

impl Embeddings {
    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }

    /// True when there is no row.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// FNV-1a 64 of the titles (in order, each followed by a zero byte).
pub fn titles_hash(titles: &[String]) -> u64 {
    let mut h = Fnv1a::new();
    for t in titles {
        h.update(t.as_bytes());
        h.update(&[0]);
    }
    h.finish()
}

/// The cache file for this model and these titles.
pub fn cache_path(dir: &Path, fingerprint: u64, titles: &[String]) -> PathBuf {
    dir.join(format!(
        "microlens-{fingerprint:016x}-{:016x}.bin",
        titles_hash(titles)
    ))
}

/// Writes embeddings with a header (magic, rows, dim, fingerprint, titles hash).
pub fn save(path: &Path, e: &Embeddings, fingerprint: u64, thash: u64) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut bytes = Vec::with_capacity(HEADER + e.data.len() * 4);
    bytes.extend_from_slice(MAGIC);
    for v in [e.len() as u64, e.dim as u64, fingerprint, thash] {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    for v in &e.data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    let tmp = path.with_extension("tmp");
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(&bytes)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Reads a cache file, checking that its header matches what is expected.
pub fn load(path: &Path, rows: usize, fingerprint: u64, thash: u64) -> anyhow::Result<Embeddings> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        bail!("{}: not an embedding cache", path.display());
    }
    let (n, dim, fp, th) = (
        u64_at(&bytes, 8) as usize,
        u64_at(&bytes, 16) as usize,
        u64_at(&bytes, 24),
        u64_at(&bytes, 32),
    );
    if n != rows || fp != fingerprint || th != thash || dim == 0 {
        bail!(
            "{}: header does not match the model or titles",
            path.display()
        );
    }
    if bytes.len() != HEADER + n * dim * 4 {
        bail!("{}: truncated", path.display());
    }
    let data = bytes[HEADER..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok(Embeddings { dim, data })
}

/// Embeds `titles` with `encoder`, through the cache in `dir`.
pub fn embed_titles(
    encoder: &Encoder,
    titles: &[String],
    dir: &Path,
) -> anyhow::Result<Embeddings> {
    let fp = encoder.fingerprint();
    let thash = titles_hash(titles);
    let path = cache_path(dir, fp, titles);
    if path.is_file() {
        match load(&path, titles.len(), fp, thash) {
            Ok(e) => {
                eprintln!("title embeddings: cached in {}", path.display());
                return Ok(e);
            }
            Err(e) => eprintln!("ignoring the cache: {e:#}"),
        }
    }
    let progress = Progress::new("embedding titles", titles.len() as u64);
    let chunks: Vec<Vec<f32>> = titles
        .par_chunks(128)
        .map(|chunk| {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let out = encoder.embed_batch(&refs)?;
            progress.inc(chunk.len() as u64);
            Ok(out.iter().flat_map(|e| e.as_slice().to_vec()).collect())
        })
        .collect::<anyhow::Result<_>>()?;
    progress.finish();
    let e = Embeddings {
        dim: encoder.dim(),
        data: chunks.concat(),
    };
    save(&path, &e, fp, thash)?;
    eprintln!("title embeddings: saved to {}", path.display());
    Ok(e)
}
