//! In-kernel checks: each passes or records a failure; the run ends with
//! `RESULT: PASS <n> checks` or `RESULT: FAIL <first failure>`.

use alloc::string::String;
use core::fmt::{self, Write};

use crate::sync::IrqLock;

struct Tally {
    passed: u32,
    failed: u32,
    first_failure: Option<String>,
}

static TALLY: IrqLock<Tally> = IrqLock::new(Tally {
    passed: 0,
    failed: 0,
    first_failure: None,
});

/// Records one check.
pub fn check(ok: bool, what: fmt::Arguments<'_>) {
    let mut t = TALLY.lock();
    if ok {
        t.passed += 1;
    } else {
        t.failed += 1;
        let mut s = String::new();
        let _ = s.write_fmt(what);
        crate::console::print(format_args!("CHECK FAILED: {s}\n"));
        if t.first_failure.is_none() {
            t.first_failure = Some(s);
        }
    }
}

/// `check!(cond, "format", args...)`.
#[macro_export]
macro_rules! check {
    ($cond:expr, $($t:tt)*) => { $crate::checks::check($cond, format_args!($($t)*)) };
}

/// The verdict: `Ok(passed)` or `Err((failed, first failure))`.
pub fn verdict() -> Result<u32, (u32, String)> {
    let t = TALLY.lock();
    match &t.first_failure {
        None => Ok(t.passed),
        Some(f) => Err((t.failed, f.clone())),
    }
}
