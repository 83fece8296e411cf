//! GICv2m: MSIs on a GICv2 (or a GICv3 without ITS) through an MSI frame
//! that turns a write of an SPI number to `MSI_SETSPI_NS` into that SPI
//! becoming pending at the distributor (Arm SBSA, GICv2m appendix; the
//! frame QEMU `virt` puts at 0x0802_0000 with `gic-version=2`).
//!
//! The frame owns a range of SPIs (`MSI_TYPER`: first SPI, count). The v2m
//! domain is a tree over those SPI INTIDs, stacked on the GIC domain: a
//! mapping reserves one SPI of the range, the GIC below configures it edge
//! and routes it (affinity is the GIC's `ITARGETSR`/`IROUTER`), and the
//! message is `MSI_SETSPI_NS`'s physical address with the INTID as data.

use crate::intid::IntId;
use crate::msi::MsiParent;
use crate::regs::{Mmio, v2m};
use alloc::sync::Arc;
use alloc::vec::Vec;
use irqcore::domain::{
    AllocRequest, DomainConfig, DomainError, DomainId, DomainKind, DomainOps, DomainRegistry,
    LevelAlloc, LevelRef,
};
use irqcore::{
    AffinitySet, ChipError, CpuMask, FlowKind, HwIrq, IrqChip, IrqData, IrqError, MsiMsg, Platform,
    TriggerType,
};
use spin::Mutex;

/// Errors of the v2m driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum V2mError {
    /// The frame is smaller than [`v2m::FRAME_SIZE`].
    BadFrame,
    /// `MSI_TYPER` names no SPIs, or SPIs outside 32..1020.
    BadTyper(u32),
    /// The INTID is not an SPI of this frame.
    NotInFrame(u32),
    /// The SPI is already reserved.
    InUse(u32),
    /// Every SPI of the frame is reserved.
    NoneFree,
}

impl From<V2mError> for IrqError {
    fn from(e: V2mError) -> Self {
        match e {
            V2mError::NoneFree => IrqError::NoSpace,
            V2mError::NotInFrame(n) | V2mError::InUse(n) => IrqError::BadHwIrq(HwIrq(n.into())),
            _ => IrqError::InvalidArgument,
        }
    }
}

/// One GICv2m MSI frame and the SPIs of its range in use.
pub struct V2mFrame<M: Mmio> {
    _mmio: M,
    phys: u64,
    first: u32,
    count: u32,
    used: Mutex<Vec<bool>>,
}

impl<M: Mmio> core::fmt::Debug for V2mFrame<M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("V2mFrame")
            .field("phys", &self.phys)
            .field("first", &self.first)
            .field("count", &self.count)
            .finish()
    }
}

impl<M: Mmio> V2mFrame<M> {
    /// The frame in `mmio`, at physical address `phys`: reads its SPI range
    /// from `MSI_TYPER`.
    pub fn new(mmio: M, phys: u64) -> Result<Self, V2mError> {
        if mmio.size() < v2m::FRAME_SIZE {
            return Err(V2mError::BadFrame);
        }
        let typer = mmio.read32(v2m::MSI_TYPER);
        let first = (typer >> v2m::TYPER_BASE_SHIFT) & v2m::TYPER_BASE_MASK;
        let count = typer & v2m::TYPER_NUMBER_MASK;
        if count == 0 || first < IntId::SPI_BASE || first + count > IntId::SPI_END {
            return Err(V2mError::BadTyper(typer));
        }
        Ok(Self {
            _mmio: mmio,
            phys,
            first,
            count,
            used: Mutex::new(alloc::vec![false; count as usize]),
        })
    }

    /// The frame's SPIs: INTIDs `first..first + count`.
    pub fn spi_range(&self) -> core::ops::Range<u32> {
        self.first..self.first + self.count
    }

    /// Physical address of `MSI_SETSPI_NS` (the MSI address).
    pub fn doorbell(&self) -> u64 {
        self.phys + v2m::MSI_SETSPI_NS as u64
    }

    /// The message that raises SPI `intid`.
    pub fn msi_msg(&self, intid: u32) -> MsiMsg {
        let a = self.doorbell();
        MsiMsg {
            address_lo: a as u32,
            address_hi: (a >> 32) as u32,
            data: intid,
        }
    }

    fn slot(&self, intid: u32) -> Result<usize, V2mError> {
        if self.spi_range().contains(&intid) {
            Ok((intid - self.first) as usize)
        } else {
            Err(V2mError::NotInFrame(intid))
        }
    }

    /// The lowest free SPI (not reserved).
    pub fn first_free(&self) -> Result<u32, V2mError> {
        let used = self.used.lock();
        used.iter()
            .position(|u| !u)
            .map(|i| self.first + i as u32)
            .ok_or(V2mError::NoneFree)
    }

    /// Reserves SPI `intid`.
    pub fn reserve(&self, intid: u32) -> Result<(), V2mError> {
        let i = self.slot(intid)?;
        let mut used = self.used.lock();
        if used[i] {
            return Err(V2mError::InUse(intid));
        }
        used[i] = true;
        Ok(())
    }

