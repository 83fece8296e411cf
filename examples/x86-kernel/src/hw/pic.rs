//! The legacy 8259 pair, through arch-x86's driver: remapped away from the
//! exception vectors to 0x20/0x28, then fully masked (SeaBIOS leaves the
//! master at vector 8, where IRQ0 would look like a double fault).

use arch_x86::Pic8259;
use arch_x86::hw::Ports;

/// Remaps the master to 0x20 and the slave to 0x28 and masks all 16 lines
/// (the vector domain keeps 0x20-0x2F out of the device window, so a
/// spurious IRQ 7/15 from the masked pair is never taken for a device).
pub fn remap_and_mask() {
    // SAFETY: the kernel runs at CPL 0 and this `Ports` goes only to
    // arch-x86's 8259 driver, which uses ports 0x20/0x21/0xA0/0xA1 (the 8259
    // pair on every PC, 8259A datasheet) and 0x80 for I/O delays.
    let ports = unsafe { Ports::new() };
    // Cannot fail: 0x20/0x28 are valid offsets.
    let _ = Pic8259::new(ports).remap_and_mask();
}
