//! Local APIC in xAPIC (MMIO) mode: enable, EOI, IPIs (fixed, INIT, SIPI),
//! the timer. Register offsets: Intel SDM vol. 3, table 11-1.

use core::sync::atomic::{AtomicUsize, Ordering};

use super::cpu;

const REG_ID: usize = 0x20;
const REG_TPR: usize = 0x80;
const REG_EOI: usize = 0xB0;
const REG_SVR: usize = 0xF0;
const REG_ICR_LO: usize = 0x300;
const REG_ICR_HI: usize = 0x310;
const REG_LVT_TIMER: usize = 0x320;
const REG_LVT_LINT0: usize = 0x350;
const REG_TIMER_INIT: usize = 0x380;
const REG_TIMER_CUR: usize = 0x390;
const REG_TIMER_DIV: usize = 0x3E0;

const LVT_MASKED: u32 = 1 << 16;
const LVT_PERIODIC: u32 = 1 << 17;
const ICR_PENDING: u32 = 1 << 12;
const ICR_SELF: u32 = 1 << 18;

/// IA32_APIC_BASE.
const MSR_APIC_BASE: u32 = 0x1B;

static BASE: AtomicUsize = AtomicUsize::new(0xFEE0_0000);

/// Records the LAPIC MMIO base (from the MADT).
pub fn set_base(base: usize) {
    BASE.store(base, Ordering::Relaxed);
}

fn read(reg: usize) -> u32 {
    // SAFETY: BASE is the LAPIC page (MADT / IA32_APIC_BASE), identity-mapped
    // uncached by the boot page tables; registers are 32-bit, 16-aligned.
    unsafe { core::ptr::read_volatile((BASE.load(Ordering::Relaxed) + reg) as *const u32) }
}

fn write(reg: usize, v: u32) {
    // SAFETY: as in `read`.
    unsafe { core::ptr::write_volatile((BASE.load(Ordering::Relaxed) + reg) as *mut u32, v) }
}

/// Enables this CPU's LAPIC: global enable in IA32_APIC_BASE, software
/// enable with `spurious_vector` in the SVR, TPR 0, LINT0 (ExtINT from the
/// 8259 in virtual-wire mode) masked, timer masked.
pub fn init_this_cpu(spurious_vector: u8) {
    // SAFETY: IA32_APIC_BASE exists on every CPU with an APIC (SDM vol. 3, 11.4.4).
    unsafe {
        let v = cpu::rdmsr(MSR_APIC_BASE);
        cpu::wrmsr(MSR_APIC_BASE, v | (1 << 11));
    }
    write(REG_SVR, 0x100 | u32::from(spurious_vector));
    write(REG_TPR, 0);
    write(REG_LVT_LINT0, LVT_MASKED);
    write(REG_LVT_TIMER, LVT_MASKED);
}

/// Software-disables this CPU's LAPIC (an offline CPU accepts nothing but
/// INIT/SIPI/NMI).
pub fn disable_this_cpu() {
    write(REG_LVT_TIMER, LVT_MASKED);
    write(REG_TIMER_INIT, 0);
    write(REG_SVR, read(REG_SVR) & !0x100);
}

/// This CPU's APIC id.
pub fn id() -> u32 {
    read(REG_ID) >> 24
}

/// Signals end of interrupt for the highest in-service vector.
pub fn eoi() {
    write(REG_EOI, 0);
}

fn icr_send(dest_apic: u32, lo: u32) {
    // The ICR is two registers: keep a handler on this CPU from interleaving.
    let was = cpu::irq_save();
    while read(REG_ICR_LO) & ICR_PENDING != 0 {
        core::hint::spin_loop();
    }
    write(REG_ICR_HI, dest_apic << 24);
    write(REG_ICR_LO, lo);
    while read(REG_ICR_LO) & ICR_PENDING != 0 {
        core::hint::spin_loop();
    }
    cpu::irq_restore(was);
}

/// Whether `vector` is pending (requested, not yet in service) in this CPU's
/// IRR (eight 32-bit registers from 0x200, SDM 10.8.4).
pub fn is_pending(vector: u8) -> bool {
    let reg = 0x200 + usize::from(vector / 32) * 0x10;
    read(reg) & (1 << (vector % 32)) != 0
}

/// Sends a fixed IPI with `vector` to the CPU with APIC id `dest_apic`.
pub fn send_ipi(dest_apic: u32, vector: u8) {
    icr_send(dest_apic, 0x4000 | u32::from(vector));
}

/// Sends a fixed IPI with `vector` to this CPU (self shorthand).
pub fn send_self_ipi(vector: u8) {
    icr_send(0, ICR_SELF | 0x4000 | u32::from(vector));
}

/// INIT assert then de-assert (SDM vol. 3, 8.4.4.1).
pub fn send_init(dest_apic: u32) {
    icr_send(dest_apic, 0xC500);
    icr_send(dest_apic, 0x8500);
}

/// Start-up IPI: the AP starts at `page << 12` in real mode.
pub fn send_sipi(dest_apic: u32, page: u8) {
    icr_send(dest_apic, 0x4600 | u32::from(page));
}

/// Starts the periodic timer: QEMU's LAPIC timer counts at 1 GHz with
/// divide-by-1, so `period_ns` is in counts.
pub fn timer_start_periodic(vector: u8, period_ns: u32) {
    write(REG_TIMER_DIV, 0b1011);
    write(REG_LVT_TIMER, u32::from(vector) | LVT_PERIODIC);
    write(REG_TIMER_INIT, period_ns);
}

/// Masks or unmasks the timer LVT without changing its mode.
pub fn timer_set_masked(masked: bool) {
    let v = read(REG_LVT_TIMER);
    write(
        REG_LVT_TIMER,
        if masked {
            v | LVT_MASKED
        } else {
            v & !LVT_MASKED
        },
    );
}

/// Stops the timer (initial count 0) and masks it.
pub fn timer_stop() {
    write(REG_LVT_TIMER, LVT_MASKED);
    write(REG_TIMER_INIT, 0);
}

/// Busy-waits `ns` nanoseconds on the masked one-shot timer, returning the
/// TSC ticks that elapsed (used once, to calibrate the TSC).
pub fn measure_tsc_over(ns: u32) -> u64 {
    write(REG_TIMER_DIV, 0b1011);
    write(REG_LVT_TIMER, LVT_MASKED);
    let t0 = cpu::rdtsc();
    write(REG_TIMER_INIT, ns);
    while read(REG_TIMER_CUR) != 0 {
        core::hint::spin_loop();
    }
    let t1 = cpu::rdtsc();
    write(REG_TIMER_INIT, 0);
    t1 - t0
}
