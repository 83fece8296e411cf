//! The interrupt descriptor.
//!
//! Three separate state words, as in Linux, because mixing them is where
//! flow-handler bugs come from:
//! - [`LineState`] (field `line`): what the line is and is doing (trigger,
//!   masked, disabled, in progress, per-CPU, managed, move pending,
//!   started) and its settings;
//! - [`DeliveryFlags`] (field `delivery`): the core's bookkeeping of event
//!   delivery (an event pending or being replayed, a software resend
//!   queued, oneshot delivery, the spurious detector's verdict);
//! - the disable depth, the actions, the affinity masks and the counters.
//!
//! Everything mutable sits behind the descriptor lock except the per-CPU
//! counters, which only their own CPU writes.

use crate::action::{ActionList, DevId};
use crate::chip::{ChipFlags, ChipLevel, IrqData, TriggerType};
use crate::cpumask::CpuMask;
use crate::flow::FlowKind;
use crate::ids::{CpuId, IrqNumber};
use crate::sync::{AtomicU8, AtomicU32, Ordering};
use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use bitflags::bitflags;

/// Maximum depth of a chip hierarchy (levels per irq).
pub const MAX_LEVELS: usize = 4;

bitflags! {
    /// What the line is and is doing, and its settings (Linux's IRQD_*
    /// bits): the `line` word of a descriptor.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
    pub struct LineState: u32 {
        /// The driver disabled the line (logically off).
        const DISABLED = 1 << 0;
        /// The chip is masked (software cache of the hardware state).
        const MASKED = 1 << 1;
        /// A CPU is running the handlers right now (reported in snapshots;
        /// the core keeps it in the descriptor's `run` word, outside the
        /// lock, see `IrqDesc::run`).
        const IN_PROGRESS = 1 << 2;
        /// The line was started (first handler installed).
        const STARTED = 1 << 3;
        /// Per-CPU interrupt (percpu / percpu_devid flows).
        const PER_CPU = 1 << 4;
        /// Per-CPU interrupt with per-CPU enable state (PPIs, LAPIC timer).
        const PER_CPU_DEVID = 1 << 5;
        /// Affinity is managed by the kernel (spread over CPUs, shut down
        /// when no CPU of its mask is online).
        const AFFINITY_MANAGED = 1 << 6;
        /// A deferred affinity change waits for a safe point.
        const MOVE_PENDING = 1 << 7;
        /// Level-triggered.
        const LEVEL = 1 << 8;
        /// Managed irq shut down because no CPU of its mask is online.
        const MANAGED_SHUTDOWN = 1 << 9;
        /// Do not start the line when a handler is requested.
        const NO_AUTOEN = 1 << 10;
        /// Mask at once on disable instead of lazily.
        const DISABLE_UNLAZY = 1 << 11;
        /// Fasteoi: remember an arrival while in progress elsewhere and
        /// resend it (MSI/LPI after a move).
        const RESEND_WHEN_IN_PROGRESS = 1 << 12;
        /// Cannot be requested (chained parent lines).
        const NO_REQUEST = 1 << 13;
        /// Affinity can only be changed from the interrupt path (IOAPIC
        /// without remapping): changes are always deferred to the next
        /// arrival.
        const MOVE_DEFERRED = 1 << 14;
    }
}

bitflags! {
    /// The core's bookkeeping of event delivery on the line (Linux's IRQS_*
    /// bits): the `delivery` word of a descriptor.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
    pub struct DeliveryFlags: u32 {
        /// An event arrived that must be (re)delivered.
        const PENDING = 1 << 0;
        /// A resend was issued and has not been consumed by the flow yet.
        const REPLAY = 1 << 1;
        /// Oneshot: keep the line masked until the threads finished.
        const ONESHOT = 1 << 2;
        /// Disabled by the spurious-interrupt detector.
        const SPURIOUS_DISABLED = 1 << 3;
        /// A software resend is queued and has not run (see
        /// [`crate::resend`]); cleared by whoever runs it, or by shutdown.
        const SW_RESEND = 1 << 4;
        /// The spurious detector judges threaded actions by their threads'
        /// results, one interrupt late (Linux's deferred detection): armed
        /// on the first interrupt that only woke threads.
        const SPURIOUS_DEFERRED = 1 << 5;
        /// A lock holder changed the descriptor while a run went on, on a
        /// platform whose runs end with a plain store
        /// ([`Platform::KICK_CPU`](crate::Platform::KICK_CPU)): the run may
        /// have ended without seeing it, so its after-work is queued in the
        /// resend queue (see [`crate::resend`]). Cleared by whoever does
        /// that work: a run that ends under the lock, a run that starts
        /// (it sees the change itself), or the drain.
        const RECHECK = 1 << 6;
    }
}

