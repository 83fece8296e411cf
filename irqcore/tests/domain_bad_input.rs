//! Bad input to the domain layer: typed errors, nothing changed.
mod common;
mod domain_common;
use common::*;
use domain_common::*;
use irqcore::domain::{MappingInfo, SpecError, SpecFormat};
use irqcore::*;
use std::sync::Arc;

/// Everything observable about the registry and the core that a refused
/// call must not change.
#[derive(Debug, PartialEq)]
struct World {
    descs: usize,
    mappings: Vec<Vec<MappingInfo>>,
    journal: Vec<String>,
}

fn world(
    core: &IrqCore<TestPlatform>,
    reg: &DomainRegistry<'_, TestPlatform>,
    j: &Journal,
) -> World {
    World {
        descs: core.nr_descs(),
        mappings: reg
            .domains()
            .iter()
            .map(|(d, _)| reg.mappings(*d).unwrap())
            .collect(),
        journal: j.take(),
    }
}

/// Asserts nothing changed since `before` was taken: same descriptors, same
/// mappings, and no backend callback ran in between.
#[track_caller]
fn assert_unchanged(before: &World, now: World) {
    assert_eq!(now.descs, before.descs);
    assert_eq!(now.mappings, before.mappings);
    assert_eq!(
        now.journal,
        Vec::<String>::new(),
        "no backend callback may run"
    );
}

fn setup(
    core: &IrqCore<TestPlatform>,
) -> (
    DomainRegistry<'_, TestPlatform>,
    Journal,
    DomainId,
    DomainId,
    Arc<TestDomain>,
) {
    let reg = DomainRegistry::new(core);
    let j = Journal::default();
    let lin_ops = TestDomain::with(
        "lin",
        &j,
        RecordingChip::new(),
        FlowKind::Level,
        SpecFormat::TwoCell,
        ParentHwirq::Irq,
    );
    let lin = reg
        .add_domain(
            DomainConfig::new("lin", DomainKind::Linear { size: 16 }),
            lin_ops.clone(),
        )
        .unwrap();
    let gic_ops = TestDomain::with(
        "gic",
        &j,
        RecordingChip::new(),
        FlowKind::FastEoi,
        SpecFormat::Gic,
        ParentHwirq::Irq,
    );
    let gic = reg
        .add_domain(
            DomainConfig::new("gic", DomainKind::Linear { size: 1020 }),
            gic_ops,
        )
        .unwrap();
    (reg, j, lin, gic, lin_ops)
}

#[test]
fn dispose_of_unmapped_irqs_is_refused() {
    let core = one_cpu_core();
    let (reg, j, lin, _gic, _) = setup(&core);
    let _held = reg.map(lin, HwIrq(1)).unwrap();
    // An irq the core allocated but no domain mapped.
    let bare = core.alloc_descs(IrqNumber(200), 1).unwrap();
    let before = world(&core, &reg, &j);
    for irq in [IrqNumber(0), IrqNumber(999), bare] {
        assert_eq!(reg.dispose_mapping(irq), Err(DomainError::NotMapped(irq)));
        assert_eq!(reg.activate(irq), Err(DomainError::NotMapped(irq)));
        assert_eq!(
            reg.mapping_info(irq).err(),
            Some(DomainError::NotMapped(irq))
        );
    }
    assert_unchanged(&before, world(&core, &reg, &j));
    assert!(
        core.is_allocated(bare),
        "a dispose must never free a descriptor it does not own"
    );
}

#[test]
fn raw_dispose_past_zero_is_refused() {
    let core = one_cpu_core();
    let (reg, j, lin, _gic, ops) = setup(&core);
    // Raw only: second dispose finds nothing.
    let irq = reg.create_mapping(lin, HwIrq(4)).unwrap();
    reg.dispose_mapping(irq).unwrap();
    let before = world(&core, &reg, &j);
    assert_eq!(reg.dispose_mapping(irq), Err(DomainError::NotMapped(irq)));
    assert_unchanged(&before, world(&core, &reg, &j));
    // Raw plus a handle: the second raw dispose must not take the handle's
    // reference.
    let m = reg.map(lin, HwIrq(4)).unwrap();
    let irq = reg.create_mapping(lin, HwIrq(4)).unwrap();
    reg.dispose_mapping(irq).unwrap();
    let before = world(&core, &reg, &j);
    assert_eq!(
        reg.dispose_mapping(irq),
        Err(DomainError::NoRawReference(irq))
    );
    assert_unchanged(&before, world(&core, &reg, &j));
    assert!(core.is_allocated(irq));
    assert_eq!(ops.live(), 1);
    drop(m);
    assert!(!core.is_allocated(irq));
}

