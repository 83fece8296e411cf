//! The architecture-specific part a kernel provides: [`Arch`], installed
//! once with [`install`] before anything else runs.

use irqcore::{CpuId, CpuMask};

/// The kernel's own IPIs (each kernel maps them to a vector or an SGI and
/// routes them to [`crate::smp::flush_cross_calls`] and
/// [`crate::irq::drain_resends`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ipi {
    /// Cross-CPU function call; also wakes an idle CPU for stopper work or
    /// a background job.
    CallFunction,
    /// Replays the interrupts irqcore asked to resend (sent to self).
    Resend,
}

/// What a kernel must write for its architecture. Everything else in this
/// crate is built on these.
pub trait Arch: Sync {
    /// The executing CPU's logical id.
    fn cpu_id(&self) -> CpuId;
    /// Whether interrupts are enabled on the executing CPU.
    fn irqs_enabled(&self) -> bool;
    /// Enables interrupts on the executing CPU (process context only).
    fn enable_irqs(&self);
    /// Disables interrupts on the executing CPU.
    fn disable_irqs(&self);
    /// Called with interrupts disabled: sleeps until an interrupt is
    /// pending and returns with interrupts enabled, so that it is taken.
    /// Checking for work with interrupts off and then calling this cannot
    /// miss the interrupt that brings the work (x86: `sti; hlt`; arm64:
    /// `wfi`, then unmask).
    fn wait_for_interrupt(&self);
    /// Microseconds since an arbitrary origin (monotonic).
    fn now_us(&self) -> u64;
    /// Writes `s` to the console, unlocked (callers serialise).
    fn console_write(&self, s: &str);
    /// Sends `ipi` to every CPU of `cpus`.
    fn send_ipi(&self, ipi: Ipi, cpus: &CpuMask);
    /// Parks the executing CPU for good (interrupts off) once irqcore took
    /// it offline; the kernel's `CpuControl::kill_cpu` waits for this.
    fn cpu_dead(&self) -> !;
    /// Ends the run: QEMU exits with `status`.
    fn exit(&self, status: u32) -> !;
}

static ARCH: spin::Once<&'static dyn Arch> = spin::Once::new();

/// Installs the kernel's architecture (once, on the boot CPU, before any
/// other function of this crate runs).
pub fn install(arch: &'static dyn Arch) {
    ARCH.call_once(|| arch);
}

/// The installed architecture ([`NoArch`] before [`install`]).
pub fn arch() -> &'static dyn Arch {
    match ARCH.get() {
        Some(a) => *a,
        None => &NoArch,
    }
}

/// Stand-in before [`install`] (and in host tests): CPU 0, interrupts
/// off, no console, a clock that stands still, `exit` spins.
pub struct NoArch;

impl Arch for NoArch {
    fn cpu_id(&self) -> CpuId {
        CpuId::BOOT
    }
    fn irqs_enabled(&self) -> bool {
        false
    }
    fn enable_irqs(&self) {}
    fn disable_irqs(&self) {}
    fn wait_for_interrupt(&self) {}
    fn now_us(&self) -> u64 {
        0
    }
    fn console_write(&self, _s: &str) {}
    fn send_ipi(&self, _ipi: Ipi, _cpus: &CpuMask) {}
    fn cpu_dead(&self) -> ! {
        loop {
            core::hint::spin_loop();
        }
    }
    fn exit(&self, _status: u32) -> ! {
        loop {
            core::hint::spin_loop();
        }
    }
}

/// The executing CPU (shorthand for `arch().cpu_id()`).
pub fn current_cpu() -> CpuId {
    arch().cpu_id()
}

/// Microseconds (shorthand for `arch().now_us()`).
pub fn now_us() -> u64 {
    arch().now_us()
}
