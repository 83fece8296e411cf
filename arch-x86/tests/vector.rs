//! Vector allocator and vector domain (acceptance 2): least-loaded CPU
//! choice, exhaustion, managed reservations across offline/online, and
//! cleanup of the old vector only after the first arrival on the new one.

mod common;

use arch_x86::*;
use common::rig;
use irqcore::{CpuId, CpuMask, FlowKind, IrqNumber, IrqRequest, IrqReturn};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

fn cpus(list: &[u32]) -> CpuMask {
    CpuMask::from_cpus(list.iter().map(|c| CpuId::new(*c).unwrap()))
}

#[test]
fn filling_one_cpu_moves_the_next_allocation_to_another_cpu_of_the_mask() {
    let mut m = VectorMatrix::with_default_window(3).unwrap();
    for c in 0..3 {
        m.cpu_online(CpuId::new(c).unwrap()).unwrap();
    }
    let per_cpu = m.available(CpuId::BOOT);
    assert_eq!(per_cpu, 0xEC - 0x20);
    // Fill CPU 1 completely.
    let mut got = std::collections::HashSet::new();
    for _ in 0..per_cpu {
        let (c, v) = m.alloc(&cpus(&[1])).unwrap();
        assert_eq!(c, CpuId::of::<1>());
        assert!(
            (0x20..0xEC).contains(&v.get()) && got.insert(v),
            "distinct vectors in the window"
        );
    }
    assert_eq!(m.available(CpuId::of::<1>()), 0);
    // The next allocation for {1, 2} goes to CPU 2.
    assert_eq!(m.alloc(&cpus(&[1, 2])).unwrap().0, CpuId::of::<2>());
    // Least loaded: CPU 0 (empty) wins over CPU 2 (one used).
    assert_eq!(m.alloc(&cpus(&[0, 1, 2])).unwrap().0, CpuId::BOOT);
    // Spreading: allocations alternate between equally loaded CPUs.
    let seq: Vec<u32> = (0..4)
        .map(|_| m.alloc(&cpus(&[0, 2])).unwrap().0.get())
        .collect();
    assert_eq!(seq, [0, 2, 0, 2]);
}

#[test]
fn exhaustion_is_a_typed_error_and_changes_nothing() {
    let mut m = VectorMatrix::new(2, 0x20, 0x24).unwrap();
    m.cpu_online(CpuId::BOOT).unwrap();
    m.cpu_online(CpuId::of::<1>()).unwrap();
    for _ in 0..8 {
        m.alloc(&cpus(&[0, 1])).unwrap();
    }
    let before = (
        m.available(CpuId::BOOT),
        m.available(CpuId::of::<1>()),
        m.allocated(CpuId::BOOT),
        m.allocated(CpuId::of::<1>()),
    );
    assert_eq!(m.alloc(&cpus(&[0, 1])), Err(VectorError::Exhausted));
    assert_eq!(m.reserve_managed(&cpus(&[0])), Err(VectorError::Exhausted));
    assert_eq!(
        before,
        (
            m.available(CpuId::BOOT),
            m.available(CpuId::of::<1>()),
            m.allocated(CpuId::BOOT),
            m.allocated(CpuId::of::<1>())
        )
    );
    // Offline CPUs are never chosen.
    m.cpu_offline(CpuId::of::<1>()).unwrap();
    assert_eq!(m.alloc(&cpus(&[1])), Err(VectorError::NoOnlineCpu));
    // Through the vector domain the same condition reaches irqcore as a
    // typed chip error.
    let r = rig(&[0]);
    r.vectors
        .with_matrix_ref(|m| assert_eq!(m.available(CpuId::BOOT), 0xCC));
    for i in 0..0xCC {
        r.vectors
            .alloc(IrqNumber(100 + i), &cpus(&[0]), false)
            .unwrap();
    }
    assert_eq!(
        r.vectors.alloc(IrqNumber(1), &cpus(&[0]), false).err(),
        Some(VectorError::Exhausted)
    );
    assert_eq!(
        irqcore::ChipError::from(VectorError::Exhausted),
        irqcore::ChipError::NoSpace
    );
}

