//! arch-x86: the x86 backend of irqcore — local APIC (xAPIC and x2APIC),
//! IOAPIC, the per-CPU vector allocator and vector domain, MSI, and the
//! legacy 8259.
//!
//! # Layout
//!
//! | module | what |
//! |---|---|
//! | [`regs`] | the register-access traits: [`Mmio32`], [`Msr`], [`PortIo`]; the typed register [`Reg32`] |
//! | [`ids`] | [`Vector`] (never an exception vector) and [`ApicId`] |
//! | [`handles`] | owning handles: [`AllocatedVector`] and [`ClaimedPin`] free on drop |
//! | `entry` | (x86_64) interrupt entry stubs for vectors 32-255 that pass the vector to one dispatch function, for `x86_64`-crate IDTs on stable |
//! | [`hw`] | the real accessors (x86_64 only, the crate's only hardware access) |
//! | [`irqsafe`] | [`IrqControl`]: locks shared with interrupt context are taken with interrupts off |
//! | [`lapic`] | the LAPIC driver: EOI, IPIs incl. INIT/SIPI and shorthands, timer, LVTs, spurious and error vectors; its register layout in [`lapic::reg`] |
//! | [`lapic_chip`] | [`LapicTimerChip`] (percpu_devid) and [`LapicIpiChip`] (percpu): the LAPIC's own interrupts as irqcore chips |
//! | [`matrix`] | [`VectorMatrix`]: per-CPU vector bitmaps, system vectors, managed reservations |
//! | [`domains`] | irqcore `DomainOps` for the vector, IOAPIC and MSI domains (refcounted mappings) |
//! | [`vector`] | [`VectorDomain`]: root `IrqChip` of every hierarchy; moves cleaned up on first arrival |
//! | [`ioapic`] | [`IoApic`]: redirection entries and the IOAPIC `IrqChip` level; [`IoApicSet`] for several IOAPICs; its register layout in [`ioapic::reg`] |
//! | [`msi`] | MSI message composition/decoding and the [`MsiChip`] level |
//! | [`pic8259`] | the legacy PIC pair: remap and mask it ([`Pic8259`]), or drive it as an `IrqChip` ([`Pic8259Chip`]) |
//! | [`platform_desc`] | [`PlatformDescription`]: what a kernel reads from the ACPI MADT |
//! | `model` | (feature `model`) behavioural models of all of the above hardware |
//!
//! # Hierarchies
//!
//! Every irq that reaches a CPU through the APIC has the vector domain as its
//! root level. A kernel builds the chip stack of an irq, outermost first, and
//! hands it to `IrqCore::set_chip`:
//!
//! * IOAPIC pin: `[pin.level(), v.level()]` with
//!   `pin = ioapic.claim_pin(irq, pin, trigger, &v.level())?`, flow `Edge`
//!   for edge pins, `FastEoi` for level pins;
//! * MSI: `[ChipLevel::new(msi_chip, HwIrq(index)), v.level()]`, flow `Edge`;
//!
//! where `v = vectors.alloc_vector(irq, &mask, managed)?` (an owning
//! [`AllocatedVector`]; dropping it, and the [`ClaimedPin`], gives the
//! resources back; `VectorDomain::alloc` and `IoApic::alloc_pin` are the raw
//! layer underneath). The interrupt entry for vector `n` on CPU `c` calls
//! `vectors.irq_for_vector(c, n)` (lock-free) and then `IrqCore::handle_irq`.
//! Vectors are [`Vector`]s (never an exception vector) and APIC ids
//! [`ApicId`]s throughout.
//!
//! Lock order: irqcore's descriptor lock → [`VectorDomain`]'s lock /
//! [`IoApic`]'s lock (never both of these at once: the IOAPIC level releases
//! its lock before asking its parent).
//!
//! # Example: bring-up with the real accessors
//!
//! The reference kernel's sequence (boot CPU; `core` is the kernel's
//! `IrqCore`, `desc` its [`PlatformDescription`] filled from the MADT,
//! `this_cpu` returns the logical id from the per-CPU area):
//!
//! ```ignore
//! use arch_x86::hw::{MmioRegion, Msrs, Ports};
//! use arch_x86::lapic::{ApicMode, Lapic, TimerDivide, TimerMode, DEFAULT_SPURIOUS_VECTOR};
//! use arch_x86::{IoApic, LapicOps, MsiDestFormat, Pic8259, Vector, VectorDomain};
//! use irqcore::{CpuId, CpuMask, FlowKind, IrqNumber};
//!
//! // SAFETY: CPL 0; both pages mapped uncached at these virtual addresses.
//! let (lapic_mmio, msrs, ports, ioapic_mmio) = unsafe {
//!     (MmioRegion::new(lapic_va, 0x1000), Msrs::new(), Ports::new(), MmioRegion::new(ioapic_va, 0x1000))
//! };
//! if desc.has_8259 {
//!     Pic8259::new(ports).remap_and_mask()?; // vectors 0x20-0x2F, all masked
//! }
//! let mode = if cpuid_has_x2apic() { ApicMode::X2Apic } else { ApicMode::XApic };
//! // One `Lapic` serves every CPU (the registers are CPU-local); shared, it
//! // is cloned for every user instead of building a second driver.
//! let lapic = Lapic::init(mode, lapic_mmio, msrs)?.into_shared(); // every AP: Lapic::init too
//! lapic.enable(DEFAULT_SPURIOUS_VECTOR);
//! const ERROR: Vector = Vector::of::<0xFE>();
//! const TIMER: Vector = Vector::of::<0xEC>();
//! const CLEANUP: Vector = Vector::of::<0xEF>();
//! lapic.setup_error_interrupt(ERROR);
//! lapic.set_timer_divide(TimerDivide::By16);
//! lapic.start_timer(TimerMode::Periodic, TIMER, 100_000)?; // masked until enable_percpu_irq
//!
//! let ids = desc.apic_ids();
//! let ops = LapicOps::new(lapic.clone(), this_cpu as fn() -> CpuId, &ids, Some(CLEANUP)); // cleanup IPI
//! let vectors = Arc::new(VectorDomain::new(ops, &ids, MsiDestFormat::XApic)?); // locks: IrqControl::DEFAULT
//! if desc.has_8259 {
//!     vectors.reserve_system_vectors(arch_x86::PIC8259_VECTORS)?; // its IRQ 7/15 can fire even masked
//! }
//! vectors.assign_system_vector(CLEANUP)?; // and any other kernel vector inside 0x20..0xEC
//! vectors.cpu_online(CpuId::BOOT)?;         // the boot CPU; APs: through the hotplug phase
//! vectors.register_hotplug(&core)?;
//!
//! let io = &desc.ioapics[0];
//! let ioapic = Arc::new(IoApic::new("IO-APIC", ioapic_mmio, io.gsi_base)?);
//! let route = desc.isa_route(4);  // COM1, MADT overrides applied
//! let irq = core.alloc_descs(IrqNumber(32), 1)?;
//! let v = vectors.alloc_vector(irq, &CpuMask::of(CpuId::BOOT), false)?;
//! let pin = ioapic.claim_pin(irq, route.gsi - io.gsi_base, route.trigger, &v.level())?;
//! let flow = if route.trigger.is_level() { FlowKind::FastEoi } else { FlowKind::Edge };
//! core.set_chip(irq, vec![pin.level(), v.level()], flow)?;
//! // Kept for the kernel's lifetime (or stored, and dropped after free_irq).
//! let _ = (pin.leak(), v.leak());
//!
//! // Interrupt entry for IDT vector `raw` on CPU `c` (interrupts off):
//! //   match Vector::new(raw) { Err(_) => exception, Ok(n) =>
//! //     if let Some(irq) = vectors.irq_for_vector(c, n) { core.handle_irq(irq) } }
//! // Cleanup vector 0xEF: vectors.run_cleanup(c); lapic.eoi().
//! // Timer/IPI vectors: irqs with `LapicTimerChip` (PerCpuDevId) and
//! // `LapicIpiChip` (PerCpu) over `lapic.clone()`; their flows EOI.
//! // 8259 vectors with a `Pic8259Chip`: `pic.classify(n)` first (spurious
//! // IRQ 7/15 are not dispatched), then the irq of the line.
//! // IDT gates for vectors 32-255: `entry::stub_address(n)` and
//! // `entry::set_dispatch(f)` (stable; x86_64 crate: `set_handler_addr`).
//! ```
//!
//! The integration tests (`tests/kernel_path.rs`) run this sequence against
//! the models.
//!
//! # Features
//!
//! - `model`: behavioural models of the LAPIC, IOAPIC, MSI target and 8259
//!   (no_std + alloc), for host tests of this crate and of kernels built on it.
//!   Off by default; the real accessors (`hw`) are compiled for `x86_64` only.
#![no_std]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

