//! irqcore reference kernel for aarch64 under QEMU `virt` (`cargo qemu
//! --arch aarch64 [--gic 2|3] [--smp N]`).
//!
//! Boots at EL1, finds the GIC (v2 or v3) at the `virt` machine's fixed
//! addresses, and drives every interrupt through irqcore and arch-arm64:
//! the generic timer PPI on every CPU (percpu_devid), SGIs as IPIs
//! (cross-calls, stopper wake-ups, resend), the PL031 RTC alarm as an SPI
//! the kernel causes and counts (fasteoi); starts every CPU with PSCI
//! `CPU_ON` through irqcore's hotplug phases, moves the SPI's affinity,
//! takes every secondary CPU offline (irqcore's `cpu_down`: stop-machine,
//! migration, the GIC's dying step, then PSCI `CPU_OFF`) and online again,
//! does that again while another CPU allocates and frees descriptors,
//! then checks that every interrupt it caused was handled exactly once on an
//! allowed CPU, prints irqcore's interrupt table and a `RESULT:` line, and
//! exits through semihosting.
//!
//! When the device tree says it runs as a Xen guest (`cargo qemu --arch
//! aarch64 --xen`), it runs the Xen scenario instead ([`xen`]): event
//! channels through `xen-evtchn` on real Xen.
//!
//! What is AArch64 specific lives here; the rest (console, checks, locks,
//! heap, irqcore's `Platform`, SMP rendezvous and jobs, watchdog, the shared
//! scenario steps) is `kernel-common`, over [`arch::Arm64`].
#![no_std]
#![no_main]

extern crate alloc;

mod arch;
mod boot;
mod console;
mod cpu;
mod devices;
mod fdt;
mod irq;
mod msi;
mod pci;
mod psci;
mod scenario;
mod smp;
mod time;
mod xen;

use core::sync::atomic::AtomicU64;

use kernel_common::exit::{ExitCode, exit};
pub(crate) use kernel_common::{check, kprintln};

/// Stack tops of the secondary CPUs, read by `secondary_entry`.
#[unsafe(no_mangle)]
static SECONDARY_STACK_TOP: [AtomicU64; cpu::MAX_CPUS] =
    [const { AtomicU64::new(0) }; cpu::MAX_CPUS];

/// Boot CPU entry from `_start`: MMU on, vectors installed, IRQs masked.
#[unsafe(no_mangle)]
extern "C" fn kmain() -> ! {
    kernel_common::arch::install(&arch::Arm64);
    let dt = fdt::read();
    if dt.xen().is_some() {
        // A Xen domU has no PL011 at QEMU's address: its console is Xen's
        // vpl011 (the `vpl011` property of the domain node).
        console::use_uart_at(dt.sbsa_uart.unwrap_or(0x2200_0000) as usize);
        xen::run(dt)
    }
    scenario::run()
}

/// The IRQ vector (current EL, SP_EL1), IRQs masked.
#[unsafe(no_mangle)]
extern "C" fn irq_entry() {
    irq::entry();
}

/// Every other vector: report and exit.
#[unsafe(no_mangle)]
extern "C" fn exception_entry(kind: u64, frame: &boot::Frame) {
    let (esr, far): (u64, u64);
    // SAFETY: reading the syndrome registers has no side effect.
    unsafe {
        core::arch::asm!(
            "mrs {}, esr_el1",
            "mrs {}, far_el1",
            out(reg) esr,
            out(reg) far,
            options(nomem, nostack)
        );
    }
    kernel_common::console::print_unlocked(format_args!(
        "\nEXCEPTION: vector {kind} on cpu{} ESR {esr:#x} ELR {:#x} FAR {far:#x} LR {:#x}\nRESULT: FAIL exception\n",
        cpu::current().get(),
        frame.elr,
        frame.x[30]
    ));
    exit(ExitCode::Exception)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    kernel_common::exit::panic(info)
}
