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
use crate::desc::{DescInner, IrqDesc, IrqSection, IrqState, IrqStatus, RUN_IN_PROGRESS};
use crate::error::IrqError;
use crate::ids::{CpuId, IrqNumber};
use crate::instance::IrqCore;
use crate::platform::{ActionId, IrqEvent, Platform, ThreadWake};
use alloc::sync::Arc;
use core::sync::atomic::Ordering;
use spin::MutexGuard;

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

/// Spurious detector window and threshold (Linux's values: a line is
/// disabled when *more than* the threshold were unhandled).
pub(crate) const SPURIOUS_WINDOW: u32 = 100_000;
pub(crate) const SPURIOUS_THRESHOLD: u32 = 99_900;
/// With a clock, an unhandled interrupt this long after the previous one
/// restarts the count (Linux: HZ/10).
pub(crate) const SPURIOUS_GAP_NS: u64 = 100_000_000;

/// `IrqDesc::exit_work` bits: work a flow leaves for `handle_irq` to do once
/// the descriptor lock is dropped.
pub(crate) const EXIT_INLINE_THREADS: u8 = 1 << 0;
/// See [`EXIT_INLINE_THREADS`].
pub(crate) const EXIT_REPORT_SPURIOUS: u8 = 1 << 1;

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
    /// The dispatcher: handles one arrival of `irq` on the calling CPU.
    ///
    /// Call it from the interrupt entry with local interrupts disabled, after
    /// translating the vector/INTID/port to the irq number. It never
    /// allocates and takes no lock but `irq`'s own descriptor lock. Before it
    /// returns it also runs thread functions the platform asked to run
    /// inline ([`ThreadWake::RunInline`](crate::ThreadWake::RunInline)) and
    /// the queued software resends ([`crate::resend`]).
    ///
    /// `Err` means no descriptor exists for `irq` (reported as
    /// [`IrqEvent::BadIrq`]): nothing ran, and the interrupt entry must
    /// acknowledge (EOI) the controller itself.
    pub fn handle_irq(&self, irq: IrqNumber) -> Result<(), IrqError> {
        let (cpu, epoch) = self.irq_epoch()?;
        let sec = IrqSection::enter::<P>(epoch);
        let r = match self.store.lookup(irq) {
            Some(desc) => {
                self.run_flow(desc, cpu, &sec);
                self.exit_work(desc, &sec);
                Ok(())
            }
            None => {
                self.platform.report(IrqEvent::BadIrq(irq));
                Err(IrqError::UnknownIrq(irq))
            }
        };
        // Only the outermost dispatch replays the queue: a nested one (a
        // chained handler's) runs inside another irq's flow, whose line may
        // be the very one queued.
        if !self.resend.is_empty() && !sec.nested() {
            self.drain_resends(cpu, &sec);
        }
        drop(sec);
        r
    }

    /// The calling CPU and its read-side slot, for an interrupt-context
    /// section (a CPU id beyond `nr_cpus` is refused).
    #[inline]
    pub(crate) fn irq_epoch(&self) -> Result<(CpuId, &crate::grace::CpuEpoch), IrqError> {
        let cpu = self.platform.current_cpu();
        self.epochs
            .get(cpu.index())
            .filter(|_| cpu.0 < self.nr_cpus)
            .map(|e| (cpu, e))
            .ok_or(IrqError::BadCpu(cpu))
    }

    /// Work a flow left for after its descriptor lock was dropped: inline
    /// thread functions and a spurious-disable report.
    #[inline]
    fn exit_work(&self, desc: &IrqDesc, sec: &IrqSection<'_>) {
        if desc.exit_work.load(Ordering::Relaxed) == 0 {
            return;
        }
        let work = desc.exit_work.swap(0, Ordering::AcqRel);
        if work & EXIT_REPORT_SPURIOUS != 0 {
            self.platform.report(IrqEvent::SpuriousDisabled(desc.irq));
        }
        if work & EXIT_INLINE_THREADS != 0 {
            let actions = sec.actions(&desc.inner.lock());
            for a in actions.iter() {
                if a.threaded() && a.run_thread.load(crate::sync::Ordering::Acquire) {
                    let _ = self.run_thread(desc.irq, a.id);
                }
            }
        }
    }

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
    fn can_handle_pm<'a>(
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
        self.can_handle_pm_busy(desc, g, cpu, edge)
    }

    /// [`Self::can_handle_pm`] when a run may be going on.
    #[inline(never)]
    fn can_handle_pm_busy<'a>(
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
            let ok = !g.state.contains(IrqState::DISABLED) && !g.actions.is_empty();
            return (g, ok);
        }
        (g, false)
    }

    /// Are there handlers and is the line enabled? If not, records PENDING.
    fn can_handle_actions(g: &mut DescInner) -> bool {
        g.status.remove(IrqStatus::REPLAY);
        if g.actions.is_empty() || g.state.contains(IrqState::DISABLED) {
            g.status.insert(IrqStatus::PENDING);
            return false;
        }
        true
    }

    fn mask(irq: IrqNumber, g: &mut DescInner) {
        if !g.state.contains(IrqState::MASKED) {
            if let Some(d) = g.data(irq) {
                g.levels[0].chip.mask(&d);
            }
            g.state.insert(IrqState::MASKED);
        }
    }

    fn unmask(irq: IrqNumber, g: &mut DescInner) {
        if g.state.contains(IrqState::MASKED) {
            if let Some(d) = g.data(irq) {
                g.levels[0].chip.unmask(&d);
            }
            g.state.remove(IrqState::MASKED);
        }
    }

    fn mask_ack(irq: IrqNumber, g: &mut DescInner) {
        if let Some(d) = g.data(irq) {
            let chip = &g.levels[0].chip;
            if g.state.contains(IrqState::MASKED) {
                chip.ack(&d);
            } else {
                chip.mask_ack(&d);
            }
        }
        g.state.insert(IrqState::MASKED);
    }

    #[inline]
    fn ack(irq: IrqNumber, g: &DescInner) {
        if g.chip_flags.contains(ChipFlags::NO_ACK) {
            return;
        }
        if let Some(d) = g.data(irq) {
            g.levels[0].chip.ack(&d);
        }
    }

    #[inline]
    fn eoi(irq: IrqNumber, g: &DescInner) {
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
        g.status.remove(IrqStatus::PENDING);
        desc.run.store(RUN_IN_PROGRESS, Ordering::Relaxed);
        g.in_progress_cpu = cpu;
        let window_ends = Self::count_for_spurious(&mut g);
        let oneshot = g.status.contains(IrqStatus::ONESHOT);
        let may_skip_lock =
            exit == Exit::Unlocked && !window_ends && !g.state.contains(IrqState::MOVE_PENDING);
        let actions = sec.actions(&g);
        drop(g);
        let (ret, woken_mask) = self.run_actions(desc, actions);
        if may_skip_lock
            && (woken_mask == 0 || !oneshot)
            && ret.handled()
            && ret != IrqReturn::WAKE_THREAD
            && desc
                .run
                .compare_exchange(RUN_IN_PROGRESS, 0, Ordering::Release, Ordering::Relaxed)
                .is_ok()
        {
            return None;
        }
        let mut g = desc.inner.lock();
        if woken_mask != 0 && g.status.contains(IrqStatus::ONESHOT) {
            g.threads_oneshot |= woken_mask;
        }
        // Ends the run and drops a RUN_ATTN: what it flagged is read below
        // and by the caller, under the lock.
        desc.run.store(0, Ordering::Release);
        self.note_interrupt(desc, &mut g, ret);
        Some(g)
    }

    /// Counts one run of the handlers for the spurious detector (Linux's
    /// `irq_count`), with the lock held before the run; returns whether it
    /// closes a window, which `note_interrupt` then judges under the lock.
    /// Counting before the run keeps the counter under the lock while the
    /// common case (handled, window open) needs no lock after it.
    fn count_for_spurious(g: &mut DescInner) -> bool {
        if g.state.contains(IrqState::PER_CPU) {
            return false;
        }
        g.irq_count += 1;
        g.irq_count >= SPURIOUS_WINDOW
    }

    /// Calls every handler and wakes the threads that asked for it; returns
    /// the combined result and the woken threads' oneshot mask.
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

    fn flow_edge(&self, desc: &IrqDesc, cpu: CpuId, sec: &IrqSection<'_>) {
        let irq = desc.irq;
        let g = desc.inner.lock();
        let (mut g, ok) = self.can_handle_pm(desc, g, cpu, true);
        if !ok || !Self::can_handle_actions(&mut g) {
            g.status.insert(IrqStatus::PENDING);
            Self::mask_ack(irq, &mut g);
            return;
        }
        desc.count_on(cpu);
        g.tot_count += 1;
        Self::ack(irq, &g);
        loop {
            if g.actions.is_empty() {
                Self::mask(irq, &mut g);
                break;
            }
            if g.status.contains(IrqStatus::PENDING)
                && g.state.contains(IrqState::MASKED)
                && !g.state.contains(IrqState::DISABLED)
            {
                Self::unmask(irq, &mut g);
            }
            match self.handle_irq_event(desc, g, cpu, Exit::Unlocked, sec) {
                Some(ng) => g = ng,
                // Ended without the lock: nothing was pending, no affinity
                // change waits.
                None => return,
            }
            if !g.status.contains(IrqStatus::PENDING) || g.state.contains(IrqState::DISABLED) {
                break;
            }
        }
        self.move_pending(irq, &mut g);
    }

    fn flow_level(&self, desc: &IrqDesc, cpu: CpuId, sec: &IrqSection<'_>) {
        let irq = desc.irq;
        let mut g = desc.inner.lock();
        Self::mask_ack(irq, &mut g);
        let (mut g, ok) = self.can_handle_pm(desc, g, cpu, false);
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
        if !g.state.contains(IrqState::DISABLED)
            && g.state.contains(IrqState::MASKED)
            && g.threads_oneshot == 0
        {
            Self::unmask(irq, g);
        }
    }

    fn flow_fasteoi(&self, desc: &IrqDesc, cpu: CpuId, sec: &IrqSection<'_>) {
        let irq = desc.irq;
        let g = desc.inner.lock();
        let (mut g, ok) = self.can_handle_pm(desc, g, cpu, false);
        if !ok {
            if g.state.contains(IrqState::RESEND_WHEN_IN_PROGRESS) {
                g.status.insert(IrqStatus::PENDING);
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
        let oneshot = g.status.contains(IrqStatus::ONESHOT);
        if oneshot {
            Self::mask(irq, &mut g);
        }
        // The EOI of a chip that completes on the calling CPU's own
        // interface (or has none) needs no lock: the run may end without
        // it (see `ChipFlags::EOI_PER_CPU`). Oneshot needs the lock for
        // its unmask decision.
        let flags = g.chip_flags;
        let exit = if !oneshot && flags.intersects(ChipFlags::EOI_PER_CPU | ChipFlags::NO_EOI) {
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
        } else if !g.state.contains(IrqState::DISABLED)
            && g.state.contains(IrqState::MASKED)
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
        if g.status.contains(IrqStatus::PENDING) {
            self.check_irq_resend(irq, &mut g, false);
        }
    }

    fn flow_simple(&self, desc: &IrqDesc, cpu: CpuId, sec: &IrqSection<'_>) {
        let g = desc.inner.lock();
        let (mut g, ok) = self.can_handle_pm(desc, g, cpu, false);
        if !ok {
            if g.state.contains(IrqState::RESEND_WHEN_IN_PROGRESS) {
                g.status.insert(IrqStatus::PENDING);
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
    fn flow_percpu(&self, desc: &IrqDesc, cpu: CpuId, devid: bool, sec: &IrqSection<'_>) {
        let irq = desc.irq;
        desc.count_on(cpu);
        let Some(view) = sec.view(desc) else {
            // No chip was ever set (a per-CPU flow needs one): nothing to
            // run, nothing to complete.
            return;
        };
        let data = (!view.levels.is_empty()).then(|| IrqData::new(irq, &view.levels));
        let chip = view.levels.first().map(|l| &*l.chip);
        if let (Some(c), Some(d), false) =
            (chip, &data, view.chip_flags.contains(ChipFlags::NO_ACK))
        {
            c.ack(d);
        }
        let actions = view.actions.as_slice();
        if actions.is_empty() {
            if devid {
                // Spurious on this CPU: disable it here, under the lock
                // (the per-CPU enable mask is locked state).
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
        } else if devid {
            if let Some(a) = actions.first() {
                let r = a.handler.handle(irq);
                if r.contains(IrqReturn::WAKE_THREAD) && a.threaded() {
                    self.wake(desc, a);
                }
            }
        } else {
            self.run_actions(desc, actions);
        }
        if let (Some(c), Some(d), false) =
            (chip, &data, view.chip_flags.contains(ChipFlags::NO_EOI))
        {
            c.eoi(d);
        }
    }

    /// Runs the thread function of `action` on `irq` (called by the
    /// platform's interrupt thread after [`Platform::wake_thread`]), then
    /// finalises oneshot: the line is unmasked once the last oneshot thread
    /// is done.
    ///
    /// No read-side section is held while the thread function runs, so it
    /// may sleep and may call any process-context API, `free_irq` of its own
    /// handler included (which then returns without waiting for this very
    /// call to end). The interrupt thread must not migrate to another CPU
    /// while inside this call.
    pub fn run_thread(&self, irq: IrqNumber, action: ActionId) -> Result<(), IrqError> {
        let me = self.platform.current_cpu();
        let a = {
            let s = self.section()?;
            let desc = self.desc(&s, irq)?;
            let g = self.lock_desc(desc);
            if desc.in_progress() && g.in_progress_cpu == me && self.in_interrupt() {
                // Called from inside this irq's own flow on this CPU (a
                // `wake_thread` that runs the thread at once): finishing
                // here would wait for that very flow. Run it when the flow
                // is done, before `handle_irq` returns.
                desc.exit_work
                    .fetch_or(EXIT_INLINE_THREADS, Ordering::AcqRel);
                return Ok(());
            }
            g.actions.iter().find(|a| a.id == action).cloned()
        };
        let Some(a) = a else {
            return Err(IrqError::NoSuchHandler(irq));
        };
        // Each wake that set the flag was counted in `threads_pending` once;
        // count the ones this call consumes so exactly those are undone.
        let mut consumed = 0u32;
        let mut handled = 0u32;
        a.thread_cpu
            .store(me.0.wrapping_add(1), crate::sync::Ordering::Release);
        while !a.removed.load(crate::sync::Ordering::Acquire)
            && a.run_thread.swap(false, crate::sync::Ordering::AcqRel)
        {
            consumed += 1;
            if a.handler.thread(irq).handled() {
                handled += 1;
            }
        }
        a.thread_cpu.store(0, crate::sync::Ordering::Release);
        // Finalise. The descriptor is looked up again: it may have gone
        // while the thread function ran (freed after `free_irq` unlinked
        // this action), and then there is nothing left to finalise.
        loop {
            let s = self.section()?;
            let Ok(desc) = self.desc(&s, irq) else {
                return Ok(());
            };
            if handled != 0 {
                desc.threads_handled
                    .fetch_add(handled, crate::sync::Ordering::AcqRel);
                handled = 0;
            }
            let mut g = self.lock_desc(desc);
            // Never finalise while a hard handler runs on some CPU: it may
            // be about to record this wake's oneshot bit.
            if desc.in_progress() {
                drop(g);
                drop(s);
                self.platform.cpu_relax();
                continue;
            }
            if !g.actions.iter().any(|x| Arc::ptr_eq(x, &a)) {
                // Unlinked by free_irq, which cleared its oneshot bit.
                return Ok(());
            }
            a.threads_pending
                .fetch_sub(consumed, crate::sync::Ordering::AcqRel);
            if a.run_thread.load(crate::sync::Ordering::Acquire) {
                // Woken again meanwhile: that wake's own run finalises.
                break;
            }
            if g.threads_oneshot & a.thread_mask != 0 {
                g.threads_oneshot &= !a.thread_mask;
                if g.threads_oneshot == 0
                    && g.state.contains(IrqState::MASKED)
                    && !g.state.contains(IrqState::DISABLED)
                {
                    let flags = g.chip_flags;
                    if flags.contains(ChipFlags::EOI_THREADED) {
                        Self::eoi(irq, &g);
                    }
                    Self::unmask(irq, &mut g);
                }
            }
            break;
        }
        Ok(())
    }

    /// Applies a deferred affinity change at a safe point: the handlers are
    /// not running and the line is acked.
    pub(crate) fn move_pending(&self, irq: IrqNumber, g: &mut DescInner) {
        // Flows call this after ending their run, with the lock held, so no
        // handler runs now.
        if !g.state.contains(IrqState::MOVE_PENDING) {
            return;
        }
        g.state.remove(IrqState::MOVE_PENDING);
        let mask = g.pending_mask().and(&self.online_cpus());
        if mask.is_empty() {
            return;
        }
        let was_masked = g.state.contains(IrqState::MASKED);
        if !was_masked {
            Self::mask(irq, g);
        }
        if let Some(d) = g.data(irq) {
            match g.levels[0].chip.set_affinity(&d, &mask, false) {
                Ok(r) => {
                    g.masks
                        .set(crate::desc::MaskKind::Affinity, g.pending_mask());
                    g.masks.set(crate::desc::MaskKind::Effective, r.effective());
                }
                // Still busy with the previous move: try again next time.
                Err(crate::error::ChipError::Busy) => g.state.insert(IrqState::MOVE_PENDING),
                Err(_) => {}
            }
        }
        if !was_masked {
            Self::unmask(irq, g);
        }
    }

    /// Replays an event recorded as PENDING: hardware retrigger if a chip
    /// of the stack can, software resend through the platform otherwise.
    /// Level lines are never resent (the hardware re-asserts them).
    pub(crate) fn check_irq_resend(&self, irq: IrqNumber, g: &mut DescInner, inject: bool) {
        if g.state.contains(IrqState::LEVEL) {
            g.status.remove(IrqStatus::PENDING);
            return;
        }
        if g.status.contains(IrqStatus::REPLAY) {
            return;
        }
        if !g.status.contains(IrqStatus::PENDING) && !inject {
            return;
        }
        g.status.remove(IrqStatus::PENDING);
        let hw = g.data(irq).is_some_and(|d| d.retrigger_hierarchy());
        if !hw {
            // The platform hears of it once the locks are dropped
            // (`kick_resends`); the dispatcher drains the queue itself.
            self.queue_sw_resend(irq, g);
        }
        g.status.insert(IrqStatus::REPLAY);
    }

    /// The unhandled-interrupt detector (Linux's `note_interrupt`): over
    /// every window of 100,000 interrupts, if more than 99,900 were
    /// unhandled the line is stuck ("nobody cared"): disable it and report
    /// (the report is made by `handle_irq` once the lock is dropped).
    ///
    /// An interrupt whose handlers only woke threads is judged by the
    /// threads instead, one interrupt late (the threads have not run yet):
    /// it counts as handled if some thread function returned handled since
    /// the previous such interrupt. With a platform clock, an unhandled
    /// interrupt more than 100 ms after the previous one restarts the
    /// unhandled count, so a slow line that is mostly unhandled survives.
    fn note_interrupt(&self, desc: &IrqDesc, g: &mut DescInner, mut ret: IrqReturn) {
        if g.state.contains(IrqState::PER_CPU) {
            return;
        }
        if ret == IrqReturn::WAKE_THREAD {
            let now = desc.threads_handled.load(crate::sync::Ordering::Acquire);
            if !g.status.contains(IrqStatus::SPURIOUS_DEFERRED) {
                // First threaded-only interrupt: arm, judge from the next
                // (and leave it out of the window, which
                // `count_for_spurious` counted it in).
                g.status.insert(IrqStatus::SPURIOUS_DEFERRED);
                g.threads_handled_last = now;
                g.irq_count = g.irq_count.saturating_sub(1);
                return;
            }
            if now == g.threads_handled_last {
                ret = IrqReturn::NONE;
            } else {
                g.threads_handled_last = now;
                ret = IrqReturn::HANDLED;
            }
        }
        if !ret.handled() {
            let now = self.platform.now_ns();
            let fresh = match (now, g.last_unhandled_ns) {
                (Some(now), Some(last)) => now.wrapping_sub(last) > SPURIOUS_GAP_NS,
                _ => false,
            };
            g.irqs_unhandled = if fresh { 1 } else { g.irqs_unhandled + 1 };
            g.last_unhandled_ns = now;
        }
        // `irq_count` was counted before the run (`count_for_spurious`).
        if g.irq_count < SPURIOUS_WINDOW {
            return;
        }
        if g.irqs_unhandled > SPURIOUS_THRESHOLD {
            g.status.insert(IrqStatus::SPURIOUS_DISABLED);
            g.depth = g.depth.saturating_add(1);
            Self::irq_disable_masked(desc.irq, g);
            desc.exit_work
                .fetch_or(EXIT_REPORT_SPURIOUS, Ordering::AcqRel);
        }
        g.irq_count = 0;
        g.irqs_unhandled = 0;
    }

    fn irq_disable_masked(irq: IrqNumber, g: &mut DescInner) {
        g.state.insert(IrqState::DISABLED);
        Self::mask(irq, g);
    }
}
