//! MSIs from QEMU's `edu` PCI device through irqcore's domain hierarchy:
//!
//! ```text
//! GICv3: edu (PCI-MSI, vector 0) -> ITS (DeviceID = requester ID, EventID 0)
//!        -> GIC-LPI (an LPI) -> GICv3
//! GICv2: edu (PCI-MSI, vector 0) -> GICv2m (an SPI of the frame) -> GIC
//! ```
//!
//! The LPI and ITS tables come from the kernel heap (identity-mapped
//! normal memory: virtual = physical). A generator in the boot CPU's timer
//! tick keeps one MSI in flight (edu's status register merges raises, so a
//! second raise before the ack would be lost by design, not by the
//! interrupt path); every one raised must be handled exactly once, on a CPU
//! the interrupt's affinity allows, while the phase here moves the
//! affinity over every CPU and takes each secondary CPU offline and online
//! again with the MSI pinned to it.

use alloc::alloc::{Layout, alloc_zeroed, dealloc};
use alloc::boxed::Box;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arch_arm64::dma::{DmaAllocator, DmaError, DmaRegion};
use arch_arm64::hw::{IdentityRegion, VolatileMmio};
use arch_arm64::its::{Its, ItsOptions, PlatformIrqs, add_its_domain, register_its_hotplug};
use arch_arm64::its_cmd::DeviceId;
use arch_arm64::lpi::{LpiTables, add_lpi_domain};
use arch_arm64::msi::{ItsDeviceParent, MsiDeviceChip, add_msi_device_domain};
use arch_arm64::regs::{gits, v2m};
use arch_arm64::v2m::{V2mFrame, add_v2m_domain};
use irqcore::domain::DomainId;
use irqcore::{CpuId, CpuMask, DevId, HwIrq, IrqNumber, IrqRequest, IrqReturn, LineState};

use crate::irq::{self, CORE, KernelPlatform, REGISTRY};
use crate::pci::{self, PciMsi};
use crate::smp::KernelCpuControl;
use crate::{check, cpu, fdt, kprintln, time};
use kernel_common::source::{Source, mask_bits};

/// Bound on "soon" (see `scenario::PATIENCE_US`).
const PATIENCE_US: u64 = 5_000_000;
/// MSIs handled on the target CPU after each move.
const PER_MOVE: u64 = 3;

// ----- table memory ------------------------------------------------------------

/// GIC table memory from the kernel heap: RAM is identity-mapped, so a heap
/// block's address is its physical address.
struct HeapDma;

struct HeapRegion {
    region: IdentityRegion,
    ptr: *mut u8,
    layout: Layout,
}

// SAFETY: the block is owned by this value alone; `IdentityRegion`'s
// accesses are volatile and need no thread affinity.
unsafe impl Send for HeapRegion {}
// SAFETY: as above; concurrent accesses are single bytes/doublewords.
unsafe impl Sync for HeapRegion {}

impl Drop for HeapRegion {
    fn drop(&mut self) {
        // SAFETY: allocated in `alloc_zeroed` with this layout; the GIC no
        // longer uses it (the drivers drop a table only after the command
        // that stops its use completed).
        unsafe { dealloc(self.ptr, self.layout) }
    }
}

impl DmaRegion for HeapRegion {
    fn phys(&self) -> u64 {
        self.region.phys()
    }
    fn len(&self) -> usize {
        self.region.len()
    }
    fn read_u8(&self, offset: usize) -> u8 {
        self.region.read_u8(offset)
    }
    fn write_u8(&self, offset: usize, value: u8) {
        self.region.write_u8(offset, value)
    }
    fn read_u64(&self, offset: usize) -> u64 {
        self.region.read_u64(offset)
    }
    fn write_u64(&self, offset: usize, value: u64) {
        self.region.write_u64(offset, value)
    }
    fn publish(&self, offset: usize, len: usize) {
        self.region.publish(offset, len)
    }
}

