//! Property test: the vector matrix against a plain reference model, under
//! random sequences of operations including bad input. Checks that no vector
//! is ever handed out twice or from the system set, that the accounting
//! matches (per CPU and over the online CPUs), that the choice of CPU is the
//! least-loaded one (unmanaged: most available; managed: fewest in use),
//! that a vector taken at a fixed place is checked like any other, that
//! managed reservations persist, and that every refusal leaves the state
//! unchanged.

use arch_x86::{Vector, VectorError, VectorMatrix};
use irqcore::{CpuId, CpuMask};
use proptest::prelude::*;
use std::collections::BTreeSet;

const NR: usize = 3;
const START: u8 = 0x20;
const END: u16 = 0x28; // small window: exhaustion happens often

#[derive(Clone, Debug)]
enum Op {
    Online(u32),
    Offline(u32),
    Alloc(u8),
    Free(u32, u8),
    Reserve(u8),
    AllocManaged(u8),
    Remove(u8),
    System(u8),
    Assign(u32, u8),
}

fn mask(bits: u8) -> CpuMask {
    // Bit 3 names CPU 3, which does not exist: bad input.
    CpuId::all(4)
        .filter(|c| bits & (1 << c.get()) != 0)
        .collect()
}

#[derive(Clone, Debug, Default)]
struct Cpu {
    online: bool,
    alloc: BTreeSet<u8>,
    managed: BTreeSet<u8>,
    managed_alloc: BTreeSet<u8>,
}

#[derive(Clone, Debug, Default)]
struct Model {
    cpus: Vec<Cpu>,
    system: BTreeSet<u8>,
}

impl Model {
    fn available(&self, c: usize) -> u32 {
        let used: BTreeSet<u8> = self.cpus[c]
            .alloc
            .iter()
            .chain(&self.cpus[c].managed)
            .chain(&self.system)
            .copied()
            .collect();
        (END as u32 - START as u32)
            - used
                .iter()
                .filter(|v| **v >= START && (**v as u16) < END)
                .count() as u32
    }
    fn online_in(&self, m: &CpuMask) -> Vec<usize> {
        m.iter()
            .map(|c| c.index())
            .filter(|c| *c < NR && self.cpus[*c].online)
            .collect()
    }
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        (0u32..4).prop_map(Op::Online),
        (0u32..4).prop_map(Op::Offline),
        (0u8..16).prop_map(Op::Alloc),
        (0u32..4, 0x1Eu8..0x2A).prop_map(|(c, v)| Op::Free(c, v)),
        (0u8..16).prop_map(Op::Reserve),
        (0u8..16).prop_map(Op::AllocManaged),
        (0u8..16).prop_map(Op::Remove),
        (0x1Eu8..0x2A).prop_map(Op::System),
        (0u32..4, 0x1Eu8..0x2A).prop_map(|(c, v)| Op::Assign(c, v)),
    ];
    proptest::collection::vec(op, 1..80)
}

