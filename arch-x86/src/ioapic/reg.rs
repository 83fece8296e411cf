//! The I/O APIC's register layout (Intel 82093AA datasheet, section 3): the
//! two direct registers of its window and the indirect registers they
//! select, with the redirection table's index helpers that the driver and
//! the model share.

/// Offset of the index register (IOREGSEL).
pub const IOREGSEL: usize = 0x00;
/// Offset of the data window (IOWIN).
pub const IOWIN: usize = 0x10;
/// Offset of the EOI register (version >= 0x20).
pub const IOAPIC_EOI: usize = 0x40;
/// Indirect register: id.
pub const REG_ID: u32 = 0x00;
/// Indirect register: version.
pub const REG_VERSION: u32 = 0x01;
/// Indirect register: first redirection entry (low half).
pub const REG_REDTBL: u32 = 0x10;

/// The indirect register of pin `pin`'s entry, low half (0x10 + 2 * pin).
/// Wrapping: an out-of-range pin selects a register the IOAPIC ignores,
/// it must not panic.
pub const fn redtbl_low(pin: u32) -> u32 {
    REG_REDTBL.wrapping_add(pin.wrapping_mul(2))
}

/// The indirect register of pin `pin`'s entry, high half.
pub const fn redtbl_high(pin: u32) -> u32 {
    redtbl_low(pin).wrapping_add(1)
}

/// The (pin, high half) an indirect register index selects, if it is in
/// the redirection table (the inverse of [`redtbl_low`]/[`redtbl_high`]).
pub const fn decode_redtbl(index: u32) -> Option<(u32, bool)> {
    if index < REG_REDTBL {
        return None;
    }
    let n = index - REG_REDTBL;
    Some((n / 2, n % 2 == 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirection_table_indices_round_trip() {
        assert_eq!(redtbl_low(0), 0x10);
        assert_eq!(redtbl_high(23), 0x3F);
        for pin in [0, 1, 23, 119] {
            assert_eq!(decode_redtbl(redtbl_low(pin)), Some((pin, false)));
            assert_eq!(decode_redtbl(redtbl_high(pin)), Some((pin, true)));
        }
        assert_eq!(decode_redtbl(REG_VERSION), None);
    }
}
