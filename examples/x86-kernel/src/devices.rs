//! Interrupt sources and their drivers: the per-CPU LAPIC timer, the IPIs,
//! the PIT through the IOAPIC, and two QEMU `edu` PCI functions (one with
//! level-triggered INTx through the IOAPIC, one with MSI). Each source
//! records where its interrupts were handled so the checks can compare
//! "caused" with "handled" and "handled on" with "allowed by affinity".

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::ops::Deref;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use irqcore::{
    ChipLevel, CpuId, CpuMask, DevId, FlowKind, HwIrq, IrqChip, IrqHandler, IrqNumber, IrqRequest,
    IrqReturn, RequestFlags, TriggerType,
};

use arch_x86::hw::{MmioRegion, Msrs};
use arch_x86::{ApicId, IoApic, LapicOps, MsiDestFormat, PIC8259_VECTORS, Vector, VectorDomain};
use kernel_common::ipi_test;
use kernel_common::irq::CORE;
use kernel_common::source::{Caused, Source};

use crate::acpi::Madt;
use crate::cpu::percpu;
use crate::hw::pci::PciMsi;
use crate::hw::{lapic, pci, pit};
use crate::irq::{self, vectors};
use crate::kprintln;

/// LAPIC timer period on every CPU.
pub const TICK_NS: u32 = 1_000_000;
/// PIT rate; each PIT interrupt also drives the traffic generator.
pub const PIT_HZ: u32 = 1000;

/// One `edu` function (QEMU `hw/misc/edu.c`): writing the raise register
/// (0x60) sets status bits (0x24) and interrupts (INTx while status != 0, or
/// one MSI per raise); writing the ack register (0x64) clears them.
pub struct Edu {
    dev: Caused,
    mmio: AtomicU64,
    #[cfg(feature = "drop-edu-irqs")]
    drop_toggle: AtomicU64,
}

impl Deref for Edu {
    type Target = Caused;
    fn deref(&self) -> &Caused {
        &self.dev
    }
}

const EDU_STATUS: usize = 0x24;
const EDU_RAISE: usize = 0x60;
const EDU_ACK: usize = 0x64;

impl Edu {
    const fn new(name: &'static str) -> Self {
        Self {
            dev: Caused::new(name),
            mmio: AtomicU64::new(0),
            #[cfg(feature = "drop-edu-irqs")]
            drop_toggle: AtomicU64::new(0),
        }
    }

    fn reg(&self, off: usize) -> *mut u32 {
        (self.mmio.load(Ordering::Relaxed) as usize + off) as *mut u32
    }

    fn read(&self, off: usize) -> u32 {
        // SAFETY: BAR0 of an edu function (1 MiB MMIO, assigned by the
        // firmware, below 4 GiB, identity-mapped uncached); 32-bit registers.
        unsafe { core::ptr::read_volatile(self.reg(off)) }
    }

    fn write(&self, off: usize, v: u32) {
        // SAFETY: as in `read`.
        unsafe { core::ptr::write_volatile(self.reg(off), v) }
    }

    /// The driver's hard interrupt handler (MSI): record, service.
    fn handle(&self) -> IrqReturn {
        self.src.record(percpu::current());
        self.service()
    }

    /// Services the device: read the status, acknowledge it (which also
    /// deasserts INTx), count.
    fn service(&self) -> IrqReturn {
        let status = self.read(EDU_STATUS);
        if status == 0 {
            self.unhandled.fetch_add(1, Ordering::Relaxed);
            return IrqReturn::NONE;
        }
        self.write(EDU_ACK, status);
        #[cfg(feature = "drop-edu-irqs")]
        if self.drop_toggle.fetch_add(1, Ordering::Relaxed) % 2 == 1 {
            // Deliberately broken build: lose every second interrupt.
            self.lost();
            return IrqReturn::HANDLED;
        }
        self.done();
        IrqReturn::HANDLED
    }

