//! `EventChannels` at the edges of its id spaces (the last port and vCPU,
//! and the first past them), its upcall counters and its `Debug` output.

mod common;

use common::{Counter, GUEST, PEER, cpu, guest, guest_partial, layer_for, layout, set_cpu};
use irqcore::{DevId, IrqNumber};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use xen_evtchn::abi::fifo::{ControlPage, EventPage};
use xen_evtchn::model::{DomainHandle, HypervisorModel};
use xen_evtchn::{
    ChannelStatus, Config, DomId, EventChannelOps, EventChannels, EvtchnError, LateEoi,
    MaskReasons, Pirq, Port, VcpuId, Virq, XenError,
};

/// A port past the ABI's port space is `PortOutOfRange`; one inside it
/// that Xen never handed out is `NotBound`. The boundary is the layer's
/// `max_ports` itself: the first port past the space.
#[test]
fn first_port_past_the_abi_is_out_of_range_and_the_last_in_it_is_not_bound() {
    let g = guest(1);
    let max = g.ch.layer().max_ports();
    let past = Port(max);
    let last = Port(max - 1);
    assert_eq!(g.ch.close(past), Err(EvtchnError::PortOutOfRange(past)));
    assert_eq!(g.ch.close(last), Err(EvtchnError::NotBound(last)));
    assert_eq!(
        g.ch.unmask(past, MaskReasons::EXPLICIT),
        Err(EvtchnError::PortOutOfRange(past))
    );
    assert_eq!(
        g.ch.set_irq(past, IrqNumber(40)),
        Err(EvtchnError::PortOutOfRange(past))
    );
    assert_eq!(g.ch.retrigger(last), Err(EvtchnError::NotBound(last)));
}

/// vCPU ids run `0..nr_vcpus`: the first one past them is `BadVcpu` for
/// every per-vCPU call, answered by the guest (Xen is not asked, nothing
/// changes), while the last one is accepted.
#[test]
fn first_vcpu_past_the_domain_is_bad_vcpu_everywhere() {
    let n = 3;
    let g = guest_partial(n, 2, Config::default());
    let past = VcpuId(n);
    let bad = Err(EvtchnError::BadVcpu(past));
    let events = Arc::new(Counter::default());
    let (_pp, gp, _irq) = g.connect(&events, false);

    assert_eq!(g.ch.bind_ipi(0, past), bad);
    assert_eq!(g.ch.bind_per_vcpu_virq(Virq::TIMER, past), bad);
    assert_eq!(g.ch.send_ipi(0, past), bad.map(|_| ()));
    assert_eq!(g.ch.rebind(gp, past), bad.map(|_| ()));
    assert_eq!(g.ch.prepare_vcpu(past), bad.map(|_| Default::default()));
    assert_eq!(g.ch.vcpu_dead(past), bad.map(|_| Default::default()));
    assert_eq!(g.ch.binding(gp).unwrap().vcpu, VcpuId(0));

    // The last vCPU (not prepared yet) is a valid one.
    let last = VcpuId(n - 1);
    assert_eq!(g.ch.send_ipi(0, last), Err(EvtchnError::VcpuOffline(last)));
    assert!(g.ch.prepare_vcpu(last).is_ok());
}

/// The upcall counters count: every pass, and every port handed to its
/// irq.
#[test]
fn upcall_stats_count_passes_and_dispatched_events() {
    let g = guest(1);
    let events = Arc::new(Counter::default());
    let (pp, _gp, _irq) = g.connect(&events, false);
    let stats = g.ch.stats();
    let passes = stats.passes.load(Ordering::Relaxed);
    let dispatched = stats.dispatched.load(Ordering::Relaxed);
    assert!(passes >= 1 && dispatched >= 1, "connect ran an upcall");

    g.peer.send(pp).unwrap();
    let n = g.upcall_on(0);
    assert_eq!(events.total(), 2);
    assert_eq!(stats.passes.load(Ordering::Relaxed), passes + u64::from(n));
    assert_eq!(stats.dispatched.load(Ordering::Relaxed), dispatched + 1);
}

