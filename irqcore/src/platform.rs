//! The one trait a kernel implements to host irqcore.
//!
//! Nothing else in irqcore touches hardware or global state: every side
//! effect outside the descriptor store goes through a [`Platform`] (CPU
//! identity and local interrupt state) or an [`IrqChip`](crate::IrqChip)
//! (the interrupt controller).

use crate::cpumask::CpuMask;
use crate::ids::{CpuId, IrqNumber};

/// Saved local interrupt state, returned by [`Platform::local_irq_save`].
///
/// The value is opaque to irqcore; a kernel typically stores RFLAGS.IF or
/// DAIF in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IrqFlags(pub usize);

/// Identifies one handler (action) of an irq, passed to
/// [`Platform::wake_thread`] and back to [`IrqCore::run_thread`](crate::IrqCore::run_thread).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ActionId(pub u32);

/// How [`Platform::wake_thread`] handled a wake-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadWake {
    /// The kernel woke (or queued) an interrupt thread, which will call
    /// [`IrqCore::run_thread`](crate::IrqCore::run_thread).
    Queued,
    /// The kernel has no interrupt threads: the core runs the thread
    /// function itself, on this CPU, right after the hard handlers, before
    /// [`IrqCore::handle_irq`](crate::IrqCore::handle_irq) returns (with
    /// the descriptor lock dropped and local interrupts still off). This is
    /// the one-CPU fallback: a thread function must then not sleep.
    RunInline,
}

/// What the kernel provides to irqcore.
///
/// A one-CPU kernel without interrupt threads implements only
/// [`current_cpu`](Platform::current_cpu) and the three interrupt-flag
/// methods; every other method has a default that is correct there (see
/// each). An SMP kernel must implement [`run_on_cpus`](Platform::run_on_cpus).
///
/// Contexts: every method may be called with local interrupts disabled and
/// from interrupt context, except [`Platform::run_on_cpus`], which is called
/// from process context only (stop-machine). No method is called with a
/// core lock held, except [`Platform::report`], [`Platform::cpu_relax`]
/// and [`Platform::kick_cpu`]: those must not call back into the core (the
/// lock-order checker catches it in debug builds).
pub trait Platform: Sync {
    /// The logical id of the CPU executing this call.
    ///
    /// Two contexts that run at the same time must never get the same id,
    /// and a context must keep its id for the whole of any call into the
    /// core (no migration inside it: pin the thread or disable
    /// preemption). The core's per-CPU read-side state
    /// ([`crate::grace`]) is written only by its own CPU, with plain
    /// loads and stores on the dispatch path; two contexts sharing an id
    /// corrupt it, and a grace period may then end while one of them
    /// still reads what it protects. Test platforms that play CPUs with
    /// threads must give each concurrently running thread its own id.
    fn current_cpu(&self) -> CpuId;

    /// Disables interrupts on the calling CPU and returns the previous state.
    fn local_irq_save(&self) -> IrqFlags;

    /// Restores the state returned by [`Platform::local_irq_save`].
    fn local_irq_restore(&self, flags: IrqFlags);

    /// Whether local interrupts are enabled on the calling CPU.
    fn local_irq_enabled(&self) -> bool;

    /// Busy-wait hint (x86 `pause`, arm64 `yield`).
    fn cpu_relax(&self) {
        core::hint::spin_loop();
    }

    /// Runs `work(cpu)` on every CPU of `cpus` concurrently, each in that
    /// CPU's stopper context (process context, interrupts enabled on entry,
    /// highest priority), and returns once all of them have returned. If the
    /// caller's CPU is in `cpus` it runs its share itself.
    ///
    /// This is the only way irqcore reaches another CPU (stop-machine). It
    /// must not be called for offline CPUs; irqcore never does.
    ///
    /// The default runs `work` inline when `cpus` is exactly the calling
    /// CPU: right for a one-CPU kernel. It cannot reach another CPU, so for
    /// any other mask it runs nothing at all (a partial rendezvous would
    /// wait forever for the CPUs it cannot reach), and stop-machine reports
    /// [`StopMachineError::Incomplete`](crate::stop_machine::StopMachineError::Incomplete):
    /// an SMP kernel must implement this.
    fn run_on_cpus(&self, cpus: &CpuMask, work: &(dyn Fn(CpuId) + Sync)) {
        let me = self.current_cpu();
        if *cpus == CpuMask::of(me) {
            work(me);
        }
    }

