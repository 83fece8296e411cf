//! The PL011 UART of QEMU `virt` at 0x0900_0000 (fixed layout; the device
//! tree names it `pl011@9000000`): the kernel's console, which
//! `-nographic` forwards to QEMU's stdout. QEMU's PL011 needs no set-up to
//! transmit.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::sync::IrqLock;

/// The UART's base: QEMU `virt`'s PL011 at 0x0900_0000 until
/// [`use_uart_at`] moves it (a Xen domU's vpl011, an SBSA UART with the same
/// DR/FR registers, is at 0x2200_0000).
static PL011_BASE: AtomicUsize = AtomicUsize::new(0x0900_0000);

/// Writes to the PL011-compatible UART at `base` from now on (an address
/// in the identity-mapped device region below 1 GiB).
pub fn use_uart_at(base: usize) {
    if base < 0x4000_0000 {
        PL011_BASE.store(base, Ordering::Relaxed);
    }
}
/// Data register.
const DR: usize = 0x00;
/// Flag register; bit 5 TXFF: transmit FIFO full.
const FR: usize = 0x18;
const FR_TXFF: u32 = 1 << 5;

struct Pl011;

static CONSOLE: IrqLock<Pl011> = IrqLock::new(Pl011);

impl Write for Pl011 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let base = PL011_BASE.load(Ordering::Relaxed);
        for b in s.bytes() {
            // SAFETY: PL011 registers (PrimeCell UART TRM, 3.2) in the
            // identity-mapped device region; only this console writes them.
            unsafe {
                while core::ptr::read_volatile((base + FR) as *const u32) & FR_TXFF != 0 {
                    core::hint::spin_loop();
                }
                core::ptr::write_volatile((base + DR) as *mut u32, u32::from(b));
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
    let _ = Pl011.write_fmt(args);
}

/// `println!` for the kernel console.
#[macro_export]
macro_rules! kprintln {
    () => { $crate::console::print(format_args!("\n")) };
    ($($t:tt)*) => { $crate::console::print(format_args!("{}\n", format_args!($($t)*))) };
}
