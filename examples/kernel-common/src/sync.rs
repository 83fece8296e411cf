//! A spin lock that disables local interrupts while held, so code that also
//! runs in interrupt handlers cannot deadlock against itself on one CPU.

use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};

use crate::arch::arch;

/// How the kernel disables and restores the executing CPU's interrupts.
pub trait LocalIrq {
    /// Disables local interrupts, returning whether they were enabled.
    fn save() -> bool;
    /// Re-enables local interrupts if `was_enabled` (from [`LocalIrq::save`]).
    fn restore(was_enabled: bool);
}

/// The installed [`Arch`](crate::Arch)'s interrupt flag.
pub struct ArchIrq;

impl LocalIrq for ArchIrq {
    fn save() -> bool {
        let a = arch();
        let was = a.irqs_enabled();
        a.disable_irqs();
        was
    }
    fn restore(was_enabled: bool) {
        if was_enabled {
            arch().enable_irqs();
        }
    }
}

/// A `spin::Mutex` taken with local interrupts disabled (through `I`, by
/// default the installed architecture's).
pub struct IrqLock<T, I = ArchIrq> {
    inner: spin::Mutex<T>,
    _irq: PhantomData<fn() -> I>,
}

/// Guard of an [`IrqLock`]: unlocks, then restores the interrupt state.
pub struct IrqLockGuard<'a, T, I: LocalIrq> {
    guard: Option<spin::MutexGuard<'a, T>>,
    was_enabled: bool,
    _irq: PhantomData<fn() -> I>,
}

impl<T, I: LocalIrq> IrqLock<T, I> {
    /// A new unlocked lock.
    pub const fn new(v: T) -> Self {
        Self {
            inner: spin::Mutex::new(v),
            _irq: PhantomData,
        }
    }

    /// Disables interrupts and takes the lock.
    pub fn lock(&self) -> IrqLockGuard<'_, T, I> {
        let was_enabled = I::save();
        IrqLockGuard {
            guard: Some(self.inner.lock()),
            was_enabled,
            _irq: PhantomData,
        }
    }
}

impl<T, I: LocalIrq> Deref for IrqLockGuard<'_, T, I> {
    type Target = T;
    fn deref(&self) -> &T {
        // Present from `lock` until `drop`.
        self.guard.as_deref().unwrap_or_else(|| unreachable!())
    }
}

impl<T, I: LocalIrq> DerefMut for IrqLockGuard<'_, T, I> {
    fn deref_mut(&mut self) -> &mut T {
        self.guard.as_deref_mut().unwrap_or_else(|| unreachable!())
    }
}

impl<T, I: LocalIrq> Drop for IrqLockGuard<'_, T, I> {
    fn drop(&mut self) {
        self.guard = None; // unlock before interrupts come back
        I::restore(self.was_enabled);
    }
}
