//! Freeing an irq in the middle of a vector move (issue 17): every vector
//! the irq held, including an old one that still awaits cleanup on its CPU,
//! must go back to the matrix.

mod common;

use arch_x86::Vector;
use common::rig;
use irqcore::{CpuId, CpuMask, IrqChip, IrqData, IrqNumber};

fn allocated(r: &common::Rig) -> (u32, u32) {
    r.vectors
        .with_matrix_ref(|m| (m.allocated(CpuId::BOOT), m.allocated(CpuId::of::<1>())))
}

/// Allocates `irq` on CPU 0 and moves it to CPU 1 through the chip; returns
/// the old (CPU 0) vector.
fn moved(r: &common::Rig, irq: IrqNumber) -> (Vec<irqcore::ChipLevel>, Vector) {
    let lvl = r
        .vectors
        .alloc(irq, &CpuMask::of(CpuId::BOOT), false)
        .unwrap();
    let old = r.vectors.target(irq).unwrap();
    assert_eq!(old.cpu, CpuId::BOOT);
    let levels = vec![lvl];
    let d = IrqData::new(irq, &levels);
    r.vectors
        .set_affinity(&d, &CpuMask::of(CpuId::of::<1>()), false)
        .unwrap();
    assert_eq!(r.vectors.target(irq).unwrap().cpu, CpuId::of::<1>());
    (levels, old.vector)
}

#[test]
fn freeing_before_the_first_arrival_on_the_new_vector_releases_both() {
    let r = rig(&[0, 1]);
    let base = allocated(&r);
    let irq = IrqNumber(40);
    let (_levels, old) = moved(&r, irq);
    assert_eq!(allocated(&r), (base.0 + 1, base.1 + 1));
    r.vectors.free(irq).unwrap();
    assert_eq!(allocated(&r), base, "a vector leaked");
    assert!(
        !r.vectors
            .with_matrix_ref(|m| m.is_allocated(CpuId::BOOT, old))
    );
    assert_eq!(r.vectors.irq_for_vector(CpuId::BOOT, old), None);
    assert!(!r.vectors.move_in_progress(irq));
}

#[test]
fn freeing_while_the_old_vector_awaits_cleanup_releases_it() {
    let r = rig(&[0, 1]);
    let base = allocated(&r);
    let irq = IrqNumber(41);
    let (levels, old) = moved(&r, irq);
    // First arrival on the new CPU completes the move: the old vector is
    // queued for CPU 0's cleanup.
    r.machine.set_current_cpu(1);
    r.vectors.ack(&IrqData::new(irq, &levels));
    assert!(r.vectors.move_in_progress(irq), "cleanup queued on CPU 0");
    assert!(
        r.vectors
            .with_matrix_ref(|m| m.is_allocated(CpuId::BOOT, old))
    );
    // The irq is freed before CPU 0 ran its cleanup.
    r.vectors.free(irq).unwrap();
    r.machine.set_current_cpu(0);
    r.vectors.run_cleanup(CpuId::BOOT);
    assert!(
        !r.vectors
            .with_matrix_ref(|m| m.is_allocated(CpuId::BOOT, old)),
        "the old vector {old:#x} on CPU 0 leaked"
    );
    assert_eq!(allocated(&r), base, "a vector leaked");
    assert_eq!(r.vectors.irq_for_vector(CpuId::BOOT, old), None);
}

#[test]
fn managed_shutdown_while_the_old_vector_awaits_cleanup_releases_it() {
    let r = rig(&[0, 1]);
    let irq = IrqNumber(42);
    let lvl = r
        .vectors
        .alloc(
            irq,
            &CpuMask::from_cpus([CpuId::BOOT, CpuId::of::<1>()]),
            true,
        )
        .unwrap();
    let old = r.vectors.target(irq).unwrap();
    let other = CpuId::new(1 - old.cpu.get()).unwrap();
    let levels = vec![lvl];
    let d = IrqData::new(irq, &levels);
    r.vectors
        .set_affinity(&d, &CpuMask::of(other), false)
        .unwrap();
    r.machine.set_current_cpu(other.index());
    r.vectors.ack(&d);
    assert!(r.vectors.move_in_progress(irq));
    r.vectors.shutdown(&d);
    r.machine.set_current_cpu(old.cpu.index());
    r.vectors.run_cleanup(old.cpu);
    assert!(
        !r.vectors
            .with_matrix_ref(|m| m.is_allocated(old.cpu, old.vector)),
        "the old vector {} on {:?} leaked",
        old.vector,
        old.cpu
    );
}
