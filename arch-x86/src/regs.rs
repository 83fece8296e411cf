//! The register-access traits every driver in this crate is written against.
//!
//! A driver never touches hardware directly: it is generic over one of these
//! small traits, so the same driver code runs against the real registers (the
//! [`hw`](crate::hw) module, `x86_64` only) and against the behavioural models
//! (the `model` feature) in host tests.
//!
//! Methods take `&self`: real registers are shared by nature, and the models
//! use interior mutability.

/// 32-bit memory-mapped registers of one device (xAPIC page, IOAPIC window).
pub trait Mmio32: Send + Sync {
    /// Reads the 32-bit register at byte `offset` from the device base.
    fn read32(&self, offset: usize) -> u32;
    /// Writes the 32-bit register at byte `offset` from the device base.
    fn write32(&self, offset: usize, value: u32);
}

/// Model-specific registers of the executing CPU (x2APIC, APIC base, TSC
/// deadline).
pub trait Msr: Send + Sync {
    /// `rdmsr`.
    fn read_msr(&self, msr: u32) -> u64;
    /// `wrmsr`.
    fn write_msr(&self, msr: u32, value: u64);
}

/// The legacy I/O port space (8259 PIC).
pub trait PortIo: Send + Sync {
    /// `inb`.
    fn inb(&self, port: u16) -> u8;
    /// `outb`.
    fn outb(&self, port: u16, value: u8);
}

impl<T: Mmio32 + ?Sized> Mmio32 for &T {
    fn read32(&self, offset: usize) -> u32 {
        (**self).read32(offset)
    }
    fn write32(&self, offset: usize, value: u32) {
        (**self).write32(offset, value)
    }
}

impl<T: Msr + ?Sized> Msr for &T {
    fn read_msr(&self, msr: u32) -> u64 {
        (**self).read_msr(msr)
    }
    fn write_msr(&self, msr: u32, value: u64) {
        (**self).write_msr(msr, value)
    }
}

impl<T: PortIo + ?Sized> PortIo for &T {
    fn inb(&self, port: u16) -> u8 {
        (**self).inb(port)
    }
    fn outb(&self, port: u16, value: u8) {
        (**self).outb(port, value)
    }
}

impl<T: Mmio32 + ?Sized> Mmio32 for alloc::sync::Arc<T> {
    fn read32(&self, offset: usize) -> u32 {
        (**self).read32(offset)
    }
    fn write32(&self, offset: usize, value: u32) {
        (**self).write32(offset, value)
    }
}

impl<T: Msr + ?Sized> Msr for alloc::sync::Arc<T> {
    fn read_msr(&self, msr: u32) -> u64 {
        (**self).read_msr(msr)
    }
    fn write_msr(&self, msr: u32, value: u64) {
        (**self).write_msr(msr, value)
    }
}

impl<T: PortIo + ?Sized> PortIo for alloc::sync::Arc<T> {
    fn inb(&self, port: u16) -> u8 {
        (**self).inb(port)
    }
    fn outb(&self, port: u16, value: u8) {
        (**self).outb(port, value)
    }
}

/// An [`Mmio32`] for configurations without MMIO (a LAPIC used only in
/// x2APIC mode): reads return all-ones, writes are ignored.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoMmio;

impl Mmio32 for NoMmio {
    fn read32(&self, _offset: usize) -> u32 {
        u32::MAX
    }
    fn write32(&self, _offset: usize, _value: u32) {}
}

/// A 32-bit register at a byte offset whose value is a `T`: a bitflags or
/// entry type, so that only that register's bits can be tested against it
/// (the LAPIC's [`Svr`](crate::lapic::reg::Svr) and
/// [`LvtEntry`](crate::LvtEntry) registers).
pub struct Reg32<T> {
    offset: usize,
    _value: core::marker::PhantomData<fn() -> T>,
}

impl<T> Clone for Reg32<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Reg32<T> {}

impl<T> core::fmt::Debug for Reg32<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Reg32({:#x})", self.offset)
    }
}

impl<T> Reg32<T> {
    /// The register at byte `offset`.
    pub const fn new(offset: usize) -> Self {
        Self {
            offset,
            _value: core::marker::PhantomData,
        }
    }
    /// Its byte offset.
    pub const fn offset(self) -> usize {
        self.offset
    }
}

/// A register value type: the raw 32 bits and back (bits the type does not
/// name are kept, so a read-modify-write preserves them).
pub trait RegValue: Copy {
    /// The value of raw register contents.
    fn from_raw(raw: u32) -> Self;
    /// The raw register contents.
    fn to_raw(self) -> u32;
}

impl RegValue for u32 {
    fn from_raw(raw: u32) -> Self {
        raw
    }
    fn to_raw(self) -> u32 {
        self
    }
}
