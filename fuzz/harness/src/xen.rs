//! `xen_upcall`: bind, raise, mask, unmask, rebind and close event channels
//! of a two-vCPU guest against xen-evtchn's hypervisor model, with the
//! upcall dispatching into a real [`IrqCore`].
//!
//! Channels: unbound ports the "device" raises directly, interdomain ports
//! the peer domain (dom0) sends on, and each vCPU's timer VIRQ and IPI
//! (per-CPU irqs bound when the vCPU is prepared).
//!
//! Checked: every call's result; a handler never runs more often than its
//! channel was raised, and only on a vCPU; no raise is lost (after every
//! line is enabled again, replays are delivered and each vCPU's upcall has
//! run until quiet, every raise was followed by a handler run); closing a
//! closed port is `NotBound`; teardown closes everything: the descriptor
//! count returns to zero and the hypervisor reports every port of both
//! domains closed.
//!
//! The hypervisor model leaks one shared page per domain it creates (by
//! design: the guest holds it `'static`), so the model and its two domains
//! are created once per thread and reused; each execution builds fresh
//! guest-side state (channels, port layer, core) over them, and proves at
//! its end that it left the hypervisor as it found it.

use crate::check;
use crate::platform::{FuzzPlatform, cpu, set_cpu};
use arbitrary::{Arbitrary, Unstructured};
use irqcore::{
    CoreConfig, CpuId, CpuMask, DevId, IrqCore, IrqNumber, IrqRequest, IrqReturn, RequestFlags,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use xen_evtchn::model::{DomainHandle, HypervisorModel};
use xen_evtchn::{
    ChannelState, Config, DomId, EventChannelOps, EventChannels, EvtchnError, Port, PortLayer,
    TwoLevel, VcpuId, Virq, XenIrqs,
};

const GUEST: DomId = DomId(1);
const PEER: DomId = DomId(0);
const NR_VCPUS: u32 = 2;
const MAX_OPS: usize = 96;
/// Ports checked for leftovers (far more than an execution can bind).
const SCAN_PORTS: u32 = 256;

struct Hyp {
    model: Arc<HypervisorModel>,
    guest: DomainHandle,
    peer: DomainHandle,
}

thread_local! {
    static HYP: Hyp = {
        let model = HypervisorModel::new();
        let guest = model.create_domain(GUEST, NR_VCPUS).expect("guest domain");
        let peer = model.create_domain(PEER, 1).expect("peer domain");
        Hyp { model, guest, peer }
    };
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    BindUnbound,
    BindInterdomain,
    Raise { ch: u8 },
    Timer { vcpu: u8 },
    Ipi { vcpu: u8 },
    Upcall { vcpu: u8 },
    Mask { ch: u8 },
    Unmask { ch: u8 },
    Rebind { ch: u8, vcpu: u8 },
    Close { ch: u8 },
    CloseAgain { ch: u8 },
    Replays { vcpu: u8 },
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Unbound,
    Interdomain { peer_port: Port },
    Timer,
    Ipi,
}

struct Chan {
    kind: Kind,
    port: Port,
    irq: IrqNumber,
    vcpu: u32,
    open: bool,
    depth: u32,
    raises: u64,
    owed: bool,
    calls: Arc<AtomicU64>,
}

struct Harness<'a> {
    hyp: &'a Hyp,
    core: &'a IrqCore<FuzzPlatform>,
    xen: &'a XenIrqs,
    chans: Vec<Chan>,
    step: usize,
}

