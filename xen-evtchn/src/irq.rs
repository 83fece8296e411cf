//! Wiring of event channels into [`IrqCore`]: one descriptor per bound
//! port, with the right chip and flow, and the upcall dispatching to
//! [`IrqCore::handle_irq`].
//!
//! | binding | chip | flow |
//! |---------|------|------|
//! | interdomain, unbound, global VIRQ | [`DynamicChip`] | [`FlowKind::Edge`] |
//! | interdomain with late EOI | [`LateEoiChip`] | [`FlowKind::Edge`] |
//! | IPI, per-vCPU VIRQ | [`PercpuChip`] | [`FlowKind::PerCpu`] |
//! | level PIRQ | [`PirqChip`] | [`FlowKind::FastEoi`] |
//! | MSI (edge) PIRQ | [`PirqChip`] | [`FlowKind::Edge`] |
//!
//! CPU hotplug ([`XenIrqs::register_hotplug`]): [`XenIrqs::prepare_cpu`]
//! runs in the core's [`CpuPhase::Prepare`] up-step, before the core takes
//! its sparse lock for the bring-up: it binds the vCPU's IPIs and per-vCPU
//! VIRQs and allocates their descriptors. [`XenIrqs::cpu_dead`] runs in the
//! matching down-step ("post-dead": the CPU is dead and the sparse lock is
//! released): it closes them and frees the descriptors. Called with the
//! sparse lock held they fail with [`IrqError::SparseLockHeldByCaller`] and
//! change nothing, so the 2015 Xen bring-up deadlock cannot happen. A
//! callback in [`CpuPhase::Online`] tells the channels which vCPUs may be
//! affinity targets.
//!
//! The `bind_*` calls here are the low-level layer: they return the raw
//! `(Port, IrqNumber)` and the caller pairs them with [`XenIrqs::unbind`].
//! [`XenIrqs::binder`](crate::binding) returns the same bindings as owning
//! [`BoundIrq`](crate::BoundIrq) handles that unbind on drop.

use crate::channels::{EventChannels, PerVcpuPorts};
use crate::chip::{DynamicChip, LateEoiChip, PercpuChip, PirqChip};
use crate::error::EvtchnError;
use crate::ids::{DomId, Pirq, Port, VcpuId, Virq};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use irqcore::hotplug::HotplugCtx;
use irqcore::{
    ChipError, ChipLevel, CpuId, CpuPhase, FlowKind, HotplugCallback, HwIrq, IrqChip, IrqCore,
    IrqError, IrqNumber, Platform,
};

/// The irqs of one vCPU's per-vCPU channels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PerVcpuIrqs {
    /// IPI irqs, by kind.
    pub ipis: Vec<(Port, IrqNumber)>,
    /// Per-vCPU VIRQ irqs.
    pub virqs: Vec<(Virq, Port, IrqNumber)>,
}

/// Event channels connected to an [`IrqCore`].
#[derive(Debug, Clone)]
pub struct XenIrqs {
    ch: Arc<EventChannels>,
    dynamic: Arc<DynamicChip>,
    lateeoi: Arc<LateEoiChip>,
    percpu: Arc<PercpuChip>,
    pirq: Arc<PirqChip>,
    first_irq: IrqNumber,
}

impl XenIrqs {
    /// Wiring for `ch`; descriptors are allocated at or above `first_irq`.
    pub fn new(ch: Arc<EventChannels>, first_irq: IrqNumber) -> Self {
        Self {
            dynamic: Arc::new(DynamicChip::new(ch.clone())),
            lateeoi: Arc::new(LateEoiChip::new(ch.clone())),
            percpu: Arc::new(PercpuChip::new(ch.clone())),
            pirq: Arc::new(PirqChip::new(ch.clone())),
            ch,
            first_irq,
        }
    }

    /// The event channels.
    pub fn channels(&self) -> &Arc<EventChannels> {
        &self.ch
    }

