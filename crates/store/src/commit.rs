//! Group commit: writers that need durability share one `db.flush()`.
//!
//! Every write bumps `written` once its changes are in sled (in memory). A writer that
//! must be durable waits until `durable >= its generation`. If no flush is running, it
//! becomes the leader: it takes `target = written`, flushes outside the lock, then sets
//! `durable = target` and wakes everyone; all writes up to `target` were applied before
//! the flush began, so they are on disk. Writers that arrive during a flush wait and
//! are covered by the next one, so N concurrent callers cost about two flushes, not N.

use std::sync::{Condvar, Mutex};

use steerfeed_core::{Error, Result};

#[derive(Default)]
struct State {
    written: u64,
    durable: u64,
    flushing: bool,
}

#[derive(Default)]
pub(crate) struct GroupCommit {
    state: Mutex<State>,
    cv: Condvar,
}

impl GroupCommit {
    /// Records that a write reached sled; returns its generation.
    pub fn written(&self) -> u64 {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.written += 1;
        st.written
    }

    /// Returns once generation `generation` is durable, flushing with `flush` if needed.
    pub fn wait_durable(
        &self,
        generation: u64,
        flush: impl Fn() -> sled::Result<usize>,
    ) -> Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if st.durable >= generation {
                return Ok(());
            }
            if st.flushing {
                st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            st.flushing = true;
            let target = st.written;
            drop(st);
            let res = flush();
            st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            st.flushing = false;
            if res.is_ok() {
                st.durable = st.durable.max(target);
            }
            self.cv.notify_all();
            if let Err(e) = res {
                return Err(Error::internal("store", format!("flush failed: {e}")));
            }
        }
    }
}
