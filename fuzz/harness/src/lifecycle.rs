//! `descriptor_lifecycle`: allocate and free descriptor ranges, install and
//! free handlers (shared and not, per-CPU), enable/disable, set affinity,
//! dispatch on any online CPU, deliver replays, and take CPUs down and up
//! through the hotplug phases, against a model of the descriptor store and of
//! each descriptor's observable state.
//!
//! Checked after every step: the exact result (or typed error) of the call,
//! which handlers ran, per-CPU counts, the descriptor count, depth and
//! handler list of the touched irq, and that no started irq targets an
//! offline CPU. At the end everything is torn down: every pending event must
//! have been delivered once its line is enabled, every handler `Arc` must be
//! back to one reference (no leaked action) and the descriptor count back
//! to zero.

use crate::check;
use crate::model_chip::ModelChip;
use crate::platform::{FuzzPlatform, NR_CPUS, ThreadCpus, as_cpu, mask_from_bits, set_cpu};
use arbitrary::{Arbitrary, Unstructured};
use irqcore::hotplug::HotplugCtx;
use irqcore::{
    ChipFlags, ChipLevel, CoreConfig, CpuId, CpuMask, CpuPhase, DevId, FlowKind, HotplugCallback,
    HwIrq, IrqCore, IrqError, IrqHandler, IrqNumber, IrqRequest, IrqReturn, LineState,
    RequestFlags,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Irq numbers the store holds (small, so exhaustion is reachable).
const CAP: u32 = 48;
/// Where the hotplug `Prepare` callback allocates each CPU's descriptor.
const PERCPU_BASE: u32 = 40;
/// Maximum operations per input (bounds the time per execution).
const MAX_OPS: usize = 96;

type Core = IrqCore<FuzzPlatform>;

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
enum FlowSel {
    Edge,
    Level,
    FastEoi,
    Simple,
    Bad,
    PerCpu,
    PerCpuDevId,
}

impl FlowSel {
    fn kind(self) -> FlowKind {
        match self {
            FlowSel::Edge => FlowKind::Edge,
            FlowSel::Level => FlowKind::Level,
            FlowSel::FastEoi => FlowKind::FastEoi,
            FlowSel::Simple => FlowKind::Simple,
            FlowSel::Bad => FlowKind::Bad,
            FlowSel::PerCpu => FlowKind::PerCpu,
            FlowSel::PerCpuDevId => FlowKind::PerCpuDevId,
        }
    }
    fn percpu(self) -> bool {
        matches!(self, FlowSel::PerCpu | FlowSel::PerCpuDevId)
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    Alloc {
        from: u8,
        count: u8,
    },
    AllocAt {
        irq: u8,
    },
    Free {
        first: u8,
        count: u8,
    },
    SetChip {
        irq: u8,
        chip: u8,
        flow: FlowSel,
    },
    Request {
        irq: u8,
        dev: u8,
        shared: bool,
        no_autoen: bool,
        percpu: bool,
        handled: bool,
    },
    FreeIrq {
        irq: u8,
        dev: u8,
    },
    Disable {
        irq: u8,
        sync: bool,
    },
    Enable {
        irq: u8,
    },
    PercpuEnable {
        irq: u8,
        cpu: u8,
        on: bool,
    },
    SetAffinity {
        irq: u8,
        mask: u8,
    },
    SetManaged {
        irq: u8,
        mask: u8,
    },
    Dispatch {
        irq: u8,
        cpu: u8,
    },
    Replays {
        cpu: u8,
    },
    ChipBusy {
        chip: u8,
        busy: bool,
    },
    CpuUp {
        cpu: u8,
        from: u8,
    },
    CpuDown {
        cpu: u8,
        from: u8,
    },
}

/// One installed handler, harness side.
struct MHandler {
    dev: DevId,
    shared: bool,
    counter: Arc<AtomicU64>,
    handler: Arc<dyn IrqHandler>,
    expected: u64,
}

/// The model of one descriptor.
struct MDesc {
    chip: Option<usize>,
    flow: FlowSel,
    /// NO_AUTOEN line setting (set by the per-CPU-devid flow, never cleared).
    no_autoen: bool,
    depth: u32,
    handlers: Vec<MHandler>,
    /// An arrival that has not reached the handlers yet (PENDING).
    owed: bool,
    percpu_enabled: CpuMask,
    counts: [u64; NR_CPUS as usize],
    /// The affinity the core must report, when the model knows it.
    affinity: Option<CpuMask>,
    /// Managed affinity mask (kernel-owned, set before the first request).
    managed: Option<CpuMask>,
    /// Started (first handler installed and enabled, or enabled later).
    started: bool,
    /// Managed and shut down because no CPU of its mask is online.
    mshut: bool,
    /// A software resend is queued in the core (the platform was told and
    /// nothing has run it yet).
    sw_queued: bool,
}

impl MDesc {
    /// The core's startup: a managed line without an online CPU in its
    /// mask stays shut down (depth 1) until one comes up.
    fn startup(&mut self, online: &CpuMask) {
        if !self.started && self.managed.is_some_and(|m| !m.intersects(online)) {
            self.mshut = true;
            self.depth = 1;
            return;
        }
        self.depth = 0;
        self.started = true;
    }

    /// Whether an arrival now reaches the handlers (edge-like flows).
    fn runnable(&self) -> bool {
        !self.handlers.is_empty() && self.depth == 0 && self.started && !self.mshut
    }

    fn new() -> Self {
        Self {
            chip: None,
            flow: FlowSel::Bad,
            no_autoen: false,
            depth: 1,
            handlers: Vec::new(),
            owed: false,
            percpu_enabled: CpuMask::new(),
            counts: [0; NR_CPUS as usize],
            affinity: None,
            managed: None,
            started: false,
            mshut: false,
            sw_queued: false,
        }
    }
}

/// The `Prepare` hotplug callback of a Xen-like backend: allocates one
/// descriptor per CPU coming up, frees it after the CPU is dead.
#[derive(Default)]
struct PerCpuDesc {
    irqs: Mutex<BTreeMap<u32, IrqNumber>>,
    errors: Mutex<Vec<String>>,
}

impl HotplugCallback<FuzzPlatform> for PerCpuDesc {
    fn name(&self) -> &str {
        "fuzz-percpu-desc"
    }
    fn up(&self, ctx: &HotplugCtx<'_, FuzzPlatform>) -> Result<(), IrqError> {
        let irq = ctx.core.alloc_descs(IrqNumber(PERCPU_BASE), 1)?;
        self.irqs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ctx.cpu.get(), irq);
        Ok(())
    }
    fn down(&self, ctx: &HotplugCtx<'_, FuzzPlatform>) {
        let irq = self
            .irqs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ctx.cpu.get());
        if let Some(irq) = irq
            && let Err(e) = ctx.core.free_descs(irq, 1)
        {
            self.errors
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(format!("post-dead free {irq:?}: {e:?}"));
        }
    }
}

