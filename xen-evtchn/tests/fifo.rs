//! What only the FIFO ABI has, against the model: ABI selection and its
//! fallback, priorities, more than 4096 ports with the event array grown
//! on demand (and a refused growth), control blocks registered in the
//! hotplug prepare step, and a dead vCPU's queues drained.

mod common;

use common::{Counter, GUEST, PEER, guest_abi, layer_with_abi, layout, set_cpu, vcpu_infos};
use irqcore::{CpuId, CpuMask, IrqNumber};
use std::sync::Arc;
use xen_evtchn::abi::fifo::{ControlPage, EventPage};
use xen_evtchn::model::{DomainHandle, HypervisorModel};
use xen_evtchn::port_layer::select;
use xen_evtchn::{
    AbiChoice, ChannelState, Config, DomId, EventChannelOps, EventChannels, EvtchnAbi, EvtchnError,
    MaskReasons, Pirq, Port, VcpuId, Virq, XenError,
};

fn domain(model: &Arc<HypervisorModel>, n: u32) -> DomainHandle {
    let dom = model.create_domain_with_layout(GUEST, n, layout()).unwrap();
    model.create_domain_with_layout(PEER, 1, layout()).unwrap();
    dom
}

fn channels(dom: &DomainHandle, abi: EvtchnAbi) -> EventChannels {
    EventChannels::new(
        Arc::new(dom.clone()),
        layer_with_abi(dom, 1, layout(), abi),
        Config::default(),
        Box::new(|| VcpuId(0)),
    )
}

/// Runs upcalls on vCPU 0 until nothing is flagged; returns the irqs
/// dispatched, in order, acking each port (irq n = port n here).
fn drain(ch: &EventChannels) -> Vec<u32> {
    let mut seen = Vec::new();
    ch.upcall(VcpuId(0), 64, &mut |irq| {
        seen.push(irq.0);
        ch.ack(Port(irq.0));
        Ok(())
    });
    seen
}

#[test]
fn auto_selects_fifo_when_xen_offers_it_and_falls_back_when_refused() {
    for (available, choice, want) in [
        (true, AbiChoice::Auto, Ok((EvtchnAbi::Fifo, None))),
        (
            false,
            AbiChoice::Auto,
            Ok((EvtchnAbi::TwoLevel, Some(XenError::NotImplemented))),
        ),
        (true, AbiChoice::TwoLevel, Ok((EvtchnAbi::TwoLevel, None))),
        (
            false,
            AbiChoice::Fifo,
            Err(EvtchnError::Xen(XenError::NotImplemented)),
        ),
    ] {
        let model = HypervisorModel::new();
        let dom = domain(&model, 2);
        model.set_fifo_available(GUEST, available).unwrap();
        let got = select(
            choice,
            &dom,
            dom.shared_info(),
            vcpu_infos(&dom, 2, layout()),
            VcpuId(0),
        )
        .map(|s| (s.abi, s.fifo_refused));
        assert_eq!(got, want, "available {available}, {choice:?}");
        assert_eq!(
            dom.is_fifo(),
            matches!(got, Ok((EvtchnAbi::Fifo, _))),
            "the domain switched only when FIFO was chosen"
        );
        if dom.is_fifo() {
            assert!(dom.fifo_registered(VcpuId(0)));
            assert!(
                !dom.fifo_registered(VcpuId(1)),
                "vCPU 1 registers in its prepare step"
            );
        }
    }
}

#[test]
fn model_fifo_hypercalls_fail_with_xens_error_codes() {
    let model = HypervisorModel::new();
    let dom = domain(&model, 1);
    let page: &'static EventPage = Box::leak(Box::new(EventPage(std::array::from_fn(|_| {
        Default::default()
    }))));
    let control: &'static ControlPage = Box::leak(Box::default());
    // Before FIFO is on: -ENOSYS.
    assert_eq!(dom.expand_array(page), Err(XenError::NotImplemented));
    assert_eq!(dom.set_priority(Port(1), 0), Err(XenError::NotImplemented));
    assert_eq!(
        dom.init_control(VcpuId(1), control),
        Err(XenError::NoSuchVcpu)
    );
    assert_eq!(dom.init_control(VcpuId(0), control), Ok(17));
    assert_eq!(
        dom.init_control(VcpuId(0), control),
        Err(XenError::Invalid),
        "a second registration"
    );
    let p = dom.alloc_unbound(PEER).unwrap();
    assert_eq!(dom.set_priority(p, 16), Err(XenError::Invalid));
    assert_eq!(dom.set_priority(Port(999), 0), Err(XenError::Invalid));
    assert_eq!(dom.set_priority(p, 0), Ok(()));
    for _ in 0..128 {
        dom.expand_array(page).unwrap();
    }
    assert_eq!(
        dom.expand_array(page),
        Err(XenError::NoFreePort),
        "past 128 pages"
    );
}

