//! Xen event channels as an [`irqcore`] interrupt controller.
//!
//! Layers, bottom up:
//!
//! - [`abi`]: the 2-level ABI's shared-memory layouts (`shared_info`,
//!   `vcpu_info`, 64-bit guest; x86-64 and arm differ), the FIFO ABI's
//!   ([`abi::fifo`]: event word, control block, event page) and hypercall
//!   argument structures, checked at compile time against Xen's public
//!   headers.
//! - [`ops`]: the event-channel hypercalls behind [`EventChannelOps`]; the
//!   real x86-64 hypercall page is in `hypercall_x86` (only on x86-64), arm's
//!   `hvc #0xEA1` in `hypercall_arm` (only on aarch64), the hypervisor model
//!   in `model` (feature `model`).
//! - [`port_layer`]: pending/mask/scan operations of one ABI behind
//!   [`PortLayer`], implemented by [`TwoLevel`] (bitmaps, 4096 ports) and
//!   [`Fifo`] (per-vCPU priority queues, 131072 ports, event array grown on
//!   demand); [`port_layer::select`] picks one at boot (FIFO when Xen
//!   offers it, or forced either way with [`AbiChoice`]).
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
//! | FIFO ABI (`Fifo`): `init_control` per vCPU in hotplug prepare, consume loop over 16 queues, unmask with P/BUSY | default when Xen offers it (Xen 4.17 does); `--evtchn 2l` forces 2-level; every scenario runs under both | - | yes; `tests/*_fifo.rs` re-run every 2-level suite |
//! | ABI selection (`port_layer::select`, fallback when `init_control` is refused) | FIFO chosen, `--evtchn` forces either | - | fallback on `-ENOSYS` (`set_fifo_available(false)`) |
//! | FIFO priorities (`EVTCHNOP_set_priority`) | priority 0 served before a priority-15 self-flood | - | yes |
//! | ports beyond 2-level's 4096, event array grown page by page (`expand_array`) | no: Xen 4.17 builds every dom0less domU with `max_evtchn_port` 1023 (no device-tree property raises it); the guest binds and uses all of them, up to the typed `-ENOSPC` (one event-array page) | - | 5,000 ports (5 pages), refused growth, `max_evtchn_port` |
//! | a dead vCPU's FIFO queues drained and re-queued | through the offline/online scenario (no event is left linked there) | - | forced: an event linked on the dead vCPU's queue |
//! | per-vCPU IPI channels, hotplug close/rebind | yes (every vCPU, offline/online) | - | yes |
//! | interdomain channels, rebinding while events flow (seed 004) | loopback to `DOMID_SELF`, 2000 sends while moved ~1000-3000 times, none lost | - | yes, with forced interleavings |
//! | per-vCPU VIRQs (timer) | not used: arm has no PV timer VIRQ; the guest uses the virtual timer PPI | - | yes |
//! | global VIRQs, PIRQs (`PHYSDEVOP_*`), late EOI | - (a dom0less domU has no PIRQs) | - | yes |
//! | seed 003: an SPI retargeted while it fires (`arch-arm64`, not this crate) | GICv3: the PL031's SPI passed through, 300 raises under 2-3 retargeting vCPUs, none lost; GICv2 and emulated SPIs opt-in, see below | - | `arch-arm64`'s GIC model, with Xen's refused moves |
//!
//! Real Xen means the arm64 reference kernel as a dom0less domU of Xen 4.17 under QEMU TCG
//! (`cargo qemu --arch aarch64 --xen`). x86 is proven only against the model: no x86 Xen
//! guest boot exists here (Xen on x86 needs hardware virtualization QEMU TCG does not
//! offer). PIRQs need a domain with physical devices (dom0 or passthrough); late EOI and
//! storm back-off need a backend domain feeding events faster than they are handled, so
//! both are model-only. `cargo test -p xen-evtchn` runs the model suite on the host's
//! (x86) layout; `XEN_EVTCHN_LAYOUT=arm` runs it on the arm layout, and `tests/layouts.rs`
//! always covers both. Every suite also runs under the FIFO ABI (`tests/*_fifo.rs`).
//!
//! Seed 003 on Xen's vGIC is not an event-channel matter but is reported
//! here with the other real-Xen results. The runner passes the PL031 RTC
//! through to the domain; at 2+ vCPUs the kernel moves its SPI between
//! vCPUs through irqcore affinity while the boot vCPU raises it (each
//! raise handled before the next). What it takes on Xen 4.17 (the old
//! vGIC, `CONFIG_NEW_VGIC` off), all in `GicOptions::for_xen_vgic`:
//!
//! - Xen takes one move of a passed-through SPI while an instance is in
//!   flight and applies it after the EOI; a further move before then is
//!   refused and the routing register keeps the older route. The driver
//!   reads the route back and answers `Busy`; irqcore keeps the move
//!   pending and applies it at the next interrupt, without masking the
//!   line (`ChipFlags::MOVE_UNMASKED`), so the last request wins.
//! - Xen retires an EOIed list register only at the vCPU's next trap; an
//!   instance that arrives before then for an SPI with a move pending is
//!   dropped, and the physical SPI stays active. The driver reads a
//!   distributor register right after the EOI of an SPI (a trap) to
//!   narrow that window, and keeps the EOI under the descriptor lock (no
//!   `ChipFlags::EOI_PER_CPU` on Xen), so that no move lands between the
//!   end of a run and its EOI. The window is narrowed, not closed: at 3
//!   vCPUs one boot in 30 still lost a raise (none in 24 at 2 vCPUs, none
//!   in 8 at 4), against about one boot in three with neither measure.
//! - On GICv2 (`--features xen-spi-retarget-gicv2`) the final raise after
//!   the retargeting stops is still lost, or delivered to a vCPU the
//!   route does not name, in about half the boots at 2 vCPUs. When it is
//!   lost, neither vCPU's interface has anything pending (`GICC_HPPIR`
//!   1023 on both) while the RTC holds its line high: Xen took the
//!   physical SPI and no list register is left to deactivate it, the same
//!   drop as above with a window the trap does not close on Xen's GICv2
//!   path (why is not found). While other vCPUs keep moving it, QEMU's
//!   GICv2 (which tracks an SPI's active state per CPU) delivers it to
//!   another CPU, so only the final raise shows the loss.
//!
//! `--features xen-spi-retarget` moves the vpl011's SPI instead, an SPI
//! Xen emulates, and Xen 4.17 fails that:
//!
//! - `vgic_migrate_irq` does nothing for an irq without a physical
//!   descriptor (every emulated SPI), so after a `GICD_IROUTER` write the
//!   SPI can still sit in the old vCPU's in-flight list while the rank
//!   names the new vCPU. An injection then takes the *new* vCPU's lock,
//!   sees it in flight and only marks it queued, while the old vCPU, under
//!   its own lock, retires the list register and, not yet seeing the
//!   queued bit, drops it from its list: the raise is lost (seen in about
//!   one boot in four at 3 vCPUs, after 85..282 raises).
//! - When the injecting vCPU is itself the new target, Xen calls
//!   `gic_update_one_lr` with the old vCPU's list-register index, which can
//!   be `GIC_INVALID_LR`: `BUG()` in `gicv3_ich_read_lr` and a hypervisor
//!   panic, from an unprivileged domU (2 of 5 boots at 2 vCPUs).
//! - Disabling the SPI (`GICD_ICENABLER`) while an edge is queued behind
//!   an active instance drops that edge when the list register retires.
//!   This one a guest can avoid: `arch-arm64`'s
//!   `GicOptions::for_xen_vgic` (which the kernel selects on Xen)
//!   re-routes without the disable/enable bracket used on hardware.
//!
//! The first two are races inside Xen between a route change and an
//! injection from another vCPU; a guest cannot order its route writes to
//! exclude them, because it cannot see (Xen reads `GICD_ISPENDR` and
//! `ISACTIVER` as zero) or control when the old vCPU retires its list
//! register. So the scenario stays opt-in. (Earlier runs on GICv2, 3 and
//! 4 vCPUs with the boot vCPU never a target, passed 300/300; the vGIC
//! code paths above are common to both versions.)
//!
//! # Features
//!
//! - `model`: a behavioural model of Xen's event-channel hypercalls (2-level
//!   and FIFO ABIs, either `shared_info` layout, `VCPUOP_register_vcpu_info`) for host
//!   tests of this crate and of kernels using it. The real hypercall
//!   accessors are compiled for their architecture only.
#![no_std]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

extern crate alloc;

pub mod abi;
pub mod binding;
pub mod channels;
pub mod chip;
pub mod error;
pub mod fifo;
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

pub use binding::{Binder, BoundIrq};
pub use channels::{
    Binding, ChannelKind, Config, EventChannels, LateEoi, MaskReasons, PerVcpuPorts, VcpuState,
};
pub use chip::{DynamicChip, LateEoiChip, PercpuChip, PirqChip};
pub use error::{EvtchnError, XenError};
pub use fifo::Fifo;
pub use ids::{DomId, Pirq, Port, VcpuId, Virq};
pub use irq::{PerVcpuIrqs, XenIrqs};
pub use ops::{ChannelState, ChannelStatus, EventChannelOps};
pub use port_layer::{AbiChoice, EvtchnAbi, PortLayer, Selected};
pub use two_level::TwoLevel;
