//! What kernel-common needs from AArch64 ([`kernel_common::Arch`]): the
//! CPU id in `TPIDR_EL1`, `DAIF.I`, WFI, the generic timer's counter, the
//! PL011 console, SGIs as the kernel's IPIs, PSCI `CPU_OFF` for a dead
//! CPU, and semihosting to leave QEMU.

use core::arch::asm;

use irqcore::{CpuId, CpuMask};
use kernel_common::{Arch, Ipi};

use crate::irq::{self, sgi};
use crate::{console, cpu, smp, time};

/// This kernel's architecture.
pub struct Arm64;

impl Arch for Arm64 {
    fn cpu_id(&self) -> CpuId {
        cpu::current()
    }
    fn irqs_enabled(&self) -> bool {
        cpu::irqs_enabled()
    }
    fn enable_irqs(&self) {
        cpu::enable_irqs()
    }
    fn disable_irqs(&self) {
        cpu::disable_irqs()
    }
    fn wait_for_interrupt(&self) {
        cpu::wait_for_interrupt_masked()
    }
    fn now_us(&self) -> u64 {
        time::now_us()
    }
    fn console_write(&self, s: &str) {
        console::write(s)
    }
    fn send_ipi(&self, ipi: Ipi, cpus: &CpuMask) {
        let n = match ipi {
            Ipi::CallFunction => sgi::CALL_FUNCTION,
            Ipi::Resend => sgi::RESEND,
        };
        irq::send_sgi(n, cpus)
    }
    fn cpu_dead(&self) -> ! {
        smp::power_off()
    }
    fn exit(&self, status: u32) -> ! {
        semihosting_exit(status)
    }
}

/// `SYS_EXIT` (Arm semihosting 2.0, 6.5.1).
const SYS_EXIT: u64 = 0x18;
/// `ADP_Stopped_ApplicationExit`: the "reason" QEMU maps to a normal exit.
const ADP_STOPPED_APPLICATION_EXIT: u64 = 0x20026;

/// Leaves QEMU through Arm semihosting (`-semihosting`): `SYS_EXIT` with
/// `ADP_Stopped_ApplicationExit` and `status`, which QEMU turns into its
/// own exit status; parks the CPU if semihosting is not enabled.
fn semihosting_exit(status: u32) -> ! {
    let block: [u64; 2] = [ADP_STOPPED_APPLICATION_EXIT, u64::from(status)];
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
    cpu::halt_forever()
}
