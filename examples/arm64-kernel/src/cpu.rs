//! The calling CPU's system registers: interrupt mask (DAIF), identity,
//! the generic timer and counter, wait-for-interrupt. The only module with
//! `asm!` besides the boot code, PSCI and semihosting.

use core::arch::asm;
use core::sync::atomic::{AtomicBool, Ordering};

use irqcore::CpuId;

/// Maximum number of CPUs this kernel handles (the GICv2 limit, and the
/// runner's `--smp` range).
pub use kernel_common::MAX_CPUS;

/// The calling CPU's logical id, kept in `TPIDR_EL1` by the entry code.
#[inline]
pub fn current() -> CpuId {
    let v: u64;
    // SAFETY: reading TPIDR_EL1 has no side effect; the boot and secondary
    // entries set it to the logical CPU id before any Rust code runs.
    unsafe { asm!("mrs {}, tpidr_el1", out(reg) v, options(nomem, nostack, preserves_flags)) };
    // The entry code stores the index of a CpuId the boot CPU handed out.
    CpuId::new(v as u32).expect("TPIDR_EL1 holds a CPU id")
}

/// `MPIDR_EL1` affinity fields Aff3..Aff0 (what PSCI calls the target CPU).
pub fn mpidr_affinity() -> u64 {
    let v: u64;
    // SAFETY: MPIDR_EL1 is a read-only identification register.
    unsafe { asm!("mrs {}, mpidr_el1", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v & 0xff_00ff_ffff
}

/// `ID_AA64PFR0_EL1.GIC` (bits 27:24): non-zero when the GICv3 system
/// register CPU interface is implemented (ARM ARM D19.2.65). QEMU sets it
/// exactly when the machine has a GICv3.
pub fn has_gicv3_sysregs() -> bool {
    let v: u64;
    // SAFETY: ID_AA64PFR0_EL1 is a read-only identification register.
    unsafe {
        asm!("mrs {}, id_aa64pfr0_el1", out(reg) v, options(nomem, nostack, preserves_flags))
    };
    (v >> 24) & 0xf != 0
}

/// Whether IRQs are unmasked (`DAIF.I` clear) on this CPU.
#[inline]
pub fn irqs_enabled() -> bool {
    let v: u64;
    // SAFETY: reading DAIF has no side effect.
    unsafe { asm!("mrs {}, daif", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v & (1 << 7) == 0
}

/// Unmasks IRQs.
#[inline]
pub fn enable_irqs() {
    // SAFETY: every vector of the table at VBAR_EL1 is installed before any
    // CPU unmasks IRQs; the entry saves the full interrupted context.
    unsafe { asm!("msr daifclr, #2", options(nostack, preserves_flags)) };
}

/// Masks IRQs.
#[inline]
pub fn disable_irqs() {
    // SAFETY: masking IRQs only delays interrupt delivery on this CPU.
    // `DAIFSet` is self-synchronising for IRQ masking (ARM ARM D1.3.6).
    unsafe { asm!("msr daifset, #2", options(nostack, preserves_flags)) };
}

/// Waits for an interrupt with IRQs masked, then unmasks them so it is
/// taken: checking for work and sleeping cannot race with the interrupt
/// that brings the work (WFI wakes on a pending interrupt even when it is
/// masked, ARM ARM D1.6.2).
pub fn wait_for_interrupt_masked() {
    // SAFETY: WFI only suspends execution until an event.
    unsafe { asm!("wfi", options(nomem, nostack, preserves_flags)) };
    enable_irqs();
}

/// Parks this CPU for good with IRQs masked.
pub fn halt_forever() -> ! {
    disable_irqs();
    loop {
        // SAFETY: WFI only suspends execution.
        unsafe { asm!("wfi", options(nomem, nostack, preserves_flags)) };
    }
}

/// The generic timer's counter (`CNTPCT_EL0`).
pub fn counter() -> u64 {
    let v: u64;
    // SAFETY: the ISB keeps the read from being performed early (ARM ARM
    // D11.2.2); reading the counter has no side effect.
    unsafe {
        asm!("isb", "mrs {}, cntpct_el0", out(reg) v, options(nomem, nostack, preserves_flags))
    };
    v
}

/// The counter's frequency in Hz (`CNTFRQ_EL0`, set by firmware/QEMU).
pub fn counter_hz() -> u64 {
    let v: u64;
    // SAFETY: reading CNTFRQ_EL0 has no side effect.
    unsafe { asm!("mrs {}, cntfrq_el0", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Whether the kernel uses the EL1 *virtual* timer (`CNTV_*`, PPI 11 =
/// INTID 27) instead of the physical one: under Xen, whose guests' physical
/// timer accesses trap to the hypervisor while the virtual timer is theirs.
static VIRTUAL_TIMER: AtomicBool = AtomicBool::new(false);

/// Selects the virtual timer (before any CPU arms its timer).
pub fn use_virtual_timer() {
    VIRTUAL_TIMER.store(true, Ordering::Relaxed);
}

/// Whether the virtual timer is in use.
pub fn virtual_timer() -> bool {
    VIRTUAL_TIMER.load(Ordering::Relaxed)
}

/// Programs the EL1 physical timer (`CNTP_*`, PPI 14 = INTID 30) to fire
/// in `ticks` counter ticks, enabled and unmasked. Writing `TVAL` also
/// de-asserts a fired timer (its condition becomes false).
pub fn timer_arm(ticks: u64) {
    if virtual_timer() {
        // SAFETY: the EL1 virtual timer is this CPU's own. Writing CTL = 1
        // (ENABLE, IMASK clear) also clears the IMASK bit Xen sets when it
        // forwards a virtual timer interrupt.
        unsafe {
            asm!(
                "msr cntv_tval_el0, {t}",
                "msr cntv_ctl_el0, {c}",
                "isb",
                t = in(reg) ticks,
                c = in(reg) 1u64,
                options(nomem, nostack, preserves_flags)
            )
        };
        return;
    }
    // SAFETY: the EL1 physical timer is this CPU's own; EL1 may use it
    // (no EL2 restricts it on QEMU virt without virtualization=on).
    unsafe {
        asm!(
            "msr cntp_tval_el0, {t}",
            "msr cntp_ctl_el0, {c}",
            "isb",
            t = in(reg) ticks,
            c = in(reg) 1u64,
            options(nomem, nostack, preserves_flags)
        )
    };
}

/// Stops the EL1 physical timer (its interrupt output goes low).
pub fn timer_stop() {
    if virtual_timer() {
        // SAFETY: as in `timer_arm`.
        unsafe {
            asm!(
                "msr cntv_ctl_el0, xzr",
                "isb",
                options(nomem, nostack, preserves_flags)
            )
        };
        return;
    }
    // SAFETY: as in `timer_arm`.
    unsafe {
        asm!(
            "msr cntp_ctl_el0, xzr",
            "isb",
            options(nomem, nostack, preserves_flags)
        )
    };
}
