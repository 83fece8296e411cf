//! arch-arm64: the irqcore backend for the Arm Generic Interrupt Controller,
//! versions 2 and 3.
//!
//! * [`GicV2`]: distributor + memory-mapped CPU interface, SPI routing with
//!   `GICD_ITARGETSR`, SGIs through `GICD_SGIR`.
//! * [`GicV3`]: distributor with affinity routing (`GICD_IROUTER`),
//!   redistributors discovered by `GICR_TYPER` affinity and woken per CPU,
//!   CPU interface through `ICC_*_EL1`, SGIs through `ICC_SGI1R_EL1`.
//!
//! * [`lpi`], [`its`]: GICv3 LPIs (configuration and pending tables) and
//!   the Interrupt Translation Service, MSIs of PCIe devices as LPIs.
//! * [`v2m`]: GICv2m MSI frames, MSIs as SPIs on a GICv2.
//! * [`msi`]: the device level (PCI-MSI) above either.
//!
//! # What is implemented, and where it runs
//!
//! "QEMU" means the reference kernel exercises it under `cargo qemu --arch
//! aarch64` (QEMU 7.2 `virt`, checked by its `RESULT:` line); "model" means
//! host tests run the driver against the behavioural models of the `model`,
//! `its_model` and `v2m_model` modules (feature `model`).
//!
//! | feature | QEMU | model |
//! |---|---|---|
//! | GICv2 distributor + CPU interface, SPIs (fasteoi), PPIs/SGIs (percpu_devid), `ITARGETSR` affinity | `--gic 2` | yes |
//! | GICv3 affinity routing, redistributor wake/sleep, `ICC_*` CPU interface, `ICC_SGI1R` IPIs | `--gic 3` | yes |
//! | split EOI (`EOImode` = 1) | no (off by default) | yes |
//! | CPU hotplug: SPIs re-routed, redistributor asleep on the way down | `--smp 4` | yes |
//! | GICv3 LPIs: `GICR_PROPBASER`/`PENDBASER`, `EnableLPIs`, configuration byte + `INV` for mask/unmask | `--gic 3` (edu's MSI) | yes; the model caches the configuration until `INV`, so a missing `INV` is caught |
//! | ITS: flat device/collection tables and ITTs sized from `GITS_TYPER`/`GITS_BASER`, command queue | `--gic 3`: `MAPD`, `MAPC`, `MAPTI`, `INV`, `INVALL`, `MOVI`, `SYNC` | all of those plus `DISCARD` (the last unmap), `INT` (hardware retrigger), `CLEAR`; command errors stalling the queue |
//! | ITS domain above the GIC-LPI domain, PCI-MSI domain above it, refcounted mappings | `--gic 3`: one edu vector, mapped once, kept | twice-mapped and shared mappings; the last reference `DISCARD`s |
//! | ITS affinity (`MOVI` + `SYNC`), CPU hotplug (`MAPC` on up, events moved off a dying CPU) | `--gic 3 --smp 4`: moved to every CPU, each secondary CPU offline/online with the MSI pinned there | the same, plus events without a descriptor moved by the sweep |
//! | full command queue, ITS that stops reading (`QueueFull`, `Timeout`, irqcore told `Busy` and retrying: last request wins) | no (QEMU executes commands synchronously) | yes |
//! | too-small / misaligned table memory, unmapped device, EventID beyond the ITT, DeviceID beyond the device table (typed errors, state unchanged) | no | yes |
//! | ITS with `PTA` = 1, indirect (two-level) tables, GICv4 vLPIs | no (refused: [`its::ItsError::Unsupported`]) | refusal only |
//! | GICv2m frame: SPI range from `MSI_TYPER` as a domain above the GIC domain, edge SPIs, affinity through the GIC | `--gic 2 --smp 4`: moved to every CPU, hotplug | yes, on GICv2 and GICv3 models; refcounting, an exhausted frame |
//!
//! Both are one [`irqcore::IrqChip`] each, for every INTID class: SPIs use
//! the fasteoi flow, PPIs (timers) and SGIs (IPIs) the percpu_devid flow,
//! whose mask/unmask act on the calling CPU's bank. The hardware number of
//! an irq is its INTID; [`translate_three_cell`] turns a device-tree
//! specifier into one.
//!
//! # Usage
//!
//! On hardware (QEMU `virt`, GICv3; addresses from the device tree or the
//! machine's fixed layout):
//!
//! ```ignore
//! let dist = unsafe { VolatileMmio::new(0x0800_0000, 0x1_0000) };
//! let redist = unsafe { VolatileMmio::new(0x080a_0000, ncpus * 0x2_0000) };
//! let gic = Arc::new(GicV3::new(dist, vec![redist], SysRegAccess, GicOptions::default())?);
//! gic.init_distributor()?;                          // boot CPU, once
//! gic.cpu_starting(CpuId::BOOT)?;                      // boot CPU's own step
//! arch_arm64::register_hotplug(&CORE, gic.clone())?; // secondaries: Starting phase
//! let dom = arch_arm64::add_gic_domain(&registry, gic.clone())?;
//! let uart = registry.map_fwspec(dom, &FwSpec::new(&[0, 1, 4])?)?; // SPI 1, level
//! // IRQ vector:
//! gic.handle_pending(|id| arch_arm64::dispatch(&CORE, |id| registry.find_mapping(dom, id.hwirq()), id));
//! ```
//!
//! The same driver on the host, against the model:
//!
//! ```
//! use arch_arm64::model::{self, GicModel};
//! use arch_arm64::{GicOptions, GicV3, IntId};
//! use irqcore::CpuId;
//!
//! let m = GicModel::new_v3(1, 64);
//! let gic = GicV3::new(m.distributor(), vec![m.redistributors()], m.sysregs(),
//!                      GicOptions::default()).unwrap();
//! model::set_current_cpu(CpuId::BOOT);
//! gic.init_distributor().unwrap();
//! gic.cpu_starting(CpuId::BOOT).unwrap();
//! gic.send_sgi(IntId::sgi(1).unwrap(), arch_arm64::SgiTarget::ToSelf).unwrap();
//! let mut seen = Vec::new();
//! // `false`: no flow ran, so the loop completes the interrupt itself.
//! gic.handle_pending(|id| { seen.push(id.get()); false });
//! assert_eq!(seen, [1]);
//! assert!(m.violations().is_empty());
//! ```
//!
//! # Interrupt entry
//!
//! The kernel's IRQ vector calls `handle_pending(|intid| ...)` on its GIC,
//! mapping the INTID to an irq (`DomainRegistry::find_mapping`, which is
//! interrupt-safe) and calling `IrqCore::handle_irq` ([`dispatch`] does
//! both); the flow handler then completes the interrupt through the chip's
//! `eoi`.
//!
//! # Split EOI mode ([`GicOptions::split_eoi`])
//!
//! With `EOImode` = 1 the two halves of "end of interrupt" are separate
//! writes: *priority drop* (`EOIR`), done by `handle_pending` right after
//! the acknowledge, and *deactivate* (`DIR`), done by the flow's `eoi`
//! callback. Where it helps:
//!
//! * the CPU's running priority is back to idle before the handler runs, so
//!   a handler that re-enables interrupts (or a long chain of handlers) does
//!   not hold off other interrupts of the same priority on this CPU, while
//!   the line itself stays active and cannot fire again until deactivated;
//! * deactivations need not come in the reverse order of acknowledges (with
//!   `EOImode` = 0, every `EOIR` must be for the most recent acknowledge);
//! * it is the mode a hypervisor needs to forward a physical interrupt to a
//!   guest that deactivates it.
//!
//! It costs one more register write per interrupt, so it is off by default.
//!
//! # CPU hotplug
//!
//! `cpu_starting(cpu)` runs on the CPU coming up (irqcore's Starting
//! phase), before any driver enables its PPIs there: it wakes the GICv3
//! redistributor first, then configures SGIs/PPIs and the CPU interface.
//! `cpu_dying(cpu)` runs on the CPU going down (Dying phase, inside
//! stop-machine): it stops the CPU interface, re-routes SPIs still aimed at
//! the CPU and puts the redistributor to sleep.
//!
//! # Hardware access
//!
//! Only through [`Mmio`] and [`GicSysRegs`]; the real implementations are
//! in [`hw`] (`asm!` for system registers only on aarch64). The
//! `model` module (feature `model`) implements both traits with a behavioural
//! GIC so the same drivers run in host tests.
//!
//! # Why not the `arm-gic` crate
//!
//! Google's `arm-gic` (0.10) was evaluated: its CPU interface is a set of
//! free functions over the calling CPU's global system registers and its
//! fakes are one global, flat register file without behaviour, so several
//! modelled CPUs with their own interface state cannot coexist in one test;
//! it owns the MMIO (`UniqueMmioPointer`, `&mut self`) instead of going
//! through a trait we can back with a model; redistributors are indexed by
//! a linear CPU number rather than found by affinity; and it has no split
//! EOI (`ICC_DIR_EL1`/`GICC_DIR`) support. The register layout here follows
//! the same specification chapters.
//!
//! # MSIs
//!
//! ```text
//! PCI-MSI (msi::MsiDeviceDomain, hwirq = vector)
//!   -> ITS (its::ItsDomain, hwirq = DeviceID << 32 | EventID)
//!        -> GIC-LPI (lpi::LpiDomain, hwirq = LPI INTID) -> GicV3 completes it
//!   -> GICv2m (v2m::V2mDomain, hwirq = SPI INTID)
//!        -> GIC domain (the SPI)
//! ```
//!
//! The kernel provides the tables' memory ([`dma::DmaAllocator`]: physically
//! contiguous and aligned; [`hw::IdentityRegion`] wraps identity-mapped
//! RAM), registers the domains, maps its device's vectors in the top one
//! and dispatches LPIs through the GIC-LPI domain. The reference kernel's
//! `examples/arm64-kernel/src/msi.rs` is a complete example.
//!
//! # Features
//!
//! - `model`: a behavioural model of the GIC (distributor, redistributors,
//!   CPU interfaces, LPIs), of the ITS and of a GICv2m frame, with simulated
//!   physical memory for their tables (`mem_model`), behind the same
//!   register traits; pulls in `std`.
//! - `std`: links `std` (needed by `model`).
//!   The `asm!` system-register accessors are compiled for `aarch64` only.
#![no_std]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

extern crate alloc;
#[cfg(any(test, feature = "std"))]
extern crate std;

mod common;
pub mod dma;
pub mod gicv2;
pub mod gicv3;
pub mod glue;
pub mod hw;
pub mod intid;
pub mod its;
pub mod its_cmd;
#[cfg(any(test, feature = "model"))]
pub mod its_model;
pub mod lpi;
#[cfg(any(test, feature = "model"))]
pub mod mem_model;
#[cfg(any(test, feature = "model"))]
pub mod model;
pub mod msi;
pub mod regs;
pub mod v2m;
#[cfg(any(test, feature = "model"))]
pub mod v2m_model;

pub use common::{GicError, GicOptions, SgiTarget};
pub use gicv2::GicV2;
pub use gicv3::{GicV3, Redistributor};
pub use glue::{
    Gic, GicDomain, GicHotplug, add_gic_domain, attach, dispatch, flow_for, register_hotplug,
};
pub use intid::{FW_TYPE_PPI, FW_TYPE_SPI, IntId, IntKind, translate_three_cell};
pub use regs::{GicSysRegs, IccReg, Mmio};
