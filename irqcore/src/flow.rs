//! Flow handlers: how an interrupt travels from the chip to the handlers.
//!
//! The semantics are Linux's (see the reference sheet, §2), in our words:
//!
//! - **edge**: ack first so a new edge can latch while the handlers run; an
//!   edge that arrives while the line is being handled on another CPU (or is
//!   disabled) is recorded as PENDING and the line is mask-acked; the CPU
//!   running the handlers sees PENDING, unmasks and runs them again. No edge
//!   is lost.
//! - **level**: mask-ack first; if the line is busy elsewhere or disabled,
//!   just return: the source is still asserted and fires again when the line
//!   is unmasked. For sources that are logically edges (Xen event channels)
//!   this *loses* events, which is why they must use the edge flow.
//! - **fasteoi**: controllers with an EOI (GIC, IOAPIC+LAPIC); mask only for
//!   oneshot; an arrival while busy elsewhere is remembered only with
//!   `RESEND_WHEN_IN_PROGRESS` (MSI/LPI after a move) and then resent.
//! - **percpu**, **percpu_devid**: no lock, no in-progress tracking: each CPU
//!   has its own instance of the interrupt.
//! - **simple**: no chip calls (demultiplexed children).
//! - **bad**: counted and reported, nothing else.
//!
//! Migration live-lock avoidance (Linux 6.17): an edge irq that has a single
//! target and arrives on that target while the *old* target still runs its
//! handlers waits for the old CPU to finish instead of masking and leaving
//! the old CPU to loop. Without it a high-rate device can keep the old CPU
//! looping and the new one masking forever.

use crate::action::IrqReturn;
use crate::chip::{ChipFlags, IrqData};
use crate::desc::{DeliveryFlags, DescInner, IrqDesc, LineState, RUN_IN_PROGRESS};
use crate::dispatch::EXIT_INLINE_THREADS;
use crate::ids::{CpuId, IrqNumber};
use crate::instance::IrqCore;
use crate::platform::{IrqEvent, Platform, ThreadWake};
use crate::section::IrqSection;
use crate::spurious::SPURIOUS_WINDOW;
use alloc::sync::Arc;
use core::sync::atomic::Ordering;
use spin::MutexGuard;

/// Line states that send an edge or fasteoi arrival to the general flow:
/// a disabled line (lazy disable: mark PENDING, mask), a per-CPU line
/// (flowed elsewhere) and a deferred move to apply first.
const FAST_PATH_REFUSED_STATES: LineState = LineState::DISABLED
    .union(LineState::PER_CPU)
    .union(LineState::MOVE_PENDING);

/// Delivery flags that send an edge arrival to the general flow: a
/// replay to finish, or a oneshot line whose threads hold it masked.
/// Also a change that a run may have ended without seeing
/// ([`DeliveryFlags::RECHECK`]): the general flow's run takes it over.
const EDGE_GENERAL_DELIVERY: DeliveryFlags = DeliveryFlags::PENDING
    .union(DeliveryFlags::ONESHOT)
    .union(DeliveryFlags::RECHECK);

/// Delivery flags that send a fasteoi arrival to the general flow: a
/// oneshot line, or a change a run may have ended without seeing.
const FASTEOI_GENERAL_DELIVERY: DeliveryFlags =
    DeliveryFlags::ONESHOT.union(DeliveryFlags::RECHECK);

/// Chips whose end of interrupt may come after the run ended, without the
/// descriptor lock: a per-CPU EOI (the GIC's) or none at all.
const EOI_WITHOUT_LOCK: ChipFlags = ChipFlags::EOI_PER_CPU.union(ChipFlags::NO_EOI);

/// What an arrival that is handled consumes: a queued replay and a
/// pending edge.
const REPLAY_AND_PENDING: DeliveryFlags = DeliveryFlags::REPLAY.union(DeliveryFlags::PENDING);

