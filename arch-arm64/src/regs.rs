//! How the drivers reach the hardware: two small traits, and the register
//! layout they are used with.
//!
//! * [`Mmio`]: one memory-mapped register frame (a GICv2/v3 distributor, a
//!   GICv2 CPU interface, a GICv3 redistributor region). Real hardware uses
//!   [`crate::hw::VolatileMmio`]; host tests use the behavioural model
//!   (`crate::model`).
//! * [`GicSysRegs`]: the GICv3 CPU interface system registers (`ICC_*_EL1`)
//!   of the *calling* CPU, plus `MPIDR_EL1` so the driver can tell which CPU
//!   it runs on. Real hardware uses `crate::hw::SysRegAccess` (aarch64
//!   only).
//!
//! Offsets and bit positions follow the Arm GIC Architecture Specification
//! (IHI 0048B for GICv2, IHI 0069H for GICv3/v4), chapters "Programmers'
//! model": register names are the specification's, so each constant can be
//! looked up there.
//!
//! # The typed layer
//!
//! On top of [`Mmio`]'s byte offsets this module gives the drivers (and the
//! behavioural models, which decode with the same helpers):
//!
//! * [`Reg32<T>`]: a 32-bit register whose value has type `T`. Each control
//!   register has its own bitflags type ([`GicdCtlr`], [`GiccCtlr`],
//!   [`GicrCtlr`], [`GicrWaker`], [`GitsCtlr`]), so a distributor bit can
//!   never be tested against a redistributor register. [`TypedMmio`] reads
//!   and writes them on any [`Mmio`].
//! * [`IdBank`]: an INTID-indexed register array (`GICD_ISENABLER<n>`,
//!   `GICD_IPRIORITYR<n>`, `GICD_IROUTER<n>`, ...). [`IdBank::word`] is the
//!   offset of an INTID's word and [`IdBank::decode`] the inverse, so no
//!   driver or model repeats `IROUTER + 8 * id` by hand.

/// One memory-mapped register frame, addressed by byte offset from its base.
///
/// Accesses are single-copy atomic, naturally aligned 32-bit or 64-bit
/// device accesses (GIC registers are word- or doubleword-accessible; the
/// specification allows 64-bit access to `GICD_IROUTER<n>` and
/// `GICR_TYPER`). An implementation receives only offsets below
/// [`Mmio::size`]; the drivers never compute others.
pub trait Mmio: Send + Sync {
    /// Size of the frame in bytes.
    fn size(&self) -> usize;
    /// Reads the 32-bit register at `offset`.
    fn read32(&self, offset: usize) -> u32;
    /// Writes the 32-bit register at `offset`.
    fn write32(&self, offset: usize, value: u32);
    /// Reads the 64-bit register at `offset`. The default performs two
    /// 32-bit reads, low word first (allowed for every 64-bit GIC register).
    fn read64(&self, offset: usize) -> u64 {
        u64::from(self.read32(offset)) | (u64::from(self.read32(offset + 4)) << 32)
    }
    /// Writes the 64-bit register at `offset`. The default performs two
    /// 32-bit writes, low word first.
    fn write64(&self, offset: usize, value: u64) {
        self.write32(offset, value as u32);
        self.write32(offset + 4, (value >> 32) as u32);
    }
}

/// A GICv3 CPU-interface system register (EL1, group 1, non-secure view).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IccReg {
    /// `ICC_IAR1_EL1` (read): acknowledge the highest-priority pending group 1 interrupt.
    Iar1,
    /// `ICC_EOIR1_EL1` (write): priority drop (and deactivate unless `EOImode`).
    Eoir1,
    /// `ICC_DIR_EL1` (write): deactivate (split EOI mode only).
    Dir,
    /// `ICC_PMR_EL1`: priority mask; only priorities numerically lower are signalled.
    Pmr,
    /// `ICC_RPR_EL1` (read): running priority of this CPU, `0xff` when idle.
    Rpr,
    /// `ICC_BPR1_EL1`: binary point for group 1 (preemption grouping).
    Bpr1,
    /// `ICC_CTLR_EL1`: control, bit 1 is `EOImode`.
    Ctlr,
    /// `ICC_IGRPEN1_EL1`: bit 0 enables group 1 interrupts at this CPU interface.
    Igrpen1,
    /// `ICC_SRE_EL1`: bit 0 selects the system-register interface.
    Sre,
    /// `ICC_SGI1R_EL1` (write): generate a group 1 SGI.
    Sgi1r,
}

