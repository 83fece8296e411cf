//! Refcounted mappings: the shared-INTx scenario of seed 002 (three devices
//! on one hwirq), with handles and with the raw create/dispose pair.
mod common;
mod domain_common;
use common::*;
use domain_common::*;
use irqcore::domain::MappingInfo;
use irqcore::*;
use std::sync::Arc;
use std::sync::atomic::Ordering;

fn intx_domain(reg: &DomainRegistry<'_, TestPlatform>, j: &Journal) -> (DomainId, Arc<TestDomain>) {
    let chip = RecordingChip::new();
    let ops = TestDomain::with(
        "intx",
        j,
        chip,
        FlowKind::Level,
        domain::SpecFormat::TwoCell,
        ParentHwirq::Irq,
    );
    let id = reg
        .add_domain(
            DomainConfig::new("intx", DomainKind::Linear { size: 8 }),
            ops.clone(),
        )
        .unwrap();
    (id, ops)
}

fn refs(reg: &DomainRegistry<'_, TestPlatform>, irq: IrqNumber) -> (u32, u32) {
    let MappingInfo {
        handle_refs,
        raw_refs,
        ..
    } = reg.mapping_info(irq).unwrap();
    (handle_refs, raw_refs)
}

/// Seed 002: three devices behind one PCI host bridge share INTx hwirq 5.
/// Hot-unplugging two of them must leave the third device's interrupt
/// working; unplugging the last one frees the irq.
#[test]
fn shared_intx_survives_unplug_of_other_devices_and_last_unplug_frees_it() {
    let core = one_cpu_core();
    let reg = DomainRegistry::new(&core);
    let j = Journal::default();
    let (dom, ops) = intx_domain(&reg, &j);
    let level_low = FwSpec::new(&[5, 8]).unwrap();

    // Probe: each device maps its interrupt from firmware and requests a
    // shared handler.
    let maps: Vec<_> = (0..3)
        .map(|_| reg.map_fwspec(dom, &level_low).unwrap())
        .collect();
    let irq = maps[0].irq();
    assert!(
        maps.iter().all(|m| m.irq() == irq),
        "same (domain, hwirq) must give the same irq"
    );
    assert_eq!(refs(&reg, irq), (3, 0));
    assert_eq!(ops.live(), 1, "one mapping, allocated once");
    assert_eq!(core.snapshot(irq).unwrap().trigger, TriggerType::LevelLow);
    let counters: Vec<_> = (0..3).map(|_| counting()).collect();
    let [m0, m1, m2]: [_; 3] = maps.try_into().unwrap();
    let req = |i: usize| {
        IrqRequest::new("dev", counters[i].1.clone())
            .flags(RequestFlags::SHARED)
            .dev_id(DevId(i))
    };
    let r0 = m0.request_irq(req(0)).unwrap();
    let r1 = m1.request_irq(req(1)).unwrap();
    let r2 = m2.request_irq(req(2)).unwrap();
    core.handle_irq(irq).unwrap();
    assert!(counters.iter().all(|(n, _)| n.load(Ordering::SeqCst) == 1));

    // Unplug devices 0 and 1: free the handler, drop the mapping (the
    // registration borrows the mapping, so this order is enforced).
    drop(r0);
    drop(m0);
    drop(r1);
    drop(m1);
    assert_eq!(refs(&reg, irq), (1, 0));
    assert!(core.is_allocated(irq));
    assert_eq!(reg.find_mapping(dom, HwIrq(5)), Some(irq));
    assert_eq!(
        ops.live(),
        1,
        "domain free must not run while a device holds the mapping"
    );
    core.handle_irq(irq).unwrap();
    core.handle_irq(irq).unwrap();
    assert_eq!(
        counters[2].0.load(Ordering::SeqCst),
        3,
        "remaining device still gets its interrupts"
    );
    assert_eq!(counters[0].0.load(Ordering::SeqCst), 1);
    assert_eq!(counters[1].0.load(Ordering::SeqCst), 1);

    // Unplug the last device.
    drop(r2);
    drop(m2);
    assert!(
        !core.is_allocated(irq),
        "descriptor freed with the last reference"
    );
    assert_eq!(reg.find_mapping(dom, HwIrq(5)), None);
    assert_eq!(reg.nr_mappings(), 0);
    assert_eq!(ops.live(), 0, "domain free called");
    assert_eq!(
        j.take()
            .iter()
            .filter(|s| s.starts_with("intx:free"))
            .count(),
        1
    );
    // The irq number is free again.
    core.alloc_desc_at(irq).unwrap();
    core.free_descs(irq, 1).unwrap();
    // And mapping the line again works from scratch.
    let again = reg.map(dom, HwIrq(5)).unwrap();
    assert_eq!(refs(&reg, again.irq()), (1, 0));
}

