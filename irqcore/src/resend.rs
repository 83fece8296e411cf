//! Software resend: replaying an interrupt that arrived while its line was
//! disabled (lazy disable) or busy, when no chip of its stack can retrigger
//! it in hardware.
//!
//! # Exactly once, and only for the request that caused it
//!
//! A resend is *queued* by setting [`DeliveryFlags::SW_RESEND`] on the
//! descriptor, under its lock, and pushing the irq number into the core's
//! [`ResendQueue`]. It is *consumed* by whoever clears that bit first, again
//! under the lock: the core's own drain at the end of
//! [`IrqCore::handle_irq`], or the kernel calling
//! [`IrqCore::handle_sw_resend`] from the softirq or self-IPI it raised in
//! [`Platform::schedule_resend`]. So each queued resend runs the flow once,
//! however many paths try.
//!
//! When the last handler of the line is freed, the line shuts down and a
//! resend still queued is cancelled (the bit is cleared and the cancellation
//! counted in [`IrqCore::dropped_resends`]), as Linux's shutdown removes the
//! descriptor from its resend list. A resend therefore never reaches the next
//! owner of the number: the queue entry finds the bit clear and does nothing.
//!
//! # Locks
//!
//! [`Platform::schedule_resend`] is called only after every core lock is
//! dropped, so a kernel may call back into the core from it.

use crate::desc::{DeliveryFlags, DescInner, IrqDesc, LineState};
use crate::error::IrqError;
use crate::ids::{CpuId, IrqNumber};
use crate::instance::IrqCore;
use crate::platform::Platform;
use crate::section::IrqSection;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Slots of the resend queue. More resends in flight at once than this fall
/// back to a walk of every descriptor (correct, slower).
pub const RESEND_SLOTS: usize = 32;

/// [`ResendQueue`]'s `queued` bit: a resend did not fit in a slot, the next
/// drain walks every descriptor. The count below it never comes near it
/// (at most the slots plus one per CPU marking at once).
const OVERFLOW: u32 = 1 << 31;

/// A lock-free, allocation-free set of irq numbers waiting for a software
/// resend (the core keeps one; see the module docs).
pub struct ResendQueue {
    /// irq number + 1, or 0 for a free slot.
    slots: [AtomicU32; RESEND_SLOTS],
    /// Slots in use, or more, and [`OVERFLOW`]: the dispatcher skips the
    /// queue with one load of this word.
    queued: AtomicU32,
    /// Resends cancelled because their line was shut down.
    dropped: AtomicU64,
}

