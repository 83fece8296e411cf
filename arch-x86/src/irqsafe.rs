//! Locks that are also taken from interrupt context.
//!
//! The vector domain's and an IOAPIC's locks are taken by chip callbacks
//! (ack/eoi, with local interrupts off) *and* by configuration calls from
//! process context (allocation, hotplug, cleanup). A process-context holder
//! interrupted on the same CPU by an interrupt whose ack needs the same lock
//! would spin for ever, so those locks are taken with local interrupts
//! disabled, through the kernel-supplied [`IrqControl`].

use core::ops::{Deref, DerefMut};

/// How to disable and restore local interrupts on the executing CPU.
///
/// [`IrqControl::NONE`] does nothing: correct only when every call into the
/// structure is made with interrupts already disabled (or on host tests).
/// Kernels pass `hw::IRQ_CONTROL` (x86_64).
#[derive(Clone, Copy, Debug)]
pub struct IrqControl {
    /// Disables local interrupts, returning whether they were enabled.
    pub save: fn() -> bool,
    /// Re-enables local interrupts if the argument (from `save`) is true.
    pub restore: fn(bool),
}

fn no_save() -> bool {
    false
}
fn no_restore(_: bool) {}

impl IrqControl {
    /// Leaves the interrupt state alone.
    pub const NONE: IrqControl = IrqControl {
        save: no_save,
        restore: no_restore,
    };
}

impl Default for IrqControl {
    fn default() -> Self {
        Self::NONE
    }
}

/// A spin lock taken with local interrupts disabled.
pub(crate) struct IrqSafeMutex<T> {
    ctl: IrqControl,
    inner: spin::Mutex<T>,
}

/// Restores the interrupt state when dropped.
struct Restore {
    restore: fn(bool),
    was_enabled: bool,
}

impl Drop for Restore {
    fn drop(&mut self) {
        (self.restore)(self.was_enabled);
    }
}

/// The guard: unlocks, then restores interrupts (fields drop in order).
pub(crate) struct IrqSafeGuard<'a, T> {
    guard: spin::MutexGuard<'a, T>,
    _restore: Restore,
}

impl<T> IrqSafeMutex<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self {
            ctl: IrqControl::NONE,
            inner: spin::Mutex::new(value),
        }
    }

    pub(crate) fn set_control(&mut self, ctl: IrqControl) {
        self.ctl = ctl;
    }

    pub(crate) fn lock(&self) -> IrqSafeGuard<'_, T> {
        let was_enabled = (self.ctl.save)();
        let restore = Restore {
            restore: self.ctl.restore,
            was_enabled,
        };
        IrqSafeGuard {
            guard: self.inner.lock(),
            _restore: restore,
        }
    }
}

impl<T> Deref for IrqSafeGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for IrqSafeGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}