#[test]
fn hwirq_beyond_a_linear_domain_and_beyond_the_store_are_refused() {
    let core = one_cpu_core();
    let (reg, j, lin, _gic, _) = setup(&core);
    let nomap = reg
        .add_domain(
            DomainConfig::new("legacy", DomainKind::NoMap),
            TestDomain::new("legacy", &j),
        )
        .unwrap();
    let before = world(&core, &reg, &j);
    for h in [16, 17, u64::MAX] {
        assert_eq!(
            reg.map(lin, HwIrq(h)).err(),
            Some(DomainError::HwIrqOutOfRange {
                domain: lin,
                hwirq: HwIrq(h)
            })
        );
        assert_eq!(
            reg.create_mapping(lin, HwIrq(h)),
            Err(DomainError::HwIrqOutOfRange {
                domain: lin,
                hwirq: HwIrq(h)
            })
        );
        assert_eq!(reg.find_mapping(lin, HwIrq(h)), None);
    }
    // The store holds 4096 irq numbers: a no-map hwirq beyond is refused.
    for h in [4096, 1 << 33] {
        assert_eq!(
            reg.map(nomap, HwIrq(h)).err(),
            Some(DomainError::HwIrqOutOfRange {
                domain: nomap,
                hwirq: HwIrq(h)
            })
        );
    }
    assert_unchanged(&before, world(&core, &reg, &j));
}

#[test]
fn malformed_specifiers_are_refused() {
    let core = one_cpu_core();
    let (reg, j, lin, gic, _) = setup(&core);
    let before = world(&core, &reg, &j);
    let spec = |c: &[u32]| FwSpec::new(c).unwrap();
    let cases: [(DomainId, FwSpec, SpecError); 7] = [
        (
            lin,
            spec(&[3]),
            SpecError::CellCount {
                expected: 2,
                got: 1,
            },
        ),
        (
            lin,
            spec(&[0, 3, 4]),
            SpecError::CellCount {
                expected: 2,
                got: 3,
            },
        ),
        (lin, spec(&[3, 6]), SpecError::BadFlags(6)),
        (
            gic,
            spec(&[0, 3]),
            SpecError::CellCount {
                expected: 3,
                got: 2,
            },
        ),
        (gic, spec(&[7, 3, 4]), SpecError::BadType(7)),
        (gic, spec(&[1, 16, 4]), SpecError::NumberOutOfRange(16)),
        (gic, spec(&[0, 3, 0x10004]), SpecError::BadFlags(0x10004)),
    ];
    for (d, s, e) in cases {
        assert_eq!(
            reg.map_fwspec(d, &s).err(),
            Some(DomainError::BadSpecifier(e)),
            "{s:?}"
        );
        assert_eq!(
            reg.create_fwspec_mapping(d, &s),
            Err(DomainError::BadSpecifier(e))
        );
    }
    assert_eq!(
        FwSpec::new(&[1, 2, 3, 4, 5]).err(),
        Some(SpecError::CellCount {
            expected: 4,
            got: 5
        })
    );
    assert_unchanged(&before, world(&core, &reg, &j));
    // A GIC SPI 3 specifier is INTID 35.
    let m = reg.map_fwspec(gic, &spec(&[0, 3, 4])).unwrap();
    assert_eq!(reg.find_mapping(gic, HwIrq(35)), Some(m.irq()));
}

#[test]
fn removing_a_domain_with_mappings_or_children_is_refused() {
    let core = one_cpu_core();
    let (reg, j, lin, gic, _) = setup(&core);
    let child = reg
        .add_domain(
            DomainConfig::new("child", DomainKind::Tree).with_parent(gic),
            TestDomain::new("child", &j),
        )
        .unwrap();
    let a = reg.map(lin, HwIrq(1)).unwrap();
    let b = reg.create_mapping(lin, HwIrq(2)).unwrap();
    let before = world(&core, &reg, &j);
    assert_eq!(
        reg.remove_domain(lin).err(),
        Some(DomainError::DomainBusy {
            domain: lin,
            mappings: 2
        })
    );
    assert_eq!(
        reg.remove_domain(gic).err(),
        Some(DomainError::HasChildren(gic))
    );
    assert_eq!(
        reg.remove_domain(DomainId(77)).err(),
        Some(DomainError::UnknownDomain(DomainId(77)))
    );
    assert_unchanged(&before, world(&core, &reg, &j));
    assert_eq!(reg.find_mapping(lin, HwIrq(1)), Some(a.irq()));
    drop(a);
    reg.dispose_mapping(b).unwrap();
    reg.remove_domain(lin).unwrap();
    assert_eq!(
        reg.map(lin, HwIrq(1)).err(),
        Some(DomainError::UnknownDomain(lin))
    );
    assert_eq!(
        reg.remove_domain(lin).err(),
        Some(DomainError::UnknownDomain(lin))
    );
    reg.remove_domain(child).unwrap();
    reg.remove_domain(gic).unwrap();
}

