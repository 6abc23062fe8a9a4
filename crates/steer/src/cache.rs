//! A disk cache of embeddings, keyed by the model (a fingerprint of the model and
//! tokenizer files and the truncation length) and by the exact texts, so the taxonomy
//! (and large caption sets) are embedded once per model, not at every start.
//!
//! A cache file that is missing, damaged or from another model is simply recomputed; a
//! cache that cannot be written is logged and skipped. Files are written atomically.

use std::path::{Path, PathBuf};

use steerfeed_core::Embedding;
use steerfeed_core::hash::Fnv1a;

use crate::encoder::Encoder;
use crate::error::Result;

const MAGIC: &[u8; 8] = b"SFEMB\0\0\x01";

fn key(encoder: &Encoder, texts: &[&str]) -> u64 {
    let mut h = Fnv1a::new();
    h.update(&encoder.fingerprint().to_le_bytes());
    for t in texts {
        h.update(t.as_bytes());
        h.update(&[0]);
    }
    h.finish()
}

/// The cache file for these texts under `dir`.
pub fn cache_file(dir: &Path, encoder: &Encoder, texts: &[&str]) -> PathBuf {
    dir.join(format!("embeddings-{:016x}.bin", key(encoder, texts)))
}

fn read(path: &Path, count: usize, dim: usize) -> Option<Vec<Embedding>> {
    let data = std::fs::read(path).ok()?;
    let body_len = MAGIC.len() + 8 + count * dim * 4;
    if data.len() != body_len + 8 || &data[..MAGIC.len()] != MAGIC {
        return None;
    }
    let mut h = Fnv1a::new();
    h.update(&data[..body_len]);
    if data[body_len..] != h.finish().to_le_bytes() {
        return None;
    }
    let header = &data[MAGIC.len()..MAGIC.len() + 8];
    let n = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let d = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    if n != count || d != dim {
        return None;
    }
    let floats: Vec<f32> = data[MAGIC.len() + 8..body_len]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    floats
        .chunks_exact(dim)
        .map(|row| Embedding::new("cached embedding", row, dim).ok())
        .collect()
}

fn write(path: &Path, vectors: &[Embedding], dim: usize) -> std::io::Result<()> {
    let mut data = Vec::with_capacity(MAGIC.len() + 16 + vectors.len() * dim * 4);
    data.extend_from_slice(MAGIC);
    data.extend_from_slice(&(vectors.len() as u32).to_le_bytes());
    data.extend_from_slice(&(dim as u32).to_le_bytes());
    for v in vectors {
        for x in v.as_slice() {
            data.extend_from_slice(&x.to_le_bytes());
        }
    }
    let mut h = Fnv1a::new();
    h.update(&data);
    data.extend_from_slice(&h.finish().to_le_bytes());
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &data)?;
    std::fs::rename(&tmp, path)
}

/// Embeds `texts`, reading the vectors from `dir` when a cache file for exactly these
/// texts and this model is there, and writing one otherwise.
pub fn embed_cached(encoder: &Encoder, texts: &[&str], dir: &Path) -> Result<Vec<Embedding>> {
    let path = cache_file(dir, encoder, texts);
    if let Some(v) = read(&path, texts.len(), encoder.dim()) {
        tracing::debug!(path = %path.display(), count = v.len(), "embeddings from cache");
        return Ok(v);
    }
    let vectors = encoder.embed_batch(texts)?;
    if let Err(e) = write(&path, &vectors, encoder.dim()) {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the embedding cache");
    }
    Ok(vectors)
}

/// [`embed_cached`] in the set-up cache's `embeddings/` folder.
pub fn embed_in_setup_cache(encoder: &Encoder, texts: &[&str]) -> Result<Vec<Embedding>> {
    embed_cached(
        encoder,
        texts,
        &crate::config::cache_dir().join("embeddings"),
    )
}