/// Which flow handler an irq uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FlowKind {
    /// Edge-triggered lines.
    Edge,
    /// Level-triggered lines.
    Level,
    /// Controllers with an end-of-interrupt (GIC SPIs, IOAPIC via LAPIC).
    FastEoi,
    /// Per-CPU lines (IPIs, Xen per-vCPU events).
    PerCpu,
    /// Per-CPU lines with per-CPU enable state (GIC PPIs, LAPIC timer).
    PerCpuDevId,
    /// No chip interaction (software or demultiplexed irqs).
    Simple,
    /// Not set up: count and report.
    Bad,
}

impl FlowKind {
    #[inline]
    pub(crate) const fn from_u8(v: u8) -> FlowKind {
        match v {
            0 => FlowKind::Edge,
            1 => FlowKind::Level,
            2 => FlowKind::FastEoi,
            3 => FlowKind::PerCpu,
            4 => FlowKind::PerCpuDevId,
            5 => FlowKind::Simple,
            _ => FlowKind::Bad,
        }
    }

    /// Name shown in the interrupt table.
    pub const fn name(self) -> &'static str {
        match self {
            FlowKind::Edge => "edge",
            FlowKind::Level => "level",
            FlowKind::FastEoi => "fasteoi",
            FlowKind::PerCpu => "percpu",
            FlowKind::PerCpuDevId => "percpu_devid",
            FlowKind::Simple => "simple",
            FlowKind::Bad => "bad",
        }
    }
}

type Guard<'a> = MutexGuard<'a, DescInner>;

/// How `handle_irq_event` may end a run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Exit {
    /// Without the lock when nothing needs it (edge, simple).
    Unlocked,
    /// Always under the lock: the flow has chip work after the run
    /// (level's unmask, oneshot's unmask, the EOI of a chip without
    /// [`ChipFlags::EOI_PER_CPU`]), which the chip contract puts under the
    /// descriptor lock.
    Locked,
}

impl<P: Platform> IrqCore<P> {
    /// The dispatcher's flow call: the common flows inline into
    /// `handle_irq` (one function, one prologue: their straight line is the
    /// common case and their other cases are out of line), the rest
    /// through [`Self::run_flow`].
    #[inline(always)]
    pub(crate) fn dispatch_flow(&self, desc: &IrqDesc, cpu: CpuId, sec: &IrqSection<'_>) {
        match desc.flow() {
            FlowKind::Edge => self.flow_edge(desc, cpu, sec),
            FlowKind::FastEoi => self.flow_fasteoi(desc, cpu, sec),
            FlowKind::Level => self.flow_level(desc, cpu, sec),
            FlowKind::PerCpu => self.flow_percpu(desc, cpu, false, sec),
            FlowKind::PerCpuDevId => self.flow_percpu(desc, cpu, true, sec),
            _ => self.run_flow(desc, cpu, sec),
        }
    }

    /// Runs the flow of `desc` (any flow; out of line).
    #[inline(never)]
    pub(crate) fn run_flow(&self, desc: &IrqDesc, cpu: CpuId, sec: &IrqSection<'_>) {
        match desc.flow() {
            FlowKind::Edge => self.flow_edge(desc, cpu, sec),
            FlowKind::Level => self.flow_level(desc, cpu, sec),
            FlowKind::FastEoi => self.flow_fasteoi(desc, cpu, sec),
            FlowKind::PerCpu => self.flow_percpu(desc, cpu, false, sec),
            FlowKind::PerCpuDevId => self.flow_percpu(desc, cpu, true, sec),
            FlowKind::Simple => self.flow_simple(desc, cpu, sec),
            FlowKind::Bad => {
                desc.count_on(cpu);
                // Complete it at the controller (a GIC would otherwise keep
                // the INTID active forever), then report.
                let g = desc.inner.lock();
                Self::ack(desc.irq, &g);
                Self::eoi(desc.irq, &g);
                drop(g);
                self.platform.report(IrqEvent::BadIrq(desc.irq));
            }
        }
    }

