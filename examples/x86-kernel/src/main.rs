//! irqcore reference kernel for x86_64 under QEMU (`cargo qemu`).
//!
//! Boots through PVH, discovers the interrupt hardware from the ACPI MADT,
//! and drives every interrupt through irqcore: the LAPIC timer on every CPU
//! (percpu_devid), cross-call and resend IPIs (percpu), the PIT through the
//! IOAPIC (edge), QEMU `edu` devices with level INTx (fasteoi) and MSI
//! (edge); brings every CPU up, moves affinities, takes every AP offline and
//! online again while the devices keep firing, does that again while
//! another CPU allocates and frees descriptors, then checks that every
//! interrupt it caused was handled exactly once on an allowed CPU.
//!
//! What is x86 specific lives here; the rest (console, checks, locks, heap,
//! irqcore's `Platform`, SMP rendezvous and jobs, watchdog, the shared
//! scenario steps) is `kernel-common`, over [`arch::X86`].
#![no_std]
#![no_main]

extern crate alloc;

mod acpi;
mod arch;
mod boot;
mod cpu;
mod devices;
mod exceptions;
mod hotplug;
mod hw;
mod irq;
mod scenario;
mod serial;
mod smp;
mod time;

use core::sync::atomic::{AtomicU32, AtomicU64};

pub(crate) use kernel_common::{check, kprintln};

/// Index of the AP being started, read by the trampoline.
#[unsafe(no_mangle)]
static AP_BOOT_INDEX: AtomicU32 = AtomicU32::new(0);
/// Stack top of the AP being started, read by the trampoline.
#[unsafe(no_mangle)]
static AP_BOOT_STACK: AtomicU64 = AtomicU64::new(0);

/// BSP entry from the boot code; `start_info` is the PVH `hvm_start_info`.
#[unsafe(no_mangle)]
extern "C" fn kmain(start_info: u32) -> ! {
    kernel_common::arch::install(&arch::X86);
    serial::init();
    cpu::percpu::install(irqcore::CpuId::BOOT);
    cpu::gdt::load_for(irqcore::CpuId::BOOT);
    cpu::idt::load_for(irqcore::CpuId::BOOT);
    scenario::run(start_info)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    kernel_common::exit::panic(info)
}