/// What a dispatcher reads without the descriptor lock: the chip stack and
/// the action list as a lock holder last set them. Published in
/// [`IrqDesc::view`] after every change of either, never changed in place,
/// and dropped only after a grace period
/// ([`IrqCore::retire`](crate::IrqCore)), like Linux's RCU-protected action
/// list. The per-CPU flows run from it and take no lock.
pub(crate) struct View {
    pub(crate) levels: Arc<[ChipLevel]>,
    pub(crate) actions: ActionList,
    /// Whether the flows ack the outermost chip: there is one, without
    /// [`ChipFlags::NO_ACK`]. Decided when the view is published, so the
    /// per-CPU flows test one flag per interrupt.
    pub(crate) ack: bool,
    /// Whether the flows EOI the outermost chip: there is one, without
    /// [`ChipFlags::NO_EOI`].
    pub(crate) eoi: bool,
}

/// Which of a descriptor's CPU masks ([`DescMasks`]).
#[derive(Clone, Copy)]
pub(crate) enum MaskKind {
    /// The requested affinity.
    Affinity = 0,
    /// The CPUs the hardware really targets.
    Effective = 1,
    /// A deferred affinity change waiting for `MOVE_PENDING`.
    Pending = 2,
    /// The CPUs on which a per-CPU irq is enabled.
    PercpuEnabled = 3,
}

/// The four CPU masks of a descriptor. A core with at most 64 CPUs keeps
/// each in one word: CPU ids from 64 up do not exist on it (every entry
/// point refuses a CPU at or above `nr_cpus`), so they are not stored. A
/// larger core keeps them in full, in a box allocated with the descriptor
/// (and counted by `bytes_per_descriptor`). Either way no mask operation
/// allocates.
pub(crate) struct DescMasks {
    words: [u64; 4],
    wide: Option<Box<[CpuMask; 4]>>,
}

impl DescMasks {
    fn new(nr_cpus: usize) -> Self {
        Self {
            words: [0; 4],
            wide: (nr_cpus > 64).then(|| Box::new([CpuMask::new(); 4])),
        }
    }

    /// Mask `k`.
    #[inline]
    pub(crate) fn get(&self, k: MaskKind) -> CpuMask {
        match &self.wide {
            Some(w) => w[k as usize],
            None => CpuMask::from_word0(self.words[k as usize]),
        }
    }

    /// Sets mask `k`.
    #[inline]
    pub(crate) fn set(&mut self, k: MaskKind, m: CpuMask) {
        match &mut self.wide {
            Some(w) => w[k as usize] = m,
            None => self.words[k as usize] = m.word0(),
        }
    }

    /// Changes mask `k` in place.
    pub(crate) fn update(&mut self, k: MaskKind, f: impl FnOnce(&mut CpuMask)) {
        let mut m = self.get(k);
        f(&mut m);
        self.set(k, m);
    }

    /// Bytes kept outside the descriptor.
    pub(crate) fn heap_bytes(nr_cpus: usize) -> usize {
        if nr_cpus > 64 {
            core::mem::size_of::<[CpuMask; 4]>()
        } else {
            0
        }
    }
}

