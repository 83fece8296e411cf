//! `domain_mappings`: map, unmap, find, activate and deactivate across
//! linear, tree, no-map and hierarchical domains, with both reference kinds
//! (owning [`Mapping`] handles and raw create/dispose), handlers installed
//! by irq number, and domain removal.
//!
//! Domains (fixed at start; removal is an operation):
//!
//! ```text
//! d0 "vector" tree (root)  <- d1 "ioapic" linear 8  <- d2 "msi" tree
//! d3 "gpio" linear 6 (flat)        d4 "legacy" no-map (flat)
//! ```
//!
//! d1 asks its parent for hwirq `100 + hwirq % 4` and d2 for `hwirq % 8`, so
//! parent-level collisions (`HwIrqInUse`) and inner-level mappings
//! (`InnerLevel`) are reachable. Every backend can be told to refuse `alloc`
//! or `activate` for one hwirq.
//!
//! Checked after every step: exact results and typed errors, reference
//! counts (handle and raw) per mapping, trigger and activation state,
//! reverse lookups, the number of mappings and of descriptors, and each
//! backend's own record of what it allocated and activated (so a level that
//! is never freed or deactivated is caught). Teardown drops every reference;
//! the registry, the backends and the descriptor store must end empty.

use crate::check;
use crate::model_chip::ModelChip;
use crate::platform::{FuzzPlatform, set_cpu};
use arbitrary::{Arbitrary, Unstructured};
use irqcore::domain::{AllocRequest, LevelAlloc, LevelRef};
use irqcore::{
    ChipFlags, CoreConfig, CpuId, DevId, DomainConfig, DomainError, DomainId, DomainKind,
    DomainOps, DomainRegistry, FlowKind, FwSpec, HwIrq, IrqCore, IrqError, IrqNumber, IrqRequest,
    IrqReturn, Mapping, RequestFlags, TriggerType,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

const CAP: u32 = 40;
const MAX_OPS: usize = 96;
const NR_DOMAINS: usize = 5;

/// A backend: records the levels it allocated and activated.
struct ModelDomain {
    chip: Arc<ModelChip>,
    /// `parent_hwirq = parent_base + hwirq % parent_mod`.
    parent_base: u64,
    parent_mod: u64,
    fail_alloc: Option<u64>,
    fail_activate: Option<u64>,
    live: Mutex<BTreeSet<(u32, u64)>>,
    active: Mutex<BTreeSet<(u32, u64)>>,
    errors: Mutex<Vec<String>>,
}

impl ModelDomain {
    fn new(
        name: &'static str,
        parent_base: u64,
        parent_mod: u64,
        fail_alloc: Option<u64>,
        fail_activate: Option<u64>,
    ) -> Self {
        Self {
            chip: Arc::new(ModelChip::new(name, false, false, ChipFlags::empty())),
            parent_base,
            parent_mod,
            fail_alloc,
            fail_activate,
            live: Mutex::new(BTreeSet::new()),
            active: Mutex::new(BTreeSet::new()),
            errors: Mutex::new(Vec::new()),
        }
    }
    fn err(&self, s: String) {
        self.errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(s);
    }
}

impl DomainOps for ModelDomain {
    fn alloc(&self, req: &AllocRequest) -> Result<LevelAlloc, IrqError> {
        if self.fail_alloc == Some(req.hwirq.0) {
            return Err(IrqError::Chip(irqcore::ChipError::NoSpace));
        }
        if !self
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((req.irq.0, req.hwirq.0))
        {
            self.err(format!("alloc of a live level {req:?}"));
        }
        let mut a = LevelAlloc::new(self.chip.clone(), FlowKind::Edge);
        a.parent_hwirq = HwIrq(self.parent_base + req.hwirq.0 % self.parent_mod);
        a.chip_data = req.hwirq.0 as usize;
        Ok(a)
    }
    fn free(&self, level: &LevelRef) {
        if !self
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(level.irq.0, level.hwirq.0))
        {
            self.err(format!("free of an unknown level {level:?}"));
        }
        if self
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&(level.irq.0, level.hwirq.0))
        {
            self.err(format!("free of an active level {level:?}"));
        }
        if level.chip_data != level.hwirq.0 as usize {
            self.err(format!("free with foreign chip data {level:?}"));
        }
    }
    fn activate(&self, level: &LevelRef) -> Result<(), IrqError> {
        if self.fail_activate == Some(level.hwirq.0) {
            return Err(IrqError::Chip(irqcore::ChipError::Hardware(-5)));
        }
        if !self
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&(level.irq.0, level.hwirq.0))
        {
            self.err(format!("activate of an unallocated level {level:?}"));
        }
        if !self
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((level.irq.0, level.hwirq.0))
        {
            self.err(format!("double activate {level:?}"));
        }
        Ok(())
    }
    fn deactivate(&self, level: &LevelRef) {
        if !self
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(level.irq.0, level.hwirq.0))
        {
            self.err(format!("deactivate of an inactive level {level:?}"));
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Trig {
    None,
    Edge,
    Level,
}

impl Trig {
    fn t(self) -> TriggerType {
        match self {
            Trig::None => TriggerType::None,
            Trig::Edge => TriggerType::EdgeRising,
            Trig::Level => TriggerType::LevelHigh,
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    Map {
        dom: u8,
        hw: u8,
        trig: Trig,
    },
    Create {
        dom: u8,
        hw: u8,
        trig: Trig,
    },
    CreateFwspec {
        dom: u8,
        cells: [u8; 2],
        three: bool,
    },
    Dispose {
        irq: u8,
    },
    DropHandle {
        idx: u8,
        release: bool,
    },
    IntoRaw {
        idx: u8,
    },
    AdoptRaw {
        irq: u8,
    },
    TryClone {
        idx: u8,
    },
    Activate {
        irq: u8,
    },
    Deactivate {
        irq: u8,
    },
    Request {
        irq: u8,
    },
    FreeIrq {
        irq: u8,
    },
    RemoveDomain {
        dom: u8,
    },
}

#[derive(Clone, Debug)]
struct MRec {
    top: usize,
    hwirq: u64,
    /// (domain, hwirq), outermost first.
    levels: Vec<(usize, u64)>,
    handle_refs: u32,
    raw_refs: u32,
    trigger: TriggerType,
    activated: bool,
    handlers: usize,
}

struct Model {
    parent: [Option<usize>; NR_DOMAINS],
    kind: [DomainKind; NR_DOMAINS],
    alive: [bool; NR_DOMAINS],
    revmap: [BTreeMap<u64, u32>; NR_DOMAINS],
    records: BTreeMap<u32, MRec>,
}

impl Model {
    fn chain(&self, d: usize) -> Vec<usize> {
        let mut v = vec![d];
        let mut cur = self.parent[d];
        while let Some(p) = cur {
            v.push(p);
            cur = self.parent[p];
        }
        v
    }

    fn in_range(&self, d: usize, hw: u64) -> bool {
        match self.kind[d] {
            DomainKind::Linear { size } => hw < u64::from(size),
            _ => true,
        }
    }

    fn get(
        &mut self,
        ids: &[DomainId],
        doms: &[Arc<ModelDomain>],
        d: usize,
        hw: u64,
        trig: TriggerType,
        handle: bool,
    ) -> Result<IrqNumber, DomainError> {
        let id = ids[d];
        if !self.alive[d] {
            return Err(DomainError::UnknownDomain(id));
        }
        if !self.in_range(d, hw) {
            return Err(DomainError::HwIrqOutOfRange {
                domain: id,
                hwirq: HwIrq(hw),
            });
        }
        if let Some(&irq) = self.revmap[d].get(&hw) {
            let r = self
                .records
                .get_mut(&irq)
                .expect("model revmap points at a record");
            if r.top != d {
                return Err(DomainError::InnerLevel {
                    domain: id,
                    hwirq: HwIrq(hw),
                    irq: IrqNumber(irq),
                });
            }
            match (r.trigger, trig) {
                (_, TriggerType::None) => {}
                (TriggerType::None, t) => r.trigger = t,
                (e, t) if e == t => {}
                (e, t) => {
                    return Err(DomainError::TriggerConflict {
                        irq: IrqNumber(irq),
                        existing: e,
                        requested: t,
                    });
                }
            }
            if handle {
                r.handle_refs += 1;
            } else {
                r.raw_refs += 1;
            }
            return Ok(IrqNumber(irq));
        }
        // A new mapping.
        let irq = if self.kind[d] == DomainKind::NoMap {
            if hw >= u64::from(CAP) {
                return Err(DomainError::HwIrqOutOfRange {
                    domain: id,
                    hwirq: HwIrq(hw),
                });
            }
            if self.records.contains_key(&(hw as u32)) {
                return Err(DomainError::Core(IrqError::AlreadyAllocated(IrqNumber(
                    hw as u32,
                ))));
            }
            hw as u32
        } else {
            (1..CAP)
                .find(|n| !self.records.contains_key(n))
                .ok_or(DomainError::Core(IrqError::NoSpace))?
        };
        let mut levels = Vec::new();
        let mut h = hw;
        for (depth, &dom) in self.chain(d).iter().enumerate() {
            if depth > 0 {
                if !self.in_range(dom, h) {
                    return Err(DomainError::HwIrqOutOfRange {
                        domain: ids[dom],
                        hwirq: HwIrq(h),
                    });
                }
                if self.revmap[dom].contains_key(&h) {
                    return Err(DomainError::HwIrqInUse {
                        domain: ids[dom],
                        hwirq: HwIrq(h),
                    });
                }
            }
            if doms[dom].fail_alloc == Some(h) {
                return Err(DomainError::Backend {
                    domain: ids[dom],
                    error: IrqError::Chip(irqcore::ChipError::NoSpace),
                });
            }
            levels.push((dom, h));
            h = doms[dom].parent_base + h % doms[dom].parent_mod;
        }
        for &(dom, h) in &levels {
            self.revmap[dom].insert(h, irq);
        }
        self.records.insert(
            irq,
            MRec {
                top: d,
                hwirq: hw,
                levels,
                handle_refs: u32::from(handle),
                raw_refs: u32::from(!handle),
                trigger: trig,
                activated: false,
                handlers: 0,
            },
        );
        Ok(IrqNumber(irq))
    }

    /// Drops one reference; `Err` leaves everything unchanged.
    fn put(&mut self, irq: u32, handle: bool) -> Result<(), DomainError> {
        let i = IrqNumber(irq);
        let r = self
            .records
            .get_mut(&irq)
            .ok_or(DomainError::NotMapped(i))?;
        if !handle && r.raw_refs == 0 {
            return Err(DomainError::NoRawReference(i));
        }
        if handle && r.handle_refs == 0 {
            return Err(DomainError::NotMapped(i));
        }
        if r.handle_refs + r.raw_refs > 1 {
            if handle {
                r.handle_refs -= 1;
            } else {
                r.raw_refs -= 1;
            }
            return Ok(());
        }
        if r.handlers > 0 {
            return Err(DomainError::HasHandlers(i));
        }
        let r = self.records.remove(&irq).expect("record");
        for (dom, h) in r.levels {
            self.revmap[dom].remove(&h);
        }
        Ok(())
    }
}

struct Harness<'r> {
    reg: &'r DomainRegistry<'r, FuzzPlatform>,
    ids: Vec<DomainId>,
    doms: Vec<Arc<ModelDomain>>,
    m: Model,
    handles: Vec<Mapping<'r, FuzzPlatform>>,
    step: usize,
}

impl<'r> Harness<'r> {
    fn expect<T: std::fmt::Debug + PartialEq>(
        &self,
        what: &str,
        got: Result<T, DomainError>,
        want: Result<T, DomainError>,
    ) {
        check!(
            got == want,
            "step {}: {what}: registry returned {got:?}, model expects {want:?}",
            self.step
        );
    }

    fn irq_sel(&self, v: u8) -> u32 {
        // Mostly mapped irqs, sometimes anything.
        let mapped: Vec<u32> = self.m.records.keys().copied().collect();
        if v & 0x80 == 0 && !mapped.is_empty() {
            mapped[usize::from(v) % mapped.len()]
        } else {
            u32::from(v & 0x7f) % (CAP + 2)
        }
    }

    fn op(&mut self, op: Op) {
        let reg = self.reg;
        match op {
            Op::Map { dom, hw, trig } => {
                let d = usize::from(dom) % NR_DOMAINS;
                let hw = u64::from(hw % 48);
                let got = reg.map_with_trigger(self.ids[d], HwIrq(hw), trig.t());
                let want = self.m.get(&self.ids, &self.doms, d, hw, trig.t(), true);
                match got {
                    Ok(m) => {
                        let irq = m.irq();
                        self.handles.push(m);
                        self.expect("map", Ok(irq), want);
                    }
                    Err(e) => self.expect("map", Err(e), want),
                }
            }
            Op::Create { dom, hw, trig } => {
                let d = usize::from(dom) % NR_DOMAINS;
                let hw = u64::from(hw % 48);
                let got = if trig.t() == TriggerType::None {
                    reg.create_mapping(self.ids[d], HwIrq(hw))
                } else {
                    FwSpec::new(&[hw as u32, trig.t().bits()])
                        .map_err(DomainError::BadSpecifier)
                        .and_then(|s| reg.create_fwspec_mapping(self.ids[d], &s))
                };
                let want = self.m.get(&self.ids, &self.doms, d, hw, trig.t(), false);
                self.expect("create_mapping", got, want);
            }
            Op::CreateFwspec { dom, cells, three } => {
                let d = usize::from(dom) % NR_DOMAINS;
                let mut c = vec![u32::from(cells[0] % 48), u32::from(cells[1] % 12)];
                if three {
                    c.push(0);
                }
                let spec = FwSpec::new(&c).expect("spec of 2 or 3 cells");
                let got = reg.create_fwspec_mapping(self.ids[d], &spec);
                let want = if !self.m.alive[d] {
                    Err(DomainError::UnknownDomain(self.ids[d]))
                } else {
                    match irqcore::domain::SpecFormat::TwoCell.translate(&spec) {
                        Err(e) => Err(DomainError::BadSpecifier(e)),
                        Ok((hw, t)) => self.m.get(&self.ids, &self.doms, d, hw.0, t, false),
                    }
                };
                self.expect("create_fwspec_mapping", got, want);
            }
            Op::Dispose { irq } => {
                let irq = self.irq_sel(irq);
                let got = reg.dispose_mapping(IrqNumber(irq));
                let want = self.m.put(irq, false);
                self.expect("dispose_mapping", got, want);
            }
            Op::DropHandle { idx, release } => {
                if self.handles.is_empty() {
                    return;
                }
                let h = self.handles.remove(usize::from(idx) % self.handles.len());
                let irq = h.irq().0;
                let want = self.m.put(irq, true);
                if release {
                    match h.release() {
                        Ok(()) => self.expect("release", Ok(()), want),
                        Err((h, e)) => {
                            self.handles.push(h);
                            self.expect("release", Err(e), want);
                        }
                    }
                } else {
                    drop(h);
                    if want.is_err() {
                        // The handle's reference became a raw one.
                        let r = self.m.records.get_mut(&irq).expect("record");
                        r.handle_refs -= 1;
                        r.raw_refs += 1;
                    }
                }
            }
            Op::IntoRaw { idx } => {
                if self.handles.is_empty() {
                    return;
                }
                let h = self.handles.remove(usize::from(idx) % self.handles.len());
                let irq = h.into_raw();
                let r = self.m.records.get_mut(&irq.0).expect("record of a handle");
                r.handle_refs -= 1;
                r.raw_refs += 1;
            }
            Op::AdoptRaw { irq } => {
                let irq = self.irq_sel(irq);
                let got = reg.adopt_raw(IrqNumber(irq));
                let want = match self.m.records.get_mut(&irq) {
                    None => Err(DomainError::NotMapped(IrqNumber(irq))),
                    Some(r) if r.raw_refs == 0 => Err(DomainError::NoRawReference(IrqNumber(irq))),
                    Some(r) => {
                        r.raw_refs -= 1;
                        r.handle_refs += 1;
                        Ok(IrqNumber(irq))
                    }
                };
                match got {
                    Ok(h) => {
                        let i = h.irq();
                        self.handles.push(h);
                        self.expect("adopt_raw", Ok(i), want);
                    }
                    Err(e) => self.expect("adopt_raw", Err(e), want),
                }
            }
            Op::TryClone { idx } => {
                if self.handles.is_empty() {
                    return;
                }
                let i = usize::from(idx) % self.handles.len();
                let got = self.handles[i].try_clone();
                let irq = self.handles[i].irq();
                let r = self.m.records.get_mut(&irq.0).expect("record of a handle");
                r.handle_refs += 1;
                match got {
                    Ok(h) => {
                        check!(
                            h.irq() == irq,
                            "step {}: try_clone gave {:?} for {irq:?}",
                            self.step,
                            h.irq()
                        );
                        self.handles.push(h);
                    }
                    Err(e) => panic!("step {}: try_clone({irq:?}): {e:?}", self.step),
                }
            }
            Op::Activate { irq } => {
                let irq = self.irq_sel(irq);
                let got = reg.activate(IrqNumber(irq));
                let want = match self.m.records.get_mut(&irq) {
                    None => Err(DomainError::NotMapped(IrqNumber(irq))),
                    Some(r) if r.activated => Ok(()),
                    Some(r) => {
                        // Root first; the first refusal wins.
                        let fail = r
                            .levels
                            .iter()
                            .rev()
                            .find(|&&(d, h)| self.doms[d].fail_activate == Some(h));
                        match fail {
                            Some(&(d, _)) => Err(DomainError::Backend {
                                domain: self.ids[d],
                                error: IrqError::Chip(irqcore::ChipError::Hardware(-5)),
                            }),
                            None => {
                                r.activated = true;
                                Ok(())
                            }
                        }
                    }
                };
                self.expect("activate", got, want);
            }
            Op::Deactivate { irq } => {
                let irq = self.irq_sel(irq);
                let got = reg.deactivate(IrqNumber(irq));
                let want = match self.m.records.get_mut(&irq) {
                    None => Err(DomainError::NotMapped(IrqNumber(irq))),
                    Some(r) => {
                        r.activated = false;
                        Ok(())
                    }
                };
                self.expect("deactivate", got, want);
            }
            Op::Request { irq } => {
                let irq = self.irq_sel(irq);
                let Some(r) = self.m.records.get_mut(&irq) else {
                    return;
                };
                let dev = DevId(r.handlers);
                let h = Arc::new(|_irq: IrqNumber| IrqReturn::HANDLED);
                let got = reg.core().request_irq_raw(
                    IrqNumber(irq),
                    IrqRequest::new("fuzz", h)
                        .flags(RequestFlags::SHARED)
                        .dev_id(dev),
                );
                r.handlers += 1;
                check!(
                    got.is_ok(),
                    "step {}: request_irq on mapping {irq}: {got:?}",
                    self.step
                );
            }
            Op::FreeIrq { irq } => {
                let irq = self.irq_sel(irq);
                let Some(r) = self.m.records.get_mut(&irq) else {
                    return;
                };
                if r.handlers == 0 {
                    return;
                }
                r.handlers -= 1;
                let got = reg.core().free_irq(IrqNumber(irq), DevId(r.handlers));
                check!(
                    got.is_ok(),
                    "step {}: free_irq on mapping {irq}: {got:?}",
                    self.step
                );
            }
            Op::RemoveDomain { dom } => {
                let d = usize::from(dom) % NR_DOMAINS;
                let got = reg.remove_domain(self.ids[d]).map(|_| ());
                let want = if !self.m.alive[d] {
                    Err(DomainError::UnknownDomain(self.ids[d]))
                } else if !self.m.revmap[d].is_empty() {
                    Err(DomainError::DomainBusy {
                        domain: self.ids[d],
                        mappings: self.m.revmap[d].len(),
                    })
                } else if (0..NR_DOMAINS).any(|c| self.m.alive[c] && self.m.parent[c] == Some(d)) {
                    Err(DomainError::HasChildren(self.ids[d]))
                } else {
                    self.m.alive[d] = false;
                    Ok(())
                };
                self.expect("remove_domain", got, want);
            }
        }
    }

    fn check_state(&self) {
        let step = self.step;
        let reg = self.reg;
        check!(
            reg.nr_mappings() == self.m.records.len(),
            "step {step}: {} mappings, model {}",
            reg.nr_mappings(),
            self.m.records.len()
        );
        check!(
            reg.core().nr_descs() == self.m.records.len(),
            "step {step}: {} descriptors for {} mappings",
            reg.core().nr_descs(),
            self.m.records.len()
        );
        for (&irq, r) in &self.m.records {
            let info = reg.mapping_info(IrqNumber(irq));
            let Ok(info) = info else {
                panic!("step {step}: mapping_info({irq}): {info:?}")
            };
            check!(
                info.handle_refs == r.handle_refs && info.raw_refs == r.raw_refs,
                "step {step}: irq {irq} refs handle {} raw {}, model {} {}",
                info.handle_refs,
                info.raw_refs,
                r.handle_refs,
                r.raw_refs
            );
            check!(
                info.top == self.ids[r.top] && info.hwirq == HwIrq(r.hwirq),
                "step {step}: irq {irq} info {info:?}"
            );
            check!(
                info.trigger == r.trigger,
                "step {step}: irq {irq} trigger {:?}, model {:?}",
                info.trigger,
                r.trigger
            );
            check!(
                info.activated == r.activated,
                "step {step}: irq {irq} activated {}",
                info.activated
            );
            let handles = self.handles.iter().filter(|h| h.irq().0 == irq).count();
            check!(
                handles as u32 == r.handle_refs,
                "step {step}: irq {irq}: {handles} handles, {} handle refs",
                r.handle_refs
            );
        }
        for d in 0..NR_DOMAINS {
            if !self.m.alive[d] {
                continue;
            }
            for hw in 0..48u64 {
                let got = reg.find_mapping(self.ids[d], HwIrq(hw));
                let want = self.m.revmap[d].get(&hw).map(|&i| IrqNumber(i));
                check!(
                    got == want,
                    "step {step}: find_mapping(d{d}, {hw}) = {got:?}, model {want:?}"
                );
            }
            for (&hw, &irq) in &self.m.revmap[d] {
                let got = reg.find_mapping(self.ids[d], HwIrq(hw));
                check!(
                    got == Some(IrqNumber(irq)),
                    "step {step}: find_mapping(d{d}, {hw}) = {got:?}, model {irq}"
                );
            }
            let live: BTreeSet<(u32, u64)> = self
                .m
                .records
                .iter()
                .flat_map(|(&irq, r)| {
                    r.levels
                        .iter()
                        .filter(|l| l.0 == d)
                        .map(move |l| (irq, l.1))
                })
                .collect();
            let active: BTreeSet<(u32, u64)> = self
                .m
                .records
                .iter()
                .filter(|(_, r)| r.activated)
                .flat_map(|(&irq, r)| {
                    r.levels
                        .iter()
                        .filter(|l| l.0 == d)
                        .map(move |l| (irq, l.1))
                })
                .collect();
            let dom = &self.doms[d];
            let blive = dom.live.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let bactive = dom.active.lock().unwrap_or_else(|e| e.into_inner()).clone();
            check!(
                blive == live,
                "step {step}: backend d{d} holds {blive:?}, model {live:?}"
            );
            check!(
                bactive == active,
                "step {step}: backend d{d} active {bactive:?}, model {active:?}"
            );
            let errs = dom.errors.lock().unwrap_or_else(|e| e.into_inner());
            check!(errs.is_empty(), "step {step}: backend d{d}: {errs:?}");
        }
    }

    fn teardown(&mut self) {
        self.step = usize::MAX;
        let irqs: Vec<u32> = self.m.records.keys().copied().collect();
        for &irq in &irqs {
            while self.m.records[&irq].handlers > 0 {
                let r = self.m.records.get_mut(&irq).expect("record");
                if r.handlers > 0 {
                    r.handlers -= 1;
                    let got = self.reg.core().free_irq(IrqNumber(irq), DevId(r.handlers));
                    check!(got.is_ok(), "teardown: free_irq({irq}): {got:?}");
                }
            }
        }
        while let Some(h) = self.handles.pop() {
            let irq = h.irq().0;
            let r = h.release();
            check!(
                r.is_ok(),
                "teardown: release of {irq}: {:?}",
                r.err().map(|e| e.1)
            );
            self.m.put(irq, true).expect("model put");
        }
        for irq in irqs {
            while self.m.records.get(&irq).is_some_and(|r| r.raw_refs > 0) {
                let got = self.reg.dispose_mapping(IrqNumber(irq));
                check!(got.is_ok(), "teardown: dispose_mapping({irq}): {got:?}");
                self.m.put(irq, false).expect("model put");
            }
        }
        self.check_state();
        check!(self.reg.nr_mappings() == 0, "teardown: mappings left");
        check!(
            self.reg.core().nr_descs() == 0,
            "teardown: {} descriptors leaked",
            self.reg.core().nr_descs()
        );
        for d in (0..NR_DOMAINS).rev() {
            if self.m.alive[d] {
                let r = self.reg.remove_domain(self.ids[d]);
                check!(r.is_ok(), "teardown: remove_domain(d{d}): {:?}", r.err());
            }
        }
        check!(self.reg.domains().is_empty(), "teardown: domains left");
    }
}

/// The `domain_mappings` fuzz target.
pub fn domain_mappings(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(fails) = <[(Option<u8>, Option<u8>); NR_DOMAINS]>::arbitrary(&mut u) else {
        return;
    };
    let mut ops = Vec::new();
    while !u.is_empty() && ops.len() < MAX_OPS {
        match Op::arbitrary(&mut u) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    set_cpu(CpuId::BOOT);
    let core = IrqCore::with_config(
        FuzzPlatform::default(),
        CoreConfig {
            capacity: CAP,
            nr_cpus: 4,
        },
    );
    core.set_cpu_online(CpuId::BOOT, true).expect("online");
    let reg = DomainRegistry::new(&core);
    let f = |i: usize| {
        (
            fails[i].0.map(|v| u64::from(v % 48)),
            fails[i].1.map(|v| u64::from(v % 48)),
        )
    };
    // (name, kind, parent, parent_base, parent_mod)
    let specs: [(&'static str, DomainKind, Option<usize>, u64, u64); NR_DOMAINS] = [
        ("vector", DomainKind::Tree, None, 0, 1),
        ("ioapic", DomainKind::Linear { size: 8 }, Some(0), 100, 4),
        ("msi", DomainKind::Tree, Some(1), 0, 8),
        ("gpio", DomainKind::Linear { size: 6 }, None, 0, 1),
        ("legacy", DomainKind::NoMap, None, 0, 1),
    ];
    let mut ids = Vec::new();
    let mut doms = Vec::new();
    let mut parent = [None; NR_DOMAINS];
    let mut kind = [DomainKind::Tree; NR_DOMAINS];
    for (i, (name, k, p, base, md)) in specs.into_iter().enumerate() {
        let (fa, fv) = f(i);
        let dom = Arc::new(ModelDomain::new(name, base, md, fa, fv));
        let mut cfg = DomainConfig::new(name, k);
        if let Some(p) = p {
            cfg = cfg.with_parent(ids[p]);
        }
        ids.push(reg.add_domain(cfg, dom.clone()).expect("add_domain"));
        doms.push(dom);
        parent[i] = p;
        kind[i] = k;
    }
    let mut h = Harness {
        reg: &reg,
        ids,
        doms,
        m: Model {
            parent,
            kind,
            alive: [true; NR_DOMAINS],
            revmap: Default::default(),
            records: BTreeMap::new(),
        },
        handles: Vec::new(),
        step: 0,
    };
    for (i, op) in ops.into_iter().enumerate() {
        h.step = i;
        if crate::trace_enabled() {
            eprintln!("step {i}: {op:?}");
        }
        h.op(op);
        h.check_state();
    }
    h.teardown();
}
