//! The GICv3 Interrupt Translation Service: turns a device's MSI write
//! (DeviceID from the bus, EventID as the data) into an LPI on the
//! redistributor of the CPU its collection targets (IHI 0069H chapter 5,
//! registers in 12.19).
//!
//! What this driver does:
//!
//! * **Tables** sized from `GITS_TYPER` and `GITS_BASER<n>`: the device
//!   table for DeviceIDs below 2^[`ItsOptions::device_id_bits`] (capped by
//!   `Devbits`), the collection table for one collection per CPU, one ITT
//!   per mapped device (2^n entries of `ITT_entry_size` bytes, 256-byte
//!   aligned), all flat (`Indirect` = 0), memory from a
//!   [`DmaAllocator`]. Memory that comes back too small or misaligned is a
//!   typed error ([`ItsError::Dma`]) before anything is programmed.
//! * **The command queue**: typed commands ([`ItsCommand`]) written at
//!   `GITS_CWRITER`, then `GITS_CREADR` polled until the ITS consumed them.
//!   A full queue ([`ItsError::QueueFull`]: nothing is written), an ITS that
//!   stops reading ([`ItsError::Timeout`]) or stalls on a command error
//!   ([`ItsError::Stalled`]) are typed errors; the driver's own state
//!   (devices, events, LPIs) changes only once a batch completed.
//! * **Mappings**: `MAPD` per device, one `MAPC` per CPU as it comes up
//!   (collection ID = the CPU's index), `MAPTI` per event with an LPI from
//!   [`LpiTables`], `DISCARD` when the last reference goes, each followed by
//!   `SYNC` where the effect must have reached a redistributor.
//! * **Masking**: the LPI's configuration byte and `INV` + `SYNC`.
//! * **Affinity**: `MOVI` + `SYNC` (to the old and the new redistributor).
//!   A queue that is full or not moving answers [`ChipError::Busy`], so
//!   irqcore keeps the request pending and applies it at the next safe
//!   point: the last request wins, as for SPIs.
//! * **CPU hotplug**: [`Its::cpu_up`] (enable LPIs on the CPU's
//!   redistributor, `MAPC`, `SYNC`), [`Its::cpu_down`] (every event still
//!   aimed at the dying CPU is moved to an online one).
//!
//! Only `GITS_TYPER.PTA` = 0 ITSes (targets named by processor number, as
//! QEMU's and most implementations) are supported: with `PTA` = 1 the
//! driver would need the redistributors' physical addresses, which the
//! [`Mmio`] frames do not carry; [`Its::new`] refuses them with
//! [`ItsError::Unsupported`].
//!
//! # Locking
//!
//! One lock (the command queue with the device and event maps), innermost:
//! taken inside descriptor locks (mask, unmask, set_affinity) and inside the
//! domain registry's mapping lock, never the other way round. It is held
//! with the calling CPU's interrupts off ([`LocalIrqs`]), so an interrupt
//! whose flow masks an LPI cannot spin on it on the CPU that holds it.

use crate::dma::{DmaAllocator, DmaError, DmaRegion, alloc_checked};
use crate::glue::Gic;
use crate::intid::IntId;
use crate::its_cmd::{CollectionId, Decoded, DeviceId, EventId, ItsCommand, RdBase};
use crate::lpi::{LpiError, LpiTables};
use crate::regs::{GitsCtlr, Mmio, TypedMmio, gits};
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use irqcore::domain::{
    AllocRequest, DomainConfig, DomainError, DomainId, DomainKind, DomainOps, DomainRegistry,
    LevelAlloc, LevelRef,
};
use irqcore::hotplug::{CpuPhase, HotplugCallback, HotplugCtx};
use irqcore::{
    AffinitySet, ChipError, CpuId, CpuMask, FlowKind, HwIrq, IrqChip, IrqCore, IrqData, IrqError,
    MsiMsg, Platform, TriggerType,
};
use spin::Mutex;

/// How the driver keeps the calling CPU's interrupts off while it holds its
/// lock (the kernel's local irq save/restore; [`NoLocalIrqs`] on the host).
pub trait LocalIrqs: Send + Sync {
    /// Disables interrupts on the calling CPU; returns the previous state.
    fn save(&self) -> usize;
    /// Restores what [`LocalIrqs::save`] returned.
    fn restore(&self, flags: usize);
}

/// [`LocalIrqs`] for contexts without interrupts (host tests).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoLocalIrqs;

impl LocalIrqs for NoLocalIrqs {
    fn save(&self) -> usize {
        0
    }
    fn restore(&self, _flags: usize) {}
}

/// Any irqcore [`Platform`] masks local interrupts for the ITS.
pub struct PlatformIrqs<P: 'static>(pub &'static P);