    /// Raises one interrupt unless paused or the previous one is still in
    /// flight (edu's status is a bitmask: a second raise before the handler
    /// acked the first would merge with it). (No wall-clock timeout here:
    /// under TCG on a loaded host a vCPU can be descheduled for 100+ ms.)
    pub fn raise(&self) {
        if self.mmio.load(Ordering::Relaxed) != 0 && self.begin_raise() {
            self.write(EDU_RAISE, 1);
        }
    }
}

/// The edu INTx driver, written like a threaded Linux driver for a level
/// device: the hard handler only records where it ran and wakes the thread;
/// the line stays masked (oneshot) until the thread has serviced the device.
struct EduIntxHandler;

impl IrqHandler for EduIntxHandler {
    fn handle(&self, _irq: IrqNumber) -> IrqReturn {
        EDU_INTX.src.record(percpu::current());
        IrqReturn::WAKE_THREAD
    }

    fn thread(&self, _irq: IrqNumber) -> IrqReturn {
        EDU_INTX.service()
    }
}

/// The edu function with INTx (level, IOAPIC).
pub static EDU_INTX: Edu = Edu::new("edu-intx");
/// The edu function with MSI.
pub static EDU_MSI: Edu = Edu::new("edu-msi");
/// The PIT through the IOAPIC.
pub static PIT: Source = Source::new("pit");

/// Whether the generator (driven by the PIT) runs.
pub static GENERATOR_ON: AtomicBool = AtomicBool::new(false);

/// The traffic generator: on every PIT interrupt, raise both edu functions
/// and send one test IPI to the next online CPU.
fn generate() {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    if !GENERATOR_ON.load(Ordering::Acquire) {
        return;
    }
    EDU_INTX.raise();
    EDU_MSI.raise();
    let online = CORE.online_cpus();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let w = online.weight() as u32;
    if w > 0
        && let Some(cpu) = online.iter().nth((n % w) as usize)
    {
        let _ = ipi_test::send(cpu, 0);
    }
}

/// The LAPIC timer (per CPU).
pub static TIMER: Source = Source::new("lapic-timer");
/// The cross-call IPI's irq (set by [`setup_percpu`]).
pub static CALL_IRQ: spin::Once<IrqNumber> = spin::Once::new();
/// The vector domain (arch-x86): root of every device hierarchy, one
/// (CPU, vector) per irq from its per-CPU vector matrix.
pub type Vectors = VectorDomain<LapicOps<&'static MmioRegion, &'static Msrs, fn() -> CpuId>>;

/// Set by [`setup_percpu`].
pub static VECTORS: spin::Once<Arc<Vectors>> = spin::Once::new();

/// The vector domain.
pub fn vectors() -> Result<&'static Arc<Vectors>, &'static str> {
    VECTORS.get().ok_or("no vector domain")
}

/// Creates the vector domain for the MADT's CPUs with the boot CPU online.
/// The 8259's vectors (0x20-0x2F: it is remapped there and masked, but can
/// still deliver its spurious IRQ 7/15) stay out of the device window; the
/// kernel's system vectors are above it.
fn setup_vectors() -> Result<(), &'static str> {
    let ids: Vec<ApicId> = CpuId::all(percpu::nr_cpus() as usize)
        .map(|c| ApicId(percpu::apic_id_of(c)))
        .collect();
    // No cleanup IPI: the timer tick runs the cleanup (see `setup_percpu`).
    let ops = LapicOps::new(lapic::lapic(), percpu::current as fn() -> CpuId, &ids, None);
    let v = VectorDomain::new(ops, &ids, MsiDestFormat::XApic).map_err(e("vector domain"))?;
    v.reserve_system_vectors(PIC8259_VECTORS)
        .map_err(e("reserve 8259 vectors"))?;
    v.cpu_online(CpuId::BOOT)
        .map_err(e("vector domain: cpu0"))?;
    VECTORS.call_once(|| Arc::new(v));
    Ok(())
}

