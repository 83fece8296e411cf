//! Hierarchical domains: a device MSI domain over a PCI-MSI domain over a
//! root vector domain. One mapping allocates a level in each, the chips
//! forward to their parents, activation walks root first with rollback,
//! and the last reference frees the whole stack.
mod common;
mod domain_common;
use common::*;
use domain_common::*;
use irqcore::domain::SpecFormat;
use irqcore::*;
use std::sync::Arc;
use std::sync::atomic::Ordering;

struct Stack<'c> {
    reg: DomainRegistry<'c, TestPlatform>,
    j: Journal,
    vector: (DomainId, Arc<TestDomain>),
    pcimsi: (DomainId, Arc<TestDomain>),
    devmsi: (DomainId, Arc<TestDomain>),
}

fn stack(core: &IrqCore<TestPlatform>) -> Stack<'_> {
    let reg = DomainRegistry::new(core);
    let j = Journal::default();
    let mk = |name, flow, parent_hwirq| {
        TestDomain::with(
            name,
            &j,
            LogChip::new(name, &j),
            flow,
            SpecFormat::OneCell,
            parent_hwirq,
        )
    };
    // The vector domain is the root: its hwirq is the irq number.
    let vec_ops = mk("vector", FlowKind::Edge, ParentHwirq::Irq);
    let vector = reg
        .add_domain(
            DomainConfig::new("vector", DomainKind::Tree),
            vec_ops.clone(),
        )
        .unwrap();
    // The PCI-MSI level asks the vector domain for hwirq == irq.
    let msi_ops = mk("pcimsi", FlowKind::Edge, ParentHwirq::Irq);
    let pcimsi = reg
        .add_domain(
            DomainConfig::new("pcimsi", DomainKind::Tree).with_parent(vector),
            msi_ops.clone(),
        )
        .unwrap();
    // The device's MSI domain: 32 vectors, PCI-MSI hwirq = 0x1000 + index.
    let dev_ops = mk("devmsi", FlowKind::FastEoi, ParentHwirq::Offset(0x1000));
    let devmsi = reg
        .add_domain(
            DomainConfig::new("devmsi", DomainKind::Linear { size: 32 }).with_parent(pcimsi),
            dev_ops.clone(),
        )
        .unwrap();
    Stack {
        reg,
        j,
        vector: (vector, vec_ops),
        pcimsi: (pcimsi, msi_ops),
        devmsi: (devmsi, dev_ops),
    }
}

fn names(chips: &[(irqcore::desc::ChipName, HwIrq)]) -> Vec<(String, u64)> {
    chips.iter().map(|(c, h)| (format!("{c:?}"), h.0)).collect()
}

#[test]
fn one_allocation_builds_every_level_forwards_activates_root_first_and_frees_all() {
    let core = one_cpu_core();
    let s = stack(&core);
    let (dev, pci, vec) = (s.devmsi.0, s.pcimsi.0, s.vector.0);
    let m = s.reg.map(dev, HwIrq(3)).unwrap();
    let irq = m.irq();
    let i = irq.0 as u64;

    // One allocation: a level in each domain, outermost first.
    assert_eq!(
        s.j.take(),
        [
            "devmsi:alloc:3",
            "pcimsi:alloc:4099",
            &format!("vector:alloc:{i}")
        ]
    );
    let snap = core.snapshot(irq).unwrap();
    assert_eq!(
        names(&snap.chips),
        [
            ("devmsi".to_string(), 3),
            ("pcimsi".to_string(), 0x1003),
            ("vector".to_string(), i)
        ]
    );
    assert_eq!(
        snap.flow,
        FlowKind::FastEoi,
        "the outermost level's flow is installed"
    );
    // Every level's domain translates its own hwirq to the irq.
    assert_eq!(s.reg.find_mapping(dev, HwIrq(3)), Some(irq));
    assert_eq!(s.reg.find_mapping(pci, HwIrq(0x1003)), Some(irq));
    assert_eq!(s.reg.find_mapping(vec, HwIrq(i)), Some(irq));
    let inner = s.reg.mappings(vec).unwrap();
    assert_eq!((inner[0].depth, inner[0].top, inner[0].refs()), (2, dev, 1));
    // The reference belongs to the top level: the parent's hwirq cannot be
    // mapped (and counted) on its own.
    assert_eq!(
        s.reg.map(pci, HwIrq(0x1003)).err(),
        Some(DomainError::InnerLevel {
            domain: pci,
            hwirq: HwIrq(0x1003),
            irq
        })
    );

    // Activation walks parent first.
    m.activate().unwrap();
    assert_eq!(
        s.j.take(),
        [
            format!("vector:activate:{i}"),
            "pcimsi:activate:4099".into(),
            "devmsi:activate:3".into()
        ]
    );
    m.activate().unwrap();
    assert!(s.j.take().is_empty(), "activation is idempotent");

    // The chips forward to their parents: startup unmasks, the flow EOIs,
    // shutdown masks, at every level, top first.
    let (n, h) = counting();
    let r = m.request_irq(IrqRequest::new("dev", h)).unwrap();
    assert_eq!(
        s.j.take(),
        [
            "devmsi:unmask:3".to_string(),
            "pcimsi:unmask:4099".into(),
            format!("vector:unmask:{i}")
        ]
    );
    core.handle_irq(irq).unwrap();
    assert_eq!(n.load(Ordering::SeqCst), 1);
    assert_eq!(
        s.j.take(),
        [
            "devmsi:eoi:3".to_string(),
            "pcimsi:eoi:4099".into(),
            format!("vector:eoi:{i}")
        ]
    );
    core.set_trigger(irq, TriggerType::EdgeRising).unwrap();
    assert_eq!(
        s.j.take(),
        [
            "devmsi:set_type:3".to_string(),
            "pcimsi:set_type:4099".into(),
            format!("vector:set_type:{i}")
        ]
    );
    drop(r);
    assert_eq!(
        s.j.take(),
        [
            "devmsi:mask:3".to_string(),
            "pcimsi:mask:4099".into(),
            format!("vector:mask:{i}")
        ]
    );

    // A second reference, then the last one: the whole stack goes at once.
    let m2 = s.reg.map(dev, HwIrq(3)).unwrap();
    drop(m);
    assert!(
        s.j.take().is_empty(),
        "not the last reference: nothing freed"
    );
    assert!(core.is_allocated(irq));
    drop(m2);
    assert_eq!(
        s.j.take(),
        [
            "devmsi:deactivate:3".to_string(),
            "pcimsi:deactivate:4099".into(),
            format!("vector:deactivate:{i}"),
            "devmsi:free:3".into(),
            "pcimsi:free:4099".into(),
            format!("vector:free:{i}"),
        ]
    );
    assert!(!core.is_allocated(irq));
    for (d, h) in [(dev, 3), (pci, 0x1003), (vec, i)] {
        assert_eq!(s.reg.find_mapping(d, HwIrq(h)), None);
    }
    assert_eq!(
        [s.devmsi.1.live(), s.pcimsi.1.live(), s.vector.1.live()],
        [0, 0, 0]
    );
    // Nothing left: every domain can be removed, children before parents.
    assert_eq!(
        s.reg.remove_domain(vec).err(),
        Some(DomainError::HasChildren(vec))
    );
    s.reg.remove_domain(dev).unwrap();
    s.reg.remove_domain(pci).unwrap();
    s.reg.remove_domain(vec).unwrap();
}