impl DmaAllocator for HeapDma {
    fn alloc_zeroed(&self, size: usize, align: usize) -> Result<Box<dyn DmaRegion>, DmaError> {
        let layout = Layout::from_size_align(size.max(8), align.max(8))
            .map_err(|_| DmaError::OutOfMemory { size, align })?;
        // SAFETY: a non-zero-sized layout.
        let ptr = unsafe { alloc_zeroed(layout) };
        if ptr.is_null() {
            return Err(DmaError::OutOfMemory { size, align });
        }
        Ok(Box::new(HeapRegion {
            // SAFETY: a fresh heap block of `layout.size()` bytes in
            // identity-mapped normal RAM, owned by this region until drop.
            region: unsafe { IdentityRegion::new(ptr as usize, layout.size()) },
            ptr,
            layout,
        }))
    }
}

// ----- the edu device ------------------------------------------------------------

/// edu registers (QEMU `hw/misc/edu.c`).
const EDU_ID: usize = 0x00;
const EDU_STATUS: usize = 0x24;
const EDU_RAISE: usize = 0x60;
const EDU_ACK: usize = 0x64;

/// The edu function with MSI, and its bookkeeping.
pub struct Edu {
    /// Per-CPU arrivals and the CPUs allowed.
    pub src: Source,
    mmio: AtomicU64,
    irq: AtomicU64,
    /// MSIs raised.
    pub raised: AtomicU64,
    /// Handler calls that found a status bit and acked it.
    pub handled: AtomicU64,
    /// Handler calls that found nothing.
    pub unhandled: AtomicU64,
    in_flight: AtomicBool,
    /// Stops the generator.
    pub paused: AtomicBool,
    /// Handler calls so far (feature `drop-edu-msi` ignores every second).
    calls: AtomicU64,
}

/// The edu device.
pub static EDU: Edu = Edu {
    src: Source::new("edu-msi"),
    mmio: AtomicU64::new(0),
    irq: AtomicU64::new(0),
    raised: AtomicU64::new(0),
    handled: AtomicU64::new(0),
    unhandled: AtomicU64::new(0),
    in_flight: AtomicBool::new(false),
    paused: AtomicBool::new(true),
    calls: AtomicU64::new(0),
};

impl Edu {
    fn reg(&self, off: usize) -> *mut u32 {
        (self.mmio.load(Ordering::Relaxed) as usize + off) as *mut u32
    }

    fn read(&self, off: usize) -> u32 {
        // SAFETY: BAR0 of the edu function (assigned by `pci::setup_edu`
        // in the identity-mapped device region); 32-bit registers.
        unsafe { core::ptr::read_volatile(self.reg(off)) }
    }

    fn write(&self, off: usize, v: u32) {
        // SAFETY: as in `read`.
        unsafe { core::ptr::write_volatile(self.reg(off), v) }
    }

    /// Its irq, once set up.
    pub fn irq(&self) -> Option<IrqNumber> {
        match self.irq.load(Ordering::Acquire) {
            0 => None,
            n => Some(IrqNumber(n as u32)),
        }
    }

    fn handle(&self) -> IrqReturn {
        self.src.record(cpu::current());
        let status = self.read(EDU_STATUS);
        if status == 0 {
            self.unhandled.fetch_add(1, Ordering::Relaxed);
            return IrqReturn::NONE;
        }
        if cfg!(feature = "drop-edu-msi") && self.calls.fetch_add(1, Ordering::Relaxed) % 2 == 1 {
            // Broken on purpose: the MSI is lost to the driver (not acked,
            // not counted); the checks must see it.
            return IrqReturn::HANDLED;
        }
        self.write(EDU_ACK, status);
        self.handled.fetch_add(1, Ordering::AcqRel);
        self.in_flight.store(false, Ordering::Release);
        IrqReturn::HANDLED
    }

    /// Nothing in flight.
    pub fn idle(&self) -> bool {
        !self.in_flight.load(Ordering::Acquire)
    }

    /// Raises one MSI unless one is in flight (boot CPU's timer tick).
    pub fn generator_tick(&self) {
        if self.paused.load(Ordering::Acquire) || self.mmio.load(Ordering::Relaxed) == 0 {
            return;
        }
        if self
            .in_flight
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.raised.fetch_add(1, Ordering::AcqRel);
            self.write(EDU_RAISE, 1);
        }
    }
}