/// The GICv3 CPU interface of the calling CPU, through system registers.
///
/// Every access targets the CPU executing the call (system registers are
/// per-PE), which is why the drivers call it only from the CPU concerned:
/// the acknowledge loop, the `eoi` callback, and the hotplug callbacks that
/// run on the starting or dying CPU. Writes that change the interface's
/// behaviour are followed by the context synchronization the architecture
/// requires (an `ISB`); implementations do that inside `write`.
pub trait GicSysRegs: Send + Sync {
    /// Reads `reg`.
    fn read(&self, reg: IccReg) -> u64;
    /// Writes `reg`.
    fn write(&self, reg: IccReg, value: u64);
    /// `MPIDR_EL1` of the calling CPU (its affinity identifies its redistributor).
    fn mpidr(&self) -> u64;
}

use crate::intid::IntId;
use core::marker::PhantomData;

/// A 32-bit register at a byte offset whose value is a `T`: a bitflags type
/// for a control register, so only that register's bits can be tested.
pub struct Reg32<T> {
    offset: usize,
    _value: PhantomData<fn() -> T>,
}

impl<T> Clone for Reg32<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Reg32<T> {}

impl<T> core::fmt::Debug for Reg32<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Reg32({:#x})", self.offset)
    }
}

impl<T> Reg32<T> {
    /// The register at `offset` from its frame's base.
    pub const fn new(offset: usize) -> Self {
        Self {
            offset,
            _value: PhantomData,
        }
    }
    /// Its byte offset from the frame's base.
    pub const fn offset(self) -> usize {
        self.offset
    }
    /// The same register in the frame that starts at `frame` bytes into the
    /// [`Mmio`] (a redistributor inside its region).
    pub const fn in_frame(self, frame: usize) -> Self {
        Self::new(frame + self.offset)
    }
}

/// A register value type: the raw 32 bits and back (bits the type does not
/// name are kept, so a read-modify-write preserves them).
pub trait RegValue: Copy {
    /// The value of raw register contents.
    fn from_raw(raw: u32) -> Self;
    /// The raw register contents.
    fn to_raw(self) -> u32;
}

impl RegValue for u32 {
    fn from_raw(raw: u32) -> Self {
        raw
    }
    fn to_raw(self) -> u32 {
        self
    }
}

/// Typed access to [`Reg32`] registers, for every [`Mmio`].
pub trait TypedMmio: Mmio {
    /// Reads `reg`.
    fn load<T: RegValue>(&self, reg: Reg32<T>) -> T {
        T::from_raw(self.read32(reg.offset()))
    }
    /// Writes `value` to `reg`.
    fn store<T: RegValue>(&self, reg: Reg32<T>, value: T) {
        self.write32(reg.offset(), value.to_raw());
    }
    /// Read-modify-write of `reg` (the caller serialises writers).
    fn modify<T: RegValue>(&self, reg: Reg32<T>, f: impl FnOnce(T) -> T) {
        self.store(reg, f(self.load(reg)));
    }
}

impl<M: Mmio + ?Sized> TypedMmio for M {}

