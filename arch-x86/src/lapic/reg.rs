//! The local APIC's register layout (Intel SDM vol. 3A table 11-1, and
//! table 11-6 for the x2APIC MSRs): byte offsets in the xAPIC page, the
//! typed control registers ([`Svr`], the LVT entries), the 256-bit vector
//! registers (ISR, TMR, IRR) as [`VectorBank`]s, and the xAPIC-offset to
//! x2APIC-MSR mapping. The driver ([`Lapic`](crate::Lapic)) and the model
//! both address registers only through these.

use crate::ids::Vector;
use crate::lapic::LvtEntry;
use crate::regs::{Reg32, RegValue};

/// Local APIC ID.
pub const ID: usize = 0x20;
/// Version (bits 0-7) and max LVT entry (bits 16-23).
pub const VERSION: usize = 0x30;
/// Task priority.
pub const TPR: usize = 0x80;
/// Processor priority (read-only).
pub const PPR: usize = 0xA0;
/// End of interrupt (write-only).
pub const EOI: usize = 0xB0;
/// Logical destination.
pub const LDR: usize = 0xD0;
/// Destination format (xAPIC only).
pub const DFR: usize = 0xE0;
/// Spurious-interrupt vector register.
pub const SVR: Reg32<Svr> = Reg32::new(0xF0);
/// In-service register, 8 words of 32 vectors at 16-byte stride.
pub const ISR: VectorBank = VectorBank::new(0x100);
/// Trigger-mode register (1 = level), same layout as ISR.
pub const TMR: VectorBank = VectorBank::new(0x180);
/// Interrupt-request register, same layout as ISR.
pub const IRR: VectorBank = VectorBank::new(0x200);
/// Error status.
pub const ESR: usize = 0x280;
/// LVT: corrected machine-check interrupt.
pub const LVT_CMCI: Reg32<LvtEntry> = Reg32::new(0x2F0);
/// Interrupt command, low word (writing it sends in xAPIC mode).
pub const ICR_LOW: usize = 0x300;
/// Interrupt command, high word (xAPIC destination in bits 24-31).
pub const ICR_HIGH: usize = 0x310;
/// LVT: timer.
pub const LVT_TIMER: Reg32<LvtEntry> = Reg32::new(0x320);
/// LVT: thermal sensor.
pub const LVT_THERMAL: Reg32<LvtEntry> = Reg32::new(0x330);
/// LVT: performance counters.
pub const LVT_PMC: Reg32<LvtEntry> = Reg32::new(0x340);
/// LVT: LINT0 pin.
pub const LVT_LINT0: Reg32<LvtEntry> = Reg32::new(0x350);
/// LVT: LINT1 pin.
pub const LVT_LINT1: Reg32<LvtEntry> = Reg32::new(0x360);
/// LVT: APIC error.
pub const LVT_ERROR: Reg32<LvtEntry> = Reg32::new(0x370);
/// Timer initial count.
pub const TIMER_INITIAL: usize = 0x380;
/// Timer current count (read-only).
pub const TIMER_CURRENT: usize = 0x390;
/// Timer divide configuration.
pub const TIMER_DIVIDE: usize = 0x3E0;
/// Self-IPI (x2APIC only).
pub const SELF_IPI: usize = 0x3F0;

/// `ICR_LOW` bit: delivery pending (xAPIC only, read-only).
pub const ICR_DELIVERY_PENDING: u32 = 1 << 12;

/// First x2APIC MSR; xAPIC register `offset` lives at
/// `MSR_X2APIC_BASE + offset / 16` (SDM 11.12.1).
pub const MSR_X2APIC_BASE: u32 = 0x800;
/// Number of x2APIC MSRs (0x800..0x840).
pub const NR_X2APIC_MSRS: u32 = 0x40;

/// The x2APIC MSR of xAPIC register `offset` (SDM table 11-6).
pub const fn x2apic_msr(offset: usize) -> u32 {
    MSR_X2APIC_BASE + (offset as u32 >> 4)
}

/// The xAPIC register offset of x2APIC MSR `msr`, if it is one.
pub const fn x2apic_offset(msr: u32) -> Option<usize> {
    if msr >= MSR_X2APIC_BASE && msr < MSR_X2APIC_BASE + NR_X2APIC_MSRS {
        Some(((msr - MSR_X2APIC_BASE) as usize) << 4)
    } else {
        None
    }
}

bitflags::bitflags! {
    /// The spurious-interrupt vector register (SDM figure 11-23): the
    /// spurious vector in bits 0-7 ([`Svr::vector`]) and the flags below.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Svr: u32 {
        /// APIC software enable.
        const ENABLE = 1 << 8;
        /// Suppress EOI broadcast to the IOAPICs (directed EOI, SDM 11.8.5).
        const SUPPRESS_EOI_BROADCAST = 1 << 12;
        // The vector field and reserved bits are kept on read-modify-write.
        const _ = !0;
    }
}

impl Svr {
    /// The spurious vector field.
    pub const fn vector(self) -> u8 {
        self.bits() as u8
    }
    /// The same register with spurious vector `vector`.
    pub const fn with_vector(self, vector: Vector) -> Self {
        Self::from_bits_retain((self.bits() & !0xFF) | vector.get() as u32)
    }
}

impl RegValue for Svr {
    fn from_raw(raw: u32) -> Self {
        Self::from_bits_retain(raw)
    }
    fn to_raw(self) -> u32 {
        self.bits()
    }
}

impl RegValue for LvtEntry {
    fn from_raw(raw: u32) -> Self {
        LvtEntry(raw)
    }
    fn to_raw(self) -> u32 {
        self.0
    }
}

/// A 256-bit per-vector register (ISR, TMR, IRR): eight 32-bit words at a
/// 16-byte stride, word `n` holding vectors `32n..32n+32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VectorBank {
    base: usize,
}

impl VectorBank {
    /// Words at a 16-byte stride from `base`.
    pub const fn new(base: usize) -> Self {
        Self { base }
    }
    /// The offset of word `index` (0..8).
    pub const fn word_at(self, index: usize) -> usize {
        self.base + index * 0x10
    }
    /// The offset of the word holding `vector`.
    pub const fn word(self, vector: Vector) -> usize {
        self.word_at(vector.index() / 32)
    }
    /// `vector`'s bit in its word.
    pub const fn bit(self, vector: Vector) -> u32 {
        1 << (vector.get() % 32)
    }
    /// The word index (0..8) of register `offset`, if it is one of the
    /// bank's words (the inverse of [`VectorBank::word_at`], for the model).
    pub const fn decode(self, offset: usize) -> Option<usize> {
        if offset >= self.base
            && offset < self.word_at(8)
            && (offset - self.base).is_multiple_of(0x10)
        {
            Some((offset - self.base) / 0x10)
        } else {
            None
        }
    }
}