#[test]
fn managed_reservation_survives_cpu_offline_and_online() {
    let mut m = VectorMatrix::new(2, 0x20, 0x28).unwrap();
    m.cpu_online(CpuId::BOOT).unwrap();
    // CPU 1 is offline: a managed reservation covers it anyway.
    m.reserve_managed(&cpus(&[0, 1])).unwrap();
    assert_eq!(m.managed(CpuId::of::<1>()), (1, 0));
    assert_eq!(m.available(CpuId::of::<1>()), 7);
    m.cpu_online(CpuId::of::<1>()).unwrap();
    let (c, v) = m.alloc_managed(&cpus(&[1])).unwrap();
    assert_eq!(c, CpuId::of::<1>());
    m.free(c, v).unwrap();
    // Offline, then fill CPU 1's unmanaged space after it comes back.
    m.cpu_offline(CpuId::of::<1>()).unwrap();
    m.cpu_online(CpuId::of::<1>()).unwrap();
    while m.alloc(&cpus(&[1])).is_ok() {}
    assert_eq!(m.available(CpuId::of::<1>()), 0);
    // The reservation is still there: the managed irq can start on CPU 1.
    assert_eq!(m.alloc_managed(&cpus(&[1])), Ok((CpuId::of::<1>(), v)));
    // Freeing a managed vector does not give it to unmanaged users.
    m.free(CpuId::of::<1>(), v).unwrap();
    assert_eq!(m.alloc(&cpus(&[1])), Err(VectorError::Exhausted));
    // Removing the reservation does.
    m.remove_managed(&cpus(&[0, 1])).unwrap();
    assert_eq!(m.alloc(&cpus(&[1])), Ok((CpuId::of::<1>(), v)));
}

#[test]
fn managed_irq_through_the_domain_restarts_after_offline_online() {
    let r = rig(&[0, 1]);
    r.vectors.cpu_offline(CpuId::of::<1>()).unwrap();
    r.vectors.cpu_offline(CpuId::BOOT).unwrap();
    let irq = IrqNumber(40);
    // No CPU of the mask online: reserved, not started.
    r.vectors.alloc(irq, &cpus(&[1]), true).unwrap();
    assert_eq!(r.vectors.target(irq), None);
    r.vectors.cpu_online(CpuId::of::<1>()).unwrap();
    let t = r.vectors.activate(irq).unwrap();
    assert_eq!(t.cpu, CpuId::of::<1>());
    r.vectors.free(irq).unwrap();
    assert_eq!(
        r.vectors.with_matrix_ref(|m| m.managed(CpuId::of::<1>())),
        (0, 0)
    );
}

#[test]
fn old_vector_is_freed_only_after_the_interrupt_arrived_on_the_new_one() {
    let r = rig(&[0, 1]);
    let dev = arch_x86::model::ModelMsiDevice::new(&r.machine, 1);
    let chip = Arc::new(MsiChip::new("MSI", dev));
    let irq = r.core.alloc_descs(IrqNumber(48), 1).unwrap();
    let v = r.vectors.alloc(irq, &cpus(&[0]), false).unwrap();
    r.core
        .set_chip(
            irq,
            vec![irqcore::ChipLevel::new(chip.clone(), irqcore::HwIrq(0)), v],
            FlowKind::Edge,
        )
        .unwrap();
    let n = Arc::new(AtomicU32::new(0));
    let n2 = n.clone();
    let h = move |_: IrqNumber| {
        n2.fetch_add(1, Ordering::SeqCst);
        IrqReturn::HANDLED
    };
    let _reg = r
        .core
        .request_irq(irq, IrqRequest::new("dev", Arc::new(h)))
        .unwrap();
    let old = r.vectors.target(irq).unwrap();
    assert_eq!(old.cpu, CpuId::BOOT);

    // A message sent before the move is in flight to the old vector.
    chip.device().fire(0).unwrap();
    r.core.set_affinity(irq, &cpus(&[1])).unwrap();
    let new = r.vectors.target(irq).unwrap();
    assert_eq!(new.cpu, CpuId::of::<1>());
    let old_allocated = |r: &common::Rig| {
        r.vectors
            .with_matrix_ref(|m| m.is_allocated(old.cpu, old.vector))
    };
    assert!(old_allocated(&r), "old vector kept during the move");
    assert!(r.vectors.move_in_progress(irq));
    // A second move before completion is deferred by the core (Busy).
    r.core.set_affinity(irq, &cpus(&[0])).unwrap();
    assert_eq!(r.vectors.target(irq).unwrap(), new, "deferred, not applied");
    // The in-flight interrupt on the old vector is still dispatched; it does
    // not complete the move.
    assert_eq!(r.run_cpu(0), [irq]);
    assert_eq!(n.load(Ordering::SeqCst), 1);
    assert!(old_allocated(&r));
    // Cleanup before the first arrival on the new vector frees nothing.
    r.machine.set_current_cpu(0);
    assert_eq!(r.vectors.run_cleanup(CpuId::BOOT), 0);
    assert!(old_allocated(&r));
    assert!(r.machine.take_cleanup_requests().is_empty());

    // First arrival on the new vector completes the move and asks CPU 0 to
    // clean up.
    chip.device().fire(0).unwrap();
    assert_eq!(r.run_cpu(1), [irq]);
    assert_eq!(n.load(Ordering::SeqCst), 2);
    assert_eq!(r.machine.take_cleanup_requests(), [CpuId::BOOT]);
    assert!(
        old_allocated(&r),
        "released by the old CPU's cleanup, not before"
    );
    // If the old vector is still pending in CPU 0's IRR the cleanup waits.
    r.machine.set_current_cpu(0);
    let l0 = Lapic::attach(ApicMode::XApic, r.machine.xapic(0), r.machine.msr(0));
    l0.self_ipi(old.vector).unwrap();
    assert_eq!(r.vectors.run_cleanup(CpuId::BOOT), 1);
    assert!(old_allocated(&r));
    // What is kept needs another run: CPU 0 is asked again (with an
    // IPI-driven cleanup and no timer, nothing else would free it).
    assert_eq!(r.machine.take_cleanup_requests(), [CpuId::BOOT]);
    assert_eq!(r.run_cpu(0), [irq]);
    r.machine.set_current_cpu(0);
    assert_eq!(r.vectors.run_cleanup(CpuId::BOOT), 0);
    assert!(!old_allocated(&r), "freed after arrival on the new vector");
    assert_eq!(r.vectors.irq_for_vector(CpuId::BOOT, old.vector), None);
    assert_eq!(
        r.vectors.irq_for_vector(CpuId::of::<1>(), new.vector),
        Some(irq)
    );
}

