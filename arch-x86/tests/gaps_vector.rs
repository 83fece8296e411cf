//! Vector-domain behaviour that no other test pinned (issue 17, cargo-mutants
//! survivors of `vector.rs`): system vectors reserved through the domain,
//! the vector table across CPU offline/online, an offline CPU's cleanup
//! leaving other CPUs' unfinished moves alone, freeing an irq whose old
//! vector is queued for cleanup, a managed irq restarted by its chip, the
//! chip's name in the hierarchy, and `LapicOps` reading the IRR.

mod common;

use arch_x86::model::ModelMsiDevice;
use arch_x86::*;
use common::{as_cpu, rig, vec_};
use irqcore::{ChipLevel, CpuId, CpuMask, FlowKind, HwIrq, IrqChip, IrqData, IrqNumber};
use std::sync::Arc;

fn cpus(list: &[u32]) -> CpuMask {
    CpuMask::from_cpus(list.iter().map(|c| CpuId::new(*c).unwrap()))
}

fn is_allocated(r: &common::Rig, cpu: CpuId, v: Vector) -> bool {
    r.vectors.with_matrix_ref(|m| m.is_allocated(cpu, v))
}

/// Allocates unmanaged `irq` on `from` and moves it to `to` through the
/// chip; no interrupt has arrived on the new vector yet. Returns the levels
/// and the old vector.
fn moved(r: &common::Rig, irq: IrqNumber, from: u32, to: u32) -> (Vec<ChipLevel>, Vector) {
    let lvl = r.vectors.alloc(irq, &cpus(&[from]), false).unwrap();
    let old = r.vectors.target(irq).unwrap().vector;
    let levels = vec![lvl];
    r.vectors
        .set_affinity(&IrqData::new(irq, &levels), &cpus(&[to]), false)
        .unwrap();
    assert_eq!(r.vectors.target(irq).unwrap().cpu.get(), to);
    (levels, old)
}

/// Like [`moved`], then the first interrupt arrives on the new CPU: the old
/// vector is queued for `from`'s cleanup, still allocated and mapped.
fn moved_and_arrived(
    r: &common::Rig,
    irq: IrqNumber,
    from: u32,
    to: u32,
) -> (Vec<ChipLevel>, Vector) {
    let (levels, old) = moved(r, irq, from, to);
    r.machine.set_current_cpu(to as usize);
    r.vectors.ack(&IrqData::new(irq, &levels));
    let from = CpuId::new(from).unwrap();
    assert!(r.machine.take_cleanup_requests().contains(&from));
    assert!(is_allocated(r, from, old), "queued, not yet released");
    (levels, old)
}

#[test]
fn a_system_vector_reserved_through_the_domain_is_never_handed_to_a_device() {
    let r = rig(&[0]);
    // The kernel's cleanup IPI (or any vector of its own) inside the
    // device window, reserved before the first allocation.
    r.vectors.assign_system_vector(vec_(0x20)).unwrap();
    assert!(r.vectors.with_matrix_ref(|m| m.is_system(vec_(0x20))));
    r.vectors.alloc(IrqNumber(1), &cpus(&[0]), false).unwrap();
    let t = r.vectors.target(IrqNumber(1)).unwrap();
    assert_eq!(
        t.vector, 0x21,
        "the lowest free vector above the system one"
    );
    // A vector a device already owns cannot become a system vector.
    assert_eq!(
        r.vectors.assign_system_vector(vec_(0x21)),
        Err(VectorError::InUse(0x21))
    );
    assert!(!r.vectors.with_matrix_ref(|m| m.is_system(vec_(0x21))));
    assert_eq!(
        r.vectors.irq_for_vector(CpuId::BOOT, vec_(0x21)),
        Some(IrqNumber(1))
    );
}

#[test]
fn a_cpu_coming_online_keeps_the_table_entries_of_vectors_still_allocated_there() {
    // The matrix keeps a CPU's allocations across offline/online (the core
    // moves interrupts away first, but a move can fail and leave an irq on
    // the CPU): the vector table must keep agreeing with the matrix, or
    // the next interrupt on that vector finds no irq.
    let r = rig(&[0, 1]);
    let one = CpuId::of::<1>();
    r.vectors.alloc(IrqNumber(9), &cpus(&[1]), false).unwrap();
    let t = r.vectors.target(IrqNumber(9)).unwrap();
    r.vectors.cpu_offline(one).unwrap();
    r.vectors.cpu_online(one).unwrap();
    assert!(is_allocated(&r, one, t.vector));
    assert_eq!(r.vectors.irq_for_vector(one, t.vector), Some(IrqNumber(9)));
    for v in Vector::all() {
        assert_eq!(
            r.vectors.irq_for_vector(one, v).is_some(),
            is_allocated(&r, one, v),
            "vector {v} of CPU 1: table and matrix disagree"
        );
    }
}