/// Mutable descriptor state, protected by the descriptor lock.
///
/// The fields the dispatcher reads on every interrupt come first: with the
/// lock word in front of them they fill the descriptor's first cache line
/// (see [`IrqDesc`]); the rest is read only on slower paths.
#[repr(C)]
pub(crate) struct DescInner {
    // --- hot: every interrupt ---
    pub(crate) line: LineState,
    pub(crate) delivery: DeliveryFlags,
    /// The outermost chip's [`ChipFlags`], read when the chip is set (the
    /// flows consult them on every interrupt).
    pub(crate) chip_flags: ChipFlags,
    pub(crate) flow: FlowKind,
    pub(crate) trigger: TriggerType,
    /// The chip stack, outermost first (shared with the published
    /// [`View`]).
    pub(crate) levels: Arc<[ChipLevel]>,
    pub(crate) actions: ActionList,
    // --- cold ---
    pub(crate) depth: u32,
    /// CPU running the handlers while `IN_PROGRESS` is set.
    pub(crate) in_progress_cpu: CpuId,
    /// Bitmask of oneshot threads that have not finished yet.
    pub(crate) threads_oneshot: u64,
    /// Affinity, effective affinity, pending move, per-CPU enable.
    pub(crate) masks: DescMasks,
    pub(crate) irq_count: u32,
    pub(crate) irqs_unhandled: u32,
    /// `IrqDesc::threads_handled` at the last interrupt judged by its
    /// threads (deferred spurious detection).
    pub(crate) threads_handled_last: u32,
    /// [`Platform::now_ns`](crate::Platform::now_ns) at the last unhandled
    /// interrupt.
    pub(crate) last_unhandled_ns: Option<u64>,
    pub(crate) tot_count: u64,
}

impl DescInner {
    pub(crate) fn new(nr_cpus: usize) -> Self {
        Self {
            line: LineState::DISABLED | LineState::MASKED,
            delivery: DeliveryFlags::empty(),
            chip_flags: ChipFlags::empty(),
            flow: FlowKind::Bad,
            trigger: TriggerType::None,
            levels: Arc::from([]),
            actions: ActionList::empty(),
            depth: 1,
            in_progress_cpu: CpuId::BOOT,
            threads_oneshot: 0,
            masks: DescMasks::new(nr_cpus),
            irq_count: 0,
            irqs_unhandled: 0,
            threads_handled_last: 0,
            last_unhandled_ns: None,
            tot_count: 0,
        }
    }

    /// The requested affinity.
    #[inline]
    pub(crate) fn affinity(&self) -> CpuMask {
        self.masks.get(MaskKind::Affinity)
    }

    /// The affinity the hardware really targets.
    #[inline]
    pub(crate) fn effective(&self) -> CpuMask {
        self.masks.get(MaskKind::Effective)
    }

    /// The target of a deferred move.
    #[inline]
    pub(crate) fn pending_mask(&self) -> CpuMask {
        self.masks.get(MaskKind::Pending)
    }

    /// The CPUs on which a per-CPU irq is enabled.
    #[inline]
    pub(crate) fn percpu_enabled(&self) -> CpuMask {
        self.masks.get(MaskKind::PercpuEnabled)
    }

    /// Chip view of the outermost level (`None` without a chip).
    #[inline]
    pub(crate) fn data(&self, irq: IrqNumber) -> Option<IrqData<'_>> {
        if self.levels.is_empty() {
            None
        } else {
            Some(IrqData::new(irq, &self.levels))
        }
    }
}