fn e<T>(what: &'static str) -> impl FnOnce(T) -> &'static str {
    move |_| what
}

/// Sets up the LAPIC timer (percpu_devid) and the two IPIs (percpu).
pub fn setup_percpu() -> Result<(), &'static str> {
    // arch-x86's chips over the one shared LAPIC driver: the timer masks and
    // unmasks its LVT, IPIs cannot be masked; both EOI from the flow.
    let timer_chip: Arc<dyn IrqChip> = Arc::new(arch_x86::LapicTimerChip::new(lapic::lapic()));
    let ipi_chip: Arc<dyn IrqChip> = Arc::new(arch_x86::LapicIpiChip::new(lapic::lapic()));
    let mk = |vector: Vector, flow: FlowKind, name: &'static str, h: fn(IrqNumber) -> IrqReturn| {
        let irq = CORE
            .alloc_descs(IrqNumber(16), 1)
            .map_err(e("alloc percpu irq"))?;
        let chip = if flow == FlowKind::PerCpuDevId {
            &timer_chip
        } else {
            &ipi_chip
        };
        CORE.set_chip(
            irq,
            vec![ChipLevel::new(chip.clone(), HwIrq(u64::from(vector.get())))],
            flow,
        )
        .map_err(e("set_chip percpu"))?;
        CORE.request_irq_raw(
            irq,
            IrqRequest::new(name, Arc::new(h))
                .flags(RequestFlags::PERCPU)
                .dev_id(DevId(irq.0 as usize)),
        )
        .map_err(e("request percpu irq"))?;
        irq::map_vector(vector, irq);
        Ok::<IrqNumber, &'static str>(irq)
    };
    let timer = mk(vectors::TIMER, FlowKind::PerCpuDevId, "lapic-timer", |_| {
        TIMER.record(percpu::current());
        // Releases old vectors of moves completed on other CPUs.
        if let Some(v) = VECTORS.get() {
            v.run_cleanup(percpu::current());
        }
        kernel_common::watchdog::tick();
        IrqReturn::HANDLED
    })?;
    let call = mk(
        vectors::CALL_FUNCTION,
        FlowKind::PerCpu,
        "ipi-call-function",
        |_| {
            kernel_common::smp::flush_cross_calls();
            IrqReturn::HANDLED
        },
    )?;
    let _resend = mk(vectors::RESEND, FlowKind::PerCpu, "ipi-resend", |_| {
        kernel_common::irq::drain_resends();
        IrqReturn::HANDLED
    })?;
    TIMER.set_irq(timer);
    CALL_IRQ.call_once(|| call);
    setup_vectors()
}

/// Starts the LAPIC timer on the calling CPU (hotplug "starting" phase).
pub fn start_local_timer() -> Result<(), &'static str> {
    let t = TIMER.irq().ok_or("percpu irqs not set up")?;
    lapic::timer_start_periodic(vectors::TIMER, TICK_NS);
    CORE.enable_percpu_irq(t, TriggerType::None)
        .map_err(e("enable_percpu_irq"))
}

/// Stops the LAPIC timer on the calling CPU (hotplug "dying" phase).
pub fn stop_local_timer() {
    if let Some(t) = TIMER.irq() {
        let _ = CORE.disable_percpu_irq(t);
    }
    lapic::timer_stop();
}

/// The IOAPICs (arch-x86's driver and chip), one per MADT IOAPIC.
pub static IOAPICS: spin::Once<Vec<Arc<IoApic<MmioRegion>>>> = spin::Once::new();

/// The IOAPIC register window: IOREGSEL, IOWIN and the EOI register at
/// 0x40 (82093AA 3.0; version 0x20 parts).
const IOAPIC_WINDOW: usize = 0x44;

