//! Reading the event log: each record holds one or more events under the sequence
//! number of its first (`codec.rs`).

use sled::Tree;
use steerfeed_core::{Event, Result};

use crate::codec::{self, corrupt, u64_of};
use crate::trees::db_err;

/// Calls `f(seq, event)` for every logged event with sequence number `>= from`, in order.
///
/// The log holds records of one or more events (`codec.rs`), each under the sequence
/// number of its first event; the record holding `from` may start before it.
pub(crate) fn for_each_logged(
    log: &Tree,
    from: u64,
    mut f: impl FnMut(u64, Event) -> Result<()>,
) -> Result<()> {
    let start = match log.range(..=from.to_be_bytes()).next_back() {
        Some(kv) => {
            let (k, _) = kv.map_err(db_err)?;
            u64_of(&k).ok_or_else(|| corrupt("event key"))?
        }
        None => from,
    };
    for kv in log.range(start.to_be_bytes()..) {
        let (k, v) = kv.map_err(db_err)?;
        let first = u64_of(&k).ok_or_else(|| corrupt("event key"))?;
        codec::decode_record(&v, from.saturating_sub(first), |i, e| f(first + i, e))?;
    }
    Ok(())
}

/// The logged event with sequence number `seq`, if there is one.
pub(crate) fn logged_event(log: &Tree, seq: u64) -> Result<Option<Event>> {
    let Some(kv) = log.range(..=seq.to_be_bytes()).next_back() else {
        return Ok(None);
    };
    let (k, v) = kv.map_err(db_err)?;
    let first = u64_of(&k).ok_or_else(|| corrupt("event key"))?;
    let mut found = None;
    if seq - first < codec::record_len(&v)? {
        codec::decode_record(&v, seq - first, |i, e| {
            if i == seq - first {
                found = Some(e);
            }
            Ok(())
        })?;
    }
    Ok(found)
}
