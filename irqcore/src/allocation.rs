//! Descriptor allocation: allocating and freeing irq numbers with their
//! descriptors (Linux's `irqdesc.c`), the [`DescRange`] that owns them, and
//! walking the allocated ones.
//!
//! Two layers, as for handlers ([`IrqCore::request_irq`] and
//! [`IrqCore::request_irq_raw`]):
//! - [`IrqCore::alloc_desc_range`] returns a [`DescRange`] that frees its
//!   descriptors when dropped; [`DescRange::leak`] keeps them for good and
//!   [`DescRange::into_raw`] / [`DescRange::from_raw`] pass them through
//!   code that keeps plain numbers.
//! - The low-level layer, for kernels that keep numbers in C-style tables:
//!   [`IrqCore::alloc_descs`] / [`IrqCore::alloc_desc_at`] return bare
//!   numbers that must be paired with [`IrqCore::free_descs`] by hand.

use crate::desc::IrqDesc;
use crate::error::IrqError;
use crate::ids::IrqNumber;
use crate::instance::IrqCore;
use crate::lockdep::LockClass;
use crate::platform::{IrqEvent, Platform};
use crate::store::SparseGuard;
use alloc::vec::Vec;

impl<P: Platform> IrqCore<P> {
    /// Takes the sparse lock (see [`crate::store`]): while the guard lives,
    /// no descriptor can be allocated or freed. Hotplug holds it across the
    /// bring-up and dying phases.
    pub fn lock_sparse(&self) -> Result<SparseGuard<'_>, IrqError> {
        let cpu = self.checked_current_cpu()?;
        let mut g = self.store.lock_sparse(cpu.index())?;
        g.held = Some(self.lock_order.acquire(cpu, LockClass::Sparse));
        Ok(g)
    }

    /// Whether the calling CPU holds the sparse lock.
    pub fn sparse_lock_held(&self) -> bool {
        self.cpu_index().is_ok_and(|c| self.store.sparse_held_by(c))
    }

    fn new_desc(irq: IrqNumber, counts: crate::counts::CountSlots) -> IrqDesc {
        IrqDesc::new(irq, counts)
    }

    /// Allocates `count` consecutive irq numbers, first fit at or above
    /// `from`, each with a fresh descriptor (bad flow, no chip, disabled),
    /// owned by the returned [`DescRange`]: dropping it frees them.
    ///
    /// Refused, with nothing allocated, as [`IrqCore::alloc_descs`] is.
    pub fn alloc_desc_range(
        &self,
        from: IrqNumber,
        count: u32,
    ) -> Result<DescRange<'_, P>, IrqError> {
        let first = self.alloc_descs(from, count)?;
        Ok(DescRange {
            core: self,
            first,
            count,
            live: true,
        })
    }

    /// Allocates `count` consecutive irq numbers, first fit at or above
    /// `from`, each with a fresh descriptor (bad flow, no chip, disabled).
    ///
    /// Low-level layer: the caller frees them with [`IrqCore::free_descs`];
    /// [`IrqCore::alloc_desc_range`] returns a handle that does it on drop.
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

    /// Allocates exactly `irq` (low-level layer: free it with
    /// [`IrqCore::free_descs`], or adopt it with [`DescRange::from_raw`]).
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

/// Descriptors allocated by [`IrqCore::alloc_desc_range`]: `count`
/// consecutive irq numbers from [`DescRange::first`]. Dropping the range
/// frees them ([`IrqCore::free_descs`]); their memory is reclaimed after a
/// grace period.
///
/// Free the handlers on them first: a descriptor that still has one is not
/// freed. Declared after the range, a [`Registration`](crate::Registration)
/// is dropped before it, so the usual order of `let`s does this by itself.
/// A drop that cannot free (handlers still installed, or a drop in
/// interrupt context) leaves every descriptor allocated and reports
/// [`IrqEvent::DescsNotFreed`]; [`DescRange::free`] reports the error to the
/// caller instead and hands the range back.
#[must_use = "dropping the range frees its descriptors at once"]
pub struct DescRange<'a, P: Platform> {
    core: &'a IrqCore<P>,
    first: IrqNumber,
    count: u32,
    live: bool,
}

