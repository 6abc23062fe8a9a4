//! Helpers more than one test file uses.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::time::{Duration, Instant};

use steerfeed_core::storage::{SharedPools, Storage};
use steerfeed_core::{UserId, VideoId};
use steerfeed_shared::SharedStore;
use steerfeed_shared::servers::Servers;

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

/// [`SharedPools::keep_pool`], waiting for the store's answer.
pub trait KeepAnswered {
    /// True when kept, false when the stamp had moved.
    fn keep_answered(
        &self,
        user: &UserId,
        stamp: u64,
        pool: &[u8],
        ttl_s: u64,
    ) -> steerfeed_core::Result<bool>;
}

impl<T: SharedPools + ?Sized> KeepAnswered for T {
    fn keep_answered(
        &self,
        user: &UserId,
        stamp: u64,
        pool: &[u8],
        ttl_s: u64,
    ) -> steerfeed_core::Result<bool> {
        let (tx, rx) = std::sync::mpsc::channel();
        let done = Box::new(move |outcome| {
            let _ = tx.send(outcome);
        });
        self.keep_pool(user, stamp, pool, ttl_s, done)?;
        rx.recv_timeout(Duration::from_secs(30))
            .expect("the store answers the keep")
    }
}

/// Runs `f` with the stream `name` of the test servers, through a client of the test's
/// own.
pub fn with_stream<T>(
    servers: &Servers,
    name: &str,
    f: impl AsyncFnOnce(async_nats::jetstream::Context, async_nats::jetstream::stream::Stream) -> T,
) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(&servers.nats_url).await.unwrap());
        let stream = js.get_stream(name).await.unwrap();
        f(js, stream).await
    })
}