/// `{:?}` of the channels (logged by kernels, part of `XenIrqs`'s own
/// `Debug`) says what it is and how many vCPUs it serves.
#[test]
fn debug_output_names_the_channels_and_their_vcpus() {
    let g = guest(3);
    let s = format!("{:?}", g.ch);
    assert!(s.starts_with("EventChannels"), "{s}");
    assert!(s.contains("nr_vcpus: 3"), "{s}");
    assert!(format!("{:?}", g.xen).contains("nr_vcpus: 3"));
}

/// Closing a VIRQ's port forgets it: the per-vCPU and global lookups say
/// "not bound" instead of naming a closed port, which Xen hands out again
/// to the next binding.
#[test]
fn closing_a_virq_forgets_its_port() {
    let g = guest(2);
    let v1 = VcpuId(1);

    let timer = g.ch.per_vcpu_virq_port(Virq::TIMER, v1).unwrap();
    g.xen.unbind(&g.core, timer).unwrap();
    assert_eq!(g.ch.per_vcpu_virq_port(Virq::TIMER, v1), None);
    let reused = g.ch.alloc_unbound(PEER).unwrap();
    assert_eq!(reused, timer, "Xen hands out the lowest free port");
    assert_eq!(
        g.ch.per_vcpu_virq_port(Virq::TIMER, v1),
        None,
        "the reused port is no timer"
    );
    let again = g.ch.bind_per_vcpu_virq(Virq::TIMER, v1).unwrap();
    assert_eq!(g.ch.per_vcpu_virq_port(Virq::TIMER, v1), Some(again));

    assert_eq!(g.ch.global_virq_port(Virq::CONSOLE), None);
    let (console, _irq) = g
        .xen
        .bind_global_virq(&g.core, Virq::CONSOLE, VcpuId(0))
        .unwrap();
    assert_eq!(g.ch.global_virq_port(Virq::CONSOLE), Some(console));
    assert_eq!(g.ch.global_virq_port(Virq::DEBUG), None);
    g.xen.unbind(&g.core, console).unwrap();
    assert_eq!(g.ch.global_virq_port(Virq::CONSOLE), None);
}

/// Closing one late-EOI channel drops its own deferred EOI only: another
/// channel's deferred EOI still runs and unmasks it (else that channel
/// would stay masked for good, its events lost).
#[test]
fn closing_a_channel_keeps_the_other_channels_deferred_eois() {
    let g = guest(1);
    let (ca, cb) = (Arc::new(Counter::default()), Arc::new(Counter::default()));
    let (pa, ga, _ia) = g.connect(&ca, true);
    let (pb, gb, ib) = g.connect(&cb, true);
    for (pp, gp) in [(pa, ga), (pb, gb)] {
        // The connect's event was spurious (threshold 1: tolerated once).
        assert_eq!(g.ch.late_eoi(gp, true, 0), Ok(LateEoi::Unmasked));
        g.peer.send(pp).unwrap();
        g.upcall_on(0);
        assert_eq!(
            g.ch.late_eoi(gp, true, 0),
            Ok(LateEoi::Deferred { until_ms: 1 })
        );
    }
    assert_eq!((ca.total(), cb.total()), (2, 2));

    g.core.free_irq(ib, DevId(ib.0 as usize)).unwrap();
    g.xen.unbind(&g.core, gb).unwrap();

    assert_eq!(g.ch.run_deferred_eois(1), 1, "a's EOI, not b's");
    assert!(g.ch.mask_reasons(ga).is_empty());
    g.peer.send(pa).unwrap();
    g.upcall_on(0);
    assert_eq!(ca.total(), 3, "a takes events again");
    assert_eq!(g.ch.run_deferred_eois(u64::MAX), 0);
}

/// `EventChannelOps` over the model that counts `EVTCHNOP_unmask` and can
/// refuse `EVTCHNOP_close`.
struct ObservedOps {
    dom: DomainHandle,
    unmasks: AtomicU32,
    refuse_close: AtomicBool,
}