#[test]
fn moving_away_from_an_offline_cpu_frees_the_old_vector_at_once() {
    let r = rig(&[0, 1]);
    let irq = IrqNumber(7);
    let v = r.vectors.alloc(irq, &cpus(&[0]), false).unwrap();
    let old = r.vectors.target(irq).unwrap();
    r.vectors.cpu_offline(CpuId::BOOT).unwrap();
    let levels = vec![v];
    let d = irqcore::IrqData::new(irq, &levels);
    use irqcore::IrqChip;
    r.vectors.set_affinity(&d, &cpus(&[1]), false).unwrap();
    assert!(
        !r.vectors
            .with_matrix_ref(|m| m.is_allocated(old.cpu, old.vector))
    );
    assert!(!r.vectors.move_in_progress(irq));
    // Affinity to offline CPUs only is refused, state unchanged.
    r.vectors.cpu_offline(CpuId::of::<1>()).unwrap();
    assert!(r.vectors.set_affinity(&d, &cpus(&[0, 1]), false).is_err());
    assert_eq!(r.vectors.target(irq).unwrap().cpu, CpuId::of::<1>());
}

mod irq_control {
    use super::*;
    use std::sync::atomic::AtomicBool;

    static ENABLED: AtomicBool = AtomicBool::new(true);
    static SAVES: AtomicU32 = AtomicU32::new(0);
    static OFF_WHILE_LOCKED: AtomicBool = AtomicBool::new(true);

    fn save() -> bool {
        SAVES.fetch_add(1, Ordering::SeqCst);
        ENABLED.swap(false, Ordering::SeqCst)
    }
    fn restore(was: bool) {
        if was {
            ENABLED.store(true, Ordering::SeqCst);
        }
    }

    /// ApicOps that checks interrupts are off whenever the domain calls it
    /// with its lock held (vector_pending is called from run_cleanup under
    /// the lock).
    struct Probe;
    impl ApicOps for Probe {
        fn current_cpu(&self) -> CpuId {
            CpuId::BOOT
        }
        fn eoi(&self) {}
        fn send_ipi(&self, _: ApicId, _: Vector) {}
        fn vector_pending(&self, _: Vector) -> bool {
            if ENABLED.load(Ordering::SeqCst) {
                OFF_WHILE_LOCKED.store(false, Ordering::SeqCst);
            }
            false
        }
    }

    #[test]
    fn the_domain_lock_is_taken_with_interrupts_disabled() {
        let v = Arc::new(
            VectorDomain::new(Probe, &[ApicId(0), ApicId(1)], MsiDestFormat::XApic)
                .unwrap()
                .with_irq_control(IrqControl { save, restore }),
        );
        v.cpu_online(CpuId::BOOT).unwrap();
        v.cpu_online(CpuId::of::<1>()).unwrap();
        let lvl = v.alloc(IrqNumber(3), &cpus(&[1]), false).unwrap();
        // Move to CPU 0, then "arrive" there: the old vector is queued.
        let levels = vec![lvl];
        let d = irqcore::IrqData::new(IrqNumber(3), &levels);
        use irqcore::IrqChip;
        v.set_affinity(&d, &cpus(&[0]), false).unwrap();
        v.ack(&d);
        assert!(SAVES.load(Ordering::SeqCst) >= 4);
        assert!(ENABLED.load(Ordering::SeqCst), "restored after each call");
        assert_eq!(v.run_cleanup(CpuId::of::<1>()), 0);
        assert!(
            OFF_WHILE_LOCKED.load(Ordering::SeqCst),
            "interrupts were off under the lock"
        );
        assert!(ENABLED.load(Ordering::SeqCst));
        // From interrupt context (already off) the state stays off.
        ENABLED.store(false, Ordering::SeqCst);
        v.ack(&d);
        assert!(!ENABLED.load(Ordering::SeqCst));
        ENABLED.store(true, Ordering::SeqCst);
    }
}