/// An interrupt descriptor: one per allocated irq number.
///
/// Laid out for the dispatcher: its first cache line holds everything an
/// interrupt reads or writes on the common path (the run word, the flow,
/// the lock, the line state, the chip flags, the chip stack and action
/// list pointers); the rest is read on slower paths. The layout is pinned
/// by a unit test (`hot_part_is_one_cache_line`).
#[repr(C, align(64))]
pub struct IrqDesc {
    /// Who runs the handlers: [`RUN_IN_PROGRESS`] while a CPU runs them
    /// with the lock dropped (Linux's `IRQD_IRQ_INPROGRESS`, kept out of
    /// the locked state so that the running CPU can clear it without the
    /// lock), and [`RUN_ATTN`] when something changed under the lock
    /// meanwhile. The protocol (model: `loom-models/tests/loom_edge_handoff.rs`):
    ///
    /// - only a holder of the descriptor lock sets `RUN_IN_PROGRESS`
    ///   (a plain store of `RUN_IN_PROGRESS`, which also clears a stale
    ///   `RUN_ATTN`), and only while it is clear;
    /// - the running CPU leaves with one compare-exchange
    ///   `RUN_IN_PROGRESS -> 0` and no lock when the flow has nothing left
    ///   to do under the lock; if `RUN_ATTN` is set the exchange fails and
    ///   it takes the lock and clears both bits there;
    /// - a lock holder that decides on "in progress elsewhere" (an arrival
    ///   that leaves PENDING for the running CPU, a folded resend) or that
    ///   changed the descriptor (every process-context lock, on release)
    ///   sets `RUN_ATTN` with a read-modify-write and uses the value it
    ///   read: if `RUN_IN_PROGRESS` was still set, the running CPU will see
    ///   `RUN_ATTN` and take the lock; if it was clear, the run has ended
    ///   and nobody waits for the change.
    ///
    /// On a platform that can kick another CPU
    /// ([`Platform::KICK_CPU`](crate::Platform::KICK_CPU)) the lock-free
    /// end is a load (`RUN_ATTN` set: take the lock as above) and a plain
    /// store of 0, which a `RUN_ATTN` set between the two overwrites. So a
    /// lock holder on another CPU that found `RUN_IN_PROGRESS` also sets
    /// [`DeliveryFlags::RECHECK`], queues the irq in the resend queue and
    /// kicks the running CPU: the running CPU either saw `RUN_ATTN` (and
    /// did the work under the lock, clearing `RECHECK`) or drains the queue
    /// after its run, where its own store is visible to it, and does the
    /// work there (model: `loom_edge_handoff`'s kicked variants). The
    /// store-load fence the compare-exchange paid on every interrupt is
    /// paid only by the rare lock holder that meets a run.
    pub(crate) run: core::sync::atomic::AtomicU32,
    /// Copy of `inner.flow` readable without the lock: the dispatcher picks
    /// the flow before taking the lock. Written under the lock; a stale read
    /// is harmless because the flow can only change while no handler is
    /// installed (or between per-CPU-compatible flows).
    pub(crate) flow_hint: AtomicU8,
    /// Work a flow left for `handle_irq` to do after dropping the lock:
    /// inline thread functions
    /// ([`ThreadWake::RunInline`](crate::ThreadWake::RunInline)), a
    /// spurious-disable report (`flow::EXIT_*` bits).
    pub(crate) exit_work: core::sync::atomic::AtomicU8,
    /// The lock and the locked state, hot fields first.
    pub(crate) inner: spin::Mutex<DescInner>,
    /// The published [`View`] (from `Arc::into_raw`; null until a chip or
    /// an action is set). Swapped under the lock; the old one is retired
    /// after a grace period.
    pub(crate) view: core::sync::atomic::AtomicPtr<View>,
    pub(crate) irq: IrqNumber,
    /// Thread functions of this irq that returned "handled", for the
    /// deferred spurious detection (written by threads without the lock).
    pub(crate) threads_handled: AtomicU32,
    /// Per-CPU interrupt counts, in per-CPU rows of the store (so a CPU
    /// writes only its own cache lines). Only CPU `i` writes slot `i` (with
    /// its interrupts off), so a plain load/store suffices; readers may see
    /// a slightly old value.
    pub(crate) counts: crate::counts::CountSlots,
}

impl Drop for IrqDesc {
    fn drop(&mut self) {
        let p = *self.view.get_mut();
        if !p.is_null() {
            // SAFETY: `p` came from `Arc::into_raw` in `publish_view` and
            // this reference was never given back (swapped-out views are
            // returned as `Arc`s); a descriptor is dropped only after its
            // grace period, so no dispatcher still reads the view.
            drop(unsafe { Arc::from_raw(p) });
        }
    }
}

/// [`IrqDesc::run`]: a CPU runs the handlers with the lock dropped.
pub(crate) const RUN_IN_PROGRESS: u32 = 1 << 0;
/// [`IrqDesc::run`]: the running CPU must take the lock when it finishes.
pub(crate) const RUN_ATTN: u32 = 1 << 1;

impl IrqDesc {
    pub(crate) fn new(irq: IrqNumber, counts: crate::counts::CountSlots) -> Self {
        Self {
            irq,
            inner: spin::Mutex::new(DescInner::new(counts.nr_cpus())),
            counts,
            flow_hint: AtomicU8::new(FlowKind::Bad as u8),
            threads_handled: AtomicU32::new(0),
            exit_work: core::sync::atomic::AtomicU8::new(0),
            run: core::sync::atomic::AtomicU32::new(0),
            view: core::sync::atomic::AtomicPtr::new(core::ptr::null_mut()),
        }
    }

