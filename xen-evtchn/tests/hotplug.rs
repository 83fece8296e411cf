//! The backend's hotplug callbacks driven by `IrqCore::cpu_up` /
//! `cpu_down` (acceptance 5 through the real phases).

mod common;

use common::{Control, Counter, GUEST, PEER, guest_partial, set_cpu};
use irqcore::hotplug::HotplugCtx;
use irqcore::{CpuId, CpuMask, CpuPhase, HotplugCallback, IrqError, Platform, TriggerType};
use std::sync::Arc;
use xen_evtchn::{
    ChannelState, Config, EventChannelOps, EvtchnError, VcpuId, VcpuState, Virq, XenIrqs,
};

#[test]
fn per_vcpu_virq_bound_in_prepare_on_cpu_up_and_closed_after_cpu_down() {
    let g = guest_partial(3, 2, Config::default());
    g.xen.register_hotplug(&g.core).unwrap();
    let ctl = Control { core: &g.core };
    let (cpu2, v2) = (CpuId::of::<2>(), VcpuId(2));
    assert_eq!(g.ch.vcpu_state(v2), VcpuState::Down);
    assert_eq!(g.ch.send_ipi(0, v2), Err(EvtchnError::VcpuOffline(v2)));
    let descs_before = g.core.nr_descs();

    set_cpu(0);
    g.core.cpu_up(cpu2, &ctl).unwrap();
    assert!(g.core.cpu_online(cpu2));
    assert_eq!(g.ch.vcpu_state(v2), VcpuState::Online);
    let timer =
        g.ch.per_vcpu_virq_port(Virq::TIMER, v2)
            .expect("timer bound in prepare");
    assert_eq!(
        g.dom.status(timer).unwrap().state,
        ChannelState::Virq(Virq::TIMER)
    );
    assert_eq!(g.dom.status(timer).unwrap().vcpu, v2);
    assert_eq!(
        g.core.nr_descs(),
        descs_before + 3,
        "two IPIs and the timer"
    );

    // The timer works on vCPU 2.
    let timer_irq = g.ch.irq_of(timer).unwrap();
    let ticks = Arc::new(Counter::default());
    g.request(timer_irq, &ticks, true);
    set_cpu(2);
    g.core
        .enable_percpu_irq(timer_irq, TriggerType::None)
        .unwrap();
    set_cpu(0);
    g.model.raise_virq(GUEST, Virq::TIMER, v2);
    g.upcall_on(2);
    assert_eq!(ticks.on(2), 1);

    // A dynamic channel on vCPU 2 moves away when it goes down.
    let events = Arc::new(Counter::default());
    let (pp, gp, irq) = g.connect(&events, false);
    g.core
        .set_affinity(irq, &CpuMask::from_cpus([cpu2]))
        .unwrap();
    assert_eq!(g.ch.binding(gp).unwrap().vcpu, v2);

    g.core.cpu_down(cpu2, &ctl).unwrap();
    assert!(!g.core.cpu_online(cpu2));
    assert_eq!(g.ch.vcpu_state(v2), VcpuState::Down);
    assert_eq!(
        g.dom.status(timer).unwrap().state,
        ChannelState::Closed,
        "closed after the CPU died"
    );
    assert!(!g.core.is_allocated(timer_irq));
    assert_eq!(
        g.core.nr_descs(),
        descs_before + 1,
        "only the dynamic channel is left"
    );
    assert_eq!(
        g.ch.send_ipi(0, v2),
        Err(EvtchnError::VcpuOffline(v2)),
        "IPI to an offline vCPU is refused"
    );
    let moved_to = g.ch.binding(gp).unwrap().vcpu;
    assert_ne!(moved_to, v2);
    g.peer.send(pp).unwrap();
    g.upcall_on(moved_to.0);
    assert_eq!(
        events.total(),
        2,
        "the bind's initial event, then this one after the migration"
    );

    // And up again: fresh bindings.
    g.core.cpu_up(cpu2, &ctl).unwrap();
    assert!(g.ch.per_vcpu_virq_port(Virq::TIMER, v2).is_some());
    g.ch.send_ipi(1, v2).unwrap();
    let _ = PEER;
}

/// Binding per-vCPU channels from the bring-up phase (sparse lock held) is
/// the 2015 deadlock: here it is an error, and the bring-up rolls back.
#[test]
fn binding_from_the_locked_bring_up_phase_is_refused_not_a_deadlock() {
    struct Misplaced(XenIrqs);
    impl<P: Platform> HotplugCallback<P> for Misplaced {
        fn name(&self) -> &str {
            "misplaced"
        }
        fn up(&self, ctx: &HotplugCtx<'_, P>) -> Result<(), IrqError> {
            match self.0.prepare_cpu(ctx.core, ctx.cpu) {
                Ok(_) => Ok(()),
                Err(EvtchnError::Irq(e)) => Err(e),
                Err(_) => Err(IrqError::InvalidArgument),
            }
        }
        fn down(&self, _ctx: &HotplugCtx<'_, P>) {}
    }
    let g = guest_partial(3, 2, Config::default());
    g.core
        .register_hotplug(CpuPhase::BringUp, Arc::new(Misplaced(g.xen.clone())))
        .unwrap();
    let ctl = Control { core: &g.core };
    let descs = g.core.nr_descs();
    set_cpu(0);
    assert_eq!(
        g.core.cpu_up(CpuId::of::<2>(), &ctl),
        Err(IrqError::SparseLockHeldByCaller)
    );
    assert!(!g.core.cpu_online(CpuId::of::<2>()));
    assert_eq!(g.core.nr_descs(), descs);
    assert_eq!(g.ch.vcpu_state(VcpuId(2)), VcpuState::Down);
    assert_eq!(g.ch.ipi_port(0, VcpuId(2)), None);
}
