//! The legacy 8259A pair: remap its vectors away from the CPU exceptions and
//! mask it, so that a kernel using the APICs never sees it fire.
//!
//! Initialisation sequence (8259A datasheet, "Initialization Command
//! Words"): ICW1 on the command port starts it (0x11: edge, cascade, ICW4
//! follows), then ICW2 (vector offset, a multiple of 8), ICW3 (master: the
//! slave sits on IR2 → 0x04; slave: its cascade id 2) and ICW4 (0x01: 8086
//! mode) on the data port. Afterwards a data-port write is OCW1, the mask.

use crate::regs::PortIo;

/// Master command port.
pub const MASTER_CMD: u16 = 0x20;
/// Master data port.
pub const MASTER_DATA: u16 = 0x21;
/// Slave command port.
pub const SLAVE_CMD: u16 = 0xA0;
/// Slave data port.
pub const SLAVE_DATA: u16 = 0xA1;
/// The POST diagnostic port, written for a short I/O delay.
pub const DELAY_PORT: u16 = 0x80;

const ICW1_INIT_ICW4: u8 = 0x11;
const ICW4_8086: u8 = 0x01;
const OCW2_EOI: u8 = 0x20;

/// Errors of the 8259 driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PicError {
    /// Offsets must be multiples of 8 outside the exception range (>= 0x20).
    BadOffset(u8),
    /// Lines are numbered 0-15.
    BadLine(u8),
}

/// The cascaded master/slave 8259A pair.
#[derive(Debug)]
pub struct Pic8259<P> {
    ports: P,
}

impl<P: PortIo> Pic8259<P> {
    /// A driver over `ports`.
    pub const fn new(ports: P) -> Self {
        Self { ports }
    }

    fn delay(&self) {
        self.ports.outb(DELAY_PORT, 0);
    }

    /// Re-initialises both PICs with vector offsets `master` (lines 0-7) and
    /// `slave` (lines 8-15), keeping the current masks.
    pub fn remap(&self, master: u8, slave: u8) -> Result<(), PicError> {
        for off in [master, slave] {
            if off % 8 != 0 || off < 0x20 {
                return Err(PicError::BadOffset(off));
            }
        }
        let masks = self.masks();
        for (cmd, data, offset, icw3) in [
            (MASTER_CMD, MASTER_DATA, master, 0x04),
            (SLAVE_CMD, SLAVE_DATA, slave, 0x02),
        ] {
            self.ports.outb(cmd, ICW1_INIT_ICW4);
            self.delay();
            self.ports.outb(data, offset);
            self.delay();
            self.ports.outb(data, icw3);
            self.delay();
            self.ports.outb(data, ICW4_8086);
            self.delay();
        }
        self.set_masks(masks);
        Ok(())
    }

    /// Remaps to 0x20/0x28 and masks every line: what a kernel that uses the
    /// IOAPIC does at boot (a spurious 8259 interrupt then arrives on 0x27 or
    /// 0x2F, never on an exception vector).
    pub fn remap_and_mask(&self) -> Result<(), PicError> {
        // Mask first so nothing fires on the old offsets meanwhile; `remap`
        // restores the saved (all-ones) mask after ICW1 cleared it.
        self.set_masks(0xFFFF);
        self.remap(0x20, 0x28)
    }

    /// The 16-bit mask (bit n set = line n masked).
    pub fn masks(&self) -> u16 {
        self.ports.inb(MASTER_DATA) as u16 | (self.ports.inb(SLAVE_DATA) as u16) << 8
    }

    /// Sets the 16-bit mask.
    pub fn set_masks(&self, masks: u16) {
        self.ports.outb(MASTER_DATA, masks as u8);
        self.ports.outb(SLAVE_DATA, (masks >> 8) as u8);
    }

    /// Masks or unmasks one line.
    pub fn set_masked(&self, line: u8, masked: bool) -> Result<(), PicError> {
        if line > 15 {
            return Err(PicError::BadLine(line));
        }
        let m = self.masks();
        let bit = 1u16 << line;
        self.set_masks(if masked { m | bit } else { m & !bit });
        Ok(())
    }

    /// Non-specific EOI for `line` (the slave and the master for 8-15).
    pub fn eoi(&self, line: u8) -> Result<(), PicError> {
        if line > 15 {
            return Err(PicError::BadLine(line));
        }
        if line >= 8 {
            self.ports.outb(SLAVE_CMD, OCW2_EOI);
        }
        self.ports.outb(MASTER_CMD, OCW2_EOI);
        Ok(())
    }
}