    /// Gives `port` a descriptor with `chip` and `flow`; on failure the
    /// port is closed again and nothing is left allocated.
    fn attach<P: Platform>(
        &self,
        core: &IrqCore<P>,
        port: Port,
        chip: Arc<dyn IrqChip>,
        flow: FlowKind,
    ) -> Result<IrqNumber, EvtchnError> {
        let undo_port = |e: EvtchnError| {
            let _ = self.ch.close(port);
            e
        };
        let irq = core
            .alloc_descs(self.first_irq, 1)
            .map_err(|e| undo_port(e.into()))?;
        let level = ChipLevel {
            chip,
            hwirq: HwIrq(u64::from(port.0)),
            chip_data: port.index(),
        };
        let wired = core
            .set_chip(irq, vec![level], flow)
            .map_err(EvtchnError::from)
            .and_then(|()| self.ch.set_irq(port, irq));
        if let Err(e) = wired {
            let _ = core.free_descs(irq, 1);
            return Err(undo_port(e));
        }
        Ok(irq)
    }

    /// Connects to `remote_port` of `remote_dom` (edge flow; late EOI if
    /// asked, for backends).
    pub fn bind_interdomain<P: Platform>(
        &self,
        core: &IrqCore<P>,
        remote_dom: DomId,
        remote_port: Port,
        late_eoi: bool,
    ) -> Result<(Port, IrqNumber), EvtchnError> {
        let port = self
            .ch
            .bind_interdomain(remote_dom, remote_port, late_eoi)?;
        let chip: Arc<dyn IrqChip> = if late_eoi {
            self.lateeoi.clone()
        } else {
            self.dynamic.clone()
        };
        Ok((port, self.attach(core, port, chip, FlowKind::Edge)?))
    }

    /// Allocates an unbound port for `remote_dom` (edge flow).
    pub fn alloc_unbound<P: Platform>(
        &self,
        core: &IrqCore<P>,
        remote_dom: DomId,
    ) -> Result<(Port, IrqNumber), EvtchnError> {
        let port = self.ch.alloc_unbound(remote_dom)?;
        Ok((
            port,
            self.attach(core, port, self.dynamic.clone(), FlowKind::Edge)?,
        ))
    }

    /// Binds a global VIRQ on vCPU `vcpu` (Xen accepts only 0) with the
    /// edge flow; movable with `set_affinity`.
    pub fn bind_global_virq<P: Platform>(
        &self,
        core: &IrqCore<P>,
        virq: Virq,
        vcpu: VcpuId,
    ) -> Result<(Port, IrqNumber), EvtchnError> {
        let port = self.ch.bind_global_virq(virq, vcpu)?;
        Ok((
            port,
            self.attach(core, port, self.dynamic.clone(), FlowKind::Edge)?,
        ))
    }

    /// Binds a PIRQ: fasteoi for a level (shareable GSI) line, edge for an
    /// MSI.
    pub fn bind_pirq<P: Platform>(
        &self,
        core: &IrqCore<P>,
        pirq: Pirq,
        will_share: bool,
        level: bool,
    ) -> Result<(Port, IrqNumber), EvtchnError> {
        let port = self.ch.bind_pirq(pirq, will_share)?;
        let flow = if level {
            FlowKind::FastEoi
        } else {
            FlowKind::Edge
        };
        Ok((port, self.attach(core, port, self.pirq.clone(), flow)?))
    }

    /// Closes the port of `irq` and frees its descriptor. The handlers must
    /// have been freed (else `HasHandlers`, nothing changed).
    pub fn unbind<P: Platform>(&self, core: &IrqCore<P>, port: Port) -> Result<(), EvtchnError> {
        let irq = self.ch.irq_of(port).ok_or(EvtchnError::NotBound(port))?;
        if !core.snapshot(irq)?.handlers.is_empty() {
            return Err(IrqError::HasHandlers(irq).into());
        }
        if core.sparse_lock_held() {
            return Err(IrqError::SparseLockHeldByCaller.into());
        }
        // Close first: from here on no upcall dispatches the old irq number,
        // which the core may hand out again once freed.
        self.ch.close(port)?;
        core.free_descs(irq, 1)?;
        Ok(())
    }