impl EventChannelOps for ObservedOps {
    fn alloc_unbound(&self, d: DomId) -> Result<Port, XenError> {
        self.dom.alloc_unbound(d)
    }
    fn bind_interdomain(&self, d: DomId, p: Port) -> Result<Port, XenError> {
        self.dom.bind_interdomain(d, p)
    }
    fn bind_virq(&self, v: Virq, c: VcpuId) -> Result<Port, XenError> {
        self.dom.bind_virq(v, c)
    }
    fn bind_ipi(&self, c: VcpuId) -> Result<Port, XenError> {
        self.dom.bind_ipi(c)
    }
    fn bind_pirq(&self, p: Pirq, s: bool) -> Result<Port, XenError> {
        self.dom.bind_pirq(p, s)
    }
    fn bind_vcpu(&self, p: Port, c: VcpuId) -> Result<(), XenError> {
        self.dom.bind_vcpu(p, c)
    }
    fn send(&self, p: Port) -> Result<(), XenError> {
        self.dom.send(p)
    }
    fn close(&self, p: Port) -> Result<(), XenError> {
        if self.refuse_close.load(Ordering::SeqCst) {
            return Err(XenError::Busy);
        }
        self.dom.close(p)
    }
    fn status(&self, p: Port) -> Result<ChannelStatus, XenError> {
        self.dom.status(p)
    }
    fn unmask(&self, p: Port) -> Result<(), XenError> {
        self.unmasks.fetch_add(1, Ordering::SeqCst);
        self.dom.unmask(p)
    }
    fn pirq_needs_eoi(&self, p: Pirq) -> Result<bool, XenError> {
        self.dom.pirq_needs_eoi(p)
    }
    fn pirq_eoi(&self, p: Pirq) -> Result<(), XenError> {
        self.dom.pirq_eoi(p)
    }
    fn init_control(&self, v: VcpuId, b: &'static ControlPage) -> Result<u8, XenError> {
        self.dom.init_control(v, b)
    }
    fn expand_array(&self, page: &'static EventPage) -> Result<(), XenError> {
        self.dom.expand_array(page)
    }
    fn set_priority(&self, p: Port, prio: u32) -> Result<(), XenError> {
        self.dom.set_priority(p, prio)
    }
}

/// Channels of a two-vCPU guest over [`ObservedOps`] (no `IrqCore`), the
/// calling thread's vCPU being the current one.
fn observed_channels() -> (Arc<ObservedOps>, EventChannels) {
    let model = HypervisorModel::new();
    let dom = model.create_domain_with_layout(GUEST, 2, layout()).unwrap();
    model.create_domain_with_layout(PEER, 1, layout()).unwrap();
    let layer = layer_for(&dom, 2, layout());
    let ops = Arc::new(ObservedOps {
        dom,
        unmasks: AtomicU32::new(0),
        refuse_close: AtomicBool::new(false),
    });
    let ch = EventChannels::new(
        ops.clone(),
        layer,
        Config::default(),
        Box::new(|| VcpuId(cpu())),
    );
    (ops, ch)
}

/// The unmask fast path (two_level.rs, reference 1.4): a port bound to the
/// calling vCPU with nothing pending is unmasked in memory, without a
/// hypercall, on a vCPU other than 0 too. (FIFO clears M in memory
/// whenever nothing is pending.)
#[test]
fn unmasking_a_local_idle_port_makes_no_hypercall() {
    let (ops, ch) = observed_channels();
    let port = ch.alloc_unbound(PEER).unwrap();
    ch.rebind(port, VcpuId(1)).unwrap();
    ops.unmasks.store(0, Ordering::SeqCst);
    set_cpu(1);
    ch.unmask(port, MaskReasons::EXPLICIT).unwrap();
    set_cpu(0);
    assert!(ch.mask_reasons(port).is_empty());
    assert!(!ch.layer().is_masked(port));
    assert_eq!(ops.unmasks.load(Ordering::SeqCst), 0);
}