    /// May this CPU run the handlers now? Handles the in-progress-elsewhere
    /// case, including the edge live-lock wait. Returns the (possibly
    /// re-taken) guard and the answer.
    #[inline]
    fn may_run_here<'a>(
        &self,
        desc: &'a IrqDesc,
        g: Guard<'a>,
        cpu: CpuId,
        edge: bool,
    ) -> (Guard<'a>, bool) {
        // The common case, inline: no run going on (and none can start
        // while we hold the lock).
        if !desc.in_progress() {
            return (g, true);
        }
        self.may_run_here_busy(desc, g, cpu, edge)
    }

    /// [`Self::may_run_here`] when a run may be going on.
    #[inline(never)]
    fn may_run_here_busy<'a>(
        &self,
        desc: &'a IrqDesc,
        mut g: Guard<'a>,
        cpu: CpuId,
        edge: bool,
    ) -> (Guard<'a>, bool) {
        // Sets RUN_ATTN when a run is going on: every caller that is refused
        // here may leave something (PENDING) for the running CPU.
        if !desc.claim_attention() {
            return (g, true);
        }
        let single_target_here = g.effective().weight() == 1 && g.effective().first() == Some(cpu);
        if edge && single_target_here && g.in_progress_cpu != cpu {
            // The irq was just moved here while the old CPU still handles it:
            // wait for it rather than bouncing PENDING back and forth.
            while desc.in_progress() {
                drop(g);
                self.platform.cpu_relax();
                g = desc.inner.lock();
            }
            let ok = !g.line.contains(LineState::DISABLED) && !g.actions.is_empty();
            return (g, ok);
        }
        // Refused: an edge, or a fasteoi/simple line that resends what
        // arrives while busy, leaves PENDING for the run, which may end
        // without seeing it. Others leave nothing (a level run also
        // always ends under the lock).
        let leaves_pending = edge
            || (desc.flow() != FlowKind::Level
                && g.line.contains(LineState::RESEND_WHEN_IN_PROGRESS));
        if leaves_pending {
            self.kick_runner(desc, &mut g);
        }
        (g, false)
    }

    /// Are there handlers and is the line enabled? If not, records PENDING.
    fn can_handle_actions(g: &mut DescInner) -> bool {
        g.delivery.remove(DeliveryFlags::REPLAY);
        if g.actions.is_empty() || g.line.contains(LineState::DISABLED) {
            g.delivery.insert(DeliveryFlags::PENDING);
            return false;
        }
        true
    }

    pub(crate) fn mask(irq: IrqNumber, g: &mut DescInner) {
        if !g.line.contains(LineState::MASKED) {
            if let Some(d) = g.data(irq) {
                g.levels[0].chip.mask(&d);
            }
            g.line.insert(LineState::MASKED);
        }
    }

    #[inline]
    pub(crate) fn unmask(irq: IrqNumber, g: &mut DescInner) {
        if g.line.contains(LineState::MASKED) {
            if let Some(d) = g.data(irq) {
                g.levels[0].chip.unmask(&d);
            }
            g.line.remove(LineState::MASKED);
        }
    }

    fn mask_ack(irq: IrqNumber, g: &mut DescInner) {
        if let Some(d) = g.data(irq) {
            let chip = &g.levels[0].chip;
            if g.line.contains(LineState::MASKED) {
                chip.ack(&d);
            } else {
                chip.mask_ack(&d);
            }
        }
        g.line.insert(LineState::MASKED);
    }

    #[inline(always)]
    fn ack(irq: IrqNumber, g: &DescInner) {
        if g.chip_flags.contains(ChipFlags::NO_ACK) {
            return;
        }
        if let Some(d) = g.data(irq) {
            g.levels[0].chip.ack(&d);
        }
    }

    #[inline]
    pub(crate) fn eoi(irq: IrqNumber, g: &DescInner) {
        if g.chip_flags.contains(ChipFlags::NO_EOI) {
            return;
        }
        if let Some(d) = g.data(irq) {
            g.levels[0].chip.eoi(&d);
        }
    }

    /// The EOI of a chip with [`ChipFlags::EOI_PER_CPU`], after a run that
    /// ended without the lock: through the published chip stack (the one
    /// the lock holder last set, kept alive by the section).
    fn eoi_unlocked(irq: IrqNumber, sec: &IrqSection<'_>, desc: &IrqDesc) {
        if let Some(view) = sec.view(desc)
            && let Some(level) = view.levels.first()
        {
            level.chip.eoi(&IrqData::new(irq, &view.levels));
        }
    }

    fn cond_eoi(irq: IrqNumber, g: &DescInner) {
        let flags = g.chip_flags;
        if !flags.contains(ChipFlags::EOI_IF_HANDLED) {
            Self::eoi(irq, g);
        }
    }

    /// Runs the handlers with the lock dropped: clears PENDING, marks the
    /// run (`IrqDesc::run`), runs every action, wakes threads; then ends
    /// the run and feeds the spurious detector.
    ///
    /// With `exit` = [`Exit::Unlocked`] the run ends without the lock (one
    /// compare-exchange, `None` is returned) when nothing needs it: every
    /// action plainly handled the interrupt and no oneshot thread must be
    /// recorded, the spurious window does not end, no affinity change
    /// waits, and no lock holder flagged a change while the handlers ran
    /// (`RUN_ATTN`: an arrival left PENDING, the line was disabled, ...).
    /// Otherwise, and always with [`Exit::Locked`], it re-takes the lock,
    /// ends the run there, records woken oneshot threads and judges the
    /// result (`note_interrupt`), and returns the guard. A thread that
    /// finishes before the run ends waits for it before it finalises
    /// (`run_thread`), so the bookkeeping cannot race with it.
    #[inline(always)]
    fn handle_irq_event<'a>(
        &self,
        desc: &'a IrqDesc,
        mut g: Guard<'a>,
        cpu: CpuId,
        exit: Exit,
        sec: &IrqSection<'_>,
    ) -> Option<Guard<'a>> {
        // A change an earlier run may have missed (RECHECK) is seen by
        // this one, which starts after it.
        g.delivery
            .remove(DeliveryFlags::PENDING | DeliveryFlags::RECHECK);
        desc.run.store(RUN_IN_PROGRESS, Ordering::Relaxed);
        g.in_progress_cpu = cpu;
        let window_ends = Self::count_for_spurious(&mut g);
        let oneshot = g.delivery.contains(DeliveryFlags::ONESHOT);
        let may_skip_lock =
            exit == Exit::Unlocked && !window_ends && !g.line.contains(LineState::MOVE_PENDING);
        let actions = sec.actions(&g);
        drop(g);
        let (ret, woken_mask) = self.run_actions(desc, actions);
        if may_skip_lock
            && (woken_mask == 0 || !oneshot)
            && ret.handled()
            && ret != IrqReturn::WAKE_THREAD
            && desc.end_run_unlocked::<P>()
        {
            return None;
        }
        Some(self.end_run_locked(desc, ret, woken_mask))
    }

    /// Counts the interrupt and runs `actions`, the handlers in `g`, as
    /// [`Self::handle_irq_event`] does for a run that the caller found
    /// needs nothing under the lock but the run's own bookkeeping
    /// ([`Self::fast_path_actions`]): no PENDING (cleared by the caller),
    /// not oneshot, not per-CPU (so the spurious window counts), no
    /// deferred move. The same steps as the general function with those
    /// known; the run ends without the lock unless the window ends or a
    /// handler did not plainly handle it.
    #[inline(always)]
    fn handle_irq_event_fast<'a>(
        &self,
        desc: &'a IrqDesc,
        mut g: Guard<'a>,
        cpu: CpuId,
        actions: &[Arc<crate::action::Action>],
    ) -> Option<Guard<'a>> {
        g.tot_count += 1;
        desc.run.store(RUN_IN_PROGRESS, Ordering::Relaxed);
        g.in_progress_cpu = cpu;
        g.irq_count += 1;
        let window_ends = g.irq_count >= SPURIOUS_WINDOW;
        // Last before the unlock: the counter's store through a pointer
        // makes the compiler reload what it might alias.
        desc.count_on(cpu);
        drop(g);
        let (ret, woken_mask) = self.run_actions(desc, actions);
        if !window_ends
            && ret.handled()
            && ret != IrqReturn::WAKE_THREAD
            && desc.end_run_unlocked::<P>()
        {
            return None;
        }
        Some(self.end_run_locked_out_of_line(desc, ret, woken_mask))
    }

    /// [`Self::end_run_locked`] out of the fast paths' straight line.
    #[inline(never)]
    fn end_run_locked_out_of_line<'a>(
        &self,
        desc: &'a IrqDesc,
        ret: IrqReturn,
        woken_mask: u64,
    ) -> Guard<'a> {
        self.end_run_locked(desc, ret, woken_mask)
    }

    /// Ends a run under the lock: records the woken oneshot threads, ends
    /// the run and judges the result (`note_interrupt`); returns the guard.
    #[inline(always)]
    fn end_run_locked<'a>(&self, desc: &'a IrqDesc, ret: IrqReturn, woken_mask: u64) -> Guard<'a> {
        let mut g = desc.inner.lock();
        if woken_mask != 0 && g.delivery.contains(DeliveryFlags::ONESHOT) {
            g.threads_oneshot |= woken_mask;
        }
        // Ends the run and drops a RUN_ATTN: what it flagged is read below
        // and by the caller, under the lock, so a queued RECHECK for it
        // has nothing left to do.
        desc.run.store(0, Ordering::Release);
        g.delivery.remove(DeliveryFlags::RECHECK);
        self.note_interrupt(desc, &mut g, ret);
        g
    }

    /// The handlers of a descriptor whose locked state `g` allows the
    /// flows' fast paths (`None` if it does not): no run going on (none can
    /// start while the caller holds the lock), the line enabled, not
    /// per-CPU, no deferred move waiting, none of `delivery` (the flow's
    /// own exclusions: PENDING for edge, ONESHOT for both), and handlers
    /// installed.
    #[inline(always)]
    fn fast_path_actions<'s>(
        desc: &IrqDesc,
        g: &DescInner,
        delivery: DeliveryFlags,
        sec: &'s IrqSection<'_>,
    ) -> Option<&'s [Arc<crate::action::Action>]> {
        if desc.in_progress()
            || g.line.intersects(FAST_PATH_REFUSED_STATES)
            || g.delivery.intersects(delivery)
        {
            return None;
        }
        let actions = sec.actions(g);
        (!actions.is_empty()).then_some(actions)
    }

    /// Counts one run of the handlers for the spurious detector (Linux's
    /// `irq_count`), with the lock held before the run; returns whether it
    /// closes a window, which `note_interrupt` then judges under the lock.
    /// Counting before the run keeps the counter under the lock while the
    /// common case (handled, window open) needs no lock after it.
    fn count_for_spurious(g: &mut DescInner) -> bool {
        if g.line.contains(LineState::PER_CPU) {
            return false;
        }
        g.irq_count += 1;
        g.irq_count >= SPURIOUS_WINDOW
    }

    /// Calls every handler and wakes the threads that asked for it; returns
    /// the combined result and the woken threads' oneshot mask.
    #[inline(always)]
    fn run_actions(
        &self,
        desc: &IrqDesc,
        actions: &[Arc<crate::action::Action>],
    ) -> (IrqReturn, u64) {
        let mut ret = IrqReturn::NONE;
        let mut mask = 0u64;
        for a in actions.iter() {
            let r = a.handler.handle(desc.irq);
            if r.contains(IrqReturn::WAKE_THREAD) && a.threaded() {
                mask |= self.wake(desc, a);
            }
            ret = ret | r;
        }
        (ret, mask)
    }

    /// Wakes the thread of `a` (once per run of the thread function);
    /// returns its oneshot bit if this call woke it.
    fn wake(&self, desc: &IrqDesc, a: &crate::action::Action) -> u64 {
        if !a.mark_run_thread() {
            return 0;
        }
        a.threads_pending
            .fetch_add(1, crate::sync::Ordering::AcqRel);
        if self.platform.wake_thread(desc.irq, a.id) == ThreadWake::RunInline {
            desc.exit_work
                .fetch_or(EXIT_INLINE_THREADS, Ordering::AcqRel);
        }
        a.thread_mask
    }

    /// The edge flow. Its fast path is [`Self::flow_edge_slow`] with what
    /// [`Self::fast_path_actions`] established (may run here, can handle,
    /// no PENDING so nothing to unmask for): ack, count, run.
    #[inline(always)]
    fn flow_edge(&self, desc: &IrqDesc, cpu: CpuId, sec: &IrqSection<'_>) {
        let mut g = desc.inner.lock();
        let Some(actions) = Self::fast_path_actions(desc, &g, EDGE_GENERAL_DELIVERY, sec) else {
            return self.flow_edge_slow(desc, g, cpu, sec);
        };
        g.delivery.remove(DeliveryFlags::REPLAY);
        Self::ack(desc.irq, &g);
        if let Some(g) = self.handle_irq_event_fast(desc, g, cpu, actions) {
            self.flow_edge_after_run(desc, g, cpu, sec);
        }
    }

    /// The edge flow, every case.
    #[inline(never)]
    fn flow_edge_slow<'a>(
        &self,
        desc: &'a IrqDesc,
        g: Guard<'a>,
        cpu: CpuId,
        sec: &IrqSection<'_>,
    ) {
        let irq = desc.irq;
        let (mut g, ok) = self.may_run_here(desc, g, cpu, true);
        if !ok || !Self::can_handle_actions(&mut g) {
            g.delivery.insert(DeliveryFlags::PENDING);
            Self::mask_ack(irq, &mut g);
            return;
        }
        desc.count_on(cpu);
        g.tot_count += 1;
        Self::ack(irq, &g);
        self.flow_edge_loop(desc, g, cpu, sec);
    }

    /// The edge flow after a run that ended under the lock: run again if
    /// an edge arrived meanwhile (PENDING) and the line is still enabled.
    #[inline(never)]
    fn flow_edge_after_run<'a>(
        &self,
        desc: &'a IrqDesc,
        mut g: Guard<'a>,
        cpu: CpuId,
        sec: &IrqSection<'_>,
    ) {
        if g.delivery.contains(DeliveryFlags::PENDING) && !g.line.contains(LineState::DISABLED) {
            return self.flow_edge_loop(desc, g, cpu, sec);
        }
        self.move_pending(desc.irq, &mut g);
    }

    /// The after-work of a run that ended with a plain store although a
    /// lock holder on another CPU changed the descriptor meanwhile
    /// ([`DeliveryFlags::RECHECK`], found by a drain once the run is over;
    /// lock held): what the flow does after a run that ends under the lock,
    /// but the EOI, which the running CPU did after its run.
    pub(crate) fn after_unseen_change<'a>(
        &self,
        desc: &'a IrqDesc,
        mut g: Guard<'a>,
        cpu: CpuId,
        sec: &IrqSection<'_>,
    ) {
        match desc.flow() {
            FlowKind::Edge => self.flow_edge_after_run(desc, g, cpu, sec),
            FlowKind::FastEoi => {
                self.move_pending(desc.irq, &mut g);
                if g.delivery.contains(DeliveryFlags::PENDING) {
                    self.check_irq_resend(desc.irq, &mut g, false);
                }
            }
            _ => self.move_pending(desc.irq, &mut g),
        }
    }

    /// The edge flow's runs, from the first (counted and acked by the
    /// caller) until no edge is pending.
    fn flow_edge_loop<'a>(
        &self,
        desc: &'a IrqDesc,
        mut g: Guard<'a>,
        cpu: CpuId,
        sec: &IrqSection<'_>,
    ) {
        let irq = desc.irq;
        loop {
            if g.actions.is_empty() {
                Self::mask(irq, &mut g);
                break;
            }
            if g.delivery.contains(DeliveryFlags::PENDING)
                && g.line.contains(LineState::MASKED)
                && !g.line.contains(LineState::DISABLED)
            {
                Self::unmask(irq, &mut g);
            }
            match self.handle_irq_event(desc, g, cpu, Exit::Unlocked, sec) {
                Some(ng) => g = ng,
                // Ended without the lock: nothing was pending, no affinity
                // change waits.
                None => return,
            }
            if !g.delivery.contains(DeliveryFlags::PENDING) || g.line.contains(LineState::DISABLED)
            {
                break;
            }
        }
        self.move_pending(irq, &mut g);
    }

    #[inline(always)]
    fn flow_level(&self, desc: &IrqDesc, cpu: CpuId, sec: &IrqSection<'_>) {
        let irq = desc.irq;
        let mut g = desc.inner.lock();
        Self::mask_ack(irq, &mut g);
        let (mut g, ok) = self.may_run_here(desc, g, cpu, false);
        if !ok || !Self::can_handle_actions(&mut g) {
            // The source is still asserted: whoever unmasks gets it again.
            return;
        }
        desc.count_on(cpu);
        g.tot_count += 1;
        let Some(mut g) = self.handle_irq_event(desc, g, cpu, Exit::Locked, sec) else {
            return;
        };
        self.move_pending(irq, &mut g);
        Self::cond_unmask(irq, &mut g);
    }

    fn cond_unmask(irq: IrqNumber, g: &mut DescInner) {
        if !g.line.contains(LineState::DISABLED)
            && g.line.contains(LineState::MASKED)
            && g.threads_oneshot == 0
        {
            Self::unmask(irq, g);
        }
    }

    /// The fasteoi flow. Its fast path is [`Self::flow_fasteoi_slow`]
    /// with what [`Self::fast_path_actions`] established (may run here, can
    /// handle, not oneshot) and a chip whose EOI needs no lock: count, run,
    /// EOI.
    #[inline(always)]
    fn flow_fasteoi(&self, desc: &IrqDesc, cpu: CpuId, sec: &IrqSection<'_>) {
        let mut g = desc.inner.lock();
        let flags = g.chip_flags;
        let actions = if flags.intersects(EOI_WITHOUT_LOCK) {
            Self::fast_path_actions(desc, &g, FASTEOI_GENERAL_DELIVERY, sec)
        } else {
            None
        };
        let Some(actions) = actions else {
            return self.flow_fasteoi_slow(desc, g, cpu, sec);
        };
        g.delivery.remove(REPLAY_AND_PENDING);
        match self.handle_irq_event_fast(desc, g, cpu, actions) {
            None => {
                if !flags.contains(ChipFlags::NO_EOI) {
                    Self::eoi_unlocked(desc.irq, sec, desc);
                }
            }
            Some(mut g) => {
                self.move_pending(desc.irq, &mut g);
                Self::eoi(desc.irq, &g);
                if g.delivery.contains(DeliveryFlags::PENDING) {
                    self.check_irq_resend(desc.irq, &mut g, false);
                }
            }
        }
    }

    /// The fasteoi flow, every case.
    #[inline(never)]
    fn flow_fasteoi_slow<'a>(
        &self,
        desc: &'a IrqDesc,
        g: Guard<'a>,
        cpu: CpuId,
        sec: &IrqSection<'_>,
    ) {
        let irq = desc.irq;
        let (mut g, ok) = self.may_run_here(desc, g, cpu, false);
        if !ok {
            if g.line.contains(LineState::RESEND_WHEN_IN_PROGRESS) {
                g.delivery.insert(DeliveryFlags::PENDING);
            }
            Self::cond_eoi(irq, &g);
            return;
        }
        if !Self::can_handle_actions(&mut g) {
            Self::mask(irq, &mut g);
            Self::cond_eoi(irq, &g);
            return;
        }
        desc.count_on(cpu);
        g.tot_count += 1;
        let oneshot = g.delivery.contains(DeliveryFlags::ONESHOT);
        if oneshot {
            Self::mask(irq, &mut g);
        }
        // The EOI of a chip that completes on the calling CPU's own
        // interface (or has none) needs no lock: the run may end without
        // it (see `ChipFlags::EOI_PER_CPU`). Oneshot needs the lock for
        // its unmask decision.
        let flags = g.chip_flags;
        let exit = if !oneshot && flags.intersects(EOI_WITHOUT_LOCK) {
            Exit::Unlocked
        } else {
            Exit::Locked
        };
        let Some(mut g) = self.handle_irq_event(desc, g, cpu, exit, sec) else {
            // Ended without the lock: nothing pending, no move waiting.
            if !flags.contains(ChipFlags::NO_EOI) {
                Self::eoi_unlocked(irq, sec, desc);
            }
            return;
        };
        self.move_pending(irq, &mut g);
        if !oneshot {
            Self::eoi(irq, &g);
        } else if !g.line.contains(LineState::DISABLED)
            && g.line.contains(LineState::MASKED)
            && g.threads_oneshot == 0
        {
            Self::eoi(irq, &g);
            Self::unmask(irq, &mut g);
        } else {
            let flags = g.chip_flags;
            if !flags.contains(ChipFlags::EOI_THREADED) {
                Self::eoi(irq, &g);
            }
        }
        if g.delivery.contains(DeliveryFlags::PENDING) {
            self.check_irq_resend(irq, &mut g, false);
        }
    }

    fn flow_simple(&self, desc: &IrqDesc, cpu: CpuId, sec: &IrqSection<'_>) {
        let g = desc.inner.lock();
        let (mut g, ok) = self.may_run_here(desc, g, cpu, false);
        if !ok {
            if g.line.contains(LineState::RESEND_WHEN_IN_PROGRESS) {
                g.delivery.insert(DeliveryFlags::PENDING);
            }
            return;
        }
        if !Self::can_handle_actions(&mut g) {
            return;
        }
        desc.count_on(cpu);
        g.tot_count += 1;
        let _ = self.handle_irq_event(desc, g, cpu, Exit::Unlocked, sec);
    }

    /// The per-CPU flows: every CPU has its own instance of the line, so
    /// nothing is serialised across CPUs and no lock is taken: the chip
    /// stack and the actions come from the published view
    /// ([`IrqDesc::view`]), and the only write is this CPU's counter, on a
    /// line no other CPU writes. `ack` and `eoi` act on this CPU's instance
    /// (a GIC PPI/SGI, the local APIC, a per-vCPU event channel) and are
    /// called without the descriptor lock (see [`crate::IrqChip`]).
    #[inline(always)]
    fn flow_percpu(&self, desc: &IrqDesc, cpu: CpuId, devid: bool, sec: &IrqSection<'_>) {
        let irq = desc.irq;
        desc.count_on(cpu);
        let Some(view) = sec.view(desc) else {
            // No chip was ever set (a per-CPU flow needs one): nothing to
            // run, nothing to complete.
            return;
        };
        if view.ack {
            Self::chip_ack(irq, &view.levels);
        }
        let actions = view.actions.as_slice();
        match actions.first() {
            None => {
                if devid {
                    self.percpu_devid_spurious(desc, cpu);
                }
            }
            Some(a) if devid => {
                let r = a.handler.handle(irq);
                if r.contains(IrqReturn::WAKE_THREAD) && a.threaded() {
                    self.wake(desc, a);
                }
            }
            Some(_) => {
                self.run_actions(desc, actions);
            }
        }
        if view.eoi {
            Self::chip_eoi(irq, &view.levels);
        }
    }

    /// Acks the outermost chip of `levels` (if any).
    #[inline]
    fn chip_ack(irq: IrqNumber, levels: &[crate::chip::ChipLevel]) {
        if let Some(l) = levels.first() {
            l.chip.ack(&IrqData::new(irq, levels));
        }
    }

    /// EOIs the outermost chip of `levels` (if any).
    #[inline]
    fn chip_eoi(irq: IrqNumber, levels: &[crate::chip::ChipLevel]) {
        if let Some(l) = levels.first() {
            l.chip.eoi(&IrqData::new(irq, levels));
        }
    }

    /// A per-CPU-devid irq without a handler arrived: spurious on this CPU,
    /// disabled here, under the lock (the per-CPU enable mask is locked
    /// state).
    #[cold]
    #[inline(never)]
    fn percpu_devid_spurious(&self, desc: &IrqDesc, cpu: CpuId) {
        let irq = desc.irq;
        let mut g = desc.inner.lock();
        if g.percpu_enabled().contains(cpu) {
            if let Some(d) = g.data(irq) {
                let chip = &g.levels[0].chip;
                if !chip.disable(&d) {
                    chip.mask(&d);
                }
            }
            g.masks.update(crate::desc::MaskKind::PercpuEnabled, |m| {
                m.clear(cpu);
            });
            drop(g);
            self.platform.report(IrqEvent::SpuriousPerCpu(irq, cpu));
        }
    }
}
