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
/// [`IrqControl::DEFAULT`] (also `IrqControl::default()`, and what every lock
/// of this crate starts with) is the real thing on bare-metal x86_64
/// (`target_os = "none"`): `pushfq` to read `RFLAGS.IF`, `cli`, and `sti` on
/// restore only if interrupts were enabled ([`hw::IRQ_CONTROL`](crate::hw::IRQ_CONTROL)).
/// On other targets (host tests, where `cli` would fault) there are no
/// local interrupts to disable and the default is [`IrqControl::NONE`].
///
/// [`IrqControl::NONE`] does nothing: correct only when every call into the
/// structure is made with interrupts already disabled, or on host tests. It
/// is never chosen silently on bare-metal x86_64: pass it explicitly.
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

    /// The default: `cli`/`sti` on bare-metal x86_64, [`IrqControl::NONE`]
    /// on hosted targets (see the type's documentation).
    #[cfg(all(target_arch = "x86_64", target_os = "none"))]
    pub const DEFAULT: IrqControl = crate::hw::IRQ_CONTROL;
    /// The default: `cli`/`sti` on bare-metal x86_64, [`IrqControl::NONE`]
    /// on hosted targets (see the type's documentation).
    #[cfg(not(all(target_arch = "x86_64", target_os = "none")))]
    pub const DEFAULT: IrqControl = IrqControl::NONE;
}

impl Default for IrqControl {
    fn default() -> Self {
        Self::DEFAULT
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
            ctl: IrqControl::DEFAULT,
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
