//! Time: the TSC, calibrated once against the LAPIC timer (QEMU's LAPIC
//! timer counts nanoseconds at divide-by-1).

use core::sync::atomic::{AtomicU64, Ordering};

use crate::hw::{cpu, lapic};

static TSC_PER_US: AtomicU64 = AtomicU64::new(1000);

/// Calibrates the TSC over 2 ms (BSP, before its LAPIC timer runs).
pub fn calibrate() {
    let ticks = lapic::measure_tsc_over(2_000_000);
    TSC_PER_US.store((ticks / 2000).max(1), Ordering::Relaxed);
}

/// Microseconds since an arbitrary origin.
pub fn now_us() -> u64 {
    cpu::rdtsc() / TSC_PER_US.load(Ordering::Relaxed)
}

/// Busy-waits `us` microseconds.
pub fn delay_us(us: u64) {
    let end = now_us() + us;
    while now_us() < end {
        core::hint::spin_loop();
    }
}
