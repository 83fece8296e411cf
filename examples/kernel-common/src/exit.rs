//! Ending the run: the exit codes QEMU reports (the runner,
//! examples/runner/src/boot.rs and aarch64.rs, keeps the same table), the
//! `RESULT:` line, and [`fail`] for set-up errors.

use crate::arch::arch;
use crate::checks::CHECKS;
use crate::kprintln;

/// Why the kernel stops: the QEMU exit status (x86's `isa-debug-exit`
/// turns a write of `v` into `(v << 1) | 1`, so these are all odd).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ExitCode {
    /// Every check passed.
    Pass = 33,
    /// A check failed.
    Fail = 35,
    /// Panic.
    Panic = 37,
    /// Unexpected CPU exception.
    Exception = 39,
    /// A CPU did not come up or go down in time.
    CpuTimeout = 41,
}

/// Exits QEMU with `code`.
pub fn exit(code: ExitCode) -> ! {
    arch().exit(code as u32)
}

/// Prints `RESULT: FAIL <what>` and exits (a set-up step failed).
pub fn fail(what: &str) -> ! {
    kprintln!("RESULT: FAIL {what}");
    exit(ExitCode::Fail)
}

/// Prints `RESULT: FAIL cpu<n> <what>` and exits with the CPU timeout code.
pub fn cpu_timeout(cpu: irqcore::CpuId, what: &str) -> ! {
    kprintln!("RESULT: FAIL cpu{} {what}", cpu.get());
    exit(ExitCode::CpuTimeout)
}

/// Prints the `RESULT:` line of this run's checks and exits with the
/// matching status.
pub fn finish() -> ! {
    if CHECKS.print_result() {
        exit(ExitCode::Pass)
    } else {
        exit(ExitCode::Fail)
    }
}

/// The panic handler's work: report on the unlocked console and exit.
pub fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    crate::console::print_unlocked(format_args!(
        "\nPANIC on cpu{}: {info}\nRESULT: FAIL panic\n",
        arch().cpu_id().get()
    ));
    exit(ExitCode::Panic)
}