    /// Whether [`Platform::synchronize_cpus`] is implemented. When it is, the
    /// dispatcher enters its read-side section ([`crate::grace`]) with a
    /// plain store instead of a locked read-modify-write (one locked
    /// instruction less per interrupt), and every grace period starts with
    /// [`Platform::synchronize_cpus`]. Default: false (the locked entry;
    /// `synchronize_cpus` is never called).
    const SYNCHRONIZE_CPUS: bool = false;

    /// An asymmetric full barrier: returns once every CPU that may run
    /// irqcore code (every CPU started and not parked for good, the caller
    /// included) has executed a full memory barrier (`mfence`, `dmb ish`)
    /// at some point after this call began; the caller's accesses before
    /// the call are ordered before those barriers, and what each CPU did
    /// before its barrier is visible to the caller when the call returns.
    /// Linux's `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` (and what
    /// expedited RCU does with IPIs): an IPI to every other CPU whose
    /// handler executes the barrier and acknowledges, the caller waiting
    /// for the acknowledgements. Only called when
    /// [`Platform::SYNCHRONIZE_CPUS`] is true.
    ///
    /// Called by writers (freeing descriptors, replacing an action list or
    /// a chip), never from the dispatcher, with no core lock held, possibly
    /// with local interrupts disabled and possibly while other CPUs spin in
    /// stop-machine with their interrupts disabled. It must therefore not
    /// wait for a CPU that cannot take the IPI: irqcore calls
    /// [`Platform::cpu_relax`] in every spin of its own, so serving a
    /// pending barrier request there (and in the kernel's own spins, and
    /// in this call's own wait loop, for two concurrent callers) keeps it
    /// from deadlocking.
    fn synchronize_cpus(&self) {}

    /// Whether [`Platform::kick_cpu`] is implemented. When it is, a CPU that
    /// ran an irq's handlers with the descriptor lock dropped ends the run
    /// with a plain store instead of a compare-exchange (one locked
    /// instruction less per edge or fasteoi interrupt), and a lock holder on
    /// another CPU that changed the descriptor while the run went on (an
    /// arrival left PENDING, the line was disabled or moved, a resend was
    /// folded in) queues the run's after-work in the core's resend queue
    /// and kicks the running CPU, which may have ended its run without
    /// seeing the change. Whichever CPU drains the queue first once the run
    /// is over does that work (see [`crate::resend`]). Default: false (the
    /// compare-exchange; `kick_cpu` is never called).
    const KICK_CPU: bool = false;

    /// Interrupts `cpu` so that it drains the core's resend queue: `cpu`
    /// must take an interrupt after this call whose dispatch goes through
    /// [`IrqCore::handle_irq`](crate::IrqCore::handle_irq) (which drains the
    /// queue on its way out) or calls
    /// [`IrqCore::run_resends`](crate::IrqCore::run_resends). A self-IPI
    /// to `cpu` on a vector whose handler is an irqcore irq (the resend IPI
    /// of [`Platform::schedule_resend`] serves) is the usual
    /// implementation; what the caller wrote before the call must be
    /// visible to `cpu` when it takes the interrupt (a fence before the
    /// IPI register write, as every cross-CPU call needs). `cpu` may be the
    /// caller's own CPU.
    ///
    /// Called with a descriptor lock held and local interrupts off, from
    /// any context: it must only send the interrupt, never wait for it
    /// and never call back into the core. Only called when
    /// [`Platform::KICK_CPU`] is true.
    ///
    /// A platform that cannot interrupt another CPU may still set
    /// `KICK_CPU` and do nothing here: the after-work then waits for the
    /// next `handle_irq` on any CPU, as a software resend does with the
    /// default [`Platform::schedule_resend`] (an edge that arrived in the
    /// few instructions between another CPU's last look at the descriptor
    /// and the end of its run is handled that late).
    fn kick_cpu(&self, cpu: CpuId) {
        let _ = cpu;
    }

    /// Runs every cross-CPU function call (IPI callback) still queued for the
    /// calling CPU. Called on a dying CPU with interrupts off, inside
    /// stop-machine, just before it is marked offline, so that no queued call
    /// is stranded. Kernels without a cross-call queue keep the default.
    fn flush_cross_calls(&self) {}

    /// Tells the kernel that `irq` was queued for a software resend (its chip
    /// cannot retrigger it in hardware). Called with no core lock held.
    ///
    /// The core keeps the queue itself and replays it at the end of the next
    /// [`IrqCore::handle_irq`](crate::IrqCore::handle_irq) on any CPU, so the
    /// default (do nothing) is correct: the replay then waits for the next
    /// interrupt (a timer tick). For a prompt replay, raise a softirq or a
    /// self-IPI here and call
    /// [`IrqCore::handle_sw_resend`](crate::IrqCore::handle_sw_resend) (or
    /// [`IrqCore::run_resends`](crate::IrqCore::run_resends)) from it, or
    /// call it right here: each queued resend is delivered exactly once,
    /// whoever gets to it first.
    fn schedule_resend(&self, irq: IrqNumber) {
        let _ = irq;
    }

