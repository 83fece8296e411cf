//! The device level of an arm64 MSI hierarchy (Linux's "PCI-MSI" domain):
//! one MSI-capable device whose vectors are programmed with the message
//! the level below composes, the ITS (an EventID written to
//! `GITS_TRANSLATER`) or a GICv2m frame (an SPI number written to
//! `MSI_SETSPI_NS`).
//!
//! ```text
//! MsiDeviceDomain (tree, hwirq = vector index)
//!   -> ItsDomain (DeviceID:EventID) -> LpiDomain (LPI INTID) -> GIC
//!   -> V2mDomain (SPI INTID)        -> GIC domain (SPI INTID)
//! ```
//!
//! Both messages are independent of the target CPU (the ITS moves a
//! collection, the GIC re-routes an SPI), so an affinity change never
//! rewrites the device.

use alloc::sync::Arc;
use irqcore::domain::{
    AllocRequest, DomainConfig, DomainError, DomainId, DomainKind, DomainOps, DomainRegistry,
    LevelAlloc,
};
use irqcore::{
    AffinitySet, ChipError, CpuMask, FlowKind, HwIrq, IrqChip, IrqData, IrqError, MsiMsg, Platform,
    TriggerType,
};

/// A device that raises MSIs (a PCI function's MSI capability, a model).
/// Index `n` is the device's n-th vector.
pub trait MsiDevice: Send + Sync {
    /// Programs vector `index` with `msg` (and enables MSI on the device).
    fn write_msg(&self, index: u32, msg: MsiMsg);
    /// Masks or unmasks vector `index`; `false` if the device cannot mask
    /// (plain MSI without per-vector masking), the level below masks then.
    fn set_masked(&self, index: u32, masked: bool) -> bool;
}

/// The chip of the device level: programs the device, masks at the device
/// where it can and always at the level below (an LPI's enable bit, an
/// SPI's enable), forwards completion and affinity down.
pub struct MsiDeviceChip<D> {
    name: &'static str,
    device: D,
}

impl<D: MsiDevice> MsiDeviceChip<D> {
    /// The chip for `device`, shown as `name`.
    pub fn new(name: &'static str, device: D) -> Self {
        Self { name, device }
    }

    /// The device.
    pub fn device(&self) -> &D {
        &self.device
    }

    fn program(&self, d: &IrqData<'_>) -> Result<(), ChipError> {
        let msg = d
            .parent()
            .and_then(|p| p.compose_msi_msg_hierarchy())
            .ok_or(ChipError::Invalid)?;
        self.device.write_msg(index_of(d)?, msg);
        Ok(())
    }
}

fn index_of(d: &IrqData<'_>) -> Result<u32, ChipError> {
    u32::try_from(d.hwirq().0).map_err(|_| ChipError::Invalid)
}

impl<D: MsiDevice> IrqChip for MsiDeviceChip<D> {
    fn name(&self) -> &str {
        self.name
    }

    /// `EOI_PER_CPU`: `eoi` only forwards to the GIC's, which is per-CPU.
    fn flags(&self) -> irqcore::ChipFlags {
        irqcore::ChipFlags::EOI_PER_CPU
    }

    fn mask(&self, d: &IrqData<'_>) {
        if let Ok(i) = index_of(d) {
            self.device.set_masked(i, true);
        }
        d.mask_parent();
    }

    fn unmask(&self, d: &IrqData<'_>) {
        d.unmask_parent();
        if let Ok(i) = index_of(d) {
            self.device.set_masked(i, false);
        }
    }

    fn ack(&self, d: &IrqData<'_>) {
        d.ack_parent();
    }

    fn eoi(&self, d: &IrqData<'_>) {
        d.eoi_parent();
    }

    fn startup(&self, d: &IrqData<'_>) {
        // The levels below first (an SPI gets its edge configuration), then
        // the message: it must be in place before the vector can fire.
        if let Some(p) = d.parent()
            && let Some(c) = p.chip()
        {
            c.startup(&p);
        }
        if self.program(d).is_ok() {
            self.unmask(d);
        }
    }

    fn shutdown(&self, d: &IrqData<'_>) {
        self.mask(d);
        if let Some(p) = d.parent()
            && let Some(c) = p.chip()
        {
            c.shutdown(&p);
        }
    }

    fn set_type(&self, _d: &IrqData<'_>, trigger: TriggerType) -> Result<(), ChipError> {
        // MSIs are edge messages.
        match trigger {
            TriggerType::None | TriggerType::EdgeRising => Ok(()),
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
}

/// How a device domain names its vectors one level down.
pub trait MsiParent: Send + Sync {
    /// The parent hwirq of vector `index` (the ITS: DeviceID:index; a v2m
    /// frame: a free SPI of its range, reserved by the v2m level's alloc).
    fn parent_hwirq(&self, index: u32) -> Result<HwIrq, IrqError>;
}

/// One MSI-capable device as a tree domain (hwirq = vector index below
/// `nvec`) above an ITS or a v2m domain. Fasteoi flow: the GIC completes
/// the LPI or SPI at the end.
pub struct MsiDeviceDomain<D> {
    chip: Arc<MsiDeviceChip<D>>,
    parent: Arc<dyn MsiParent>,
    nvec: u32,
}

impl<D> MsiDeviceDomain<D> {
    /// The domain of the device behind `chip` with `nvec` vectors.
    pub fn new(chip: Arc<MsiDeviceChip<D>>, parent: Arc<dyn MsiParent>, nvec: u32) -> Self {
        Self { chip, parent, nvec }
    }
}

impl<D: MsiDevice + 'static> DomainOps for MsiDeviceDomain<D> {
    fn alloc(&self, req: &AllocRequest) -> Result<LevelAlloc, IrqError> {
        let index = u32::try_from(req.hwirq.0)
            .ok()
            .filter(|&i| i < self.nvec)
            .ok_or(IrqError::BadHwIrq(req.hwirq))?;
        let mut l = LevelAlloc::new(self.chip.clone() as Arc<dyn IrqChip>, FlowKind::FastEoi);
        l.parent_hwirq = self.parent.parent_hwirq(index)?;
        Ok(l)
    }
}

/// Registers the domain of the device behind `chip` (`nvec` vectors) above
/// `parent_domain`, whose hwirqs `parent` computes.
pub fn add_msi_device_domain<P: Platform, D: MsiDevice + 'static>(
    registry: &DomainRegistry<'_, P>,
    name: &'static str,
    chip: Arc<MsiDeviceChip<D>>,
    parent: Arc<dyn MsiParent>,
    parent_domain: DomainId,
    nvec: u32,
) -> Result<DomainId, DomainError> {
    registry.add_domain(
        DomainConfig::new(name, DomainKind::Tree).with_parent(parent_domain),
        Arc::new(MsiDeviceDomain::new(chip, parent, nvec)),
    )
}

/// [`MsiParent`] of a device behind an ITS: vector `n` is EventID `n` of
/// DeviceID `device`.
pub struct ItsDeviceParent(pub crate::its_cmd::DeviceId);

impl MsiParent for ItsDeviceParent {
    fn parent_hwirq(&self, index: u32) -> Result<HwIrq, IrqError> {
        Ok(crate::its::its_hwirq(
            self.0,
            crate::its_cmd::EventId(index),
        ))
    }
}
