//! Property test: random sequences of map/unmap (handles, raw pairs,
//! specifiers with triggers, bad disposes) over flat, no-map and
//! hierarchical domains keep every reference count, every translation and
//! every backend allocation equal to a reference model.
mod common;
mod domain_common;
use common::*;
use domain_common::*;
use irqcore::domain::SpecFormat;
use irqcore::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Clone, Debug)]
enum Op {
    MapHandle(usize, u64),
    MapRaw(usize, u64),
    MapSpec(usize, u64, u32),
    DropHandle(usize),
    DisposeRaw(usize, u64),
    DisposeIrq(u32),
    /// Map, in the root domain, the parent hwirq of an existing child
    /// mapping (must be refused: the reference belongs to the top level).
    MapInner(usize),
}

const DOMAINS: usize = 5;
/// Domain 2 is no-map: its hwirqs are offset so they never collide with the
/// dynamically allocated irq numbers (which start at 100).
fn hw(d: usize, h: u64) -> u64 {
    if d == 2 { 10 + h } else { h }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..DOMAINS, 0..6u64).prop_map(|(d, h)| Op::MapHandle(d, h)),
        3 => (0..DOMAINS, 0..6u64).prop_map(|(d, h)| Op::MapRaw(d, h)),
        2 => (0..DOMAINS, 0..6u64, prop::sample::select(vec![0u32, 1, 4, 8])).prop_map(|(d, h, t)| Op::MapSpec(d, h, t)),
        4 => any::<usize>().prop_map(Op::DropHandle),
        3 => (0..DOMAINS, 0..6u64).prop_map(|(d, h)| Op::DisposeRaw(d, h)),
        1 => (0..130u32).prop_map(Op::DisposeIrq),
        1 => any::<usize>().prop_map(Op::MapInner),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Entry {
    irq: IrqNumber,
    handles: u32,
    raw: u32,
    trigger: TriggerType,
}

/// The model's verdict for a get-or-create on (d, h) with `trigger`.
enum Expect {
    Ok,
    OutOfRange,
    Conflict,
}