    /// Releases SPI `intid`.
    pub fn release(&self, intid: u32) -> Result<(), V2mError> {
        let i = self.slot(intid)?;
        self.used.lock()[i] = false;
        Ok(())
    }

    /// Whether SPI `intid` is reserved.
    pub fn is_reserved(&self, intid: u32) -> bool {
        self.slot(intid).is_ok_and(|i| self.used.lock()[i])
    }
}

/// The v2m level's chip: composes the message; everything else is the
/// GIC's SPI below (configured edge at startup).
pub struct V2mChip<M: Mmio> {
    frame: Arc<V2mFrame<M>>,
}

impl<M: Mmio> V2mChip<M> {
    /// The chip of `frame`.
    pub fn new(frame: Arc<V2mFrame<M>>) -> Self {
        Self { frame }
    }
}

impl<M: Mmio> IrqChip for V2mChip<M> {
    fn name(&self) -> &str {
        "GICv2m"
    }

    /// `EOI_PER_CPU`: `eoi` only forwards to the GIC's, which is per-CPU.
    fn flags(&self) -> irqcore::ChipFlags {
        irqcore::ChipFlags::EOI_PER_CPU
    }

    fn mask(&self, d: &IrqData<'_>) {
        d.mask_parent();
    }

    fn unmask(&self, d: &IrqData<'_>) {
        d.unmask_parent();
    }

    fn ack(&self, d: &IrqData<'_>) {
        d.ack_parent();
    }

    fn eoi(&self, d: &IrqData<'_>) {
        d.eoi_parent();
    }

    fn startup(&self, d: &IrqData<'_>) {
        // The message is an edge: a level-configured SPI would stay pending.
        let _ = d.set_type_parent(TriggerType::EdgeRising);
        self.unmask(d);
    }

    fn shutdown(&self, d: &IrqData<'_>) {
        self.mask(d);
    }

    fn set_type(&self, d: &IrqData<'_>, trigger: TriggerType) -> Result<(), ChipError> {
        match trigger {
            TriggerType::None | TriggerType::EdgeRising => {
                d.set_type_parent(TriggerType::EdgeRising)
            }
            _ => Err(ChipError::InvalidTrigger),
        }
    }

    fn set_affinity(
        &self,
        d: &IrqData<'_>,
        mask: &CpuMask,
        force: bool,
    ) -> Result<AffinitySet, ChipError> {
        let r = d.set_affinity_parent(mask, force)?;
        Ok(AffinitySet::Done {
            effective: r.effective(),
        })
    }

    fn retrigger(&self, d: &IrqData<'_>) -> bool {
        d.parent().is_some_and(|p| p.retrigger_hierarchy())
    }

    fn compose_msi_msg(&self, d: &IrqData<'_>) -> Option<MsiMsg> {
        let intid = u32::try_from(d.hwirq().0).ok()?;
        self.frame
            .is_reserved(intid)
            .then(|| self.frame.msi_msg(intid))
    }
}

/// The v2m domain: a tree over the frame's SPI INTIDs above the GIC domain.
/// Allocating reserves the SPI, freeing (the last reference) releases it.
pub struct V2mDomain<M: Mmio> {
    frame: Arc<V2mFrame<M>>,
    chip: Arc<V2mChip<M>>,
}

impl<M: Mmio> V2mDomain<M> {
    /// The domain of `frame`.
    pub fn new(frame: Arc<V2mFrame<M>>) -> Self {
        Self {
            chip: Arc::new(V2mChip::new(frame.clone())),
            frame,
        }
    }
}

impl<M: Mmio + 'static> DomainOps for V2mDomain<M> {
    fn alloc(&self, req: &AllocRequest) -> Result<LevelAlloc, IrqError> {
        let intid = u32::try_from(req.hwirq.0).map_err(|_| IrqError::BadHwIrq(req.hwirq))?;
        self.frame.reserve(intid)?;
        let mut l = LevelAlloc::new(self.chip.clone() as Arc<dyn IrqChip>, FlowKind::FastEoi);
        l.parent_hwirq = req.hwirq;
        Ok(l)
    }

    fn free(&self, level: &LevelRef) {
        if let Ok(intid) = u32::try_from(level.hwirq.0) {
            let _ = self.frame.release(intid);
        }
    }
}

/// [`MsiParent`] of a device behind a v2m frame: each new vector gets the
/// frame's lowest free SPI (reserved by the v2m level's alloc; both run
/// under the registry's mapping lock, so nothing can take it in between).
impl<M: Mmio> MsiParent for V2mFrame<M> {
    fn parent_hwirq(&self, _index: u32) -> Result<HwIrq, IrqError> {
        Ok(HwIrq(u64::from(self.first_free()?)))
    }
}

/// Registers the v2m domain of `frame` above the GIC domain `gic_domain`
/// (named "GICv2m").
pub fn add_v2m_domain<P: Platform, M: Mmio + 'static>(
    registry: &DomainRegistry<'_, P>,
    frame: Arc<V2mFrame<M>>,
    gic_domain: DomainId,
) -> Result<DomainId, DomainError> {
    registry.add_domain(
        DomainConfig::new("GICv2m", DomainKind::Tree).with_parent(gic_domain),
        Arc::new(V2mDomain::new(frame)),
    )
}