/// Xen refusing `EVTCHNOP_close` leaves the port as it was: bound, and
/// unmasked again if it was (by the same fast path when it is local).
#[test]
fn a_refused_close_leaves_the_port_bound_and_unmasked() {
    let (ops, ch) = observed_channels();
    let port = ch.alloc_unbound(PEER).unwrap();
    ch.rebind(port, VcpuId(1)).unwrap();
    set_cpu(1);
    ch.unmask(port, MaskReasons::EXPLICIT).unwrap();
    let before = ch.binding(port);
    ops.unmasks.store(0, Ordering::SeqCst);
    ops.refuse_close.store(true, Ordering::SeqCst);
    assert_eq!(ch.close(port), Err(EvtchnError::Xen(XenError::Busy)));
    set_cpu(0);
    assert_eq!(ch.binding(port), before);
    assert!(ch.mask_reasons(port).is_empty());
    assert!(!ch.layer().is_masked(port), "unmasked again");
    assert_eq!(ops.unmasks.load(Ordering::SeqCst), 0);

    ops.refuse_close.store(false, Ordering::SeqCst);
    ch.close(port).unwrap();
    assert_eq!(ch.binding(port), None);
}

/// Deferred late EOIs: a port deferred again keeps only its newest
/// deferral, and deferrals of different ports run in the order they fall
/// due, whatever order they were made in.
#[test]
fn deferred_eois_run_in_due_order_with_one_entry_per_port() {
    let g = guest(1);
    let (ca, cb) = (Arc::new(Counter::default()), Arc::new(Counter::default()));
    let (pa, ga, _) = g.connect(&ca, true);
    let (pb, gb, _) = g.connect(&cb, true);
    for (pp, gp) in [(pa, ga), (pb, gb)] {
        // The connect's event was spurious (threshold 1: tolerated once);
        // the next one leaves the port masked for its late EOI.
        assert_eq!(g.ch.late_eoi(gp, true, 0), Ok(LateEoi::Unmasked));
        g.peer.send(pp).unwrap();
        g.upcall_on(0);
        assert!(g.ch.mask_reasons(gp).contains(MaskReasons::EOI_PENDING));
    }
    // a: spurious again and again, the back-off doubling (1, 2, 4 ms)...
    for until_ms in [1, 2, 4] {
        assert_eq!(
            g.ch.late_eoi(ga, true, 0),
            Ok(LateEoi::Deferred { until_ms })
        );
    }
    // ... then b, due earlier than a but deferred after it.
    assert_eq!(
        g.ch.late_eoi(gb, true, 0),
        Ok(LateEoi::Deferred { until_ms: 1 })
    );

    assert_eq!(
        g.ch.run_deferred_eois(1),
        1,
        "b is due, a's old 1 ms is gone"
    );
    assert!(g.ch.mask_reasons(gb).is_empty());
    assert!(g.ch.mask_reasons(ga).contains(MaskReasons::EOI_PENDING));
    assert_eq!(g.ch.run_deferred_eois(3), 0, "a's old 2 ms is gone too");
    assert_eq!(g.ch.run_deferred_eois(4), 1);
    assert!(g.ch.mask_reasons(ga).is_empty());
    assert_eq!(g.ch.run_deferred_eois(u64::MAX), 0);
}

/// A channel whose handler raises it again at once (a peer flooding it)
/// keeps `upcall_pending` set after every pass: the upcall stops after
/// `max_passes` and leaves the flag set for the kernel to come back.
#[test]
fn upcall_stops_after_max_passes_under_a_flood() {
    let g = guest(1);
    let pp = g.peer.alloc_unbound(GUEST).unwrap();
    let (gp, irq) = g.xen.bind_interdomain(&g.core, PEER, pp, false).unwrap();
    g.core
        .set_affinity(irq, &irqcore::CpuMask::from_cpus([irqcore::CpuId::BOOT]))
        .unwrap();
    let flooding = Arc::new(AtomicBool::new(true));
    let handled = Arc::new(AtomicU32::new(0));
    let (peer, f, h) = (g.peer.clone(), flooding.clone(), handled.clone());
    g.core
        .request_irq_raw(
            irq,
            irqcore::IrqRequest::new(
                "flood",
                Arc::new(move |_irq: IrqNumber| {
                    h.fetch_add(1, Ordering::SeqCst);
                    if f.load(Ordering::SeqCst) {
                        peer.send(pp).unwrap();
                    }
                    irqcore::IrqReturn::HANDLED
                }),
            )
            .dev_id(DevId(1)),
        )
        .unwrap();
    // The bind left the port pending: the flood starts with the upcall.
    assert_eq!(g.xen.upcall(&g.core, 3), 3);
    assert!(g.dom.upcall_pending(VcpuId(0)), "the kernel must come back");
    assert!(handled.load(Ordering::SeqCst) >= 3);

    flooding.store(false, Ordering::SeqCst);
    assert!(g.xen.upcall(&g.core, 3) < 3, "drained once the flood stops");
    assert!(!g.dom.is_pending(gp));
}

