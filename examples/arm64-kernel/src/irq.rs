//! The kernel's use of arch-arm64: the domain registry with the GIC's
//! domain, GIC discovery, the IRQ entry, and the SGIs that carry
//! kernel-common's IPIs.

use alloc::sync::Arc;
use alloc::vec;
use core::sync::atomic::{AtomicU32, Ordering};

use arch_arm64::hw::{SysRegAccess, VolatileMmio};
use arch_arm64::{Gic, GicOptions, GicV2, GicV3, IntId, SgiTarget};
use irqcore::domain::{DomainId, DomainRegistry, FwSpec};
use irqcore::{
    CpuId, CpuMask, DevId, HwIrq, IrqNumber, IrqRequest, IrqReturn, RequestFlags, TriggerType,
};

use crate::cpu::{self, MAX_CPUS};

/// QEMU `virt`'s fixed memory map (hw/arm/virt.c `base_memmap`; the device
/// tree QEMU generates says the same): the distributor at 0x0800_0000 in
/// both versions; GICv2's CPU interface at 0x0801_0000; GICv3's
/// redistributors from 0x080A_0000, 128 KiB (two 64 KiB frames) per CPU.
mod layout {
    pub const GICD: usize = 0x0800_0000;
    pub const GICD_SIZE: usize = 0x1_0000;
    pub const GICC: usize = 0x0801_0000;
    pub const GICC_SIZE: usize = 0x1_0000;
    pub const GICR: usize = 0x080A_0000;
    pub const GICR_PER_CPU: usize = 0x2_0000;
}

/// Where the GIC's frames are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GicFrames {
    /// Distributor base.
    pub gicd: usize,
    /// GICv3: first redistributor; GICv2: CPU interface.
    pub second: usize,
    /// Size of the GICv2 CPU interface.
    pub gicc_size: usize,
}

impl GicFrames {
    /// QEMU `virt`'s fixed layout.
    pub const VIRT: GicFrames = GicFrames {
        gicd: layout::GICD,
        second: layout::GICR,
        gicc_size: layout::GICC_SIZE,
    };

    /// The frames a device tree's interrupt controller `reg` names (Xen
    /// guests: 0x0300_1000 and 0x0302_0000 or 0x0300_2000).
    pub fn from_reg(reg: [(u64, u64); 2], v3: bool) -> Option<GicFrames> {
        let [(gicd, _), (second, size)] = reg;
        (gicd != 0 && second != 0 && gicd < 0x4000_0000 && second < 0x4000_0000).then_some(
            GicFrames {
                gicd: gicd as usize,
                second: second as usize,
                gicc_size: if v3 { 0 } else { (size as usize).max(0x2000) },
            },
        )
    }
}

/// The SGIs this kernel uses as IPIs.
pub mod sgi {
    /// Cross-CPU function call; also wakes a CPU for stopper work.
    pub const CALL_FUNCTION: u32 = 0;
    /// Self-IPI that replays interrupts irqcore asked to resend.
    pub const RESEND: u32 = 1;
}

// irqcore's instance and its counters are kernel-common's (re-exported for
// this kernel's modules and the Xen scenario).
pub use kernel_common::irq::{CORE, KernelPlatform, REPORTED_EVENTS, RESENDS, UNMAPPED};

/// Interrupt domains (only the GIC's here).
pub static REGISTRY: DomainRegistry<'static, KernelPlatform> = DomainRegistry::new(&CORE);

static GIC: spin::Once<Arc<dyn Gic>> = spin::Once::new();
static GIC_DOMAIN: spin::Once<DomainId> = spin::Once::new();

/// Redistributors the GICv3 driver found (one per CPU; 0 with a GICv2).
pub static REDISTRIBUTORS: AtomicU32 = AtomicU32::new(0);

/// Which GIC the machine has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicVersion {
    /// GICv2 (`-M virt,gic-version=2`).
    V2,
    /// GICv3 (`-M virt,gic-version=3`).
    V3,
}

/// The GIC (after [`init_gic`]).
pub fn gic() -> Option<&'static Arc<dyn Gic>> {
    GIC.get()
}

