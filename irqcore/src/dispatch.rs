//! The interrupt entry: [`IrqCore::handle_irq`] looks the irq up, runs its
//! flow ([`crate::flow`]) and then the work a flow leaves for after its
//! descriptor lock (inline threads, reports, software resends).

use crate::cpumask::MAX_CPUS;
use crate::desc::IrqDesc;
use crate::error::IrqError;
use crate::ids::{CpuId, IrqNumber};
use crate::instance::IrqCore;
use crate::platform::{IrqEvent, Platform};
use crate::section::IrqSection;
use core::sync::atomic::Ordering;

/// `IrqDesc::exit_work` bits: work a flow leaves for `handle_irq` to do once
/// the descriptor lock is dropped.
pub(crate) const EXIT_INLINE_THREADS: u8 = 1 << 0;
/// See [`EXIT_INLINE_THREADS`].
pub(crate) const EXIT_REPORT_SPURIOUS: u8 = 1 << 1;

/// What [`IrqCore::handle_irq`]'s work found (fits in a register).
enum Dispatched {
    /// The flow ran.
    Done,
    /// No descriptor for the irq.
    NoDesc,
    /// The calling CPU's id is at or above `nr_cpus`.
    BadCpu(CpuId),
}

// `irq_epoch` masks a CPU index with `MAX_CPUS - 1`.
static_assertions::const_assert!(MAX_CPUS.is_power_of_two());

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
    #[inline]
    pub fn handle_irq(&self, irq: IrqNumber) -> Result<(), IrqError> {
        // The work is out of line and answers in a register; the error is
        // built here, in the caller, which usually only tests it.
        match self.dispatch(irq) {
            Dispatched::Done => Ok(()),
            Dispatched::NoDesc => Err(IrqError::UnknownIrq(irq)),
            Dispatched::BadCpu(cpu) => Err(IrqError::BadCpu(cpu)),
        }
    }

    /// [`IrqCore::handle_irq`]'s work.
    #[inline(never)]
    fn dispatch(&self, irq: IrqNumber) -> Dispatched {
        let (cpu, epoch) = match self.irq_cpu_slot() {
            Ok(found) => found,
            Err(cpu) => return Dispatched::BadCpu(cpu),
        };
        let sec = IrqSection::enter::<P>(epoch);
        let r = match self.store.lookup(irq) {
            Some(desc) => {
                self.dispatch_flow(desc, cpu, &sec);
                if desc.exit_work.load(Ordering::Relaxed) != 0 {
                    self.exit_work(desc, &sec);
                }
                Dispatched::Done
            }
            None => {
                self.bad_irq(irq);
                Dispatched::NoDesc
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

    /// No descriptor for `irq`: reported.
    #[cold]
    #[inline(never)]
    fn bad_irq(&self, irq: IrqNumber) {
        self.platform.report(IrqEvent::BadIrq(irq));
    }

    /// The calling CPU and its read-side slot, for an interrupt-context
    /// section (a CPU id beyond `nr_cpus` is refused).
    #[inline]
    pub(crate) fn irq_epoch(&self) -> Result<(CpuId, &crate::grace::CpuEpoch), IrqError> {
        self.irq_cpu_slot().map_err(IrqError::BadCpu)
    }

    /// [`IrqCore::irq_epoch`] with the refused CPU as the error.
    #[inline(always)]
    fn irq_cpu_slot(&self) -> Result<(CpuId, &crate::grace::CpuEpoch), CpuId> {
        let cpu = self.platform.current_cpu();
        if cpu.get() >= self.nr_cpus {
            return Err(cpu);
        }
        // A `CpuId` is below `MAX_CPUS`, a power of two, by construction:
        // the mask changes nothing but lets the compiler drop the array's
        // own bounds check (`nr_cpus <= MAX_CPUS` is the one that matters).
        Ok((cpu, &self.epochs[cpu.index() & (MAX_CPUS - 1)]))
    }

    /// Work a flow left for after its descriptor lock was dropped: inline
    /// thread functions and a spurious-disable report (the caller checked
    /// there is some: rare, out of the dispatcher's straight line).
    #[cold]
    #[inline(never)]
    fn exit_work(&self, desc: &IrqDesc, sec: &IrqSection<'_>) {
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
}
