//! Failing tests must fail, not hang: a deadline for work that could
//! deadlock, a barrier that gives up, and a guard that releases the other
//! threads of a test when one of them panics.
//!
//! Use from a test file with `mod watchdog;`.
#![allow(dead_code)]

use std::sync::mpsc;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a step that should take microseconds may take before the test
/// calls it a deadlock. Generous: the machine may be shared with builds.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// The most a whole multi-threaded test body may take (see [`bounded`]).
pub const TEST_LIMIT: Duration = Duration::from_secs(30);

/// Runs a whole test body under [`TEST_LIMIT`]. Use it when the body's own
/// clean-up could block after a failure: a registration dropped while
/// unwinding waits for a grace period that a stuck simulated CPU never
/// grants.
#[track_caller]
pub fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    within(TEST_LIMIT, what, f)
}

/// Runs `f` on a new thread and returns its result; panics (failing the
/// test) if it has not finished within `limit`, naming `what`. The stuck
/// thread is left behind: the test has failed and its process ends soon.
/// A panic in `f` is re-raised here.
#[track_caller]
pub fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    let t = std::thread::Builder::new()
        .name(format!("watchdog: {what}"))
        .spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let _ = tx.send(r);
        })
        .expect("spawn");
    match rx.recv_timeout(limit) {
        Ok(Ok(v)) => {
            let _ = t.join();
            v
        }
        Ok(Err(p)) => {
            let _ = t.join();
            std::panic::resume_unwind(p)
        }
        Err(_) => panic!("deadlock: {what} did not finish within {limit:?}"),
    }
}

/// Calls `f` when dropped (also while unwinding from a panic).
pub struct OnDrop<F: FnMut()>(pub F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

/// A barrier for `n` threads whose `wait` panics instead of blocking forever:
/// after `timeout`, or at once when the barrier is broken (by
/// [`TimedBarrier::break_it`] or by a [`TimedBarrier::guard`] dropped while
/// its thread panics).
pub struct TimedBarrier {
    n: usize,
    timeout: Duration,
    state: Mutex<BarrierState>,
    cv: Condvar,
}

#[derive(Default)]
struct BarrierState {
    arrived: usize,
    generation: u64,
    broken: bool,
}

impl TimedBarrier {
    /// A barrier for `n` threads, each wait giving up after `timeout`.
    pub fn new(n: usize, timeout: Duration) -> Self {
        Self {
            n,
            timeout,
            state: Mutex::new(BarrierState::default()),
            cv: Condvar::new(),
        }
    }

    /// Waits for the other threads.
    #[track_caller]
    pub fn wait(&self) {
        let deadline = Instant::now() + self.timeout;
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(
            !s.broken,
            "barrier broken: another thread of the test failed"
        );
        s.arrived += 1;
        if s.arrived == self.n {
            s.arrived = 0;
            s.generation += 1;
            self.cv.notify_all();
            return;
        }
        let generation = s.generation;
        while s.generation == generation && !s.broken {
            let now = Instant::now();
            if now >= deadline {
                s.broken = true;
                self.cv.notify_all();
                drop(s);
                panic!(
                    "barrier timed out after {:?}: another thread of the test is stuck",
                    self.timeout
                );
            }
            s = self
                .cv
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        assert!(
            s.generation != generation,
            "barrier broken: another thread of the test failed"
        );
    }

    /// Releases every waiter (they panic) and makes later waits panic.
    pub fn break_it(&self) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.broken = true;
        self.cv.notify_all();
    }

    /// A guard that breaks the barrier if its thread unwinds from a panic
    /// while holding it.
    pub fn guard(&self) -> BarrierGuard<'_> {
        BarrierGuard(self)
    }
}

/// See [`TimedBarrier::guard`].
pub struct BarrierGuard<'a>(&'a TimedBarrier);

impl Drop for BarrierGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.break_it();
        }
    }
}
