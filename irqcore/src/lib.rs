//! irqcore: the generic interrupt core (work in progress: see DESIGN.md).
#![no_std]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

extern crate alloc;
#[cfg(any(test, feature = "std"))]
extern crate std;

pub mod action;
pub mod chip;
#[cfg(not(loom))]
pub mod desc;
#[cfg(not(loom))]
pub mod domain;
#[cfg(not(loom))]
mod instance;
pub mod cpumask;
pub mod error;
#[cfg(not(loom))]
pub mod flow;
pub mod grace;
pub mod ids;
#[cfg(not(loom))]
pub mod hotplug;
pub mod lockdep;
pub mod platform;
#[cfg(feature = "sim")]
pub mod sim;
#[cfg(not(loom))]
pub mod stats;
pub mod stop_machine;
#[cfg(not(loom))]
pub mod store;
pub(crate) mod sync;

pub use chip::{AffinitySet, ChipFlags, ChipLevel, IrqChip, IrqData, MsiMsg, TriggerType};
pub use cpumask::{CpuMask, MAX_CPUS};
pub use error::{ChipError, IrqError};
pub use ids::{CpuId, HwIrq, IrqNumber};
pub use platform::{ActionId, IrqFlags, Platform};
pub use action::{DevId, IrqHandler, IrqRequest, IrqReturn, RequestFlags};
#[cfg(not(loom))]
pub use instance::{CoreConfig, IrqCore, Registration};
#[cfg(not(loom))]
pub use desc::{DescSnapshot, IrqState, IrqStatus};
#[cfg(not(loom))]
pub use flow::FlowKind;
pub use platform::IrqEvent;
#[cfg(not(loom))]
pub use store::SparseGuard;
#[cfg(not(loom))]
pub use stats::InterruptTable;
#[cfg(not(loom))]
pub use hotplug::{CpuControl, CpuPhase, HotplugCallback};
pub use lockdep::{LockClass, LockOrder};
#[cfg(not(loom))]
pub use domain::{DomainConfig, DomainError, DomainId, DomainKind, DomainOps, DomainRegistry, FwSpec, Mapping};