impl<P: Platform> LocalIrqs for PlatformIrqs<P> {
    fn save(&self) -> usize {
        self.0.local_irq_save().0
    }
    fn restore(&self, flags: usize) {
        self.0.local_irq_restore(irqcore::IrqFlags(flags));
    }
}

/// Driver options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ItsOptions {
    /// DeviceIDs the device table covers: below 2^this (capped by
    /// `GITS_TYPER.Devbits`). 16 covers every PCI requester ID of one
    /// segment.
    pub device_id_bits: u32,
    /// Size of the command queue in 4 KiB pages (1..=256; 128 commands each).
    pub queue_pages: u32,
    /// CPUs (collections) the driver manages.
    pub max_cpus: usize,
    /// How many times to poll `GITS_CREADR` before giving up with
    /// [`ItsError::Timeout`] or [`ItsError::QueueFull`].
    pub poll_limit: u32,
}

impl Default for ItsOptions {
    fn default() -> Self {
        Self {
            device_id_bits: 16,
            queue_pages: 16,
            max_cpus: 8,
            poll_limit: 1_000_000,
        }
    }
}

/// Errors of the ITS driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItsError {
    /// `GITS_TYPER.Physical` is clear: no physical LPIs through this ITS.
    NotPhysical,
    /// The ITS needs something this driver does not do (`PTA` = 1, no
    /// collection table and too few hardware collections, a page size it
    /// cannot use).
    Unsupported,
    /// Table memory: none, too small or misaligned.
    Dma(DmaError),
    /// The LPI tables refused (none free, not an LPI).
    Lpi(LpiError),
    /// The command queue has no room for the batch: nothing was written.
    QueueFull,
    /// The ITS did not consume the commands in time. They stay queued and
    /// may still take effect; the driver's state was not changed.
    Timeout,
    /// The ITS stalled on a command error (`GITS_CREADR.Stalled`).
    Stalled,
    /// The DeviceID is beyond the device table.
    DeviceOutOfRange(DeviceId),
    /// The device is already mapped.
    DeviceMapped(DeviceId),
    /// The device is not mapped (`MAPD` first).
    DeviceNotMapped(DeviceId),
    /// The device still has mapped events.
    DeviceBusy(DeviceId),
    /// More events than `GITS_TYPER.ID_bits` allows.
    TooManyEvents(u32),
    /// The EventID is beyond the device's ITT.
    EventOutOfRange(DeviceId, EventId),
    /// The event is already mapped.
    EventMapped(DeviceId, EventId),
    /// The event is not mapped.
    EventNotMapped(DeviceId, EventId),
    /// The CPU is beyond [`ItsOptions::max_cpus`], or the GIC has no
    /// redistributor target for it (not started).
    BadCpu(CpuId),
    /// No CPU of the request has its collection mapped.
    NoOnlineCpu,
}

impl From<DmaError> for ItsError {
    fn from(e: DmaError) -> Self {
        ItsError::Dma(e)
    }
}

impl From<LpiError> for ItsError {
    fn from(e: LpiError) -> Self {
        match e {
            LpiError::Dma(d) => ItsError::Dma(d),
            e => ItsError::Lpi(e),
        }
    }
}

impl From<ItsError> for IrqError {
    fn from(e: ItsError) -> Self {
        match e {
            ItsError::QueueFull | ItsError::Timeout => IrqError::Chip(ChipError::Busy),
            ItsError::Stalled => IrqError::Chip(ChipError::Hardware(-5)),
            ItsError::BadCpu(c) => IrqError::BadCpu(c),
            ItsError::NoOnlineCpu => IrqError::NoOnlineCpu,
            ItsError::Dma(_) | ItsError::Lpi(_) => IrqError::NoSpace,
            _ => IrqError::InvalidArgument,
        }
    }
}

/// The irqcore hwirq of `device`'s `event` in the ITS domain.
pub const fn its_hwirq(device: DeviceId, event: EventId) -> HwIrq {
    HwIrq(((device.0 as u64) << 32) | event.0 as u64)
}

/// The (device, event) of an ITS-domain hwirq.
pub const fn split_hwirq(hwirq: HwIrq) -> (DeviceId, EventId) {
    (DeviceId((hwirq.0 >> 32) as u32), EventId(hwirq.0 as u32))
}

/// One mapped event: its LPI and the CPU whose collection it is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventMapping {
    /// The LPI it raises.
    pub lpi: IntId,
    /// The CPU it is delivered to.
    pub cpu: CpuId,
}

struct Device {
    /// Kept alive while the ITS may read it.
    _itt: Box<dyn DmaRegion>,
    event_bits: u8,
    events: BTreeMap<EventId, EventMapping>,
}

