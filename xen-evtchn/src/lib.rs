//! Xen event channels as an [`irqcore`] interrupt controller.
//!
//! Layers, bottom up:
//!
//! - [`abi`]: the 2-level ABI's shared-memory layouts (`shared_info`,
//!   `vcpu_info`, 64-bit guest; x86-64 and arm differ) and hypercall
//!   argument structures, checked at compile time against Xen's public
//!   headers.
//! - [`ops`]: the event-channel hypercalls behind [`EventChannelOps`]; the
//!   real x86-64 hypercall page is in `hypercall_x86` (only on x86-64), arm's
//!   `hvc #0xEA1` in `hypercall_arm` (only on aarch64), the hypervisor model
//!   in `model` (feature `model`).
//! - [`port_layer`]: pending/mask/scan operations of one ABI behind
//!   [`PortLayer`], implemented by [`TwoLevel`] (FIFO can be added later).
//! - [`channels`]: [`EventChannels`], the guest's bookkeeping (bindings,
//!   mask reasons, per-vCPU IPIs and VIRQs, late EOI and storm back-off) and
//!   the upcall with its fair scan.
//! - [`chip`]: the [`irqcore::IrqChip`]s (dynamic/edge, late-EOI/edge,
//!   percpu, PIRQ/fasteoi).
//! - [`irq`]: [`XenIrqs`], the wiring into [`irqcore::IrqCore`]
//!   (descriptors, chips, flows, hotplug prepare/dead, upcall dispatch).
//!
//! Never use the level flow for an event channel: see [`chip`].
//!
//! # What runs where
//!
//! | feature | real Xen, arm64 | real Xen, x86-64 | model only |
//! |---|---|---|---|
//! | hypercalls (`EventChannelOps`) | `hypercall_arm` (`hvc #0xEA1`): alloc_unbound, bind_interdomain, bind_ipi, bind_vcpu, send, close, unmask, status | `hypercall_x86` (hypercall page): compiled, never run on Xen | all, with Xen's errno values |
//! | `shared_info`/`vcpu_info` layout | `abi::arm` (pending at 48), `VCPUOP_register_vcpu_info` on every vCPU | `abi::x86` (pending at 2048), legacy slots | both layouts, registration |
//! | upcall, fair 2-level scan | the GIC PPI (INTID 31 in a domU) | - | yes |
//! | per-vCPU IPI channels, hotplug close/rebind | yes (every vCPU, offline/online) | - | yes |
//! | interdomain channels, rebinding while events flow (seed 004) | loopback to `DOMID_SELF`, 2000 sends while moved ~1000-3000 times, none lost | - | yes, with forced interleavings |
//! | per-vCPU VIRQs (timer) | not used: arm has no PV timer VIRQ; the guest uses the virtual timer PPI | - | yes |
//! | global VIRQs, PIRQs (`PHYSDEVOP_*`), late EOI | - (a dom0less domU has no PIRQs) | - | yes |
//!
//! Real Xen means the arm64 reference kernel as a dom0less domU of Xen 4.17 under QEMU TCG
//! (`cargo qemu --arch aarch64 --xen`). x86 is proven only against the model: no x86 Xen
//! guest boot exists here (Xen on x86 needs hardware virtualization QEMU TCG does not
//! offer). PIRQs need a domain with physical devices (dom0 or passthrough); late EOI and
//! storm back-off need a backend domain feeding events faster than they are handled, so
//! both are model-only. `cargo test -p xen-evtchn` runs the model suite on the host's
//! (x86) layout; `XEN_EVTCHN_LAYOUT=arm` runs it on the arm layout, and `tests/layouts.rs`
//! always covers both.
//!
//! # Features
//!
//! - `model`: a behavioural model of Xen's event-channel hypercalls (2-level
//!   ABI, either `shared_info` layout, `VCPUOP_register_vcpu_info`) for host
//!   tests of this crate and of kernels using it. The real hypercall
//!   accessors are compiled for their architecture only.
#![no_std]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

extern crate alloc;

pub mod abi;
pub mod channels;
pub mod chip;
pub mod error;
#[cfg(target_arch = "aarch64")]
pub mod hypercall_arm;
#[cfg(target_arch = "x86_64")]
pub mod hypercall_x86;
pub mod ids;
pub mod irq;
#[cfg(feature = "model")]
pub mod model;
pub mod ops;
pub mod port_layer;
pub mod two_level;

pub use channels::{
    Binding, ChannelKind, Config, EventChannels, LateEoi, MaskReasons, PerVcpuPorts, VcpuState,
};
pub use chip::{DynamicChip, LateEoiChip, PercpuChip, PirqChip};
pub use error::{EvtchnError, XenError};
pub use ids::{DomId, Pirq, Port, VcpuId, Virq};
pub use irq::{PerVcpuIrqs, XenIrqs};
pub use ops::{ChannelState, ChannelStatus, EventChannelOps};
pub use port_layer::PortLayer;
pub use two_level::TwoLevel;