/// The boot CPU's timer tick hook.
pub fn tick() {
    EDU.generator_tick();
}

// ----- setup -------------------------------------------------------------------

static LPI_DOMAIN: spin::Once<DomainId> = spin::Once::new();
/// "ITS" or "GICv2m", and what the MSI became there.
static PATH: spin::Once<alloc::string::String> = spin::Once::new();

/// The GIC-LPI domain (GICv3 with an ITS), for the IRQ entry.
pub fn lpi_domain() -> Option<DomainId> {
    LPI_DOMAIN.get().copied()
}

fn domain_err<E: core::fmt::Debug>(what: &'static str) -> impl FnOnce(E) -> &'static str {
    move |e| {
        kprintln!("msi: {what}: {e:?}");
        what
    }
}

/// Finds edu on PCIe and sets up its MSI: through the ITS on a GICv3,
/// through the GICv2m frame on a GICv2. Must run on the boot CPU before
/// the secondary CPUs come up (the ITS's hotplug callback maps their
/// collections as they do).
pub fn setup() -> Result<(), &'static str> {
    let dt = fdt::read();
    let edu = pci::setup_edu(&dt)?;
    EDU.mmio.store(edu.bar0, Ordering::Release);
    if EDU.read(EDU_ID) & 0xff == 0xed {
        // edu's identification register: 0x010000ed.
    } else {
        return Err("msi: edu identification register mismatch");
    }
    let gic = irq::gic().ok_or("msi: no GIC")?.clone();
    let chip = Arc::new(MsiDeviceChip::new(
        "PCI-MSI",
        PciMsi {
            bdf: edu.bdf,
            cap: edu.msi_cap,
        },
    ));
    let dev_dom = if cpu::has_gicv3_sysregs() {
        let base = dt.gic_its.ok_or("msi: no ITS in the device tree")?;
        let alloc: Arc<dyn DmaAllocator> = Arc::new(HeapDma);
        let lpis = Arc::new(
            LpiTables::new(alloc.as_ref(), 14, cpu::MAX_CPUS, 0xa0)
                .map_err(domain_err("LPI tables"))?,
        );
        // SAFETY: the ITS frames the device tree names (below 1 GiB, the
        // identity-mapped device region); only this driver uses them.
        let mmio = unsafe { VolatileMmio::new(base as usize, gits::FRAME_SIZE) };
        let its = Arc::new(
            Its::new(
                mmio,
                base + gits::TRANSLATER as u64,
                gic.clone(),
                lpis,
                alloc,
                Arc::new(PlatformIrqs::<KernelPlatform>(CORE.platform())),
                ItsOptions {
                    max_cpus: cpu::MAX_CPUS,
                    ..ItsOptions::default()
                },
            )
            .map_err(domain_err("ITS init"))?,
        );
        its.cpu_up(CpuId::BOOT).map_err(domain_err("ITS cpu0"))?;
        register_its_hotplug(&CORE, its.clone()).map_err(domain_err("ITS hotplug"))?;
        let lpi_dom = add_lpi_domain(&REGISTRY, gic).map_err(domain_err("LPI domain"))?;
        LPI_DOMAIN.call_once(|| lpi_dom);
        let its_dom = add_its_domain(&REGISTRY, its.clone(), lpi_dom, CpuMask::of(CpuId::BOOT))
            .map_err(domain_err("ITS domain"))?;
        let dev = DeviceId(u32::from(edu.bdf.0));
        its.map_device(dev, 1).map_err(domain_err("ITS MAPD"))?;
        let d = add_msi_device_domain(
            &REGISTRY,
            "PCI-MSI",
            chip,
            Arc::new(ItsDeviceParent(dev)),
            its_dom,
            1,
        )
        .map_err(domain_err("edu MSI domain"))?;
        PATH.call_once(|| {
            alloc::format!(
                "ITS at {base:#x} (DeviceID {:#x} = {}, EventID 0, device table for {} DeviceIDs)",
                dev.0,
                edu.bdf,
                its.device_limit()
            )
        });
        d
    } else {
        let base = dt
            .gic_v2m
            .ok_or("msi: no GICv2m frame in the device tree")?;
        // SAFETY: the v2m frame the device tree names (identity-mapped
        // device region); only this driver uses it.
        let mmio = unsafe { VolatileMmio::new(base as usize, v2m::FRAME_SIZE) };
        let frame = Arc::new(V2mFrame::new(mmio, base).map_err(domain_err("v2m frame"))?);
        let gic_dom = irq::gic_domain().ok_or("msi: no GIC domain")?;
        let v2m_dom =
            add_v2m_domain(&REGISTRY, frame.clone(), gic_dom).map_err(domain_err("v2m domain"))?;
        let r = frame.spi_range();
        PATH.call_once(|| {
            alloc::format!("GICv2m frame at {base:#x} (SPIs {}..{})", r.start, r.end)
        });
        add_msi_device_domain(&REGISTRY, "PCI-MSI", chip, frame, v2m_dom, 1)
            .map_err(domain_err("edu MSI domain"))?
    };
    let irq = REGISTRY
        .map(dev_dom, HwIrq(0))
        .map_err(domain_err("map edu vector 0"))?
        .into_raw();
    EDU.irq.store(u64::from(irq.0), Ordering::Release);
    CORE.request_irq_raw(
        irq,
        IrqRequest::new("edu-msi", Arc::new(|_irq: IrqNumber| EDU.handle())).dev_id(DevId(0xED1)),
    )
    .map_err(domain_err("request edu MSI"))?;
    let info = REGISTRY.mapping_info(irq).ok();
    kprintln!(
        "edu-msi: {} BAR0 {:#x}, MSI cap {:#x} -> {} -> irq {} ({:?})",
        edu.bdf,
        edu.bar0,
        edu.msi_cap,
        PATH.get().map_or("?", |s| s.as_str()),
        irq.0,
        info.map(|i| i.hwirq),
    );
    Ok(())
}