#[test]
fn a_cpu_going_offline_leaves_unfinished_moves_away_from_other_cpus_alone() {
    let r = rig(&[0, 1, 2]);
    let irq = IrqNumber(12);
    let (_levels, old) = moved(&r, irq, 0, 1);
    // CPU 2, which has nothing to do with the move, goes down.
    r.vectors.cpu_offline(CpuId::of::<2>()).unwrap();
    // An interrupt may still be in flight to the old vector on CPU 0: it
    // stays allocated and mapped until the move completes.
    assert!(is_allocated(&r, CpuId::BOOT, old));
    assert_eq!(r.vectors.irq_for_vector(CpuId::BOOT, old), Some(irq));
    assert!(r.vectors.move_in_progress(irq));
    // The old CPU going down is what releases it.
    r.vectors.cpu_offline(CpuId::BOOT).unwrap();
    assert!(!is_allocated(&r, CpuId::BOOT, old));
    assert_eq!(r.vectors.irq_for_vector(CpuId::BOOT, old), None);
    assert!(!r.vectors.move_in_progress(irq));
}

#[test]
fn freeing_an_irq_releases_its_queued_old_vector_at_once_and_a_new_owner_keeps_it() {
    let r = rig(&[0, 1]);
    let a = IrqNumber(20);
    let (_levels, old) = moved_and_arrived(&r, a, 0, 1);
    r.vectors.free(a).unwrap();
    // "Releases every vector": not only once CPU 0 runs its cleanup.
    assert!(!is_allocated(&r, CpuId::BOOT, old), "still allocated");
    assert_eq!(r.vectors.irq_for_vector(CpuId::BOOT, old), None);
    assert!(!r.vectors.move_in_progress(a), "a freed irq has no move");
    // The vector goes to the next irq on CPU 0 (lowest free first)...
    let b = IrqNumber(21);
    r.vectors.alloc(b, &cpus(&[0]), false).unwrap();
    assert_eq!(r.vectors.target(b).unwrap().vector, old);
    // ...and CPU 0's cleanup, run afterwards, must not take it from b.
    as_cpu(0, || r.vectors.run_cleanup(CpuId::BOOT));
    assert!(is_allocated(&r, CpuId::BOOT, old), "b's vector was freed");
    assert_eq!(r.vectors.irq_for_vector(CpuId::BOOT, old), Some(b));
}

#[test]
fn freeing_one_irq_leaves_another_irqs_queued_old_vector_to_its_cleanup() {
    let r = rig(&[0, 1]);
    let (a, c) = (IrqNumber(30), IrqNumber(31));
    let (_la, old_a) = moved_and_arrived(&r, a, 0, 1);
    let (_lc, old_c) = moved_and_arrived(&r, c, 0, 1);
    r.vectors.free(a).unwrap();
    assert!(!is_allocated(&r, CpuId::BOOT, old_a));
    // c's old vector may still have an interrupt in flight on CPU 0: it
    // stays mapped to c until CPU 0's cleanup sees it is not pending.
    assert!(is_allocated(&r, CpuId::BOOT, old_c));
    assert_eq!(r.vectors.irq_for_vector(CpuId::BOOT, old_c), Some(c));
    assert!(r.vectors.move_in_progress(c));
    assert_eq!(as_cpu(0, || r.vectors.run_cleanup(CpuId::BOOT)), 0);
    assert!(!is_allocated(&r, CpuId::BOOT, old_c));
    assert!(!r.vectors.move_in_progress(c));
}