macro_rules! control_register {
    ($(#[doc = $doc:literal])* $name:ident { $($(#[doc = $fdoc:literal])* const $flag:ident = $bit:expr;)* }) => {
        bitflags::bitflags! {
            $(#[doc = $doc])*
            #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
            pub struct $name: u32 {
                $($(#[doc = $fdoc])* const $flag = $bit;)*
                // Bits the driver does not name are kept on read-modify-write.
                const _ = !0;
            }
        }
        impl RegValue for $name {
            fn from_raw(raw: u32) -> Self {
                Self::from_bits_retain(raw)
            }
            fn to_raw(self) -> u32 {
                self.bits()
            }
        }
    };
}

control_register! {
    /// `GICD_CTLR` (IHI 0048B 4.3.1, IHI 0069H 12.9.4, non-secure view with
    /// `DS` = 1 / GICv2 without security extensions).
    GicdCtlr {
        /// `EnableGrp0` (GICv2; GICv3 with `DS` = 1).
        const ENABLE_G0 = 1 << 0;
        /// `EnableGrp1` (GICv2) / `EnableGrp1NS` (GICv3).
        const ENABLE_G1 = 1 << 1;
        /// `ARE_NS` (GICv3): affinity routing.
        const ARE = 1 << 4;
        /// `RWP` (GICv3): a register write is still propagating.
        const RWP = 1 << 31;
    }
}

control_register! {
    /// `GICC_CTLR` (IHI 0048B 4.4.1).
    GiccCtlr {
        /// `EnableGrp0`.
        const ENABLE_G0 = 1 << 0;
        /// `EnableGrp1`.
        const ENABLE_G1 = 1 << 1;
        /// `EOImode` (bit 9: `EOImodeNS` in the non-secure view, `EOImodeS`
        /// without security extensions; the one that applies to us).
        const EOIMODE = 1 << 9;
    }
}

control_register! {
    /// `GICR_CTLR` (IHI 0069H 12.11.2).
    GicrCtlr {
        /// `EnableLPIs`.
        const ENABLE_LPIS = 1 << 0;
        /// `RWP`: a register write is still propagating.
        const RWP = 1 << 3;
    }
}

control_register! {
    /// `GICR_WAKER` (IHI 0069H 12.11.41).
    GicrWaker {
        /// `ProcessorSleep`.
        const PROCESSOR_SLEEP = 1 << 1;
        /// `ChildrenAsleep` (read-only).
        const CHILDREN_ASLEEP = 1 << 2;
    }
}

control_register! {
    /// `GITS_CTLR` (IHI 0069H 12.19.6).
    GitsCtlr {
        /// `Enabled`.
        const ENABLED = 1 << 0;
        /// `Quiescent` (read-only).
        const QUIESCENT = 1 << 31;
    }
}

/// An INTID-indexed register array: `bits` bits per INTID from `base`
/// (one bit for the set/clear-enable, pending and active banks, two for
/// `ICFGR`, a byte for `IPRIORITYR`/`ITARGETSR`, a doubleword for
/// `IROUTER`), packed into 32-bit words (64-bit ones for `IROUTER`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdBank {
    base: usize,
    bits: u32,
    ids: u32,
}

impl IdBank {
    /// `ids` fields of `bits` bits (1, 2, 8 or 64) from byte offset `base`.
    pub const fn new(base: usize, bits: u32, ids: u32) -> Self {
        Self { base, bits, ids }
    }
    /// The byte offset of the bank's first word.
    pub const fn offset(self) -> usize {
        self.base
    }
    /// Bits per INTID.
    pub const fn bits_per_id(self) -> u32 {
        self.bits
    }
    /// One past the bank's last byte.
    pub const fn end(self) -> usize {
        self.base + (self.ids as usize * self.bits as usize).div_ceil(8)
    }
    const fn word_bytes(self) -> usize {
        if self.bits == 64 { 8 } else { 4 }
    }
    /// INTIDs per word.
    pub const fn ids_per_word(self) -> u32 {
        (self.word_bytes() as u32 * 8) / self.bits
    }
    /// The byte offset of word `index` (initialisation sweeps).
    pub const fn word_at(self, index: usize) -> usize {
        self.base + index * self.word_bytes()
    }
    /// The byte offset of the word holding `id`'s field.
    pub const fn word(self, id: IntId) -> usize {
        self.word_at((id.get() / self.ids_per_word()) as usize)
    }
    /// The byte offset of `id`'s own byte (byte-per-INTID banks only,
    /// which the architecture makes byte-accessible).
    pub const fn byte(self, id: IntId) -> usize {
        self.base + id.get() as usize
    }
    /// The shift of `id`'s field inside its word.
    pub const fn shift(self, id: IntId) -> u32 {
        (id.get() % self.ids_per_word()) * self.bits
    }
    /// The (word offset, single-bit mask) of `id` in a one-bit bank.
    pub const fn bit(self, id: IntId) -> (usize, u32) {
        (self.word(id), 1 << self.shift(id))
    }
    /// Whether `offset` falls inside the bank.
    pub const fn contains(self, offset: usize) -> bool {
        offset >= self.base && offset < self.end()
    }
    /// The first INTID of the word at `offset`, if `offset` is inside the
    /// bank (the inverse of [`IdBank::word`], for the models). The offset
    /// need not be word-aligned: its word is the one it falls in.
    pub const fn decode(self, offset: usize) -> Option<u32> {
        if !self.contains(offset) {
            return None;
        }
        let word = (offset - self.base) / self.word_bytes();
        Some(word as u32 * self.ids_per_word())
    }
}

/// INTIDs 1020..=1023 are special; 1023 means "nothing pending" (spurious).
pub const INTID_SPURIOUS: u32 = 1023;
/// The first special INTID: an acknowledge returning 1020..=1023 is not an interrupt.
pub const INTID_SPECIAL_FIRST: u32 = 1020;

/// Distributor registers common to GICv2 and GICv3 (`GICD_*`).
pub mod gicd {
    use super::{GicdCtlr, IdBank, Reg32};

    /// Control.
    pub const CTLR: Reg32<GicdCtlr> = Reg32::new(0x000);
    /// Interrupt controller type (`ITLinesNumber` in bits 4:0).
    pub const TYPER: usize = 0x004;
    /// Group (one bit per INTID; 1 = group 1).
    pub const IGROUPR: IdBank = IdBank::new(0x080, 1, 1024);
    /// Set-enable (one bit per INTID, write 1 to set).
    pub const ISENABLER: IdBank = IdBank::new(0x100, 1, 1024);
    /// Clear-enable.
    pub const ICENABLER: IdBank = IdBank::new(0x180, 1, 1024);
    /// Set-pending.
    pub const ISPENDR: IdBank = IdBank::new(0x200, 1, 1024);
    /// Clear-pending.
    pub const ICPENDR: IdBank = IdBank::new(0x280, 1, 1024);
    /// Set-active.
    pub const ISACTIVER: IdBank = IdBank::new(0x300, 1, 1024);
    /// Clear-active.
    pub const ICACTIVER: IdBank = IdBank::new(0x380, 1, 1024);
    /// Priority (one byte per INTID).
    pub const IPRIORITYR: IdBank = IdBank::new(0x400, 8, 1024);
    /// GICv2 CPU targets (one byte per INTID, bit n = CPU interface n).
    pub const ITARGETSR: IdBank = IdBank::new(0x800, 8, 1024);
    /// Configuration (two bits per INTID; bit 1 of the field = edge).
    pub const ICFGR: IdBank = IdBank::new(0xC00, 2, 1024);
    /// GICv2 software-generated interrupt register.
    pub const SGIR: usize = 0xF00;
    /// GICv3 SPI routing (one doubleword per INTID, from INTID 32 at 0x6100;
    /// the words of INTIDs 0..32 are reserved).
    pub const IROUTER: IdBank = IdBank::new(0x6000, 64, 1024);
    /// Size of the distributor frame the drivers address.
    pub const FRAME_SIZE: usize = 0x10000;
    /// `GICD_PIDR2` (architecture revision in bits 7:4).
    pub const PIDR2: usize = 0xFFE8;

    /// `GICD_SGIR.TargetListFilter`: send to the CPUs in `CPUTargetList`.
    pub const SGIR_FILTER_LIST: u32 = 0 << 24;
    /// `GICD_SGIR.TargetListFilter`: send to every CPU but the requester.
    pub const SGIR_FILTER_OTHERS: u32 = 1 << 24;
    /// `GICD_SGIR.TargetListFilter`: send to the requester only.
    pub const SGIR_FILTER_SELF: u32 = 2 << 24;
    /// Shift of `GICD_SGIR.CPUTargetList`.
    pub const SGIR_TARGETS_SHIFT: u32 = 16;

    /// `GICD_IROUTER.Interrupt_Routing_Mode`: 1 = any participating PE.
    pub const IROUTER_IRM: u64 = 1 << 31;

    /// `GICD_TYPER.LPIS` (GICv3): LPIs are supported.
    pub const TYPER_LPIS: u32 = 1 << 17;
    /// Shift of `GICD_TYPER.IDbits` (GICv3, bits 23:19): INTID bits - 1.
    pub const TYPER_IDBITS_SHIFT: u32 = 19;
}

/// GICv2 CPU interface registers (`GICC_*`), banked per CPU.
pub mod gicc {
    use super::{GiccCtlr, Reg32};

    /// Control.
    pub const CTLR: Reg32<GiccCtlr> = Reg32::new(0x0000);
    /// Priority mask.
    pub const PMR: usize = 0x0004;
    /// Binary point.
    pub const BPR: usize = 0x0008;
    /// Interrupt acknowledge (bits 9:0 INTID, 12:10 source CPU of an SGI).
    pub const IAR: usize = 0x000C;
    /// End of interrupt.
    pub const EOIR: usize = 0x0010;
    /// Running priority.
    pub const RPR: usize = 0x0014;
    /// Deactivate (split EOI mode); needs the 8 KiB CPU interface frame.
    pub const DIR: usize = 0x1000;
    /// Size of the CPU interface frame the drivers address.
    pub const FRAME_SIZE: usize = 0x2000;

    /// Bits 9:0 of `GICC_IAR`: the INTID.
    pub const IAR_INTID_MASK: u32 = 0x3ff;
    /// Shift of `GICC_IAR.CPUID` (source CPU of an SGI).
    pub const IAR_CPUID_SHIFT: u32 = 10;
}

/// GICv3 redistributor registers (`GICR_*`): an `RD_base` frame followed
/// by an `SGI_base` frame for each CPU.
pub mod gicr {
    use super::{GicrCtlr, GicrWaker, Reg32};

    /// Size of one 64 KiB frame.
    pub const FRAME: usize = 0x10000;
    /// Offset of the `SGI_base` frame from `RD_base`.
    pub const SGI_BASE: usize = FRAME;
    /// Stride between redistributors (two frames; four with `VLPIS`).
    pub const STRIDE: usize = 2 * FRAME;
    /// Stride with GICv4 virtual LPI frames.
    pub const STRIDE_VLPIS: usize = 4 * FRAME;

    /// `RD_base`: control.
    pub const CTLR: Reg32<GicrCtlr> = Reg32::new(0x0000);
    /// `RD_base`: type (64-bit; affinity in bits 63:32, `Last` bit 4, `VLPIS` bit 1).
    pub const TYPER: usize = 0x0008;
    /// `RD_base`: power management.
    pub const WAKER: Reg32<GicrWaker> = Reg32::new(0x0014);

    /// `RD_base`: LPI configuration table base (64-bit, IHI 0069H 12.11.29).
    pub const PROPBASER: usize = 0x0070;
    /// `RD_base`: LPI pending table base (64-bit, IHI 0069H 12.11.28).
    pub const PENDBASER: usize = 0x0078;

    /// `GICR_TYPER.PLPIS`: physical LPIs supported.
    pub const TYPER_PLPIS: u64 = 1 << 0;
    /// Shift of `GICR_TYPER.Processor_Number` (bits 23:8), the target an
    /// ITS with `GITS_TYPER.PTA` = 0 names in `MAPC`/`SYNC`.
    pub const TYPER_PROCESSOR_SHIFT: u32 = 8;
    /// `GICR_PROPBASER`/`GICR_PENDBASER` physical address field, bits 51:12.
    pub const BASER_ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
    /// `GICR_PROPBASER`/`GICR_PENDBASER.Shareability` = Inner Shareable (bits 11:10).
    pub const BASER_INNER_SHAREABLE: u64 = 1 << 10;
    /// The shareability field's mask.
    pub const BASER_SHAREABILITY_MASK: u64 = 3 << 10;
    /// `InnerCache` = Normal, Read-allocate, Write-allocate, Write-back (bits 9:7).
    pub const BASER_INNER_WAWB: u64 = 7 << 7;
    /// `GICR_PENDBASER.PTZ`: the pending table is known to be all zeros.
    pub const PENDBASER_PTZ: u64 = 1 << 62;
    /// `GICR_TYPER.VLPIS`.
    pub const TYPER_VLPIS: u64 = 1 << 1;
    /// `GICR_TYPER.Last`: the last redistributor of its region.
    pub const TYPER_LAST: u64 = 1 << 4;

    /// `SGI_base` offsets of the private-interrupt registers (INTIDs 0..32);
    /// same layout as the distributor's first words.
    pub const IGROUPR0: usize = SGI_BASE + 0x0080;
    /// Set-enable for INTIDs 0..32.
    pub const ISENABLER0: usize = SGI_BASE + 0x0100;
    /// Clear-enable for INTIDs 0..32.
    pub const ICENABLER0: usize = SGI_BASE + 0x0180;
    /// Set-pending for INTIDs 0..32.
    pub const ISPENDR0: usize = SGI_BASE + 0x0200;
    /// Clear-pending for INTIDs 0..32.
    pub const ICPENDR0: usize = SGI_BASE + 0x0280;
    /// Set-active for INTIDs 0..32.
    pub const ISACTIVER0: usize = SGI_BASE + 0x0300;
    /// Clear-active for INTIDs 0..32.
    pub const ICACTIVER0: usize = SGI_BASE + 0x0380;
    /// Priorities of INTIDs 0..32 (8 words).
    pub const IPRIORITYR: usize = SGI_BASE + 0x0400;
    /// Configuration of SGIs (read-only, edge).
    pub const ICFGR0: usize = SGI_BASE + 0x0C00;
    /// Configuration of PPIs.
    pub const ICFGR1: usize = SGI_BASE + 0x0C04;
}

/// GICv3 ITS registers (`GITS_*`, IHI 0069H 12.19): a control frame
/// (`ITS_base`) followed by the translation frame holding `GITS_TRANSLATER`.
pub mod gits {
    use super::{GitsCtlr, Reg32};

    /// Control.
    pub const CTLR: Reg32<GitsCtlr> = Reg32::new(0x0000);
    /// Implementer identification.
    pub const IIDR: usize = 0x0004;
    /// Features (64-bit).
    pub const TYPER: usize = 0x0008;
    /// Command queue base (64-bit).
    pub const CBASER: usize = 0x0080;
    /// Command queue write offset (64-bit; byte offset, bits 19:5).
    pub const CWRITER: usize = 0x0088;
    /// Command queue read offset (64-bit; `Stalled` in bit 0).
    pub const CREADR: usize = 0x0090;
    /// Table descriptors `GITS_BASER<n>`, n = 0..8 (64-bit each).
    pub const BASER: usize = 0x0100;
    /// How many `GITS_BASER<n>` there are.
    pub const NR_BASER: usize = 8;
    /// The doorbell devices write their EventID to (translation frame).
    pub const TRANSLATER: usize = 0x1_0040;
    /// Size of both frames.
    pub const FRAME_SIZE: usize = 0x2_0000;

    /// The offset of `GITS_BASER<n>` (`n` below [`NR_BASER`]).
    pub const fn baser(n: usize) -> usize {
        BASER + 8 * n
    }

    /// Which `GITS_BASER<n>` the 64-bit access at `offset` addresses.
    pub const fn decode_baser(offset: usize) -> Option<usize> {
        if offset >= BASER && offset < baser(NR_BASER) {
            Some((offset - BASER) / 8)
        } else {
            None
        }
    }
    /// `GITS_CREADR.Stalled`: a command error stopped the queue.
    pub const CREADR_STALLED: u64 = 1 << 0;
    /// Byte offset bits of `GITS_CWRITER`/`GITS_CREADR` (19:5).
    pub const QUEUE_OFFSET_MASK: u64 = 0xf_ffe0;

    /// `GITS_TYPER.Physical`: physical LPIs supported.
    pub const TYPER_PHYSICAL: u64 = 1 << 0;
    /// Shift of `GITS_TYPER.ITT_entry_size` (bits 7:4, bytes - 1).
    pub const TYPER_ITT_ENTRY_SIZE_SHIFT: u32 = 4;
    /// Shift of `GITS_TYPER.ID_bits` (bits 12:8, EventID bits - 1).
    pub const TYPER_ID_BITS_SHIFT: u32 = 8;
    /// Shift of `GITS_TYPER.Devbits` (bits 17:13, DeviceID bits - 1).
    pub const TYPER_DEVBITS_SHIFT: u32 = 13;
    /// `GITS_TYPER.PTA`: targets are redistributor addresses (else processor numbers).
    pub const TYPER_PTA: u64 = 1 << 19;
    /// Shift of `GITS_TYPER.HCC` (bits 31:24): collections held in the ITS itself.
    pub const TYPER_HCC_SHIFT: u32 = 24;
    /// Shift of `GITS_TYPER.CIDbits` (bits 35:32, collection ID bits - 1, when `CIL`).
    pub const TYPER_CIDBITS_SHIFT: u32 = 32;
    /// `GITS_TYPER.CIL`: `CIDbits` is valid (else collection IDs have 16 bits).
    pub const TYPER_CIL: u64 = 1 << 36;

    /// `GITS_BASER<n>.Valid`.
    pub const BASER_VALID: u64 = 1 << 63;
    /// `GITS_BASER<n>.Indirect` (two-level table).
    pub const BASER_INDIRECT: u64 = 1 << 62;
    /// `InnerCache` = Normal, Read-allocate, Write-allocate, Write-back (bits 61:59).
    pub const BASER_INNER_WAWB: u64 = 7 << 59;
    /// Shift of `GITS_BASER<n>.Type` (bits 58:56).
    pub const BASER_TYPE_SHIFT: u32 = 56;
    /// Shift of `GITS_BASER<n>.Entry_Size` (bits 52:48, bytes - 1).
    pub const BASER_ENTRY_SIZE_SHIFT: u32 = 48;
    /// Physical address bits 47:12 of a table (page sizes 4K/16K; 64K uses 47:16).
    pub const BASER_ADDR_MASK: u64 = 0x0000_ffff_ffff_f000;
    /// `Shareability` = Inner Shareable (bits 11:10).
    pub const BASER_INNER_SHAREABLE: u64 = 1 << 10;
    /// The shareability field's mask.
    pub const BASER_SHAREABILITY_MASK: u64 = 3 << 10;
    /// Shift of `GITS_BASER<n>.Page_Size` (bits 9:8: 4K, 16K, 64K).
    pub const BASER_PAGE_SIZE_SHIFT: u32 = 8;
    /// `GITS_BASER<n>.Size` (bits 7:0): pages - 1.
    pub const BASER_SIZE_MASK: u64 = 0xff;
    /// `GITS_BASER<n>.Type` values.
    pub const BASER_TYPE_NONE: u64 = 0;
    /// Device table.
    pub const BASER_TYPE_DEVICE: u64 = 1;
    /// Collection table.
    pub const BASER_TYPE_COLLECTION: u64 = 4;

    /// `GITS_CBASER.Valid`.
    pub const CBASER_VALID: u64 = 1 << 63;
    /// `GITS_CBASER` physical address bits 51:12.
    pub const CBASER_ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
    /// `GITS_CBASER.Size` (bits 7:0): 4 KiB pages - 1.
    pub const CBASER_SIZE_MASK: u64 = 0xff;
}

/// GICv2m MSI frame registers (Arm Server Base System Architecture,
/// GICv2m appendix; the layout QEMU's `arm_gicv2m` and Linux's driver use).
pub mod v2m {
    /// `MSI_TYPER`: first SPI in bits 25:16, number of SPIs in bits 9:0.
    pub const MSI_TYPER: usize = 0x008;
    /// `MSI_SETSPI_NS`: a write of an SPI INTID makes it pending.
    pub const MSI_SETSPI_NS: usize = 0x040;
    /// `MSI_IIDR`.
    pub const MSI_IIDR: usize = 0xFCC;
    /// Size of the frame.
    pub const FRAME_SIZE: usize = 0x1000;
    /// Shift of `MSI_TYPER`'s first-SPI field.
    pub const TYPER_BASE_SHIFT: u32 = 16;
    /// Mask of `MSI_TYPER`'s first-SPI field (after the shift).
    pub const TYPER_BASE_MASK: u32 = 0x3ff;
    /// Mask of `MSI_TYPER`'s number-of-SPIs field.
    pub const TYPER_NUMBER_MASK: u32 = 0x3ff;
}

/// GICv3 CPU interface register fields.
pub mod icc {
    /// `ICC_CTLR_EL1.EOImode`.
    pub const CTLR_EOIMODE: u64 = 1 << 1;
    /// `ICC_SRE_EL1.SRE`.
    pub const SRE_SRE: u64 = 1 << 0;
    /// `ICC_IGRPEN1_EL1.Enable`.
    pub const IGRPEN1_ENABLE: u64 = 1 << 0;
    /// Bits 23:0 of `ICC_IAR1_EL1`: the INTID.
    pub const IAR_INTID_MASK: u64 = 0xff_ffff;
    /// `ICC_SGI1R_EL1.IRM`: every PE but the sender.
    pub const SGI1R_IRM: u64 = 1 << 40;
    /// Shift of `ICC_SGI1R_EL1.INTID`.
    pub const SGI1R_INTID_SHIFT: u32 = 24;
    /// Shift of `ICC_SGI1R_EL1.Aff1`.
    pub const SGI1R_AFF1_SHIFT: u32 = 16;
    /// Shift of `ICC_SGI1R_EL1.Aff2`.
    pub const SGI1R_AFF2_SHIFT: u32 = 32;
    /// Shift of `ICC_SGI1R_EL1.RS` (range selector: Aff0 = RS * 16 + bit).
    pub const SGI1R_RS_SHIFT: u32 = 44;
    /// Shift of `ICC_SGI1R_EL1.Aff3`.
    pub const SGI1R_AFF3_SHIFT: u32 = 48;
}

/// `MPIDR_EL1` / `GICD_IROUTER` affinity fields: Aff3 in 39:32, Aff2 in
/// 23:16, Aff1 in 15:8, Aff0 in 7:0.
pub const MPIDR_AFFINITY_MASK: u64 = 0xff_00ff_ffff;

/// The 32-bit packed affinity `Aff3.Aff2.Aff1.Aff0` (as in `GICR_TYPER[63:32]`)
/// of an `MPIDR_EL1` value.
pub const fn mpidr_to_aff32(mpidr: u64) -> u32 {
    ((mpidr & 0xff_ffff) | ((mpidr >> 8) & 0xff00_0000)) as u32
}

/// The `MPIDR_EL1` layout of a packed `Aff3.Aff2.Aff1.Aff0` value.
pub const fn aff32_to_mpidr(aff: u32) -> u64 {
    (aff as u64 & 0xff_ffff) | ((aff as u64 & 0xff00_0000) << 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_banks_match_the_architectural_offsets() {
        let id = |n| IntId::new(n).unwrap();
        // IHI 0069H 12.9.22: GICD_IROUTER<32> is at 0x6100.
        assert_eq!(gicd::IROUTER.word(id(32)), 0x6100);
        assert_eq!(gicd::IROUTER.decode(0x6104), Some(32));
        // One bit per INTID: INTID 35 is bit 3 of GICD_ISENABLER1 (0x104).
        assert_eq!(gicd::ISENABLER.bit(id(35)), (0x104, 1 << 3));
        // A byte per INTID: INTID 91 is byte 3 of the word at 0x400 + 88.
        assert_eq!(gicd::IPRIORITYR.word(id(91)), 0x458);
        assert_eq!(gicd::IPRIORITYR.shift(id(91)), 24);
        // Two bits per INTID: INTID 40's field is bits 17:16 of ICFGR2.
        assert_eq!(gicd::ICFGR.word(id(40)), 0xC08);
        assert_eq!(gicd::ICFGR.shift(id(40)), 16);
        assert_eq!(gicd::ICFGR.decode(0xC08), Some(32));
        assert_eq!(gicd::ICFGR.decode(0xD00), None);
        for n in [0, 31, 32, 100, 1019] {
            for bank in [
                gicd::ISENABLER,
                gicd::IPRIORITYR,
                gicd::ICFGR,
                gicd::IROUTER,
            ] {
                let first = bank.decode(bank.word(id(n))).unwrap();
                assert!(
                    first <= n && n < first + bank.ids_per_word(),
                    "{bank:?} {n}"
                );
            }
        }
        assert_eq!(gits::baser(7), 0x138);
        assert_eq!(gits::decode_baser(0x138), Some(7));
        assert_eq!(gits::decode_baser(0x140), None);
    }

    #[test]
    fn typed_registers_keep_unnamed_bits() {
        let raw = 0x8000_0013;
        let ctlr = GicdCtlr::from_raw(raw);
        assert!(ctlr.contains(GicdCtlr::RWP | GicdCtlr::ARE | GicdCtlr::ENABLE_G1));
        assert_eq!((ctlr - GicdCtlr::RWP).to_raw(), 0x13);
        // Bit 3 means RWP in GICR_CTLR but nothing in GICD_CTLR.
        assert!(GicrCtlr::from_raw(1 << 3).contains(GicrCtlr::RWP));
        assert!(!GicdCtlr::from_raw(1 << 3).contains(GicdCtlr::RWP));
    }

    #[test]
    fn affinity_packing_round_trips() {
        let mpidr = 0x12_0034_5678u64;
        assert_eq!(mpidr_to_aff32(mpidr), 0x1234_5678);
        assert_eq!(aff32_to_mpidr(0x1234_5678), mpidr);
    }
}
