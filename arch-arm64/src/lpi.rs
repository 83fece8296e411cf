//! GICv3 LPIs: the LPI configuration (property) table shared by every
//! redistributor, one pending table per CPU, the LPI number allocator, and
//! the LPI domain at the root of ITS hierarchies.
//!
//! Table layouts (IHI 0069H 5.1.1, "LPI Configuration tables" and "LPI
//! Pending tables"):
//!
//! * configuration: one byte per LPI, INTID 8192 at offset 0: bits 7:2 the
//!   priority's top six bits, bit 1 RES1, bit 0 `Enable`. Its size is
//!   2^IDbits - 8192 bytes, 4 KiB aligned, named by `GICR_PROPBASER`.
//! * pending: one bit per INTID from 0 (the first 1 KiB covers non-LPIs and
//!   is IMPLEMENTATION DEFINED scratch), 2^IDbits / 8 bytes, 64 KiB aligned,
//!   named by each CPU's `GICR_PENDBASER`; the GIC alone writes it once
//!   LPIs are enabled, so the driver only provides it zeroed.
//!
//! Enabling, disabling or re-prioritising an LPI is a write to its
//! configuration byte, made visible to the GIC ([`DmaRegion::publish`]:
//! cleaned to the point of coherency when the GIC does not snoop), after
//! which the GIC must be told to re-read it: for an LPI translated by an
//! ITS that is the ITS `INV` command followed by `SYNC` (the ITS chip does
//! that, see `crate::its`).
//!
//! The LPI number allocator's lock is innermost: taken inside the ITS lock
//! (which maps and unmaps events), never the other way round, and never
//! from an interrupt flow.

use crate::common::GicError;
use crate::dma::{DmaAllocator, DmaError, DmaRegion, alloc_checked};
use crate::glue::{Gic, flow_for};
use crate::intid::IntId;
use crate::regs::gicr;
use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use irqcore::domain::{
    AllocRequest, DomainConfig, DomainError, DomainId, DomainKind, DomainOps, DomainRegistry,
    LevelAlloc,
};
use irqcore::{CpuId, IrqChip, IrqError, Platform};
use spin::Mutex;

/// `Enable` bit of a configuration byte.
pub const PROP_ENABLE: u8 = 1 << 0;
/// Bit 1 of a configuration byte is RES1 (IHI 0069H 5.1.1).
pub const PROP_RES1: u8 = 1 << 1;
/// The priority bits of a configuration byte (7:2).
pub const PROP_PRIORITY_MASK: u8 = 0xfc;

/// The fewest INTID bits that leave room for LPIs (8192 is the first).
pub const MIN_ID_BITS: u32 = 14;
/// The most INTID bits the architecture allows.
pub const MAX_ID_BITS: u32 = 24;

/// Errors of the LPI tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LpiError {
    /// The INTID bits asked for are outside 14..=24 or beyond what the
    /// distributor implements (`GICD_TYPER.IDbits`).
    IdBits(u32),
    /// Memory for a table could not be had.
    Dma(DmaError),
    /// Not an LPI these tables cover.
    NotLpi(u32),
    /// No pending table for this CPU (beyond `max_cpus`).
    BadCpu(CpuId),
    /// Every LPI is allocated.
    NoneFree,
}

impl From<DmaError> for LpiError {
    fn from(e: DmaError) -> Self {
        LpiError::Dma(e)
    }
}

/// The LPI configuration table, the per-CPU pending tables and the
/// allocation state of LPI numbers.
pub struct LpiTables {
    id_bits: u32,
    prop: Box<dyn DmaRegion>,
    pending: Vec<Box<dyn DmaRegion>>,
    default_priority: u8,
    /// One bit per LPI (bit n = INTID 8192 + n), set while allocated.
    used: Mutex<Vec<u64>>,
}

impl core::fmt::Debug for LpiTables {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LpiTables")
            .field("id_bits", &self.id_bits)
            .field("prop", &self.prop.phys())
            .field("cpus", &self.pending.len())
            .finish()
    }
}

impl LpiTables {
    /// Tables for INTIDs below 2^`id_bits` (14..=24) and `max_cpus` CPUs,
    /// every LPI disabled at `default_priority`. All memory is allocated
    /// here (pending tables too), so bringing a CPU up allocates nothing.
    pub fn new(
        alloc: &dyn DmaAllocator,
        id_bits: u32,
        max_cpus: usize,
        default_priority: u8,
    ) -> Result<Self, LpiError> {
        if !(MIN_ID_BITS..=MAX_ID_BITS).contains(&id_bits) {
            return Err(LpiError::IdBits(id_bits));
        }
        let nr = (1usize << id_bits) - IntId::LPI_BASE as usize;
        let prop = alloc_checked(alloc, nr, 4096)?;
        let byte = (default_priority & PROP_PRIORITY_MASK) | PROP_RES1;
        for i in 0..nr {
            prop.write_u8(i, byte);
        }
        prop.publish(0, nr);
        let pend_size = (1usize << id_bits) / 8;
        let mut pending = Vec::with_capacity(max_cpus);
        for _ in 0..max_cpus {
            pending.push(alloc_checked(alloc, pend_size, 0x1_0000)?);
        }
        Ok(Self {
            id_bits,
            prop,
            pending,
            default_priority,
            used: Mutex::new(alloc::vec![0; nr.div_ceil(64)]),
        })
    }

    /// INTID bits the tables cover.
    pub fn id_bits(&self) -> u32 {
        self.id_bits
    }