/// The timer VIRQ is served before other events on every vCPU, also when
/// the most recent binding is another vCPU's.
#[test]
fn timer_virq_is_served_first_on_a_secondary_vcpu() {
    let g = guest(2);
    let v1 = VcpuId(1);
    let timer = g.ch.per_vcpu_virq_port(Virq::TIMER, v1).unwrap();
    let timer_irq = g.ch.irq_of(timer).unwrap();
    let early = g.ch.alloc_unbound(PEER).unwrap();
    g.ch.rebind(early, v1).unwrap();
    let _latest_on_vcpu0 = g.ch.alloc_unbound(PEER).unwrap();
    g.ch.set_irq(early, IrqNumber(500)).unwrap();
    g.ch.unmask(early, MaskReasons::EXPLICIT).unwrap();
    g.ch.unmask(timer, MaskReasons::EXPLICIT).unwrap();
    // Raised first: a plain scan (FIFO: the queue order) takes it first.
    g.model.raise_port(GUEST, early);
    g.model.raise_port(GUEST, timer);
    let mut order = Vec::new();
    g.ch.upcall(v1, 2, &mut |irq| {
        order.push(irq);
        g.ch.ack(if irq == timer_irq { timer } else { early });
        Ok(())
    });
    assert_eq!(order, vec![timer_irq, IrqNumber(500)]);
}

/// The port layer's reading of a port's pending and mask bits (what a
/// kernel's debug dump of the channels shows), under either ABI, agreeing
/// with Xen's.
#[test]
fn the_layer_reads_each_ports_pending_and_mask_bits() {
    let g = guest(1);
    let l = g.ch.layer();
    let p = g.ch.alloc_unbound(PEER).unwrap();
    let agree = |pending: bool, masked: bool| {
        assert_eq!((l.is_pending(p), l.is_masked(p)), (pending, masked));
        assert_eq!((g.dom.is_pending(p), g.dom.is_masked(p)), (pending, masked));
    };
    agree(false, true);
    g.model.raise_port(GUEST, p);
    agree(true, true);
    g.ch.ack(p);
    agree(false, true);
    g.ch.set_irq(p, IrqNumber(300)).unwrap();
    g.ch.unmask(p, MaskReasons::EXPLICIT).unwrap();
    agree(false, false);
    g.model.raise_port(GUEST, p);
    agree(true, false);
    g.ch.ack(p);
    agree(false, false);

    // A port never handed out reads masked (it cannot be delivered) and
    // not pending.
    let never = Port(l.max_ports() - 1);
    assert!(l.is_masked(never));
    assert!(!l.is_pending(never));
}

/// A closed port is bound to no vCPU any more (`PortLayer::remove`): even
/// with its word left pending and unmasked it is deliverable nowhere (the
/// 2-level layer's 2021 fix: a reused port number must never look bound
/// to a vCPU it had before).
#[test]
fn a_closed_port_is_deliverable_to_no_vcpu() {
    let g = guest(2);
    let l = g.ch.layer();
    let p = g.ch.alloc_unbound(PEER).unwrap();
    g.ch.rebind(p, VcpuId(1)).unwrap();
    g.ch.set_irq(p, IrqNumber(300)).unwrap();
    g.ch.unmask(p, MaskReasons::EXPLICIT).unwrap();
    l.set_pending(p);
    assert!(l.is_deliverable(p, VcpuId(1)));
    assert!(!l.is_deliverable(p, VcpuId(0)));
    l.clear_pending(p);

    g.ch.close(p).unwrap();
    // The word's bits as a stale writer could leave them.
    l.unmask(p, false, g.ch.ops()).unwrap();
    l.set_pending(p);
    assert!(!l.is_deliverable(p, VcpuId(1)));
    assert!(!l.is_deliverable(p, VcpuId(0)));
}
