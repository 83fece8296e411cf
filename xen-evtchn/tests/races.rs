//! Races around the upcall (reference scenario 6) injected at exact points
//! through a port-layer wrapper, and a multi-threaded stress test of "no
//! lost edge" while channels keep moving between vCPUs.

mod common;

use common::{GUEST, PEER, guest, guest_on_core, layer_for, layout, set_cpu};
use irqcore::{CpuId, CpuMask, DevId, IrqNumber, IrqRequest, IrqReturn};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use xen_evtchn::model::HypervisorModel;
use xen_evtchn::{
    Config, EventChannelOps, EventChannels, EvtchnAbi, EvtchnError, MaskReasons, Port, PortLayer,
    VcpuId, XenError,
};

type Hook = Box<dyn Fn() + Send + Sync>;

/// Delegates to the suite's port layer, running `before_scan` between the
/// upcall's "clear upcall_pending" and the selector (2-level) or ready
/// (FIFO) exchange.
struct Racy {
    inner: Box<dyn PortLayer>,
    before_scan: Arc<Mutex<Option<Hook>>>,
}

impl PortLayer for Racy {
    fn abi(&self) -> EvtchnAbi {
        self.inner.abi()
    }
    fn setup_port(&self, port: Port, ops: &dyn EventChannelOps) -> Result<(), EvtchnError> {
        self.inner.setup_port(port, ops)
    }
    fn prepare_vcpu(&self, vcpu: VcpuId, ops: &dyn EventChannelOps) -> Result<(), XenError> {
        self.inner.prepare_vcpu(vcpu, ops)
    }
    fn vcpu_dead(&self, vcpu: VcpuId, ops: &dyn EventChannelOps) {
        self.inner.vcpu_dead(vcpu, ops)
    }
    fn max_ports(&self) -> u32 {
        self.inner.max_ports()
    }
    fn nr_vcpus(&self) -> u32 {
        self.inner.nr_vcpus()
    }
    fn is_pending(&self, port: Port) -> bool {
        self.inner.is_pending(port)
    }
    fn set_pending(&self, port: Port) {
        self.inner.set_pending(port)
    }
    fn clear_pending(&self, port: Port) {
        self.inner.clear_pending(port)
    }
    fn is_masked(&self, port: Port) -> bool {
        self.inner.is_masked(port)
    }
    fn mask(&self, port: Port) {
        self.inner.mask(port)
    }
    fn unmask(&self, port: Port, local: bool, ops: &dyn EventChannelOps) -> Result<(), XenError> {
        self.inner.unmask(port, local, ops)
    }
    fn bind_to_vcpu(&self, port: Port, old: Option<VcpuId>, vcpu: VcpuId) {
        self.inner.bind_to_vcpu(port, old, vcpu)
    }
    fn remove(&self, port: Port, vcpu: VcpuId) {
        self.inner.remove(port, vcpu)
    }
    fn is_deliverable(&self, port: Port, vcpu: VcpuId) -> bool {
        self.inner.is_deliverable(port, vcpu)
    }
    fn clear_upcall_pending(&self, vcpu: VcpuId) {
        self.inner.clear_upcall_pending(vcpu)
    }
    fn upcall_pending(&self, vcpu: VcpuId) -> bool {
        self.inner.upcall_pending(vcpu)
    }
    fn scan(&self, vcpu: VcpuId, handle: &mut dyn FnMut(Port)) {
        if let Some(hook) = self.before_scan.lock().unwrap().take() {
            hook();
        }
        self.inner.scan(vcpu, handle)
    }
}

#[test]
fn raise_between_flag_clear_and_selector_exchange_is_handled_in_the_same_pass() {
    let model = HypervisorModel::new();
    let dom = model.create_domain_with_layout(GUEST, 1, layout()).unwrap();
    model.create_domain_with_layout(PEER, 1, layout()).unwrap();
    let hook: Arc<Mutex<Option<Hook>>> = Arc::default();
    let racy = Box::new(Racy {
        inner: layer_for(&dom, 1, layout()),
        before_scan: hook.clone(),
    });
    let ch = EventChannels::new(
        Arc::new(dom.clone()),
        racy,
        Config::default(),
        Box::new(|| VcpuId(0)),
    );
    let a = ch.alloc_unbound(PEER).unwrap();
    let b = ch.alloc_unbound(PEER).unwrap();
    ch.set_irq(a, IrqNumber(1)).unwrap();
    ch.set_irq(b, IrqNumber(2)).unwrap();
    ch.unmask(a, MaskReasons::EXPLICIT).unwrap();
    ch.unmask(b, MaskReasons::EXPLICIT).unwrap();
    let m = model.clone();
    *hook.lock().unwrap() = Some(Box::new(move || m.raise_port(GUEST, b)));
    model.raise_port(GUEST, a);
    let mut seen = Vec::new();
    let again = ch.upcall_pass(VcpuId(0), &mut |irq| {
        seen.push(irq);
        ch.ack(if irq == IrqNumber(1) { a } else { b });
        Ok(())
    });
    assert_eq!(
        seen,
        vec![IrqNumber(1), IrqNumber(2)],
        "both in the same pass"
    );
    // b's word was still selected (the exchange had not happened yet), so
    // Xen did not notify again: no second pass is asked for or needed.
    assert!(!again);
    assert!(!dom.upcall_pending(VcpuId(0)));
    assert_eq!(dom.selector(VcpuId(0)), 0);
}

