//! Helpers more than one test file uses.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use steerfeed_core::storage::Storage;
use steerfeed_core::{UserId, VideoId};
use steerfeed_shared::SharedStore;

/// Catches `s` up until `user`'s seen videos are `want`: another process's page reaches a
/// mirror as its consumer delivers it, which no catch-up waits for. Fails after 30 s.
pub fn catch_up_until_seen(s: &SharedStore, user: &UserId, want: &[VideoId]) {
    let start = Instant::now();
    loop {
        s.catch_up().unwrap();
        let seen: Vec<VideoId> = s.seen(user).unwrap().into_iter().map(|s| s.0).collect();
        if seen == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the page never reached this mirror: {user} has seen {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
