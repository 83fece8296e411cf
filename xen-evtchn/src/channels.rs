//! The guest's event-channel bookkeeping: which port is bound to what, on
//! which vCPU, connected to which irq; why it is masked; and the upcall.
//!
//! [`EventChannels`] is independent of `IrqCore`: the upcall hands irq
//! numbers to a dispatch function (`IrqCore::handle_irq` in a kernel), and
//! the chips in [`crate::chip`] call back into it. The wiring into
//! `IrqCore` lives in [`crate::irq`].

//! Lock order (never taken the other way round): the bind lock, then a
//! port's state lock, then the deferred-EOI queue; the hypervisor (model)
//! is called with any of them held. Chip callbacks (called by `IrqCore` with
//! the descriptor lock held) take only port state locks; nothing here calls
//! into `IrqCore`.

use crate::abi::NR_VIRQS;
use crate::error::EvtchnError;
use crate::ids::{DomId, Pirq, Port, VcpuId, Virq};
use crate::ops::EventChannelOps;
use crate::port_layer::{EvtchnAbi, PortLayer};
use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use irqcore::{CpuMask, IrqError, IrqNumber};
use spin::{Mutex, Once};

const NO_IRQ: u32 = u32::MAX;
const NO_PORT: u32 = 0;

/// What a port is bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelKind {
    /// Allocated for `remote_dom`, not connected yet.
    Unbound {
        /// The domain allowed to bind.
        remote_dom: DomId,
    },
    /// Connected to a port of another domain.
    Interdomain {
        /// The peer domain.
        remote_dom: DomId,
        /// The peer's port.
        remote_port: Port,
    },
    /// A global (or per-domain) VIRQ: bound on vCPU 0, movable.
    GlobalVirq(Virq),
    /// A per-vCPU VIRQ: fixed to its vCPU.
    PerVcpuVirq(Virq),
    /// An IPI of kind `0..nr_ipis`: fixed to its vCPU.
    Ipi(u32),
    /// A physical IRQ.
    Pirq {
        /// The PIRQ.
        pirq: Pirq,
        /// Whether Xen wants `PHYSDEVOP_eoi` after each event.
        needs_eoi: bool,
    },
}

impl ChannelKind {
    /// Whether `EVTCHNOP_bind_vcpu` may move this channel.
    pub const fn is_movable(&self) -> bool {
        !matches!(self, ChannelKind::PerVcpuVirq(_) | ChannelKind::Ipi(_))
    }
}

/// A port's binding as the guest records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding {
    /// What the port is bound to.
    pub kind: ChannelKind,
    /// The vCPU it is delivered to.
    pub vcpu: VcpuId,
    /// Whether the channel uses late EOI (backends).
    pub late_eoi: bool,
}

/// Why a port is masked. The shared mask bit is set while any reason is
/// present, so a temporary unmask (rebind, retrigger) never unmasks a port
/// the driver disabled or that waits for its late EOI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MaskReasons(u8);

impl MaskReasons {
    /// Disabled/masked by the interrupt core.
    pub const EXPLICIT: MaskReasons = MaskReasons(1 << 0);
    /// Masked around a rebind or retrigger.
    pub const TEMPORARY: MaskReasons = MaskReasons(1 << 1);
    /// Acked, waiting for the driver's late EOI.
    pub const EOI_PENDING: MaskReasons = MaskReasons(1 << 2);

    /// Whether no reason is present.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// Whether `other` is present.
    pub const fn contains(self, other: MaskReasons) -> bool {
        self.0 & other.0 == other.0
    }
}

#[derive(Debug, Default)]
struct PortState {
    binding: Option<Binding>,
    mask: MaskReasons,
    /// Consecutive spurious late EOIs (storm back-off).
    spurious: u32,
}

impl PortInfo {
    fn new() -> Self {
        Self {
            irq: AtomicU32::new(NO_IRQ),
            active: AtomicBool::new(false),
            state: Mutex::new(PortState::default()),
        }
    }
}

/// Ports per chunk of the guest's port table (one FIFO event-array page).
const PORTS_PER_CHUNK: u32 = 1024;

/// The guest's per-port state, grown a chunk at a time as Xen hands out
/// ports (131072 FIFO ports preallocated would be ~5 MiB for a guest that
/// uses a few dozen). Readers (the upcall) never lock: a chunk is
/// published once, complete, and never freed.
struct PortTable {
    max_ports: u32,
    chunks: Vec<Once<Box<[PortInfo]>>>,
}