    /// With the lock held, after changing `g.levels` or `g.actions`:
    /// publishes them for lock-free readers and returns the view they
    /// replace, which the caller retires after a grace period.
    pub(crate) fn publish_view(&self, g: &DescInner) -> Option<Arc<View>> {
        let has_chip = !g.levels.is_empty();
        let new = Arc::into_raw(Arc::new(View {
            levels: g.levels.clone(),
            actions: g.actions.clone(),
            ack: has_chip && !g.chip_flags.contains(ChipFlags::NO_ACK),
            eoi: has_chip && !g.chip_flags.contains(ChipFlags::NO_EOI),
        }));
        let old = self
            .view
            .swap(new.cast_mut(), core::sync::atomic::Ordering::AcqRel);
        // SAFETY: a non-null `old` came from `Arc::into_raw` above, in an
        // earlier call, and was swapped out just now by us alone: we take
        // back the one reference it carried. Making an `Arc` claims no
        // unique access, so readers that still hold `&View` are unaffected.
        (!old.is_null()).then(|| unsafe { Arc::from_raw(old) })
    }

    /// Whether a CPU runs the handlers right now (`IN_PROGRESS`). Acquire:
    /// a caller that sees the run ended also sees what the handlers did.
    #[inline]
    pub(crate) fn in_progress(&self) -> bool {
        self.run.load(core::sync::atomic::Ordering::Acquire) & RUN_IN_PROGRESS != 0
    }

    /// Ends a run without the lock (see [`IrqDesc::run`]): false if a lock
    /// holder flagged it (`RUN_ATTN`), and the caller must end it under
    /// the lock. A compare-exchange, or with
    /// [`Platform::KICK_CPU`](crate::Platform::KICK_CPU) a load and a
    /// plain store (no locked instruction).
    #[inline(always)]
    pub(crate) fn end_run_unlocked<P: crate::Platform>(&self) -> bool {
        use core::sync::atomic::Ordering::{Relaxed, Release};
        if P::KICK_CPU {
            if self.run.load(Relaxed) != RUN_IN_PROGRESS {
                return false;
            }
            // Release: whoever sees the run over sees what the handlers
            // did. A RUN_ATTN set since the load is lost here, and made
            // good by its setter's kick (`IrqCore::kick_runner`).
            self.run.store(0, Release);
            true
        } else {
            self.run
                .compare_exchange(RUN_IN_PROGRESS, 0, Release, Relaxed)
                .is_ok()
        }
    }

    /// With the descriptor lock held: whether a CPU runs the handlers, and
    /// if so, tells it to take the lock when it finishes (see
    /// [`IrqDesc::run`]). No read-modify-write when nothing runs (only a
    /// lock holder can start a run, so "not running" stays true while the
    /// caller holds the lock).
    #[inline]
    pub(crate) fn claim_attention(&self) -> bool {
        use core::sync::atomic::Ordering::{AcqRel, Acquire};
        if self.run.load(Acquire) & RUN_IN_PROGRESS == 0 {
            return false;
        }
        self.run.fetch_or(RUN_ATTN, AcqRel) & RUN_IN_PROGRESS != 0
    }

    /// The irq number of this descriptor.
    pub fn irq(&self) -> IrqNumber {
        self.irq
    }

    pub(crate) fn set_flow(&self, g: &mut DescInner, flow: FlowKind) {
        g.flow = flow;
        self.flow_hint.store(flow as u8, Ordering::Release);
    }

    #[inline]
    pub(crate) fn flow(&self) -> FlowKind {
        FlowKind::from_u8(self.flow_hint.load(Ordering::Acquire))
    }

    /// Counts one interrupt on `cpu`.
    #[inline]
    pub(crate) fn count_on(&self, cpu: CpuId) {
        if let Some(c) = self.counts.get(cpu.index()) {
            c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
        }
    }