/// The GIC's interrupt domain (after [`init_gic`]).
pub fn gic_domain() -> Option<DomainId> {
    GIC_DOMAIN.get().copied()
}

/// Finds and initialises the GIC on the boot CPU: the version from
/// `ID_AA64PFR0_EL1.GIC` (a GICv3 CPU interface is present exactly when
/// the machine has a GICv3), the frames from the `virt` layout (see
/// [`layout`]). Then the distributor, the boot CPU's own part, the hotplug
/// callback (before any PPI user registers its own) and the domain.
pub fn init_gic() -> Result<GicVersion, &'static str> {
    init_gic_at(None)
}

/// [`init_gic`] with the frames at `frames` (`None`: QEMU `virt`'s).
pub fn init_gic_at(frames: Option<GicFrames>) -> Result<GicVersion, &'static str> {
    init_gic_with(frames, gic_options())
}

/// [`init_gic_at`] for Xen's virtual GIC ([`GicOptions::for_xen_vgic`]).
pub fn init_gic_xen(frames: Option<GicFrames>) -> Result<GicVersion, &'static str> {
    init_gic_with(frames, gic_options().for_xen_vgic())
}

fn gic_options() -> GicOptions {
    GicOptions {
        max_cpus: MAX_CPUS,
        ..GicOptions::default()
    }
}

fn init_gic_with(frames: Option<GicFrames>, opts: GicOptions) -> Result<GicVersion, &'static str> {
    let (version, gic): (GicVersion, Arc<dyn Gic>) = if cpu::has_gicv3_sysregs() {
        let f = frames.unwrap_or(GicFrames::VIRT);
        // SAFETY: the distributor and redistributor frames of QEMU virt (or
        // those the device tree names), identity-mapped as device memory by
        // the boot code (everything below 1 GiB); only the GIC driver uses
        // them.
        let (dist, redist) = unsafe {
            (
                VolatileMmio::new(f.gicd, layout::GICD_SIZE),
                VolatileMmio::new(f.second, MAX_CPUS * layout::GICR_PER_CPU),
            )
        };
        let g = GicV3::new(dist, vec![redist], SysRegAccess, opts)
            .map_err(|_| "GICv3: no redistributors")?;
        REDISTRIBUTORS.store(g.redistributors().len() as u32, Ordering::Relaxed);
        (GicVersion::V3, Arc::new(g))
    } else {
        let (gicd, gicc, gicc_size) = match frames {
            Some(f) => (f.gicd, f.second, f.gicc_size),
            None => (layout::GICD, layout::GICC, layout::GICC_SIZE),
        };
        // SAFETY: as above, for the GICv2 distributor and CPU interface.
        let (dist, cpuif) = unsafe {
            (
                VolatileMmio::new(gicd, layout::GICD_SIZE),
                VolatileMmio::new(gicc, gicc_size),
            )
        };
        let g = GicV2::new(dist, cpuif, opts).map_err(|_| "GICv2: bad frames")?;
        (GicVersion::V2, Arc::new(g))
    };
    gic.init_distributor().map_err(|_| "GIC distributor init")?;
    gic.cpu_starting(CpuId::BOOT)
        .map_err(|_| "GIC cpu_starting on the boot CPU")?;
    arch_arm64::register_hotplug(&CORE, gic.clone()).map_err(|_| "GIC hotplug callback")?;
    let dom = arch_arm64::add_gic_domain(&REGISTRY, gic.clone()).map_err(|_| "GIC domain")?;
    GIC.call_once(|| gic);
    GIC_DOMAIN.call_once(|| dom);
    Ok(version)
}

/// Maps a device-tree GIC specifier `<type number flags>` to an irq (the
/// mapping is kept for the kernel's lifetime).
pub fn map_fwspec(cells: &[u32]) -> Result<IrqNumber, &'static str> {
    let dom = gic_domain().ok_or("GIC not initialised")?;
    let spec = FwSpec::new(cells).map_err(|_| "bad specifier")?;
    REGISTRY
        .map_fwspec(dom, &spec)
        .map(|m| m.into_raw())
        .map_err(|_| "map_fwspec")
}