/// The same scenario through the raw pair a C-style driver would use.
#[test]
fn raw_create_dispose_pair_counts_and_last_dispose_frees() {
    let core = one_cpu_core();
    let reg = DomainRegistry::new(&core);
    let j = Journal::default();
    let (dom, ops) = intx_domain(&reg, &j);
    let irqs: Vec<_> = (0..3)
        .map(|_| reg.create_mapping(dom, HwIrq(5)).unwrap())
        .collect();
    let irq = irqs[0];
    assert!(irqs.iter().all(|&i| i == irq));
    assert_eq!(refs(&reg, irq), (0, 3));
    let (n, h) = counting();
    core.request_irq_raw(
        irq,
        IrqRequest::new("dev2", h)
            .flags(RequestFlags::SHARED)
            .dev_id(DevId(2)),
    )
    .unwrap();
    reg.dispose_mapping(irq).unwrap();
    reg.dispose_mapping(irq).unwrap();
    core.handle_irq(irq).unwrap();
    assert_eq!(n.load(Ordering::SeqCst), 1);
    // The last dispose is refused while the handler is installed...
    let before = core.snapshot(irq).unwrap();
    assert_eq!(reg.dispose_mapping(irq), Err(DomainError::HasHandlers(irq)));
    assert_eq!(core.snapshot(irq).unwrap(), before);
    assert_eq!(refs(&reg, irq), (0, 1));
    // ...and goes through once it is freed.
    core.free_irq(irq, DevId(2)).unwrap();
    reg.dispose_mapping(irq).unwrap();
    assert!(!core.is_allocated(irq));
    assert_eq!(ops.live(), 0);
    assert_eq!(reg.dispose_mapping(irq), Err(DomainError::NotMapped(irq)));
}

/// Handles and raw references are counted apart: a raw dispose cannot take
/// the reference a handle owns, and a handle dropped while handlers
/// requested by irq number are installed leaves a raw reference behind
/// instead of tearing the line down under them.
#[test]
fn handle_and_raw_references_do_not_steal_from_each_other() {
    let core = one_cpu_core();
    let reg = DomainRegistry::new(&core);
    let j = Journal::default();
    let (dom, _ops) = intx_domain(&reg, &j);
    let m = reg.map(dom, HwIrq(3)).unwrap();
    let irq = m.irq();
    assert_eq!(
        reg.dispose_mapping(irq),
        Err(DomainError::NoRawReference(irq))
    );
    assert_eq!(refs(&reg, irq), (1, 0));

    core.request_irq_raw(irq, IrqRequest::new("raw", handled()).dev_id(DevId(9)))
        .unwrap();
    let m = match m.release() {
        Err((m, DomainError::HasHandlers(i))) => {
            assert_eq!(i, irq);
            m
        }
        other => panic!("release with a handler installed must be refused, got {other:?}"),
    };
    assert_eq!(refs(&reg, irq), (1, 0));
    drop(m);
    assert_eq!(
        refs(&reg, irq),
        (0, 1),
        "dropped handle leaves a raw reference"
    );
    assert!(core.is_allocated(irq));
    core.free_irq(irq, DevId(9)).unwrap();
    reg.dispose_mapping(irq).unwrap();
    assert!(!core.is_allocated(irq));

    // into_raw / adopt_raw move a reference between the two kinds.
    let m = reg.map(dom, HwIrq(3)).unwrap();
    let irq = m.into_raw();
    assert_eq!(refs(&reg, irq), (0, 1));
    let m = reg.adopt_raw(irq).unwrap();
    assert_eq!(refs(&reg, irq), (1, 0));
    assert_eq!(
        reg.adopt_raw(irq).err(),
        Some(DomainError::NoRawReference(irq))
    );
    let m2 = m.try_clone().unwrap();
    assert_eq!(refs(&reg, irq), (2, 0));
    drop(m);
    drop(m2);
    assert!(!core.is_allocated(irq));
}

