//! A spinlock that masks IRQs while held, so code that also runs in
//! interrupt handlers cannot deadlock against itself on one CPU.

use core::ops::{Deref, DerefMut};

use crate::cpu;

/// A `spin::Mutex` taken with IRQs masked.
pub struct IrqLock<T> {
    inner: spin::Mutex<T>,
}

/// Guard of an [`IrqLock`]; restores the IRQ mask on drop.
pub struct IrqLockGuard<'a, T> {
    guard: Option<spin::MutexGuard<'a, T>>,
    was_enabled: bool,
}

impl<T> IrqLock<T> {
    /// A new unlocked lock.
    pub const fn new(v: T) -> Self {
        Self {
            inner: spin::Mutex::new(v),
        }
    }

    /// Masks IRQs and takes the lock.
    pub fn lock(&self) -> IrqLockGuard<'_, T> {
        let was_enabled = cpu::irq_save();
        IrqLockGuard {
            guard: Some(self.inner.lock()),
            was_enabled,
        }
    }
}

impl<T> Deref for IrqLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.guard.as_ref().expect("guard present until drop")
    }
}

impl<T> DerefMut for IrqLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.guard.as_mut().expect("guard present until drop")
    }
}

impl<T> Drop for IrqLockGuard<'_, T> {
    fn drop(&mut self) {
        self.guard = None; // unlock before IRQs come back
        cpu::irq_restore(self.was_enabled);
    }
}
