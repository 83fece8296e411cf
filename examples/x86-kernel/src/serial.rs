//! COM1 (16550 at port 0x3F8): the kernel's console, which QEMU's
//! `-serial stdio` forwards to the runner.

use core::fmt::{self, Write};

use crate::hw::port::{inb, outb};
use crate::sync::IrqLock;

const COM1: u16 = 0x3F8;

struct Com1;

static CONSOLE: IrqLock<Com1> = IrqLock::new(Com1);

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

impl Write for Com1 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            // SAFETY: COM1 registers; wait for THR empty (LSR bit 5).
            unsafe {
                while inb(COM1 + 5) & 0x20 == 0 {
                    core::hint::spin_loop();
                }
                outb(COM1, b);
            }
        }
        Ok(())
    }
}

/// Prints to the console (whole call under one lock: lines never interleave).
pub fn print(args: fmt::Arguments<'_>) {
    let _ = CONSOLE.lock().write_fmt(args);
}

/// Prints without taking the lock: for panic and fatal exception paths,
/// where the lock holder may be the crashed code.
pub fn print_unlocked(args: fmt::Arguments<'_>) {
    let _ = Com1.write_fmt(args);
}

/// `println!` for the kernel console.
#[macro_export]
macro_rules! kprintln {
    () => { $crate::serial::print(format_args!("\n")) };
    ($($t:tt)*) => { $crate::serial::print(format_args!("{}\n", format_args!($($t)*))) };
}

/// `print!` for the kernel console.
#[macro_export]
macro_rules! kprint {
    ($($t:tt)*) => { $crate::serial::print(format_args!($($t)*)) };
}
