//! The backend's hotplug callbacks (`XenIrqs::register_hotplug`) where a
//! transition goes wrong or races: the error `cpu_up` reports when the
//! per-vCPU channels cannot be set up, and which vCPU an affinity request
//! arriving while a CPU is being taken down may pick.

mod common;

use common::{Control, Counter, TestPlatform, guest_on_core, guest_partial, layout, set_cpu};
use irqcore::hotplug::HotplugCtx;
use irqcore::{ChipError, CpuId, CpuMask, CpuPhase, HotplugCallback, IrqError, IrqNumber};
use std::sync::{Arc, Mutex};
use xen_evtchn::{Config, VcpuId, VcpuState, Virq};

const GUEST: xen_evtchn::DomId = common::GUEST;

/// What `cpu_up` of a CPU whose per-vCPU channels failed must leave: the
/// CPU offline, the vCPU `Down` with nothing bound for it, and nothing
/// allocated in the core.
fn assert_nothing_left(g: &common::Guest, cpu: CpuId, descs: usize) {
    let v = VcpuId::from_cpu(cpu);
    assert!(!g.core.cpu_online(cpu));
    assert_eq!(g.ch.vcpu_state(v), VcpuState::Down);
    assert_eq!(g.ch.ipi_port(0, v), None);
    assert_eq!(g.ch.ipi_port(1, v), None);
    assert_eq!(g.ch.per_vcpu_virq_port(Virq::TIMER, v), None);
    assert_eq!(g.core.nr_descs(), descs);
}

/// No descriptor left for the new vCPU's IPIs and timer: `cpu_up` fails
/// with the core's own allocation error (what the kernel must report: the
/// fix is to free irqs or raise the capacity), and rolls back.
#[test]
fn cpu_up_without_descriptors_fails_with_the_cores_error_and_binds_nothing() {
    let g = guest_partial(3, 2, Config::default());
    g.xen.register_hotplug(&g.core).unwrap();
    let ctl = Control { core: &g.core };
    let cpu2 = CpuId::of::<2>();

    let mut taken = Vec::new();
    let exhausted = loop {
        match g.core.alloc_descs(IrqNumber(32), 1) {
            Ok(irq) => taken.push(irq),
            Err(e) => break e,
        }
        assert!(taken.len() <= 1024, "the core's capacity is 1024");
    };
    let descs = g.core.nr_descs();

    set_cpu(0);
    assert_eq!(g.core.cpu_up(cpu2, &ctl), Err(exhausted));
    assert_nothing_left(&g, cpu2, descs);

    // Once descriptors are free again the same CPU comes up: Xen was left
    // without the IPIs and the timer VIRQ too (a VIRQ still bound at Xen
    // would now fail with `AlreadyBound`).
    for irq in taken {
        g.core.free_descs(irq, 1).unwrap();
    }
    g.core.cpu_up(cpu2, &ctl).unwrap();
    assert_eq!(g.ch.vcpu_state(VcpuId(2)), VcpuState::Online);
    g.ch.send_ipi(0, VcpuId(2)).unwrap();
}

/// Xen has no free port for the new vCPU's IPIs (`-ENOSPC`): `cpu_up`
/// reports the hypervisor's refusal as the chip error it maps to
/// (`NoSpace`), not a generic one, and rolls back.
#[test]
fn cpu_up_when_xen_has_no_free_port_fails_with_nospace_and_binds_nothing() {
    let g = guest_partial(3, 2, Config::default());
    g.xen.register_hotplug(&g.core).unwrap();
    let ctl = Control { core: &g.core };
    let cpu2 = CpuId::of::<2>();
    let descs = g.core.nr_descs();

    // Xen's per-domain limit: no port above 0 (reserved) is handed out.
    g.model.set_max_evtchn_port(GUEST, 0).unwrap();
    set_cpu(0);
    assert_eq!(
        g.core.cpu_up(cpu2, &ctl),
        Err(IrqError::Chip(ChipError::NoSpace))
    );
    assert_nothing_left(&g, cpu2, descs);

    g.model.set_max_evtchn_port(GUEST, u32::MAX).unwrap();
    g.core.cpu_up(cpu2, &ctl).unwrap();
    assert_eq!(g.ch.vcpu_state(VcpuId(2)), VcpuState::Online);
}

