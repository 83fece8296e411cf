//! The owning handles: dropping an `AllocatedVector` gives its vector back
//! to the matrix, dropping a `ClaimedPin` masks and frees its IOAPIC entry;
//! `leak()` keeps both.

mod common;

use arch_x86::*;
use common::rig;
use irqcore::{CpuId, CpuMask, IrqNumber, TriggerType};
use std::sync::Arc;

fn allocated(r: &common::Rig, cpu: CpuId) -> u32 {
    r.vectors.with_matrix_ref(|m| m.allocated(cpu))
}

#[test]
fn dropping_an_allocated_vector_frees_it() {
    let r = rig(&[0, 1]);
    let irq = IrqNumber(40);
    let before = allocated(&r, CpuId::of::<1>());
    let v = r
        .vectors
        .alloc_vector(irq, &CpuMask::of(CpuId::of::<1>()), false)
        .unwrap();
    let t = v.target().unwrap();
    assert_eq!(t.cpu, CpuId::of::<1>());
    assert_eq!(allocated(&r, CpuId::of::<1>()), before + 1);
    assert_eq!(
        r.vectors.irq_for_vector(CpuId::of::<1>(), t.vector),
        Some(irq)
    );
    // The irq holds its vectors: a second allocation is refused.
    assert_eq!(
        r.vectors
            .alloc_vector(irq, &CpuMask::of(CpuId::of::<1>()), false)
            .err(),
        Some(VectorError::IrqExists(irq))
    );

    drop(v);
    assert_eq!(
        allocated(&r, CpuId::of::<1>()),
        before,
        "the vector went back"
    );
    assert_eq!(r.vectors.irq_for_vector(CpuId::of::<1>(), t.vector), None);
    assert!(r.vectors.target(irq).is_none());
    // And the irq can have vectors again.
    let again = r
        .vectors
        .alloc_vector(irq, &CpuMask::of(CpuId::of::<1>()), false)
        .unwrap();
    again.free().unwrap();
    assert_eq!(allocated(&r, CpuId::of::<1>()), before);
}

#[test]
fn dropping_a_managed_vector_frees_its_reservations() {
    let r = rig(&[0, 1]);
    let both = CpuMask::of(CpuId::BOOT).or(&CpuMask::of(CpuId::of::<1>()));
    let reserved = |c| r.vectors.with_matrix_ref(|m| m.managed(c));
    let v = r.vectors.alloc_vector(IrqNumber(41), &both, true).unwrap();
    assert_eq!(reserved(CpuId::BOOT).0 + reserved(CpuId::of::<1>()).0, 2);
    drop(v);
    assert_eq!(reserved(CpuId::BOOT), (0, 0));
    assert_eq!(reserved(CpuId::of::<1>()), (0, 0));
}

#[test]
fn a_leaked_vector_stays_until_the_raw_free() {
    let r = rig(&[0]);
    let irq = IrqNumber(42);
    let v = r
        .vectors
        .alloc_vector(irq, &CpuMask::of(CpuId::BOOT), false)
        .unwrap();
    let vector = v.vector().unwrap();
    let _level = v.leak();
    assert_eq!(r.vectors.irq_for_vector(CpuId::BOOT, vector), Some(irq));
    r.vectors.free(irq).unwrap();
    assert_eq!(r.vectors.irq_for_vector(CpuId::BOOT, vector), None);
}

#[test]
fn dropping_a_claimed_pin_masks_and_frees_its_entry() {
    let r = rig(&[0, 1]);
    let idx = r.machine.add_ioapic(0, 24, 0x20);
    let io = Arc::new(IoApic::new("IO-APIC", r.machine.ioapic_mmio(idx), 0).unwrap());
    let irq = IrqNumber(43);
    let v = r
        .vectors
        .alloc_vector(irq, &CpuMask::of(CpuId::of::<1>()), false)
        .unwrap();
    let pin = io
        .claim_pin(irq, 5, TriggerType::LevelLow, &v.level())
        .unwrap();
    assert_eq!(pin.pin(), 5);
    assert!(io.is_claimed(5));
    io.set_masked(5, false).unwrap();
    let e = io.entry(5).unwrap();
    assert!(!e.is_masked() && e.is_level() && e.is_active_low());
    assert_eq!(e.vector(), v.vector().unwrap());
    // One owner at a time.
    assert_eq!(
        io.claim_pin(IrqNumber(44), 5, TriggerType::EdgeRising, &v.level())
            .err(),
        Some(IoApicError::PinInUse(5))
    );
    // A bad pin is refused and claims nothing.
    assert_eq!(
        io.claim_pin(irq, 24, TriggerType::EdgeRising, &v.level())
            .err(),
        Some(IoApicError::BadPin(24))
    );

    drop(pin);
    let e = io.entry(5).unwrap();
    assert!(e.is_masked(), "the entry is masked");
    assert_eq!(
        e,
        RedirectionEntry::MASKED,
        "and its configuration forgotten"
    );
    assert!(!io.is_claimed(5));
    // The pin can be claimed again.
    let again = io
        .claim_pin(irq, 5, TriggerType::EdgeRising, &v.level())
        .unwrap();
    let kept = again.leak();
    assert!(io.is_claimed(5), "a leaked pin stays owned");
    drop(kept);
    assert_eq!(io.entry(5).unwrap().vector(), v.vector().unwrap());
    // The raw free ends a leaked pin's ownership.
    io.free_pin(5).unwrap();
    assert!(!io.is_claimed(5) && io.entry(5).unwrap().is_masked());
    io.claim_pin(irq, 5, TriggerType::EdgeRising, &v.level())
        .unwrap()
        .free()
        .unwrap();
}
