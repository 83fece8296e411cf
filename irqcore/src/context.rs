//! Calling contexts and the locks taken from them: local interrupt
//! save/restore, the descriptor lock from process context, read-side
//! sections, the "may this call wait?" check and the chip bus lock.

use crate::chip::{ChipLevel, IrqData};
use crate::desc::IrqDesc;
use crate::error::IrqError;
use crate::grace::CpuEpoch;
use crate::ids::{CpuId, IrqNumber};
use crate::instance::IrqCore;
use crate::lockdep::{HeldLock, LockClass};
use crate::platform::{IrqFlags, Platform};
use alloc::sync::Arc;

/// Restores the saved local interrupt state on drop.
pub(crate) struct IrqSave<'a, P: Platform> {
    platform: &'a P,
    flags: IrqFlags,
}

impl<P: Platform> Drop for IrqSave<'_, P> {
    fn drop(&mut self) {
        self.platform.local_irq_restore(self.flags);
    }
}

/// A descriptor lock taken from process context: local interrupts saved
/// and disabled, the acquisition recorded for the lock-order check.
pub(crate) struct DescLock<'a, P: Platform> {
    desc: &'a IrqDesc,
    core: &'a IrqCore<P>,
    // Field order is drop order: unlock, then record the release, then
    // restore interrupts.
    guard: spin::MutexGuard<'a, crate::desc::DescInner>,
    _held: HeldLock<'a>,
    _irq: IrqSave<'a, P>,
}

impl<P: Platform> Drop for DescLock<'_, P> {
    /// Before the lock is released: a run that is going on (the handlers
    /// with the lock dropped) ends under the lock, where it sees what this
    /// holder changed (a deferred affinity change, a disable, ...) as it
    /// would have before the lock-free exit (see `IrqDesc::run`).
    fn drop(&mut self) {
        if self.desc.claim_attention() {
            self.core.kick_runner(self.desc, &mut self.guard);
        }
    }
}

impl<P: Platform> core::ops::Deref for DescLock<'_, P> {
    type Target = crate::desc::DescInner;
    fn deref(&self) -> &Self::Target {
        &self.guard
    }
}

impl<P: Platform> core::ops::DerefMut for DescLock<'_, P> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.guard
    }
}

/// A read-side section: descriptors looked up inside it stay valid.
pub(crate) struct Section<'a> {
    epoch: &'a CpuEpoch,
}

impl Drop for Section<'_> {
    fn drop(&mut self) {
        self.epoch.exit();
    }
}

impl<P: Platform> IrqCore<P> {
    pub(crate) fn irq_save(&self) -> IrqSave<'_, P> {
        IrqSave {
            platform: &self.platform,
            flags: self.platform.local_irq_save(),
        }
    }

    /// Locks `desc` from process context (see [`crate::lockdep`]).
    pub(crate) fn lock_desc<'a>(&'a self, desc: &'a IrqDesc) -> DescLock<'a, P> {
        let irq = self.irq_save();
        let held = self
            .lock_order
            .acquire(self.platform.current_cpu(), LockClass::Descriptor);
        DescLock {
            desc,
            core: self,
            guard: desc.inner.lock(),
            _held: held,
            _irq: irq,
        }
    }

    pub(crate) fn cpu_index(&self) -> Result<usize, IrqError> {
        self.checked_current_cpu().map(CpuId::index)
    }

    /// The calling CPU, if it is below this core's `nr_cpus`.
    pub(crate) fn checked_current_cpu(&self) -> Result<CpuId, IrqError> {
        let cpu = self.platform.current_cpu();
        if cpu.index() < self.nr_cpus as usize {
            Ok(cpu)
        } else {
            Err(IrqError::BadCpu(cpu))
        }
    }

    /// Whether the calling CPU is in interrupt context: inside
    /// [`IrqCore::handle_irq`] (a handler, a flow) or a software resend.
    pub fn in_interrupt(&self) -> bool {
        self.epochs
            .get(self.platform.current_cpu().index())
            .is_some_and(|e| e.in_irq())
    }

    /// Refuses calls that wait for other CPUs, threads or grace periods, or
    /// allocate, where that could deadlock: in interrupt context (the
    /// interrupted code on this CPU may hold what we would wait for, and the
    /// dispatcher up the stack still reads the action list) and inside
    /// stop-machine (every other CPU spins with interrupts off).
    pub(crate) fn check_may_wait(&self) -> Result<(), IrqError> {
        if self.in_interrupt() || self.stop.is_participant(self.platform.current_cpu()) {
            return Err(IrqError::InInterrupt);
        }
        Ok(())
    }

    pub(crate) fn section(&self) -> Result<Section<'_>, IrqError> {
        let epoch = &self.epochs[self.cpu_index()?];
        epoch.enter();
        Ok(Section { epoch })
    }

    /// Looks up `irq` inside `section`.
    pub(crate) fn desc<'s>(
        &'s self,
        _section: &'s Section<'_>,
        irq: IrqNumber,
    ) -> Result<&'s IrqDesc, IrqError> {
        self.store.lookup(irq).ok_or(IrqError::UnknownIrq(irq))
    }

    /// Runs `f` with the chip's bus lock taken (outside the descriptor
    /// lock) and the descriptor lock held inside it.
    pub(crate) fn with_bus_lock<R>(
        &self,
        desc: &IrqDesc,
        f: impl FnOnce(&mut crate::desc::DescInner) -> Result<R, IrqError>,
    ) -> Result<R, IrqError> {
        let levels: Arc<[ChipLevel]> = self.lock_desc(desc).levels.clone();
        let data = IrqData::new(desc.irq, &levels);
        let bus = self
            .lock_order
            .acquire(self.platform.current_cpu(), LockClass::BusLock);
        if let Some(c) = data.chip() {
            c.bus_lock(&data);
        }
        let r = {
            let mut g = self.lock_desc(desc);
            f(&mut g)
        };
        if let Some(c) = data.chip() {
            c.bus_sync_unlock(&data);
        }
        drop(bus);
        r
    }
}