impl<'a, P: Platform> DescRange<'a, P> {
    /// The first irq number of the range.
    pub fn first(&self) -> IrqNumber {
        self.first
    }

    /// How many irq numbers the range holds (at least one).
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The `i`-th irq number of the range, if `i < count`.
    pub fn get(&self, i: u32) -> Option<IrqNumber> {
        (i < self.count).then(|| IrqNumber(self.first.0 + i))
    }

    /// Whether `irq` belongs to the range.
    pub fn contains(&self, irq: IrqNumber) -> bool {
        irq.0.wrapping_sub(self.first.0) < self.count
    }

    /// The irq numbers of the range, in order.
    pub fn iter(&self) -> impl Iterator<Item = IrqNumber> {
        (0..self.count).map(move |i| IrqNumber(self.first.0 + i))
    }

    /// Frees the descriptors now, reporting errors (drop only reports them
    /// to the platform). On error nothing was freed and the range is handed
    /// back with the error.
    pub fn free(mut self) -> Result<(), (Self, IrqError)> {
        match self.core.free_descs(self.first, self.count) {
            Ok(()) => {
                self.live = false;
                Ok(())
            }
            Err(e) => Err((self, e)),
        }
    }

    /// Gives up ownership: the descriptors stay allocated until
    /// [`IrqCore::free_descs`] is called for them (if ever). Returns the
    /// first irq number.
    pub fn leak(mut self) -> IrqNumber {
        self.live = false;
        self.first
    }

    /// Gives up ownership and returns `(first, count)`, to be turned back
    /// into a range with [`DescRange::from_raw`] (or freed with
    /// [`IrqCore::free_descs`]) by code that keeps plain numbers.
    pub fn into_raw(mut self) -> (IrqNumber, u32) {
        self.live = false;
        (self.first, self.count)
    }

    /// Takes ownership of `count` descriptors from `first`, allocated by the
    /// low-level calls or given up by [`DescRange::into_raw`]. Each must be
    /// allocated: otherwise [`IrqError::InvalidRange`] (zero count, or past
    /// the last number) or [`IrqError::UnknownIrq`] naming the first missing
    /// one, and no handle is made.
    ///
    /// The caller promises that nothing else owns them (another range, or
    /// code that will call [`IrqCore::free_descs`]); two owners would free
    /// them twice, and the second free would then fail or, should the
    /// numbers have been allocated again in between, free someone else's
    /// descriptors. That is a logic error, never memory unsafety: a freed
    /// descriptor stays valid for every reader until a grace period ends.
    pub fn from_raw(core: &'a IrqCore<P>, first: IrqNumber, count: u32) -> Result<Self, IrqError> {
        IrqCore::<P>::check_range(first, count)?;
        for i in 0..count {
            let irq = IrqNumber(first.0 + i);
            if !core.is_allocated(irq) {
                return Err(IrqError::UnknownIrq(irq));
            }
        }
        Ok(Self {
            core,
            first,
            count,
            live: true,
        })
    }
}

impl<P: Platform> core::fmt::Debug for DescRange<'_, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DescRange")
            .field("first", &self.first)
            .field("count", &self.count)
            .field("live", &self.live)
            .finish()
    }
}

impl<P: Platform> Drop for DescRange<'_, P> {
    fn drop(&mut self) {
        if !self.live {
            return;
        }
        if let Err(error) = self.core.free_descs(self.first, self.count) {
            // Nothing was freed (free_descs changes nothing on error): the
            // descriptors stay allocated, and the kernel hears.
            self.core.platform.report(IrqEvent::DescsNotFreed {
                first: self.first,
                count: self.count,
                error,
            });
        }
    }
}
