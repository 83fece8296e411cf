//! The event-channel interrupt chips. Each irq's hwirq (and chip data) is
//! its port.
//!
//! | chip | channels | flow | ack / eoi |
//! |------|----------|------|-----------|
//! | [`DynamicChip`] | interdomain, unbound, global VIRQ | edge | ack = clear pending |
//! | [`LateEoiChip`] | interdomain of backends | edge | ack = mask (EOI pending) + clear; the driver's late EOI unmasks |
//! | [`PercpuChip`] | IPI, per-vCPU VIRQ | percpu | ack = clear pending |
//! | [`PirqChip`] | PIRQ | fasteoi (level) or edge (MSI) | eoi/ack = clear pending + `PHYSDEVOP_eoi` if Xen wants it |
//!
//! Why never the level flow: Xen notifies only on a 0 -> 1 change of the
//! pending bit, so events are edges. A level flow that finds the irq in
//! progress on another vCPU (just after a rebind) masks, acks and returns
//! without recording anything, expecting the line to still be asserted
//! after unmask; the pending bit is gone and Xen never raises again, so the
//! event is lost (Linux, 2010). The edge flow records it and replays.

use crate::channels::{EventChannels, MaskReasons};
use crate::ids::Port;
use alloc::sync::Arc;
use irqcore::{AffinitySet, ChipError, CpuMask, IrqChip, IrqData};

fn port(d: &IrqData<'_>) -> Port {
    Port(d.hwirq().0 as u32)
}

fn set_affinity(
    ch: &EventChannels,
    d: &IrqData<'_>,
    mask: &CpuMask,
) -> Result<AffinitySet, ChipError> {
    let vcpu = ch.pick_vcpu(mask).ok_or(ChipError::Invalid)?;
    ch.rebind(port(d), vcpu).map_err(|e| match e {
        crate::EvtchnError::Xen(x) => x.into(),
        _ => ChipError::Invalid,
    })?;
    Ok(AffinitySet::Done {
        // `pick_vcpu` takes the vCPU from `mask`, so it always names a CPU.
        effective: CpuMask::from_cpus(vcpu.cpu()),
    })
}

/// Dynamic channels (interdomain, unbound, global VIRQ) on the edge flow.
#[derive(Debug, Clone)]
pub struct DynamicChip {
    ch: Arc<EventChannels>,
}

impl DynamicChip {
    /// The chip for channels of `ch`.
    pub fn new(ch: Arc<EventChannels>) -> Self {
        Self { ch }
    }
}

impl IrqChip for DynamicChip {
    fn name(&self) -> &str {
        "xen-dyn"
    }
    fn mask(&self, d: &IrqData<'_>) {
        self.ch.mask(port(d), MaskReasons::EXPLICIT);
    }
    fn unmask(&self, d: &IrqData<'_>) {
        let _ = self.ch.unmask(port(d), MaskReasons::EXPLICIT);
    }
    fn ack(&self, d: &IrqData<'_>) {
        self.ch.ack(port(d));
    }
    fn disable(&self, d: &IrqData<'_>) -> bool {
        self.mask(d);
        true
    }
    fn set_affinity(
        &self,
        d: &IrqData<'_>,
        mask: &CpuMask,
        _force: bool,
    ) -> Result<AffinitySet, ChipError> {
        set_affinity(&self.ch, d, mask)
    }
    fn retrigger(&self, d: &IrqData<'_>) -> bool {
        self.ch.retrigger(port(d)).is_ok()
    }
}

/// Dynamic channels with late EOI (backends facing untrusted peers): the
/// event stays masked from the ack until the driver calls
/// [`EventChannels::late_eoi`], which also applies the storm back-off.
#[derive(Debug, Clone)]
pub struct LateEoiChip {
    ch: Arc<EventChannels>,
}

impl LateEoiChip {
    /// The chip for late-EOI channels of `ch`.
    pub fn new(ch: Arc<EventChannels>) -> Self {
        Self { ch }
    }
}