// ----- the phase -----------------------------------------------------------------

fn wait_until(timeout_us: u64, mut cond: impl FnMut() -> bool) -> bool {
    let t0 = time::now_us();
    loop {
        if cond() {
            return true;
        }
        if time::now_us() - t0 > timeout_us {
            return cond();
        }
        cpu::disable_irqs();
        cpu::wait_for_interrupt_masked();
    }
}

/// Sets the MSI's affinity with nothing in flight, then allows exactly
/// the CPUs of `mask`.
fn move_to(mask: &CpuMask) -> Result<(), irqcore::IrqError> {
    let irq = EDU.irq().ok_or(irqcore::IrqError::InvalidArgument)?;
    let was = EDU.paused.swap(true, Ordering::AcqRel);
    wait_until(PATIENCE_US, || EDU.idle());
    EDU.src.allowed.fetch_or(mask_bits(mask), Ordering::AcqRel);
    let r = CORE.set_affinity(irq, mask);
    if r.is_ok() {
        EDU.src.allowed.store(mask_bits(mask), Ordering::Release);
    }
    EDU.paused.store(was, Ordering::Release);
    r
}

fn pin_and_check(cpu: CpuId) {
    if let Err(e) = move_to(&CpuMask::of(cpu)) {
        check!(false, "edu-msi: set_affinity to cpu{}: {e:?}", cpu.get());
        return;
    }
    let base = EDU.src.on(cpu);
    let ok = wait_until(PATIENCE_US, || EDU.src.on(cpu) >= base + PER_MOVE);
    let eff = EDU.irq().and_then(|i| CORE.effective_affinity(i).ok());
    check!(
        eff == Some(CpuMask::of(cpu)),
        "edu-msi: effective affinity is cpu{} ({eff:?})",
        cpu.get()
    );
    check!(
        ok,
        "edu-msi: MSIs handled on cpu{} after the move ({} there)",
        cpu.get(),
        EDU.src.on(cpu) - base
    );
}

