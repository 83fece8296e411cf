//! Firmware interrupt specifiers (device-tree `interrupts` cells, ACPI
//! resources reduced to the same shape) and their translation to a hardware
//! irq number plus a trigger type.
//!
//! Three layouts cover almost every binding in use:
//!
//! | format | cells | meaning |
//! |---|---|---|
//! | [`SpecFormat::OneCell`] | `<n>` | hwirq `n`, trigger left to the hardware |
//! | [`SpecFormat::TwoCell`] | `<n flags>` | hwirq `n`, sense bits in `flags[3:0]` |
//! | [`SpecFormat::Gic`] | `<type n flags>` | ARM GIC: `type` 0 = SPI (INTID `n + 32`), 1 = PPI (INTID `n + 16`), 2 = extended SPI (INTID `n + 4096`), 3 = extended PPI (INTID `n + 1056`); sense bits in `flags[3:0]`, `flags[15:8]` is the GICv2 PPI CPU mask (ignored) |
//!
//! The INTID ranges are those of the GIC architecture specification
//! (IHI 0069, "INTID ranges"): PPIs 16..32, SPIs 32..1020, extended PPIs
//! 1056..1120, extended SPIs 4096..5120. Sense bits are the generic
//! binding's: 1 rising, 2 falling, 3 both edges, 4 level high, 8 level low.

use crate::chip::TriggerType;
use crate::ids::HwIrq;
use arrayvec::ArrayVec;
use core::fmt;

/// Most cells a specifier may have.
pub const MAX_SPEC_CELLS: usize = 4;

/// A firmware interrupt specifier: up to [`MAX_SPEC_CELLS`] 32-bit cells,
/// interpreted by the domain it is given to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FwSpec {
    cells: ArrayVec<u32, MAX_SPEC_CELLS>,
}

impl FwSpec {
    /// A specifier with `cells`; refused if there are more than
    /// [`MAX_SPEC_CELLS`].
    pub fn new(cells: &[u32]) -> Result<Self, SpecError> {
        let mut v = ArrayVec::new();
        v.try_extend_from_slice(cells)
            .map_err(|_| SpecError::CellCount {
                expected: MAX_SPEC_CELLS as u8,
                got: cells.len().min(u8::MAX as usize) as u8,
            })?;
        Ok(Self { cells: v })
    }

    /// The cells.
    pub fn cells(&self) -> &[u32] {
        &self.cells
    }
}

/// How a domain reads its specifiers (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SpecFormat {
    /// `<hwirq>`.
    OneCell,
    /// `<hwirq sense>`.
    #[default]
    TwoCell,
    /// `<type number flags>` of the ARM GIC bindings.
    Gic,
}

/// GIC specifier `type` cell values.
pub mod gic {
    /// Shared peripheral interrupt.
    pub const SPI: u32 = 0;
    /// Private peripheral interrupt.
    pub const PPI: u32 = 1;
    /// Extended SPI (GICv3.1).
    pub const ESPI: u32 = 2;
    /// Extended PPI (GICv3.1).
    pub const EPPI: u32 = 3;
}

/// Why a specifier could not be translated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpecError {
    /// The number of cells does not match the domain's format.
    CellCount {
        /// Cells the format needs (or at most accepts).
        expected: u8,
        /// Cells given.
        got: u8,
    },
    /// A GIC `type` cell other than SPI, PPI, ESPI or EPPI.
    BadType(u32),
    /// The interrupt number is outside the range of its type.
    NumberOutOfRange(u32),
    /// The flags cell has bits other than the sense bits (and, for PPIs,
    /// the CPU mask), or the sense bits are not a valid trigger type.
    BadFlags(u32),
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl core::error::Error for SpecError {}

/// Sense bits of a flags cell.
const SENSE_MASK: u32 = 0xf;
/// GICv2 PPI CPU-mask bits of a GIC flags cell.
const GIC_PPI_CPU_MASK: u32 = 0xff00;

fn sense(flags: u32, allowed_extra: u32) -> Result<TriggerType, SpecError> {
    if flags & !(SENSE_MASK | allowed_extra) != 0 {
        return Err(SpecError::BadFlags(flags));
    }
    TriggerType::from_bits(flags & SENSE_MASK).map_err(|_| SpecError::BadFlags(flags))
}