/// The `BringUp` callback of an x86-like backend: walks every descriptor
/// under the sparse lock; the walk must see exactly the live descriptors.
#[derive(Default)]
struct Walker {
    errors: Mutex<Vec<String>>,
}

impl HotplugCallback<FuzzPlatform> for Walker {
    fn name(&self) -> &str {
        "fuzz-walker"
    }
    fn up(&self, ctx: &HotplugCtx<'_, FuzzPlatform>) -> Result<(), IrqError> {
        let mut n = 0usize;
        ctx.for_each_irq(&mut |_| n += 1)?;
        if n != ctx.core.nr_descs() {
            self.errors
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(format!(
                    "bring-up walk saw {n} descriptors, nr_descs {}",
                    ctx.core.nr_descs()
                ));
        }
        match ctx.core.alloc_descs(IrqNumber(0), 1) {
            Err(IrqError::SparseLockHeldByCaller) => {}
            r => self
                .errors
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(format!("alloc in bring-up: {r:?}")),
        }
        Ok(())
    }
    fn down(&self, ctx: &HotplugCtx<'_, FuzzPlatform>) {
        let mut n = 0usize;
        if ctx.for_each_irq(&mut |_| n += 1).is_err() {
            self.errors
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push("dead walk refused".into());
        }
    }
}

struct Harness<'c> {
    core: &'c Core,
    chips: [Arc<ModelChip>; 2],
    descs: BTreeMap<u32, MDesc>,
    /// Descriptors the hotplug callback owns (cpu -> irq).
    owned: BTreeMap<u32, u32>,
    online: BTreeSet<u32>,
    percpu_cb: Arc<PerCpuDesc>,
    walker: Arc<Walker>,
    step: usize,
    /// The irq the current operation addressed (checked after it).
    touched: Option<IrqNumber>,
}

fn irq_of(v: u8) -> IrqNumber {
    // A few numbers past the capacity exercise the range checks.
    IrqNumber(u32::from(v) % (CAP + 4))
}

impl<'c> Harness<'c> {
    fn new(core: &'c Core) -> Self {
        let percpu_cb = Arc::new(PerCpuDesc::default());
        let walker = Arc::new(Walker::default());
        core.register_hotplug(CpuPhase::Prepare, percpu_cb.clone())
            .expect("register");
        core.register_hotplug(CpuPhase::BringUp, walker.clone())
            .expect("register");
        let mut online = BTreeSet::new();
        for c in 0..2 {
            core.set_cpu_online(CpuId::new(c).unwrap(), true)
                .expect("boot cpus");
            online.insert(c);
        }
        Self {
            core,
            chips: [
                Arc::new(ModelChip::new("lazy", false, false, ChipFlags::empty())),
                Arc::new(ModelChip::new("strict", true, true, ChipFlags::empty())),
            ],
            descs: BTreeMap::new(),
            owned: BTreeMap::new(),
            online,
            percpu_cb,
            walker,
            step: 0,
            touched: None,
        }
    }

    /// The irq an operand names: with the top bit set, one of the
    /// allocated irqs (so most operations hit live descriptors); otherwise
    /// the number itself (a few past the capacity).
    fn sel(&mut self, v: u8) -> IrqNumber {
        let irq = if v & 0x80 != 0 && !self.descs.is_empty() {
            let n = usize::from(v & 0x7f) % self.descs.len();
            IrqNumber(*self.descs.keys().nth(n).expect("index in range"))
        } else {
            irq_of(v & 0x7f)
        };
        self.touched = Some(irq);
        irq
    }

