//! The smallest platform, for the crate's own unit tests: one CPU (the
//! boot CPU), interrupts always off, nothing to run elsewhere.

use crate::cpumask::CpuMask;
use crate::ids::{CpuId, IrqNumber};
use crate::platform::{IrqFlags, Platform};

/// A uniprocessor platform that does nothing but name the boot CPU.
pub(crate) struct BootCpuOnly;

impl Platform for BootCpuOnly {
    fn current_cpu(&self) -> CpuId {
        CpuId::BOOT
    }
    fn local_irq_save(&self) -> IrqFlags {
        IrqFlags(0)
    }
    fn local_irq_restore(&self, _f: IrqFlags) {}
    fn local_irq_enabled(&self) -> bool {
        false
    }
    fn run_on_cpus(&self, _c: &CpuMask, _w: &(dyn Fn(CpuId) + Sync)) {}
    fn schedule_resend(&self, _irq: IrqNumber) {}
}
