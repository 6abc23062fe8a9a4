//! Sealing what the event log carries about a person with a key of their own.
//!
//! Every event (and every served page) goes into the stream encrypted with its person's
//! key (XChaCha20-Poly1305, a random 24-byte nonce each), named by a random key id that
//! says nothing about the person. The keys live in PostgreSQL (`person_keys`); erasing a
//! person removes theirs in the erasure's own transaction (the row stays, keyless, so
//! that nothing published about them afterwards makes a new one), after which nothing in
//! the stream is readable as theirs (crypto-shredding): a replica replaying the stream
//! skips what it cannot open.
//!
//! A sealed message: `SFS1`, the number of entries (u32, little-endian), then per entry
//! the key id (16 bytes), the nonce (24 bytes), the ciphertext's length (u32) and the
//! ciphertext (with its 16-byte tag).

use std::sync::Arc;

use chacha20poly1305::aead::rand_core::RngCore;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use steerfeed_core::{Error, Result};

const MAGIC: &[u8; 4] = b"SFS1";
const NONCE: usize = 24;
/// Bytes of a key id.
pub(crate) const ID: usize = 16;

/// A key id.
pub(crate) type KeyId = [u8; ID];

/// One person's key.
pub(crate) struct PersonKey {
    pub(crate) id: KeyId,
    cipher: XChaCha20Poly1305,
}

impl PersonKey {
    /// A key from its stored id and bytes.
    pub(crate) fn from_parts(id: &[u8], key: &[u8]) -> Result<PersonKey> {
        let id: KeyId = id
            .try_into()
            .map_err(|_| Error::internal("person key", "a key id is not 16 bytes"))?;
        let cipher = XChaCha20Poly1305::new_from_slice(key)
            .map_err(|_| Error::internal("person key", "a key is not 32 bytes"))?;
        Ok(PersonKey { id, cipher })
    }
}

/// A new random key: its id and bytes.
pub(crate) fn new_key() -> (KeyId, Vec<u8>) {
    let mut id = [0u8; ID];
    OsRng.fill_bytes(&mut id);
    (id, XChaCha20Poly1305::generate_key(&mut OsRng).to_vec())
}

/// Seals each plaintext with its key, into one message.
pub(crate) fn seal(entries: &[(Arc<PersonKey>, Vec<u8>)]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(
        8 + entries
            .iter()
            .map(|(_, p)| ID + NONCE + 4 + p.len() + 16)
            .sum::<usize>(),
    );
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for (key, plain) in entries {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = key
            .cipher
            .encrypt(&nonce, plain.as_slice())
            .map_err(|_| Error::internal("seal", "encryption failed"))?;
        out.extend_from_slice(&key.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        out.extend_from_slice(&sealed);
    }
    Ok(out)
}

/// One sealed entry of a message.
pub(crate) struct Sealed<'a> {
    pub(crate) key: KeyId,
    nonce: &'a [u8],
    ciphertext: &'a [u8],
}

impl Sealed<'_> {
    /// The plaintext, when `key` opens it.
    pub(crate) fn open(&self, key: &PersonKey) -> Option<Vec<u8>> {
        key.cipher
            .decrypt(XNonce::from_slice(self.nonce), self.ciphertext)
            .ok()
    }
}

/// The entries of a sealed message.
pub(crate) fn entries(mut m: &[u8]) -> Result<Vec<Sealed<'_>>> {
    let bad = || Error::internal("event log", "a sealed message is malformed");
    let mut take = |n: usize| -> Result<&[u8]> {
        if m.len() < n {
            return Err(bad());
        }
        let (head, rest) = m.split_at(n);
        m = rest;
        Ok(head)
    };
    if take(4)? != MAGIC {
        return Err(bad());
    }
    let count = u32::from_le_bytes(take(4)?.try_into().map_err(|_| bad())?) as usize;
    let mut out = Vec::with_capacity(count.min(4096));
    for _ in 0..count {
        let key: KeyId = take(ID)?.try_into().map_err(|_| bad())?;
        let nonce = take(NONCE)?;
        let len = u32::from_le_bytes(take(4)?.try_into().map_err(|_| bad())?) as usize;
        let ciphertext = take(len)?;
        out.push(Sealed {
            key,
            nonce,
            ciphertext,
        });
    }
    if !m.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn key() -> Arc<PersonKey> {
        let (id, bytes) = new_key();
        Arc::new(PersonKey::from_parts(&id, &bytes).unwrap())
    }

    #[test]
    fn what_is_sealed_opens_with_its_own_key_only() {
        let (a, b) = (key(), key());
        let m = seal(&[
            (a.clone(), b"alice watched v1".to_vec()),
            (b.clone(), b"bob liked v2".to_vec()),
        ])
        .unwrap();
        // Nothing of the plaintext is in the message.
        assert!(!m.windows(5).any(|w| w == b"alice" || w == b"bob l"));
        let e = entries(&m).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].key, a.id);
        assert_eq!(e[0].open(&a).unwrap(), b"alice watched v1");
        assert_eq!(e[1].open(&b).unwrap(), b"bob liked v2");
        assert!(e[0].open(&b).is_none(), "another key opens nothing");
        // Cut or extended messages are refused, not misread.
        assert!(entries(&m[..m.len() - 1]).is_err());
        let mut longer = m.clone();
        longer.push(0);
        assert!(entries(&longer).is_err());
        // A flipped bit fails the tag.
        let mut flipped = m.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(entries(&flipped).unwrap()[1].open(&b).is_none());
    }
}
