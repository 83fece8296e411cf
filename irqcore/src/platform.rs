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

/// What the kernel provides to irqcore.
///
/// Contexts: every method may be called with local interrupts disabled and
/// from interrupt context, except [`Platform::run_on_cpus`], which is called
/// from process context only (stop-machine).
pub trait Platform: Sync {
    /// The logical id of the CPU executing this call.
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
    fn run_on_cpus(&self, cpus: &CpuMask, work: &(dyn Fn(CpuId) + Sync));

    /// Runs every cross-CPU function call (IPI callback) still queued for the
    /// calling CPU. Called on a dying CPU with interrupts off, inside
    /// stop-machine, just before it is marked offline, so that no queued call
    /// is stranded. Kernels without a cross-call queue keep the default.
    fn flush_cross_calls(&self) {}

    /// Arranges for [`IrqCore::handle_sw_resend`](crate::IrqCore::handle_sw_resend)
    /// to be called soon for `irq`, from a context with interrupts disabled
    /// (a softirq/tasklet or a self-IPI), on any CPU. Used when an interrupt
    /// must be replayed and its chip cannot retrigger it in hardware.
    fn schedule_resend(&self, irq: IrqNumber);

    /// Wakes the interrupt thread of `action` on `irq`; the thread then calls
    /// [`IrqCore::run_thread`](crate::IrqCore::run_thread) once per wake-up.
    fn wake_thread(&self, irq: IrqNumber, action: ActionId);

    /// Receives notable events (a line disabled as spurious, broken
    /// affinity, an interrupt on a line without a handler). The default
    /// ignores them; a kernel typically logs them.
    fn report(&self, event: IrqEvent) {
        let _ = event;
    }
}

/// Events the core reports through [`Platform::report`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqEvent {
    /// The spurious detector disabled the line ("nobody cared"): at least
    /// 99,900 of the last 100,000 interrupts were unhandled. Recover with
    /// [`IrqCore::reenable_spurious`](crate::IrqCore::reenable_spurious) once
    /// the cause is fixed, or by installing another shared handler.
    SpuriousDisabled(IrqNumber),
    /// An interrupt arrived on an irq with no descriptor or the bad flow.
    BadIrq(IrqNumber),
    /// A per-CPU interrupt arrived on a CPU without a handler and was
    /// disabled there.
    SpuriousPerCpu(IrqNumber, CpuId),
    /// A CPU went down and no CPU of the irq's affinity was left online: it
    /// was moved to any online CPU.
    AffinityBroken(IrqNumber),
}
