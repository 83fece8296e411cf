//! `flow_handlers`: interleavings of arrivals, disables, enables, affinity
//! moves, replays and handler completions on several CPUs, made
//! deterministic on one thread.
//!
//! # How one thread plays several CPUs
//!
//! A handler, when called, keeps executing operations from the input *as
//! other CPUs* until it reads `Complete`: everything it does happens while
//! its CPU is inside the flow with the descriptor lock dropped, which is
//! exactly the window in which other CPUs race with it on real hardware. An
//! arrival executed there on another CPU can find the line in progress,
//! run another line's handlers (which nest further), and so on; handlers
//! complete innermost first. The thread-local CPU id is switched around
//! every call, so each CPU has its own interrupt state, lock-order record
//! and read-side section.
//!
//! One case cannot be played this way: an edge arrival on the line's single
//! new target while the old CPU still runs the handlers *waits* in the flow
//! (migration live-lock avoidance). The harness recognises it, marks that
//! CPU as waiting and delivers the arrival right after the running flow
//! returns, which is when the waiting CPU would get the lock.
//!
//! # Invariants
//!
//! - No handler of a line starts while a handler of that line runs (on any
//!   CPU), and the first handler only starts while the line is enabled.
//! - No edge is lost: every arrival on an edge line, and on a fasteoi line
//!   with `RESEND_WHEN_IN_PROGRESS` (or while disabled), is followed by a
//!   handler start once the line is enabled and every replay delivered.
//!   (Level lines are exempt: the source stays asserted. A fasteoi arrival
//!   while in progress elsewhere without the flag is dropped by design.)
//! - At the end no enabled line is left masked at its chip, and each line's
//!   affinity is the last one requested (deferred moves included).
//! - Every call returns what the model expects, teardown frees everything,
//!   no handler reference leaks and the descriptor count returns to zero.