struct Inner {
    queue: Box<dyn DmaRegion>,
    /// Byte offset of the next free slot (what `GITS_CWRITER` holds).
    cwriter: usize,
    /// Kept alive while the ITS may read them.
    _tables: Vec<Box<dyn DmaRegion>>,
    /// DeviceIDs below this have a device-table entry.
    device_limit: u64,
    /// Per CPU: its redistributor target while its collection is mapped.
    collections: Vec<Option<RdBase>>,
    devices: BTreeMap<DeviceId, Device>,
}

/// A GICv3 ITS and its [`IrqChip`] (the level between an MSI-capable
/// device and the GIC's LPI).
pub struct Its<M: Mmio> {
    mmio: M,
    translater: u64,
    gic: Arc<dyn Gic>,
    lpis: Arc<LpiTables>,
    alloc: Arc<dyn DmaAllocator>,
    irqs: Arc<dyn LocalIrqs>,
    opts: ItsOptions,
    itt_entry_size: usize,
    event_id_bits: u32,
    inner: Mutex<Inner>,
}

impl<M: Mmio> core::fmt::Debug for Its<M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Its")
            .field("translater", &self.translater)
            .field("itt_entry_size", &self.itt_entry_size)
            .field("event_id_bits", &self.event_id_bits)
            .finish()
    }
}

fn ceil_log2(n: u32) -> u32 {
    if n <= 1 {
        0
    } else {
        32 - (n - 1).leading_zeros()
    }
}

impl<M: Mmio> Its<M> {
    /// Takes over the ITS in `mmio` (both frames, [`gits::FRAME_SIZE`]),
    /// whose `GITS_TRANSLATER` is at physical address `translater` (what
    /// devices are told to write): disables it, allocates and programs the
    /// command queue and the device and collection tables, and enables it.
    /// LPIs of `lpis` are routed through the redistributors of `gic`.
    pub fn new(
        mmio: M,
        translater: u64,
        gic: Arc<dyn Gic>,
        lpis: Arc<LpiTables>,
        alloc: Arc<dyn DmaAllocator>,
        irqs: Arc<dyn LocalIrqs>,
        opts: ItsOptions,
    ) -> Result<Self, ItsError> {
        if mmio.size() < gits::FRAME_SIZE || !(1..=256).contains(&opts.queue_pages) {
            return Err(ItsError::Unsupported);
        }
        let typer = mmio.read64(gits::TYPER);
        if typer & gits::TYPER_PHYSICAL == 0 {
            return Err(ItsError::NotPhysical);
        }
        if typer & gits::TYPER_PTA != 0 {
            return Err(ItsError::Unsupported);
        }
        let itt_entry_size = (((typer >> gits::TYPER_ITT_ENTRY_SIZE_SHIFT) & 0xf) + 1) as usize;
        let event_id_bits = (((typer >> gits::TYPER_ID_BITS_SHIFT) & 0x1f) + 1) as u32;
        let dev_bits = (((typer >> gits::TYPER_DEVBITS_SHIFT) & 0x1f) + 1) as u32;
        let hcc = ((typer >> gits::TYPER_HCC_SHIFT) & 0xff) as usize;

        // Quiesce: disabled, and wait for Quiescent (IHI 0069H 12.19.4).
        let ctlr = mmio.load(gits::CTLR);
        if ctlr.contains(GitsCtlr::ENABLED) {
            mmio.store(gits::CTLR, ctlr - GitsCtlr::ENABLED);
        }
        crate::common::poll(opts.poll_limit, || {
            mmio.load(gits::CTLR).contains(GitsCtlr::QUIESCENT)
        })
        .map_err(|_| ItsError::Timeout)?;

        // Everything is allocated before anything is programmed, so a
        // refusal leaves the ITS as it was.
        let queue_len = opts.queue_pages as usize * 4096;
        let queue = alloc_checked(alloc.as_ref(), queue_len, 0x1_0000)?;
        let mut tables = Vec::new();
        let mut basers = Vec::new();
        let mut device_limit = 0u64;
        let mut have_collections = hcc >= opts.max_cpus;
        for n in 0..gits::NR_BASER {
            let reg = gits::baser(n);
            let b = mmio.read64(reg);
            let ty = (b >> gits::BASER_TYPE_SHIFT) & 7;
            let entry = (((b >> gits::BASER_ENTRY_SIZE_SHIFT) & 0x1f) + 1) as usize;
            let page = match (b >> gits::BASER_PAGE_SIZE_SHIFT) & 3 {
                0 => 4096usize,
                1 => 16384,
                _ => 65536,
            };
            let entries: u64 = match ty {
                gits::BASER_TYPE_DEVICE => 1 << opts.device_id_bits.min(dev_bits),
                gits::BASER_TYPE_COLLECTION => opts.max_cpus as u64,
                _ => continue,
            };
            let bytes = (entries as usize)
                .checked_mul(entry)
                .ok_or(ItsError::Unsupported)?;
            let pages = bytes.div_ceil(page).max(1);
            if pages > 256 {
                // More than one flat table can describe: needs `Indirect`.
                return Err(ItsError::Unsupported);
            }
            let t = alloc_checked(alloc.as_ref(), pages * page, page)?;
            let mut addr = t.phys() & gits::BASER_ADDR_MASK;
            if page == 65536 {
                // 64 KiB pages: bits 15:12 hold PA 51:48 (zero here, the
                // region is below 2^48 as checked by `check_region`).
                addr &= !0xffff;
            }
            let v = gits::BASER_VALID
                | gits::BASER_INNER_WAWB
                | (b & ((7 << gits::BASER_TYPE_SHIFT) | (0x1f << gits::BASER_ENTRY_SIZE_SHIFT)))
                | addr
                | gits::BASER_INNER_SHAREABLE
                | (b & (3 << gits::BASER_PAGE_SIZE_SHIFT))
                | (pages as u64 - 1);
            if ty == gits::BASER_TYPE_DEVICE {
                device_limit = ((pages * page) / entry) as u64;
            } else {
                have_collections = true;
            }
            basers.push((reg, v));
            tables.push(t);
        }
        if device_limit == 0 || !have_collections {
            return Err(ItsError::Unsupported);
        }
        for &(reg, v) in &basers {
            mmio.write64(reg, v);
            if mmio.read64(reg) & gits::BASER_SHAREABILITY_MASK == 0 {
                // Non-snooping ITS: non-cacheable accesses (see `publish`).
                let nc =
                    (v & !(gits::BASER_SHAREABILITY_MASK | gits::BASER_INNER_WAWB)) | (1 << 59);
                mmio.write64(reg, nc);
            }
        }
        let cbaser = gits::CBASER_VALID
            | gits::BASER_INNER_WAWB
            | (queue.phys() & gits::CBASER_ADDR_MASK)
            | gits::BASER_INNER_SHAREABLE
            | (u64::from(opts.queue_pages) - 1);
        mmio.write64(gits::CBASER, cbaser);
        if mmio.read64(gits::CBASER) & gits::BASER_SHAREABILITY_MASK == 0 {
            let nc =
                (cbaser & !(gits::BASER_SHAREABILITY_MASK | gits::BASER_INNER_WAWB)) | (1 << 59);
            mmio.write64(gits::CBASER, nc);
        }
        mmio.write64(gits::CWRITER, 0);
        mmio.store(gits::CTLR, GitsCtlr::ENABLED);
        if !mmio.load(gits::CTLR).contains(GitsCtlr::ENABLED) {
            return Err(ItsError::Unsupported);
        }
        Ok(Self {
            mmio,
            translater,
            gic,
            lpis,
            alloc,
            irqs,
            opts,
            itt_entry_size,
            event_id_bits,
            inner: Mutex::new(Inner {
                queue,
                cwriter: 0,
                _tables: tables,
                device_limit,
                collections: alloc::vec![None; opts.max_cpus],
                devices: BTreeMap::new(),
            }),
        })
    }