    fn online_mask(&self) -> CpuMask {
        self.online
            .iter()
            .map(|&c| CpuId::new(c).unwrap())
            .collect()
    }

    /// The `n`-th online CPU (wrapping).
    fn online_cpu(&self, n: u8) -> CpuId {
        let v: Vec<u32> = self.online.iter().copied().collect();
        CpuId::new(v[usize::from(n) % v.len()]).unwrap()
    }

    fn is_owned(&self, irq: u32) -> bool {
        self.owned.values().any(|&o| o == irq)
    }

    fn first_fit(&self, from: u32, count: u32) -> Option<u32> {
        (from..=CAP.checked_sub(count)?)
            .find(|&s| (s..s + count).all(|n| !self.descs.contains_key(&n)))
    }

    fn model_alloc(&mut self, from: u32, count: u32, exact: bool) -> Result<IrqNumber, IrqError> {
        if count == 0 {
            return Err(IrqError::InvalidRange);
        }
        if u64::from(from) + u64::from(count) > u64::from(CAP) {
            return Err(if exact {
                IrqError::OutOfRange(IrqNumber(from))
            } else {
                IrqError::NoSpace
            });
        }
        let start = if exact {
            if (from..from + count).any(|n| self.descs.contains_key(&n)) {
                return Err(IrqError::AlreadyAllocated(IrqNumber(from)));
            }
            from
        } else {
            self.first_fit(from, count).ok_or(IrqError::NoSpace)?
        };
        for n in start..start + count {
            self.descs.insert(n, MDesc::new());
        }
        Ok(IrqNumber(start))
    }

    fn model_free(&mut self, first: u32, count: u32) -> Result<(), IrqError> {
        if count == 0 {
            return Err(IrqError::InvalidRange);
        }
        if u64::from(first) + u64::from(count) > u64::from(CAP) {
            return Err(IrqError::OutOfRange(IrqNumber(first)));
        }
        if (first..first + count).any(|n| !self.descs.contains_key(&n)) {
            return Err(IrqError::UnknownIrq(IrqNumber(first)));
        }
        if let Some(n) = (first..first + count).find(|n| !self.descs[n].handlers.is_empty()) {
            return Err(IrqError::HasHandlers(IrqNumber(n)));
        }
        for n in first..first + count {
            self.descs.remove(&n);
        }
        Ok(())
    }

    fn expect<T: std::fmt::Debug + PartialEq>(
        &self,
        what: &str,
        got: Result<T, IrqError>,
        want: Result<T, IrqError>,
    ) {
        check!(
            got == want,
            "step {}: {what}: core returned {got:?}, model expects {want:?}",
            self.step
        );
    }

    /// Delivers one arrival of `irq` on `cpu` and checks which handlers ran.
    /// The dispatcher then runs every queued software resend: modelled too.
    fn arrive(&mut self, irq: IrqNumber, cpu: CpuId) {
        let queued: Vec<u32> = self
            .descs
            .iter()
            .filter(|(_, d)| d.sw_queued)
            .map(|(&n, _)| n)
            .collect();
        let mut before = vec![(irq.0, self.counters(irq.0))];
        for &n in &queued {
            if n != irq.0 {
                before.push((n, self.counters(n)));
            }
        }
        let r = as_cpu(cpu, || self.core.handle_irq(irq));
        let step = self.step;
        if self.descs.contains_key(&irq.0) {
            check!(
                r.is_ok(),
                "step {step}: handle_irq({irq:?}) on {cpu:?}: {r:?}"
            );
            self.model_arrival(irq.0, cpu);
        } else {
            self.expect("handle_irq", r, Err(IrqError::UnknownIrq(irq)));
        }
        for &n in &queued {
            if let Some(d) = self.descs.get_mut(&n) {
                d.sw_queued = false;
            }
            self.model_arrival(n, cpu);
        }
        for (n, b) in before {
            self.check_handlers(n, cpu, &b);
        }
    }

    /// The software resend of `irq` that the kernel was told about, as its
    /// softirq delivers it: runs the flow only if still queued.
    fn sw_resend(&mut self, irq: IrqNumber, cpu: CpuId) {
        let before = self.counters(irq.0);
        let r = as_cpu(cpu, || self.core.handle_sw_resend(irq));
        let Some(d) = self.descs.get_mut(&irq.0) else {
            self.expect("handle_sw_resend", r, Err(IrqError::UnknownIrq(irq)));
            return;
        };
        let queued = core::mem::replace(&mut d.sw_queued, false);
        self.expect("handle_sw_resend", r, Ok(()));
        if queued {
            self.model_arrival(irq.0, cpu);
        }
        self.check_handlers(irq.0, cpu, &before);
    }

