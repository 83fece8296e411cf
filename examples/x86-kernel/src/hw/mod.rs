//! Minimal hardware access for the reference kernel: port I/O, MSRs and CPU
//! control, the local APIC (through arch-x86), the legacy 8259 and PIT, PCI
//! configuration space. The IOAPICs are arch-x86's `IoApic` (devices.rs).
//!
//! Each driver is a small set of functions so it can later be swapped for
//! the `arch-x86` crate's register-trait based drivers without touching the
//! rest of the kernel. All `asm!` lives in `cpu` and `port`.

pub mod cpu;
pub mod lapic;
pub mod pci;
pub mod pic;
pub mod pit;
pub mod port;
