//! I/O APIC register access (82093AA datasheet): IOREGSEL at +0, IOWIN at
//! +0x10; redirection entry `n` is registers `0x10 + 2n` (low) and
//! `0x11 + 2n` (high).

use crate::sync::IrqLock;

/// Redirection entry bits (82093AA, 3.2.4).
pub mod rte {
    /// Interrupt mask.
    pub const MASKED: u64 = 1 << 16;
    /// Level-triggered (clear: edge).
    pub const LEVEL: u64 = 1 << 15;
    /// Active low (clear: active high).
    pub const ACTIVE_LOW: u64 = 1 << 13;
}

/// One IOAPIC: its MMIO base and GSI range. Register window access is
/// serialized by a lock (IOREGSEL/IOWIN is a two-step protocol).
pub struct IoApic {
    base: usize,
    /// First GSI routed by this IOAPIC.
    pub gsi_base: u32,
    /// Number of redirection entries.
    pub pins: u32,
    lock: IrqLock<()>,
}

impl IoApic {
    /// Opens the IOAPIC at `base` (from the MADT) and reads its pin count.
    pub fn new(base: usize, gsi_base: u32) -> Self {
        let mut io = IoApic {
            base,
            gsi_base,
            pins: 0,
            lock: IrqLock::new(()),
        };
        io.pins = ((io.read(1) >> 16) & 0xFF) + 1;
        io
    }

    /// The version register (0x20 on QEMU).
    pub fn version(&self) -> u32 {
        self.read(1) & 0xFF
    }

    fn read(&self, reg: u32) -> u32 {
        let _g = self.lock.lock();
        // SAFETY: `base` is an IOAPIC from the MADT, identity-mapped uncached;
        // IOREGSEL/IOWIN are 32-bit registers at +0/+0x10.
        unsafe {
            core::ptr::write_volatile(self.base as *mut u32, reg);
            core::ptr::read_volatile((self.base + 0x10) as *const u32)
        }
    }

    fn write(&self, reg: u32, v: u32) {
        let _g = self.lock.lock();
        // SAFETY: as in `read`.
        unsafe {
            core::ptr::write_volatile(self.base as *mut u32, reg);
            core::ptr::write_volatile((self.base + 0x10) as *mut u32, v);
        }
    }

    /// Reads redirection entry `pin`.
    pub fn read_rte(&self, pin: u32) -> u64 {
        let lo = self.read(0x10 + 2 * pin);
        let hi = self.read(0x11 + 2 * pin);
        (u64::from(hi) << 32) | u64::from(lo)
    }

    /// Writes redirection entry `pin`. The high half (destination) goes first
    /// so the entry is never live with a stale destination.
    pub fn write_rte(&self, pin: u32, v: u64) {
        self.write(0x11 + 2 * pin, (v >> 32) as u32);
        self.write(0x10 + 2 * pin, v as u32);
    }

    /// Directed EOI (IOAPIC version 0x20+ EOI register at +0x40): clears
    /// Remote IRR of the level entries using `vector`, so the pin can be
    /// delivered again (82093AA successors; Linux's `io_apic_eoi`).
    pub fn eoi(&self, vector: u8) {
        let _g = self.lock.lock();
        // SAFETY: `base` is this IOAPIC's MMIO page; the EOI register is a
        // 32-bit write-only register at +0x40 on version 0x20 parts (QEMU).
        unsafe { core::ptr::write_volatile((self.base + 0x40) as *mut u32, u32::from(vector)) }
    }

    /// Masks every pin (firmware may have left some live).
    pub fn mask_all(&self) {
        for pin in 0..self.pins {
            self.write_rte(pin, rte::MASKED);
        }
    }
}
