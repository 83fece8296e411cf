//! The real register accessors (x86_64 only). This is the only module of the
//! crate that touches hardware.
//!
//! * [`MmioRegion`]: volatile 32-bit loads and stores in a mapped device page.
//! * [`Msrs`]: `rdmsr`/`wrmsr`, through the `x86_64` crate.
//! * [`Ports`]: `inb`/`outb`, through the `x86_64` crate.
//! * [`IRQ_CONTROL`]: `cli` / `sti` around the crate's IRQ-safe locks.
//!
//! Each is created with an `unsafe` constructor whose contract is the whole
//! safety argument: once a kernel vouches for the mapping or the privilege
//! level, the drivers in this crate only access architectural registers.

use crate::irqsafe::IrqControl;
use crate::regs::{Mmio32, Msr, PortIo};
use core::ptr::NonNull;
use x86_64::instructions::port::Port;
use x86_64::registers::model_specific::Msr as RawMsr;

/// A mapped MMIO region (an xAPIC register page, an IOAPIC window).
///
/// Accesses outside the region or not 4-byte aligned are refused: reads
/// return all-ones (what an unclaimed bus read returns), writes are dropped.
#[derive(Debug)]
pub struct MmioRegion {
    base: NonNull<u32>,
    len: usize,
}

// SAFETY: the region is device memory that every CPU may access; the type
// holds no CPU-local state, and each access is a single volatile load/store.
unsafe impl Send for MmioRegion {}
// SAFETY: as above; concurrent 32-bit accesses to device registers are what
// the hardware expects (drivers serialise multi-register sequences).
unsafe impl Sync for MmioRegion {}

impl MmioRegion {
    /// Wraps the region at virtual address `base`, `len` bytes long.
    ///
    /// # Safety
    ///
    /// `base..base + len` must be mapped (uncached) to the device's registers
    /// for as long as the region is used, `base` must be 4-byte aligned, and
    /// nothing else may treat that memory as ordinary memory.
    pub const unsafe fn new(base: NonNull<u8>, len: usize) -> Self {
        Self {
            base: base.cast(),
            len,
        }
    }

    fn checked(&self, offset: usize) -> Option<*mut u32> {
        let in_range = offset.checked_add(4).is_some_and(|end| end <= self.len);
        if !offset.is_multiple_of(4) || !in_range {
            return None;
        }
        // `wrapping_byte_add` cannot wrap: the region is mapped, so base + len
        // is a valid address range.
        Some(self.base.as_ptr().wrapping_byte_add(offset))
    }
}

impl Mmio32 for MmioRegion {
    fn read32(&self, offset: usize) -> u32 {
        match self.checked(offset) {
            // SAFETY: `new`'s contract: the aligned, in-bounds address is a
            // mapped device register; 32-bit loads are the access size the
            // xAPIC (SDM vol. 3A 11.4.1) and IOAPIC (82093AA 3.0) require.
            Some(p) => unsafe { p.read_volatile() },
            None => u32::MAX,
        }
    }

    fn write32(&self, offset: usize, value: u32) {
        if let Some(p) = self.checked(offset) {
            // SAFETY: as in `read32`.
            unsafe { p.write_volatile(value) }
        }
    }
}

/// The executing CPU's model-specific registers.
#[derive(Debug)]
pub struct Msrs(());

impl Msrs {
    /// Access to the MSRs.
    ///
    /// # Safety
    ///
    /// The caller runs at CPL 0, and hands this value only to drivers of this
    /// crate (which access architectural MSRs only: IA32_APIC_BASE, the x2APIC
    /// range when x2APIC is enabled, IA32_TSC_DEADLINE when the CPU has it);
    /// anything else could `#GP` or change machine state behind the kernel's
    /// back.
    pub const unsafe fn new() -> Self {
        Self(())
    }
}

impl Msr for Msrs {
    fn read_msr(&self, msr: u32) -> u64 {
        // SAFETY: `new`'s contract: CPL 0 and an architectural MSR that the
        // calling driver checked is present (SDM vol. 4, table 2-2).
        unsafe { RawMsr::new(msr).read() }
    }

    fn write_msr(&self, msr: u32, value: u64) {
        let mut m = RawMsr::new(msr);
        // SAFETY: as in `read_msr`; the drivers write only values the SDM
        // defines for these registers.
        unsafe { m.write(value) }
    }
}

/// The I/O port space.
#[derive(Debug)]
pub struct Ports(());

impl Ports {
    /// Access to the I/O ports.
    ///
    /// # Safety
    ///
    /// The caller has I/O privilege and hands this value only to drivers of
    /// this crate (the 8259 driver uses ports 0x20, 0x21, 0xA0, 0xA1 and the
    /// POST port 0x80 for delays).
    pub const unsafe fn new() -> Self {
        Self(())
    }
}

impl PortIo for Ports {
    fn inb(&self, port: u16) -> u8 {
        let mut p = Port::<u8>::new(port);
        // SAFETY: `new`'s contract: I/O privilege and a port owned by the
        // calling driver.
        unsafe { p.read() }
    }

    fn outb(&self, port: u16, value: u8) {
        let mut p = Port::<u8>::new(port);
        // SAFETY: as in `inb`.
        unsafe { p.write(value) }
    }
}

fn irq_save() -> bool {
    let was = x86_64::instructions::interrupts::are_enabled();
    x86_64::instructions::interrupts::disable();
    was
}

fn irq_restore(was_enabled: bool) {
    if was_enabled {
        x86_64::instructions::interrupts::enable();
    }
}

/// `RFLAGS.IF` save/`cli` and conditional `sti`: pass to
/// [`VectorDomain::with_irq_control`](crate::VectorDomain::with_irq_control)
/// and [`IoApic::with_irq_control`](crate::IoApic::with_irq_control). Only
/// valid at CPL 0 (`cli` faults in user mode).
pub const IRQ_CONTROL: IrqControl = IrqControl {
    save: irq_save,
    restore: irq_restore,
};
