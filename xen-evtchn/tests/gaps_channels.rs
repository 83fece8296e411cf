//! `EventChannels` at the edges of its id spaces (the last port and vCPU,
//! and the first past them), its upcall counters and its `Debug` output.

mod common;

use common::{Counter, guest, guest_partial};
use irqcore::IrqNumber;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use xen_evtchn::{Config, EventChannelOps, EvtchnError, MaskReasons, Port, VcpuId, Virq};

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
