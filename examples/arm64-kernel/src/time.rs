//! Time from the generic timer's counter.

use crate::cpu;

/// Microseconds since the counter started (QEMU: since machine reset).
pub fn now_us() -> u64 {
    let hz = cpu::counter_hz().max(1);
    (u128::from(cpu::counter()) * 1_000_000 / u128::from(hz)) as u64
}