#[test]
fn priorities_high_is_serviced_before_a_flood_on_low() {
    let model = HypervisorModel::new();
    let dom = domain(&model, 1);
    let ch = channels(&dom, EvtchnAbi::Fifo);
    // Loopback pairs inside the guest: `a` is sent on, `b` receives.
    let mut flood = Vec::new();
    for _ in 0..40 {
        let a = ch.alloc_unbound(DomId::SELF).unwrap();
        let b = ch.bind_interdomain(DomId::SELF, a, false).unwrap();
        for p in [a, b] {
            ch.set_irq(p, IrqNumber(p.0)).unwrap();
            ch.unmask(p, MaskReasons::EXPLICIT).unwrap();
        }
        flood.push((a, b));
    }
    let ha = ch.alloc_unbound(DomId::SELF).unwrap();
    let hb = ch.bind_interdomain(DomId::SELF, ha, false).unwrap();
    for p in [ha, hb] {
        ch.set_irq(p, IrqNumber(p.0)).unwrap();
        ch.unmask(p, MaskReasons::EXPLICIT).unwrap();
    }
    drain(&ch);
    ch.set_priority(hb, 0).unwrap();
    for &(_, b) in &flood {
        ch.set_priority(b, 15).unwrap();
    }
    // The flood first, the high-priority event last.
    for &(a, _) in &flood {
        ch.notify(a).unwrap();
    }
    ch.notify(ha).unwrap();
    let order = drain(&ch);
    assert_eq!(order.len(), flood.len() + 1);
    assert_eq!(order[0], hb.0, "the high-priority port first: {order:?}");
    let lows: Vec<u32> = flood.iter().map(|(_, b)| b.0).collect();
    assert_eq!(
        order[1..],
        lows[..],
        "then the flood in the order it was raised"
    );
}

#[test]
fn set_priority_is_a_typed_error_under_2_level() {
    let model = HypervisorModel::new();
    let dom = domain(&model, 1);
    let ch = channels(&dom, EvtchnAbi::TwoLevel);
    let p = ch.alloc_unbound(PEER).unwrap();
    assert_eq!(ch.set_priority(p, 0), Err(EvtchnError::WrongAbi));
    let ch = channels(&domain(&HypervisorModel::new(), 1), EvtchnAbi::Fifo);
    assert_eq!(
        ch.set_priority(Port(5), 0),
        Err(EvtchnError::NotBound(Port(5)))
    );
}

#[test]
fn more_than_4096_ports_bound_and_used_with_the_array_grown_on_demand() {
    let model = HypervisorModel::new();
    let dom = domain(&model, 1);
    let ch = channels(&dom, EvtchnAbi::Fifo);
    assert_eq!(dom.fifo_pages(), 0, "no page before the first port");
    let mut ports = Vec::new();
    while ports.len() < 5000 {
        ports.push(ch.alloc_unbound(PEER).unwrap());
    }
    let top = *ports.last().unwrap();
    assert!(top.0 > 4096);
    assert_eq!(
        dom.fifo_pages(),
        top.0 as usize / 1024 + 1,
        "one page at a time"
    );
    // Every port works: each raised once, each delivered once.
    for &p in &ports {
        ch.set_irq(p, IrqNumber(p.0)).unwrap();
        ch.unmask(p, MaskReasons::EXPLICIT).unwrap();
    }
    for &p in &ports {
        model.raise_port(GUEST, p);
    }
    let mut seen = drain(&ch);
    seen.sort_unstable();
    let want: Vec<u32> = ports.iter().map(|p| p.0).collect();
    assert_eq!(seen, want, "each of the 5000 ports delivered once");
}