    /// The handlers' call counters of descriptor `n`.
    fn counters(&self, n: u32) -> Vec<u64> {
        self.descs
            .get(&n)
            .map(|d| {
                d.handlers
                    .iter()
                    .map(|h| h.counter.load(Ordering::SeqCst))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The model's side of one run of the flow of `n` on `cpu`.
    fn model_arrival(&mut self, n: u32, cpu: CpuId) {
        let Some(d) = self.descs.get_mut(&n) else {
            return;
        };
        let ci = cpu.index();
        let ran: Vec<bool> = match d.flow {
            FlowSel::Bad => {
                d.counts[ci] += 1;
                vec![false; d.handlers.len()]
            }
            FlowSel::PerCpu => {
                d.counts[ci] += 1;
                vec![true; d.handlers.len()]
            }
            FlowSel::PerCpuDevId => {
                d.counts[ci] += 1;
                if d.handlers.is_empty() {
                    // Spurious on this CPU: the core disables it here.
                    d.percpu_enabled.clear(cpu);
                }
                (0..d.handlers.len()).map(|i| i == 0).collect()
            }
            FlowSel::Edge | FlowSel::Level | FlowSel::FastEoi | FlowSel::Simple => {
                if d.runnable() {
                    d.counts[ci] += 1;
                    d.owed = false;
                    vec![true; d.handlers.len()]
                } else {
                    d.owed = true;
                    vec![false; d.handlers.len()]
                }
            }
        };
        for (i, h) in d.handlers.iter_mut().enumerate() {
            if ran[i] {
                h.expected += 1;
            }
        }
    }

    /// Checks the handlers of `n` ran as the model expects since `before`,
    /// and its count on `cpu`.
    fn check_handlers(&self, n: u32, cpu: CpuId, before: &[u64]) {
        let step = self.step;
        let irq = IrqNumber(n);
        let Some(d) = self.descs.get(&n) else {
            return;
        };
        for (i, h) in d.handlers.iter().enumerate() {
            let now = h.counter.load(Ordering::SeqCst);
            let b = before.get(i).copied().unwrap_or(0);
            check!(
                now == h.expected,
                "step {step}: {irq:?} ({:?}, depth {}) on {cpu:?}: handler {:?} ran {} time(s) now, {} in all, model {}",
                d.flow,
                d.depth,
                h.dev,
                now - b,
                now,
                h.expected
            );
        }
        let got = self.core.irq_count(irq, cpu);
        check!(
            got == d.counts[cpu.index()],
            "step {step}: irq_count({irq:?}, {cpu:?}) = {got}, model {}",
            d.counts[cpu.index()]
        );
    }

    /// Records the software resends the core told the platform about: each
    /// is queued in the core until a dispatch or `handle_sw_resend` runs it,
    /// or the line shuts down.
    fn note_kicks(&mut self) {
        for irq in self.core.platform().take_resends() {
            if let Some(d) = self.descs.get_mut(&irq.0) {
                d.sw_queued = true;
            }
        }
    }

    /// Delivers every queued replay (software resends and hardware
    /// retriggers) on `cpu`, until none is left.
    fn replays(&mut self, cpu: CpuId) {
        for _ in 0..64 {
            self.note_kicks();
            let sw: Vec<u32> = self
                .descs
                .iter()
                .filter(|(_, d)| d.sw_queued)
                .map(|(&n, _)| n)
                .collect();
            let mut hw = Vec::new();
            for c in &self.chips {
                hw.extend(c.take_retriggered());
            }
            if sw.is_empty() && hw.is_empty() {
                return;
            }
            for n in sw {
                self.sw_resend(IrqNumber(n), cpu);
            }
            for irq in hw {
                self.arrive(irq, cpu);
            }
        }
        panic!("step {}: replays never stop", self.step);
    }

    fn op(&mut self, op: &Op) {
        self.op_inner(op);
        self.note_kicks();
    }

    fn op_inner(&mut self, op: &Op) {
        let core = self.core;
        match *op {
            Op::Alloc { from, count } => {
                let (from, count) = (u32::from(from) % (CAP + 4), u32::from(count) % 9);
                let got = core.alloc_descs(IrqNumber(from), count);
                let want = self.model_alloc(from, count, false);
                self.expect("alloc_descs", got, want);
            }
            Op::AllocAt { irq } => {
                let irq = self.sel(irq);
                let got = core.alloc_desc_at(irq);
                let want = self.model_alloc(irq.0, 1, true).map(|_| ());
                self.expect("alloc_desc_at", got, want);
            }
            Op::Free { first, count } => {
                let (first, count) = (self.sel(first).0, u32::from(count) % 9);
                if (first..first + count).any(|n| self.is_owned(n)) {
                    return; // the hotplug callback's descriptor
                }
                let got = core.free_descs(IrqNumber(first), count);
                let want = self.model_free(first, count);
                self.expect("free_descs", got, want);
            }
            Op::SetChip { irq, chip, flow } => {
                let irq = self.sel(irq);
                if self.is_owned(irq.0) {
                    return;
                }
                let chip = usize::from(chip) % 3; // 2 = no chip
                let levels = match self.chips.get(chip) {
                    Some(c) => vec![ChipLevel::new(c.clone(), HwIrq(u64::from(irq.0)))],
                    None => Vec::new(),
                };
                let got = core.set_chip(irq, levels, flow.kind());
                let want = if chip == 2 && !matches!(flow, FlowSel::Bad | FlowSel::Simple) {
                    Err(IrqError::NoChip(irq))
                } else {
                    match self.descs.get_mut(&irq.0) {
                        None => Err(IrqError::UnknownIrq(irq)),
                        Some(d) if !d.handlers.is_empty() => Err(IrqError::HasHandlers(irq)),
                        Some(d) => {
                            d.chip = (chip < 2).then_some(chip);
                            d.flow = flow;
                            if flow == FlowSel::PerCpuDevId {
                                d.no_autoen = true;
                            }
                            Ok(())
                        }
                    }
                };
                self.expect("set_chip", got, want);
            }
            Op::Request {
                irq,
                dev,
                shared,
                no_autoen,
                percpu,
                handled,
            } => {
                let irq = self.sel(irq);
                if self.is_owned(irq.0) {
                    return;
                }
                let dev = DevId(usize::from(dev % 4));
                let counter = Arc::new(AtomicU64::new(0));
                let c2 = counter.clone();
                let ret = if handled {
                    IrqReturn::HANDLED
                } else {
                    IrqReturn::NONE
                };
                let handler: Arc<dyn IrqHandler> = Arc::new(move |_irq: IrqNumber| {
                    c2.fetch_add(1, Ordering::SeqCst);
                    ret
                });
                let mut flags = RequestFlags::empty();
                if shared {
                    flags |= RequestFlags::SHARED;
                }
                if no_autoen {
                    flags |= RequestFlags::NO_AUTOEN;
                }
                if percpu {
                    flags |= RequestFlags::PERCPU;
                }
                let req = IrqRequest::new("fuzz", handler.clone())
                    .flags(flags)
                    .dev_id(dev);
                let got = core.request_irq_raw(irq, req);
                let online = self.online_mask();
                let want = match self.descs.get_mut(&irq.0) {
                    None => Err(IrqError::UnknownIrq(irq)),
                    Some(d) => {
                        let first = d.handlers.is_empty();
                        if d.chip.is_none() && d.flow != FlowSel::Simple {
                            Err(IrqError::NoChip(irq))
                        } else if percpu && !d.flow.percpu() {
                            Err(IrqError::NotPerCpu(irq))
                        } else if !percpu && d.flow.percpu() {
                            Err(IrqError::IsPerCpu(irq))
                        } else if d.handlers.iter().any(|h| h.dev == dev) {
                            Err(IrqError::DuplicateDevId(irq))
                        } else if !first
                            && (!shared
                                || !d.handlers.iter().all(|h| h.shared)
                                || d.flow == FlowSel::PerCpuDevId)
                        {
                            Err(IrqError::NotShared(irq))
                        } else {
                            if first && !d.flow.percpu() {
                                if no_autoen || d.no_autoen {
                                    d.depth = 1;
                                } else {
                                    d.startup(&online);
                                }
                            }
                            d.handlers.push(MHandler {
                                dev,
                                shared,
                                counter,
                                handler,
                                expected: 0,
                            });
                            Ok(())
                        }
                    }
                };
                self.expect("request_irq_raw", got, want);
            }
            Op::FreeIrq { irq, dev } => {
                let irq = self.sel(irq);
                let dev = DevId(usize::from(dev % 4));
                let got = core.free_irq(irq, dev);
                let step = self.step;
                let want = match self.descs.get_mut(&irq.0) {
                    None => Err(IrqError::UnknownIrq(irq)),
                    Some(d) => match d.handlers.iter().position(|h| h.dev == dev) {
                        None => Err(IrqError::NoSuchHandler(irq)),
                        Some(i) => {
                            let h = d.handlers.remove(i);
                            if got.is_ok() {
                                check!(
                                    Arc::strong_count(&h.handler) == 1,
                                    "step {step}: handler of {irq:?} still referenced after free_irq"
                                );
                            }
                            if d.handlers.is_empty() {
                                d.depth = 1;
                                d.started = false;
                                // A line without handlers is simply shut
                                // down: the next request decides afresh
                                // whether a CPU of its mask is online.
                                d.mshut = false;
                                d.owed = false;
                                // Shutdown cancels a queued resend.
                                d.sw_queued = false;
                                d.percpu_enabled = CpuMask::new();
                            }
                            Ok(())
                        }
                    },
                };
                self.expect("free_irq", got, want);
            }
            Op::Disable { irq, sync } => {
                let irq = self.sel(irq);
                let got = if sync {
                    core.disable_irq(irq)
                } else {
                    core.disable_irq_nosync(irq)
                };
                let want = match self.descs.get_mut(&irq.0) {
                    None => Err(IrqError::UnknownIrq(irq)),
                    Some(d) if d.flow.percpu() => Err(IrqError::IsPerCpu(irq)),
                    Some(d) => {
                        d.depth += 1;
                        Ok(())
                    }
                };
                self.expect("disable_irq", got, want);
            }
            Op::Enable { irq } => {
                let irq = self.sel(irq);
                let got = core.enable_irq(irq);
                let online = self.online_mask();
                let want = match self.descs.get_mut(&irq.0) {
                    None => Err(IrqError::UnknownIrq(irq)),
                    Some(d) if d.flow.percpu() => Err(IrqError::IsPerCpu(irq)),
                    // A managed shutdown holds one unit of the depth that
                    // only a CPU coming back undoes: a driver's enable
                    // cannot take it.
                    Some(d) if d.depth <= u32::from(d.mshut) => {
                        Err(IrqError::UnbalancedEnable(irq))
                    }
                    Some(d) if d.depth > 1 => {
                        d.depth -= 1;
                        Ok(())
                    }
                    Some(d) if d.handlers.is_empty() => Err(IrqError::NoSuchHandler(irq)),
                    Some(d) => {
                        d.startup(&online);
                        Ok(())
                    }
                };
                self.expect("enable_irq", got, want);
            }
            Op::PercpuEnable { irq, cpu, on } => {
                let irq = self.sel(irq);
                let cpu = self.online_cpu(cpu);
                let got = as_cpu(cpu, || {
                    if on {
                        core.enable_percpu_irq(irq, irqcore::TriggerType::None)
                    } else {
                        core.disable_percpu_irq(irq)
                    }
                });
                let want = match self.descs.get_mut(&irq.0) {
                    None => Err(IrqError::UnknownIrq(irq)),
                    Some(d) if !d.flow.percpu() => Err(IrqError::NotPerCpu(irq)),
                    Some(d) => {
                        if on {
                            d.percpu_enabled.set(cpu);
                        } else {
                            d.percpu_enabled.clear(cpu);
                        }
                        Ok(())
                    }
                };
                self.expect("enable/disable_percpu_irq", got, want);
            }
            Op::SetAffinity { irq, mask } => {
                let irq = self.sel(irq);
                let mask = mask_from_bits(mask);
                let got = core.set_affinity(irq, &mask);
                let online = self.online_mask();
                let chips = &self.chips;
                let want =
                    if mask.is_empty() || !mask.is_subset_of(&CpuMask::first_n(NR_CPUS as usize)) {
                        Err(IrqError::InvalidMask)
                    } else if !mask.intersects(&online) {
                        Err(IrqError::NoOnlineCpu)
                    } else {
                        match self.descs.get_mut(&irq.0) {
                            None => Err(IrqError::UnknownIrq(irq)),
                            Some(d) if d.flow.percpu() => Err(IrqError::IsPerCpu(irq)),
                            Some(d) if d.managed.is_some() => Err(IrqError::Managed(irq)),
                            Some(d) => match d.chip {
                                None => Err(IrqError::NoChip(irq)),
                                Some(c) => {
                                    // A busy chip defers the move: the model no
                                    // longer knows when it lands.
                                    let busy = chips[c].is_busy(u64::from(irq.0));
                                    d.affinity = if busy { None } else { Some(mask) };
                                    Ok(())
                                }
                            },
                        }
                    };
                self.expect("set_affinity", got, want);
            }
            Op::SetManaged { irq, mask } => {
                let irq = self.sel(irq);
                let mask = mask_from_bits(mask);
                let got = core.set_managed_affinity(irq, &mask);
                let possible = CpuMask::first_n(NR_CPUS as usize);
                let want = if mask.is_empty() || !mask.is_subset_of(&possible) {
                    Err(IrqError::InvalidMask)
                } else {
                    match self.descs.get_mut(&irq.0) {
                        None => Err(IrqError::UnknownIrq(irq)),
                        Some(d) if !d.handlers.is_empty() => Err(IrqError::HasHandlers(irq)),
                        Some(d) => {
                            d.managed = Some(mask);
                            d.affinity = Some(mask);
                            Ok(())
                        }
                    }
                };
                self.expect("set_managed_affinity", got, want);
            }
            Op::Dispatch { irq, cpu } => {
                let cpu = self.online_cpu(cpu);
                let irq = self.sel(irq);
                self.arrive(irq, cpu);
            }
            Op::Replays { cpu } => {
                let cpu = self.online_cpu(cpu);
                self.replays(cpu);
            }
            Op::ChipBusy { chip, busy } => {
                let c = &self.chips[usize::from(chip) % 2];
                c.set_busy(busy);
                if busy {
                    for d in self.descs.values_mut() {
                        if d.chip.is_some() {
                            d.affinity = None;
                        }
                    }
                }
            }
            Op::CpuUp { cpu, from } => {
                let target = CpuId::new(u32::from(cpu) % (NR_CPUS + 1)).unwrap();
                let from = self.online_cpu(from);
                let got = as_cpu(from, || core.cpu_up(target, &ThreadCpus(core)));
                let want = if target.get() >= NR_CPUS {
                    Err(IrqError::BadCpu(target))
                } else if self.online.contains(&target.get()) {
                    Err(IrqError::CpuAlreadyOnline(target))
                } else {
                    match self.model_alloc(PERCPU_BASE, 1, false) {
                        Err(e) => Err(e),
                        Ok(irq) => {
                            self.owned.insert(target.get(), irq.0);
                            self.online.insert(target.get());
                            let online = self.online_mask();
                            for d in self.descs.values_mut() {
                                let back = d.managed.is_some_and(|m| m.contains(target));
                                if d.mshut && back {
                                    d.mshut = false;
                                    d.depth = d.depth.saturating_sub(1);
                                    if d.depth == 0 && !d.handlers.is_empty() {
                                        d.startup(&online);
                                    }
                                }
                            }
                            Ok(())
                        }
                    }
                };
                self.expect("cpu_up", got, want);
                self.replays(from);
            }
            Op::CpuDown { cpu, from } => {
                let target = CpuId::new(u32::from(cpu) % (NR_CPUS + 1)).unwrap();
                let from = self.online_cpu(from);
                let got = as_cpu(from, || core.cpu_down(target, &ThreadCpus(core)));
                let want = if target.get() >= NR_CPUS {
                    Err(IrqError::BadCpu(target))
                } else if target == from {
                    Err(IrqError::CpuDownSelf(target))
                } else if !self.online.contains(&target.get()) {
                    Err(IrqError::CpuNotOnline(target))
                } else if self.online.len() < 2 {
                    Err(IrqError::LastOnlineCpu(target))
                } else {
                    self.online.remove(&target.get());
                    if let Some(irq) = self.owned.remove(&target.get()) {
                        self.descs.remove(&irq);
                    }
                    let after = self.online_mask();
                    for d in self.descs.values_mut() {
                        if d.flow.percpu() {
                            // Only per-CPU lines are disabled on the dying CPU.
                            d.percpu_enabled.clear(target);
                        }
                        let orphaned = d.managed.is_some_and(|m| !m.intersects(&after));
                        if d.started && !d.flow.percpu() && orphaned && !d.mshut {
                            d.started = false;
                            d.mshut = true;
                            d.depth += 1;
                        }
                        // Broken affinity is rewritten to the online CPUs.
                        if d.affinity.is_some_and(|a| a.contains(target)) {
                            d.affinity = None;
                        }
                    }
                    Ok(())
                };
                self.expect("cpu_down", got, want);
                // Interrupts pending on the dying CPU are replayed elsewhere.
                self.replays(from);
            }
        }
    }

    /// Checks the global invariants and the descriptor `touched`.
    fn check_state(&self, touched: Option<IrqNumber>) {
        let step = self.step;
        let core = self.core;
        check!(
            core.nr_descs() == self.descs.len(),
            "step {step}: nr_descs {} != model {}",
            core.nr_descs(),
            self.descs.len()
        );
        for cb_errors in [&self.percpu_cb.errors, &self.walker.errors] {
            let e = cb_errors.lock().unwrap_or_else(|e| e.into_inner());
            check!(e.is_empty(), "step {step}: hotplug callback: {e:?}");
        }
        let online = core.online_cpus();
        check!(
            online == self.online_mask(),
            "step {step}: online {online:?} != model {:?}",
            self.online
        );
        if let Some(irq) = touched {
            check!(
                core.is_allocated(irq) == self.descs.contains_key(&irq.0),
                "step {step}: is_allocated({irq:?}) disagrees with the model"
            );
        }
        let irqs: Vec<u32> = match touched {
            Some(t) => vec![t.0],
            None => self.descs.keys().copied().collect(),
        };
        for n in irqs {
            let Some(d) = self.descs.get(&n) else {
                continue;
            };
            let irq = IrqNumber(n);
            let s = core
                .snapshot(irq)
                .unwrap_or_else(|e| panic!("step {step}: snapshot({irq:?}): {e:?}"));
            if !d.flow.percpu() {
                check!(
                    s.depth == d.depth,
                    "step {step}: {irq:?} depth {} != model {}",
                    s.depth,
                    d.depth
                );
            }
            let devs: Vec<DevId> = s.handlers.iter().map(|h| h.1).collect();
            let want: Vec<DevId> = d.handlers.iter().map(|h| h.dev).collect();
            check!(
                devs == want,
                "step {step}: {irq:?} handlers {devs:?} != model {want:?}"
            );
            check!(
                s.percpu_enabled == d.percpu_enabled,
                "step {step}: {irq:?} percpu_enabled {:?} != model {:?}",
                s.percpu_enabled,
                d.percpu_enabled
            );
            if let Some(a) = d.affinity {
                check!(
                    s.affinity == a,
                    "step {step}: {irq:?} affinity {:?} != model {a:?}",
                    s.affinity
                );
            }
            if d.chip.is_some() && !d.flow.percpu() && s.line.contains(LineState::STARTED) {
                let eff = s.effective_affinity;
                check!(
                    !eff.is_empty() && eff.is_subset_of(&online),
                    "step {step}: started {irq:?} targets {eff:?}, online {online:?}"
                );
                if let Some(m) = d.managed {
                    check!(
                        eff.is_subset_of(&m),
                        "step {step}: managed {irq:?} (mask {m:?}) targets {eff:?}"
                    );
                }
                if let Some(c) = d.chip {
                    let line = self.chips[c].line(u64::from(n));
                    check!(
                        line.target.is_some_and(|t| online.contains(t)),
                        "step {step}: chip routes started {irq:?} to {:?}, online {online:?}",
                        line.target
                    );
                }
            }
        }
    }

    /// Enables everything, delivers every replay and checks nothing is
    /// owed, then frees every handler, CPU and descriptor.
    fn teardown(&mut self) {
        let core = self.core;
        self.step = usize::MAX;
        for c in &self.chips {
            c.set_busy(false);
        }
        let ctl = self.online_cpu(0);
        set_cpu(ctl);
        let irqs: Vec<u32> = self.descs.keys().copied().collect();
        for &n in &irqs {
            let d = &self.descs[&n];
            if d.flow.percpu() || d.handlers.is_empty() {
                continue;
            }
            for _ in 0..d.depth {
                self.op(&Op::Enable { irq: n as u8 });
            }
        }
        self.replays(ctl);
        for (&n, d) in &self.descs {
            if d.flow.percpu() || d.flow == FlowSel::Bad || !d.runnable() {
                continue;
            }
            check!(
                !d.owed,
                "teardown: an event of irq {n} ({:?}) was never delivered",
                d.flow
            );
            if let (Some(c), FlowSel::Edge | FlowSel::Level | FlowSel::FastEoi) = (d.chip, d.flow) {
                let line = self.chips[c].line(u64::from(n));
                check!(
                    !line.masked,
                    "teardown: enabled irq {n} ({:?}) is left masked at the chip",
                    d.flow
                );
            }
        }
        for &n in &irqs {
            let devs: Vec<u8> = self.descs[&n]
                .handlers
                .iter()
                .map(|h| h.dev.0 as u8)
                .collect();
            for dev in devs {
                self.op(&Op::FreeIrq { irq: n as u8, dev });
            }
        }
        let others: Vec<u32> = self
            .online
            .iter()
            .copied()
            .filter(|&c| c != ctl.get())
            .collect();
        for c in others {
            let r = core.cpu_down(CpuId::new(c).unwrap(), &ThreadCpus(core));
            check!(r.is_ok(), "teardown: cpu_down({c}): {r:?}");
            self.online.remove(&c);
            if let Some(irq) = self.owned.remove(&c) {
                self.descs.remove(&irq);
            }
        }
        self.replays(ctl);
        let irqs: Vec<u32> = self.descs.keys().copied().collect();
        for n in irqs {
            let r = core.free_descs(IrqNumber(n), 1);
            check!(r.is_ok(), "teardown: free_descs({n}): {r:?}");
            self.descs.remove(&n);
        }
        self.check_state(None);
        check!(
            core.nr_descs() == 0,
            "teardown: {} descriptors leaked",
            core.nr_descs()
        );
    }
}

/// The `descriptor_lifecycle` fuzz target.
pub fn descriptor_lifecycle(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mut ops = Vec::new();
    while !u.is_empty() && ops.len() < MAX_OPS {
        match Op::arbitrary(&mut u) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    run(&ops);
}

fn run(ops: &[Op]) {
    set_cpu(CpuId::BOOT);
    let core = IrqCore::with_config(
        FuzzPlatform::default(),
        CoreConfig {
            capacity: CAP,
            nr_cpus: NR_CPUS,
        },
    );
    let mut h = Harness::new(&core);
    for (i, op) in ops.iter().enumerate() {
        h.step = i;
        set_cpu(h.online_cpu(0));
        if crate::trace_enabled() {
            eprintln!("step {i}: {op:?}");
        }
        h.op(op);
        let touched = h.touched.take();
        h.check_state(touched);
    }
    h.teardown();
    set_cpu(CpuId::BOOT);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The harness itself: a managed line shuts down with its last CPU,
    /// keeps a driver's disable across offline/online, and an edge that
    /// arrived while it was disabled is replayed after the enable.
    #[test]
    fn managed_shutdown_restart_and_replay_are_modelled() {
        run(&[
            Op::Alloc { from: 1, count: 2 },
            Op::SetChip {
                irq: 1,
                chip: 0,
                flow: FlowSel::Edge,
            },
            Op::SetManaged { irq: 1, mask: 0b10 },
            Op::Request {
                irq: 1,
                dev: 0,
                shared: false,
                no_autoen: false,
                percpu: false,
                handled: true,
            },
            Op::Dispatch { irq: 1, cpu: 1 },
            Op::CpuDown { cpu: 1, from: 0 },
            Op::Dispatch { irq: 1, cpu: 0 },
            Op::Disable { irq: 1, sync: true },
            Op::CpuUp { cpu: 1, from: 0 },
            Op::Dispatch { irq: 1, cpu: 0 },
            Op::Enable { irq: 1 },
            Op::Replays { cpu: 0 },
            Op::SetAffinity { irq: 1, mask: 1 },
        ]);
    }

    /// Found by this target: a managed irq whose last handler is freed
    /// while it is shut down (no CPU of its mask online) keeps its
    /// managed-shutdown mark; a later request with NO_AUTOEN is then
    /// started by the CPU coming back, before the driver's enable_irq
    /// (which then fails as unbalanced).
    #[test]
    fn regress_managed_noautoen_started_by_cpu_up() {
        run(&[
            Op::Alloc { from: 1, count: 1 },
            Op::SetChip {
                irq: 1,
                chip: 0,
                flow: FlowSel::Edge,
            },
            Op::SetManaged { irq: 1, mask: 0b10 },
            Op::Request {
                irq: 1,
                dev: 0,
                shared: false,
                no_autoen: false,
                percpu: false,
                handled: true,
            },
            Op::CpuDown { cpu: 1, from: 0 },
            Op::FreeIrq { irq: 1, dev: 0 },
            Op::Request {
                irq: 1,
                dev: 1,
                shared: false,
                no_autoen: true,
                percpu: false,
                handled: true,
            },
            Op::CpuUp { cpu: 1, from: 0 },
            Op::Dispatch { irq: 1, cpu: 1 },
            Op::Enable { irq: 1 },
        ]);
    }
}
