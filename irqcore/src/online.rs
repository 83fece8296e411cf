//! The online-CPU mask: which CPUs take interrupts now.
//!
//! Hotplug ([`crate::hotplug`]) changes it through its phases; a kernel sets
//! the boot CPU directly at early init.

use crate::cpumask::{CpuMask, MAX_CPUS};
use crate::error::IrqError;
use crate::ids::CpuId;
use crate::instance::IrqCore;
use crate::platform::Platform;
use core::sync::atomic::Ordering;

impl<P: Platform> IrqCore<P> {
    /// The CPUs currently online.
    pub fn online_cpus(&self) -> CpuMask {
        let mut m = CpuMask::new();
        for (w, a) in self.online.iter().enumerate() {
            let bits = a.load(Ordering::Acquire);
            for b in 0..64 {
                if bits & (1 << b) != 0 {
                    // The online words only cover ids below MAX_CPUS.
                    if let Some(cpu) = CpuId::from_index(w * 64 + b) {
                        m.set(cpu);
                    }
                }
            }
        }
        m
    }

    /// Whether `cpu` is online.
    pub fn cpu_online(&self, cpu: CpuId) -> bool {
        let i = cpu.index();
        i < MAX_CPUS && self.online[i / 64].load(Ordering::Acquire) & (1 << (i % 64)) != 0
    }

    /// Marks `cpu` online or offline without running hotplug phases. Meant
    /// for the boot CPU at early init (and for tests); use the hotplug API
    /// for every later change.
    pub fn set_cpu_online(&self, cpu: CpuId, online: bool) -> Result<(), IrqError> {
        let i = cpu.index();
        if i >= self.nr_cpus as usize {
            return Err(IrqError::BadCpu(cpu));
        }
        if online {
            self.online[i / 64].fetch_or(1 << (i % 64), Ordering::AcqRel);
        } else {
            self.online[i / 64].fetch_and(!(1 << (i % 64)), Ordering::AcqRel);
        }
        Ok(())
    }
}
