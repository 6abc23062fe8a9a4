//! A progress bar with an ETA on stderr, for long runs.
//!
//! Redraws at most every 200 ms, only when stderr is a terminal (a log or CI gets one line
//! at the start and one at the end).

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Progress of `total` units of work; thread-safe, cheap to `inc` from many threads.
#[derive(Debug)]
pub struct Progress {
    label: String,
    total: u64,
    done: AtomicU64,
    started: Instant,
    last_draw: Mutex<Instant>,
    tty: bool,
}

impl Progress {
    /// Starts a bar for `total` units labelled `label`.
    pub fn new(label: impl Into<String>, total: u64) -> Self {
        let label = label.into();
        let tty = std::io::stderr().is_terminal();
        if !tty {
            eprintln!("{label}: {total} to do");
        }
        let started = Instant::now();
        Self {
            label,
            total,
            done: AtomicU64::new(0),
            started,
            last_draw: Mutex::new(started),
            tty,
        }
    }

    /// Adds `n` finished units.
    pub fn inc(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        if !self.tty {
            return;
        }
        let Ok(mut last) = self.last_draw.try_lock() else {
            return;
        };
        if last.elapsed() < Duration::from_millis(200) && done < self.total {
            return;
        }
        *last = Instant::now();
        drop(last);
        self.draw(done);
    }

    /// Sets the finished units to `done` (for callers that count themselves).
    pub fn set(&self, done: u64) {
        let before = self.done.load(Ordering::Relaxed);
        if done > before {
            self.inc(done - before);
        }
    }

    /// Units finished so far.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// The line drawn for `done` units after `elapsed`.
    pub fn line(&self, done: u64, elapsed: Duration) -> String {
        const WIDTH: usize = 30;
        let total = self.total.max(1);
        let frac = (done as f64 / total as f64).clamp(0.0, 1.0);
        let filled = (frac * WIDTH as f64).round() as usize;
        let eta = if done == 0 {
            "?".to_owned()
        } else {
            let left = elapsed.as_secs_f64() * (total.saturating_sub(done)) as f64 / done as f64;
            format_secs(left)
        };
        format!(
            "{} [{}{}] {done}/{} {:.0}% elapsed {} eta {eta}",
            self.label,
            "#".repeat(filled),
            " ".repeat(WIDTH - filled),
            self.total,
            frac * 100.0,
            format_secs(elapsed.as_secs_f64()),
        )
    }

    fn draw(&self, done: u64) {
        let line = self.line(done, self.started.elapsed());
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{line}");
        let _ = err.flush();
    }

    /// Ends the bar, printing the total time.
    pub fn finish(&self) {
        let done = self.done();
        if self.tty {
            self.draw(done);
            eprintln!();
        } else {
            eprintln!("{}", self.line(done, self.started.elapsed()));
        }
    }
}

fn format_secs(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_shows_share_and_eta() {
        let p = Progress::new("users", 100);
        let line = p.line(25, Duration::from_secs(10));
        assert!(line.contains("25/100 25%"), "{line}");
        // 75 left at 2.5 per second.
        assert!(line.contains("eta 30s"), "{line}");
        assert!(p.line(0, Duration::ZERO).contains("eta ?"));
        assert!(
            p.line(100, Duration::from_secs(4000))
                .contains("elapsed 1h06m")
        );
    }

    #[test]
    fn counts_from_many_threads() {
        let p = Progress::new("x", 1000);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..250 {
                        p.inc(1);
                    }
                });
            }
        });
        assert_eq!(p.done(), 1000);
    }
}
