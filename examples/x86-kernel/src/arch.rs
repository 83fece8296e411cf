//! What kernel-common needs from x86_64 ([`kernel_common::Arch`]): the CPU
//! index at `gs:0`, `RFLAGS.IF`, `sti; hlt`, the calibrated TSC, COM1,
//! LAPIC IPIs on the kernel's system vectors, parking a dead AP, and
//! `isa-debug-exit` to leave QEMU.

use irqcore::{CpuId, CpuMask};
use kernel_common::{Arch, Ipi};

use crate::cpu::percpu;
use crate::hw::port::outl;
use crate::hw::{cpu, lapic};
use crate::irq::vectors;
use crate::{serial, smp, time};

/// This kernel's architecture.
pub struct X86;

impl Arch for X86 {
    fn cpu_id(&self) -> CpuId {
        percpu::current()
    }
    fn irqs_enabled(&self) -> bool {
        cpu::interrupts_enabled()
    }
    fn enable_irqs(&self) {
        cpu::sti()
    }
    fn disable_irqs(&self) {
        cpu::cli()
    }
    fn wait_for_interrupt(&self) {
        cpu::sti_hlt()
    }
    fn now_us(&self) -> u64 {
        time::now_us()
    }
    fn console_write(&self, s: &str) {
        serial::write(s)
    }
    fn send_ipi(&self, ipi: Ipi, cpus: &CpuMask) {
        let vector = match ipi {
            Ipi::CallFunction => vectors::CALL_FUNCTION,
            Ipi::Resend => vectors::RESEND,
        };
        let me = percpu::current();
        for c in cpus.iter() {
            if c == me {
                lapic::send_self_ipi(vector);
            } else {
                lapic::send_ipi(percpu::apic_id_of(c), vector);
            }
        }
    }
    fn cpu_dead(&self) -> ! {
        smp::die()
    }
    fn exit(&self, status: u32) -> ! {
        // SAFETY: port 0xf4 is the isa-debug-exit device the runner adds
        // (QEMU exits with `(value << 1) | 1`, and `status` is odd); on a
        // machine without it the write is ignored and we halt.
        unsafe { outl(0xF4, status >> 1) }
        cpu::halt_forever()
    }
}
