//! irqcore: the generic interrupt core for Rust kernels, in the class of
//! Linux's genirq.
//!
//! A kernel implements [`Platform`] (which CPU am I, local interrupt
//! save/restore, run a function on other CPUs, resend, wake a thread),
//! creates one [`IrqCore`] (a `const` constructor, so it can live in a
//! `static`), installs chips ([`IrqChip`]) on descriptors directly or through
//! [`domain`]s, requests handlers, and calls [`IrqCore::handle_irq`] from its
//! interrupt entry.
//!
//! ```
//! use irqcore::*;
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU32, Ordering};
//!
//! // A one-CPU platform (a kernel reads its per-CPU area and RFLAGS/DAIF).
//! struct Up;
//! impl Platform for Up {
//!     fn current_cpu(&self) -> CpuId { CpuId::BOOT }
//!     fn local_irq_save(&self) -> IrqFlags { IrqFlags(0) }
//!     fn local_irq_restore(&self, _: IrqFlags) {}
//!     fn local_irq_enabled(&self) -> bool { false }
//!     // run_on_cpus, schedule_resend and wake_thread keep their one-CPU
//!     // defaults (see `Platform`).
//! }
//!
//! // An interrupt controller with nothing but a mask bit.
//! struct Pic(AtomicU32);
//! impl IrqChip for Pic {
//!     fn name(&self) -> &str { "PIC" }
//!     fn mask(&self, d: &IrqData<'_>) { self.0.fetch_or(1 << d.hwirq().0, Ordering::Relaxed); }
//!     fn unmask(&self, d: &IrqData<'_>) { self.0.fetch_and(!(1 << d.hwirq().0), Ordering::Relaxed); }
//! }
//!
//! static CORE: IrqCore<Up> = IrqCore::new(Up);
//!
//! # fn main() -> Result<(), IrqError> {
//! CORE.set_cpu_online(CpuId::BOOT, true)?;
//! let pic = Arc::new(Pic(AtomicU32::new(u32::MAX)));
//! let descs = CORE.alloc_desc_range(IrqNumber(32), 1)?; // freed on drop
//! let irq = descs.first();
//! CORE.set_chip(irq, vec![ChipLevel::new(pic.clone(), HwIrq(4))], FlowKind::Edge)?;
//!
//! let hits = Arc::new(AtomicU32::new(0));
//! let h = hits.clone();
//! let uart = CORE.request_irq(irq, IrqRequest::new("uart", Arc::new(move |_irq: IrqNumber| {
//!     h.fetch_add(1, Ordering::Relaxed);
//!     IrqReturn::HANDLED
//! })))?;
//! assert_eq!(pic.0.load(Ordering::Relaxed) & (1 << 4), 0, "request started (unmasked) the line");
//!
//! CORE.handle_irq(irq)?; // what the interrupt entry does
//! assert_eq!(hits.load(Ordering::Relaxed), 1);
//! assert_eq!(CORE.irq_count(irq, CpuId::BOOT), 1);
//!
//! drop(uart); // frees the handler and shuts the line down
//! assert_ne!(pic.0.load(Ordering::Relaxed) & (1 << 4), 0);
//! drop(descs); // frees the descriptor
//! assert!(!CORE.is_allocated(irq));
//! # Ok(()) }
//! ```
//!
//! # Modules
//!
//! One concept per module. The public ones:
//! [`platform`] (the trait a kernel implements), [`ids`], [`cpumask`],
//! [`chip`], [`desc`] (the descriptor), [`flow`] (the flow handlers only),
//! [`action`] (handlers), [`store`] (sparse descriptor store), [`grace`]
//! (the reclamation scheme behind lock-free lookup), [`resend`] (software
//! resend), [`hotplug`], [`stop_machine`], [`domain`], [`stats`] (counts,
//! snapshots, the interrupt table), [`lockdep`] (the lock order),
//! [`error`], and `sim` (a simulated multi-CPU platform, feature `sim`).
//!
//! [`IrqCore`]'s methods are grouped by concern in private modules, each
//! with its own `impl IrqCore` block, after Linux's `kernel/irq` split:
//! `instance` (the struct and its constructor), `online` (the online-CPU
//! mask), `context` (calling contexts, the descriptor lock, read-side
//! sections), `allocation` (allocating and freeing descriptors,
//! [`DescRange`]), `reclaim` (dropping what dispatchers may still read),
//! `setup` (chip, flow, trigger), `manage` (request and free,
//! [`Registration`]), `enable` (disable depth, startup and shutdown,
//! synchronize), `affinity`, `spurious` (the unhandled-interrupt detector),
//! `thread` (interrupt threads) and `dispatch` (the interrupt entry,
//! [`IrqCore::handle_irq`]). Two private helpers of the dispatch path:
//! `section` (the dispatcher's read-side section guard) and `counts` (the
//! per-CPU counter rows the store allocates).
//!
//! # Features
//!
//! - `sim`: the `sim` module (threads play CPUs), for tests of this crate,
//!   of backend crates and of kernels; enables `std`.
//! - `std`: links `std` (only the simulator needs it). The library itself is
//!   `#![no_std]` + `alloc` and builds for `x86_64-unknown-none` and
//!   `aarch64-unknown-none`.
//!
//! # Lock order
//!
//! `Hotplug < Domain < Sparse < BusLock < Descriptor < Chip`, checked in
//! debug builds: see [`lockdep`]. The porting guide (`docs/porting.md`)
//! lists the context each call may be made from.
#![no_std]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

extern crate alloc;
#[cfg(any(test, feature = "std"))]
extern crate std;

pub mod action;
mod affinity;
mod allocation;
mod cell_array;
pub mod chip;
mod context;
mod counts;
pub mod cpumask;
pub mod desc;
mod dispatch;
pub mod domain;
mod enable;
pub mod error;
pub mod flow;
pub mod grace;
pub mod hotplug;
pub mod ids;
mod instance;
pub mod lockdep;
mod manage;
mod online;
pub mod platform;
mod reclaim;
pub mod resend;
mod section;
mod setup;
#[cfg(feature = "sim")]
pub mod sim;
mod spurious;
pub mod stats;
pub mod stop_machine;
pub mod store;
pub(crate) mod sync;
#[cfg(test)]
mod test_platform;
#[cfg(all(feature = "sim", not(loom)))]
mod testing;
mod thread;

pub use action::{DevId, IrqHandler, IrqRequest, IrqReturn, RequestFlags};
pub use allocation::DescRange;
pub use chip::{AffinitySet, ChipFlags, ChipLevel, IrqChip, IrqData, MsiMsg, TriggerType};
pub use cpumask::{CpuMask, MAX_CPUS};
pub use desc::{DeliveryFlags, DescSnapshot, LineState};
pub use domain::{
    DomainConfig, DomainError, DomainId, DomainKind, DomainOps, DomainRegistration, DomainRegistry,
    FwSpec, Mapping,
};
pub use error::{ChipError, IrqError};
pub use flow::FlowKind;
pub use hotplug::{CpuControl, CpuPhase, HotplugCallback, HotplugId, HotplugRegistration};
pub use ids::{CpuId, CpuIdOutOfRange, HwIrq, IrqNumber};
pub use instance::{CoreConfig, IrqCore};
pub use lockdep::{LockClass, LockOrder};
pub use manage::Registration;
pub use platform::IrqEvent;
pub use platform::{ActionId, IrqFlags, Platform, ThreadWake};
pub use stats::InterruptTable;
pub use store::SparseGuard;