#[test]
fn a_managed_msi_irq_shut_down_by_its_chip_gets_a_vector_again_on_startup() {
    // The MSI level's startup starts the vector level first: a managed irq
    // gave its vector back on shutdown and must get one from its
    // reservation before the message can be programmed and unmasked.
    let r = rig(&[0, 1]);
    let dev = ModelMsiDevice::new(&r.machine, 1);
    let msi = Arc::new(MsiChip::new("PCI-MSI", dev));
    let irq = IrqNumber(50);
    let v = r.vectors.alloc(irq, &cpus(&[0, 1]), true).unwrap();
    let levels = vec![ChipLevel::new(msi.clone(), HwIrq(0)), v];
    let d = IrqData::new(irq, &levels);
    msi.startup(&d);
    assert!(!msi.device().is_masked(0));
    msi.shutdown(&d);
    assert!(msi.device().is_masked(0));
    assert_eq!(
        r.vectors.target(irq),
        None,
        "vector back in the reservation"
    );

    msi.startup(&d);
    let t = r
        .vectors
        .target(irq)
        .expect("a vector from the reservation");
    assert_eq!(
        msi.device().message(0),
        Some(compose_msi(t.apic_id, t.vector, MsiDestFormat::XApic).unwrap())
    );
    assert!(!msi.device().is_masked(0), "started, so unmasked");
    msi.device().fire(0).unwrap();
    assert!(r.machine.is_pending(t.cpu.index(), t.vector));
    assert_eq!(r.vectors.irq_for_vector(t.cpu, t.vector), Some(irq));
}

#[test]
fn the_vector_level_is_named_apic_in_the_chip_hierarchy() {
    // Diagnostics (snapshots, the interrupt table, Linux's debugfs) name
    // each level's chip; the vector domain is the local APIC's level.
    let r = rig(&[0]);
    let idx = r.machine.add_ioapic(0, 24, 0x20);
    let io = Arc::new(IoApic::new("IO-APIC", r.machine.ioapic_mmio(idx), 0).unwrap());
    let irq = r.core.alloc_descs(IrqNumber(32), 1).unwrap();
    let v = r.vectors.alloc(irq, &cpus(&[0]), false).unwrap();
    let pin = io
        .alloc_pin(irq, 3, irqcore::TriggerType::EdgeRising, &v)
        .unwrap();
    r.core.set_chip(irq, vec![pin, v], FlowKind::Edge).unwrap();
    let chips: Vec<(String, u64)> = r
        .core
        .snapshot(irq)
        .unwrap()
        .chips
        .iter()
        .map(|(c, h)| (format!("{c:?}"), h.0))
        .collect();
    assert_eq!(
        chips,
        [
            ("IO-APIC".to_string(), 3),
            ("APIC".to_string(), irq.0 as u64)
        ]
    );
}

mod lapic_ops {
    use super::*;
    use arch_x86::model::{Machine, ModelMsr, ModelXApic};
    use common::THIS_CPU;

    type Ops = LapicOps<ModelXApic, ModelMsr, fn() -> CpuId>;

    fn this_cpu() -> CpuId {
        CpuId::new(THIS_CPU.with(|c| c.get()).unwrap_or(0) as u32).unwrap()
    }

    #[test]
    fn vectors_latched_in_the_executing_cpus_irr_are_reported_pending() {
        // What the dying CPU replays on the new targets, and what its
        // cleanup must not release yet, read from the real IRR.
        let machine = Machine::new(&[0, 1]);
        machine.set_cpu_resolver(Some(Arc::new(|| THIS_CPU.with(|c| c.get()))));
        let lapic = || Lapic::attach(ApicMode::XApic, machine.local_xapic(), machine.local_msr());
        for cpu in 0..2 {
            as_cpu(cpu, || {
                Lapic::init(ApicMode::XApic, machine.local_xapic(), machine.local_msr())
                    .unwrap()
                    .enable(arch_x86::lapic::DEFAULT_SPURIOUS_VECTOR)
            });
        }
        let ids = [ApicId(0), ApicId(1)];
        let ops: Ops = LapicOps::new(lapic(), this_cpu as fn() -> CpuId, &ids, None);
        let vectors = Arc::new(VectorDomain::new(ops, &ids, MsiDestFormat::XApic).unwrap());
        vectors.cpu_online(CpuId::BOOT).unwrap();
        vectors.cpu_online(CpuId::of::<1>()).unwrap();
        let irq = IrqNumber(7);
        vectors.alloc(irq, &cpus(&[1]), false).unwrap();
        let t = vectors.target(irq).unwrap();
        as_cpu(1, || {
            assert_eq!(vectors.pending_irqs(t.cpu), []);
            lapic().self_ipi(t.vector).unwrap();
            assert!(machine.is_pending(1, t.vector));
            assert!(vectors.ops().vector_pending(t.vector));
            assert_eq!(vectors.pending_irqs(t.cpu), [irq]);
        });
        // The IRR read is the executing CPU's: CPU 0 has nothing latched.
        as_cpu(0, || assert!(!vectors.ops().vector_pending(t.vector)));
    }
}