impl PortTable {
    fn new(max_ports: u32) -> Self {
        Self {
            max_ports,
            chunks: (0..max_ports.div_ceil(PORTS_PER_CHUNK))
                .map(|_| Once::new())
                .collect(),
        }
    }

    fn get(&self, port: Port) -> Option<&PortInfo> {
        let chunk = self
            .chunks
            .get((port.0 / PORTS_PER_CHUNK) as usize)?
            .get()?;
        chunk.get((port.0 % PORTS_PER_CHUNK) as usize)
    }

    /// Makes sure `port`'s chunk exists. The chunk is built before it is
    /// published (no lock is held while allocating; a chunk built by a
    /// racing caller that lost is dropped).
    fn ensure(&self, port: Port) -> Result<(), EvtchnError> {
        let slot = self
            .chunks
            .get((port.0 / PORTS_PER_CHUNK) as usize)
            .filter(|_| port.0 < self.max_ports)
            .ok_or(EvtchnError::PortOutOfRange(port))?;
        if slot.get().is_some() {
            return Ok(());
        }
        let mut chunk = Vec::new();
        chunk
            .try_reserve_exact(PORTS_PER_CHUNK as usize)
            .map_err(|_| EvtchnError::OutOfMemory)?;
        chunk.extend((0..PORTS_PER_CHUNK).map(|_| PortInfo::new()));
        let chunk = chunk.into_boxed_slice();
        slot.call_once(|| chunk);
        Ok(())
    }
}

#[derive(Debug)]
struct PortInfo {
    irq: AtomicU32,
    /// Set by the scan before dispatching, cleared by the ack (or the late
    /// EOI): the same event is never handled on two vCPUs at once.
    active: AtomicBool,
    state: Mutex<PortState>,
}

/// Hotplug state of one vCPU as this layer sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum VcpuState {
    /// No per-vCPU channels bound (before prepare or after dead).
    Down = 0,
    /// Per-vCPU channels bound, CPU not online yet (or going down).
    Prepared = 1,
    /// Online.
    Online = 2,
}

/// Configuration of [`EventChannels`].
#[derive(Clone, Debug)]
pub struct Config {
    /// IPI kinds bound on every vCPU (reschedule, call-function, ...).
    pub nr_ipis: u32,
    /// Per-vCPU VIRQs bound on every vCPU in the prepare phase
    /// (typically [`Virq::TIMER`]).
    pub per_vcpu_virqs: Vec<Virq>,
    /// Spurious late EOIs tolerated before the unmask is delayed.
    pub spurious_threshold: u32,
    /// Longest late-EOI back-off, in milliseconds.
    pub max_backoff_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            nr_ipis: 2,
            per_vcpu_virqs: alloc::vec![Virq::TIMER],
            spurious_threshold: 1,
            max_backoff_ms: 1000,
        }
    }
}

/// The ports bound for one vCPU in the prepare phase.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PerVcpuPorts {
    /// IPI ports, by kind.
    pub ipis: Vec<Port>,
    /// Per-vCPU VIRQ ports, in [`Config::per_vcpu_virqs`] order.
    pub virqs: Vec<(Virq, Port)>,
}

/// Outcome of [`EventChannels::late_eoi`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LateEoi {
    /// The port is unmasked again (if nothing else masks it).
    Unmasked,
    /// Storm back-off: the unmask happens in
    /// [`EventChannels::run_deferred_eois`] at `until_ms` or later.
    Deferred {
        /// When the unmask is due.
        until_ms: u64,
    },
}

/// Counters of the upcall path.
#[derive(Debug, Default)]
pub struct UpcallStats {
    /// Upcall passes (one `upcall_pending` clear + scan each).
    pub passes: AtomicU64,
    /// Ports dispatched to their irq.
    pub dispatched: AtomicU64,
    /// Pending ports without an irq (ignored; left pending).
    pub unbound: AtomicU64,
    /// Ports skipped because the event was being handled elsewhere.
    pub busy: AtomicU64,
}

/// The guest side of event channels on one domain.
pub struct EventChannels {
    ops: Arc<dyn EventChannelOps>,
    layer: Box<dyn PortLayer>,
    config: Config,
    ports: PortTable,
    /// Serialises bind and close against each other (a port freed by one
    /// close can be handed out to the next bind at once).
    bind_lock: Mutex<()>,
    vcpu_state: Vec<AtomicU8>,
    ipi_ports: Vec<Vec<AtomicU32>>,
    per_vcpu_virq_ports: Vec<[AtomicU32; NR_VIRQS as usize]>,
    /// Global VIRQs are tracked once, not per vCPU (a per-vCPU entry left
    /// behind after a move would be found by a later re-bind; 2025 fix).
    global_virq_ports: [AtomicU32; NR_VIRQS as usize],
    channels_per_vcpu: Vec<AtomicU32>,
    deferred_eois: Mutex<Vec<(u64, Port)>>,
    current_vcpu: Box<dyn Fn() -> VcpuId + Send + Sync>,
    stats: UpcallStats,
}