/// Opens every IOAPIC of the MADT (arch-x86 masks all pins on open).
pub fn setup_ioapics(madt: &Madt) -> Result<(), &'static str> {
    let mut chips = Vec::new();
    for info in &madt.ioapics {
        let base =
            core::ptr::NonNull::new(info.addr as usize as *mut u8).ok_or("IOAPIC at address 0")?;
        // SAFETY: the MADT's IOAPIC address, 4-byte aligned, identity-mapped
        // uncached by the boot page tables (the first 4 GiB), used only by
        // this driver.
        let mmio = unsafe { MmioRegion::new(base, IOAPIC_WINDOW) };
        let io = IoApic::new("IO-APIC", mmio, info.gsi_base).map_err(e("IOAPIC not answering"))?;
        kprintln!(
            "IOAPIC id {} at {:#x}, gsi {}: version {:#x}, {} pins",
            info.id,
            info.addr,
            io.gsi_base(),
            io.version(),
            io.nr_pins()
        );
        chips.push(Arc::new(io));
    }
    if chips.is_empty() {
        return Err("no IOAPIC in the MADT");
    }
    IOAPICS.call_once(|| chips);
    Ok(())
}

fn ioapic_for(gsi: u32) -> Result<(Arc<IoApic<MmioRegion>>, u32), &'static str> {
    IOAPICS
        .get()
        .and_then(|v| {
            v.iter()
                .find_map(|c| c.pin_of_gsi(gsi).map(|p| (c.clone(), p)))
        })
        .ok_or("no IOAPIC routes this GSI")
}

/// Irqs of level-triggered IOAPIC lines (device irqs are below 256).
static LEVEL_IRQS: [AtomicBool; 256] = [const { AtomicBool::new(false) }; 256];

/// Whether `irq` is a level-triggered IOAPIC line.
pub fn is_level_irq(irq: IrqNumber) -> bool {
    LEVEL_IRQS
        .get(irq.0 as usize)
        .is_some_and(|l| l.load(Ordering::Acquire))
}

/// Sends a directed EOI for `vector` to every IOAPIC.
pub fn ioapic_eoi(vector: Vector) {
    for c in IOAPICS.get().into_iter().flatten() {
        // Pre-0x20 IOAPICs have no EOI register; QEMU's is 0x20.
        let _ = c.eoi_vector(vector);
    }
}

/// Routes `gsi` through its IOAPIC to a new vector and installs `handler`.
/// The irq number is the GSI (as Linux does for IOAPIC lines).
fn setup_gsi(
    gsi: u32,
    trigger: TriggerType,
    flow: FlowKind,
    name: &'static str,
    handler: Arc<dyn IrqHandler>,
    flags: RequestFlags,
) -> Result<IrqNumber, &'static str> {
    let (io, pin) = ioapic_for(gsi)?;
    let irq = IrqNumber(gsi);
    CORE.alloc_desc_at(irq).map_err(e("alloc_desc_at gsi"))?;
    if trigger.is_level()
        && let Some(l) = LEVEL_IRQS.get(irq.0 as usize)
    {
        l.store(true, Ordering::Release);
    }
    // Owning handles: on any error below, dropping them gives the vector
    // back and masks the pin again.
    let vector = vectors()?
        .alloc_vector(irq, &CpuMask::of(CpuId::BOOT), false)
        .map_err(e("no free vector"))?;
    // Programs the pin masked with the trigger and the vector level's
    // target (CPU 0 until set_affinity runs).
    let pin = io
        .claim_pin(irq, pin, trigger, &vector.level())
        .map_err(e("claim_pin"))?;
    CORE.set_chip(irq, vec![pin.level(), vector.level()], flow)
        .map_err(e("set_chip ioapic"))?;
    CORE.request_irq_raw(
        irq,
        IrqRequest::new(name, handler)
            .flags(flags)
            .trigger(trigger)
            .dev_id(DevId(gsi as usize)),
    )
    .map_err(e("request ioapic irq"))?;
    // The line lives as long as the kernel: keep both for good.
    let _ = (pin.leak(), vector.leak());
    Ok(irq)
}

/// The PIT on ISA IRQ 0 (GSI from the MADT override, 2 on QEMU), edge.
pub fn setup_pit(madt: &Madt) -> Result<(), &'static str> {
    let route = madt.isa_route(0);
    let (gsi, trigger) = (route.gsi, route.trigger);
    if trigger.is_level() {
        return Err("PIT override says level");
    }
    let handler: fn(IrqNumber) -> IrqReturn = |_| {
        PIT.record(percpu::current());
        generate();
        IrqReturn::HANDLED
    };
    let irq = setup_gsi(
        gsi,
        trigger,
        FlowKind::Edge,
        "pit",
        Arc::new(handler),
        RequestFlags::empty(),
    )?;
    PIT.set_irq(irq);
    kprintln!("pit: ISA IRQ 0 -> GSI {gsi} -> irq {}", irq.0);
    Ok(())
}

