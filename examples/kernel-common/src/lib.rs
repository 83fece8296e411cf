//! What both irqcore reference kernels (`examples/x86-kernel`,
//! `examples/arm64-kernel`) share, so that each keeps only what is
//! architecture specific (issue #19):
//!
//! - [`sync::IrqLock`]: a spin lock taken with local interrupts off, over the
//!   kernel's [`sync::LocalIrq`] (x86: `RFLAGS.IF`; arm64: `DAIF.I`);
//! - [`checks::Checks`]: the in-kernel checks and the `RESULT:` verdict;
//! - [`heap::KernelHeap`]: the global allocator over a fixed RAM region.
//!
//! `no_std` + `alloc`; nothing here touches hardware (the heap only uses
//! the RAM region its caller vouches for).
#![no_std]

extern crate alloc;

pub mod checks;
pub mod heap;
pub mod sync;
