//! Both `shared_info` layouts (x86-64 and arm) against the model: the
//! pending bits land at each layout's offsets, vCPUs without a legacy slot
//! receive nothing until they register a `vcpu_info`, and the guest stack
//! (IPIs on every vCPU, an interdomain loopback, rebinding) works the same
//! on both. The rest of the suite runs with `XEN_EVTCHN_LAYOUT=arm` too.

mod common;

use common::*;
use irqcore::{CpuId, CpuMask, TriggerType};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use xen_evtchn::abi::{Layout, SharedPage, VcpuEvents, arm};
use xen_evtchn::model::HypervisorModel;
use xen_evtchn::{Config, EventChannelOps, VcpuId};

const LAYOUTS: [Layout; 2] = [Layout::X86, Layout::Arm];

#[test]
fn pending_bits_sit_at_each_layouts_offset() {
    for layout in LAYOUTS {
        let model = HypervisorModel::new();
        let dom = model.create_domain_with_layout(GUEST, 1, layout).unwrap();
        let p = dom.alloc_unbound(GUEST).unwrap();
        let local = dom.bind_interdomain(GUEST, p).unwrap();
        dom.send(local).unwrap();
        let page = dom.shared_info();
        assert_eq!(page.layout(), layout);
        let (base, pending_off) = match page {
            SharedPage::X86(s) => (s as *const _ as usize, 2048),
            SharedPage::Arm(s) => (s as *const _ as usize, 48),
        };
        assert_eq!(page.pending().as_ptr() as usize - base, pending_off);
        assert_eq!(page.mask().as_ptr() as usize - base, pending_off + 512);
        assert_ne!(page.pending()[0].load(Ordering::SeqCst) & (1 << p.0), 0);
        assert!(dom.upcall_pending(VcpuId(0)));
    }
}

#[test]
fn arm_vcpu_sees_events_only_after_registering_its_vcpu_info() {
    let model = HypervisorModel::new();
    let dom = model
        .create_domain_with_layout(GUEST, 2, Layout::Arm)
        .unwrap();
    assert!(xen_evtchn::TwoLevel::new(dom.shared_info(), 2).is_none());
    let ipi = dom.bind_ipi(VcpuId(1)).unwrap();
    dom.send(ipi).unwrap();
    // Xen wrote vCPU 1's (dummy) record: nothing the guest can see.
    assert!(!dom.upcall_pending(VcpuId(0)));
    let info: &'static VcpuEvents = &Box::leak(Box::<arm::VcpuInfo>::default()).events;
    dom.register_vcpu_info(VcpuId(1), info).unwrap();
    assert_eq!(info.evtchn_upcall_pending.load(Ordering::SeqCst), 1);
    assert_eq!(info.evtchn_pending_sel.load(Ordering::SeqCst), u64::MAX);
    assert_eq!(
        dom.register_vcpu_info(VcpuId(1), info),
        Err(xen_evtchn::XenError::Invalid),
        "once per vCPU"
    );
}

#[test]
fn ipis_loopback_and_rebind_work_on_both_layouts() {
    for layout in LAYOUTS {
        let g = guest_layout(4, 4, Config::default(), layout);
        // Per-vCPU IPI channels (bound in `prepare_cpu`) on every vCPU.
        let ipis = Arc::new(Counter::default());
        for v in 0..4 {
            let irq = g.xen.ipi_irq(0, CpuId::new(v).unwrap()).expect("IPI bound");
            g.request(irq, &ipis, true);
            set_cpu(v);
            g.core.enable_percpu_irq(irq, TriggerType::None).unwrap();
            set_cpu(0);
        }
        for v in 0..4 {
            g.ch.send_ipi(0, VcpuId(v)).unwrap();
            assert!(g.upcall_on(v) >= 1, "{layout:?}: vCPU {v} upcall");
            assert_eq!(ipis.on(v), 1, "{layout:?}: IPI on vCPU {v}");
        }
        // Interdomain loopback: alloc_unbound + bind_interdomain to itself.
        let counter = Arc::new(Counter::default());
        let (unbound, _uirq) = g.xen.alloc_unbound(&g.core, GUEST).unwrap();
        let (local, irq) = g
            .xen
            .bind_interdomain(&g.core, GUEST, unbound, false)
            .unwrap();
        g.request(irq, &counter, false);
        for v in 0..4 {
            g.upcall_on(v); // Xen set the new local port pending
        }
        let base = counter.total();
        for (i, v) in [0u32, 1, 2, 3, 1, 0].into_iter().enumerate() {
            g.core
                .set_affinity(irq, &CpuMask::from_cpus([CpuId::new(v).unwrap()]))
                .unwrap();
            assert_eq!(g.ch.binding(local).unwrap().vcpu, VcpuId(v));
            g.dom.send(unbound).unwrap();
            assert!(g.upcall_on(v) >= 1, "{layout:?}: send {i} on vCPU {v}");
            assert_eq!(counter.total() - base, i as u32 + 1, "{layout:?}: send {i}");
        }
    }
}