impl IrqChip for LateEoiChip {
    fn name(&self) -> &str {
        "xen-dyn-lateeoi"
    }
    fn mask(&self, d: &IrqData<'_>) {
        self.ch.mask(port(d), MaskReasons::EXPLICIT);
    }
    fn unmask(&self, d: &IrqData<'_>) {
        let _ = self.ch.unmask(port(d), MaskReasons::EXPLICIT);
    }
    fn ack(&self, d: &IrqData<'_>) {
        // Mask first: the port stays masked (and "active") until the late
        // EOI, then take the event.
        let p = port(d);
        self.ch.mask(p, MaskReasons::EOI_PENDING);
        self.ch.layer().clear_pending(p);
    }
    /// The flow did not run the handler (disabled, or in progress
    /// elsewhere): mask explicitly and take the event without waiting for a
    /// late EOI the driver will never send for it (the core replays it).
    fn mask_ack(&self, d: &IrqData<'_>) {
        self.mask(d);
        self.ch.ack(port(d));
    }
    fn disable(&self, d: &IrqData<'_>) -> bool {
        self.mask(d);
        true
    }
    fn set_affinity(
        &self,
        d: &IrqData<'_>,
        mask: &CpuMask,
        _force: bool,
    ) -> Result<AffinitySet, ChipError> {
        set_affinity(&self.ch, d, mask)
    }
    fn retrigger(&self, d: &IrqData<'_>) -> bool {
        self.ch.retrigger(port(d)).is_ok()
    }
}

/// IPIs and per-vCPU VIRQs on the percpu flow: fixed to their vCPU, no
/// affinity; mask/unmask only for disable/enable.
#[derive(Debug, Clone)]
pub struct PercpuChip {
    ch: Arc<EventChannels>,
}

impl PercpuChip {
    /// The chip for per-vCPU channels of `ch`.
    pub fn new(ch: Arc<EventChannels>) -> Self {
        Self { ch }
    }
}

impl IrqChip for PercpuChip {
    fn name(&self) -> &str {
        "xen-percpu"
    }
    fn mask(&self, d: &IrqData<'_>) {
        self.ch.mask(port(d), MaskReasons::EXPLICIT);
    }
    fn unmask(&self, d: &IrqData<'_>) {
        let _ = self.ch.unmask(port(d), MaskReasons::EXPLICIT);
    }
    fn ack(&self, d: &IrqData<'_>) {
        self.ch.ack(port(d));
    }
    fn disable(&self, d: &IrqData<'_>) -> bool {
        self.mask(d);
        true
    }
}

/// Physical IRQs: fasteoi for level (shareable GSI) PIRQs, edge for MSIs.
/// Both the ack (edge) and the eoi (fasteoi) clear the pending bit and, if
/// Xen asked for it at bind time, send `PHYSDEVOP_eoi` so Xen unmasks the
/// physical line.
#[derive(Debug, Clone)]
pub struct PirqChip {
    ch: Arc<EventChannels>,
}

impl PirqChip {
    /// The chip for PIRQ channels of `ch`.
    pub fn new(ch: Arc<EventChannels>) -> Self {
        Self { ch }
    }

    fn end(&self, d: &IrqData<'_>) {
        let p = port(d);
        self.ch.ack(p);
        if let Some(crate::channels::Binding {
            kind:
                crate::channels::ChannelKind::Pirq {
                    pirq,
                    needs_eoi: true,
                },
            ..
        }) = self.ch.binding(p)
        {
            let _ = self.ch.ops().pirq_eoi(pirq);
        }
    }
}

impl IrqChip for PirqChip {
    fn name(&self) -> &str {
        "xen-pirq"
    }
    fn mask(&self, d: &IrqData<'_>) {
        self.ch.mask(port(d), MaskReasons::EXPLICIT);
    }
    fn unmask(&self, d: &IrqData<'_>) {
        let _ = self.ch.unmask(port(d), MaskReasons::EXPLICIT);
    }
    /// Unmask, then EOI once so a line Xen left waiting for an EOI (from
    /// before the bind) is released.
    fn startup(&self, d: &IrqData<'_>) {
        self.unmask(d);
        self.end(d);
    }
    fn ack(&self, d: &IrqData<'_>) {
        self.end(d);
    }
    fn eoi(&self, d: &IrqData<'_>) {
        self.end(d);
    }
    fn disable(&self, d: &IrqData<'_>) -> bool {
        self.mask(d);
        true
    }
    fn set_affinity(
        &self,
        d: &IrqData<'_>,
        mask: &CpuMask,
        _force: bool,
    ) -> Result<AffinitySet, ChipError> {
        set_affinity(&self.ch, d, mask)
    }
}
