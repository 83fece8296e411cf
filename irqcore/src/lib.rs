//! irqcore: the generic interrupt core (work in progress: see DESIGN.md).
#![no_std]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

extern crate alloc;
#[cfg(any(test, feature = "std"))]
extern crate std;

pub mod chip;
pub mod cpumask;
pub mod error;
pub mod ids;
pub mod platform;
#[cfg(feature = "sim")]
pub mod sim;
pub mod stop_machine;

pub use chip::{AffinitySet, ChipFlags, ChipLevel, IrqChip, IrqData, MsiMsg, TriggerType};
pub use cpumask::{CpuMask, MAX_CPUS};
pub use error::{ChipError, IrqError};
pub use ids::{CpuId, HwIrq, IrqNumber};
pub use platform::{ActionId, IrqFlags, Platform};