fn expect(cells: &[u32], n: u8) -> Result<(), SpecError> {
    if cells.len() == n as usize {
        Ok(())
    } else {
        Err(SpecError::CellCount {
            expected: n,
            got: cells.len() as u8,
        })
    }
}

impl SpecFormat {
    /// Translates `spec` into a hwirq and the trigger type it asks for
    /// ([`TriggerType::None`] when it does not say).
    pub fn translate(self, spec: &FwSpec) -> Result<(HwIrq, TriggerType), SpecError> {
        let c = spec.cells();
        match self {
            SpecFormat::OneCell => {
                expect(c, 1)?;
                Ok((HwIrq(c[0] as u64), TriggerType::None))
            }
            SpecFormat::TwoCell => {
                expect(c, 2)?;
                Ok((HwIrq(c[0] as u64), sense(c[1], 0)?))
            }
            SpecFormat::Gic => {
                expect(c, 3)?;
                let (kind, n, flags) = (c[0], c[1], c[2]);
                // (first INTID, number of INTIDs, extra flag bits allowed)
                let (base, count, extra) = match kind {
                    gic::SPI => (32u64, 988u32, 0),
                    gic::PPI => (16, 16, GIC_PPI_CPU_MASK),
                    gic::ESPI => (4096, 1024, 0),
                    gic::EPPI => (1056, 64, GIC_PPI_CPU_MASK),
                    t => return Err(SpecError::BadType(t)),
                };
                if n >= count {
                    return Err(SpecError::NumberOutOfRange(n));
                }
                Ok((HwIrq(base + n as u64), sense(flags, extra)?))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tr(f: SpecFormat, c: &[u32]) -> Result<(HwIrq, TriggerType), SpecError> {
        f.translate(&FwSpec::new(c).unwrap())
    }

    #[test]
    fn gic_types_offset_the_number() {
        assert_eq!(
            tr(SpecFormat::Gic, &[0, 5, 4]),
            Ok((HwIrq(37), TriggerType::LevelHigh))
        );
        assert_eq!(
            tr(SpecFormat::Gic, &[1, 14, 0xf08]),
            Ok((HwIrq(30), TriggerType::LevelLow))
        );
        assert_eq!(
            tr(SpecFormat::Gic, &[2, 0, 1]),
            Ok((HwIrq(4096), TriggerType::EdgeRising))
        );
        assert_eq!(
            tr(SpecFormat::Gic, &[3, 63, 0]),
            Ok((HwIrq(1119), TriggerType::None))
        );
        assert_eq!(tr(SpecFormat::Gic, &[4, 1, 4]), Err(SpecError::BadType(4)));
        assert_eq!(
            tr(SpecFormat::Gic, &[1, 16, 4]),
            Err(SpecError::NumberOutOfRange(16))
        );
        assert_eq!(
            tr(SpecFormat::Gic, &[0, 988, 4]),
            Err(SpecError::NumberOutOfRange(988))
        );
        // The CPU mask is only meaningful for PPIs.
        assert_eq!(
            tr(SpecFormat::Gic, &[0, 1, 0x104]),
            Err(SpecError::BadFlags(0x104))
        );
    }

    #[test]
    fn cell_counts_and_sense_bits_are_checked() {
        assert_eq!(
            tr(SpecFormat::OneCell, &[7]),
            Ok((HwIrq(7), TriggerType::None))
        );
        assert_eq!(
            tr(SpecFormat::OneCell, &[7, 1]),
            Err(SpecError::CellCount {
                expected: 1,
                got: 2
            })
        );
        assert_eq!(
            tr(SpecFormat::TwoCell, &[7, 2]),
            Ok((HwIrq(7), TriggerType::EdgeFalling))
        );
        assert_eq!(
            tr(SpecFormat::TwoCell, &[7, 5]),
            Err(SpecError::BadFlags(5))
        );
        assert_eq!(
            tr(SpecFormat::TwoCell, &[7, 0x14]),
            Err(SpecError::BadFlags(0x14))
        );
        assert_eq!(
            tr(SpecFormat::Gic, &[]),
            Err(SpecError::CellCount {
                expected: 3,
                got: 0
            })
        );
        assert!(FwSpec::new(&[0; 5]).is_err());
    }
}
