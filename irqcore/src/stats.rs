//! Observing interrupts: per-CPU counts, descriptor snapshots and a
//! `/proc/interrupts`-style table.

use crate::chip::TriggerType;
use crate::desc::DescSnapshot;
use crate::error::IrqError;
use crate::ids::{CpuId, IrqNumber};
use crate::instance::IrqCore;
use crate::platform::Platform;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// A `/proc/interrupts`-style table of every allocated irq, printable with
/// `{}`.
///
/// A header names the CPU columns; then one line per irq:
///
/// ```text
///              CPU0       CPU1
///    32:          1          2  IO-APIC   0x1f  edge          edge-r   uart
///    33:          0         17  GICv3     0x1e  percpu_devid  level-h  timer
///    34:          0          0  PIC      0x2a0  level         -        ata0, ata1
/// ```
///
/// irq number; one count per CPU (online CPUs, and any CPU that has
/// counted something); the outermost chip's name and the hwirq at that
/// level, in hex as in Linux's debugfs; the flow; the trigger (`edge-r`,
/// `edge-f`, `edge-b`, `level-h`, `level-l`, or `-` when neither the core
/// nor the chip knows it, see [`DescSnapshot::trigger`](crate::DescSnapshot::trigger));
/// the handler names. The chip, hwirq, flow and trigger columns are as wide
/// as their widest entry, so no value pushes the ones after it out of line.
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
        CpuId::all(self.nr_cpus as usize)
            .map(|c| self.irq_count(irq, c))
            .sum()
    }
}

/// One line of the table before padding.
struct Row {
    irq: IrqNumber,
    counts: Vec<u64>,
    chip: String,
    hwirq: String,
    flow: &'static str,
    trigger: &'static str,
    handlers: String,
}

impl<P: Platform> fmt::Display for InterruptTable<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let core = self.core;
        let mut irqs = Vec::new();
        // Walking needs the sparse lock; if the caller holds it (inside a
        // hotplug phase) print nothing rather than deadlock.
        if core.for_each_irq(|irq| irqs.push(irq)).is_err() {
            return writeln!(
                f,
                "(interrupt table unavailable: sparse lock held by caller)"
            );
        }
        let mut cols = core.online_cpus();
        for &irq in &irqs {
            for c in CpuId::all(core.nr_cpus as usize) {
                if core.irq_count(irq, c) != 0 {
                    cols.set(c);
                }
            }
        }
        let mut rows = Vec::new();
        for irq in irqs {
            let Ok(s) = core.snapshot(irq) else { continue };
            let total: u64 = s.counts.iter().sum();
            if self.only_active && s.handlers.is_empty() && total == 0 {
                continue;
            }
            let (chip, hwirq) = match s.chips.first() {
                Some((c, h)) => (format!("{c:?}"), format!("{:#x}", h.0)),
                None => ("-".into(), "-".into()),
            };
            let names: Vec<&str> = s.handlers.iter().map(|(n, _)| *n).collect();
            rows.push(Row {
                irq,
                counts: cols
                    .iter()
                    .map(|c| s.counts.get(c.index()).copied().unwrap_or(0))
                    .collect(),
                chip,
                hwirq,
                flow: s.flow.name(),
                trigger: trigger_name(s.trigger),
                handlers: names.join(", "),
            });
        }
        let width = |field: fn(&Row) -> usize| rows.iter().map(field).max().unwrap_or(0);
        let chip_w = width(|r| r.chip.len());
        let hw_w = width(|r| r.hwirq.len());
        let flow_w = width(|r| r.flow.len());
        let trig_w = width(|r| r.trigger.len());

        write!(f, "{:>6}", "")?;
        for c in cols.iter() {
            write!(f, " {:>10}", format!("CPU{}", c.get()))?;
        }
        writeln!(f)?;
        for r in &rows {
            let mut line = format!("{:>5}:", r.irq.0);
            for n in &r.counts {
                line.push_str(&format!(" {n:>10}"));
            }
            line.push_str(&format!(
                "  {:<chip_w$}  {:>hw_w$}  {:<flow_w$}  {:<trig_w$}  {}",
                r.chip, r.hwirq, r.flow, r.trigger, r.handlers
            ));
            writeln!(f, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

fn trigger_name(t: TriggerType) -> &'static str {
    match t {
        TriggerType::None => "-",
        TriggerType::EdgeRising => "edge-r",
        TriggerType::EdgeFalling => "edge-f",
        TriggerType::EdgeBoth => "edge-b",
        TriggerType::LevelHigh => "level-h",
        TriggerType::LevelLow => "level-l",
    }
}

impl<P: Platform> IrqCore<P> {
    /// Interrupts of `irq` handled on `cpu`.
    pub fn irq_count(&self, irq: IrqNumber, cpu: CpuId) -> u64 {
        self.section()
            .ok()
            .and_then(|s| self.desc(&s, irq).ok().map(|d| d.count(cpu)))
            .unwrap_or(0)
    }

    /// A snapshot of the descriptor of `irq`.
    pub fn snapshot(&self, irq: IrqNumber) -> Result<DescSnapshot, IrqError> {
        let s = self.section()?;
        let desc = self.desc(&s, irq)?;
        let _irq = self.irq_save();
        Ok(desc.snapshot())
    }
}