use crate::check;
use crate::model_chip::ModelChip;
use crate::platform::{FuzzPlatform, NR_CPUS, as_cpu, mask_from_bits, set_cpu};
use arbitrary::{Arbitrary, Unstructured};
use irqcore::{
    ChipFlags, ChipLevel, CoreConfig, CpuId, CpuMask, DevId, FlowKind, HwIrq, IrqCore, IrqError,
    IrqHandler, IrqNumber, IrqRequest, IrqReturn, LineState, Platform, RequestFlags,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

const MAX_OPS: usize = 128;
const NR_LINES: usize = 3;

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
enum LineFlow {
    Edge,
    FastEoi,
    Level,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
struct LineCfg {
    flow: LineFlow,
    /// Fasteoi: remember arrivals while in progress elsewhere.
    resend_in_progress: bool,
    /// Affinity changes only from the interrupt path.
    move_deferred: bool,
    /// Chip 1 (real disable, hardware retrigger) instead of chip 0.
    strict_chip: bool,
    /// Two shared handlers instead of one.
    shared: bool,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    Arrive { line: u8, cpu: u8 },
    Disable { line: u8, cpu: u8 },
    Enable { line: u8, cpu: u8 },
    SetAffinity { line: u8, cpu: u8, mask: u8 },
    ChipBusy { chip: bool, busy: bool },
    Replays { cpu: u8 },
    Complete,
}

struct Line {
    cfg: LineCfg,
    irq: IrqNumber,
    depth: u32,
    /// An arrival no handler start has followed yet.
    owed: bool,
    /// Handlers of this line running now.
    running: u32,
    last_mask: Option<CpuMask>,
    counters: Vec<Arc<AtomicU64>>,
    handlers: Vec<Arc<dyn IrqHandler>>,
}

struct State {
    ops: Vec<Op>,
    pos: usize,
    lines: Vec<Line>,
    /// CPUs inside the dispatcher (interrupt context) right now.
    busy: Vec<CpuId>,
    /// Arrivals waiting for their line to leave IN_PROGRESS (line, cpu);
    /// their CPUs count as busy.
    waiting: Vec<(usize, CpuId)>,
}

struct Flow {
    core: IrqCore<FuzzPlatform>,
    chips: [Arc<ModelChip>; 2],
    st: Mutex<State>,
}

impl Flow {
    fn st(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The `n`-th CPU that is neither in the dispatcher nor waiting.
    fn free_cpu(&self, n: u8) -> Option<CpuId> {
        let st = self.st();
        let free: Vec<CpuId> = CpuId::all(NR_CPUS as usize)
            .filter(|c| !st.busy.contains(c) && !st.waiting.iter().any(|w| w.1 == *c))
            .collect();
        (!free.is_empty()).then(|| free[usize::from(n) % free.len()])
    }

    fn next_op(&self) -> Option<Op> {
        let mut st = self.st();
        let op = st.ops.get(st.pos).copied();
        st.pos += 1;
        op
    }

    /// Called by every handler.
    fn on_handler(&self, line: usize, idx: usize) {
        {
            let mut st = self.st();
            let l = &mut st.lines[line];
            check!(
                l.running == 0,
                "line {line}: handler {idx} started while another handler of the line runs"
            );
            if idx == 0 {
                check!(
                    l.depth == 0,
                    "line {line}: handler started while the line is disabled (depth {})",
                    l.depth
                );
                l.owed = false;
            }
            l.running += 1;
            l.counters[idx].fetch_add(1, Ordering::SeqCst);
        }
        // The window in which other CPUs race with this handler.
        while let Some(op) = self.next_op() {
            if matches!(op, Op::Complete) {
                break;
            }
            self.exec(op, true);
        }
        self.st().lines[line].running -= 1;
    }

    fn line_of(v: u8) -> usize {
        usize::from(v) % NR_LINES
    }

    /// An arrival of `line` on `cpu` (which is free).
    fn arrive(&self, line: usize, cpu: CpuId) {
        let (irq, cfg) = {
            let st = self.st();
            (st.lines[line].irq, st.lines[line].cfg)
        };
        let snap = self
            .core
            .snapshot(irq)
            .unwrap_or_else(|e| panic!("snapshot {irq:?}: {e:?}"));
        let in_progress = snap.line.contains(LineState::IN_PROGRESS);
        if cfg.flow == LineFlow::Edge && in_progress && snap.effective_affinity == CpuMask::of(cpu)
        {
            // The new single target waits for the old CPU to finish.
            self.st().waiting.push((line, cpu));
            return;
        }
        let tracked = match cfg.flow {
            LineFlow::Edge => true,
            LineFlow::FastEoi => !in_progress || cfg.resend_in_progress,
            LineFlow::Level => false,
        };
        {
            let mut st = self.st();
            if tracked {
                st.lines[line].owed = true;
            }
            st.busy.push(cpu);
        }
        let r = as_cpu(cpu, || self.core.handle_irq(irq));
        {
            let mut st = self.st();
            if let Some(i) = st.busy.iter().position(|c| *c == cpu) {
                st.busy.remove(i);
            }
        }
        check!(r.is_ok(), "handle_irq({irq:?}) on {cpu:?}: {r:?}");
        // Waiters of lines no longer in progress get the lock now.
        loop {
            let next = {
                let mut st = self.st();
                let ready = st.waiting.iter().position(|&(l, _)| {
                    let irq = st.lines[l].irq;
                    self.core
                        .snapshot(irq)
                        .is_ok_and(|s| !s.line.contains(LineState::IN_PROGRESS))
                });
                ready.map(|i| st.waiting.remove(i))
            };
            match next {
                Some((l, c)) => self.arrive(l, c),
                None => break,
            }
        }
    }

    fn replays(&self, n: u8) {
        for _ in 0..64 {
            let mut q = self.core.platform().take_resends();
            for c in &self.chips {
                q.extend(c.take_retriggered());
            }
            if q.is_empty() {
                return;
            }
            for irq in q {
                let line = self.st().lines.iter().position(|l| l.irq == irq);
                let (Some(line), Some(cpu)) = (line, self.free_cpu(n)) else {
                    // No free CPU: the replay stays queued.
                    self.core.platform().schedule_resend(irq);
                    return;
                };
                self.arrive(line, cpu);
            }
        }
        panic!("replays never stop");
    }

    fn exec(&self, op: Op, nested: bool) {
        if crate::trace_enabled() {
            eprintln!(
                "{}{op:?} (busy {:?})",
                if nested { "  nested " } else { "" },
                self.st().busy
            );
        }
        let core = &self.core;
        match op {
            Op::Complete => {}
            Op::Arrive { line, cpu } => {
                if let Some(cpu) = self.free_cpu(cpu) {
                    self.arrive(Self::line_of(line), cpu);
                }
            }
            Op::Disable { line, cpu } => {
                let Some(cpu) = self.free_cpu(cpu) else {
                    return;
                };
                let line = Self::line_of(line);
                let irq = self.st().lines[line].irq;
                // Waiting for the handlers from inside one would deadlock.
                let r = as_cpu(cpu, || {
                    if nested {
                        core.disable_irq_nosync(irq)
                    } else {
                        core.disable_irq(irq)
                    }
                });
                check!(r.is_ok(), "disable {irq:?}: {r:?}");
                self.st().lines[line].depth += 1;
            }
            Op::Enable { line, cpu } => {
                let Some(cpu) = self.free_cpu(cpu) else {
                    return;
                };
                let line = Self::line_of(line);
                let irq = self.st().lines[line].irq;
                let r = as_cpu(cpu, || core.enable_irq(irq));
                let mut st = self.st();
                let l = &mut st.lines[line];
                if l.depth == 0 {
                    check!(
                        r == Err(IrqError::UnbalancedEnable(irq)),
                        "unbalanced enable {irq:?}: {r:?}"
                    );
                } else {
                    check!(r.is_ok(), "enable {irq:?}: {r:?}");
                    l.depth -= 1;
                }
            }
            Op::SetAffinity { line, cpu, mask } => {
                let Some(cpu) = self.free_cpu(cpu) else {
                    return;
                };
                let line = Self::line_of(line);
                let irq = self.st().lines[line].irq;
                let mask = mask_from_bits(mask);
                let r = as_cpu(cpu, || core.set_affinity(irq, &mask));
                if mask.is_empty() || !mask.is_subset_of(&CpuMask::first_n(NR_CPUS as usize)) {
                    check!(
                        r == Err(IrqError::InvalidMask),
                        "set_affinity {irq:?} {mask:?}: {r:?}"
                    );
                } else {
                    check!(r.is_ok(), "set_affinity {irq:?} {mask:?}: {r:?}");
                    self.st().lines[line].last_mask = Some(mask);
                }
            }
            Op::ChipBusy { chip, busy } => self.chips[usize::from(chip)].set_busy(busy),
            Op::Replays { cpu } => self.replays(cpu),
        }
    }

    fn quiesce_and_check(&self) {
        set_cpu(CpuId::BOOT);
        for c in &self.chips {
            c.set_busy(false);
        }
        for line in 0..NR_LINES {
            let depth = self.st().lines[line].depth;
            for _ in 0..depth {
                self.exec(
                    Op::Enable {
                        line: line as u8,
                        cpu: 0,
                    },
                    false,
                );
            }
        }
        self.replays(0);
        // One more arrival each, so that deferred moves reach their safe point.
        for line in 0..NR_LINES {
            self.arrive(line, CpuId::BOOT);
        }
        self.replays(0);
        let st = self.st();
        check!(
            st.busy.is_empty() && st.waiting.is_empty(),
            "CPUs still busy at the end"
        );
        for (i, l) in st.lines.iter().enumerate() {
            check!(l.running == 0, "line {i}: handler still running at the end");
            check!(
                !l.owed,
                "line {i} ({:?}): an arrival was never delivered to the handlers",
                l.cfg
            );
            let chip = &self.chips[usize::from(l.cfg.strict_chip)];
            let hw = chip.line(u64::from(l.irq.0));
            check!(
                !hw.masked,
                "line {i} ({:?}): enabled but left masked at the chip",
                l.cfg
            );
            if let Some(m) = l.last_mask {
                let a = self.core.affinity(l.irq);
                check!(
                    a == Ok(m),
                    "line {i} ({:?}): affinity {a:?}, last requested {m:?}",
                    l.cfg
                );
                check!(
                    hw.target.is_some_and(|t| m.contains(t)),
                    "line {i} ({:?}): chip targets {:?}, last requested {m:?}",
                    l.cfg,
                    hw.target
                );
            }
        }
    }

    fn teardown(&self) {
        let lines: Vec<(IrqNumber, usize)> = self
            .st()
            .lines
            .iter()
            .map(|l| (l.irq, l.handlers.len()))
            .collect();
        for (irq, n) in lines {
            for dev in 0..n {
                let r = self.core.free_irq(irq, DevId(dev));
                check!(r.is_ok(), "free_irq({irq:?}, {dev}): {r:?}");
            }
            let r = self.core.free_descs(irq, 1);
            check!(r.is_ok(), "free_descs({irq:?}): {r:?}");
        }
        for l in &self.st().lines {
            for h in &l.handlers {
                check!(
                    Arc::strong_count(h) == 1,
                    "handler of {:?} still referenced after free_irq",
                    l.irq
                );
            }
        }
        check!(
            self.core.nr_descs() == 0,
            "{} descriptors leaked",
            self.core.nr_descs()
        );
    }
}

fn handler(flow: Weak<Flow>, line: usize, idx: usize) -> Arc<dyn IrqHandler> {
    Arc::new(move |_irq: IrqNumber| {
        if let Some(f) = flow.upgrade() {
            f.on_handler(line, idx);
        }
        IrqReturn::HANDLED
    })
}

/// The `flow_handlers` fuzz target.
pub fn flow_handlers(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(cfgs) = <[LineCfg; NR_LINES]>::arbitrary(&mut u) else {
        return;
    };
    let mut ops = Vec::new();
    while !u.is_empty() && ops.len() < MAX_OPS {
        match Op::arbitrary(&mut u) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    run(cfgs, ops);
}

fn run(cfgs: [LineCfg; NR_LINES], ops: Vec<Op>) {
    set_cpu(CpuId::BOOT);
    let core = IrqCore::with_config(
        FuzzPlatform::default(),
        CoreConfig {
            capacity: 64,
            nr_cpus: NR_CPUS,
        },
    );
    for c in 0..NR_CPUS {
        core.set_cpu_online(CpuId::new(c).unwrap(), true)
            .expect("online");
    }
    let flow = Arc::new(Flow {
        core,
        chips: [
            Arc::new(ModelChip::new("lazy", false, false, ChipFlags::empty())),
            Arc::new(ModelChip::new("strict", true, true, ChipFlags::empty())),
        ],
        st: Mutex::new(State {
            ops: Vec::new(),
            pos: 0,
            lines: Vec::new(),
            busy: Vec::new(),
            waiting: Vec::new(),
        }),
    });
    let core = &flow.core;
    for (i, cfg) in cfgs.iter().enumerate() {
        let irq = core.alloc_descs(IrqNumber(1), 1).expect("alloc");
        let chip: Arc<dyn irqcore::IrqChip> = flow.chips[usize::from(cfg.strict_chip)].clone();
        let kind = match cfg.flow {
            LineFlow::Edge => FlowKind::Edge,
            LineFlow::FastEoi => FlowKind::FastEoi,
            LineFlow::Level => FlowKind::Level,
        };
        core.set_chip(
            irq,
            vec![ChipLevel::new(chip, HwIrq(u64::from(irq.0)))],
            kind,
        )
        .expect("set_chip");
        let mut set = LineState::empty();
        if cfg.resend_in_progress {
            set |= LineState::RESEND_WHEN_IN_PROGRESS;
        }
        if cfg.move_deferred {
            set |= LineState::MOVE_DEFERRED;
        }
        core.set_irq_settings(irq, set, LineState::empty())
            .expect("settings");
        let n = if cfg.shared { 2 } else { 1 };
        let handlers: Vec<Arc<dyn IrqHandler>> = (0..n)
            .map(|h| handler(Arc::downgrade(&flow), i, h))
            .collect();
        flow.st().lines.push(Line {
            cfg: *cfg,
            irq,
            depth: 0,
            owed: false,
            running: 0,
            last_mask: None,
            counters: (0..n).map(|_| Arc::new(AtomicU64::new(0))).collect(),
            handlers: handlers.clone(),
        });
        for (dev, h) in handlers.into_iter().enumerate() {
            let mut req = IrqRequest::new("fuzz", h).dev_id(DevId(dev));
            if cfg.shared {
                req = req.flags(RequestFlags::SHARED);
            }
            core.request_irq_raw(irq, req).expect("request");
        }
    }
    flow.st().ops = ops;
    while let Some(op) = flow.next_op() {
        flow.exec(op, false);
    }
    flow.quiesce_and_check();
    flow.teardown();
    set_cpu(CpuId::BOOT);
}

#[cfg(test)]
mod tests {
    use super::*;

    const EDGE: LineCfg = LineCfg {
        flow: LineFlow::Edge,
        resend_in_progress: false,
        move_deferred: false,
        strict_chip: false,
        shared: false,
    };

    /// The harness itself: while CPU 0 runs line 0's handler, line 0 is
    /// moved to CPU 2 and arrives there (the new target waits, delivered
    /// after CPU 0's flow returns), and arrives on CPU 1 (PENDING, run
    /// again by CPU 0). Nothing may be lost or run concurrently.
    #[test]
    fn nested_arrivals_and_the_migration_wait_are_played() {
        run(
            [
                EDGE,
                LineCfg {
                    flow: LineFlow::FastEoi,
                    resend_in_progress: true,
                    ..EDGE
                },
                EDGE,
            ],
            vec![
                Op::Arrive { line: 0, cpu: 0 },
                Op::SetAffinity {
                    line: 0,
                    cpu: 0,
                    mask: 0b100,
                },
                Op::Arrive { line: 0, cpu: 1 },
                Op::Arrive { line: 1, cpu: 0 },
                Op::Arrive { line: 1, cpu: 0 },
                Op::Complete,
                Op::Complete,
                Op::Arrive { line: 0, cpu: 2 },
                Op::Complete,
                Op::Replays { cpu: 0 },
            ],
        );
    }
}
