//! A behavioural model of a GICv3 ITS (feature `model`), reached through the
//! same [`Mmio`] trait as the hardware, keeping its tables in the simulated
//! physical memory ([`ModelMemory`]) the driver allocated them from, and
//! delivering LPIs to a [`GicModel`]'s redistributors.
//!
//! What it models (IHI 0069H chapter 5): `GITS_CTLR`, `GITS_TYPER` (physical
//! LPIs, `PTA` = 0, no hardware collections, configurable ID sizes and ITT
//! entry size), `GITS_BASER0` (device table) and `GITS_BASER1`
//! (collection table), flat only, `GITS_CBASER`/`CWRITER`/`CREADR`; the
//! commands `MAPD`, `MAPC`, `MAPTI`/`MAPI`, `MOVI`, `DISCARD`, `INV`,
//! `INVALL`, `INT`, `CLEAR`, `SYNC`, executed when `GITS_CWRITER` is
//! written (as QEMU does), and translation of a device's write to
//! `GITS_TRANSLATER` ([`ItsModel::msi_write`]).
//!
//! Table entries (their format is IMPLEMENTATION DEFINED; this model's):
//! device table entry 8 bytes (bit 63 valid, bits 51:8 ITT address, bits
//! 4:0 EventID bits - 1), collection table entry 8 bytes (bit 63 valid,
//! bits 15:0 processor number), ITT entry `itt_entry_size` bytes of which
//! the first 8 are used (bit 63 valid, bits 47:32 ICID, bits 31:0 LPI).
//! Every entry is written to and read back from memory, so an ITT that is
//! freed or too small is seen.
//!
//! Command errors (an unmapped device, an EventID beyond the ITT, a
//! DeviceID beyond the device table, an LPI outside the range, a bad
//! collection or target) **stall** the queue (`GITS_CREADR.Stalled`, one of
//! the behaviours IHI 0069H 5.3.1 allows) and are recorded
//! ([`ItsModel::command_errors`]). [`ItsModel::set_hold`] stops command
//! processing, so tests can fill the queue.
//!
//! The LPI configuration a redistributor uses is cached in the GIC model
//! until an `INV`/`INVALL` (or the mapping command) reloads it, as
//! hardware may: a driver that flips an enable bit without `INV` is caught.

use crate::its_cmd::{Decoded, DeviceId, EventId, ItsCommand};
use crate::mem_model::ModelMemory;
use crate::model::GicModel;
use crate::regs::{GitsCtlr, Mmio, gits};

/// `GITS_CTLR`'s offset, for the decoders' `match`es.
const GITS_CTLR: usize = gits::CTLR.offset();
use irqcore::CpuId;
use std::format;
use std::string::String;
use std::sync::{Arc, Mutex, MutexGuard};
use std::vec::Vec;

/// What the modelled ITS implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ItsModelConfig {
    /// DeviceID bits (`GITS_TYPER.Devbits` + 1).
    pub device_bits: u32,
    /// EventID bits (`GITS_TYPER.ID_bits` + 1).
    pub event_bits: u32,
    /// Bytes per ITT entry (`GITS_TYPER.ITT_entry_size` + 1), at least 8.
    pub itt_entry_size: u32,
    /// Collection ID bits (`GITS_TYPER.CIDbits` + 1).
    pub collection_bits: u32,
    /// `GITS_TYPER.Physical`.
    pub physical: bool,
    /// `GITS_TYPER.PTA` (the driver refuses 1).
    pub pta: bool,
}

impl Default for ItsModelConfig {
    /// QEMU 7.2's ITS: 16-bit DeviceIDs, EventIDs and collection IDs,
    /// 12-byte ITT entries, physical LPIs, `PTA` = 0.
    fn default() -> Self {
        Self {
            device_bits: 16,
            event_bits: 16,
            itt_entry_size: 12,
            collection_bits: 16,
            physical: true,
            pta: false,
        }
    }
}