    /// Wakes the interrupt thread of `action` on `irq`; the thread then calls
    /// [`IrqCore::run_thread`](crate::IrqCore::run_thread) once per wake-up,
    /// and the wake-up returns [`ThreadWake::Queued`]. Called from the
    /// dispatcher with the descriptor lock dropped.
    ///
    /// The default returns [`ThreadWake::RunInline`]: the core runs the
    /// thread function itself at the end of the interrupt (the fallback for
    /// kernels without threads).
    fn wake_thread(&self, irq: IrqNumber, action: ActionId) -> ThreadWake {
        let _ = (irq, action);
        ThreadWake::RunInline
    }

    /// A monotonic clock in nanoseconds, if the kernel has one. The spurious
    /// detector uses it for Linux's rule that an unhandled interrupt more
    /// than 100 ms after the previous one starts the unhandled count afresh,
    /// so a slow, mostly unhandled line is not disabled. The default (no
    /// clock) counts every unhandled interrupt.
    fn now_ns(&self) -> Option<u64> {
        None
    }

    /// Receives notable events (a line disabled as spurious, broken
    /// affinity, an interrupt on a line without a handler). The default
    /// ignores them; a kernel typically logs them. May be called with a
    /// descriptor lock held: it must not call back into the core.
    fn report(&self, event: IrqEvent) {
        let _ = event;
    }
}

/// Events the core reports through [`Platform::report`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqEvent {
    /// The spurious detector disabled the line ("nobody cared"): more than
    /// 99,900 of the last 100,000 interrupts were unhandled. Recover with
    /// [`IrqCore::reenable_spurious`](crate::IrqCore::reenable_spurious) once
    /// the cause is fixed, or by installing another shared handler.
    SpuriousDisabled(IrqNumber),
    /// An interrupt arrived on an irq with no descriptor or the bad flow.
    BadIrq(IrqNumber),
    /// A per-CPU interrupt arrived on a CPU without a handler and was
    /// disabled there.
    SpuriousPerCpu(IrqNumber, CpuId),
    /// A CPU went down and no CPU of the irq's affinity was left online, or
    /// none of those left had room for it (the chip answered
    /// [`ChipError::NoSpace`](crate::ChipError::NoSpace)): it was moved to
    /// any online CPU.
    AffinityBroken(IrqNumber),
    /// A [`Registration`](crate::Registration) was dropped where the handler
    /// cannot be freed (in interrupt context, see
    /// [`IrqError::InInterrupt`](crate::IrqError::InInterrupt)): the handler
    /// stays installed. Free it with
    /// [`IrqCore::free_irq`](crate::IrqCore::free_irq) from process context.
    FreeRefused(IrqNumber),
    /// A [`DescRange`](crate::DescRange) was dropped but its descriptors
    /// could not be freed (`error`: a handler is still installed on one, or
    /// the drop ran in interrupt context): all `count` from `first` stay
    /// allocated. Free them with
    /// [`IrqCore::free_descs`](crate::IrqCore::free_descs) once the cause is
    /// gone.
    DescsNotFreed {
        /// The first irq number of the range.
        first: IrqNumber,
        /// How many.
        count: u32,
        /// Why [`IrqCore::free_descs`](crate::IrqCore::free_descs) refused.
        error: crate::error::IrqError,
    },
    /// A [`HotplugRegistration`](crate::HotplugRegistration) was dropped but
    /// could not unregister its callback (`error`: a transition was
    /// running, or the drop ran in interrupt context): the callback stays.
    /// Unregister it with
    /// [`IrqCore::unregister_hotplug`](crate::IrqCore::unregister_hotplug)
    /// from process context.
    HotplugCallbackKept {
        /// The callback's id.
        id: crate::ids::HotplugId,
        /// Why it could not be unregistered.
        error: crate::error::IrqError,
    },
    /// A [`DomainRegistration`](crate::domain::DomainRegistration) was
    /// dropped but the domain could not be unregistered (it still maps a
    /// hwirq or has a child domain, or the mapping lock could not be taken):
    /// the domain stays. Unregister it with
    /// [`DomainRegistry::remove_domain`](crate::DomainRegistry::remove_domain),
    /// which says why, once the cause is gone.
    DomainKept(crate::ids::DomainId),
}
