//! A watchdog for scenario phases that could hang (CPUs deadlocked against
//! each other): armed with a deadline around such a phase and checked on
//! every CPU's timer tick ([`tick`]), it ends the run with `RESULT: FAIL`
//! once the deadline has passed, instead of leaving QEMU to the runner's
//! timeout. Any CPU whose interrupts are still on notices, so a deadlock in
//! which some CPUs spin with interrupts off is caught too.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::arch::{current_cpu, now_us};
use crate::console::print_unlocked;
use crate::exit::{ExitCode, exit};
use crate::sync::IrqLock;

/// Deadline in [`now_us`] microseconds; 0: disarmed.
static DEADLINE_US: AtomicU64 = AtomicU64::new(0);
/// What is guarded, for the failure line.
static WHAT: IrqLock<&str> = IrqLock::new("");
/// Set by the first CPU that fires (the others stay quiet).
static FIRED: AtomicBool = AtomicBool::new(false);

/// Arms the watchdog: `what` must finish within `timeout_us`.
pub fn arm(timeout_us: u64, what: &'static str) {
    *WHAT.lock() = what;
    DEADLINE_US.store(now_us() + timeout_us, Ordering::Release);
}

/// Disarms the watchdog.
pub fn disarm() {
    DEADLINE_US.store(0, Ordering::Release);
}

/// Called on every timer tick, on every CPU (interrupt context).
pub fn tick() {
    let deadline = DEADLINE_US.load(Ordering::Acquire);
    if deadline == 0 || now_us() < deadline || FIRED.swap(true, Ordering::AcqRel) {
        return;
    }
    // `WHAT` is only held with interrupts off, so not by code this tick
    // interrupted; the console lock may be: print without it.
    let what = *WHAT.lock();
    print_unlocked(format_args!(
        "\nWATCHDOG (cpu{}): {what} did not finish in time\nRESULT: FAIL watchdog: {what}\n",
        current_cpu().get()
    ));
    exit(ExitCode::Fail)
}
