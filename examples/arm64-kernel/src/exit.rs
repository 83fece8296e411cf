//! Leaving QEMU through Arm semihosting (`-semihosting`): `SYS_EXIT` with
//! `ADP_Stopped_ApplicationExit` and an exit code, which QEMU turns into its
//! own exit status. The runner (examples/runner/src/aarch64.rs) keeps the
//! same table.

use core::arch::asm;

/// Why the kernel stops (the QEMU exit status).
#[derive(Clone, Copy, Debug)]
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

/// `SYS_EXIT` (Arm semihosting 2.0, 6.5.1).
const SYS_EXIT: u64 = 0x18;
/// `ADP_Stopped_ApplicationExit`: the "reason" QEMU maps to a normal exit.
const ADP_STOPPED_APPLICATION_EXIT: u64 = 0x20026;

/// Exits QEMU with `code`; parks the CPU if semihosting is not enabled.
pub fn exit(code: ExitCode) -> ! {
    let block: [u64; 2] = [ADP_STOPPED_APPLICATION_EXIT, code as u64];
    // SAFETY: `hlt #0xf000` is the AArch64 semihosting trap; with
    // `-semihosting` QEMU reads the two-word parameter block at x1 and
    // exits. Without it the instruction is an undefined-instruction
    // exception, which our vector reports and parks.
    unsafe {
        asm!(
            "hlt #0xf000",
            in("x0") SYS_EXIT,
            in("x1") block.as_ptr(),
            options(nostack)
        )
    };
    crate::cpu::halt_forever()
}