    /// Physical address of `GITS_TRANSLATER`: the MSI address of every event.
    pub fn translater(&self) -> u64 {
        self.translater
    }

    /// The LPI tables this ITS allocates from.
    pub fn lpis(&self) -> &Arc<LpiTables> {
        &self.lpis
    }

    /// DeviceIDs the device table covers (below this).
    pub fn device_limit(&self) -> u64 {
        self.with(|g| g.device_limit)
    }

    /// EventID bits the ITS implements (`GITS_TYPER.ID_bits` + 1).
    pub fn event_id_bits(&self) -> u32 {
        self.event_id_bits
    }

    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let was = self.irqs.save();
        let r = f(&mut self.inner.lock());
        self.irqs.restore(was);
        r
    }

    /// Writes `cmds` into the queue and waits until the ITS consumed them.
    fn submit(&self, g: &mut Inner, cmds: &[ItsCommand]) -> Result<(), ItsError> {
        let len = g.queue.len() / ItsCommand::SIZE * ItsCommand::SIZE;
        let need = cmds.len() * ItsCommand::SIZE;
        // One slot always stays empty: CWRITER == CREADR means "empty".
        if need + ItsCommand::SIZE > len {
            return Err(ItsError::QueueFull);
        }
        let readr = || self.mmio.read64(gits::CREADR);
        let free = |creadr: u64| {
            let r = (creadr & gits::QUEUE_OFFSET_MASK) as usize;
            (r + len - g.cwriter - ItsCommand::SIZE) % len
        };
        let mut room = false;
        for _ in 0..self.opts.poll_limit.max(1) {
            let r = readr();
            if r & gits::CREADR_STALLED != 0 {
                return Err(ItsError::Stalled);
            }
            if free(r) >= need {
                room = true;
                break;
            }
            core::hint::spin_loop();
        }
        if !room {
            return Err(ItsError::QueueFull);
        }
        let mut w = g.cwriter;
        for c in cmds {
            for (i, word) in c.words().iter().enumerate() {
                g.queue.write_u64(w + ItsCommand::word_offset(i), *word);
            }
            g.queue.publish(w, ItsCommand::SIZE);
            w = (w + ItsCommand::SIZE) % len;
        }
        g.cwriter = w;
        self.mmio.write64(gits::CWRITER, w as u64);
        for _ in 0..self.opts.poll_limit.max(1) {
            let r = readr();
            if r & gits::CREADR_STALLED != 0 {
                return Err(ItsError::Stalled);
            }
            if (r & gits::QUEUE_OFFSET_MASK) as usize == w {
                return Ok(());
            }
            core::hint::spin_loop();
        }
        Err(ItsError::Timeout)
    }

    fn target(&self, g: &Inner, cpu: CpuId) -> Result<RdBase, ItsError> {
        g.collections
            .get(cpu.index())
            .copied()
            .flatten()
            .ok_or(ItsError::BadCpu(cpu))
    }

    /// Brings `cpu` in: enables LPIs on its redistributor (through the
    /// GIC), maps its collection (`MAPC`, ICID = the CPU's index) and
    /// `SYNC`s. Runs in the hotplug Starting phase after the GIC's own
    /// step ([`ItsHotplug`]); any CPU may call it.
    pub fn cpu_up(&self, cpu: CpuId) -> Result<(), ItsError> {
        if cpu.index() >= self.opts.max_cpus {
            return Err(ItsError::BadCpu(cpu));
        }
        let rd = RdBase(self.gic.lpi_target(cpu).ok_or(ItsError::BadCpu(cpu))?);
        self.gic
            .enable_lpis(cpu, &self.lpis)
            .map_err(|_| ItsError::BadCpu(cpu))?;
        let icid = CollectionId(cpu.get() as u16);
        self.with(|g| {
            self.submit(
                g,
                &[
                    ItsCommand::mapc(icid, rd, false, true),
                    ItsCommand::sync(rd, false),
                    ItsCommand::invall(icid),
                    ItsCommand::sync(rd, false),
                ],
            )?;
            g.collections[cpu.index()] = Some(rd);
            Ok(())
        })
    }

    /// Takes `cpu` out (hotplug Dying phase, after irqcore migrated the
    /// descriptors): every event still in its collection moves to the first
    /// other CPU with a collection (`MOVI` + `SYNC`), then its collection
    /// is marked down so nothing new goes there. Returns how many events
    /// moved.
    pub fn cpu_down(&self, cpu: CpuId) -> Result<usize, ItsError> {
        self.with(|g| {
            let from = self.target(g, cpu)?;
            let to_cpu = CpuId::all(g.collections.len())
                .find(|&c| c != cpu && g.collections[c.index()].is_some())
                .ok_or(ItsError::NoOnlineCpu)?;
            let to = self.target(g, to_cpu)?;
            let victims: Vec<(DeviceId, EventId)> = g
                .devices
                .iter()
                .flat_map(|(&d, dev)| {
                    dev.events
                        .iter()
                        .filter(|(_, m)| m.cpu == cpu)
                        .map(move |(&e, _)| (d, e))
                })
                .collect();
            for &(d, e) in &victims {
                self.submit(
                    g,
                    &[
                        ItsCommand::movi(d, e, CollectionId(to_cpu.get() as u16)),
                        ItsCommand::sync(from, false),
                        ItsCommand::sync(to, false),
                    ],
                )?;
                if let Some(m) = g.devices.get_mut(&d).and_then(|dev| dev.events.get_mut(&e)) {
                    m.cpu = to_cpu;
                }
            }
            g.collections[cpu.index()] = None;
            Ok(victims.len())
        })
    }

    /// Whether `cpu`'s collection is mapped (it can take LPIs).
    pub fn cpu_ready(&self, cpu: CpuId) -> bool {
        self.with(|g| g.collections.get(cpu.index()).is_some_and(Option::is_some))
    }

    /// Maps `device` with room for `nr_events` events (rounded up to a power
    /// of two): allocates its ITT and issues `MAPD`.
    pub fn map_device(&self, device: DeviceId, nr_events: u32) -> Result<(), ItsError> {
        let bits = ceil_log2(nr_events.max(2));
        if bits > self.event_id_bits {
            return Err(ItsError::TooManyEvents(nr_events));
        }
        {
            let (limit, mapped) = self.with(|g| (g.device_limit, g.devices.contains_key(&device)));
            if u64::from(device.0) >= limit {
                return Err(ItsError::DeviceOutOfRange(device));
            }
            if mapped {
                return Err(ItsError::DeviceMapped(device));
            }
        }
        // Allocated outside the lock (the allocator may take its own locks).
        let size = (1usize << bits) * self.itt_entry_size;
        let itt = alloc_checked(self.alloc.as_ref(), size.max(256), 256)?;
        self.with(|g| {
            if g.devices.contains_key(&device) {
                return Err(ItsError::DeviceMapped(device));
            }
            self.submit(g, &[ItsCommand::mapd(device, itt.phys(), bits as u8, true)])?;
            g.devices.insert(
                device,
                Device {
                    _itt: itt,
                    event_bits: bits as u8,
                    events: BTreeMap::new(),
                },
            );
            Ok(())
        })
    }

    /// Unmaps `device` (`MAPD` with `V` = 0) once it has no mapped event,
    /// and frees its ITT.
    pub fn unmap_device(&self, device: DeviceId) -> Result<(), ItsError> {
        let itt = self.with(|g| {
            let dev = g
                .devices
                .get(&device)
                .ok_or(ItsError::DeviceNotMapped(device))?;
            if !dev.events.is_empty() {
                return Err(ItsError::DeviceBusy(device));
            }
            self.submit(g, &[ItsCommand::mapd(device, 0, 1, false)])?;
            Ok(g.devices.remove(&device))
        })?;
        drop(itt);
        Ok(())
    }

    fn check_event(g: &Inner, device: DeviceId, event: EventId) -> Result<&Device, ItsError> {
        let dev = g
            .devices
            .get(&device)
            .ok_or(ItsError::DeviceNotMapped(device))?;
        if u64::from(event.0) >= 1u64 << dev.event_bits {
            return Err(ItsError::EventOutOfRange(device, event));
        }
        Ok(dev)
    }

    /// Maps `device`'s `event` to a new LPI (disabled, default priority) in
    /// `cpu`'s collection: `MAPTI`, `INV`, `SYNC`. Returns the LPI.
    pub fn map_event(
        &self,
        device: DeviceId,
        event: EventId,
        cpu: CpuId,
    ) -> Result<IntId, ItsError> {
        self.with(|g| {
            let dev = Self::check_event(g, device, event)?;
            if dev.events.contains_key(&event) {
                return Err(ItsError::EventMapped(device, event));
            }
            let rd = self.target(g, cpu)?;
            let lpi = self.lpis.alloc_lpi()?;
            let r = self
                .lpis
                .configure(lpi, false, self.lpis.default_priority())
                .map_err(ItsError::from)
                .and_then(|()| {
                    self.submit(
                        g,
                        &[
                            ItsCommand::mapti(
                                device,
                                event,
                                lpi.get(),
                                CollectionId(cpu.get() as u16),
                            ),
                            ItsCommand::inv(device, event),
                            ItsCommand::sync(rd, false),
                        ],
                    )
                });
            if let Err(e) = r {
                let _ = self.lpis.free_lpi(lpi);
                return Err(e);
            }
            if let Some(dev) = g.devices.get_mut(&device) {
                dev.events.insert(event, EventMapping { lpi, cpu });
            }
            Ok(lpi)
        })
    }

    /// Unmaps `device`'s `event` (`DISCARD`, `SYNC`) and frees its LPI.
    pub fn unmap_event(&self, device: DeviceId, event: EventId) -> Result<(), ItsError> {
        self.with(|g| {
            let dev = Self::check_event(g, device, event)?;
            let m = *dev
                .events
                .get(&event)
                .ok_or(ItsError::EventNotMapped(device, event))?;
            let rd = self.target(g, m.cpu).unwrap_or(RdBase(0));
            self.submit(
                g,
                &[
                    ItsCommand::discard(device, event),
                    ItsCommand::sync(rd, false),
                ],
            )?;
            if let Some(dev) = g.devices.get_mut(&device) {
                dev.events.remove(&event);
            }
            let _ = self.lpis.free_lpi(m.lpi);
            Ok(())
        })
    }

    /// Moves `device`'s `event` to `cpu`'s collection: `MOVI`, then `SYNC`
    /// to the old and the new redistributor, so the interrupt is nowhere in
    /// between once this returns. After [`ItsError::Timeout`] the commands
    /// stay queued; the driver records the new target only once a move
    /// completed (irqcore retries a `Busy` move at the next safe point).
    pub fn move_event(&self, device: DeviceId, event: EventId, cpu: CpuId) -> Result<(), ItsError> {
        self.with(|g| {
            let dev = Self::check_event(g, device, event)?;
            let m = *dev
                .events
                .get(&event)
                .ok_or(ItsError::EventNotMapped(device, event))?;
            let to = self.target(g, cpu)?;
            // Issued even when the driver believes the event is there
            // already: after a `Timeout` an earlier MOVI may still be in
            // the queue and run later; the queue being FIFO, the last
            // request queued is where the event ends up.
            let from = self.target(g, m.cpu).unwrap_or(to);
            self.submit(
                g,
                &[
                    ItsCommand::movi(device, event, CollectionId(cpu.get() as u16)),
                    ItsCommand::sync(from, false),
                    ItsCommand::sync(to, false),
                ],
            )?;
            if let Some(e) = g
                .devices
                .get_mut(&device)
                .and_then(|d| d.events.get_mut(&event))
            {
                e.cpu = cpu;
            }
            Ok(())
        })
    }

    /// Enables or disables `device`'s `event` at its LPI: the configuration
    /// byte, then `INV` and `SYNC` so the redistributor re-reads it.
    pub fn set_event_enabled(
        &self,
        device: DeviceId,
        event: EventId,
        enabled: bool,
    ) -> Result<(), ItsError> {
        self.with(|g| {
            let m = *Self::check_event(g, device, event)?
                .events
                .get(&event)
                .ok_or(ItsError::EventNotMapped(device, event))?;
            let rd = self.target(g, m.cpu).unwrap_or(RdBase(0));
            self.lpis.set_enabled(m.lpi, enabled)?;
            self.submit(
                g,
                &[ItsCommand::inv(device, event), ItsCommand::sync(rd, false)],
            )
        })
    }

    /// Makes `device`'s `event` pending as if the device had written it
    /// (`INT`, `SYNC`): the hardware retrigger.
    pub fn inject(&self, device: DeviceId, event: EventId) -> Result<(), ItsError> {
        self.with(|g| {
            let m = *Self::check_event(g, device, event)?
                .events
                .get(&event)
                .ok_or(ItsError::EventNotMapped(device, event))?;
            let rd = self.target(g, m.cpu).unwrap_or(RdBase(0));
            self.submit(
                g,
                &[ItsCommand::int(device, event), ItsCommand::sync(rd, false)],
            )
        })
    }

    /// The mapping of `device`'s `event`, if any.
    pub fn event(&self, device: DeviceId, event: EventId) -> Option<EventMapping> {
        self.with(|g| g.devices.get(&device)?.events.get(&event).copied())
    }

    /// Number of mapped events of `device` (`None`: device not mapped).
    pub fn nr_events(&self, device: DeviceId) -> Option<usize> {
        self.with(|g| g.devices.get(&device).map(|d| d.events.len()))
    }

    /// The message `device` must write for `event`: `GITS_TRANSLATER`, the
    /// EventID as data.
    pub fn msi_msg(&self, event: EventId) -> MsiMsg {
        MsiMsg {
            address_lo: self.translater as u32,
            address_hi: (self.translater >> 32) as u32,
            data: event.0,
        }
    }

    /// The CPU an affinity request for `mask` lands on: the first CPU of
    /// the mask whose collection is mapped.
    fn pick(&self, mask: &CpuMask) -> Option<CpuId> {
        self.with(|g| {
            mask.iter()
                .find(|c| g.collections.get(c.index()).is_some_and(Option::is_some))
        })
    }

    /// Reads back command `index` of the queue, decoded (diagnostics).
    pub fn queued_command(&self, index: usize) -> Option<Decoded> {
        self.with(|g| {
            let off = index.checked_mul(ItsCommand::SIZE)?;
            if off + ItsCommand::SIZE > g.queue.len() {
                return None;
            }
            let w = [0, 1, 2, 3].map(|i| g.queue.read_u64(off + ItsCommand::word_offset(i)));
            Some(ItsCommand::decode(w, false))
        })
    }
}

