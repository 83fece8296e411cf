//! In-kernel checks (`kernel_common::checks`): each passes or records a
//! failure; the run ends with `RESULT: PASS <n> checks` or
//! `RESULT: FAIL <first failure>`.

use kernel_common::checks::Checks;

use crate::sync::Irq;

/// This run's checks; failures go to the console.
pub static CHECKS: Checks<Irq> = Checks::new(crate::console::print);

/// `check!(cond, "format", args...)`.
#[macro_export]
macro_rules! check {
    ($cond:expr, $($t:tt)*) => { $crate::checks::CHECKS.check($cond, format_args!($($t)*)) };
}