/// Xen refusing a page (here: the hypercall fails) is a typed error; the
/// port is given back and nothing else changes.
#[test]
fn refused_growth_is_a_typed_error_and_the_port_is_given_back() {
    struct NoExpand(DomainHandle);
    impl EventChannelOps for NoExpand {
        fn alloc_unbound(&self, d: DomId) -> Result<Port, XenError> {
            self.0.alloc_unbound(d)
        }
        fn bind_interdomain(&self, d: DomId, p: Port) -> Result<Port, XenError> {
            self.0.bind_interdomain(d, p)
        }
        fn bind_virq(&self, v: Virq, c: VcpuId) -> Result<Port, XenError> {
            self.0.bind_virq(v, c)
        }
        fn bind_ipi(&self, c: VcpuId) -> Result<Port, XenError> {
            self.0.bind_ipi(c)
        }
        fn bind_pirq(&self, p: Pirq, s: bool) -> Result<Port, XenError> {
            self.0.bind_pirq(p, s)
        }
        fn bind_vcpu(&self, p: Port, c: VcpuId) -> Result<(), XenError> {
            self.0.bind_vcpu(p, c)
        }
        fn send(&self, p: Port) -> Result<(), XenError> {
            self.0.send(p)
        }
        fn close(&self, p: Port) -> Result<(), XenError> {
            self.0.close(p)
        }
        fn status(&self, p: Port) -> Result<xen_evtchn::ChannelStatus, XenError> {
            self.0.status(p)
        }
        fn unmask(&self, p: Port) -> Result<(), XenError> {
            self.0.unmask(p)
        }
        fn pirq_needs_eoi(&self, p: Pirq) -> Result<bool, XenError> {
            self.0.pirq_needs_eoi(p)
        }
        fn pirq_eoi(&self, p: Pirq) -> Result<(), XenError> {
            self.0.pirq_eoi(p)
        }
        fn init_control(&self, v: VcpuId, b: &'static ControlPage) -> Result<u8, XenError> {
            self.0.init_control(v, b)
        }
        fn expand_array(&self, page: &'static EventPage) -> Result<(), XenError> {
            if self.0.fifo_pages() >= 1 {
                return Err(XenError::NoMemory);
            }
            self.0.expand_array(page)
        }
        fn set_priority(&self, p: Port, prio: u32) -> Result<(), XenError> {
            self.0.set_priority(p, prio)
        }
    }
    let model = HypervisorModel::new();
    let dom = domain(&model, 1);
    let ops = Arc::new(NoExpand(dom.clone()));
    let sel = select(
        AbiChoice::Fifo,
        &*ops,
        dom.shared_info(),
        vcpu_infos(&dom, 1, layout()),
        VcpuId(0),
    )
    .unwrap();
    let ch = EventChannels::new(ops, sel.layer, Config::default(), Box::new(|| VcpuId(0)));
    for _ in 1..1024 {
        ch.alloc_unbound(PEER).unwrap();
    }
    assert_eq!(
        ch.alloc_unbound(PEER),
        Err(EvtchnError::Xen(XenError::NoMemory)),
        "port 1024 needs a second page"
    );
    assert_eq!(
        dom.status(Port(1024)).unwrap().state,
        ChannelState::Closed,
        "the port was given back to Xen"
    );
    assert_eq!(ch.binding(Port(1024)), None);
    assert_eq!(dom.fifo_pages(), 1);
    // The ports that have a page still work.
    ch.set_irq(Port(1023), IrqNumber(1023)).unwrap();
    ch.unmask(Port(1023), MaskReasons::EXPLICIT).unwrap();
    model.raise_port(GUEST, Port(1023));
    assert_eq!(drain(&ch), vec![1023]);
}

#[test]
fn control_blocks_are_registered_in_the_prepare_step() {
    let g = guest_abi(3, 1, Config::default(), layout(), EvtchnAbi::Fifo);
    assert!(g.dom.fifo_registered(VcpuId(0)));
    assert!(!g.dom.fifo_registered(VcpuId(2)));
    set_cpu(0);
    g.xen.prepare_cpu(&g.core, CpuId::of::<2>()).unwrap();
    assert!(g.dom.fifo_registered(VcpuId(2)));
    // Its IPI is delivered through its own queue.
    let ipi = g.ch.ipi_port(0, VcpuId(2)).unwrap();
    assert_eq!(g.dom.status(ipi).unwrap().vcpu, VcpuId(2));
}

/// An event linked on a vCPU's queue when that vCPU stops would stay
/// linked there (so Xen never queues it again) unless the dead step
/// drains the queue and has Xen re-queue it where the channel now is.
#[test]
fn a_dead_vcpus_queue_is_drained_and_its_events_requeued() {
    let g = guest_abi(2, 2, Config::default(), layout(), EvtchnAbi::Fifo);
    let counter = Arc::new(Counter::default());
    let (pp, gp, irq) = g.connect(&counter, false);
    g.core
        .set_affinity(irq, &CpuMask::from_cpus([CpuId::of::<1>()]))
        .unwrap();
    // vCPU 1 stops taking upcalls; an event is queued there.
    g.peer.send(pp).unwrap();
    assert!(g.dom.upcall_pending(VcpuId(1)));
    // The channel moves to vCPU 0 (its unmask finds it pending but still
    // linked on vCPU 1's queue: Xen does not queue it again).
    g.core
        .set_affinity(irq, &CpuMask::from_cpus([CpuId::BOOT]))
        .unwrap();
    g.upcall_on(0);
    assert_eq!(counter.total(), 1, "only the bind's event so far");
    g.ch.vcpu_offline(VcpuId(1));
    g.ch.vcpu_dead(VcpuId(1)).unwrap();
    g.upcall_on(0);
    assert_eq!(counter.on(0), 2, "delivered on vCPU 0 after the drain");
    assert!(!g.dom.is_pending(gp));
}