extern crate alloc;

pub mod domains;
#[cfg(target_arch = "x86_64")]
pub mod entry;
pub mod handles;
#[cfg(target_arch = "x86_64")]
pub mod hw;
pub mod ids;
pub mod ioapic;
pub mod irqsafe;
pub mod lapic;
pub mod lapic_chip;
pub mod matrix;
#[cfg(feature = "model")]
pub mod model;
pub mod msi;
pub mod pic8259;
pub mod platform_desc;
pub mod regs;
pub mod vector;

pub use handles::{AllocatedVector, ClaimedPin};
pub use ids::{ApicId, ExceptionVector, Vector};
pub use ioapic::{IoApic, IoApicError, IoApicSet, RedirectionEntry};
pub use irqsafe::IrqControl;
pub use lapic::{
    ApicMode, IpiDest, IpiKind, Lapic, LapicError, LvtEntry, LvtSource, TimerDivide, TimerMode,
};
pub use lapic_chip::{LapicIpiChip, LapicTimerChip};
pub use matrix::{PIC8259_VECTORS, VectorError, VectorMatrix};
pub use msi::{MsiChip, MsiDestFormat, MsiDevice, MsiError, MsiTarget, compose_msi, decode_msi};
pub use pic8259::{Pic8259, Pic8259Chip, PicError, PicVector};
pub use platform_desc::{
    CpuInfo, IoApicInfo, IsaOverride, IsaRoute, PlatformDescription, Polarity, TriggerMode,
};
pub use regs::{Mmio32, Msr, NoMmio, PortIo, Reg32, RegValue};
pub use vector::{ApicOps, LapicOps, VectorDomain, VectorHotplug, VectorTarget};
