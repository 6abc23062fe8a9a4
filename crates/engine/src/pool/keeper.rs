//! Writes page pools to a shared store on a thread of its own, so that a page's
//! response does not wait for the pool it left to reach the store.
//!
//! Keeps are done in the order they were queued. A request that takes or reads a
//! person's pool first waits for this process's queued keeps of that person
//! ([`Keeper::settle`]), so the next page through the same process always finds what
//! the last one left. A full queue gives the keep back to the caller, who does it on its
//! own thread: under load, pages wait for their keeps again instead of queueing without
//! end.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use steerfeed_core::{IdMap, UserId};

/// Something to do for one person.
pub(super) trait Job: Send + 'static {
    fn user(&self) -> &UserId;
}

/// How many keeps of each person are queued, and the signal that one was done.
#[derive(Default)]
struct Pending {
    users: Mutex<IdMap<UserId, usize>>,
    done: Condvar,
}

impl Pending {
    fn lock(&self) -> MutexGuard<'_, IdMap<UserId, usize>> {
        self.users.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn add(&self, user: &UserId) {
        *self.lock().entry(user.clone()).or_default() += 1;
    }

    fn finish(&self, user: &UserId) {
        let mut users = self.lock();
        if let Some(n) = users.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                users.remove(user);
            }
        }
        drop(users);
        self.done.notify_all();
    }

    fn wait(&self, user: &UserId, limit: Duration) -> bool {
        let users = self.lock();
        let (users, _) = self
            .done
            .wait_timeout_while(users, limit, |u| u.contains_key(user))
            .unwrap_or_else(PoisonError::into_inner);
        !users.contains_key(user)
    }
}

/// Marks a job done however its work ends, a panic included.
struct Finish<'a> {
    pending: &'a Pending,
    user: UserId,
}

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        self.pending.finish(&self.user);
    }
}

/// The queue and its thread.
pub(super) struct Keeper<J: Job> {
    queue: Option<SyncSender<J>>,
    pending: Arc<Pending>,
    thread: Option<JoinHandle<()>>,
}

impl<J: Job> Keeper<J> {
    /// Starts the thread, which does `work` for each queued job; at most `capacity`
    /// wait. `None` when the thread cannot start (the caller then does its jobs itself).
    pub fn start(capacity: usize, work: impl Fn(J) + Send + 'static) -> Option<Self> {
        let (queue, jobs) = sync_channel::<J>(capacity);
        let pending = Arc::new(Pending::default());
        let on_thread = pending.clone();
        let spawned = std::thread::Builder::new()
            .name("steerfeed-pool-keep".into())
            .spawn(move || run(&jobs, &on_thread, work));
        match spawned {
            Ok(thread) => Some(Self {
                queue: Some(queue),
                pending,
                thread: Some(thread),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the page pool keeper; pools are kept on the request's thread");
                None
            }
        }
    }

    /// Queues `job`, or gives it back when the queue is full.
    pub fn send(&self, job: J) -> Result<(), J> {
        let Some(queue) = &self.queue else {
            return Err(job);
        };
        // Counted before it is queued: the thread may finish it at once.
        self.pending.add(job.user());
        match queue.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => {
                self.pending.finish(job.user());
                Err(job)
            }
        }
    }

    /// Waits, at most `limit`, until no job of `user` is queued or running; true when
    /// none is.
    pub fn settle(&self, user: &UserId, limit: Duration) -> bool {
        self.pending.wait(user, limit)
    }
}

fn run<J: Job>(jobs: &Receiver<J>, pending: &Pending, work: impl Fn(J)) {
    for job in jobs {
        let _finish = Finish {
            pending,
            user: job.user().clone(),
        };
        work(job);
    }
}

impl<J: Job> Drop for Keeper<J> {
    /// Closes the queue and waits for the jobs in it.
    fn drop(&mut self) {
        self.queue.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::mpsc;

    use super::*;

    /// A job: its person and a number.
    struct Note(UserId, u32);

    impl Job for Note {
        fn user(&self) -> &UserId {
            &self.0
        }
    }

    fn u(s: &str) -> UserId {
        UserId::new(s).unwrap()
    }

    /// A keeper whose work waits for a go before each job and then records it.
    fn gated(capacity: usize) -> (Keeper<Note>, mpsc::Sender<()>, Arc<Mutex<Vec<u32>>>) {
        let (go, gate) = mpsc::channel::<()>();
        let gate = Mutex::new(gate);
        let done = Arc::new(Mutex::new(Vec::new()));
        let record = done.clone();
        let keeper = Keeper::start(capacity, move |Note(_, n)| {
            gate.lock().unwrap().recv().unwrap();
            record.lock().unwrap().push(n);
        })
        .unwrap();
        (keeper, go, done)
    }

    #[test]
    fn jobs_are_done_in_the_order_they_were_queued() {
        let (keeper, go, done) = gated(100);
        for n in 0..50 {
            let who = if n % 2 == 0 { "a" } else { "b" };
            assert!(keeper.send(Note(u(who), n)).is_ok());
        }
        for _ in 0..50 {
            go.send(()).unwrap();
        }
        assert!(keeper.settle(&u("a"), Duration::from_secs(60)));
        assert!(keeper.settle(&u("b"), Duration::from_secs(60)));
        assert_eq!(*done.lock().unwrap(), (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn settling_waits_for_the_persons_jobs_only() {
        let (keeper, go, done) = gated(10);
        keeper.send(Note(u("a"), 1)).ok().unwrap();
        // Held at the gate: a's job is not done, b has none.
        assert!(!keeper.settle(&u("a"), Duration::from_millis(50)));
        assert!(keeper.settle(&u("b"), Duration::ZERO));
        assert!(done.lock().unwrap().is_empty());
        go.send(()).unwrap();
        assert!(keeper.settle(&u("a"), Duration::from_secs(60)));
        assert_eq!(*done.lock().unwrap(), vec![1]);
    }

    #[test]
    fn a_full_queue_gives_the_job_back_and_forgets_it() {
        let (keeper, go, done) = gated(2);
        // One taken by the thread (held at the gate), two queued: the queue is full.
        keeper.send(Note(u("a"), 0)).ok().unwrap();
        let mut queued = 1;
        let back = loop {
            match keeper.send(Note(u("b"), queued)) {
                Ok(()) => queued += 1,
                Err(back) => break back,
            }
            assert!(queued <= 3, "a queue of 2 took {queued} jobs");
        };
        assert_eq!(back.1, queued);
        for _ in 0..queued {
            go.send(()).unwrap();
        }
        assert!(keeper.settle(&u("b"), Duration::from_secs(60)));
        // The job given back is not waited for, and was never done.
        assert_eq!(*done.lock().unwrap(), (0..queued).collect::<Vec<_>>());
    }

    #[test]
    fn dropping_the_keeper_does_the_queued_jobs_first() {
        let done = Arc::new(Mutex::new(Vec::new()));
        let record = done.clone();
        let keeper = Keeper::start(10, move |Note(_, n)| {
            std::thread::sleep(Duration::from_millis(5));
            record.lock().unwrap().push(n);
        })
        .unwrap();
        for n in 0..5 {
            keeper.send(Note(u("a"), n)).ok().unwrap();
        }
        drop(keeper);
        assert_eq!(*done.lock().unwrap(), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn a_job_that_panics_is_still_finished() {
        let keeper = Keeper::start(10, |Note(_, n)| assert!(n != 1, "job {n} fails")).unwrap();
        keeper.send(Note(u("a"), 1)).ok().unwrap();
        assert!(keeper.settle(&u("a"), Duration::from_secs(60)));
    }
}
