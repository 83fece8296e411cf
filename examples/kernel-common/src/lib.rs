//! What both irqcore reference kernels (`examples/x86-kernel`,
//! `examples/arm64-kernel`) share, so that each keeps only what is
//! architecture specific (issue #19).
//!
//! **What a port writes**: one [`Arch`] (the executing CPU's id, its
//! interrupt flag, sleep until an interrupt, a microsecond clock, the
//! console's raw write, the kernel's two IPIs, parking a dead CPU, leaving
//! QEMU), installed with [`arch::install`] first thing at boot; plus its
//! boot code, exception vectors, interrupt controllers, devices and CPU
//! start/stop ([`irqcore::CpuControl`]).
//!
//! **What it gets**:
//! - [`irq::CORE`]: the irqcore instance over [`irq::KernelPlatform`]
//!   (resend queue and self-IPI, interrupt thread queue, stopper
//!   rendezvous, event counters);
//! - [`smp`]: the idle loop, `run_on_cpus`, background jobs, cross-CPU
//!   calls, the secondary CPUs' `Starting` handshake;
//! - [`console`] (`kprintln!`), [`checks`] (`check!` and the `RESULT:`
//!   line), [`exit`], [`watchdog`], [`sync::IrqLock`], the heap
//!   ([`heap`]);
//! - [`source`] (per-CPU accounting of interrupt sources), [`ipi_test`]
//!   (cross-call traffic) and [`scenario`] (the steps both kernels' test
//!   scenarios run: hotplug checks, lazy disable, allocation during
//!   hotplug, final checks).
//!
//! `no_std` + `alloc`; nothing here touches hardware (the heap only uses
//! the RAM region its caller vouches for).
#![no_std]

extern crate alloc;

pub mod arch;
pub mod checks;
pub mod console;
pub mod exit;
pub mod heap;
pub mod ipi_test;
pub mod irq;
pub mod scenario;
pub mod smp;
pub mod source;
pub mod sync;
pub mod watchdog;

pub use arch::{Arch, Ipi};

/// Most CPUs a reference kernel runs (QEMU `-smp 1..8`; the GICv2 limit).
pub const MAX_CPUS: usize = 8;
