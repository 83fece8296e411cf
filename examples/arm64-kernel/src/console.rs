//! The PL011 UART of QEMU `virt` at 0x0900_0000 (fixed layout; the device
//! tree names it `pl011@9000000`): the kernel's console, which
//! `-nographic` forwards to QEMU's stdout. QEMU's PL011 needs no set-up to
//! transmit. `kernel_common::console` prints through [`write`].

use core::sync::atomic::{AtomicUsize, Ordering};

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

/// Writes `s` to the UART, unlocked (`kernel_common::console` serialises).
pub fn write(s: &str) {
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
}
