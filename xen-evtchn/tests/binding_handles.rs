//! The owning binding handle: dropping a `BoundIrq` closes its port in the
//! hypervisor model and frees its descriptor; `unbind()` reports a refusal
//! and hands the handle back; `leak()`/`adopt()` convert to and from the
//! raw pair.

mod common;

use common::{Counter, GUEST, PEER, guest};
use irqcore::{CpuId, CpuMask, DevId, IrqError};
use std::sync::Arc;
use xen_evtchn::{ChannelState, EventChannelOps, EvtchnError, Port, VcpuId, Virq};

#[test]
fn dropping_a_bound_irq_closes_the_port_and_frees_the_descriptor() {
    let g = guest(2);
    let pp = g.peer.alloc_unbound(GUEST).unwrap();
    let b = g.xen.binder(&g.core);
    let bound = b.bind_interdomain(PEER, pp, false).unwrap();
    let (port, irq) = (bound.port(), bound.irq());
    assert_eq!(
        g.dom.status(port).unwrap().state,
        ChannelState::Interdomain {
            remote_dom: PEER,
            remote_port: pp
        }
    );
    assert!(g.core.is_allocated(irq));
    assert_eq!(g.ch.irq_of(port), Some(irq));

    drop(bound);
    assert_eq!(g.dom.status(port).unwrap().state, ChannelState::Closed);
    assert!(!g.core.is_allocated(irq), "the descriptor was freed");
    assert_eq!(g.ch.irq_of(port), None);
    // The peer's side is unbound again, as after a guest close.
    assert_eq!(
        g.peer.status(pp).unwrap().state,
        ChannelState::Unbound { remote_dom: GUEST }
    );
}

#[test]
fn every_bind_call_hands_out_a_handle_that_closes_on_drop() {
    let g = guest(1);
    let b = g.xen.binder(&g.core);
    let unbound = b.alloc_unbound(PEER).unwrap();
    let virq = b.bind_global_virq(Virq::CONSOLE, VcpuId(0)).unwrap();
    let ports = [unbound.port(), virq.port()];
    for p in ports {
        assert_ne!(g.dom.status(p).unwrap().state, ChannelState::Closed);
    }
    drop((unbound, virq));
    for p in ports {
        assert_eq!(g.dom.status(p).unwrap().state, ChannelState::Closed);
    }
}

#[test]
fn unbind_with_a_handler_is_refused_and_the_handle_comes_back() {
    let g = guest(1);
    let b = g.xen.binder(&g.core);
    let bound = b.alloc_unbound(PEER).unwrap();
    let irq = bound.irq();
    let counter = Arc::new(Counter::default());
    g.core
        .set_affinity(irq, &CpuMask::from_cpus([CpuId::BOOT]))
        .unwrap();
    g.request(irq, &counter, false);
    let (bound, err) = bound.unbind().unwrap_err();
    assert_eq!(err, EvtchnError::Irq(IrqError::HasHandlers(irq)));
    assert_ne!(
        g.dom.status(bound.port()).unwrap().state,
        ChannelState::Closed,
        "nothing changed"
    );
    g.core.free_irq(irq, DevId(irq.0 as usize)).unwrap();
    let port = bound.port();
    bound.unbind().map_err(|(_, e)| e).unwrap();
    assert_eq!(g.dom.status(port).unwrap().state, ChannelState::Closed);
}

#[test]
fn leak_keeps_the_binding_and_adopt_takes_it_back() {
    let g = guest(1);
    let b = g.xen.binder(&g.core);
    let (port, irq) = b.alloc_unbound(PEER).unwrap().leak();
    assert_ne!(g.dom.status(port).unwrap().state, ChannelState::Closed);
    assert!(g.core.is_allocated(irq));
    assert_eq!(
        b.adopt(Port(port.0 + 1)).err(),
        Some(EvtchnError::NotBound(Port(port.0 + 1)))
    );
    let again = b.adopt(port).unwrap();
    assert_eq!(again.irq(), irq);
    drop(again);
    assert_eq!(g.dom.status(port).unwrap().state, ChannelState::Closed);
    assert!(!g.core.is_allocated(irq));
}