impl Harness<'_> {
    fn handler(calls: Arc<AtomicU64>) -> Arc<dyn irqcore::IrqHandler> {
        Arc::new(move |_irq: IrqNumber| {
            check!(cpu().get() < NR_VCPUS, "handler ran on {:?}", cpu());
            calls.fetch_add(1, Ordering::SeqCst);
            IrqReturn::HANDLED
        })
    }

    fn add(&mut self, kind: Kind, port: Port, irq: IrqNumber, percpu: bool, vcpu: u32) {
        let calls = Arc::new(AtomicU64::new(0));
        let mut req = IrqRequest::new("fuzz", Self::handler(calls.clone())).dev_id(DevId(0));
        if percpu {
            req = req.flags(RequestFlags::PERCPU);
        }
        let r = self.core.request_irq_raw(irq, req);
        check!(
            r.is_ok(),
            "step {}: request on {port:?} ({irq:?}): {r:?}",
            self.step
        );
        if percpu {
            let r = crate::platform::as_cpu(CpuId::new(vcpu).unwrap(), || {
                self.core.enable_percpu_irq(irq, irqcore::TriggerType::None)
            });
            check!(
                r.is_ok(),
                "step {}: enable_percpu_irq {irq:?}: {r:?}",
                self.step
            );
        }
        self.chans.push(Chan {
            kind,
            port,
            irq,
            vcpu,
            open: true,
            depth: 0,
            raises: 0,
            owed: false,
            calls,
        });
    }

    fn open_chan(&self, sel: u8) -> Option<usize> {
        let open: Vec<usize> = (0..self.chans.len())
            .filter(|&i| self.chans[i].open)
            .collect();
        (!open.is_empty()).then(|| open[usize::from(sel) % open.len()])
    }

    fn raised(&mut self, i: usize) {
        let c = &mut self.chans[i];
        c.raises += 1;
        c.owed = true;
    }

    fn check_calls(&self) {
        for c in &self.chans {
            let n = c.calls.load(Ordering::SeqCst);
            check!(
                n <= c.raises,
                "step {}: {:?} port {:?}: handler ran {n} times for {} raises",
                self.step,
                c.kind,
                c.port,
                c.raises
            );
        }
    }

    fn upcall(&mut self, vcpu: u32) {
        let before: Vec<u64> = self
            .chans
            .iter()
            .map(|c| c.calls.load(Ordering::SeqCst))
            .collect();
        set_cpu(CpuId::new(vcpu).unwrap());
        self.xen.upcall(self.core, 8);
        set_cpu(CpuId::BOOT);
        for (i, c) in self.chans.iter_mut().enumerate() {
            if c.calls.load(Ordering::SeqCst) > before[i] {
                c.owed = false;
            }
        }
    }

    fn replays(&mut self, vcpu: u32) {
        for _ in 0..16 {
            let q = self.core.platform().take_resends();
            if q.is_empty() {
                return;
            }
            let before: Vec<u64> = self
                .chans
                .iter()
                .map(|c| c.calls.load(Ordering::SeqCst))
                .collect();
            for irq in q {
                set_cpu(CpuId::new(vcpu).unwrap());
                let _ = self.core.handle_sw_resend(irq);
                set_cpu(CpuId::BOOT);
            }
            for (i, c) in self.chans.iter_mut().enumerate() {
                if c.calls.load(Ordering::SeqCst) > before[i] {
                    c.owed = false;
                }
            }
        }
    }

    fn op(&mut self, op: Op) {
        let core = self.core;
        let xen = self.xen;
        match op {
            Op::BindUnbound => match xen.alloc_unbound(core, PEER) {
                Ok((port, irq)) => self.add(Kind::Unbound, port, irq, false, 0),
                // The core's small irq space or the port space can run out.
                Err(EvtchnError::Irq(irqcore::IrqError::NoSpace)) => {}
                Err(e) => panic!("step {}: alloc_unbound: {e:?}", self.step),
            },
            Op::BindInterdomain => {
                let pp = match self.hyp.peer.alloc_unbound(GUEST) {
                    Ok(p) => p,
                    Err(e) => panic!("step {}: peer alloc_unbound: {e:?}", self.step),
                };
                match xen.bind_interdomain(core, PEER, pp, false) {
                    Ok((port, irq)) => {
                        self.add(Kind::Interdomain { peer_port: pp }, port, irq, false, 0);
                        // Xen sets a freshly bound interdomain port pending
                        // (an event the peer sent before the bind).
                        let i = self.chans.len() - 1;
                        self.raised(i);
                    }
                    Err(EvtchnError::Irq(irqcore::IrqError::NoSpace)) => {
                        let r = self.hyp.peer.close(pp);
                        check!(
                            r.is_ok(),
                            "step {}: peer close after failed bind: {r:?}",
                            self.step
                        );
                    }
                    Err(e) => panic!("step {}: bind_interdomain: {e:?}", self.step),
                }
            }
            Op::Raise { ch } => {
                let Some(i) = self.open_chan(ch) else { return };
                match self.chans[i].kind {
                    Kind::Unbound | Kind::Timer | Kind::Ipi => {
                        self.hyp.model.raise_port(GUEST, self.chans[i].port)
                    }
                    Kind::Interdomain { peer_port } => {
                        let r = self.hyp.peer.send(peer_port);
                        check!(r.is_ok(), "step {}: peer send: {r:?}", self.step);
                    }
                }
                self.raised(i);
            }
            Op::Timer { vcpu } => {
                let v = u32::from(vcpu) % NR_VCPUS;
                let Some(i) = self
                    .chans
                    .iter()
                    .position(|c| c.kind == Kind::Timer && c.vcpu == v)
                else {
                    return;
                };
                let ok = self.hyp.model.raise_virq(GUEST, Virq::TIMER, VcpuId(v));
                check!(
                    ok,
                    "step {}: timer VIRQ of vCPU {v} not bound in the hypervisor",
                    self.step
                );
                self.raised(i);
            }
            Op::Ipi { vcpu } => {
                let v = u32::from(vcpu) % NR_VCPUS;
                let Some(i) = self
                    .chans
                    .iter()
                    .position(|c| c.kind == Kind::Ipi && c.vcpu == v)
                else {
                    return;
                };
                let r = xen.channels().send_ipi(0, VcpuId(v));
                check!(r.is_ok(), "step {}: send_ipi to {v}: {r:?}", self.step);
                self.raised(i);
            }
            Op::Upcall { vcpu } => self.upcall(u32::from(vcpu) % NR_VCPUS),
            Op::Mask { ch } => {
                let Some(i) = self.open_chan(ch) else { return };
                let c = &mut self.chans[i];
                let r = core.disable_irq_nosync(c.irq);
                if matches!(c.kind, Kind::Timer | Kind::Ipi) {
                    check!(
                        r == Err(irqcore::IrqError::IsPerCpu(c.irq)),
                        "step {}: disable percpu: {r:?}",
                        self.step
                    );
                } else {
                    check!(r.is_ok(), "step {}: disable {:?}: {r:?}", self.step, c.irq);
                    c.depth += 1;
                }
            }
            Op::Unmask { ch } => {
                let Some(i) = self.open_chan(ch) else { return };
                let c = &mut self.chans[i];
                let r = core.enable_irq(c.irq);
                if matches!(c.kind, Kind::Timer | Kind::Ipi) {
                    check!(
                        r == Err(irqcore::IrqError::IsPerCpu(c.irq)),
                        "step {}: enable percpu: {r:?}",
                        self.step
                    );
                } else if c.depth == 0 {
                    check!(
                        r == Err(irqcore::IrqError::UnbalancedEnable(c.irq)),
                        "step {}: enable: {r:?}",
                        self.step
                    );
                } else {
                    check!(r.is_ok(), "step {}: enable {:?}: {r:?}", self.step, c.irq);
                    c.depth -= 1;
                }
            }
            Op::Rebind { ch, vcpu } => {
                let Some(i) = self.open_chan(ch) else { return };
                let v = u32::from(vcpu) % NR_VCPUS;
                let c = &mut self.chans[i];
                let r = core.set_affinity(c.irq, &CpuMask::of(CpuId::new(v).unwrap()));
                if matches!(c.kind, Kind::Timer | Kind::Ipi) {
                    check!(
                        r == Err(irqcore::IrqError::IsPerCpu(c.irq)),
                        "step {}: rebind percpu: {r:?}",
                        self.step
                    );
                } else {
                    check!(
                        r.is_ok(),
                        "step {}: rebind {:?} to {v}: {r:?}",
                        self.step,
                        c.port
                    );
                    c.vcpu = v;
                    let eff = core.effective_affinity(c.irq);
                    check!(
                        eff == Ok(CpuMask::of(CpuId::new(v).unwrap())),
                        "step {}: effective {eff:?} after rebind to {v}",
                        self.step
                    );
                }
            }
            Op::Close { ch } => {
                let Some(i) = self.open_chan(ch) else { return };
                if matches!(self.chans[i].kind, Kind::Timer | Kind::Ipi) {
                    return; // closed with their vCPU at teardown
                }
                self.close(i);
            }
            Op::CloseAgain { ch } => {
                let closed: Vec<usize> = (0..self.chans.len())
                    .filter(|&i| !self.chans[i].open)
                    .collect();
                if closed.is_empty() {
                    return;
                }
                let c = &self.chans[closed[usize::from(ch) % closed.len()]];
                // The port may have been reused by a later bind.
                if self.chans.iter().any(|o| o.open && o.port == c.port) {
                    return;
                }
                let r = xen.unbind(core, c.port);
                check!(
                    r == Err(EvtchnError::NotBound(c.port)),
                    "step {}: second close of {:?}: {r:?}",
                    self.step,
                    c.port
                );
            }
            Op::Replays { vcpu } => self.replays(u32::from(vcpu) % NR_VCPUS),
        }
    }

    fn close(&mut self, i: usize) {
        let (port, irq, kind) = (self.chans[i].port, self.chans[i].irq, self.chans[i].kind);
        let r = self.core.free_irq(irq, DevId(0));
        check!(r.is_ok(), "step {}: free_irq {irq:?}: {r:?}", self.step);
        let r = self.xen.unbind(self.core, port);
        check!(r.is_ok(), "step {}: unbind {port:?}: {r:?}", self.step);
        if let Kind::Interdomain { peer_port } = kind {
            let r = self.hyp.peer.close(peer_port);
            check!(
                r.is_ok(),
                "step {}: peer close {peer_port:?}: {r:?}",
                self.step
            );
        }
        self.chans[i].open = false;
    }

    fn quiesce_and_check(&mut self) {
        self.step = usize::MAX;
        for _ in 0..4 {
            for v in 0..NR_VCPUS {
                self.replays(v);
                self.upcall(v);
            }
        }
        self.check_calls();
        for c in &self.chans {
            if c.open {
                check!(
                    !c.owed,
                    "{:?} port {:?} on vCPU {}: a raise was never delivered",
                    c.kind,
                    c.port,
                    c.vcpu
                );
            }
        }
    }
}