/// Why a device's MSI write was not translated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TranslationError {
    /// The ITS is disabled.
    Disabled,
    /// The write did not go to `GITS_TRANSLATER`.
    WrongAddress(u64),
    /// The DeviceID is beyond the device table.
    DeviceOutOfRange(DeviceId),
    /// The device is not mapped.
    DeviceNotMapped(DeviceId),
    /// The EventID is beyond the device's ITT.
    EventOutOfRange(DeviceId, EventId),
    /// The event is not mapped.
    EventNotMapped(DeviceId, EventId),
    /// The event's collection is not mapped to a redistributor.
    CollectionNotMapped(u16),
}

/// Where a translated event went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivered {
    /// The LPI.
    pub lpi: u32,
    /// The CPU (processor number) whose redistributor it is pending at.
    pub cpu: CpuId,
}

/// One command the model executed, or refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoggedCommand {
    /// The command.
    pub cmd: Decoded,
    /// `None` if it executed, the reason if it stalled the queue.
    pub error: Option<&'static str>,
}

#[derive(Debug)]
struct Inner {
    enabled: bool,
    cbaser: u64,
    cwriter: u64,
    creadr: u64,
    stalled: bool,
    baser: [u64; 8],
    hold: bool,
    log: Vec<LoggedCommand>,
}

/// The model.
#[derive(Debug)]
pub struct ItsModel {
    gic: Arc<GicModel>,
    mem: ModelMemory,
    translater: u64,
    cfg: ItsModelConfig,
    inner: Mutex<Inner>,
}

const ENTRY_VALID: u64 = 1 << 63;