    /// Number of LPIs (INTIDs 8192..2^id_bits).
    pub fn nr_lpis(&self) -> u32 {
        (1u32 << self.id_bits) - IntId::LPI_BASE
    }

    fn index(&self, lpi: IntId) -> Result<usize, LpiError> {
        let n = lpi.get().wrapping_sub(IntId::LPI_BASE);
        if lpi.is_lpi() && n < self.nr_lpis() {
            Ok(n as usize)
        } else {
            Err(LpiError::NotLpi(lpi.get()))
        }
    }

    /// `GICR_PROPBASER` for these tables (Inner Shareable, write-back).
    pub fn propbaser(&self) -> u64 {
        (self.prop.phys() & gicr::BASER_ADDR_MASK)
            | gicr::BASER_INNER_SHAREABLE
            | gicr::BASER_INNER_WAWB
            | u64::from(self.id_bits - 1)
    }

    /// `GICR_PENDBASER` for `cpu`'s pending table (zeroed, so `PTZ`).
    pub fn pendbaser(&self, cpu: CpuId) -> Result<u64, LpiError> {
        let t = self.pending.get(cpu.index()).ok_or(LpiError::BadCpu(cpu))?;
        Ok((t.phys() & gicr::BASER_ADDR_MASK & !0xffff)
            | gicr::BASER_INNER_SHAREABLE
            | gicr::BASER_INNER_WAWB
            | gicr::PENDBASER_PTZ)
    }

    /// Takes the lowest free LPI.
    pub fn alloc_lpi(&self) -> Result<IntId, LpiError> {
        let mut used = self.used.lock();
        let nr = self.nr_lpis() as usize;
        for (w, word) in used.iter_mut().enumerate() {
            if *word != u64::MAX {
                let bit = word.trailing_ones() as usize;
                let n = w * 64 + bit;
                if n >= nr {
                    break;
                }
                *word |= 1 << bit;
                return IntId::lpi(n as u32).ok_or(LpiError::NoneFree);
            }
        }
        Err(LpiError::NoneFree)
    }

    /// Gives `lpi` back, disabled and at the default priority again.
    pub fn free_lpi(&self, lpi: IntId) -> Result<(), LpiError> {
        let n = self.index(lpi)?;
        self.write_config(n, false, self.default_priority);
        self.used.lock()[n / 64] &= !(1 << (n % 64));
        Ok(())
    }

    /// Whether `lpi` is allocated.
    pub fn is_allocated(&self, lpi: IntId) -> bool {
        self.index(lpi)
            .is_ok_and(|n| self.used.lock()[n / 64] & (1 << (n % 64)) != 0)
    }

    fn write_config(&self, n: usize, enabled: bool, priority: u8) {
        let byte = (priority & PROP_PRIORITY_MASK) | PROP_RES1 | u8::from(enabled);
        self.prop.write_u8(n, byte);
        self.prop.publish(n, 1);
    }

    /// Writes `lpi`'s configuration byte. The GIC sees the change once told
    /// to re-read it (ITS `INV` + `SYNC`).
    pub fn configure(&self, lpi: IntId, enabled: bool, priority: u8) -> Result<(), LpiError> {
        let n = self.index(lpi)?;
        self.write_config(n, enabled, priority);
        Ok(())
    }

    /// Sets or clears `lpi`'s `Enable` bit, keeping its priority.
    pub fn set_enabled(&self, lpi: IntId, enabled: bool) -> Result<(), LpiError> {
        let n = self.index(lpi)?;
        let old = self.prop.read_u8(n);
        self.write_config(n, enabled, old);
        Ok(())
    }

    /// `lpi`'s configuration byte.
    pub fn config(&self, lpi: IntId) -> Result<u8, LpiError> {
        Ok(self.prop.read_u8(self.index(lpi)?))
    }

    /// The default priority LPIs get.
    pub fn default_priority(&self) -> u8 {
        self.default_priority
    }
}

impl From<LpiError> for GicError {
    fn from(e: LpiError) -> Self {
        match e {
            LpiError::BadCpu(c) => GicError::BadCpu(c),
            _ => GicError::BadLayout,
        }
    }
}

/// The GIC's LPI domain: the root of ITS hierarchies, a tree over LPI
/// INTIDs (the hwirq is the INTID, as in the GIC domain), chip the GIC
/// itself (which only completes LPIs: enable and routing belong to the ITS
/// level above), fasteoi flow.
pub struct LpiDomain {
    gic: Arc<dyn Gic>,
}

impl LpiDomain {
    /// The LPI domain of `gic`.
    pub fn new(gic: Arc<dyn Gic>) -> Self {
        Self { gic }
    }
}

impl DomainOps for LpiDomain {
    fn alloc(&self, req: &AllocRequest) -> Result<LevelAlloc, IrqError> {
        let id = IntId::from_hwirq(req.hwirq)
            .filter(|id| id.is_lpi())
            .ok_or(IrqError::BadHwIrq(req.hwirq))?;
        let chip: Arc<dyn IrqChip> = self.gic.clone();
        Ok(LevelAlloc::new(chip, flow_for(id)))
    }
}

/// Registers the LPI domain of `gic` in `registry` (named "GIC-LPI").
pub fn add_lpi_domain<P: Platform>(
    registry: &DomainRegistry<'_, P>,
    gic: Arc<dyn Gic>,
) -> Result<DomainId, DomainError> {
    registry.add_domain(
        DomainConfig::new("GIC-LPI", DomainKind::Tree),
        Arc::new(LpiDomain::new(gic)),
    )
}