/// The MSI phase: the generator runs; the affinity moves to every CPU;
/// each secondary CPU goes offline with the MSI pinned to it (irqcore
/// moves it away, the ITS/GIC retargets it) and comes back; the MSI is
/// pinned to it again.
pub fn run_phase(n: u32) {
    let Some(irq) = EDU.irq() else {
        return;
    };
    let t = time::now_us();
    EDU.paused.store(false, Ordering::Release);
    let ok = wait_until(PATIENCE_US, || EDU.handled.load(Ordering::Acquire) >= 3);
    check!(ok, "edu-msi: MSIs handled through irqcore");
    if !ok {
        // Nothing gets through: the moves below would only time out.
        return;
    }
    for c in CpuId::all(n as usize) {
        pin_and_check(c);
    }
    let moves = n;
    let mut cycles = 0;
    for cpu in CpuId::all(n as usize).skip(1) {
        let c = cpu.get();
        pin_and_check(cpu);
        let others = CORE.online_cpus().and_not(&CpuMask::of(cpu));
        // While irqcore moves it inside stop-machine, any remaining CPU may
        // receive it.
        EDU.src
            .allowed
            .fetch_or(mask_bits(&others), Ordering::AcqRel);
        let before = EDU.handled.load(Ordering::Acquire);
        if let Err(e) = CORE.cpu_down(cpu, &KernelCpuControl) {
            check!(false, "edu-msi: cpu_down(cpu{c}): {e:?}");
            continue;
        }
        let eff = CORE.effective_affinity(irq).ok();
        check!(
            eff.is_some_and(|m| m.weight() == 1 && m.is_subset_of(&others)),
            "edu-msi: pinned to cpu{c}, moved to an online CPU when it went offline ({eff:?})"
        );
        if let Some(m) = eff {
            EDU.src.allowed.store(mask_bits(&m), Ordering::Release);
        }
        let at_down = CORE.irq_count(irq, cpu);
        let ok = wait_until(PATIENCE_US, || {
            EDU.handled.load(Ordering::Acquire) >= before + PER_MOVE
        });
        check!(ok, "edu-msi: MSIs kept arriving while cpu{c} was offline");
        check!(
            CORE.irq_count(irq, cpu) == at_down,
            "edu-msi: nothing delivered to offline cpu{c}"
        );
        if let Err(e) = CORE.cpu_up(cpu, &KernelCpuControl) {
            check!(false, "edu-msi: cpu_up(cpu{c}): {e:?}");
            continue;
        }
        pin_and_check(cpu);
        cycles += 1;
    }
    if move_to(&CORE.online_cpus()).is_err() {
        check!(false, "edu-msi: set_affinity(all)");
    }
    kprintln!(
        "edu-msi: affinity moved to each of {moves} CPU(s), {cycles} CPU(s) offline and online with the MSI pinned there, in {} us",
        time::now_us() - t
    );
}

/// Stops the generator and waits for the last MSI.
pub fn quiesce() -> bool {
    EDU.paused.store(true, Ordering::Release);
    wait_until(PATIENCE_US, || EDU.idle())
}

/// The final checks: every MSI raised was handled exactly once, counted by
/// irqcore once, on an allowed CPU.
pub fn final_checks(n: u32) {
    let Some(irq) = EDU.irq() else {
        return;
    };
    let (r, h) = (
        EDU.raised.load(Ordering::Relaxed),
        EDU.handled.load(Ordering::Relaxed),
    );
    check!(r > 0 && r == h, "edu-msi: raised {r} == handled {h}");
    check!(
        EDU.unhandled.load(Ordering::Relaxed) == 0,
        "edu-msi: no handler call without a raised MSI"
    );
    let counted: u64 = CpuId::all(n as usize).map(|c| CORE.irq_count(irq, c)).sum();
    check!(
        counted == h,
        "edu-msi: irqcore counted {counted} == handled {h}"
    );
    check!(
        EDU.src.wrong_cpu.load(Ordering::Relaxed) == 0,
        "edu-msi: always handled on a CPU of its affinity"
    );
    let masked = CORE
        .snapshot(irq)
        .is_ok_and(|s| s.line.contains(LineState::MASKED));
    check!(!masked, "edu-msi: not left masked");
    kprintln!(
        "edu-msi: {h} MSIs through {}, per CPU {:?}",
        PATH.get().map_or("?", |s| s.as_str()),
        CpuId::all(n as usize)
            .map(|c| EDU.src.on(c))
            .collect::<alloc::vec::Vec<_>>()
    );
}
