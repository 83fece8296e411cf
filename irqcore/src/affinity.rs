//! Affinity: which CPUs an irq targets, managed affinity, and deferred
//! moves applied at a safe point of the flow.

use crate::cpumask::CpuMask;
use crate::desc::DescInner;
use crate::desc::LineState;
use crate::error::IrqError;
use crate::ids::IrqNumber;
use crate::instance::IrqCore;
use crate::platform::Platform;

impl<P: Platform> IrqCore<P> {
    /// Programs the initial affinity: the requested mask's online CPUs, or
    /// every online CPU if it has none. Chips without affinity support are
    /// left alone.
    pub(crate) fn setup_affinity(
        &self,
        irq: IrqNumber,
        g: &mut crate::desc::DescInner,
        online: &CpuMask,
    ) {
        let mut target = g.affinity().and(online);
        if target.is_empty() {
            target = *online;
        }
        if target.is_empty() {
            return;
        }
        if let Some(d) = g.data(irq) {
            match g.levels[0].chip.set_affinity(&d, &target, false) {
                Ok(r) => {
                    if g.affinity().is_empty() {
                        g.masks.set(crate::desc::MaskKind::Affinity, target);
                    }
                    g.masks.set(crate::desc::MaskKind::Effective, r.effective());
                }
                Err(crate::error::ChipError::Busy) => {
                    // A previous move is still in flight: apply at the
                    // first safe point.
                    g.masks.set(crate::desc::MaskKind::Pending, target);
                    g.line.insert(LineState::MOVE_PENDING);
                }
                Err(_) => {}
            }
        }
    }

    /// Marks `irq` as managed with affinity `mask` (set up before the first
    /// request): the kernel, not the user, owns its affinity; when no CPU of
    /// `mask` is online it is shut down, and restarted when one returns.
    pub fn set_managed_affinity(&self, irq: IrqNumber, mask: &CpuMask) -> Result<(), IrqError> {
        if mask.is_empty() || !mask.is_subset_of(&CpuMask::first_n(self.nr_cpus as usize)) {
            return Err(IrqError::InvalidMask);
        }
        let s = self.section()?;
        let desc = self.desc(&s, irq)?;
        let mut g = self.lock_desc(desc);
        if !g.actions.is_empty() {
            return Err(IrqError::HasHandlers(irq));
        }
        g.line.insert(LineState::AFFINITY_MANAGED);
        g.masks.set(crate::desc::MaskKind::Affinity, *mask);
        Ok(())
    }

    /// The affinity the hardware targets for `irq`.
    pub fn effective_affinity(&self, irq: IrqNumber) -> Result<CpuMask, IrqError> {
        Ok(self.snapshot(irq)?.effective_affinity)
    }

    /// Sets the affinity of `irq` to `mask` (CPUs that must all exist; at
    /// least one online). The chip may target a subset (the effective
    /// affinity). If the chip cannot move the irq now (busy with a previous
    /// move, or the line only moves from the interrupt path) the change is
    /// deferred to the next safe point of the flow; a later request replaces
    /// an earlier pending one, so the last request always wins.
    pub fn set_affinity(&self, irq: IrqNumber, mask: &CpuMask) -> Result<(), IrqError> {
        let possible = CpuMask::first_n(self.nr_cpus as usize);
        if mask.is_empty() || !mask.is_subset_of(&possible) {
            return Err(IrqError::InvalidMask);
        }
        if !mask.intersects(&self.online_cpus()) {
            return Err(IrqError::NoOnlineCpu);
        }
        let s = self.section()?;
        let desc = self.desc(&s, irq)?;
        self.with_bus_lock(desc, |g| {
            // Intersected with the online mask (again) under the descriptor lock: a
            // CPU going down clears its online bit before it migrates each
            // irq under this same lock, so either we see it offline or its
            // migration sees (and moves) what we program.
            let target = mask.and(&self.online_cpus());
            if target.is_empty() {
                return Err(IrqError::NoOnlineCpu);
            }
            if g.line.contains(LineState::PER_CPU) {
                return Err(IrqError::IsPerCpu(irq));
            }
            if g.line.contains(LineState::AFFINITY_MANAGED) {
                return Err(IrqError::Managed(irq));
            }
            let Some(d) = g.data(irq) else {
                return Err(IrqError::NoChip(irq));
            };
            if g.line.contains(LineState::MOVE_DEFERRED) {
                g.masks.set(crate::desc::MaskKind::Pending, *mask);
                g.line.insert(LineState::MOVE_PENDING);
                return Ok(());
            }
            match g.levels[0].chip.set_affinity(&d, &target, false) {
                Ok(r) => {
                    g.masks.set(crate::desc::MaskKind::Affinity, *mask);
                    g.masks.set(crate::desc::MaskKind::Effective, r.effective());
                    // A direct change supersedes any older deferred one.
                    g.line.remove(LineState::MOVE_PENDING);
                    Ok(())
                }
                Err(crate::error::ChipError::Busy) => {
                    g.masks.set(crate::desc::MaskKind::Pending, *mask);
                    g.line.insert(LineState::MOVE_PENDING);
                    Ok(())
                }
                Err(e) => Err(IrqError::Chip(e)),
            }
        })
    }

    /// The requested affinity of `irq`.
    pub fn affinity(&self, irq: IrqNumber) -> Result<CpuMask, IrqError> {
        Ok(self.snapshot(irq)?.affinity)
    }
}

impl<P: Platform> IrqCore<P> {
    /// Applies a deferred affinity change at a safe point: the handlers are
    /// not running and the line is acked.
    #[inline]
    pub(crate) fn move_pending(&self, irq: IrqNumber, g: &mut DescInner) {
        // Flows call this after ending their run, with the lock held, so no
        // handler runs now. The test inline, the rare move out of line.
        if g.line.contains(LineState::MOVE_PENDING) {
            self.move_pending_now(irq, g);
        }
    }

    /// [`Self::move_pending`] when a move waits.
    #[inline(never)]
    fn move_pending_now(&self, irq: IrqNumber, g: &mut DescInner) {
        g.line.remove(LineState::MOVE_PENDING);
        let mask = g.pending_mask().and(&self.online_cpus());
        if mask.is_empty() {
            return;
        }
        // A chip with `MOVE_UNMASKED` is re-routed with the line as it is
        // (a virtual GIC whose emulated disable drops what it queued).
        let was_masked = g.line.contains(LineState::MASKED)
            || g.chip_flags.contains(crate::chip::ChipFlags::MOVE_UNMASKED);
        if !was_masked {
            Self::mask(irq, g);
        }
        if let Some(d) = g.data(irq) {
            match g.levels[0].chip.set_affinity(&d, &mask, false) {
                Ok(r) => {
                    g.masks
                        .set(crate::desc::MaskKind::Affinity, g.pending_mask());
                    g.masks.set(crate::desc::MaskKind::Effective, r.effective());
                }
                // Still busy with the previous move: try again next time.
                Err(crate::error::ChipError::Busy) => g.line.insert(LineState::MOVE_PENDING),
                Err(_) => {}
            }
        }
        if !was_masked {
            Self::unmask(irq, g);
        }
    }
}