#[test]
fn failed_activation_rolls_back_the_levels_already_activated() {
    let core = one_cpu_core();
    let s = stack(&core);
    let m = s.reg.map(s.devmsi.0, HwIrq(7)).unwrap();
    let i = m.irq().0;
    s.j.take();
    s.pcimsi.1.fail_activate.store(true, Ordering::SeqCst);
    assert_eq!(
        m.activate(),
        Err(DomainError::Backend {
            domain: s.pcimsi.0,
            error: IrqError::Chip(ChipError::NoSpace)
        })
    );
    assert_eq!(
        s.j.take(),
        [
            format!("vector:activate:{i}"),
            "pcimsi:activate-failed:4103".into(),
            format!("vector:deactivate:{i}")
        ]
    );
    assert!(!m.info().unwrap().activated);
    // Request refuses too (it activates first) and installs nothing.
    let before = core.snapshot(m.irq()).unwrap();
    assert!(m.request_irq(IrqRequest::new("dev", handled())).is_err());
    assert_eq!(core.snapshot(m.irq()).unwrap(), before);
    s.pcimsi.1.fail_activate.store(false, Ordering::SeqCst);
    s.j.take();
    m.activate().unwrap();
    assert!(m.info().unwrap().activated);
}

#[test]
fn failed_allocation_at_the_root_unwinds_every_level_and_the_descriptor() {
    let core = one_cpu_core();
    let s = stack(&core);
    s.vector.1.fail_alloc.store(true, Ordering::SeqCst);
    let descs = core.nr_descs();
    let err = s.reg.map(s.devmsi.0, HwIrq(1)).unwrap_err();
    assert_eq!(
        err,
        DomainError::Backend {
            domain: s.vector.0,
            error: IrqError::Chip(ChipError::NoSpace)
        }
    );
    let log = s.j.take();
    assert_eq!(
        log[..2],
        ["devmsi:alloc:1".to_string(), "pcimsi:alloc:4097".into()]
    );
    assert!(log[2].starts_with("vector:alloc-failed:"));
    assert_eq!(
        log[3..],
        ["devmsi:free:1".to_string(), "pcimsi:free:4097".into()]
    );
    assert_eq!(core.nr_descs(), descs, "descriptor given back");
    assert_eq!(s.reg.nr_mappings(), 0);
    assert!(s.reg.mappings(s.pcimsi.0).unwrap().is_empty());
    assert_eq!(
        [s.devmsi.1.live(), s.pcimsi.1.live(), s.vector.1.live()],
        [0, 0, 0]
    );
    // The same hwirq maps fine once the root has room again.
    s.vector.1.fail_alloc.store(false, Ordering::SeqCst);
    let m = s.reg.map(s.devmsi.0, HwIrq(1)).unwrap();
    assert_eq!(core.snapshot(m.irq()).unwrap().chips.len(), 3);
}

#[test]
fn a_parent_hwirq_already_in_use_is_refused_and_unwound() {
    let core = one_cpu_core();
    let s = stack(&core);
    // devmsi hwirq 3 -> pcimsi 0x1003; a second device domain with the same
    // offset collides there.
    let other_ops = TestDomain::with(
        "other",
        &s.j,
        LogChip::new("other", &s.j),
        FlowKind::Edge,
        SpecFormat::OneCell,
        ParentHwirq::Offset(0x1000),
    );
    let other = s
        .reg
        .add_domain(
            DomainConfig::new("other", DomainKind::Tree).with_parent(s.pcimsi.0),
            other_ops.clone(),
        )
        .unwrap();
    let _m = s.reg.map(s.devmsi.0, HwIrq(3)).unwrap();
    let descs = core.nr_descs();
    assert_eq!(
        s.reg.map(other, HwIrq(3)).err(),
        Some(DomainError::HwIrqInUse {
            domain: s.pcimsi.0,
            hwirq: HwIrq(0x1003)
        })
    );
    assert_eq!(core.nr_descs(), descs);
    assert_eq!(other_ops.live(), 0);
}
