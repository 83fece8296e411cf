//! Leaving QEMU through `isa-debug-exit` (iobase 0xf4): QEMU exits with
//! status `(value << 1) | 1`. The runner (examples/runner/src/boot.rs) keeps
//! the same table.

use crate::hw::{cpu, port::outl};

/// Why the kernel stops.
#[derive(Clone, Copy, Debug)]
#[repr(u32)]
pub enum ExitCode {
    /// Every check passed (QEMU status 33).
    Pass = 0x10,
    /// A check failed (35).
    Fail = 0x11,
    /// Panic (37).
    Panic = 0x12,
    /// Unexpected CPU exception (39).
    Exception = 0x13,
    /// An AP did not come up or go down in time (41).
    CpuTimeout = 0x14,
}

/// Exits QEMU with `code`; halts if the exit device is absent.
pub fn exit(code: ExitCode) -> ! {
    // SAFETY: port 0xf4 is the isa-debug-exit device the runner adds; on a
    // machine without it the write is ignored and we halt.
    unsafe { outl(0xF4, code as u32) }
    cpu::halt_forever()
}
