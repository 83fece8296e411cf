//! GIC interrupt identifiers and the firmware (device-tree) three-cell
//! interrupt specifier.

use irqcore::{HwIrq, IrqError, TriggerType};

/// The class of a GIC INTID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IntKind {
    /// Software-generated interrupt, INTID 0..16: an IPI, private to each CPU.
    Sgi,
    /// Private peripheral interrupt, INTID 16..32 (timers, PMU), one per CPU.
    Ppi,
    /// Shared peripheral interrupt, INTID 32..1020: a device line, routable.
    Spi,
    /// Locality-specific peripheral interrupt, INTID 8192 and up (GICv3):
    /// a message-based interrupt, configured in memory (the LPI property
    /// table), edge-like, without an active state (IHI 0069H 5.1).
    Lpi,
}

/// A GIC interrupt identifier: below 1020 (SGIs, PPIs, SPIs) or an LPI
/// (8192 up to 2^24). The special INTIDs 1020..=1023 and the reserved range
/// between are not interrupts and cannot be represented.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IntId(u32);

impl IntId {
    /// The first PPI.
    pub const PPI_BASE: u32 = 16;
    /// The first SPI.
    pub const SPI_BASE: u32 = 32;
    /// One past the last SPI (1020 upwards are special).
    pub const SPI_END: u32 = 1020;
    /// The first LPI (IHI 0069H 2.2.1).
    pub const LPI_BASE: u32 = 8192;
    /// One past the largest LPI the architecture allows (24 INTID bits).
    pub const LPI_END: u32 = 1 << 24;

    /// `intid` if it names an interrupt.
    pub const fn new(intid: u32) -> Option<Self> {
        if intid < Self::SPI_END || (intid >= Self::LPI_BASE && intid < Self::LPI_END) {
            Some(Self(intid))
        } else {
            None
        }
    }

    /// LPI `n`, INTID 8192 + n.
    pub const fn lpi(n: u32) -> Option<Self> {
        if n < Self::LPI_END - Self::LPI_BASE {
            Some(Self(Self::LPI_BASE + n))
        } else {
            None
        }
    }

    /// Whether this is an LPI.
    pub const fn is_lpi(self) -> bool {
        self.0 >= Self::LPI_BASE
    }

    /// SGI `n` (0..16).
    pub const fn sgi(n: u32) -> Option<Self> {
        if n < 16 { Some(Self(n)) } else { None }
    }

    /// PPI `n` (0..16), INTID 16 + n.
    pub const fn ppi(n: u32) -> Option<Self> {
        if n < 16 {
            Some(Self(Self::PPI_BASE + n))
        } else {
            None
        }
    }

    /// SPI `n` (0..988), INTID 32 + n.
    pub const fn spi(n: u32) -> Option<Self> {
        if n < Self::SPI_END - Self::SPI_BASE {
            Some(Self(Self::SPI_BASE + n))
        } else {
            None
        }
    }

    /// The INTID from an irqcore hardware number, if it is one.
    pub fn from_hwirq(hwirq: HwIrq) -> Option<Self> {
        u32::try_from(hwirq.0).ok().and_then(Self::new)
    }

    /// The raw INTID.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// As an irqcore hardware number (the GIC domain's hwirq is the INTID).
    pub const fn hwirq(self) -> HwIrq {
        HwIrq(self.0 as u64)
    }

    /// Which class this INTID belongs to.
    pub const fn kind(self) -> IntKind {
        if self.0 < Self::PPI_BASE {
            IntKind::Sgi
        } else if self.0 < Self::SPI_BASE {
            IntKind::Ppi
        } else if self.0 < Self::LPI_BASE {
            IntKind::Spi
        } else {
            IntKind::Lpi
        }
    }

    /// Whether this INTID is private to each CPU (SGI or PPI).
    pub const fn is_private(self) -> bool {
        self.0 < Self::SPI_BASE
    }
}

/// Cell 0 of a GIC specifier: shared peripheral interrupt.
pub const FW_TYPE_SPI: u32 = 0;
/// Cell 0 of a GIC specifier: private peripheral interrupt.
pub const FW_TYPE_PPI: u32 = 1;

