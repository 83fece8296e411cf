//! CPU exceptions: none is expected, so each one is fatal and reported.

use kernel_common::console::print_unlocked;
use kernel_common::exit::{ExitCode, exit};

use crate::cpu::idt::Frame;

const NAMES: [&str; 32] = [
    "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "CSO", "#TS", "#NP", "#SS",
    "#GP", "#PF", "?15", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "?22", "?23", "?24", "?25",
    "?26", "?27", "#HV", "#VC", "#SX", "?31",
];

/// Reports the exception and stops QEMU with the exception exit code.
pub fn handle(frame: &Frame) -> ! {
    let cr2: u64;
    // SAFETY: reading CR2 has no side effect.
    unsafe {
        core::arch::asm!("mov {}, cr2", out(reg) cr2, options(nomem, nostack, preserves_flags))
    }
    print_unlocked(format_args!(
        "\nFATAL: exception {} (vector {}) error {:#x} at rip={:#x} rsp={:#x} cr2={:#x}\nRESULT: FAIL exception {}\n",
        NAMES[frame.vector as usize % 32],
        frame.vector,
        frame.error_code,
        frame.rip,
        frame.rsp,
        cr2,
        NAMES[frame.vector as usize % 32],
    ));
    exit(ExitCode::Exception)
}