impl<M: Mmio> IrqChip for Its<M> {
    fn name(&self) -> &str {
        "ITS"
    }

    /// `EOI_PER_CPU`: `eoi` only forwards to the GIC's, which is per-CPU.
    fn flags(&self) -> irqcore::ChipFlags {
        irqcore::ChipFlags::EOI_PER_CPU
    }

    fn mask(&self, d: &IrqData<'_>) {
        let (dev, ev) = split_hwirq(d.hwirq());
        let _ = self.set_event_enabled(dev, ev, false);
    }

    fn unmask(&self, d: &IrqData<'_>) {
        let (dev, ev) = split_hwirq(d.hwirq());
        let _ = self.set_event_enabled(dev, ev, true);
    }

    fn ack(&self, d: &IrqData<'_>) {
        d.ack_parent();
    }

    fn eoi(&self, d: &IrqData<'_>) {
        d.eoi_parent();
    }

    fn set_type(&self, _d: &IrqData<'_>, trigger: TriggerType) -> Result<(), ChipError> {
        match trigger {
            TriggerType::None | TriggerType::EdgeRising => Ok(()),
            _ => Err(ChipError::InvalidTrigger),
        }
    }

    fn set_affinity(
        &self,
        d: &IrqData<'_>,
        mask: &CpuMask,
        _force: bool,
    ) -> Result<AffinitySet, ChipError> {
        let (dev, ev) = split_hwirq(d.hwirq());
        let cpu = self.pick(mask).ok_or(ChipError::Invalid)?;
        match self.move_event(dev, ev, cpu) {
            Ok(()) => Ok(AffinitySet::Done {
                effective: CpuMask::of(cpu),
            }),
            // The queue is busy: irqcore keeps the request and retries at
            // the next safe point (the last request wins).
            Err(ItsError::QueueFull | ItsError::Timeout) => Err(ChipError::Busy),
            Err(_) => Err(ChipError::Invalid),
        }
    }