/// A specifier's trigger is applied to a new mapping, adopted by a mapping
/// made without one, and a conflicting one is refused.
#[test]
fn specifier_trigger_is_applied_adopted_and_conflicts_refused() {
    let core = one_cpu_core();
    let reg = DomainRegistry::new(&core);
    let j = Journal::default();
    let (dom, _ops) = intx_domain(&reg, &j);
    let plain = reg.map(dom, HwIrq(2)).unwrap();
    let irq = plain.irq();
    assert_eq!(core.snapshot(irq).unwrap().trigger, TriggerType::None);
    let rising = reg.map_fwspec(dom, &FwSpec::new(&[2, 1]).unwrap()).unwrap();
    assert_eq!(core.snapshot(irq).unwrap().trigger, TriggerType::EdgeRising);
    assert_eq!(
        reg.mapping_info(irq).unwrap().trigger,
        TriggerType::EdgeRising
    );
    let before = core.snapshot(irq).unwrap();
    assert_eq!(
        reg.map_fwspec(dom, &FwSpec::new(&[2, 4]).unwrap()).err(),
        Some(DomainError::TriggerConflict {
            irq,
            existing: TriggerType::EdgeRising,
            requested: TriggerType::LevelHigh
        })
    );
    assert_eq!(core.snapshot(irq).unwrap(), before);
    assert_eq!(refs(&reg, irq), (2, 0));
    // Same trigger, or none: just another reference.
    let same = reg.map_fwspec(dom, &FwSpec::new(&[2, 1]).unwrap()).unwrap();
    let none = reg.map_fwspec(dom, &FwSpec::new(&[2, 0]).unwrap()).unwrap();
    assert_eq!(refs(&reg, irq), (4, 0));
    drop((plain, rising, same, none));
    assert!(!core.is_allocated(irq));
}

/// No-map domains give irq == hwirq; tree domains take any hwirq.
#[test]
fn nomap_and_tree_domains_translate() {
    let core = one_cpu_core();
    let reg = DomainRegistry::with_irq_base(&core, 100);
    let j = Journal::default();
    let nomap = reg
        .add_domain(
            DomainConfig::new("legacy", DomainKind::NoMap),
            TestDomain::new("legacy", &j),
        )
        .unwrap();
    let tree = reg
        .add_domain(
            DomainConfig::new("msi", DomainKind::Tree),
            TestDomain::new("msi", &j),
        )
        .unwrap();
    let a = reg.map(nomap, HwIrq(14)).unwrap();
    assert_eq!(a.irq(), IrqNumber(14));
    let b = reg.map(tree, HwIrq(1 << 40)).unwrap();
    assert!(b.irq().0 >= 100);
    assert_eq!(reg.find_mapping(tree, HwIrq(1 << 40)), Some(b.irq()));
    assert_eq!(reg.find_mapping(nomap, HwIrq(14)), Some(IrqNumber(14)));
    let list = reg.mappings(tree).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        (list[0].hwirq, list[0].irq, list[0].refs()),
        (HwIrq(1 << 40), b.irq(), 1)
    );
}