fn expect_map(
    model: &BTreeMap<(usize, u64), Entry>,
    d: usize,
    h: u64,
    trigger: TriggerType,
) -> Expect {
    let size = match d {
        0 => Some(4),
        4 => Some(8),
        _ => None,
    };
    if size.is_some_and(|s| h >= s) {
        return Expect::OutOfRange;
    }
    match model.get(&(d, h)) {
        Some(e)
            if trigger != TriggerType::None
                && e.trigger != TriggerType::None
                && e.trigger != trigger =>
        {
            Expect::Conflict
        }
        _ => Expect::Ok,
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let core = one_cpu_core();
    let reg = DomainRegistry::with_irq_base(&core, 100);
    let j = Journal::default();
    let mk = |name| {
        TestDomain::with(
            name,
            &j,
            RecordingChip::new(),
            FlowKind::Level,
            SpecFormat::TwoCell,
            ParentHwirq::Irq,
        )
    };
    let backends: Vec<Arc<TestDomain>> = ["lin", "tree", "nomap", "root", "child"]
        .into_iter()
        .map(mk)
        .collect();
    let kinds = [
        DomainKind::Linear { size: 4 },
        DomainKind::Tree,
        DomainKind::NoMap,
        DomainKind::Tree,
        DomainKind::Linear { size: 8 },
    ];
    let mut ids = Vec::new();
    for (i, (b, k)) in backends.iter().zip(kinds).enumerate() {
        let mut cfg = DomainConfig::new(b.name, k);
        if i == 4 {
            cfg = cfg.with_parent(ids[3]);
        }
        ids.push(reg.add_domain(cfg, b.clone()).unwrap());
    }

    let mut model: BTreeMap<(usize, u64), Entry> = BTreeMap::new();
    let mut handles: Vec<((usize, u64), Mapping<'_, TestPlatform>)> = Vec::new();

    for op in ops {
        match op {
            Op::MapHandle(d, h) | Op::MapRaw(d, h) | Op::MapSpec(d, h, _) => {
                let h = hw(d, h);
                let (trigger, bits) = match op {
                    Op::MapSpec(_, _, t) => (TriggerType::from_bits(t).unwrap(), Some(t)),
                    _ => (TriggerType::None, None),
                };
                let raw = matches!(op, Op::MapRaw(..));
                let expect = expect_map(&model, d, h, trigger);
                let got = match (raw, bits) {
                    (true, _) => reg.create_mapping(ids[d], HwIrq(h)).map(|irq| (irq, None)),
                    (false, None) => reg.map(ids[d], HwIrq(h)).map(|m| (m.irq(), Some(m))),
                    (false, Some(t)) => reg
                        .map_fwspec(ids[d], &FwSpec::new(&[h as u32, t]).unwrap())
                        .map(|m| (m.irq(), Some(m))),
                };
                match (expect, got) {
                    (Expect::Ok, Ok((irq, m))) => {
                        let e = model.entry((d, h)).or_insert(Entry {
                            irq,
                            handles: 0,
                            raw: 0,
                            trigger: TriggerType::None,
                        });
                        prop_assert_eq!(e.irq, irq, "same (domain, hwirq) must give the same irq");
                        if d == 2 {
                            prop_assert_eq!(irq.0 as u64, h, "no-map: irq == hwirq");
                        }
                        if e.trigger == TriggerType::None {
                            e.trigger = trigger;
                        }
                        if raw {
                            e.raw += 1
                        } else {
                            e.handles += 1
                        }
                        if let Some(m) = m {
                            handles.push(((d, h), m));
                        }
                    }
                    (Expect::OutOfRange, Err(DomainError::HwIrqOutOfRange { .. })) => {}
                    (Expect::Conflict, Err(DomainError::TriggerConflict { .. })) => {}
                    (_, got) => prop_assert!(
                        false,
                        "{:?} on ({}, {}): unexpected {:?}",
                        op,
                        d,
                        h,
                        got.map(|g| g.0)
                    ),
                }
            }
            Op::DropHandle(i) => {
                if !handles.is_empty() {
                    let (key, m) = handles.swap_remove(i % handles.len());
                    drop(m);
                    let e = model.get_mut(&key).unwrap();
                    e.handles -= 1;
                    if e.handles + e.raw == 0 {
                        model.remove(&key);
                    }
                }
            }
            Op::DisposeRaw(d, h) => {
                let key = (d, hw(d, h));
                match model.get_mut(&key) {
                    Some(e) if e.raw > 0 => {
                        prop_assert_eq!(reg.dispose_mapping(e.irq), Ok(()));
                        e.raw -= 1;
                        if e.handles + e.raw == 0 {
                            model.remove(&key);
                        }
                    }
                    Some(e) => prop_assert_eq!(
                        reg.dispose_mapping(e.irq),
                        Err(DomainError::NoRawReference(e.irq))
                    ),
                    None => {
                        let irq = IrqNumber(4000);
                        prop_assert_eq!(reg.dispose_mapping(irq), Err(DomainError::NotMapped(irq)));
                    }
                }
            }
            Op::DisposeIrq(n) => {
                let irq = IrqNumber(n);
                let hit = model
                    .iter_mut()
                    .find(|(_, e)| e.irq == irq)
                    .map(|(k, e)| (*k, e));
                match hit {
                    Some((key, e)) if e.raw > 0 => {
                        prop_assert_eq!(reg.dispose_mapping(irq), Ok(()));
                        e.raw -= 1;
                        if e.handles + e.raw == 0 {
                            model.remove(&key);
                        }
                    }
                    Some(_) => prop_assert_eq!(
                        reg.dispose_mapping(irq),
                        Err(DomainError::NoRawReference(irq))
                    ),
                    None => {
                        prop_assert_eq!(reg.dispose_mapping(irq), Err(DomainError::NotMapped(irq)))
                    }
                }
            }
            Op::MapInner(i) => {
                let children: Vec<_> = model
                    .iter()
                    .filter(|((d, _), _)| *d == 4)
                    .map(|(_, e)| e.irq)
                    .collect();
                if !children.is_empty() {
                    let irq = children[i % children.len()];
                    let parent_hw = HwIrq(irq.0 as u64);
                    prop_assert_eq!(
                        reg.create_mapping(ids[3], parent_hw),
                        Err(DomainError::InnerLevel {
                            domain: ids[3],
                            hwirq: parent_hw,
                            irq
                        })
                    );
                }
            }
        }
        check(&core, &reg, &ids, &backends, &model, &handles)?;
    }

    // Release everything: nothing may be left anywhere.
    drop(handles);
    for e in model.values() {
        for _ in 0..e.raw {
            prop_assert_eq!(reg.dispose_mapping(e.irq), Ok(()));
        }
    }
    prop_assert_eq!(core.nr_descs(), 0);
    prop_assert_eq!(reg.nr_mappings(), 0);
    for b in &backends {
        prop_assert_eq!(b.live(), 0, "{} leaked a level", b.name);
    }
    for id in ids.iter().rev() {
        prop_assert!(reg.remove_domain(*id).is_ok());
    }
    Ok(())
}

fn check(
    core: &IrqCore<TestPlatform>,
    reg: &DomainRegistry<'_, TestPlatform>,
    ids: &[DomainId],
    backends: &[Arc<TestDomain>],
    model: &BTreeMap<(usize, u64), Entry>,
    handles: &[((usize, u64), Mapping<'_, TestPlatform>)],
) -> Result<(), TestCaseError> {
    for (&(d, h), e) in model {
        prop_assert_eq!(reg.find_mapping(ids[d], HwIrq(h)), Some(e.irq));
        let info = reg.mapping_info(e.irq).unwrap();
        prop_assert_eq!(
            (info.handle_refs, info.raw_refs),
            (e.handles, e.raw),
            "refs of ({}, {})",
            d,
            h
        );
        prop_assert_eq!(info.trigger, e.trigger);
        prop_assert_eq!(core.snapshot(e.irq).unwrap().trigger, e.trigger);
        prop_assert_eq!(
            core.snapshot(e.irq).unwrap().chips.len(),
            if d == 4 { 2 } else { 1 }
        );
    }
    for (key, m) in handles {
        prop_assert_eq!(Some(m.irq()), model.get(key).map(|e| e.irq));
    }
    prop_assert_eq!(core.nr_descs(), model.len());
    prop_assert_eq!(reg.nr_mappings(), model.len());
    let per = |d: usize| model.keys().filter(|k| k.0 == d).count();
    for d in 0..DOMAINS {
        let expect = if d == 3 { per(3) + per(4) } else { per(d) };
        prop_assert_eq!(
            reg.mappings(ids[d]).unwrap().len(),
            expect,
            "list of domain {}",
            d
        );
        prop_assert_eq!(
            backends[d].live() as usize,
            expect,
            "live levels of domain {}",
            d
        );
    }
    // Every irq appears once.
    let mut irqs: Vec<_> = model.values().map(|e| e.irq).collect();
    irqs.sort();
    irqs.dedup();
    prop_assert_eq!(irqs.len(), model.len());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn random_map_unmap_sequences_match_the_reference_model(ops in prop::collection::vec(op(), 1..80)) {
        run(ops)?;
    }
}