/// Starts the PIT.
pub fn start_pit() {
    pit::start_periodic(PIT_HZ);
}

/// Finds and enables both edu functions (BAR0, memory and bus master),
/// checking their identification and liveness registers.
fn probe_edu() -> Result<Vec<pci::Bdf>, &'static str> {
    let fns: Vec<pci::Bdf> = pci::find_all(0x1234, 0x11e8).collect();
    if fns.len() < 2 {
        return Err("need two edu PCI functions (-device edu -device edu)");
    }
    for (edu, bdf) in [(&EDU_INTX, fns[0]), (&EDU_MSI, fns[1])] {
        let bar0 = pci::read32(bdf, 0x10) & !0xF;
        if bar0 == 0 {
            return Err("edu BAR0 not assigned");
        }
        let cmd = pci::read16(bdf, 0x04) | pci::command::MEMORY | pci::command::BUS_MASTER;
        pci::write16(bdf, 0x04, cmd);
        edu.mmio.store(u64::from(bar0), Ordering::Release);
        if edu.read(0) != 0x0100_00ed {
            return Err("edu identification register mismatch");
        }
        // Liveness register: returns the bitwise inverse of what was written.
        edu.write(4, 0x1234_5678);
        if edu.read(4) != !0x1234_5678 {
            return Err("edu liveness check failed");
        }
        kprintln!(
            "{}: {:02x}:{:02x}.{} BAR0 {:#x}",
            edu.src.name,
            bdf.bus,
            bdf.dev,
            bdf.func,
            bar0
        );
    }
    Ok(fns)
}

/// Finds the edu functions: the first uses INTx, the second MSI.
pub fn setup_edu(madt: &Madt) -> Result<(), &'static str> {
    let fns = probe_edu()?;
    // INTx: the firmware wrote the legacy IRQ to Interrupt Line (0x3C);
    // through the MADT overrides that is the GSI (QEMU wires PCI INTx to
    // that IOAPIC pin on both pc and q35). A real kernel would evaluate the
    // ACPI _PRT instead.
    let line = pci::read32(fns[0], 0x3C) as u8;
    let gsi = madt.isa_route(line).gsi;
    let irq = setup_gsi(
        gsi,
        TriggerType::LevelHigh,
        FlowKind::FastEoi,
        "edu-intx",
        Arc::new(EduIntxHandler),
        RequestFlags::THREADED | RequestFlags::ONESHOT,
    )?;
    EDU_INTX.src.set_irq(irq);
    kprintln!(
        "edu-intx: INTx line {line} -> GSI {gsi} -> irq {} (level, fasteoi, threaded oneshot)",
        irq.0
    );

    // MSI.
    let bdf = fns[1];
    let cap = pci::find_capability(bdf, pci::CAP_MSI).ok_or("edu has no MSI capability")?;
    pci::write16(
        bdf,
        0x04,
        pci::read16(bdf, 0x04) | pci::command::INTX_DISABLE,
    );
    let irq = CORE
        .alloc_descs(IrqNumber(64), 1)
        .map_err(e("alloc msi irq"))?;
    let vlevel = vectors()?
        .alloc(irq, &CpuMask::of(CpuId::BOOT), false)
        .map_err(e("no free vector"))?;
    CORE.set_chip(
        irq,
        vec![
            ChipLevel::new(
                Arc::new(arch_x86::MsiChip::new("PCI-MSI", PciMsi { bdf, cap })),
                HwIrq(0),
            ),
            vlevel,
        ],
        FlowKind::Edge,
    )
    .map_err(e("set_chip msi"))?;
    let vector = vectors()?.target(irq).map_or(0, |t| t.vector.get());
    CORE.request_irq_raw(
        irq,
        IrqRequest::new("edu-msi", Arc::new(|_| EDU_MSI.handle())).dev_id(DevId(0xED1)),
    )
    .map_err(e("request msi"))?;
    EDU_MSI.src.set_irq(irq);
    kprintln!(
        "edu-msi: MSI cap at {cap:#x}, vector {vector:#x} -> irq {} (edge)",
        irq.0
    );
    Ok(())
}

