//! Per-CPU processor state: descriptor tables with IST stacks, the
//! interrupt entry, and the per-CPU area reached through GS.

pub mod gdt;
pub mod idt;
pub mod percpu;
