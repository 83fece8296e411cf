//! The legacy 8259 pair: remapped away from the exception vectors, then fully
//! masked (SeaBIOS leaves the master at vector 8, where IRQ0 would look like
//! a double fault).

use super::port::outb;

/// Remaps the master to `base` and the slave to `base + 8`, then masks all 16
/// lines. ICW1..ICW4 per the 8259A datasheet.
pub fn remap_and_mask(base: u8) {
    // SAFETY: ports 0x20/0x21/0xA0/0xA1 are the 8259 pair on every PC.
    unsafe {
        outb(0x20, 0x11);
        outb(0xA0, 0x11);
        outb(0x21, base);
        outb(0xA1, base + 8);
        outb(0x21, 4);
        outb(0xA1, 2);
        outb(0x21, 1);
        outb(0xA1, 1);
        outb(0x21, 0xFF);
        outb(0xA1, 0xFF);
    }
}
