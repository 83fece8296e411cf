//! COM1 (16550 at port 0x3F8): the kernel's console, which QEMU's
//! `-serial stdio` forwards to the runner. `kernel_common::console` prints
//! through [`write`].

use crate::hw::port::{inb, outb};

const COM1: u16 = 0x3F8;

/// Initialises COM1: 115200 8N1, FIFO on, interrupts off.
pub fn init() {
    // SAFETY: 0x3F8..0x3FF are COM1's registers (16550 datasheet).
    unsafe {
        outb(COM1 + 1, 0x00);
        outb(COM1 + 3, 0x80);
        outb(COM1, 0x01);
        outb(COM1 + 1, 0x00);
        outb(COM1 + 3, 0x03);
        outb(COM1 + 2, 0xC7);
        outb(COM1 + 4, 0x03);
    }
}

/// Writes `s` to COM1, unlocked (`kernel_common::console` serialises).
pub fn write(s: &str) {
    for b in s.bytes() {
        // SAFETY: COM1 registers; wait for THR empty (LSR bit 5).
        unsafe {
            while inb(COM1 + 5) & 0x20 == 0 {
                core::hint::spin_loop();
            }
            outb(COM1, b);
        }
    }
}