#[test]
fn raise_after_the_selector_exchange_is_handled_in_the_next_pass() {
    let g = guest(1);
    let a = g.ch.alloc_unbound(PEER).unwrap();
    let ports: Vec<Port> = (0..70).map(|_| g.ch.alloc_unbound(PEER).unwrap()).collect();
    let far = *ports.last().unwrap();
    assert_ne!(a.word(), far.word());
    for (p, irq) in [(a, 1), (far, 2)] {
        g.ch.set_irq(p, IrqNumber(irq)).unwrap();
        g.ch.unmask(p, MaskReasons::EXPLICIT).unwrap();
    }
    g.model.raise_port(GUEST, a);
    let mut seen = Vec::new();
    let again = g.ch.upcall_pass(VcpuId(0), &mut |irq| {
        seen.push(irq);
        if irq == IrqNumber(1) {
            g.ch.ack(a);
            // The selector was already exchanged: this sets a new selector
            // bit and upcall_pending.
            g.model.raise_port(GUEST, far);
        } else {
            g.ch.ack(far);
        }
        Ok(())
    });
    assert!(again, "the flag is set again: the upcall loops");
    g.ch.upcall(VcpuId(0), 4, &mut |irq| {
        seen.push(irq);
        g.ch.ack(far);
        Ok(())
    });
    assert_eq!(seen, vec![IrqNumber(1), IrqNumber(2)]);
}

/// Two threads play vCPUs and take upcalls in a loop; a sender raises four
/// channels thousands of times while a mover keeps changing their affinity
/// between the vCPUs. The last raise of every channel must always be
/// followed by a handler run that saw it.
#[test]
fn stress_no_lost_edge_while_channels_move() {
    // Two vCPUs (CPUs 0 and 1) take upcalls; the mover runs as CPU 2 and
    // the sender as CPU 3, two more CPUs the core knows but the domain has
    // no vCPU for. Two threads must never claim the same CPU at once
    // (`Platform::current_cpu`): the core's per-CPU read-side state is
    // written only by its own CPU, without a locked instruction.
    let g = Arc::new(guest_on_core(
        2,
        4,
        2,
        Config::default(),
        layout(),
        common::abi(),
    ));
    const N: usize = 4;
    let sent: Arc<[AtomicU64; N]> = Arc::new(Default::default());
    let seen: Arc<[AtomicU64; N]> = Arc::new(Default::default());
    let mut chans = Vec::new();
    for i in 0..N {
        let pp = g.peer.alloc_unbound(GUEST).unwrap();
        let (gp, irq) = g.xen.bind_interdomain(&g.core, PEER, pp, false).unwrap();
        let (s, v) = (sent.clone(), seen.clone());
        g.core
            .request_irq_raw(
                irq,
                IrqRequest::new(
                    "stress",
                    Arc::new(move |_| {
                        v[i].store(s[i].load(Ordering::SeqCst), Ordering::SeqCst);
                        IrqReturn::HANDLED
                    }),
                )
                .dev_id(DevId(i)),
            )
            .unwrap();
        chans.push((pp, gp, irq));
    }
    let stop = Arc::new(AtomicBool::new(false));
    std::thread::scope(|s| {
        for c in 0..2u32 {
            let (g, stop) = (g.clone(), stop.clone());
            s.spawn(move || {
                set_cpu(c);
                while !stop.load(Ordering::SeqCst) {
                    if g.dom.upcall_pending(VcpuId(c)) {
                        g.xen.upcall(&g.core, 8);
                    }
                    std::thread::yield_now();
                }
            });
        }
        let gm = g.clone();
        let chans_m = chans.clone();
        let stop_m = stop.clone();
        s.spawn(move || {
            set_cpu(2);
            let mut k = 0u32;
            while !stop_m.load(Ordering::SeqCst) {
                let (_, _, irq) = chans_m[k as usize % N];
                let _ = gm
                    .core
                    .set_affinity(irq, &CpuMask::from_cpus([CpuId::new(k % 2).unwrap()]));
                k = k.wrapping_add(1);
                std::thread::yield_now();
            }
        });
        set_cpu(3);
        for round in 0..3000u64 {
            let i = (round as usize * 7) % N;
            sent[i].fetch_add(1, Ordering::SeqCst);
            g.peer.send(chans[i].0).unwrap();
            if round % 64 == 0 {
                std::thread::yield_now();
            }
        }
        // Let the vCPUs drain, then stop everyone. A handler run for an
        // earlier event can already read the last `sent` value (it is
        // bumped before the send), so `seen == sent` alone does not mean
        // the last event was consumed: wait for the ports to be idle too.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while (0..N).any(|i| {
            seen[i].load(Ordering::SeqCst) != sent[i].load(Ordering::SeqCst)
                || g.dom.is_pending(chans[i].1)
        }) && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        stop.store(true, Ordering::SeqCst);
    });
    for i in 0..N {
        assert_eq!(
            seen[i].load(Ordering::SeqCst),
            sent[i].load(Ordering::SeqCst),
            "channel {i}: the last event was never handled"
        );
        assert!(!g.dom.is_pending(chans[i].1));
    }
}