    /// Hotplug *prepare* phase for `cpu` (outside the sparse lock): binds its
    /// IPIs and per-vCPU VIRQs and gives each a percpu descriptor. On any
    /// failure everything done here is undone.
    pub fn prepare_cpu<P: Platform>(
        &self,
        core: &IrqCore<P>,
        cpu: CpuId,
    ) -> Result<PerVcpuIrqs, EvtchnError> {
        if core.sparse_lock_held() {
            return Err(IrqError::SparseLockHeldByCaller.into());
        }
        let vcpu = VcpuId::from_cpu(cpu);
        let ports: PerVcpuPorts = self.ch.prepare_vcpu(vcpu)?;
        let mut out = PerVcpuIrqs::default();
        let all = ports
            .ipis
            .iter()
            .map(|&p| (None, p))
            .chain(ports.virqs.iter().map(|&(v, p)| (Some(v), p)));
        let mut failed = None;
        for (virq, port) in all.clone() {
            match self.attach(core, port, self.percpu.clone(), FlowKind::PerCpu) {
                Ok(irq) => match virq {
                    None => out.ipis.push((port, irq)),
                    Some(v) => out.virqs.push((v, port, irq)),
                },
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failed {
            // `attach` closed the failing port; undo the others.
            let done: Vec<(Port, IrqNumber)> = out
                .ipis
                .iter()
                .copied()
                .chain(out.virqs.iter().map(|&(_, p, i)| (p, i)))
                .collect();
            for (port, irq) in done {
                let _ = self.ch.close(port);
                let _ = core.free_descs(irq, 1);
            }
            for (_, port) in all {
                if self.ch.binding(port).is_some() {
                    let _ = self.ch.close(port);
                }
            }
            let _ = self.ch.vcpu_dead(vcpu);
            return Err(e);
        }
        Ok(out)
    }

    /// Hotplug *dead* phase for `cpu` (the CPU no longer runs; outside the
    /// sparse lock): closes its IPIs and per-vCPU VIRQs and frees their
    /// descriptors. With `free_handlers` the handlers still installed on
    /// them are freed first (nothing can call them: their vCPU is dead);
    /// without, such a handler makes it fail with `HasHandlers`, changing
    /// nothing.
    pub fn cpu_dead<P: Platform>(
        &self,
        core: &IrqCore<P>,
        cpu: CpuId,
        free_handlers: bool,
    ) -> Result<PerVcpuIrqs, EvtchnError> {
        if core.sparse_lock_held() {
            return Err(IrqError::SparseLockHeldByCaller.into());
        }
        let vcpu = VcpuId::from_cpu(cpu);
        let cfg = self.ch.config();
        let ipis: Vec<Port> = (0..cfg.nr_ipis)
            .filter_map(|i| self.ch.ipi_port(i, vcpu))
            .collect();
        let virqs: Vec<(Virq, Port)> = cfg
            .per_vcpu_virqs
            .iter()
            .filter_map(|&v| self.ch.per_vcpu_virq_port(v, vcpu).map(|p| (v, p)))
            .collect();
        // Check first so a refusal changes nothing.
        for &p in ipis.iter().chain(virqs.iter().map(|(_, p)| p)) {
            if let Some(irq) = self.ch.irq_of(p)
                && !free_handlers
                && !core.snapshot(irq)?.handlers.is_empty()
            {
                return Err(IrqError::HasHandlers(irq).into());
            }
        }
        if free_handlers {
            for &p in ipis.iter().chain(virqs.iter().map(|(_, p)| p)) {
                let Some(irq) = self.ch.irq_of(p) else {
                    continue;
                };
                for (_, dev) in core.snapshot(irq)?.handlers {
                    core.free_irq(irq, dev)?;
                }
            }
        }
        let irqs_of = |p: Port| self.ch.irq_of(p);
        let mut out = PerVcpuIrqs::default();
        for &p in &ipis {
            if let Some(irq) = irqs_of(p) {
                out.ipis.push((p, irq));
            }
        }
        for &(v, p) in &virqs {
            if let Some(irq) = irqs_of(p) {
                out.virqs.push((v, p, irq));
            }
        }
        self.ch.vcpu_dead(vcpu)?;
        for irq in out
            .ipis
            .iter()
            .map(|&(_, i)| i)
            .chain(out.virqs.iter().map(|&(_, _, i)| i))
        {
            core.free_descs(irq, 1)?;
        }
        Ok(out)
    }

    /// The upcall on the calling CPU: dispatches each pending port's irq
    /// through [`IrqCore::handle_irq`]. Returns the number of passes (see
    /// [`EventChannels::upcall`]).
    pub fn upcall<P: Platform>(&self, core: &IrqCore<P>, max_passes: u32) -> u32 {
        let vcpu = VcpuId::from_cpu(core.platform().current_cpu());
        self.ch
            .upcall(vcpu, max_passes, &mut |irq| core.handle_irq(irq))
    }

    /// The irq of IPI kind `ipi` on `cpu`.
    pub fn ipi_irq(&self, ipi: u32, cpu: CpuId) -> Option<IrqNumber> {
        self.ch
            .ipi_port(ipi, VcpuId::from_cpu(cpu))
            .and_then(|p| self.ch.irq_of(p))
    }
}

impl XenIrqs {
    /// Registers the backend's hotplug callbacks with `core`: per-vCPU
    /// channels in [`CpuPhase::Prepare`] (bound going up, closed after the
    /// CPU is dead, handlers included) and the vCPU's availability as an
    /// affinity target in [`CpuPhase::Online`].
    pub fn register_hotplug<P: Platform + 'static>(
        &self,
        core: &IrqCore<P>,
    ) -> Result<(), IrqError> {
        core.register_hotplug(
            CpuPhase::Prepare,
            Arc::new(PerVcpuChannels { xen: self.clone() }),
        )?;
        core.register_hotplug(
            CpuPhase::Online,
            Arc::new(VcpuAvailability {
                ch: self.ch.clone(),
            }),
        )
    }
}

/// The hotplug view of an [`EvtchnError`].
fn to_irq_error(e: EvtchnError) -> IrqError {
    match e {
        EvtchnError::Irq(e) => e,
        EvtchnError::Xen(x) => IrqError::Chip(ChipError::from(x)),
        EvtchnError::BadVcpu(v) | EvtchnError::VcpuOffline(v) => {
            v.cpu().map_or(IrqError::InvalidArgument, IrqError::BadCpu)
        }
        _ => IrqError::InvalidArgument,
    }
}

/// [`CpuPhase::Prepare`]: binds the per-vCPU channels before the bring-up
/// (sparse lock free) and closes them after the CPU is dead.
struct PerVcpuChannels {
    xen: XenIrqs,
}

impl<P: Platform> HotplugCallback<P> for PerVcpuChannels {
    fn name(&self) -> &str {
        "xen-evtchn: per-vCPU IPIs and VIRQs"
    }
    fn up(&self, ctx: &HotplugCtx<'_, P>) -> Result<(), IrqError> {
        self.xen
            .prepare_cpu(ctx.core, ctx.cpu)
            .map(|_| ())
            .map_err(to_irq_error)
    }
    fn down(&self, ctx: &HotplugCtx<'_, P>) {
        // Cannot fail by contract; a port Xen refuses to close stays bound
        // and is reported by `binding()`.
        let _ = self.xen.cpu_dead(ctx.core, ctx.cpu, true);
    }
}

/// [`CpuPhase::Online`]: the vCPU takes affinity requests while online.
struct VcpuAvailability {
    ch: Arc<EventChannels>,
}

impl<P: Platform> HotplugCallback<P> for VcpuAvailability {
    fn name(&self) -> &str {
        "xen-evtchn: vCPU online"
    }
    fn up(&self, ctx: &HotplugCtx<'_, P>) -> Result<(), IrqError> {
        self.ch.vcpu_online(VcpuId::from_cpu(ctx.cpu));
        Ok(())
    }
    fn down(&self, ctx: &HotplugCtx<'_, P>) {
        self.ch.vcpu_offline(VcpuId::from_cpu(ctx.cpu));
    }
}
