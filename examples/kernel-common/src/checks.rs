//! In-kernel checks: each passes or records a failure; the run ends with
//! `RESULT: PASS <n> checks` or `RESULT: FAIL <first failure>`.
//!
//! [`CHECKS`] is this run's tally; `check!(cond, "format", args...)` records
//! one check in it.

use alloc::string::String;
use core::fmt::{self, Write};

use crate::sync::{ArchIrq, IrqLock, LocalIrq};

/// This run's checks; failures go to the console.
pub static CHECKS: Checks = Checks::new(crate::console::print);

/// `check!(cond, "format", args...)`: records one check in [`CHECKS`].
#[macro_export]
macro_rules! check {
    ($cond:expr, $($t:tt)*) => { $crate::checks::CHECKS.check($cond, format_args!($($t)*)) };
}

struct Tally {
    passed: u32,
    failed: u32,
    first_failure: Option<String>,
}

/// The tally of one run's checks; failures are printed through `print`.
pub struct Checks<I = ArchIrq> {
    tally: IrqLock<Tally, I>,
    print: fn(fmt::Arguments<'_>),
}

impl<I: LocalIrq> Checks<I> {
    /// No checks yet; failures are reported with `print` (the console).
    pub const fn new(print: fn(fmt::Arguments<'_>)) -> Self {
        Self {
            tally: IrqLock::new(Tally {
                passed: 0,
                failed: 0,
                first_failure: None,
            }),
            print,
        }
    }

    /// Records one check.
    pub fn check(&self, ok: bool, what: fmt::Arguments<'_>) {
        let mut t = self.tally.lock();
        if ok {
            t.passed += 1;
        } else {
            t.failed += 1;
            let mut s = String::new();
            let _ = s.write_fmt(what);
            (self.print)(format_args!("CHECK FAILED: {s}\n"));
            if t.first_failure.is_none() {
                t.first_failure = Some(s);
            }
        }
    }

    /// The verdict: `Ok(passed)` or `Err((failed, first failure))`.
    pub fn verdict(&self) -> Result<u32, (u32, String)> {
        let t = self.tally.lock();
        match &t.first_failure {
            None => Ok(t.passed),
            Some(f) => Err((t.failed, f.clone())),
        }
    }

    /// Prints the `RESULT:` line; returns whether the run passed.
    pub fn print_result(&self) -> bool {
        match self.verdict() {
            Ok(passed) => {
                (self.print)(format_args!("RESULT: PASS {passed} checks\n"));
                true
            }
            Err((failed, first)) => {
                (self.print)(format_args!("RESULT: FAIL {first} ({failed} failed)\n"));
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::sync::Mutex;
    use std::vec::Vec;

    struct NoIrq;
    impl LocalIrq for NoIrq {
        fn save() -> bool {
            false
        }
        fn restore(_: bool) {}
    }

    static OUT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    fn print(a: fmt::Arguments<'_>) {
        OUT.lock().unwrap().push(alloc::format!("{a}"));
    }

    #[test]
    fn first_failure_wins_and_the_verdict_counts() {
        let c: Checks<NoIrq> = Checks::new(print);
        c.check(true, format_args!("fine"));
        assert_eq!(c.verdict(), Ok(1));
        c.check(false, format_args!("first {}", 1));
        c.check(false, format_args!("second"));
        assert_eq!(c.verdict(), Err((2, "first 1".into())));
        assert!(!c.print_result());
        let out = OUT.lock().unwrap();
        assert!(out.contains(&"CHECK FAILED: first 1\n".into()));
        assert!(out.contains(&"RESULT: FAIL first 1 (2 failed)\n".into()));
    }
}
