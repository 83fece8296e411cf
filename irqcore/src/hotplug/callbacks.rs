//! Hotplug callbacks: the trait a backend implements for a phase, the
//! context it gets, and registering it (with [`HotplugRegistration`], the
//! handle that unregisters it on drop).

use super::CpuPhase;
use crate::error::IrqError;
use crate::ids::{CpuId, HotplugId, IrqNumber};
use crate::instance::IrqCore;
use crate::platform::{IrqEvent, Platform};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

/// Whether a callback is being called for a CPU coming up or going down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// CPU coming up (`up` callbacks).
    Up,
    /// CPU going down (`down` callbacks).
    Down,
}

/// A backend's hotplug work for one phase.
pub trait HotplugCallback<P: Platform>: Send + Sync {
    /// Name for diagnostics.
    fn name(&self) -> &str;

    /// The CPU is coming up. An error rolls the transition back: the `down`
    /// callbacks of everything that already ran are called in reverse.
    fn up(&self, ctx: &HotplugCtx<'_, P>) -> Result<(), IrqError>;

    /// The CPU is going down. Cannot fail (the `Starting`/"dying" phase runs
    /// inside stop-machine).
    fn down(&self, ctx: &HotplugCtx<'_, P>);
}

/// What a hotplug callback gets.
pub struct HotplugCtx<'a, P: Platform> {
    /// The core.
    pub core: &'a IrqCore<P>,
    /// The CPU coming up or going down.
    pub cpu: CpuId,
    /// The phase being run.
    pub phase: CpuPhase,
    /// Up or down.
    pub direction: Direction,
}

impl<P: Platform> HotplugCtx<'_, P> {
    /// Whether the sparse lock is held for this transition (`BringUp` and
    /// `Starting`, both directions).
    pub fn sparse_lock_held(&self) -> bool {
        matches!(self.phase, CpuPhase::BringUp | CpuPhase::Starting)
    }

    /// Walks every allocated irq. Only allowed while the sparse lock is held
    /// for the transition (so the set is stable): `BringUp` and `Starting`.
    pub fn for_each_irq(&self, f: &mut dyn FnMut(IrqNumber)) -> Result<(), IrqError> {
        if !self.sparse_lock_held() {
            return Err(IrqError::SparseLockNotHeld);
        }
        self.core.walk_irqs_unlocked(f);
        Ok(())
    }
}

pub(super) struct Registered<P: Platform> {
    pub(super) id: HotplugId,
    pub(super) phase: CpuPhase,
    pub(super) cb: Arc<dyn HotplugCallback<P>>,
}

impl<P: Platform> IrqCore<P> {
    /// Registers `cb` for `phase` and returns a handle that unregisters it
    /// on drop. Callbacks of a phase run in registration order going up and
    /// in reverse going down. Refused while a transition runs.
    pub fn hotplug_callback(
        &self,
        phase: CpuPhase,
        cb: Arc<dyn HotplugCallback<P>>,
    ) -> Result<HotplugRegistration<'_, P>, IrqError> {
        let id = self.add_hotplug(phase, cb)?;
        Ok(HotplugRegistration {
            core: self,
            id,
            live: true,
        })
    }

    /// Registers `cb` for `phase` for the life of the core (low-level
    /// layer, what backends do at init; [`IrqCore::hotplug_callback`]
    /// returns a handle that unregisters on drop). Callbacks of a phase run
    /// in registration order going up and in reverse going down. Refused
    /// while a transition runs.
    pub fn register_hotplug(
        &self,
        phase: CpuPhase,
        cb: Arc<dyn HotplugCallback<P>>,
    ) -> Result<(), IrqError> {
        self.add_hotplug(phase, cb).map(|_| ())
    }

    fn add_hotplug(
        &self,
        phase: CpuPhase,
        cb: Arc<dyn HotplugCallback<P>>,
    ) -> Result<HotplugId, IrqError> {
        self.check_may_wait()?;
        let _busy = self.hotplug.busy.try_lock().ok_or(IrqError::Busy)?;
        let id = HotplugId(self.hotplug.next_id.fetch_add(1, Ordering::Relaxed));
        self.hotplug
            .callbacks
            .lock()
            .push(Registered { id, phase, cb });
        Ok(id)
    }

    /// Unregisters the callback `id` and returns it: no later transition
    /// calls it. Refused with [`IrqError::Busy`] while a transition runs
    /// (from a callback too) and with [`IrqError::UnknownHotplugCallback`]
    /// for an id not registered (any more).
    pub fn unregister_hotplug(
        &self,
        id: HotplugId,
    ) -> Result<Arc<dyn HotplugCallback<P>>, IrqError> {
        self.check_may_wait()?;
        let _busy = self.hotplug.busy.try_lock().ok_or(IrqError::Busy)?;
        let mut cbs = self.hotplug.callbacks.lock();
        let i = cbs
            .iter()
            .position(|r| r.id == id)
            .ok_or(IrqError::UnknownHotplugCallback)?;
        Ok(cbs.remove(i).cb)
    }

    pub(super) fn callbacks_of(&self, phase: CpuPhase) -> Vec<Arc<dyn HotplugCallback<P>>> {
        self.hotplug
            .callbacks
            .lock()
            .iter()
            .filter(|r| r.phase == phase)
            .map(|r| r.cb.clone())
            .collect()
    }
}

/// A registered hotplug callback ([`IrqCore::hotplug_callback`]); dropping
/// it unregisters the callback, so no later transition calls it.
///
/// A drop while a transition runs (from inside a callback, say) cannot
/// unregister: the callback stays and the platform hears
/// ([`IrqEvent::HotplugCallbackKept`]); [`HotplugRegistration::unregister`]
/// reports the error to the caller instead.
#[must_use = "dropping the registration unregisters the callback at once"]
pub struct HotplugRegistration<'a, P: Platform> {
    core: &'a IrqCore<P>,
    id: HotplugId,
    live: bool,
}

impl<P: Platform> HotplugRegistration<'_, P> {
    /// The id, as [`IrqCore::unregister_hotplug`] takes it.
    pub fn id(&self) -> HotplugId {
        self.id
    }

    /// Unregisters now and returns the callback; on error the callback
    /// stays registered and the handle is handed back.
    #[allow(clippy::type_complexity)]
    pub fn unregister(mut self) -> Result<Arc<dyn HotplugCallback<P>>, (Self, IrqError)> {
        match self.core.unregister_hotplug(self.id) {
            Ok(cb) => {
                self.live = false;
                Ok(cb)
            }
            Err(e) => Err((self, e)),
        }
    }

    /// Gives up ownership: the callback stays registered until
    /// [`IrqCore::unregister_hotplug`] is called with the returned id.
    pub fn leak(mut self) -> HotplugId {
        self.live = false;
        self.id
    }
}

impl<P: Platform> Drop for HotplugRegistration<'_, P> {
    fn drop(&mut self) {
        if self.live
            && let Err(error) = self.core.unregister_hotplug(self.id)
        {
            self.core
                .platform
                .report(IrqEvent::HotplugCallbackKept { id: self.id, error });
        }
    }
}