impl Default for ResendQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl ResendQueue {
    /// An empty queue.
    pub const fn new() -> Self {
        Self {
            slots: [const { AtomicU32::new(0) }; RESEND_SLOTS],
            queued: AtomicU32::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// Adds `irq` (any context, no allocation).
    pub fn mark(&self, irq: IrqNumber) {
        let v = irq.0.wrapping_add(1);
        if v == 0 {
            // u32::MAX cannot be stored; the store never holds it anyway.
            self.queued.fetch_or(OVERFLOW, Ordering::AcqRel);
            return;
        }
        // Counted before the slot is filled, so a drain that takes the slot
        // always finds the count to decrement.
        self.queued.fetch_add(1, Ordering::AcqRel);
        for slot in &self.slots {
            if slot
                .compare_exchange(0, v, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
        self.queued.fetch_sub(1, Ordering::AcqRel);
        self.queued.fetch_or(OVERFLOW, Ordering::AcqRel);
    }

    /// Whether nothing is queued (the dispatcher's fast check).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.queued.load(Ordering::Acquire) == 0
    }

    /// Takes every queued irq, calling `f` for each; returns whether the
    /// queue had overflowed (the caller must then look at every descriptor).
    fn take(&self, f: &mut dyn FnMut(IrqNumber)) -> bool {
        for slot in &self.slots {
            let v = slot.swap(0, Ordering::AcqRel);
            if v != 0 {
                self.queued.fetch_sub(1, Ordering::AcqRel);
                f(IrqNumber(v - 1));
            }
        }
        self.queued.fetch_and(!OVERFLOW, Ordering::AcqRel) & OVERFLOW != 0
    }

    /// Removes `irq` from the queue (a cancelled resend), so that the
    /// platform is not told about it again.
    fn remove(&self, irq: IrqNumber) {
        let v = irq.0.wrapping_add(1);
        for slot in &self.slots {
            if slot
                .compare_exchange(v, 0, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                self.queued.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// Calls `f` for each irq currently queued, without taking it.
    fn peek(&self, f: &mut dyn FnMut(IrqNumber)) {
        for slot in &self.slots {
            let v = slot.load(Ordering::Acquire);
            if v != 0 {
                f(IrqNumber(v - 1));
            }
        }
    }
}

impl<P: Platform> IrqCore<P> {
    /// Queues a software resend of `irq` (descriptor lock held). The kernel
    /// is told afterwards, outside the lock ([`IrqCore::kick_resends`]).
    pub(crate) fn queue_sw_resend(&self, irq: IrqNumber, g: &mut crate::desc::DescInner) {
        if !g.delivery.contains(DeliveryFlags::SW_RESEND) {
            g.delivery.insert(DeliveryFlags::SW_RESEND);
            self.resend.mark(irq);
        }
    }

    /// Cancels a queued software resend of a line being shut down
    /// (descriptor lock held).
    pub(crate) fn cancel_sw_resend(&self, irq: IrqNumber, g: &mut crate::desc::DescInner) {
        if g.delivery.contains(DeliveryFlags::SW_RESEND) {
            g.delivery.remove(DeliveryFlags::SW_RESEND);
            self.resend.remove(irq);
            self.resend.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Tells the platform about queued resends. Called with no core lock
    /// held, at the end of the calls that can queue one. (Resends that
    /// overflowed the queue are not announced; the next `handle_irq` runs
    /// them.)
    pub(crate) fn kick_resends(&self) {
        if !self.resend.is_empty() {
            self.resend
                .peek(&mut |irq| self.platform.schedule_resend(irq));
        }
    }

    /// Software resends cancelled because their line was shut down before
    /// they ran (the handler that caused them was freed).
    pub fn dropped_resends(&self) -> u64 {
        self.resend.dropped.load(Ordering::Relaxed)
    }

    /// Replays `irq` if a software resend of it is queued, after
    /// [`Platform::schedule_resend`]; does nothing if it already ran or was
    /// cancelled. Callable from interrupt context (a softirq, a self-IPI)
    /// or from `schedule_resend` itself; it disables local interrupts
    /// around the flow.
    pub fn handle_sw_resend(&self, irq: IrqNumber) -> Result<(), IrqError> {
        let (cpu, epoch) = self.irq_epoch()?;
        // Interrupts off whatever the caller's context (a kernel may call
        // this straight from `schedule_resend` in process context): the
        // flow takes the descriptor lock as the dispatcher does.
        let _irqs_off = self.irq_save();
        let sec = IrqSection::enter::<P>(epoch);
        match self.store.lookup(irq) {
            Some(desc) => {
                self.resend_one(desc, cpu, &sec);
                Ok(())
            }
            None => Err(IrqError::UnknownIrq(irq)),
        }
    }

    /// Runs every queued software resend (same context as
    /// [`IrqCore::handle_sw_resend`]). The core calls this at the end of
    /// [`IrqCore::handle_irq`]; a kernel may call it from its softirq.
    pub fn run_resends(&self) -> Result<(), IrqError> {
        let (cpu, epoch) = self.irq_epoch()?;
        let _irqs_off = self.irq_save();
        let sec = IrqSection::enter::<P>(epoch);
        self.drain_resends(cpu, &sec);
        Ok(())
    }

    /// Takes the queue once (the caller is in an interrupt-context
    /// section). Resends queued while draining wait for the next drain.
    #[inline(never)]
    pub(crate) fn drain_resends(&self, cpu: CpuId, sec: &IrqSection<'_>) {
        let overflowed = self.resend.take(&mut |irq| {
            if let Some(desc) = self.store.lookup(irq) {
                self.resend_one(desc, cpu, sec);
            }
        });
        if overflowed {
            self.store.for_each_unlocked(&mut |desc| {
                let queued = desc
                    .inner
                    .lock()
                    .delivery
                    .intersects(DeliveryFlags::SW_RESEND | DeliveryFlags::RECHECK);
                if queued {
                    self.resend_one(desc, cpu, sec);
                }
            });
        }
    }

    /// Consumes the queued resend of `desc`, if any, and runs its flow.
    ///
    /// A line being handled right now (on any CPU) gets the replay folded
    /// into that run instead: it is marked PENDING, which the running edge
    /// flow loops on and the fasteoi flow resends when it finishes. A
    /// replay therefore never waits for a handler (the drain runs on its
    /// way out of `handle_irq`, where waiting for another CPU's flow could
    /// only add latency, or hang a CPU that runs both).
    fn resend_one(&self, desc: &IrqDesc, cpu: CpuId, sec: &IrqSection<'_>) {
        if P::KICK_CPU {
            let g = desc.inner.lock();
            if g.delivery.contains(DeliveryFlags::RECHECK) {
                self.recheck(desc, g, cpu, sec);
            }
        }
        let run = {
            let mut g = desc.inner.lock();
            if !g.delivery.contains(DeliveryFlags::SW_RESEND) {
                return;
            }
            g.delivery.remove(DeliveryFlags::SW_RESEND);
            // Consumed here: its queue entry (if a drain has not taken it)
            // must not announce it to the platform again.
            self.resend.remove(desc.irq);
            // A run going on is told (RUN_ATTN) so that it takes the lock
            // on its way out and sees PENDING.
            if desc.claim_attention() {
                g.delivery.remove(DeliveryFlags::REPLAY);
                g.delivery.insert(DeliveryFlags::PENDING);
                self.kick_runner(desc, &mut g);
                false
            } else {
                true
            }
        };
        if run {
            self.run_flow(desc, cpu, sec);
        }
    }
}

impl<P: Platform> IrqCore<P> {
    /// With `desc`'s lock held, after [`IrqDesc::claim_attention`] found a
    /// run going on: on a platform whose runs end with a plain store
    /// ([`Platform::KICK_CPU`]), makes sure the run's after-work is done
    /// even if the run ends without seeing `RUN_ATTN` (see
    /// [`IrqDesc::run`]): sets [`DeliveryFlags::RECHECK`], queues the irq
    /// and kicks the running CPU, whose drain after the run (its own end
    /// visible to it) does the work if nobody did it before.
    ///
    /// Nothing to do for a run of the calling CPU itself (a handler that
    /// changed its own line, or a nested interrupt): its end reads
    /// `RUN_ATTN` after this, in program order. Nor when `RECHECK` is
    /// already set: the running CPU was kicked for this run already (a
    /// later run clears the flag when it starts, see
    /// `IrqCore::handle_irq_event`), which keeps a process-context caller
    /// that polls for the run's end from kicking it on every poll.
    #[inline]
    pub(crate) fn kick_runner(&self, desc: &IrqDesc, g: &mut DescInner) {
        if !P::KICK_CPU {
            return;
        }
        let runner = g.in_progress_cpu;
        if runner == self.platform.current_cpu() || g.delivery.contains(DeliveryFlags::RECHECK) {
            return;
        }
        g.delivery.insert(DeliveryFlags::RECHECK);
        self.resend.mark(desc.irq);
        self.platform.kick_cpu(runner);
    }

    /// A drain found [`DeliveryFlags::RECHECK`] (lock held in `g`): if the
    /// flagged run is over, does what its end under the lock would have
    /// done; if it still goes on, or its end is not visible here yet, puts
    /// the irq back in the queue for the drain its CPU does afterwards
    /// (and kicks that CPU again, unless it is this one: the kick may have
    /// found the queue empty while this drain held the entry).
    #[cold]
    #[inline(never)]
    fn recheck(
        &self,
        desc: &IrqDesc,
        mut g: spin::MutexGuard<'_, DescInner>,
        cpu: CpuId,
        sec: &IrqSection<'_>,
    ) {
        if desc.in_progress() {
            self.resend.mark(desc.irq);
            let runner = g.in_progress_cpu;
            if runner != cpu {
                self.platform.kick_cpu(runner);
            }
            return;
        }
        g.delivery.remove(DeliveryFlags::RECHECK);
        self.after_unseen_change(desc, g, cpu, sec);
    }

    /// Replays an event recorded as PENDING: hardware retrigger if a chip
    /// of the stack can, software resend through the platform otherwise.
    /// Level lines are never resent (the hardware re-asserts them).
    pub(crate) fn check_irq_resend(&self, irq: IrqNumber, g: &mut DescInner, inject: bool) {
        if g.line.contains(LineState::LEVEL) {
            g.delivery.remove(DeliveryFlags::PENDING);
            return;
        }
        if g.delivery.contains(DeliveryFlags::REPLAY) {
            return;
        }
        if !g.delivery.contains(DeliveryFlags::PENDING) && !inject {
            return;
        }
        g.delivery.remove(DeliveryFlags::PENDING);
        let hw = g.data(irq).is_some_and(|d| d.retrigger_hierarchy());
        if !hw {
            // The platform hears of it once the locks are dropped
            // (`kick_resends`); the dispatcher drains the queue itself.
            self.queue_sw_resend(irq, g);
        }
        g.delivery.insert(DeliveryFlags::REPLAY);
    }
}
