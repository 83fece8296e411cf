//! The interrupt entry: [`IrqCore::handle_irq`] looks the irq up, runs its
//! flow ([`crate::flow`]) and then the work a flow leaves for after its
//! descriptor lock (inline threads, reports, software resends).

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
            .filter(|_| cpu.get() < self.nr_cpus)
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
}
