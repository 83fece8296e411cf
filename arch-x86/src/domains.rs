//! irqcore domain callbacks ([`DomainOps`]) for the x86 hierarchy, so a
//! kernel can use irqcore's refcounted mappings:
//!
//! ```text
//! IoApicDomainOps (linear, one per IOAPIC) ─┐
//!                                           ├─> VectorDomainOps (tree, root)
//! MsiDomainOps (tree, one per device)  ─────┘
//! ```
//!
//! Register the vector domain first, then each child with
//! `DomainConfig::with_parent(vector_id)`. The vector level takes a vector
//! when the mapping is allocated (on the least-loaded online CPU of the
//! domain's default mask); activation (root first) programs the IOAPIC entry
//! or the device's MSI message from it; the last mapping reference frees the
//! pin/message and the vector together.

use crate::ioapic::IoApic;
use crate::msi::{MsiChip, MsiDevice};
use crate::regs::Mmio32;
use crate::vector::{ApicOps, VectorDomain};
use alloc::sync::Arc;
use irqcore::domain::{AllocRequest, DomainOps, LevelAlloc, LevelRef};
use irqcore::{ChipError, CpuMask, FlowKind, HwIrq, IrqChip, IrqError};

fn chip_err(e: impl Into<ChipError>) -> IrqError {
    IrqError::Chip(e.into())
}

/// The vector domain as the root of irqcore hierarchies.
pub struct VectorDomainOps<O> {
    vectors: Arc<VectorDomain<O>>,
    mask: CpuMask,
}

impl<O: ApicOps + 'static> VectorDomainOps<O> {
    /// Root callbacks for `vectors`; new mappings get a vector on the
    /// least-loaded online CPU of `default_mask`.
    pub fn new(vectors: Arc<VectorDomain<O>>, default_mask: CpuMask) -> Self {
        Self {
            vectors,
            mask: default_mask,
        }
    }
}

impl<O: ApicOps + 'static> DomainOps for VectorDomainOps<O> {
    fn alloc(&self, req: &AllocRequest) -> Result<LevelAlloc, IrqError> {
        let level = self
            .vectors
            .alloc(req.irq, &self.mask, false)
            .map_err(chip_err)?;
        // The vector level is never outermost: its flow is not installed.
        Ok(LevelAlloc::new(level.chip, FlowKind::Edge))
    }

    fn free(&self, level: &LevelRef) {
        let _ = self.vectors.free(level.irq);
    }
}

/// One IOAPIC as a linear domain (hwirq = pin) over the vector domain.
/// Level triggers get the fasteoi flow, everything else the edge flow.
pub struct IoApicDomainOps<O, M> {
    ioapic: Arc<IoApic<M>>,
    vectors: Arc<VectorDomain<O>>,
}

impl<O, M> IoApicDomainOps<O, M> {
    /// Callbacks for `ioapic` whose vectors come from `vectors`. Register
    /// with `DomainKind::Linear { size: ioapic.nr_pins() }`.
    pub fn new(ioapic: Arc<IoApic<M>>, vectors: Arc<VectorDomain<O>>) -> Self {
        Self { ioapic, vectors }
    }
}

impl<O: ApicOps + 'static, M: Mmio32 + 'static> DomainOps for IoApicDomainOps<O, M> {
    fn alloc(&self, req: &AllocRequest) -> Result<LevelAlloc, IrqError> {
        let pin = u32::try_from(req.hwirq.0).map_err(|_| IrqError::BadHwIrq(req.hwirq))?;
        if pin >= self.ioapic.nr_pins() {
            return Err(IrqError::BadHwIrq(req.hwirq));
        }
        let flow = if req.trigger.is_level() {
            FlowKind::FastEoi
        } else {
            FlowKind::Edge
        };
        let mut l = LevelAlloc::new(self.ioapic.clone() as Arc<dyn IrqChip>, flow);
        l.parent_hwirq = HwIrq(req.irq.0 as u64);
        Ok(l)
    }

    fn activate(&self, level: &LevelRef) -> Result<(), IrqError> {
        let msg = self
            .vectors
            .msi_msg(level.irq)
            .ok_or(IrqError::Chip(ChipError::Invalid))?;
        self.ioapic
            .program_target(level.hwirq.0 as u32, &msg)
            .map_err(chip_err)
    }

    fn deactivate(&self, level: &LevelRef) {
        let _ = self.ioapic.set_masked(level.hwirq.0 as u32, true);
    }

    fn free(&self, level: &LevelRef) {
        let _ = self.ioapic.free_pin(level.hwirq.0 as u32);
    }
}

/// One MSI-capable device as a tree domain (hwirq = its vector index) over
/// the vector domain. Edge flow.
pub struct MsiDomainOps<O, D> {
    chip: Arc<MsiChip<D>>,
    vectors: Arc<VectorDomain<O>>,
}

impl<O, D> MsiDomainOps<O, D> {
    /// Callbacks for the device behind `chip`.
    pub fn new(chip: Arc<MsiChip<D>>, vectors: Arc<VectorDomain<O>>) -> Self {
        Self { chip, vectors }
    }
}

impl<O: ApicOps + 'static, D: MsiDevice + 'static> DomainOps for MsiDomainOps<O, D> {
    fn alloc(&self, req: &AllocRequest) -> Result<LevelAlloc, IrqError> {
        u32::try_from(req.hwirq.0).map_err(|_| IrqError::BadHwIrq(req.hwirq))?;
        let mut l = LevelAlloc::new(self.chip.clone() as Arc<dyn IrqChip>, FlowKind::Edge);
        l.parent_hwirq = HwIrq(req.irq.0 as u64);
        Ok(l)
    }

    fn activate(&self, level: &LevelRef) -> Result<(), IrqError> {
        let msg = self
            .vectors
            .msi_msg(level.irq)
            .ok_or(IrqError::Chip(ChipError::Invalid))?;
        self.chip.device().write_msg(level.hwirq.0 as u32, msg);
        Ok(())
    }

    fn deactivate(&self, level: &LevelRef) {
        self.chip.device().set_masked(level.hwirq.0 as u32, true);
    }
}
