//! Per-CPU statistics and a `/proc/interrupts`-style table.

use crate::ids::{CpuId, IrqNumber};
use crate::instance::IrqCore;
use crate::platform::Platform;
use core::fmt;

/// A `/proc/interrupts`-style table of every allocated irq, printable with
/// `{}`. Columns: irq number, one count per CPU (online CPUs, and any CPU
/// that has counted something), chip name(s), hwirq, flow, trigger and
/// handler name.
pub struct InterruptTable<'a, P: Platform> {
    core: &'a IrqCore<P>,
    /// Skip irqs that have no handler and never fired.
    pub only_active: bool,
}

impl<P: Platform> IrqCore<P> {
    /// The interrupt table (see [`InterruptTable`]).
    pub fn interrupt_table(&self) -> InterruptTable<'_, P> {
        InterruptTable {
            core: self,
            only_active: true,
        }
    }

    /// Sum of the per-CPU counts of `irq`.
    pub fn irq_total(&self, irq: IrqNumber) -> u64 {
        (0..self.nr_cpus)
            .map(|c| self.irq_count(irq, CpuId(c)))
            .sum()
    }
}

impl<P: Platform> fmt::Display for InterruptTable<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let core = self.core;
        let mut irqs = alloc::vec::Vec::new();
        // Walking needs the sparse lock; if the caller holds it (inside a
        // hotplug phase) print nothing rather than deadlock.
        if core.for_each_irq(|irq| irqs.push(irq)).is_err() {
            return writeln!(
                f,
                "(interrupt table unavailable: sparse lock held by caller)"
            );
        }
        let online = core.online_cpus();
        let mut cols = online;
        for &irq in &irqs {
            for c in 0..core.nr_cpus {
                if core.irq_count(irq, CpuId(c)) != 0 {
                    cols.set(CpuId(c));
                }
            }
        }
        write!(f, "{:>6}", "")?;
        for c in cols.iter() {
            write!(f, " {:>10}", alloc::format!("CPU{}", c.0))?;
        }
        writeln!(f)?;
        for irq in irqs {
            let Ok(s) = core.snapshot(irq) else { continue };
            let total: u64 = s.counts.iter().sum();
            if self.only_active && s.handlers.is_empty() && total == 0 {
                continue;
            }
            write!(f, "{:>5}:", irq.0)?;
            for c in cols.iter() {
                write!(f, " {:>10}", s.counts.get(c.index()).copied().unwrap_or(0))?;
            }
            let chip = s
                .chips
                .first()
                .map(|(c, _)| alloc::format!("{c:?}"))
                .unwrap_or_else(|| "-".into());
            let hw = s.chips.first().map(|(_, h)| h.0).unwrap_or(0);
            write!(
                f,
                "  {chip:<10} {hw:>6}  {:<12} {:<8}",
                s.flow.name(),
                trigger_name(s.trigger)
            )?;
            let names: alloc::vec::Vec<&str> = s.handlers.iter().map(|(n, _)| *n).collect();
            writeln!(f, " {}", names.join(", "))?;
        }
        Ok(())
    }
}

fn trigger_name(t: crate::chip::TriggerType) -> &'static str {
    use crate::chip::TriggerType::*;
    match t {
        None => "-",
        EdgeRising => "edge-r",
        EdgeFalling => "edge-f",
        EdgeBoth => "edge-b",
        LevelHigh => "level-h",
        LevelLow => "level-l",
    }
}