impl core::fmt::Debug for EventChannels {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EventChannels")
            .field("nr_vcpus", &self.layer.nr_vcpus())
            .field("config", &self.config)
            .finish()
    }
}

impl EventChannels {
    /// Event channels over `ops` (hypercalls) and `layer` (the ABI), with
    /// `current_vcpu` telling which vCPU runs the caller.
    ///
    /// Masks every port, as a guest must at start-up: Xen keeps mask bits
    /// across close and reuse, so a port could otherwise arrive unmasked.
    pub fn new(
        ops: Arc<dyn EventChannelOps>,
        layer: Box<dyn PortLayer>,
        config: Config,
        current_vcpu: Box<dyn Fn() -> VcpuId + Send + Sync>,
    ) -> Self {
        let n = layer.nr_vcpus() as usize;
        for p in 0..layer.max_ports() {
            layer.mask(Port(p));
        }
        Self {
            ports: PortTable::new(layer.max_ports()),
            bind_lock: Mutex::new(()),
            vcpu_state: (0..n)
                .map(|_| AtomicU8::new(VcpuState::Down as u8))
                .collect(),
            ipi_ports: (0..n)
                .map(|_| {
                    (0..config.nr_ipis)
                        .map(|_| AtomicU32::new(NO_PORT))
                        .collect()
                })
                .collect(),
            per_vcpu_virq_ports: (0..n)
                .map(|_| [const { AtomicU32::new(NO_PORT) }; NR_VIRQS as usize])
                .collect(),
            global_virq_ports: [const { AtomicU32::new(NO_PORT) }; NR_VIRQS as usize],
            channels_per_vcpu: (0..n).map(|_| AtomicU32::new(0)).collect(),
            deferred_eois: Mutex::new(Vec::new()),
            ops,
            layer,
            config,
            current_vcpu,
            stats: UpcallStats::default(),
        }
    }

    /// The hypercall interface.
    pub fn ops(&self) -> &dyn EventChannelOps {
        &*self.ops
    }

    /// The port layer (ABI).
    pub fn layer(&self) -> &dyn PortLayer {
        &*self.layer
    }