impl ItsModel {
    /// An ITS whose frames are at physical `base` (so `GITS_TRANSLATER` is
    /// at `base + 0x10040`), with tables in `mem`, delivering to `gic`.
    pub fn new(gic: Arc<GicModel>, mem: ModelMemory, base: u64, cfg: ItsModelConfig) -> Arc<Self> {
        gic.attach_memory(mem.clone());
        let page64k = 2 << gits::BASER_PAGE_SIZE_SHIFT;
        let mut baser = [0u64; 8];
        baser[0] = (gits::BASER_TYPE_DEVICE << gits::BASER_TYPE_SHIFT)
            | (7 << gits::BASER_ENTRY_SIZE_SHIFT)
            | page64k;
        baser[1] = (gits::BASER_TYPE_COLLECTION << gits::BASER_TYPE_SHIFT)
            | (7 << gits::BASER_ENTRY_SIZE_SHIFT)
            | page64k;
        Arc::new(Self {
            gic,
            mem,
            translater: base + gits::TRANSLATER as u64,
            cfg,
            inner: Mutex::new(Inner {
                enabled: false,
                cbaser: 0,
                cwriter: 0,
                creadr: 0,
                stalled: false,
                baser,
                hold: false,
                log: Vec::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The register frames as [`Mmio`].
    pub fn mmio(self: &Arc<Self>) -> ItsModelMmio {
        ItsModelMmio {
            model: self.clone(),
        }
    }

    /// Physical address of `GITS_TRANSLATER`.
    pub fn translater(&self) -> u64 {
        self.translater
    }

    /// Stops (`true`) or resumes command processing; resuming processes
    /// what was queued meanwhile.
    pub fn set_hold(&self, hold: bool) {
        let mut g = self.lock();
        g.hold = hold;
        if !hold {
            self.process(&mut g);
        }
    }

    /// Every command executed or refused so far, in order.
    pub fn commands(&self) -> Vec<LoggedCommand> {
        self.lock().log.clone()
    }

    /// The commands that stalled the queue.
    pub fn command_errors(&self) -> Vec<LoggedCommand> {
        self.lock()
            .log
            .iter()
            .filter(|c| c.error.is_some())
            .copied()
            .collect()
    }

    /// Whether the queue is stalled on an error.
    pub fn stalled(&self) -> bool {
        self.lock().stalled
    }

    /// Clears a stall and skips the failing command (what writing
    /// `GITS_CWRITER.Retry` would not do: tests use it to go on).
    pub fn clear_stall(&self) {
        let mut g = self.lock();
        if g.stalled {
            g.stalled = false;
            let size = queue_size(g.cbaser);
            g.creadr = (g.creadr + ItsCommand::SIZE as u64) % size.max(1);
        }
    }

    /// A device with `device` as its DeviceID writes `data` to physical
    /// `addr`: the translation, as the ITS does it from its tables.
    pub fn msi_write(
        &self,
        device: DeviceId,
        addr: u64,
        data: u32,
    ) -> Result<Delivered, TranslationError> {
        let g = self.lock();
        if !g.enabled {
            return Err(TranslationError::Disabled);
        }
        if addr != self.translater {
            return Err(TranslationError::WrongAddress(addr));
        }
        let d = self.translate(&g, device, EventId(data))?;
        drop(g);
        self.gic.set_lpi_pending(d.cpu, d.lpi);
        Ok(d)
    }

    /// The event's current translation, without raising it.
    pub fn lookup(&self, device: DeviceId, event: EventId) -> Result<Delivered, TranslationError> {
        let g = self.lock();
        self.translate(&g, device, event)
    }

    /// Whether `device` has a valid device-table entry.
    pub fn device_mapped(&self, device: DeviceId) -> bool {
        let g = self.lock();
        self.dte(&g, device).is_ok_and(|d| d & ENTRY_VALID != 0)
    }

    // ----- tables in memory -------------------------------------------------

    fn table(&self, g: &Inner, n: usize) -> Option<(u64, u64, u64)> {
        let b = g.baser[n];
        if b & gits::BASER_VALID == 0 {
            return None;
        }
        let page = match (b >> gits::BASER_PAGE_SIZE_SHIFT) & 3 {
            0 => 4096u64,
            1 => 16384,
            _ => 65536,
        };
        let entry = ((b >> gits::BASER_ENTRY_SIZE_SHIFT) & 0x1f) + 1;
        let mut addr = b & gits::BASER_ADDR_MASK;
        if page == 65536 {
            addr &= !0xffff;
        }
        let len = ((b & gits::BASER_SIZE_MASK) + 1) * page;
        Some((addr, entry, len / entry))
    }

    fn dte_addr(&self, g: &Inner, device: DeviceId) -> Result<u64, TranslationError> {
        let (addr, entry, n) = self
            .table(g, 0)
            .ok_or(TranslationError::DeviceOutOfRange(device))?;
        if u64::from(device.0) >= n || u64::from(device.0) >= 1 << self.cfg.device_bits {
            return Err(TranslationError::DeviceOutOfRange(device));
        }
        Ok(addr + u64::from(device.0) * entry)
    }

    fn dte(&self, g: &Inner, device: DeviceId) -> Result<u64, TranslationError> {
        Ok(self.mem.read_u64(self.dte_addr(g, device)?))
    }

    fn cte_addr(&self, g: &Inner, icid: u16) -> Option<u64> {
        let (addr, entry, n) = self.table(g, 1)?;
        (u64::from(icid) < n && u32::from(icid) < 1 << self.cfg.collection_bits.min(16))
            .then_some(addr + u64::from(icid) * entry)
    }

    fn ite_addr(
        &self,
        g: &Inner,
        device: DeviceId,
        event: EventId,
    ) -> Result<u64, TranslationError> {
        let dte = self.dte(g, device)?;
        if dte & ENTRY_VALID == 0 {
            return Err(TranslationError::DeviceNotMapped(device));
        }
        let bits = (dte & 0x1f) + 1;
        if u64::from(event.0) >= 1 << bits {
            return Err(TranslationError::EventOutOfRange(device, event));
        }
        let itt = dte & 0x000f_ffff_ffff_ff00;
        Ok(itt + u64::from(event.0) * u64::from(self.cfg.itt_entry_size))
    }

    fn translate(
        &self,
        g: &Inner,
        device: DeviceId,
        event: EventId,
    ) -> Result<Delivered, TranslationError> {
        let ite = self.mem.read_u64(self.ite_addr(g, device, event)?);
        if ite & ENTRY_VALID == 0 {
            return Err(TranslationError::EventNotMapped(device, event));
        }
        let icid = (ite >> 32) as u16;
        let cte = self
            .cte_addr(g, icid)
            .map(|a| self.mem.read_u64(a))
            .unwrap_or(0);
        if cte & ENTRY_VALID == 0 {
            return Err(TranslationError::CollectionNotMapped(icid));
        }
        // MAPC only maps existing redistributors; a target no CpuId can
        // hold is no redistributor, so the collection is not mapped to one.
        let cpu =
            CpuId::new((cte & 0xffff) as u32).ok_or(TranslationError::CollectionNotMapped(icid))?;
        Ok(Delivered {
            lpi: ite as u32,
            cpu,
        })
    }

    fn write_entry(&self, addr: u64, value: u64) -> Result<(), &'static str> {
        if self.mem.write(addr, &value.to_le_bytes()) {
            Ok(())
        } else {
            Err("table entry outside the memory the driver gave")
        }
    }

    // ----- commands ------------------------------------------------------

    fn process(&self, g: &mut Inner) {
        if !g.enabled || g.hold || g.cbaser & gits::CBASER_VALID == 0 {
            return;
        }
        let size = queue_size(g.cbaser);
        let base = g.cbaser & gits::CBASER_ADDR_MASK;
        while !g.stalled && g.creadr != g.cwriter {
            let at = base + g.creadr;
            let words = [0, 8, 16, 24].map(|o| self.mem.read_u64(at + o));
            let cmd = ItsCommand::decode(words, self.cfg.pta);
            let r = self.execute(g, cmd);
            g.log.push(LoggedCommand {
                cmd,
                error: r.err(),
            });
            if r.is_err() {
                g.stalled = true;
                break;
            }
            g.creadr = (g.creadr + ItsCommand::SIZE as u64) % size;
        }
    }

    fn target_ok(&self, rd: u64) -> bool {
        (rd as usize) < self.gic.num_cpus()
    }

    fn execute(&self, g: &mut Inner, cmd: Decoded) -> Result<(), &'static str> {
        let nr_lpi_end = 1u32 << 16;
        match cmd {
            Decoded::Mapd {
                device,
                itt,
                event_bits,
                valid,
            } => {
                let a = self
                    .dte_addr(g, device)
                    .map_err(|_| "MAPD: DeviceID beyond the device table")?;
                if valid && u32::from(event_bits) > self.cfg.event_bits {
                    return Err("MAPD: ITT size beyond ID_bits");
                }
                if valid
                    && !self.mem.contains(
                        itt,
                        (1usize << event_bits) * self.cfg.itt_entry_size as usize,
                    )
                {
                    return Err("MAPD: ITT too small for its Size");
                }
                let v = if valid {
                    ENTRY_VALID | itt | u64::from(event_bits - 1)
                } else {
                    0
                };
                self.write_entry(a, v)
            }
            Decoded::Mapc { icid, rd, valid } => {
                let a = self
                    .cte_addr(g, icid.0)
                    .ok_or("MAPC: ICID beyond the collection table")?;
                if valid && !self.target_ok(rd.0) {
                    return Err("MAPC: no such redistributor");
                }
                self.write_entry(a, if valid { ENTRY_VALID | rd.0 } else { 0 })
            }
            Decoded::Mapti {
                device,
                event,
                lpi,
                icid,
            } => {
                let a = self.ite_addr(g, device, event).map_err(|e| match e {
                    TranslationError::DeviceNotMapped(_) => "MAPTI: device not mapped",
                    TranslationError::EventOutOfRange(..) => "MAPTI: EventID beyond the ITT",
                    _ => "MAPTI: DeviceID beyond the device table",
                })?;
                if !(8192..nr_lpi_end).contains(&lpi) {
                    return Err("MAPTI: not an LPI");
                }
                if self.cte_addr(g, icid.0).is_none() {
                    return Err("MAPTI: ICID beyond the collection table");
                }
                self.gic.invalidate_lpi(lpi);
                self.write_entry(a, ENTRY_VALID | (u64::from(icid.0) << 32) | u64::from(lpi))
            }
            Decoded::Movi {
                device,
                event,
                icid,
            } => {
                let old = self
                    .translate(g, device, event)
                    .map_err(|_| "MOVI: event not mapped")?;
                let a = self
                    .ite_addr(g, device, event)
                    .map_err(|_| "MOVI: event not mapped")?;
                let cte = self
                    .cte_addr(g, icid.0)
                    .map(|c| self.mem.read_u64(c))
                    .ok_or("MOVI: ICID beyond the collection table")?;
                if cte & ENTRY_VALID == 0 {
                    return Err("MOVI: collection not mapped");
                }
                // Checked before the ITE changes, so a bad entry changes nothing.
                let to = CpuId::new((cte & 0xffff) as u32).ok_or("MOVI: collection not mapped")?;
                let ite = self.mem.read_u64(a);
                self.write_entry(a, (ite & !(0xffff << 32)) | (u64::from(icid.0) << 32))?;
                // A pending LPI moves with its event (IHI 0069H 5.3.15).
                if self.gic.clear_lpi_pending(old.cpu, old.lpi) {
                    self.gic.set_lpi_pending(to, old.lpi);
                }
                Ok(())
            }
            Decoded::Discard { device, event } => {
                let d = self
                    .translate(g, device, event)
                    .map_err(|_| "DISCARD: event not mapped")?;
                let a = self
                    .ite_addr(g, device, event)
                    .map_err(|_| "DISCARD: event not mapped")?;
                self.gic.clear_lpi_pending(d.cpu, d.lpi);
                self.write_entry(a, 0)
            }
            Decoded::Inv { device, event } => {
                let d = self
                    .translate(g, device, event)
                    .map_err(|_| "INV: event not mapped")?;
                self.gic.invalidate_lpi(d.lpi);
                Ok(())
            }
            Decoded::Int { device, event } => {
                let d = self
                    .translate(g, device, event)
                    .map_err(|_| "INT: event not mapped")?;
                self.gic.set_lpi_pending(d.cpu, d.lpi);
                Ok(())
            }
            Decoded::Clear { device, event } => {
                let d = self
                    .translate(g, device, event)
                    .map_err(|_| "CLEAR: event not mapped")?;
                self.gic.clear_lpi_pending(d.cpu, d.lpi);
                Ok(())
            }
            Decoded::Sync { rd } => {
                if self.target_ok(rd.0) {
                    Ok(())
                } else {
                    Err("SYNC: no such redistributor")
                }
            }
            Decoded::Invall { icid } => {
                self.cte_addr(g, icid.0)
                    .ok_or("INVALL: ICID beyond the collection table")?;
                self.gic.invalidate_all_lpis();
                Ok(())
            }
            Decoded::Movall { .. } => Err("MOVALL: not modelled"),
            Decoded::Unknown(_) => Err("unknown command"),
        }
    }

    fn typer(&self) -> u64 {
        let c = &self.cfg;
        u64::from(c.physical)
            | (u64::from(c.itt_entry_size.clamp(1, 16) - 1) << gits::TYPER_ITT_ENTRY_SIZE_SHIFT)
            | (u64::from(c.event_bits.clamp(1, 32) - 1) << gits::TYPER_ID_BITS_SHIFT)
            | (u64::from(c.device_bits.clamp(1, 32) - 1) << gits::TYPER_DEVBITS_SHIFT)
            | if c.pta { gits::TYPER_PTA } else { 0 }
            | (u64::from(c.collection_bits.clamp(1, 16) - 1) << gits::TYPER_CIDBITS_SHIFT)
            | gits::TYPER_CIL
    }

    fn read64(&self, off: usize) -> u64 {
        let g = self.lock();
        match off {
            GITS_CTLR => {
                let mut ctlr = GitsCtlr::empty();
                ctlr.set(GitsCtlr::ENABLED, g.enabled);
                ctlr.set(GitsCtlr::QUIESCENT, !g.enabled || g.creadr == g.cwriter);
                u64::from(ctlr.bits())
            }
            gits::TYPER => self.typer(),
            gits::CBASER => g.cbaser,
            gits::CWRITER => g.cwriter,
            gits::CREADR => g.creadr | if g.stalled { gits::CREADR_STALLED } else { 0 },
            o => gits::decode_baser(o).map_or(0, |n| g.baser[n]),
        }
    }

    fn write64(&self, off: usize, value: u64, high_half_only: bool) {
        let mut g = self.lock();
        match off {
            GITS_CTLR => {
                let en = GitsCtlr::from_bits_retain(value as u32).contains(GitsCtlr::ENABLED);
                if en && !g.enabled {
                    g.enabled = true;
                    g.creadr = 0;
                    self.process(&mut g);
                } else if !en {
                    g.enabled = false;
                }
            }
            gits::CBASER if !g.enabled => {
                g.cbaser = value;
                g.creadr = 0;
                g.cwriter = 0;
            }
            gits::CWRITER => {
                g.cwriter = value & gits::QUEUE_OFFSET_MASK;
                if !high_half_only && g.cwriter >= queue_size(g.cbaser) {
                    self.gic.record_violation(format!(
                        "ITS: GITS_CWRITER {:#x} beyond the queue",
                        g.cwriter
                    ));
                    return;
                }
                self.process(&mut g);
            }
            o if gits::decode_baser(o).is_some() && !g.enabled => {
                let n = gits::decode_baser(o).unwrap_or_default();
                // Type and Entry_Size are read-only.
                let ro = (7 << gits::BASER_TYPE_SHIFT) | (0x1f << gits::BASER_ENTRY_SIZE_SHIFT);
                if (g.baser[n] >> gits::BASER_TYPE_SHIFT) & 7 != 0 {
                    g.baser[n] = (g.baser[n] & ro) | (value & !ro & !gits::BASER_INDIRECT);
                }
            }
            _ => {}
        }
    }
}

fn queue_size(cbaser: u64) -> u64 {
    ((cbaser & gits::CBASER_SIZE_MASK) + 1) * 4096
}

impl GicModel {
    /// Reloads the cached configuration of LPI `intid` from memory (ITS
    /// `INV`, `MAPTI`).
    pub fn invalidate_lpi(&self, intid: u32) {
        self.lpi_cache_reload(Some(intid));
    }

    /// Reloads every cached LPI configuration (ITS `INVALL`).
    pub fn invalidate_all_lpis(&self) {
        self.lpi_cache_reload(None);
    }
}

/// The ITS model's register frames, implementing [`Mmio`].
#[derive(Clone, Debug)]
pub struct ItsModelMmio {
    model: Arc<ItsModel>,
}

impl Mmio for ItsModelMmio {
    fn size(&self) -> usize {
        gits::FRAME_SIZE
    }

    fn read32(&self, offset: usize) -> u32 {
        let v = self.model.read64(offset & !7);
        if offset & 4 != 0 {
            (v >> 32) as u32
        } else {
            v as u32
        }
    }

    fn write32(&self, offset: usize, value: u32) {
        let reg = offset & !7;
        if reg == GITS_CTLR && offset == GITS_CTLR {
            self.model.write64(reg, u64::from(value), false);
            return;
        }
        let old = self.model.read64(reg) & !gits::CREADR_STALLED;
        let v = if offset & 4 != 0 {
            (old & 0xffff_ffff) | (u64::from(value) << 32)
        } else {
            (old & !0xffff_ffff) | u64::from(value)
        };
        self.model.write64(reg, v, offset & 4 != 0);
    }

    fn read64(&self, offset: usize) -> u64 {
        self.model.read64(offset)
    }

    fn write64(&self, offset: usize, value: u64) {
        self.model.write64(offset, value, false);
    }
}

/// Something the model wants tests to know, as text.
pub fn describe(c: &LoggedCommand) -> String {
    match c.error {
        Some(e) => format!("{:?} -> {e}", c.cmd),
        None => format!("{:?}", c.cmd),
    }
}