/// Maps an SGI (no device-tree specifier exists for SGIs: the hwirq is the
/// INTID).
fn map_sgi(n: u32) -> Result<IrqNumber, &'static str> {
    let dom = gic_domain().ok_or("GIC not initialised")?;
    REGISTRY
        .map(dom, HwIrq(u64::from(n)))
        .map(|m| m.into_raw())
        .map_err(|_| "map SGI")
}

/// The IRQ vector's work (IRQs masked): acknowledge through the GIC, map the
/// INTID to its irq in the GIC domain, run its flow in irqcore.
pub fn entry() {
    // Offline, the GIC CPU interface is disabled (GicHotplug's dying step).
    kernel_common::irq::note_arrival(cpu::current());
    let (Some(gic), Some(dom)) = (gic(), gic_domain()) else {
        return;
    };
    gic.handle_pending_dyn(&mut |id: IntId| {
        // LPIs (ITS MSIs) live in the GIC-LPI domain, the rest in the GIC's.
        let dom = match crate::msi::lpi_domain() {
            Some(lpi) if id.is_lpi() => lpi,
            _ => dom,
        };
        let ran = arch_arm64::dispatch(&CORE, |id| REGISTRY.find_mapping(dom, id.hwirq()), id);
        if !ran {
            UNMAPPED.fetch_add(1, Ordering::Relaxed);
        }
        ran
    });
}

// ----- the kernel's own IPIs -------------------------------------------------

/// irq numbers of the kernel's SGIs.
pub struct Ipis {
    /// [`sgi::CALL_FUNCTION`].
    pub call: IrqNumber,
    /// [`sgi::RESEND`].
    pub resend: IrqNumber,
}

static IPIS: spin::Once<Ipis> = spin::Once::new();

/// The kernel's SGIs (after [`setup_ipis`]).
pub fn ipis() -> Option<&'static Ipis> {
    IPIS.get()
}

/// Maps the kernel's SGIs and installs their per-CPU handlers; each CPU
/// enables them for itself ([`enable_local_ipis`]).
pub fn setup_ipis() -> Result<(), &'static str> {
    let call = map_sgi(sgi::CALL_FUNCTION)?;
    let resend = map_sgi(sgi::RESEND)?;
    let req = |name, f: fn()| {
        IrqRequest::new(
            name,
            Arc::new(move |_irq: IrqNumber| {
                f();
                IrqReturn::HANDLED
            }),
        )
        .flags(RequestFlags::PERCPU)
    };
    CORE.request_irq_raw(
        call,
        req("ipi-call", kernel_common::smp::flush_cross_calls).dev_id(DevId(0x1001)),
    )
    .map_err(|_| "request IPI call")?;
    CORE.request_irq_raw(
        resend,
        req("ipi-resend", kernel_common::irq::drain_resends).dev_id(DevId(0x1002)),
    )
    .map_err(|_| "request IPI resend")?;
    IPIS.call_once(|| Ipis { call, resend });
    Ok(())
}

/// Enables the kernel's SGIs on the calling CPU.
pub fn enable_local_ipis() -> Result<(), irqcore::IrqError> {
    if let Some(i) = ipis() {
        CORE.enable_percpu_irq(i.call, TriggerType::None)?;
        CORE.enable_percpu_irq(i.resend, TriggerType::None)?;
    }
    Ok(())
}

/// Sends SGI `n` to the CPUs of `targets`.
pub fn send_sgi(n: u32, targets: &CpuMask) {
    // SAFETY: a barrier only, no memory access. A DMB does not order the
    // GICv3 `ICC_SGI1R_EL1` system-register write after earlier
    // normal-memory stores; the DSB completes those stores (a queued
    // cross-call, a queued resend or kick) before the SGI can reach its
    // targets, as Linux's GICv3 driver does before the same write. It
    // also covers GICv2's memory-mapped `GICD_SGIR`.
    unsafe { core::arch::asm!("dsb ishst", options(nostack, preserves_flags)) };
    if let (Some(g), Some(id)) = (gic(), IntId::sgi(n))
        && g.send_sgi(id, SgiTarget::Cpus(targets)).is_err()
    {
        REPORTED_EVENTS.fetch_add(1, Ordering::Relaxed);
    }
}
