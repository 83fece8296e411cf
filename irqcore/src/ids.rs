//! Typed identifiers: interrupt numbers, hardware interrupt numbers and CPU ids.
//!
//! Each is a newtype so that an irq number can never be passed where a hwirq
//! or a CPU id is expected (a classic source of bugs in C interrupt code).

use core::fmt;

/// A Linux-style "virtual" interrupt number: the key of the descriptor store.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct IrqNumber(pub u32);

/// A hardware interrupt number, meaningful only within one interrupt domain
/// (an IOAPIC pin, a GIC INTID, a Xen event-channel port, ...).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HwIrq(pub u64);

/// A logical CPU index, dense from 0 up to [`crate::MAX_CPUS`] - 1.
///
/// This is the kernel's CPU number, not an APIC id or an MPIDR: backends
/// translate.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct CpuId(pub u32);

impl IrqNumber {
    /// The number as a `usize`, for indexing.
    #[inline]
    pub const fn as_usize(self) -> usize {
        self.0 as usize
    }
}

impl CpuId {
    /// The CPU index as a `usize`, for indexing per-CPU arrays.
    #[inline]
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

macro_rules! id_fmt {
    ($t:ty, $prefix:literal) => {
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}
id_fmt!(IrqNumber, "irq");
id_fmt!(HwIrq, "hwirq");
id_fmt!(CpuId, "cpu");