/// All device sources, for the checks and the migration bookkeeping.
pub fn device_sources() -> [&'static Source; 3] {
    [&PIT, &EDU_INTX.src, &EDU_MSI.src]
}

/// The 8259 pair as an irqcore chip (`--pic` boot only).
pub static PIC: spin::Once<Arc<arch_x86::Pic8259Chip<arch_x86::hw::Ports>>> = spin::Once::new();

/// The `--pic` boot's interrupt set-up: the 8259 pair as arch-x86's
/// `Pic8259Chip` (vectors 0x20-0x2F, reserved in the vector domain), the
/// BSP's LINT0 in ExtINT mode (virtual wire: the 8259 supplies the vector,
/// and there is no LAPIC EOI), the PIT on ISA IRQ 0 (edge flow) and the edu
/// INTx line on the 8259 line the firmware routed it to (level through the
/// chipset's ELCR: level flow, mask, EOI, unmask after the thread).
pub fn setup_pic() -> Result<(), &'static str> {
    use arch_x86::lapic::{LvtEntry, LvtSource};
    use arch_x86::pic8259::DEFAULT_OFFSETS;
    // SAFETY: CPL 0; this `Ports` goes only to arch-x86's 8259 driver
    // (ports 0x20/0x21/0xA0/0xA1 and the delay port 0x80, 8259A datasheet).
    let ports = unsafe { arch_x86::hw::Ports::new() };
    let (master, slave) = DEFAULT_OFFSETS;
    let chip = Arc::new(
        arch_x86::Pic8259Chip::new(arch_x86::Pic8259::new(ports), master, slave)
            .map_err(e("8259 init"))?,
    );
    PIC.call_once(|| chip.clone());
    lapic::lapic().set_lvt(LvtSource::Lint0, LvtEntry::ext_int());

    let line_irq = |line: u8, flow: FlowKind| -> Result<IrqNumber, &'static str> {
        let irq = IrqNumber(u32::from(line));
        CORE.alloc_desc_at(irq).map_err(e("alloc_desc_at isa"))?;
        let level = chip.level(line).map_err(e("8259 line"))?;
        CORE.set_chip(irq, vec![level], flow)
            .map_err(e("set_chip 8259"))?;
        Ok(irq)
    };
    let pit_irq = line_irq(0, FlowKind::Edge)?;
    let handler: fn(IrqNumber) -> IrqReturn = |_| {
        PIT.record(percpu::current());
        generate();
        IrqReturn::HANDLED
    };
    CORE.request_irq_raw(
        pit_irq,
        IrqRequest::new("pit", Arc::new(handler)).dev_id(DevId(0)),
    )
    .map_err(e("request pit"))?;
    PIT.set_irq(pit_irq);
    kprintln!("pit: ISA IRQ 0 -> 8259 -> irq {}", pit_irq.0);

    let fns = probe_edu()?;
    let line = pci::read32(fns[0], 0x3C) as u8;
    if line > 15 || line == 2 {
        return Err("edu INTx not routed to an 8259 line");
    }
    let irq = line_irq(line, FlowKind::Level)?;
    CORE.request_irq_raw(
        irq,
        IrqRequest::new("edu-intx", Arc::new(EduIntxHandler))
            .flags(RequestFlags::THREADED | RequestFlags::ONESHOT)
            .dev_id(DevId(line as usize)),
    )
    .map_err(e("request edu intx"))?;
    EDU_INTX.src.set_irq(irq);
    kprintln!(
        "edu-intx: INTx line {line} -> 8259 -> irq {} (level, threaded oneshot)",
        irq.0
    );
    Ok(())
}
