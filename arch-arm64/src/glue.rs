//! The thin layer between the GIC drivers and [`irqcore::IrqCore`]: one
//! object-safe trait over both GIC versions, the flow each INTID class
//! uses, attaching an INTID to a descriptor, the GIC interrupt domain
//! (three-cell specifiers) and the hotplug callback.

use crate::common::{GicError, SgiTarget};
use crate::intid::{IntId, IntKind};
use crate::lpi::LpiTables;
use crate::regs::{GicSysRegs, Mmio};
use crate::{GicV2, GicV3};
use alloc::sync::Arc;
use alloc::vec;
use irqcore::domain::{
    AllocRequest, DomainConfig, DomainError, DomainId, DomainKind, DomainOps, DomainRegistry,
    FwSpec, LevelAlloc, SpecError, SpecFormat,
};
use irqcore::hotplug::{CpuPhase, HotplugCallback, HotplugCtx};
use irqcore::{
    ChipLevel, CpuId, FlowKind, HwIrq, IrqChip, IrqCore, IrqError, IrqNumber, Platform, TriggerType,
};

/// What a kernel needs from a GIC, whichever version: setup, hotplug, the
/// acknowledge loop and IPIs. Object safe, so a kernel can pick GICv2 or
/// GICv3 at boot and keep an `Arc<dyn Gic>`.
pub trait Gic: IrqChip {
    /// Initialises the distributor (boot CPU, once).
    fn init_distributor(&self) -> Result<(), GicError>;
    /// Hotplug Starting step on `cpu` itself.
    fn cpu_starting(&self, cpu: CpuId) -> Result<(), GicError>;
    /// Hotplug Dying step on `cpu` itself; returns the SPIs re-routed.
    fn cpu_dying(&self, cpu: CpuId) -> Result<usize, GicError>;
    /// The acknowledge loop (see [`GicV3::handle_pending`]).
    fn handle_pending_dyn(&self, dispatch: &mut dyn FnMut(IntId) -> bool) -> usize;
    /// Sends an SGI.
    fn send_sgi(&self, sgi: IntId, target: SgiTarget<'_>) -> Result<(), GicError>;
    /// Sets an interrupt's priority (SGIs/PPIs: on the calling CPU).
    fn set_priority(&self, id: IntId, prio: u8);
    /// Sets the calling CPU's priority mask.
    fn set_priority_mask(&self, mask: u8);
    /// The calling CPU's running priority.
    fn running_priority(&self) -> u8;
    /// Translates a three-cell device-tree specifier for this GIC.
    fn translate(&self, cells: &[u32]) -> Result<(HwIrq, TriggerType), IrqError>;
    /// Number of INTIDs implemented (SGIs, PPIs, SPIs; LPIs are counted by
    /// [`crate::lpi::LpiTables`]).
    fn num_lines(&self) -> u32;
    /// Enables LPIs on `cpu`'s redistributor with `tables` (GICv3 only:
    /// [`GicError::Unsupported`] elsewhere).
    fn enable_lpis(&self, cpu: CpuId, tables: &LpiTables) -> Result<(), GicError>;
    /// The target an ITS names `cpu` by (`GICR_TYPER.Processor_Number`);
    /// `None` on a GICv2 or for a CPU not started.
    fn lpi_target(&self, cpu: CpuId) -> Option<u64>;
}

macro_rules! impl_gic {
    ($t:ty, $($g:tt)*) => {
        impl<$($g)*> Gic for $t {
            fn init_distributor(&self) -> Result<(), GicError> {
                <$t>::init_distributor(self)
            }
            fn cpu_starting(&self, cpu: CpuId) -> Result<(), GicError> {
                <$t>::cpu_starting(self, cpu)
            }
            fn cpu_dying(&self, cpu: CpuId) -> Result<usize, GicError> {
                <$t>::cpu_dying(self, cpu)
            }
            fn handle_pending_dyn(&self, dispatch: &mut dyn FnMut(IntId) -> bool) -> usize {
                <$t>::handle_pending(self, dispatch)
            }
            fn send_sgi(&self, sgi: IntId, target: SgiTarget<'_>) -> Result<(), GicError> {
                <$t>::send_sgi(self, sgi, target)
            }
            fn set_priority(&self, id: IntId, prio: u8) {
                <$t>::set_priority(self, id, prio)
            }
            fn set_priority_mask(&self, mask: u8) {
                <$t>::set_priority_mask(self, mask)
            }
            fn running_priority(&self) -> u8 {
                <$t>::running_priority(self)
            }
            fn translate(&self, cells: &[u32]) -> Result<(HwIrq, TriggerType), IrqError> {
                <$t>::translate(self, cells)
            }
            fn num_lines(&self) -> u32 {
                <$t>::num_lines(self)
            }
            fn enable_lpis(&self, cpu: CpuId, tables: &LpiTables) -> Result<(), GicError> {
                <$t>::enable_lpis(self, cpu, tables)
            }
            fn lpi_target(&self, cpu: CpuId) -> Option<u64> {
                <$t>::processor_number(self, cpu)
            }
        }
    };
}

impl_gic!(GicV2<M>, M: Mmio + 'static);
impl_gic!(GicV3<M, S>, M: Mmio + 'static, S: GicSysRegs + 'static);

/// The flow an INTID class uses: fasteoi for SPIs and LPIs, percpu_devid for PPIs
/// and SGIs (per-CPU enable state; the handler's `dev_id` is per CPU).
pub const fn flow_for(id: IntId) -> FlowKind {
    match id.kind() {
        IntKind::Spi | IntKind::Lpi => FlowKind::FastEoi,
        IntKind::Ppi | IntKind::Sgi => FlowKind::PerCpuDevId,
    }
}

/// Attaches INTID `id` of `gic` to the allocated descriptor `irq` with the
/// flow of its class, and programs `trigger` for an SPI (a PPI's trigger is
/// given per CPU to `IrqCore::enable_percpu_irq`).
pub fn attach<P: Platform>(
    core: &IrqCore<P>,
    irq: IrqNumber,
    gic: Arc<dyn IrqChip>,
    id: IntId,
    trigger: TriggerType,
) -> Result<(), IrqError> {
    core.set_chip(irq, vec![ChipLevel::new(gic, id.hwirq())], flow_for(id))?;
    if trigger != TriggerType::None && !id.is_private() {
        core.set_trigger(irq, trigger)?;
    }
    Ok(())
}

/// Dispatches one acknowledged INTID: looks its irq up with `lookup` and
/// runs its flow. Returns whether a flow ran (and so completes the EOI), as
/// `handle_pending` expects.
pub fn dispatch<P: Platform>(
    core: &IrqCore<P>,
    lookup: impl FnOnce(IntId) -> Option<IrqNumber>,
    id: IntId,
) -> bool {
    lookup(id).is_some_and(|irq| core.handle_irq(irq).is_ok())
}

/// The GIC's CPU hotplug work as an irqcore callback for the `Starting`
/// phase: `up` runs [`Gic::cpu_starting`] on the new CPU, `down` runs
/// [`Gic::cpu_dying`] on the outgoing CPU (inside stop-machine, after the
/// core migrated the descriptors' interrupts away).
pub struct GicHotplug {
    gic: Arc<dyn Gic>,
}

impl GicHotplug {
    /// The callback for `gic`.
    pub fn new(gic: Arc<dyn Gic>) -> Self {
        Self { gic }
    }
}

impl<P: Platform> HotplugCallback<P> for GicHotplug {
    fn name(&self) -> &str {
        "gic"
    }

    fn up(&self, ctx: &HotplugCtx<'_, P>) -> Result<(), IrqError> {
        self.gic.cpu_starting(ctx.cpu).map_err(IrqError::from)
    }

    fn down(&self, ctx: &HotplugCtx<'_, P>) {
        // Cannot fail by contract: the core refuses to take the last online
        // CPU down, so there is always a CPU to re-route to; and this runs
        // on the dying CPU. A redistributor that does not report sleep in
        // time is left as is (the CPU is going away anyway).
        let _ = self.gic.cpu_dying(ctx.cpu);
    }
}

/// Registers the GIC's hotplug callback for the `Starting` phase.
///
/// Register it **before** any driver's `Starting` callback that enables a
/// PPI (timers): callbacks of a phase run in registration order going up
/// (so the redistributor is awake before the PPI is enabled) and in reverse
/// going down (so the redistributor goes to sleep last).
pub fn register_hotplug<P: Platform>(core: &IrqCore<P>, gic: Arc<dyn Gic>) -> Result<(), IrqError> {
    core.register_hotplug(CpuPhase::Starting, Arc::new(GicHotplug::new(gic)))
}

/// The GIC's interrupt domain: linear over INTIDs (`0..num_lines`, the
/// hwirq is the INTID, as in Linux), device-tree specifiers in the
/// three-cell GIC format, SPIs on the fasteoi flow and SGIs/PPIs on
/// percpu_devid.
pub struct GicDomain {
    gic: Arc<dyn Gic>,
}

impl GicDomain {
    /// The domain of `gic`.
    pub fn new(gic: Arc<dyn Gic>) -> Self {
        Self { gic }
    }
}

impl DomainOps for GicDomain {
    fn spec_format(&self) -> SpecFormat {
        SpecFormat::Gic
    }

    fn translate(&self, spec: &FwSpec) -> Result<(HwIrq, TriggerType), SpecError> {
        let cells = spec.cells();
        self.gic.translate(cells).map_err(|e| match (e, cells) {
            (IrqError::BadHwIrq(_), &[kind, ..]) if kind > crate::intid::FW_TYPE_PPI => {
                SpecError::BadType(kind)
            }
            (IrqError::BadHwIrq(_), &[_, n, ..]) => SpecError::NumberOutOfRange(n),
            (IrqError::InvalidTrigger, &[_, _, flags]) => SpecError::BadFlags(flags),
            _ => SpecError::CellCount {
                expected: 3,
                got: cells.len().min(u8::MAX as usize) as u8,
            },
        })
    }

    fn alloc(&self, req: &AllocRequest) -> Result<LevelAlloc, IrqError> {
        let id = IntId::from_hwirq(req.hwirq)
            .filter(|id| id.get() < self.gic.num_lines())
            .ok_or(IrqError::BadHwIrq(req.hwirq))?;
        let chip: Arc<dyn IrqChip> = self.gic.clone();
        Ok(LevelAlloc::new(chip, flow_for(id)))
    }
}

/// Registers the domain of `gic` in `registry` (named "GIC").
pub fn add_gic_domain<P: Platform>(
    registry: &DomainRegistry<'_, P>,
    gic: Arc<dyn Gic>,
) -> Result<DomainId, DomainError> {
    let size = gic.num_lines();
    registry.add_domain(
        DomainConfig::new("GIC", DomainKind::Linear { size }),
        Arc::new(GicDomain::new(gic)),
    )
}
