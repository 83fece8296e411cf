//! The 8254 PIT channel 0 as a periodic interrupt source (ISA IRQ 0).

use super::port::outb;

/// Input clock of the PIT, Hz.
pub const PIT_HZ: u32 = 1_193_182;

/// Programs channel 0 in mode 2 (rate generator) at about `hz`.
pub fn start_periodic(hz: u32) {
    let divisor = (PIT_HZ / hz).clamp(1, 0xFFFF) as u16;
    // SAFETY: ports 0x43/0x40 are the PIT's mode/command and channel 0 data.
    unsafe {
        outb(0x43, 0x34);
        outb(0x40, divisor as u8);
        outb(0x40, (divisor >> 8) as u8);
    }
}

/// Stops channel 0 (mode 0 with no count written never fires again).
pub fn stop() {
    // SAFETY: as above.
    unsafe { outb(0x43, 0x30) }
}