    fn retrigger(&self, d: &IrqData<'_>) -> bool {
        let (dev, ev) = split_hwirq(d.hwirq());
        self.inject(dev, ev).is_ok()
    }

    fn compose_msi_msg(&self, d: &IrqData<'_>) -> Option<MsiMsg> {
        let (dev, ev) = split_hwirq(d.hwirq());
        self.event(dev, ev).map(|_| self.msi_msg(ev))
    }
}

/// The ITS domain: a tree over (DeviceID, EventID) pairs ([`its_hwirq`]),
/// stacked on the GIC's LPI domain ([`crate::lpi::add_lpi_domain`]).
///
/// Allocating a mapping maps the event (`MAPTI`) to a fresh LPI on the
/// first CPU of the default mask whose collection is up, and hands that LPI
/// to the parent; freeing it (the last reference of the mapping, irqcore's
/// refcounted domains) `DISCARD`s the event and frees the LPI. Devices are
/// mapped ([`Its::map_device`]) before their events can be.
pub struct ItsDomain<M: Mmio> {
    its: Arc<Its<M>>,
    default_mask: CpuMask,
}

impl<M: Mmio> ItsDomain<M> {
    /// The domain of `its`; new events go to the first ready CPU of
    /// `default_mask`.
    pub fn new(its: Arc<Its<M>>, default_mask: CpuMask) -> Self {
        Self { its, default_mask }
    }
}