    /// The event-channel ABI in use.
    pub fn abi(&self) -> EvtchnAbi {
        self.layer.abi()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Upcall counters.
    pub fn stats(&self) -> &UpcallStats {
        &self.stats
    }

    /// Number of vCPUs.
    pub fn nr_vcpus(&self) -> u32 {
        self.layer.nr_vcpus()
    }

    fn info(&self, port: Port) -> Result<&PortInfo, EvtchnError> {
        match self.ports.get(port) {
            Some(info) => Ok(info),
            // In range but never handed out: not ours.
            None if port.0 < self.layer.max_ports() => Err(EvtchnError::NotBound(port)),
            None => Err(EvtchnError::PortOutOfRange(port)),
        }
    }

    fn check_vcpu(&self, vcpu: VcpuId) -> Result<(), EvtchnError> {
        if vcpu.0 < self.nr_vcpus() {
            Ok(())
        } else {
            Err(EvtchnError::BadVcpu(vcpu))
        }
    }

    // ----- binding ---------------------------------------------------------

    /// Records a port Xen just handed out. The port stays masked (reason
    /// EXPLICIT) until its irq is started.
    fn register(
        &self,
        port: Port,
        kind: ChannelKind,
        vcpu: VcpuId,
        late_eoi: bool,
    ) -> Result<Port, EvtchnError> {
        // Storage for the port: the guest's table chunk and (FIFO) the
        // event-array page, both allocated here, with only the bind lock
        // held (never taken by the upcall or inside irqcore).
        let grown = self
            .ports
            .ensure(port)
            .and_then(|()| self.layer.setup_port(port, &*self.ops));
        let info = match grown.and_then(|()| self.info(port)) {
            Ok(info) => info,
            Err(e) => {
                // Xen gave a port this guest cannot handle: give it back.
                let _ = self.ops.close(port);
                return Err(e);
            }
        };
        let mut st = info.state.lock();
        self.layer.mask(port);
        st.binding = Some(Binding {
            kind,
            vcpu,
            late_eoi,
        });
        st.mask = MaskReasons::EXPLICIT;
        st.spurious = 0;
        info.active.store(false, Ordering::Release);
        info.irq.store(NO_IRQ, Ordering::Release);
        self.layer.bind_to_vcpu(port, None, vcpu);
        if let Some(c) = self.channels_per_vcpu.get(vcpu.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        Ok(port)
    }

    /// Allocates a port that `remote_dom` may bind.
    pub fn alloc_unbound(&self, remote_dom: DomId) -> Result<Port, EvtchnError> {
        let _g = self.bind_lock.lock();
        let port = self.ops.alloc_unbound(remote_dom)?;
        self.register(port, ChannelKind::Unbound { remote_dom }, VcpuId(0), false)
    }

    /// Connects to `remote_port` of `remote_dom` (delivered to vCPU 0).
    /// `late_eoi` selects the late-EOI protocol (backends).
    pub fn bind_interdomain(
        &self,
        remote_dom: DomId,
        remote_port: Port,
        late_eoi: bool,
    ) -> Result<Port, EvtchnError> {
        let _g = self.bind_lock.lock();
        let port = self.ops.bind_interdomain(remote_dom, remote_port)?;
        self.register(
            port,
            ChannelKind::Interdomain {
                remote_dom,
                remote_port,
            },
            VcpuId(0),
            late_eoi,
        )
    }

    /// Binds a global VIRQ. Xen only accepts vCPU 0; another vCPU gets
    /// `Xen(Invalid)` from Xen (the guest does not second-guess it).
    pub fn bind_global_virq(&self, virq: Virq, vcpu: VcpuId) -> Result<Port, EvtchnError> {
        let _g = self.bind_lock.lock();
        let port = self.ops.bind_virq(virq, vcpu)?;
        let port = self.register(port, ChannelKind::GlobalVirq(virq), vcpu, false)?;
        if let Some(slot) = self.global_virq_ports.get(virq.0 as usize) {
            slot.store(port.0, Ordering::Release);
        }
        Ok(port)
    }

    /// Binds a per-vCPU VIRQ on `vcpu`.
    pub fn bind_per_vcpu_virq(&self, virq: Virq, vcpu: VcpuId) -> Result<Port, EvtchnError> {
        self.check_vcpu(vcpu)?;
        let _g = self.bind_lock.lock();
        let port = self.ops.bind_virq(virq, vcpu)?;
        let port = self.register(port, ChannelKind::PerVcpuVirq(virq), vcpu, false)?;
        if let Some(slot) = self.per_vcpu_virq_ports[vcpu.index()].get(virq.0 as usize) {
            slot.store(port.0, Ordering::Release);
        }
        Ok(port)
    }

    /// Binds IPI kind `ipi` on `vcpu`.
    pub fn bind_ipi(&self, ipi: u32, vcpu: VcpuId) -> Result<Port, EvtchnError> {
        self.check_vcpu(vcpu)?;
        if ipi >= self.config.nr_ipis {
            return Err(EvtchnError::BadIpi(ipi));
        }
        let _g = self.bind_lock.lock();
        let port = self.ops.bind_ipi(vcpu)?;
        let port = self.register(port, ChannelKind::Ipi(ipi), vcpu, false)?;
        self.ipi_ports[vcpu.index()][ipi as usize].store(port.0, Ordering::Release);
        Ok(port)
    }

    /// Binds a physical IRQ and asks Xen whether it needs EOIs.
    pub fn bind_pirq(&self, pirq: Pirq, will_share: bool) -> Result<Port, EvtchnError> {
        let _g = self.bind_lock.lock();
        let port = self.ops.bind_pirq(pirq, will_share)?;
        let needs_eoi = match self.ops.pirq_needs_eoi(pirq) {
            Ok(n) => n,
            Err(e) => {
                let _ = self.ops.close(port);
                return Err(e.into());
            }
        };
        self.register(
            port,
            ChannelKind::Pirq { pirq, needs_eoi },
            VcpuId(0),
            false,
        )
    }

    /// Closes `port`: Xen frees it (and clears its pending bit); the guest
    /// forgets its irq, vCPU and masking state so the port's next user
    /// starts clean. The mask bit is left set (Xen keeps it across reuse).
    pub fn close(&self, port: Port) -> Result<(), EvtchnError> {
        let info = self.info(port)?;
        let _g = self.bind_lock.lock();
        let mut st = info.state.lock();
        let Some(b) = st.binding else {
            return Err(EvtchnError::NotBound(port));
        };
        self.layer.mask(port);
        if let Err(e) = self.ops.close(port) {
            // Leave the state as it was (the mask reasons still say masked
            // if they were; restore an unmasked port).
            if st.mask.is_empty() {
                let _ = self
                    .layer
                    .unmask(port, b.vcpu == self.current(), &*self.ops);
            }
            return Err(e.into());
        }
        self.layer.remove(port, b.vcpu);
        info.irq.store(NO_IRQ, Ordering::Release);
        info.active.store(false, Ordering::Release);
        *st = PortState::default();
        if let Some(c) = self.channels_per_vcpu.get(b.vcpu.index()) {
            c.fetch_sub(1, Ordering::Relaxed);
        }
        let clear = |slot: &AtomicU32| {
            let _ = slot.compare_exchange(port.0, NO_PORT, Ordering::AcqRel, Ordering::Relaxed);
        };
        match b.kind {
            ChannelKind::Ipi(i) => {
                if let Some(s) = self
                    .ipi_ports
                    .get(b.vcpu.index())
                    .and_then(|t| t.get(i as usize))
                {
                    clear(s)
                }
            }
            ChannelKind::PerVcpuVirq(v) => {
                if let Some(s) = self
                    .per_vcpu_virq_ports
                    .get(b.vcpu.index())
                    .and_then(|t| t.get(v.0 as usize))
                {
                    clear(s)
                }
            }
            ChannelKind::GlobalVirq(v) => {
                if let Some(s) = self.global_virq_ports.get(v.0 as usize) {
                    clear(s)
                }
            }
            _ => {}
        }
        self.deferred_eois.lock().retain(|&(_, p)| p != port);
        Ok(())
    }

    /// The guest's record of `port`, if it is bound.
    pub fn binding(&self, port: Port) -> Option<Binding> {
        self.ports.get(port).and_then(|i| i.state.lock().binding)
    }

    /// The current mask reasons of `port`.
    pub fn mask_reasons(&self, port: Port) -> MaskReasons {
        self.ports
            .get(port)
            .map(|i| i.state.lock().mask)
            .unwrap_or_default()
    }

    /// The port of IPI kind `ipi` on `vcpu`, if bound.
    pub fn ipi_port(&self, ipi: u32, vcpu: VcpuId) -> Option<Port> {
        let p = self
            .ipi_ports
            .get(vcpu.index())?
            .get(ipi as usize)?
            .load(Ordering::Acquire);
        (p != NO_PORT).then_some(Port(p))
    }

    /// The port of a per-vCPU VIRQ on `vcpu`, if bound.
    pub fn per_vcpu_virq_port(&self, virq: Virq, vcpu: VcpuId) -> Option<Port> {
        let p = self
            .per_vcpu_virq_ports
            .get(vcpu.index())?
            .get(virq.0 as usize)?
            .load(Ordering::Acquire);
        (p != NO_PORT).then_some(Port(p))
    }

    /// The port of a global VIRQ, if bound.
    pub fn global_virq_port(&self, virq: Virq) -> Option<Port> {
        let p = self
            .global_virq_ports
            .get(virq.0 as usize)?
            .load(Ordering::Acquire);
        (p != NO_PORT).then_some(Port(p))
    }

    // ----- irq association -------------------------------------------------

    /// Connects a bound port to `irq`: the upcall dispatches it from now on.
    pub fn set_irq(&self, port: Port, irq: IrqNumber) -> Result<(), EvtchnError> {
        let info = self.info(port)?;
        let st = info.state.lock();
        if st.binding.is_none() {
            return Err(EvtchnError::NotBound(port));
        }
        info.irq
            .compare_exchange(NO_IRQ, irq.0, Ordering::AcqRel, Ordering::Relaxed)
            .map(|_| ())
            .map_err(|_| EvtchnError::PortHasIrq(port))
    }

    /// The irq connected to `port`.
    pub fn irq_of(&self, port: Port) -> Option<IrqNumber> {
        let irq = self.ports.get(port)?.irq.load(Ordering::Acquire);
        (irq != NO_IRQ).then_some(IrqNumber(irq))
    }

    // ----- masking ---------------------------------------------------------

    fn current(&self) -> VcpuId {
        (self.current_vcpu)()
    }

    /// Adds a mask reason; the first one sets the mask bit.
    pub fn mask(&self, port: Port, reason: MaskReasons) {
        if let Some(info) = self.ports.get(port) {
            let mut st = info.state.lock();
            if st.mask.is_empty() {
                self.layer.mask(port);
            }
            st.mask.0 |= reason.0;
        }
    }

    /// Removes a mask reason; removing the last one runs the unmask
    /// protocol (which re-notifies a pending event).
    pub fn unmask(&self, port: Port, reason: MaskReasons) -> Result<(), EvtchnError> {
        let info = self.info(port)?;
        let mut st = info.state.lock();
        self.unmask_locked(port, &mut st, reason)
    }

    fn unmask_locked(
        &self,
        port: Port,
        st: &mut PortState,
        reason: MaskReasons,
    ) -> Result<(), EvtchnError> {
        let Some(b) = st.binding else {
            return Err(EvtchnError::NotBound(port));
        };
        let was = st.mask;
        st.mask.0 &= !reason.0;
        if !was.is_empty() && st.mask.is_empty() {
            self.layer
                .unmask(port, b.vcpu == self.current(), &*self.ops)?;
        }
        Ok(())
    }

    /// The ack of an event: this vCPU has taken it. Clears "active" before
    /// the pending bit, so a raise after the clear is never skipped as a
    /// duplicate by another vCPU.
    pub fn ack(&self, port: Port) {
        if let Some(info) = self.ports.get(port) {
            info.active.store(false, Ordering::Release);
            self.layer.clear_pending(port);
        }
    }

    /// Sets `port` pending under a temporary mask and unmasks it, so the
    /// unmask protocol delivers it once (retrigger).
    pub fn retrigger(&self, port: Port) -> Result<(), EvtchnError> {
        let info = self.info(port)?;
        let mut st = info.state.lock();
        if st.binding.is_none() {
            return Err(EvtchnError::NotBound(port));
        }
        if st.mask.is_empty() {
            self.layer.mask(port);
        }
        st.mask.0 |= MaskReasons::TEMPORARY.0;
        self.layer.set_pending(port);
        self.unmask_locked(port, &mut st, MaskReasons::TEMPORARY)
    }

    /// Sets the FIFO priority of a bound port (0 highest ..= 15 lowest,
    /// `EVTCHNOP_set_priority`). An event already queued keeps its old
    /// queue; later ones use the new priority. `WrongAbi` under 2-level.
    pub fn set_priority(&self, port: Port, priority: u32) -> Result<(), EvtchnError> {
        if self.layer.abi() != EvtchnAbi::Fifo {
            return Err(EvtchnError::WrongAbi);
        }
        let info = self.info(port)?;
        let st = info.state.lock();
        if st.binding.is_none() {
            return Err(EvtchnError::NotBound(port));
        }
        Ok(self.ops.set_priority(port, priority)?)
    }

    // ----- affinity ----------------------------------------------------------

    /// Moves a movable channel to `vcpu`: temporary mask, `bind_vcpu`,
    /// move the guest's per-vCPU bit, temporary unmask. The unmask is what
    /// re-notifies an event that was pending during the move (Xen does not).
    pub fn rebind(&self, port: Port, vcpu: VcpuId) -> Result<(), EvtchnError> {
        self.check_vcpu(vcpu)?;
        let info = self.info(port)?;
        let mut st = info.state.lock();
        let Some(b) = st.binding else {
            return Err(EvtchnError::NotBound(port));
        };
        if !b.kind.is_movable() {
            return Err(EvtchnError::WrongChannelKind(port));
        }
        if b.vcpu == vcpu {
            return Ok(());
        }
        if st.mask.is_empty() {
            self.layer.mask(port);
        }
        st.mask.0 |= MaskReasons::TEMPORARY.0;
        let moved = self.ops.bind_vcpu(port, vcpu);
        if moved.is_ok() {
            self.layer.bind_to_vcpu(port, Some(b.vcpu), vcpu);
            st.binding = Some(Binding { vcpu, ..b });
            if let Some(c) = self.channels_per_vcpu.get(b.vcpu.index()) {
                c.fetch_sub(1, Ordering::Relaxed);
            }
            if let Some(c) = self.channels_per_vcpu.get(vcpu.index()) {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        let unmasked = self.unmask_locked(port, &mut st, MaskReasons::TEMPORARY);
        moved?;
        unmasked
    }

    /// The vCPU in `mask` an affinity request should pick: online, and with
    /// the fewest channels.
    pub fn pick_vcpu(&self, mask: &CpuMask) -> Option<VcpuId> {
        mask.iter()
            .map(VcpuId::from_cpu)
            .filter(|v| self.vcpu_state(*v) == VcpuState::Online)
            .min_by_key(|v| {
                self.channels_per_vcpu
                    .get(v.index())
                    .map_or(u32::MAX, |c| c.load(Ordering::Relaxed))
            })
    }

    // ----- sending -----------------------------------------------------------

    /// Notifies the other end of `port` (interdomain) or the IPI's vCPU.
    pub fn notify(&self, port: Port) -> Result<(), EvtchnError> {
        Ok(self.ops.send(port)?)
    }

    /// Sends IPI kind `ipi` to `vcpu`. Refused with `VcpuOffline` when the
    /// vCPU's IPIs are not bound (before prepare, after dead), so sending to
    /// a CPU that is not there is an error, not a hang or a crash.
    pub fn send_ipi(&self, ipi: u32, vcpu: VcpuId) -> Result<(), EvtchnError> {
        self.check_vcpu(vcpu)?;
        if ipi >= self.config.nr_ipis {
            return Err(EvtchnError::BadIpi(ipi));
        }
        if self.vcpu_state(vcpu) == VcpuState::Down {
            return Err(EvtchnError::VcpuOffline(vcpu));
        }
        let port = self
            .ipi_port(ipi, vcpu)
            .ok_or(EvtchnError::VcpuOffline(vcpu))?;
        self.notify(port)
    }

    // ----- hotplug -------------------------------------------------------------

    /// The hotplug state of `vcpu` (`Down` for an unknown vCPU).
    pub fn vcpu_state(&self, vcpu: VcpuId) -> VcpuState {
        match self
            .vcpu_state
            .get(vcpu.index())
            .map(|s| s.load(Ordering::Acquire))
        {
            Some(1) => VcpuState::Prepared,
            Some(2) => VcpuState::Online,
            _ => VcpuState::Down,
        }
    }

    fn set_vcpu_state(&self, vcpu: VcpuId, s: VcpuState) {
        if let Some(a) = self.vcpu_state.get(vcpu.index()) {
            a.store(s as u8, Ordering::Release);
        }
    }

    /// Prepare phase of CPU bring-up (runs before the descriptor store's
    /// sparse lock is taken): binds the vCPU's IPIs and per-vCPU VIRQs. On
    /// failure everything bound here is closed again.
    pub fn prepare_vcpu(&self, vcpu: VcpuId) -> Result<PerVcpuPorts, EvtchnError> {
        self.check_vcpu(vcpu)?;
        if self.vcpu_state(vcpu) != VcpuState::Down {
            return Err(EvtchnError::Irq(IrqError::Busy));
        }
        // FIFO: the vCPU's control block must be registered before anything
        // bound to it can be delivered.
        self.layer.prepare_vcpu(vcpu, &*self.ops)?;
        let mut out = PerVcpuPorts::default();
        let result = (|| {
            for ipi in 0..self.config.nr_ipis {
                out.ipis.push(self.bind_ipi(ipi, vcpu)?);
            }
            for &virq in &self.config.per_vcpu_virqs {
                out.virqs.push((virq, self.bind_per_vcpu_virq(virq, vcpu)?));
            }
            Ok(())
        })();
        match result {
            Ok(()) => {
                self.set_vcpu_state(vcpu, VcpuState::Prepared);
                Ok(out)
            }
            Err(e) => {
                for p in out.ipis.iter().chain(out.virqs.iter().map(|(_, p)| p)) {
                    let _ = self.close(*p);
                }
                Err(e)
            }
        }
    }

    /// Marks `vcpu` online (it takes affinity requests from now on).
    pub fn vcpu_online(&self, vcpu: VcpuId) {
        if self.vcpu_state(vcpu) == VcpuState::Prepared {
            self.set_vcpu_state(vcpu, VcpuState::Online);
        }
    }

    /// Marks `vcpu` as going down (no new affinity targets it).
    pub fn vcpu_offline(&self, vcpu: VcpuId) {
        if self.vcpu_state(vcpu) == VcpuState::Online {
            self.set_vcpu_state(vcpu, VcpuState::Prepared);
        }
    }

    /// Dead phase of CPU tear-down (the vCPU no longer runs): closes its
    /// IPIs and per-vCPU VIRQs and returns the ports that were closed.
    pub fn vcpu_dead(&self, vcpu: VcpuId) -> Result<PerVcpuPorts, EvtchnError> {
        self.check_vcpu(vcpu)?;
        let mut out = PerVcpuPorts::default();
        for ipi in 0..self.config.nr_ipis {
            if let Some(p) = self.ipi_port(ipi, vcpu) {
                self.close(p)?;
                out.ipis.push(p);
            }
        }
        for &virq in &self.config.per_vcpu_virqs {
            if let Some(p) = self.per_vcpu_virq_port(virq, vcpu) {
                self.close(p)?;
                out.virqs.push((virq, p));
            }
        }
        self.layer.vcpu_dead(vcpu, &*self.ops);
        self.set_vcpu_state(vcpu, VcpuState::Down);
        Ok(out)
    }

    // ----- late EOI ----------------------------------------------------------

    /// The driver's late EOI for a late-EOI channel: it can take the next
    /// event. `spurious` says the event brought no work; past
    /// [`Config::spurious_threshold`] consecutive spurious events the unmask
    /// is delayed by `2^(n - 1 - threshold)` ms, capped at
    /// [`Config::max_backoff_ms`]; a real event resets the count.
    pub fn late_eoi(
        &self,
        port: Port,
        spurious: bool,
        now_ms: u64,
    ) -> Result<LateEoi, EvtchnError> {
        let info = self.info(port)?;
        let mut st = info.state.lock();
        match st.binding {
            Some(b) if b.late_eoi => {}
            Some(_) => return Err(EvtchnError::WrongChannelKind(port)),
            None => return Err(EvtchnError::NotBound(port)),
        }
        if spurious {
            st.spurious = st.spurious.saturating_add(1);
        } else {
            st.spurious = 0;
        }
        info.active.store(false, Ordering::Release);
        if st.spurious > self.config.spurious_threshold {
            let shift = (st.spurious - 1 - self.config.spurious_threshold).min(63);
            let delay = (1u64 << shift).min(self.config.max_backoff_ms);
            let until_ms = now_ms.saturating_add(delay);
            let mut q = self.deferred_eois.lock();
            q.retain(|&(_, p)| p != port);
            let at = q.partition_point(|&(due, _)| due <= until_ms);
            q.insert(at, (until_ms, port));
            return Ok(LateEoi::Deferred { until_ms });
        }
        self.unmask_locked(port, &mut st, MaskReasons::EOI_PENDING)?;
        Ok(LateEoi::Unmasked)
    }

    /// Performs the deferred late EOIs due at `now_ms`; returns how many.
    /// A kernel calls this from a timer.
    pub fn run_deferred_eois(&self, now_ms: u64) -> usize {
        let due: Vec<Port> = {
            let mut q = self.deferred_eois.lock();
            let n = q.partition_point(|&(due, _)| due <= now_ms);
            q.drain(..n).map(|(_, p)| p).collect()
        };
        for &p in &due {
            let _ = self.unmask(p, MaskReasons::EOI_PENDING);
        }
        due.len()
    }

    // ----- upcall ------------------------------------------------------------

    fn handle_port(&self, port: Port, dispatch: &mut dyn FnMut(IrqNumber) -> Result<(), IrqError>) {
        let Some(info) = self.ports.get(port) else {
            return;
        };
        let irq = info.irq.load(Ordering::Acquire);
        if irq == NO_IRQ {
            // Not ours (closed meanwhile, or not connected yet): leave it.
            self.stats.unbound.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if info.active.swap(true, Ordering::Acquire) {
            // Being handled on another vCPU; it stays pending.
            self.stats.busy.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.stats.dispatched.fetch_add(1, Ordering::Relaxed);
        if dispatch(IrqNumber(irq)).is_err() {
            // No flow ran, so no ack will clear it.
            info.active.store(false, Ordering::Release);
        }
    }

    /// One pass of the upcall on `vcpu`: clears `upcall_pending`, handles
    /// the vCPU's timer VIRQ first, then scans. Returns whether
    /// `upcall_pending` was set again meanwhile (another pass is needed).
    pub fn upcall_pass(
        &self,
        vcpu: VcpuId,
        dispatch: &mut dyn FnMut(IrqNumber) -> Result<(), IrqError>,
    ) -> bool {
        self.stats.passes.fetch_add(1, Ordering::Relaxed);
        self.layer.clear_upcall_pending(vcpu);
        if let Some(timer) = self.per_vcpu_virq_port(Virq::TIMER, vcpu)
            && self.layer.is_deliverable(timer, vcpu)
        {
            self.handle_port(timer, dispatch);
        }
        self.layer
            .scan(vcpu, &mut |port| self.handle_port(port, dispatch));
        self.layer.upcall_pending(vcpu)
    }

    /// The upcall (event-channel interrupt entry) on `vcpu`, with interrupts
    /// disabled: passes until `upcall_pending` stays clear, at most
    /// `max_passes`. Returns the number of passes; if it equals
    /// `max_passes` the flag may still be set and the kernel should come
    /// back (the vector callback re-injects while it is set).
    pub fn upcall(
        &self,
        vcpu: VcpuId,
        max_passes: u32,
        dispatch: &mut dyn FnMut(IrqNumber) -> Result<(), IrqError>,
    ) -> u32 {
        let mut passes = 0;
        while passes < max_passes {
            passes += 1;
            if !self.upcall_pass(vcpu, dispatch) {
                break;
            }
        }
        passes
    }
}