/// Translates a device-tree GIC interrupt specifier
/// `<type number flags>` (binding `arm,gic` / `arm,gic-v3`) into the INTID
/// (as a hwirq) and the trigger type it declares.
///
/// * type 0: SPI `number` (INTID 32 + number); type 1: PPI `number`
///   (INTID 16 + number). The extended ranges (2, 3) are not supported.
/// * flags bits 3:0: 1 edge rising, 4 level high (the only sense values an
///   SPI can have: the GIC has no inverters); PPIs may also say 2 edge
///   falling or 8 level low (boards with an inverter in front of the GIC,
///   the GIC sees edge/level). 0 keeps the current configuration.
/// * flags bits 15:8: GICv2 PPI CPU mask, accepted and ignored for PPIs
///   (the line is per CPU anyway), refused for SPIs. Other bits: refused.
pub fn translate_three_cell(cells: &[u32]) -> Result<(HwIrq, TriggerType), IrqError> {
    let &[kind, number, flags] = cells else {
        return Err(IrqError::InvalidArgument);
    };
    let intid = match kind {
        FW_TYPE_SPI => IntId::spi(number),
        FW_TYPE_PPI => IntId::ppi(number),
        _ => None,
    }
    .ok_or(IrqError::BadHwIrq(HwIrq(u64::from(number))))?;
    let cpu_mask = flags & 0xff00;
    if flags & !0xff0f != 0 || (kind == FW_TYPE_SPI && cpu_mask != 0) {
        return Err(IrqError::InvalidTrigger);
    }
    let trigger = TriggerType::from_bits(flags & 0xf)?;
    let ok = match kind {
        FW_TYPE_SPI => matches!(
            trigger,
            TriggerType::None | TriggerType::EdgeRising | TriggerType::LevelHigh
        ),
        _ => trigger != TriggerType::EdgeBoth,
    };
    if !ok {
        return Err(IrqError::InvalidTrigger);
    }
    Ok((intid.hwirq(), trigger))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spi_and_ppi_specifiers_translate_to_intids() {
        assert_eq!(
            translate_three_cell(&[0, 1, 4]),
            Ok((HwIrq(33), TriggerType::LevelHigh))
        );
        assert_eq!(
            translate_three_cell(&[0, 987, 1]),
            Ok((HwIrq(1019), TriggerType::EdgeRising))
        );
        // QEMU virt's GICv2 timer: PPI 14, CPU mask 0xf, level high.
        assert_eq!(
            translate_three_cell(&[1, 14, 0xf04]),
            Ok((HwIrq(30), TriggerType::LevelHigh))
        );
        assert_eq!(
            translate_three_cell(&[1, 11, 8]),
            Ok((HwIrq(27), TriggerType::LevelLow))
        );
    }

    #[test]
    fn malformed_specifiers_are_refused() {
        assert_eq!(
            translate_three_cell(&[0, 1]),
            Err(IrqError::InvalidArgument)
        );
        assert_eq!(
            translate_three_cell(&[0, 1, 4, 0]),
            Err(IrqError::InvalidArgument)
        );
        assert_eq!(
            translate_three_cell(&[0, 988, 4]),
            Err(IrqError::BadHwIrq(HwIrq(988)))
        );
        assert_eq!(
            translate_three_cell(&[1, 16, 4]),
            Err(IrqError::BadHwIrq(HwIrq(16)))
        );
        assert_eq!(
            translate_three_cell(&[2, 0, 4]),
            Err(IrqError::BadHwIrq(HwIrq(0)))
        );
        // SPIs cannot be falling-edge or active-low, nor carry a CPU mask.
        assert_eq!(
            translate_three_cell(&[0, 3, 2]),
            Err(IrqError::InvalidTrigger)
        );
        assert_eq!(
            translate_three_cell(&[0, 3, 8]),
            Err(IrqError::InvalidTrigger)
        );
        assert_eq!(
            translate_three_cell(&[0, 3, 0x104]),
            Err(IrqError::InvalidTrigger)
        );
        assert_eq!(
            translate_three_cell(&[1, 3, 3]),
            Err(IrqError::InvalidTrigger)
        );
        assert_eq!(
            translate_three_cell(&[0, 3, 0x10004]),
            Err(IrqError::InvalidTrigger)
        );
        assert_eq!(
            translate_three_cell(&[0, 3, 5]),
            Err(IrqError::InvalidTrigger)
        );
    }

    #[test]
    fn intid_classes() {
        assert_eq!(IntId::new(15).map(IntId::kind), Some(IntKind::Sgi));
        assert_eq!(IntId::new(16).map(IntId::kind), Some(IntKind::Ppi));
        assert_eq!(IntId::new(32).map(IntId::kind), Some(IntKind::Spi));
        assert_eq!(IntId::new(1020), None);
        assert_eq!(IntId::from_hwirq(HwIrq(1 << 40)), None);
    }
}