impl<M: Mmio + 'static> DomainOps for ItsDomain<M> {
    fn alloc(&self, req: &AllocRequest) -> Result<LevelAlloc, IrqError> {
        let (dev, ev) = split_hwirq(req.hwirq);
        let cpu = self
            .its
            .pick(&self.default_mask)
            .ok_or(IrqError::NoOnlineCpu)?;
        let lpi = self.its.map_event(dev, ev, cpu)?;
        let mut l = LevelAlloc::new(self.its.clone() as Arc<dyn IrqChip>, FlowKind::FastEoi);
        l.parent_hwirq = lpi.hwirq();
        Ok(l)
    }

    fn free(&self, level: &LevelRef) {
        let (dev, ev) = split_hwirq(level.hwirq);
        let _ = self.its.unmap_event(dev, ev);
    }
}

/// Registers the ITS domain of `its` above `lpi_domain` (named "ITS").
pub fn add_its_domain<P: Platform, M: Mmio + 'static>(
    registry: &DomainRegistry<'_, P>,
    its: Arc<Its<M>>,
    lpi_domain: DomainId,
    default_mask: CpuMask,
) -> Result<DomainId, DomainError> {
    registry.add_domain(
        DomainConfig::new("ITS", DomainKind::Tree).with_parent(lpi_domain),
        Arc::new(ItsDomain::new(its, default_mask)),
    )
}