/// A kernel that knows more CPUs than the domain has vCPUs: bringing up one
/// Xen does not have fails with `BadCpu` naming that CPU.
#[test]
fn cpu_up_of_a_cpu_the_domain_has_no_vcpu_for_is_bad_cpu() {
    let g = guest_on_core(2, 3, 2, Config::default(), layout(), common::abi());
    g.xen.register_hotplug(&g.core).unwrap();
    let ctl = Control { core: &g.core };
    let cpu2 = CpuId::of::<2>();
    let descs = g.core.nr_descs();
    set_cpu(0);
    assert_eq!(g.core.cpu_up(cpu2, &ctl), Err(IrqError::BadCpu(cpu2)));
    assert!(!g.core.cpu_online(cpu2));
    assert_eq!(g.core.nr_descs(), descs);
}

/// What the probe saw during the pre-down step: the dying vCPU's state,
/// the affinity request's result, and the vCPU the channel is on after it.
type Seen = (VcpuState, Result<(), IrqError>, VcpuId);

/// Plays an affinity request (irqbalance, a driver) that arrives while a
/// CPU is being taken down, after the backend's pre-down step: registered
/// before the backend's callbacks, its `down` runs after theirs.
struct AffinityDuringTeardown {
    irq: IrqNumber,
    mask: CpuMask,
    ch: Arc<xen_evtchn::EventChannels>,
    port: xen_evtchn::Port,
    seen: Mutex<Option<Seen>>,
}

impl HotplugCallback<TestPlatform> for AffinityDuringTeardown {
    fn name(&self) -> &str {
        "test: affinity request during teardown"
    }
    fn up(&self, _ctx: &HotplugCtx<'_, TestPlatform>) -> Result<(), IrqError> {
        Ok(())
    }
    fn down(&self, ctx: &HotplugCtx<'_, TestPlatform>) {
        let state = self.ch.vcpu_state(VcpuId::from_cpu(ctx.cpu));
        let r = ctx.core.set_affinity(self.irq, &self.mask);
        let now = self.ch.binding(self.port).unwrap().vcpu;
        *self.seen.lock().unwrap() = Some((state, r, now));
    }
}

/// Once a CPU's teardown has begun its vCPU takes no new channels: an
/// affinity request for {1, 2} made then puts the channel on vCPU 1, even
/// though the dying vCPU 2 has fewer channels (the least-loaded choice).
/// Otherwise the channel would be bound to a vCPU about to stop, to be
/// moved again a moment later.
#[test]
fn affinity_request_during_cpu_down_avoids_the_dying_vcpu() {
    let g = guest_partial(3, 2, Config::default());
    let ctl = Control { core: &g.core };
    let (cpu1, cpu2) = (CpuId::of::<1>(), CpuId::of::<2>());
    let events = Arc::new(Counter::default());
    let (_pp, gp, irq) = g.connect(&events, false);
    // vCPU 1 carries one channel more than vCPU 2 will.
    let (_pp2, _gp2, irq2) = g.connect(&events, false);
    g.core
        .set_affinity(irq2, &CpuMask::from_cpus([cpu1]))
        .unwrap();

    let probe = Arc::new(AffinityDuringTeardown {
        irq,
        mask: CpuMask::from_cpus([cpu1, cpu2]),
        ch: g.ch.clone(),
        port: gp,
        seen: Mutex::new(None),
    });
    g.core
        .register_hotplug(CpuPhase::Online, probe.clone())
        .unwrap();
    g.xen.register_hotplug(&g.core).unwrap();

    set_cpu(0);
    g.core.cpu_up(cpu2, &ctl).unwrap();
    assert_eq!(g.ch.vcpu_state(VcpuId(2)), VcpuState::Online);
    // The least-loaded choice while vCPU 2 is online is vCPU 2 itself.
    assert_eq!(g.ch.pick_vcpu(&probe.mask), Some(VcpuId(2)));

    g.core.cpu_down(cpu2, &ctl).unwrap();
    let (state, r, now) = probe.seen.lock().unwrap().take().unwrap();
    assert_eq!(
        state,
        VcpuState::Prepared,
        "after the pre-down step the vCPU is no affinity target"
    );
    assert_eq!(r, Ok(()));
    assert_eq!(now, VcpuId(1), "the channel went to the vCPU staying up");
    assert_eq!(g.ch.binding(gp).unwrap().vcpu, VcpuId(1));
    assert_eq!(g.ch.vcpu_state(VcpuId(2)), VcpuState::Down);
}
