//! Which flow (and chip) each binding gets (issue 17, seed 004): event
//! channels are logically edges, so interdomain, unbound and global VIRQ
//! channels must use the edge flow (the level flow loses an event that
//! arrives while the handler runs on another vCPU); IPIs and per-vCPU VIRQs
//! are per-CPU; PIRQs are fasteoi (level) or edge (MSI).

mod common;

use common::{GUEST, PEER, guest_with};
use irqcore::{CpuId, FlowKind, IrqNumber};
use xen_evtchn::{Config, EventChannelOps, Pirq, VcpuId, Virq};

fn flow_and_chip(g: &common::Guest, irq: IrqNumber) -> (FlowKind, String) {
    let s = g.core.snapshot(irq).unwrap();
    assert_eq!(s.chips.len(), 1, "{irq:?}: one chip level");
    (s.flow, format!("{:?}", s.chips[0].0))
}

#[test]
fn every_binding_gets_its_flow_and_chip() {
    let g = guest_with(
        2,
        Config {
            nr_ipis: 2,
            per_vcpu_virqs: vec![Virq::TIMER, Virq::DEBUG],
            ..Config::default()
        },
    );
    let edge = |chip: &str| (FlowKind::Edge, chip.to_string());

    let pp = g.peer.alloc_unbound(GUEST).unwrap();
    let (_, irq) = g.xen.bind_interdomain(&g.core, PEER, pp, false).unwrap();
    assert_eq!(flow_and_chip(&g, irq), edge("xen-dyn"), "interdomain");

    let pp = g.peer.alloc_unbound(GUEST).unwrap();
    let (_, irq) = g.xen.bind_interdomain(&g.core, PEER, pp, true).unwrap();
    assert_eq!(
        flow_and_chip(&g, irq),
        edge("xen-dyn-lateeoi"),
        "interdomain, late EOI"
    );

    let (_, irq) = g.xen.alloc_unbound(&g.core, PEER).unwrap();
    assert_eq!(flow_and_chip(&g, irq), edge("xen-dyn"), "unbound");

    let (_, irq) = g
        .xen
        .bind_global_virq(&g.core, Virq::CONSOLE, VcpuId(0))
        .unwrap();
    assert_eq!(flow_and_chip(&g, irq), edge("xen-dyn"), "global VIRQ");

    let percpu = (FlowKind::PerCpu, "xen-percpu".to_string());
    for cpu in 0..2 {
        for ipi in 0..2 {
            let irq = g.xen.ipi_irq(ipi, CpuId::new(cpu).unwrap()).unwrap();
            assert_eq!(flow_and_chip(&g, irq), percpu, "IPI {ipi} of vCPU {cpu}");
        }
        for virq in [Virq::TIMER, Virq::DEBUG] {
            let port = g.ch.per_vcpu_virq_port(virq, VcpuId(cpu)).unwrap();
            let irq = g.ch.irq_of(port).unwrap();
            assert_eq!(
                flow_and_chip(&g, irq),
                percpu,
                "per-vCPU {virq:?} of vCPU {cpu}"
            );
        }
    }

    g.model.grant_pirq(GUEST, Pirq(5), true).unwrap();
    let (_, irq) = g.xen.bind_pirq(&g.core, Pirq(5), true, true).unwrap();
    assert_eq!(
        flow_and_chip(&g, irq),
        (FlowKind::FastEoi, "xen-pirq".to_string())
    );
    g.model.grant_pirq(GUEST, Pirq(6), false).unwrap();
    let (_, irq) = g.xen.bind_pirq(&g.core, Pirq(6), false, false).unwrap();
    assert_eq!(
        flow_and_chip(&g, irq),
        (FlowKind::Edge, "xen-pirq".to_string())
    );
}