fn hypervisor_clean(hyp: &Hyp) -> Result<(), String> {
    for (dom, name) in [(GUEST, "guest"), (PEER, "peer")] {
        for p in 1..SCAN_PORTS {
            if let Ok(s) = hyp.model.status_of(dom, Port(p))
                && s.state != ChannelState::Closed
            {
                return Err(format!("{name} port {p} is {:?}", s.state));
            }
        }
    }
    Ok(())
}

/// The `xen_upcall` fuzz target.
pub fn xen_upcall(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mut ops = Vec::new();
    while !u.is_empty() && ops.len() < MAX_OPS {
        match Op::arbitrary(&mut u) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    HYP.with(|hyp| run(hyp, ops));
}

fn run(hyp: &Hyp, ops: Vec<Op>) {
    set_cpu(CpuId::BOOT);
    if let Err(e) = hypervisor_clean(hyp) {
        panic!("an earlier execution left the hypervisor dirty: {e}");
    }
    let layer = TwoLevel::new(hyp.guest.shared_info(), NR_VCPUS).expect("layer");
    // Pending bits of closed ports survive in the reused shared page.
    for p in 0..layer.max_ports() {
        layer.clear_pending(Port(p));
    }
    for v in 0..NR_VCPUS {
        layer.clear_upcall_pending(VcpuId(v));
    }
    let ch = Arc::new(EventChannels::new(
        Arc::new(hyp.guest.clone()),
        Box::new(layer),
        Config::default(),
        Box::new(|| VcpuId(cpu().get())),
    ));
    let xen = XenIrqs::new(ch.clone(), IrqNumber(8));
    let core = IrqCore::with_config(
        FuzzPlatform::default(),
        CoreConfig {
            capacity: 48,
            nr_cpus: NR_VCPUS,
        },
    );
    let mut h = Harness {
        hyp,
        core: &core,
        xen: &xen,
        chans: Vec::new(),
        step: 0,
    };
    for c in 0..NR_VCPUS {
        set_cpu(CpuId::new(c).unwrap());
        let irqs = xen
            .prepare_cpu(&core, CpuId::new(c).unwrap())
            .expect("prepare_cpu");
        core.set_cpu_online(CpuId::new(c).unwrap(), true)
            .expect("online");
        ch.vcpu_online(VcpuId(c));
        if let Some(&(_, port, irq)) = irqs.virqs.iter().find(|v| v.0 == Virq::TIMER) {
            h.add(Kind::Timer, port, irq, true, c);
        }
        if let Some(&(port, irq)) = irqs.ipis.first() {
            h.add(Kind::Ipi, port, irq, true, c);
        }
    }
    set_cpu(CpuId::BOOT);
    for (i, op) in ops.into_iter().enumerate() {
        h.step = i;
        if crate::trace_enabled() {
            eprintln!("step {i}: {op:?}");
        }
        h.op(op);
        h.check_calls();
    }
    // Enable every disabled line.
    for c in h.chans.iter_mut().filter(|c| c.open) {
        for _ in 0..c.depth {
            let r = core.enable_irq(c.irq);
            check!(r.is_ok(), "teardown: enable {:?}: {r:?}", c.irq);
        }
        c.depth = 0;
    }
    h.quiesce_and_check();
    // Teardown: close dynamic channels, then each vCPU's own.
    for i in 0..h.chans.len() {
        if h.chans[i].open && !matches!(h.chans[i].kind, Kind::Timer | Kind::Ipi) {
            h.close(i);
        }
    }
    for c in (0..NR_VCPUS).rev() {
        ch.vcpu_offline(VcpuId(c));
        let r = xen.cpu_dead(&core, CpuId::new(c).unwrap(), true);
        check!(r.is_ok(), "teardown: cpu_dead({c}): {r:?}");
    }
    check!(
        core.nr_descs() == 0,
        "teardown: {} descriptors leaked",
        core.nr_descs()
    );
    if let Err(e) = hypervisor_clean(hyp) {
        panic!("teardown left the hypervisor dirty: {e}");
    }
    set_cpu(CpuId::BOOT);
}