#[test]
fn affinity_requests_during_an_unfinished_move_converge_on_the_last_one() {
    let r = rig(&[0, 1, 2, 3]);
    let dev = arch_x86::model::ModelMsiDevice::new(&r.machine, 1);
    let chip = Arc::new(MsiChip::new("MSI", dev));
    let irq = r.core.alloc_descs(IrqNumber(48), 1).unwrap();
    let v = r.vectors.alloc(irq, &cpus(&[0]), false).unwrap();
    r.core
        .set_chip(
            irq,
            vec![irqcore::ChipLevel::new(chip.clone(), irqcore::HwIrq(0)), v],
            FlowKind::Edge,
        )
        .unwrap();
    let n = Arc::new(AtomicU32::new(0));
    let n2 = n.clone();
    let h = move |_: IrqNumber| {
        n2.fetch_add(1, Ordering::SeqCst);
        IrqReturn::HANDLED
    };
    let _reg = r
        .core
        .request_irq(irq, IrqRequest::new("dev", Arc::new(h)))
        .unwrap();
    r.core.set_affinity(irq, &cpus(&[1])).unwrap();
    // The move to CPU 1 is unfinished: these are deferred, the last wins.
    r.core.set_affinity(irq, &cpus(&[2])).unwrap();
    r.core.set_affinity(irq, &cpus(&[3])).unwrap();
    assert_eq!(r.vectors.target(irq).unwrap().cpu, CpuId::of::<1>());
    // The first arrival on CPU 1 completes that move and applies the
    // pending request.
    chip.device().fire(0).unwrap();
    assert_eq!(r.run_cpu(1), [irq]);
    let t = r.vectors.target(irq).unwrap();
    assert_eq!(t.cpu, CpuId::of::<3>(), "never the intermediate CPU 2");
    assert_eq!(
        chip.device().message(0),
        Some(compose_msi(t.apic_id, t.vector, MsiDestFormat::XApic).unwrap())
    );
    chip.device().fire(0).unwrap();
    assert_eq!(r.run_cpu(3), [irq]);
    assert_eq!(n.load(Ordering::SeqCst), 2);
    assert_eq!(
        r.vectors.with_matrix_ref(|m| m.allocated(CpuId::of::<2>())),
        0
    );
    assert_eq!(r.core.effective_affinity(irq).unwrap(), cpus(&[3]));
}

#[test]
fn a_forced_move_finishes_an_unfinished_one_through_the_old_cpus_cleanup() {
    let r = rig(&[0, 1, 2]);
    let irq = r.core.alloc_descs(IrqNumber(32), 1).unwrap();
    let v = r.vectors.alloc(irq, &cpus(&[0]), false).unwrap();
    let first = r.vectors.target(irq).unwrap();
    let levels = [v];
    let d = irqcore::IrqData::new(irq, &levels);
    let chip = levels[0].chip.clone();
    // A move to CPU 1 that no interrupt has completed yet.
    chip.set_affinity(&d, &cpus(&[1]), false).unwrap();
    assert!(r.vectors.move_in_progress(irq));
    assert_eq!(
        chip.set_affinity(&d, &cpus(&[2]), false).err(),
        Some(irqcore::ChipError::Busy),
        "unforced: the core defers"
    );
    // CPU 1 goes down: the core forces the irq off it.
    let eff = chip.set_affinity(&d, &cpus(&[2]), true).unwrap();
    assert_eq!(eff.effective(), cpus(&[2]));
    let t = r.vectors.target(irq).unwrap();
    assert_eq!(t.cpu, CpuId::of::<2>());
    // The first move's old vector is queued on CPU 0 (which was asked to
    // clean up), still mapped until then.
    assert!(r.machine.take_cleanup_requests().contains(&CpuId::BOOT));
    assert_eq!(
        r.vectors.irq_for_vector(CpuId::BOOT, first.vector),
        Some(irq)
    );
    common::as_cpu(0, || r.vectors.run_cleanup(CpuId::BOOT));
    assert_eq!(r.vectors.irq_for_vector(CpuId::BOOT, first.vector), None);
    assert!(
        !r.vectors
            .with_matrix_ref(|m| m.is_allocated(CpuId::BOOT, first.vector))
    );
}
