//! The local APIC, through `arch-x86`'s driver, in x2APIC mode where the
//! CPU has it (CPUID.01H:ECX\[21\]; QEMU 7.2's TCG does not offer it, so
//! the boots here run xAPIC) and xAPIC otherwise: one
//! [`Lapic`] over the MADT's register page, shared by this module's
//! functions and by the timer and IPI chips (`arch_x86::LapicTimerChip`,
//! `arch_x86::LapicIpiChip`). The page and the MSRs address the *executing*
//! CPU's APIC, so one driver serves every CPU. This module keeps only what
//! the kernel adds: the interrupt-safe ICR sequence and the TSC calibration.

use arch_x86::hw::{MmioRegion, Msrs};
use arch_x86::lapic::{IpiDest, IpiKind, Lapic, LvtEntry, LvtSource, TimerDivide, TimerMode};
use arch_x86::{ApicId, ApicMode, Vector};
use core::ptr::NonNull;

use super::cpu;

/// The kernel's LAPIC driver type: references to the one register page and
/// the MSR accessor, so clones are free.
pub type KernelLapic = Lapic<&'static MmioRegion, &'static Msrs>;

static REGION: spin::Once<MmioRegion> = spin::Once::new();
/// The mode every CPU uses, chosen once by the BSP in [`set_base`].
static MODE: spin::Once<ApicMode> = spin::Once::new();

fn mode() -> ApicMode {
    MODE.get().copied().unwrap_or(ApicMode::XApic)
}
// SAFETY: the kernel runs at CPL 0 and hands `MSRS` only to arch-x86's
// LAPIC driver, which accesses IA32_APIC_BASE and the APIC MSRs only
// (Intel SDM vol. 4, table 2-2).
static MSRS: Msrs = unsafe { Msrs::new() };

/// The xAPIC register page is 4 KiB (Intel SDM vol. 3, 11.4.1).
const PAGE: usize = 0x1000;

/// Records the LAPIC MMIO base (from the MADT). Later calls are ignored:
/// every CPU's APIC sits at the same address.
pub fn set_base(base: usize) {
    MODE.call_once(|| {
        if cpu::has_x2apic() {
            ApicMode::X2Apic
        } else {
            ApicMode::XApic
        }
    });
    REGION.call_once(|| {
        let base = NonNull::new(base as *mut u8).unwrap_or(NonNull::dangling());
        // SAFETY: `base` is the MADT's LAPIC address, 4 KiB aligned and
        // identity-mapped uncached by the boot page tables (boot.rs maps the
        // first 4 GiB); nothing else treats it as memory.
        unsafe { MmioRegion::new(base, PAGE) }
    });
}

/// The shared driver. Before [`set_base`] it addresses nothing (reads give
/// all-ones, writes are dropped: `MmioRegion` of length 0).
pub fn lapic() -> KernelLapic {
    static EMPTY: spin::Once<MmioRegion> = spin::Once::new();
    let region = REGION.get().unwrap_or_else(|| {
        // SAFETY: a zero-length region refuses every access, so the
        // address is never dereferenced.
        EMPTY.call_once(|| unsafe { MmioRegion::new(NonNull::dangling(), 0) })
    });
    Lapic::attach(mode(), region, &MSRS)
}

/// Enables this CPU's LAPIC: global enable in IA32_APIC_BASE, software
/// enable with `spurious_vector` in the SVR, TPR 0, LINT0 (ExtINT from the
/// 8259 in virtual-wire mode) masked, timer masked.
pub fn init_this_cpu(spurious_vector: Vector) {
    let Some(region) = REGION.get() else { return };
    // Cannot fail: the firmware and INIT leave xAPIC (or x2APIC, kept), and
    // both go to the chosen mode (SDM vol. 3, 11.12.5).
    let Ok(l) = Lapic::init(mode(), region, &MSRS) else {
        return;
    };
    l.enable(spurious_vector);
    l.set_lvt(LvtSource::Lint0, LvtEntry::MASKED);
    l.set_lvt(LvtSource::Timer, LvtEntry::MASKED);
}

/// Software-disables this CPU's LAPIC (an offline CPU accepts nothing but
/// INIT/SIPI/NMI).
pub fn disable_this_cpu() {
    let l = lapic();
    l.stop_timer();
    l.disable();
}

/// This CPU's APIC id.
pub fn id() -> u32 {
    lapic().id().get()
}

/// Signals end of interrupt for the highest in-service vector.
pub fn eoi() {
    lapic().eoi();
}

/// Sends an IPI with interrupts off: the xAPIC ICR is two registers, and a
/// handler on this CPU sending its own IPI between them would redirect ours.
fn send(kind: IpiKind, dest: IpiDest) {
    let was = cpu::irq_save();
    // Errors: an id above 0xFF in xAPIC mode, impossible for MADT ids the
    // kernel runs xAPIC with; or a stuck ICR, which the bounded wait
    // reports instead of hanging. Nothing better to do here.
    let _ = lapic().send_ipi(kind, dest);
    cpu::irq_restore(was);
}

/// Whether `vector` is pending (requested, not yet in service) in this
/// CPU's IRR.
pub fn is_pending(vector: Vector) -> bool {
    lapic().is_pending(vector)
}

/// Sends a fixed IPI with `vector` to the CPU with APIC id `dest_apic`.
pub fn send_ipi(dest_apic: u32, vector: Vector) {
    send(IpiKind::Fixed(vector), IpiDest::Apic(ApicId(dest_apic)));
}

/// Sends a fixed IPI with `vector` to this CPU (self shorthand).
pub fn send_self_ipi(vector: Vector) {
    send(IpiKind::Fixed(vector), IpiDest::SelfOnly);
}

/// INIT (Intel SDM vol. 3, 9.4.4.1).
pub fn send_init(dest_apic: u32) {
    send(IpiKind::Init, IpiDest::Apic(ApicId(dest_apic)));
}

/// Start-up IPI: the AP starts at `page << 12` in real mode.
pub fn send_sipi(dest_apic: u32, page: u8) {
    send(IpiKind::Startup(page), IpiDest::Apic(ApicId(dest_apic)));
}

/// Starts the periodic timer, **masked** (the timer irq's
/// `enable_percpu_irq` unmasks it): QEMU's LAPIC timer counts at 1 GHz with
/// divide-by-1, so `period_ns` is in counts.
pub fn timer_start_periodic(vector: Vector, period_ns: u32) {
    let l = lapic();
    l.set_timer_divide(TimerDivide::By1);
    // Cannot fail: only the TSC-deadline mode is refused here.
    let _ = l.start_timer(TimerMode::Periodic, vector, period_ns);
}

/// Stops the timer (initial count 0) and masks it.
pub fn timer_stop() {
    lapic().stop_timer();
}

/// Busy-waits `ns` nanoseconds on the masked one-shot timer, returning the
/// TSC ticks that elapsed (used once, to calibrate the TSC).
pub fn measure_tsc_over(ns: u32) -> u64 {
    let l = lapic();
    l.set_timer_divide(TimerDivide::By1);
    let t0 = cpu::rdtsc();
    // Masked: the count runs, nothing is delivered (vector: any legal one).
    if l.start_timer(TimerMode::OneShot, Vector::LAST, ns).is_err() {
        return 0;
    }
    while l.timer_current_count() != 0 {
        core::hint::spin_loop();
    }
    let t1 = cpu::rdtsc();
    l.stop_timer();
    t1 - t0
}