#[test]
fn bad_domain_configurations_are_refused() {
    let core = one_cpu_core();
    let reg = DomainRegistry::new(&core);
    let j = Journal::default();
    let ops = || -> Arc<dyn DomainOps> { TestDomain::new("d", &j) };
    assert_eq!(
        reg.add_domain(
            DomainConfig::new("zero", DomainKind::Linear { size: 0 }),
            ops()
        )
        .err(),
        Some(DomainError::InvalidConfig)
    );
    assert_eq!(
        reg.add_domain(
            DomainConfig::new("orphan", DomainKind::Tree).with_parent(DomainId(3)),
            ops()
        )
        .err(),
        Some(DomainError::UnknownDomain(DomainId(3)))
    );
    let nomap = reg
        .add_domain(DomainConfig::new("nomap", DomainKind::NoMap), ops())
        .unwrap();
    assert_eq!(
        reg.add_domain(
            DomainConfig::new("over-nomap", DomainKind::Tree).with_parent(nomap),
            ops()
        )
        .err(),
        Some(DomainError::InvalidConfig)
    );
    // At most MAX_LEVELS levels.
    let mut parent = reg
        .add_domain(DomainConfig::new("root", DomainKind::Tree), ops())
        .unwrap();
    for _ in 1..irqcore::desc::MAX_LEVELS {
        parent = reg
            .add_domain(
                DomainConfig::new("lvl", DomainKind::Tree).with_parent(parent),
                ops(),
            )
            .unwrap();
    }
    assert_eq!(
        reg.add_domain(
            DomainConfig::new("too-deep", DomainKind::Tree).with_parent(parent),
            ops()
        )
        .err(),
        Some(DomainError::TooDeep)
    );
    // The deepest allowed stack maps fine.
    let m = reg.map(parent, HwIrq(9)).unwrap();
    assert_eq!(
        core.snapshot(m.irq()).unwrap().chips.len(),
        irqcore::desc::MAX_LEVELS
    );
}

#[test]
fn a_refusing_chip_or_backend_leaves_nothing_behind() {
    let core = one_cpu_core();
    let reg = DomainRegistry::new(&core);
    let j = Journal::default();
    let picky = Arc::new(RecordingChip {
        reject_level: true,
        ..Default::default()
    });
    let ops = TestDomain::with(
        "picky",
        &j,
        picky,
        FlowKind::Level,
        SpecFormat::TwoCell,
        ParentHwirq::Irq,
    );
    let d = reg
        .add_domain(DomainConfig::new("picky", DomainKind::Tree), ops.clone())
        .unwrap();
    let before = world(&core, &reg, &j);
    // The chip refuses level triggers: the new mapping is unwound.
    assert_eq!(
        reg.map_fwspec(d, &FwSpec::new(&[5, 4]).unwrap()).err(),
        Some(DomainError::Core(IrqError::InvalidTrigger))
    );
    assert_eq!(ops.live(), 0);
    assert_eq!(core.nr_descs(), before.descs);
    assert_eq!(reg.nr_mappings(), 0);
    j.take();
    // An existing mapping adopting a trigger the chip refuses keeps its
    // reference count and trigger.
    let m = reg.map(d, HwIrq(5)).unwrap();
    assert_eq!(
        reg.map_fwspec(d, &FwSpec::new(&[5, 8]).unwrap()).err(),
        Some(DomainError::Core(IrqError::InvalidTrigger))
    );
    let info = m.info().unwrap();
    assert_eq!((info.refs(), info.trigger), (1, TriggerType::None));
    // A backend that refuses to allocate.
    ops.fail_alloc
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let descs = core.nr_descs();
    assert!(matches!(
        reg.map(d, HwIrq(6)),
        Err(DomainError::Backend { .. })
    ));
    assert_eq!(core.nr_descs(), descs);
}

#[test]
fn mapping_changes_while_holding_the_sparse_lock_are_refused() {
    let core = one_cpu_core();
    let (reg, j, lin, _gic, _) = setup(&core);
    let irq = reg.create_mapping(lin, HwIrq(2)).unwrap();
    let before = world(&core, &reg, &j);
    {
        let _g = core.lock_sparse().unwrap();
        let e = DomainError::Core(IrqError::SparseLockHeldByCaller);
        assert_eq!(reg.dispose_mapping(irq), Err(e));
        assert_eq!(reg.create_mapping(lin, HwIrq(3)), Err(e));
        // Lookups still work (a hotplug phase may translate).
        assert_eq!(reg.find_mapping(lin, HwIrq(2)), Some(irq));
    }
    assert_unchanged(&before, world(&core, &reg, &j));
    reg.dispose_mapping(irq).unwrap();
    assert!(!core.is_allocated(irq));
}
