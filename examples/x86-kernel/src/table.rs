//! The interrupt table printed at the end (like `/proc/interrupts`).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use crate::cpu::percpu;
use crate::irq::CORE;
use crate::kprintln;

/// Prints one line per irq: per-CPU counts, chip stack, hwirq, flow, handlers.
pub fn print() {
    let n = percpu::nr_cpus() as usize;
    let mut head = String::from(" IRQ ");
    for c in 0..n {
        let _ = write!(head, "{:>9}", alloc::format!("CPU{c}"));
    }
    let _ = write!(head, "  {:<22} {:>6}  {:<13} name", "chip", "hwirq", "flow");
    kprintln!("{head}");
    let mut irqs = Vec::new();
    let _ = CORE.for_each_irq(|irq| irqs.push(irq));
    irqs.sort();
    for irq in irqs {
        let Ok(s) = CORE.snapshot(irq) else { continue };
        let mut line = alloc::format!("{:>4} ", irq.0);
        for c in 0..n {
            let _ = write!(line, "{:>9}", s.counts.get(c).copied().unwrap_or(0));
        }
        let chips: Vec<String> = s
            .chips
            .iter()
            .map(|(c, _)| alloc::format!("{c:?}"))
            .collect();
        let hw = s.chips.first().map_or(0, |(_, h)| h.0);
        let names: Vec<&str> = s.handlers.iter().map(|(n, _)| *n).collect();
        let _ = write!(
            line,
            "  {:<22} {:>6}  {:<13} {}",
            chips.join("/"),
            hw,
            s.flow.name(),
            names.join(",")
        );
        kprintln!("{line}");
    }
}
