//! CPU hotplug (acceptance 3): the vector space of a CPU is set up in the
//! bring-up phase with the sparse lock held, and released when it goes down
//! (interrupts moved away first, latched vectors replayed on the new CPU).

mod common;

use arch_x86::*;
use common::{TestControl, TestPlatform, as_cpu, rig, rig_online};
use irqcore::hotplug::{Direction, HotplugCtx};
use irqcore::{
    CpuId, CpuMask, CpuPhase, FlowKind, HotplugCallback, IrqError, IrqNumber, IrqRequest,
    IrqReturn, LineState, TriggerType,
};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// Records, at the phase it is registered for, whether the sparse lock is
/// held and whether the vector space of the CPU is online.
struct Observer {
    vectors: Arc<VectorDomain<arch_x86::model::ModelApicOps>>,
    seen: Mutex<Vec<(CpuPhase, bool, bool)>>,
}

impl HotplugCallback<TestPlatform> for Observer {
    fn name(&self) -> &str {
        "observer"
    }
    fn up(&self, ctx: &HotplugCtx<'_, TestPlatform>) -> Result<(), IrqError> {
        let online = self.vectors.with_matrix_ref(|m| m.is_online(ctx.cpu));
        self.seen
            .lock()
            .unwrap()
            .push((ctx.phase, ctx.core.sparse_lock_held(), online));
        Ok(())
    }
    fn down(&self, _ctx: &HotplugCtx<'_, TestPlatform>) {}
}

#[test]
fn cpu_online_sets_up_the_vector_space_in_bring_up_with_the_sparse_lock_held() {
    let r = rig_online(&[0, 1], 1);
    let obs = Arc::new(Observer {
        vectors: r.vectors.clone(),
        seen: Mutex::new(Vec::new()),
    });
    // Prepare: before; BringUp: registered after the vector domain's.
    r.core
        .register_hotplug(CpuPhase::Prepare, obs.clone())
        .unwrap();
    r.vectors.register_hotplug(&r.core).unwrap();
    r.core
        .register_hotplug(CpuPhase::BringUp, obs.clone())
        .unwrap();
    r.core
        .register_hotplug(CpuPhase::Online, obs.clone())
        .unwrap();
    assert_eq!(
        r.vectors
            .alloc(IrqNumber(5), &CpuMask::of(CpuId::of::<1>()), false)
            .err(),
        Some(VectorError::NoOnlineCpu)
    );

    as_cpu(0, || {
        r.core
            .cpu_up(CpuId::of::<1>(), &TestControl { core: &r.core })
    })
    .unwrap();

    assert_eq!(
        *obs.seen.lock().unwrap(),
        [
            // Not yet set up, lock free.
            (CpuPhase::Prepare, false, false),
            // Set up by the time the bring-up phase ran, lock held.
            (CpuPhase::BringUp, true, true),
            (CpuPhase::Online, false, true),
        ]
    );
    assert_eq!(
        r.vectors
            .alloc(IrqNumber(5), &CpuMask::of(CpuId::of::<1>()), false)
            .unwrap()
            .hwirq
            .0,
        5
    );
    assert_eq!(
        r.vectors.target(IrqNumber(5)).unwrap().cpu,
        CpuId::of::<1>()
    );
}

#[test]
fn the_vector_callback_refuses_to_run_without_the_sparse_lock() {
    let r = rig_online(&[0, 1], 1);
    let cb = VectorHotplug::from_domain(r.vectors.clone());
    let ctx = HotplugCtx {
        core: &r.core,
        cpu: CpuId::of::<1>(),
        phase: CpuPhase::BringUp,
        direction: Direction::Up,
    };
    let res = as_cpu(0, || HotplugCallback::<TestPlatform>::up(&cb, &ctx));
    assert_eq!(res, Err(IrqError::Busy));
    assert!(
        !r.vectors.with_matrix_ref(|m| m.is_online(CpuId::of::<1>())),
        "state unchanged"
    );
    // With the lock held it works.
    let g = as_cpu(0, || r.core.lock_sparse()).unwrap();
    as_cpu(0, || HotplugCallback::<TestPlatform>::up(&cb, &ctx)).unwrap();
    drop(g);
    assert!(r.vectors.with_matrix_ref(|m| m.is_online(CpuId::of::<1>())));
}

fn edge_ioapic_irq(
    r: &common::Rig,
    cpu: u32,
) -> (
    usize,
    Arc<IoApic<arch_x86::model::ModelIoApicMmio>>,
    IrqNumber,
    Arc<AtomicU32>,
) {
    let idx = r.machine.add_ioapic(0, 24, 0x20);
    let io = Arc::new(IoApic::new("IO-APIC", r.machine.ioapic_mmio(idx), 0).unwrap());
    let irq = r.core.alloc_descs(IrqNumber(32), 1).unwrap();
    let v = r
        .vectors
        .alloc(irq, &CpuMask::of(CpuId::new(cpu).unwrap()), false)
        .unwrap();
    let pin = io.alloc_pin(irq, 4, TriggerType::EdgeRising, &v).unwrap();
    r.core.set_chip(irq, vec![pin, v], FlowKind::Edge).unwrap();
    let n = Arc::new(AtomicU32::new(0));
    let n2 = n.clone();
    let h = move |_: IrqNumber| {
        n2.fetch_add(1, Ordering::SeqCst);
        IrqReturn::HANDLED
    };
    as_cpu(0, || {
        r.core
            .request_irq(irq, IrqRequest::new("uart", Arc::new(h)))
    })
    .unwrap()
    .leak();
    as_cpu(0, || {
        r.core
            .set_affinity(irq, &CpuMask::of(CpuId::new(cpu).unwrap()))
    })
    .unwrap();
    (idx, io, irq, n)
}

#[test]
fn cpu_down_moves_interrupts_replays_latched_vectors_and_releases_the_vector_space() {
    let r = rig(&[0, 1, 2]);
    r.vectors.register_hotplug(&r.core).unwrap();
    let (idx, io, irq, n) = edge_ioapic_irq(&r, 1);
    let old = r.vectors.target(irq).unwrap();
    assert_eq!(old.cpu, CpuId::of::<1>());
    // An edge arrives and is latched in CPU 1's IRR, not yet taken.
    r.machine.set_ioapic_line(idx, 4, true);
    assert!(r.machine.is_pending(1, old.vector));

    as_cpu(0, || {
        r.core
            .cpu_down(CpuId::of::<1>(), &TestControl { core: &r.core })
    })
    .unwrap();

    assert!(!r.core.cpu_online(CpuId::of::<1>()));
    assert!(!r.vectors.with_matrix_ref(|m| m.is_online(CpuId::of::<1>())));
    let new = r.vectors.target(irq).unwrap();
    assert_ne!(new.cpu, CpuId::of::<1>());
    assert_eq!(io.entry(4).unwrap().destination(), new.apic_id.get());
    // The old vector is released at once (its CPU is gone).
    assert!(
        !r.vectors
            .with_matrix_ref(|m| m.is_allocated(old.cpu, old.vector))
    );
    assert_eq!(r.vectors.irq_for_vector(CpuId::of::<1>(), old.vector), None);
    // The latched interrupt was replayed on the new CPU, not lost.
    assert_eq!(r.run_cpu(new.cpu.index()), [irq]);
    assert_eq!(n.load(Ordering::SeqCst), 1);
    // New edges go to the new CPU.
    r.machine.set_ioapic_line(idx, 4, false);
    r.machine.set_ioapic_line(idx, 4, true);
    assert_eq!(r.run_cpu(new.cpu.index()), [irq]);
    assert_eq!(n.load(Ordering::SeqCst), 2);

    // And back online: the vector space is there again.
    as_cpu(0, || {
        r.core
            .cpu_up(CpuId::of::<1>(), &TestControl { core: &r.core })
    })
    .unwrap();
    assert!(r.vectors.with_matrix_ref(|m| m.is_online(CpuId::of::<1>())));
    as_cpu(0, || {
        r.core.set_affinity(irq, &CpuMask::of(CpuId::of::<1>()))
    })
    .unwrap();
    assert_eq!(r.vectors.target(irq).unwrap().cpu, CpuId::of::<1>());
}

#[test]
fn managed_irq_keeps_its_reservation_across_cpu_offline_and_online() {
    let r = rig(&[0, 1]);
    r.vectors.register_hotplug(&r.core).unwrap();
    let idx = r.machine.add_ioapic(0, 24, 0x20);
    let io = Arc::new(IoApic::new("IO-APIC", r.machine.ioapic_mmio(idx), 0).unwrap());
    let irq = r.core.alloc_descs(IrqNumber(32), 1).unwrap();
    let v = r
        .vectors
        .alloc(irq, &CpuMask::of(CpuId::of::<1>()), true)
        .unwrap();
    let pin = io.alloc_pin(irq, 6, TriggerType::EdgeRising, &v).unwrap();
    r.core.set_chip(irq, vec![pin, v], FlowKind::Edge).unwrap();
    as_cpu(0, || {
        r.core.set_affinity(irq, &CpuMask::of(CpuId::of::<1>()))
    })
    .unwrap();
    r.core
        .set_irq_settings(irq, LineState::AFFINITY_MANAGED, LineState::empty())
        .unwrap();
    let n = Arc::new(AtomicU32::new(0));
    let n2 = n.clone();
    let h = move |_: IrqNumber| {
        n2.fetch_add(1, Ordering::SeqCst);
        IrqReturn::HANDLED
    };
    as_cpu(0, || {
        r.core
            .request_irq(irq, IrqRequest::new("nvme", Arc::new(h)))
    })
    .unwrap()
    .leak();
    assert_eq!(r.vectors.target(irq).unwrap().cpu, CpuId::of::<1>());

    as_cpu(0, || {
        r.core
            .cpu_down(CpuId::of::<1>(), &TestControl { core: &r.core })
    })
    .unwrap();
    // Shut down: no vector, the pin masked, the reservation kept.
    assert_eq!(r.vectors.target(irq), None);
    assert!(io.entry(6).unwrap().is_masked());
    assert_eq!(
        r.vectors.with_matrix_ref(|m| m.managed(CpuId::of::<1>())),
        (1, 0)
    );

    as_cpu(0, || {
        r.core
            .cpu_up(CpuId::of::<1>(), &TestControl { core: &r.core })
    })
    .unwrap();
    let t = r.vectors.target(irq).expect("restarted on its CPU");
    assert_eq!(t.cpu, CpuId::of::<1>());
    let e = io.entry(6).unwrap();
    assert_eq!(
        (e.is_masked(), e.vector(), e.destination()),
        (false, t.vector.get(), 1)
    );
    r.machine.set_ioapic_line(idx, 6, true);
    assert_eq!(r.run_cpu(1), [irq]);
    assert_eq!(n.load(Ordering::SeqCst), 1);
}