    /// Interrupts handled on `cpu` so far.
    pub fn count(&self, cpu: CpuId) -> u64 {
        self.counts
            .get(cpu.index())
            .map(|c| c.load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    pub(crate) fn snapshot(&self) -> DescSnapshot {
        let g = self.inner.lock();
        DescSnapshot {
            irq: self.irq,
            flow: g.flow,
            line: if self.in_progress() {
                g.line | LineState::IN_PROGRESS
            } else {
                g.line
            },
            delivery: g.delivery,
            trigger: match g.trigger {
                TriggerType::None => g
                    .data(self.irq)
                    .and_then(|d| d.chip().map(|c| c.read_trigger(&d)))
                    .unwrap_or(TriggerType::None),
                t => t,
            },
            depth: g.depth,
            handlers: g.actions.iter().map(|a| (a.name, a.dev_id)).collect(),
            affinity: g.affinity(),
            effective_affinity: g.effective(),
            percpu_enabled: g.percpu_enabled(),
            chips: g
                .levels
                .iter()
                .map(|l| (l.chip.clone(), l.hwirq))
                .map(|(c, h)| (ChipName(c), h))
                .collect(),
            counts: self
                .counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
        }
    }
}

/// A chip identity inside a snapshot (compared by pointer, shown by name).
#[derive(Clone)]
pub struct ChipName(Arc<dyn crate::chip::IrqChip>);

impl PartialEq for ChipName {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
impl Eq for ChipName {}
impl core::fmt::Debug for ChipName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.0.name())
    }
}

/// A consistent copy of a descriptor's observable state, for diagnostics and
/// for tests that check an operation left the descriptor unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescSnapshot {
    /// The irq number.
    pub irq: IrqNumber,
    /// Flow handler.
    pub flow: FlowKind,
    /// What the line is and is doing ([`LineState`]).
    pub line: LineState,
    /// Delivery bookkeeping ([`DeliveryFlags`]).
    pub delivery: DeliveryFlags,
    /// Trigger type: the one the core programmed (`set_trigger`, a
    /// request's or a domain mapping's trigger) or, if it never did, what
    /// the outermost chip reads back from the hardware
    /// ([`IrqChip::read_trigger`](crate::IrqChip::read_trigger));
    /// [`TriggerType::None`] if neither knows.
    pub trigger: TriggerType,
    /// Disable depth.
    pub depth: u32,
    /// Installed handlers: (name, device id), in call order.
    pub handlers: Vec<(&'static str, DevId)>,
    /// Requested affinity.
    pub affinity: CpuMask,
    /// Affinity the hardware really targets.
    pub effective_affinity: CpuMask,
    /// CPUs on which a per-CPU irq is enabled.
    pub percpu_enabled: CpuMask,
    /// The chip stack, outermost first.
    pub chips: Vec<(ChipName, crate::ids::HwIrq)>,
    /// Per-CPU counts.
    pub counts: Vec<u64>,
}
#[cfg(test)]
mod tests {
    use super::*;

    /// The dispatcher's fields share the first cache line of a descriptor
    /// (64-byte aligned), and the whole descriptor is three lines.
    #[test]
    fn hot_part_is_one_cache_line() {
        assert_eq!(core::mem::align_of::<IrqDesc>(), 64);
        assert!(core::mem::size_of::<IrqDesc>() <= 192);
        let (rows, counts) = crate::counts::CountSlots::detached_for_test();
        let d = IrqDesc::new(IrqNumber(7), counts);
        let base = &d as *const IrqDesc as usize;
        let in_line0 = |p: usize, len: usize| p >= base && p + len <= base + 64;
        assert!(in_line0(&d.run as *const _ as usize, 4));
        assert!(in_line0(&d.flow_hint as *const _ as usize, 1));
        assert!(in_line0(&d.exit_work as *const _ as usize, 1));
        // The lock word: everything of the mutex outside its data.
        let m = &d.inner as *const _ as usize;
        let g = d.inner.lock();
        let data = &*g as *const DescInner as usize;
        assert!(in_line0(m, data - m), "lock word in line 0");
        assert!(in_line0(&g.line as *const _ as usize, 4));
        assert!(in_line0(&g.delivery as *const _ as usize, 4));
        assert!(in_line0(&g.chip_flags as *const _ as usize, 4));
        assert!(in_line0(&g.flow as *const _ as usize, 1));
        assert!(in_line0(&g.levels as *const _ as usize, 16));
        assert!(in_line0(&g.actions as *const _ as usize, 16));
        drop(g);
        drop(d);
        drop(rows);
    }
}