fn check(m: &VectorMatrix, model: &Model) {
    let online_free: u32 = (0..NR)
        .filter(|c| model.cpus[*c].online)
        .map(|c| model.available(c))
        .sum();
    assert_eq!(m.global_available(), online_free, "global_available");
    for c in 0..NR {
        let id = CpuId::new(c as u32).unwrap();
        let mc = &model.cpus[c];
        assert_eq!(m.is_online(id), mc.online);
        assert_eq!(m.available(id), model.available(c), "available cpu {c}");
        assert_eq!(m.allocated(id), mc.alloc.len() as u32);
        assert_eq!(
            m.managed(id),
            (mc.managed.len() as u32, mc.managed_alloc.len() as u32)
        );
        for v in 0..=255u8 {
            let expect = mc.alloc.contains(&v) || mc.managed_alloc.contains(&v);
            match Vector::new(v) {
                Ok(vv) => assert_eq!(m.is_allocated(id, vv), expect, "cpu {c} vector {v:#x}"),
                Err(_) => assert!(!expect, "exception vector {v:#x} handed out"),
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn matrix_matches_reference_model(ops in ops()) {
        let mut m = VectorMatrix::new(NR, START, END).unwrap();
        let mut model = Model { cpus: vec![Cpu::default(); NR], system: BTreeSet::new() };
        for op in ops {
            match op {
                Op::Online(c) | Op::Offline(c) => {
                    let on = matches!(op, Op::Online(_));
                    let r = if on { m.cpu_online(CpuId::new(c).unwrap()) } else { m.cpu_offline(CpuId::new(c).unwrap()) };
                    if (c as usize) < NR {
                        prop_assert!(r.is_ok());
                        model.cpus[c as usize].online = on;
                    } else {
                        prop_assert_eq!(r, Err(VectorError::BadCpu(CpuId::new(c).unwrap())));
                    }
                }
                Op::Alloc(bits) => {
                    let mk = mask(bits);
                    let online = model.online_in(&mk);
                    match m.alloc(&mk) {
                        Ok((cpu, v)) => {
                            let v = v.get();
                            let c = cpu.index();
                            prop_assert!(online.contains(&c));
                            let best = online.iter().map(|c| model.available(*c)).max().unwrap();
                            prop_assert_eq!(model.available(c), best, "least loaded");
                            prop_assert!(online.iter().filter(|o| model.available(**o) == best).all(|o| *o >= c), "ties: lowest");
                            prop_assert!(v >= START && (v as u16) < END && !model.system.contains(&v));
                            let mc = &mut model.cpus[c];
                            prop_assert!(!mc.alloc.contains(&v) && !mc.managed.contains(&v));
                            mc.alloc.insert(v);
                        }
                        Err(VectorError::NoOnlineCpu) => prop_assert!(online.is_empty()),
                        Err(VectorError::Exhausted) => prop_assert!(online.iter().all(|c| model.available(*c) == 0)),
                        Err(e) => prop_assert!(false, "unexpected {:?}", e),
                    }
                }
                Op::Free(c, v) => {
                    // Exception vectors cannot even be named.
                    let Ok(vv) = Vector::new(v) else { continue };
                    let r = m.free(CpuId::new(c).unwrap(), vv);
                    let ci = c as usize;
                    if ci >= NR {
                        prop_assert_eq!(r, Err(VectorError::BadCpu(CpuId::new(c).unwrap())));
                    } else if model.cpus[ci].managed_alloc.remove(&v) || model.cpus[ci].alloc.remove(&v) {
                        prop_assert!(r.is_ok());
                    } else {
                        prop_assert_eq!(r, Err(VectorError::NotAllocated(CpuId::new(c).unwrap(), v)));
                    }
                }
                Op::Reserve(bits) => {
                    let mk = mask(bits);
                    let r = m.reserve_managed(&mk);
                    if bits & 8 != 0 {
                        prop_assert_eq!(r, Err(VectorError::BadCpu(CpuId::of::<3>())));
                    } else if mk.iter().all(|c| model.available(c.index()) > 0) {
                        prop_assert!(r.is_ok());
                        for c in mk.iter() {
                            let mc = &model.cpus[c.index()];
                            let used: BTreeSet<u8> = mc.alloc.iter().chain(&mc.managed).chain(&model.system).copied().collect();
                            let v = (START as u16..END).map(|v| v as u8).find(|v| !used.contains(v)).unwrap();
                            model.cpus[c.index()].managed.insert(v);
                        }
                    } else {
                        prop_assert_eq!(r, Err(VectorError::Exhausted));
                    }
                }
                Op::AllocManaged(bits) => {
                    let mk = mask(bits);
                    let online = model.online_in(&mk);
                    match m.alloc_managed(&mk) {
                        Ok((cpu, v)) => {
                            let v = v.get();
                            let c = cpu.index();
                            prop_assert!(online.contains(&c));
                            let in_use = |c: usize| model.cpus[c].managed_alloc.len();
                            let fewest = online.iter().map(|c| in_use(*c)).min().unwrap();
                            prop_assert_eq!(in_use(c), fewest, "fewest managed in use");
                            prop_assert!(online.iter().filter(|o| in_use(**o) == fewest).all(|o| *o >= c), "ties: lowest");
                            let mc = &mut model.cpus[c];
                            prop_assert!(mc.managed.contains(&v) && !mc.managed_alloc.contains(&v), "from the reservation");
                            mc.managed_alloc.insert(v);
                        }
                        Err(VectorError::NoOnlineCpu) => prop_assert!(online.is_empty()),
                        Err(VectorError::Exhausted) => {
                            // The chosen CPU (fewest in use, lowest) has no
                            // reservation left.
                            let c = *online.iter().min_by_key(|c| (model.cpus[**c].managed_alloc.len(), **c)).unwrap();
                            let mc = &model.cpus[c];
                            prop_assert!(mc.managed.is_subset(&mc.managed_alloc));
                        }
                        Err(e) => prop_assert!(false, "unexpected {:?}", e),
                    }
                }
                Op::Remove(bits) => {
                    let mk = mask(bits);
                    let r = m.remove_managed(&mk);
                    if bits & 8 != 0 {
                        prop_assert_eq!(r, Err(VectorError::BadCpu(CpuId::of::<3>())));
                    } else {
                        prop_assert!(r.is_ok());
                        for c in mk.iter() {
                            let mc = &mut model.cpus[c.index()];
                            if let Some(v) = mc.managed.difference(&mc.managed_alloc).next().copied() {
                                mc.managed.remove(&v);
                            }
                        }
                    }
                }
                Op::Assign(c, v) => {
                    let Ok(vv) = Vector::new(v) else { continue };
                    let r = m.assign(CpuId::new(c).unwrap(), vv);
                    let ci = c as usize;
                    let in_window = v >= START && (v as u16) < END;
                    if !in_window || model.system.contains(&v) {
                        prop_assert_eq!(r, Err(VectorError::BadVector(v)));
                    } else if ci >= NR {
                        prop_assert_eq!(r, Err(VectorError::BadCpu(CpuId::new(c).unwrap())));
                    } else if model.cpus[ci].alloc.contains(&v) || model.cpus[ci].managed.contains(&v) {
                        prop_assert_eq!(r, Err(VectorError::InUse(v)));
                    } else {
                        prop_assert!(r.is_ok());
                        model.cpus[ci].alloc.insert(v);
                    }
                }
                Op::System(v) => {
                    let Ok(vv) = Vector::new(v) else { continue };
                    let r = m.assign_system(vv);
                    let in_window = v >= START && (v as u16) < END;
                    let used = model.cpus.iter().any(|c| c.alloc.contains(&v) || c.managed.contains(&v));
                    if !in_window {
                        prop_assert!(r.is_ok());
                    } else if used {
                        prop_assert_eq!(r, Err(VectorError::InUse(v)));
                    } else {
                        prop_assert!(r.is_ok());
                        model.system.insert(v);
                    }
                }
            }
            check(&m, &model);
        }
    }
}