/// The ITS's CPU hotplug work as an irqcore Starting-phase callback:
/// [`Its::cpu_up`] on the way up, [`Its::cpu_down`] on the way down.
/// Register it after the GIC's callback ([`crate::register_hotplug`]) so
/// the redistributor is awake first and asleep last.
pub struct ItsHotplug<M: Mmio> {
    its: Arc<Its<M>>,
}

impl<M: Mmio> ItsHotplug<M> {
    /// The callback for `its`.
    pub fn new(its: Arc<Its<M>>) -> Self {
        Self { its }
    }
}

impl<P: Platform, M: Mmio + 'static> HotplugCallback<P> for ItsHotplug<M> {
    fn name(&self) -> &str {
        "gic-its"
    }

    fn up(&self, ctx: &HotplugCtx<'_, P>) -> Result<(), IrqError> {
        self.its.cpu_up(ctx.cpu).map_err(IrqError::from)
    }

    fn down(&self, ctx: &HotplugCtx<'_, P>) {
        // The core never takes the last CPU down, so there is a target; a
        // queue error leaves the stragglers where they are (reported by
        // the return value to direct callers).
        let _ = self.its.cpu_down(ctx.cpu);
    }
}

/// Registers [`ItsHotplug`] for `its` in the Starting phase.
pub fn register_its_hotplug<P: Platform, M: Mmio + 'static>(
    core: &IrqCore<P>,
    its: Arc<Its<M>>,
) -> Result<(), IrqError> {
    core.register_hotplug(CpuPhase::Starting, Arc::new(ItsHotplug::new(its)))
}
