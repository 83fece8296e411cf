//! Descriptor allocation: allocating and freeing irq numbers with their
//! descriptors (Linux's `irqdesc.c`), and walking the allocated ones.

use crate::desc::IrqDesc;
use crate::error::IrqError;
use crate::ids::{CpuId, IrqNumber};
use crate::instance::IrqCore;
use crate::lockdep::LockClass;
use crate::platform::Platform;
use crate::store::SparseGuard;
use alloc::vec::Vec;

impl<P: Platform> IrqCore<P> {
    /// Takes the sparse lock (see [`crate::store`]): while the guard lives,
    /// no descriptor can be allocated or freed. Hotplug holds it across the
    /// bring-up and dying phases.
    pub fn lock_sparse(&self) -> Result<SparseGuard<'_>, IrqError> {
        let cpu = self.cpu_index()?;
        let mut g = self.store.lock_sparse(cpu)?;
        g.held = Some(
            self.lock_order
                .acquire(CpuId(cpu as u32), LockClass::Sparse),
        );
        Ok(g)
    }

    /// Whether the calling CPU holds the sparse lock.
    pub fn sparse_lock_held(&self) -> bool {
        self.cpu_index().is_ok_and(|c| self.store.sparse_held_by(c))
    }

    fn new_desc(irq: IrqNumber, counts: crate::store::CountSlots) -> IrqDesc {
        IrqDesc::new(irq, counts)
    }

    /// Allocates `count` consecutive irq numbers, first fit at or above
    /// `from`, each with a fresh descriptor (bad flow, no chip, disabled).
    pub fn alloc_descs(&self, from: IrqNumber, count: u32) -> Result<IrqNumber, IrqError> {
        Self::check_range(from, count)?;
        self.check_sparse_free()?;
        self.check_may_wait()?;
        let mut g = self.lock_sparse()?;
        let r = self
            .store
            .alloc(&mut g, from.0, count, false, &Self::new_desc);
        drop(g);
        self.reclaim_retired();
        r
    }

    /// Allocates exactly `irq`.
    pub fn alloc_desc_at(&self, irq: IrqNumber) -> Result<(), IrqError> {
        self.check_sparse_free()?;
        self.check_may_wait()?;
        let mut g = self.lock_sparse()?;
        let r = self.store.alloc(&mut g, irq.0, 1, true, &Self::new_desc);
        drop(g);
        r.map(|_| ())
    }

    /// Frees `count` descriptors from `first`. Every one must exist and have
    /// no handler installed; otherwise nothing is freed. Their memory is
    /// reclaimed after a grace period (see [`crate::grace`]).
    pub fn free_descs(&self, first: IrqNumber, count: u32) -> Result<(), IrqError> {
        Self::check_range(first, count)?;
        self.check_sparse_free()?;
        self.check_may_wait()?;
        let mut g = self.lock_sparse()?;
        let descs = {
            let _s = self.section()?;
            self.store.unpublish(&mut g, first.0, count, &|d| {
                if d.inner.lock().actions.is_empty() {
                    Ok(())
                } else {
                    Err(IrqError::HasHandlers(d.irq))
                }
            })?
        };
        drop(g);
        self.reclaim(descs);
        Ok(())
    }

    /// The sparse-lock check comes first for allocation and free, so a
    /// hotplug callback that allocates where the lock is held for its
    /// transition (the dying CPU inside stop-machine included) gets the
    /// error that names the mistake.
    fn check_sparse_free(&self) -> Result<(), IrqError> {
        self.store.check_not_held_by(self.cpu_index()?)
    }

    /// A zero count, or a range running past the last irq number.
    fn check_range(first: IrqNumber, count: u32) -> Result<(), IrqError> {
        if count == 0 || u64::from(first.0) + u64::from(count) > 1 << 32 {
            return Err(IrqError::InvalidRange);
        }
        Ok(())
    }

    /// Memory one allocated descriptor costs: the descriptor itself (and
    /// its CPU masks, kept outside it on a core of more than 64 CPUs), its
    /// per-CPU counters and its lookup slot (chunks are shared by
    /// [`crate::store::CHUNK`] numbers). Not included: what a chip and
    /// handlers add once set (the chip stack, the action list and its
    /// published copy, 32 B per chip level and per handler and a few
    /// words).
    pub fn bytes_per_descriptor(&self) -> usize {
        core::mem::size_of::<IrqDesc>()
            + crate::desc::DescMasks::heap_bytes(self.nr_cpus as usize)
            + self.nr_cpus as usize * core::mem::size_of::<u64>()
            + core::mem::size_of::<usize>()
    }

    /// Number of allocated descriptors.
    pub fn nr_descs(&self) -> usize {
        self.store.live()
    }

    /// Whether `irq` has a descriptor.
    pub fn is_allocated(&self, irq: IrqNumber) -> bool {
        self.section().is_ok_and(|s| self.desc(&s, irq).is_ok())
    }

    /// Calls `f` for every allocated irq, holding the sparse lock (so the
    /// set cannot change during the walk). Returns the sparse-lock error if
    /// the caller already holds it; use [`IrqCore::for_each_irq_locked`]
    /// then.
    pub fn for_each_irq(&self, mut f: impl FnMut(IrqNumber)) -> Result<(), IrqError> {
        let g = self.lock_sparse()?;
        self.for_each_irq_locked(&g, &mut f);
        Ok(())
    }

    /// Like [`IrqCore::for_each_irq`], for a caller holding the sparse lock.
    pub fn for_each_irq_locked(&self, guard: &SparseGuard<'_>, f: &mut dyn FnMut(IrqNumber)) {
        let mut irqs = Vec::new();
        if let Ok(_s) = self.section() {
            self.store.for_each(guard, &mut |d| irqs.push(d.irq));
        }
        for irq in irqs {
            f(irq);
        }
    }
}
