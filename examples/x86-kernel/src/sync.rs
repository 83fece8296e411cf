//! The kernel's interrupt-safe lock: `kernel_common`'s `IrqLock` over this
//! CPU's local interrupts (`RFLAGS.IF`).

use crate::hw::cpu;

/// Disables and restores local interrupts (`RFLAGS.IF`).
pub struct Irq;

impl kernel_common::sync::LocalIrq for Irq {
    fn save() -> bool {
        cpu::irq_save()
    }
    fn restore(was_enabled: bool) {
        cpu::irq_restore(was_enabled)
    }
}

/// A `spin::Mutex` taken with interrupts disabled.
pub type IrqLock<T> = kernel_common::sync::IrqLock<T, Irq>;
