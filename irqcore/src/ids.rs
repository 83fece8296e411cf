//! Typed identifiers: interrupt numbers, hardware interrupt numbers, CPU ids,
//! and the ids of registered domains and hotplug callbacks.
//!
//! Each is a newtype so that an irq number can never be passed where a hwirq
//! or a CPU id is expected (a classic source of bugs in C interrupt code).
//!
//! # Ranges
//!
//! - [`IrqNumber`] and [`HwIrq`]: every value is a valid id. Which numbers
//!   exist is decided at run time (the store's capacity, a domain's size),
//!   and calls with one that does not exist return
//!   [`IrqError::UnknownIrq`](crate::IrqError::UnknownIrq),
//!   [`IrqError::OutOfRange`](crate::IrqError::OutOfRange) or
//!   [`IrqError::BadHwIrq`](crate::IrqError::BadHwIrq).
//! - [`CpuId`]: ids run from 0 to [`MAX_CPUS`](crate::MAX_CPUS) - 1 (what a
//!   [`CpuMask`](crate::CpuMask) can hold). [`CpuId::new`] is the checked
//!   constructor; a core refuses ids at or above its own `nr_cpus` with
//!   [`IrqError::BadCpu`](crate::IrqError::BadCpu) at run time.
//!   The field is still public for the code written before `new` existed;
//!   it is to become private (see `docs/porting.md`), so build ids with
//!   [`CpuId::new`] and read them with [`CpuId::get`] / [`CpuId::index`].

use core::fmt;

/// A Linux-style "virtual" interrupt number: the key of the descriptor store.
/// Any value is a valid number; whether it is allocated is the store's
/// business.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct IrqNumber(pub u32);

/// A hardware interrupt number, meaningful only within one interrupt domain
/// (an IOAPIC pin, a GIC INTID, a Xen event-channel port, ...). Any value is
/// valid here; each domain checks its own range.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HwIrq(pub u64);

/// A logical CPU index, dense from 0 up to [`crate::MAX_CPUS`] - 1: build
/// one with [`CpuId::new`], which refuses larger numbers.
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
    /// CPU `n`, if `n` is below [`MAX_CPUS`](crate::MAX_CPUS).
    ///
    /// ```
    /// use irqcore::{CpuId, MAX_CPUS};
    /// assert_eq!(CpuId::new(3).map(CpuId::get), Some(3));
    /// assert_eq!(CpuId::new(MAX_CPUS as u32), None);
    /// ```
    #[inline]
    pub const fn new(n: u32) -> Option<CpuId> {
        if (n as usize) < crate::cpumask::MAX_CPUS {
            Some(CpuId(n))
        } else {
            None
        }
    }

    /// CPU `index`, if it is below [`MAX_CPUS`](crate::MAX_CPUS).
    #[inline]
    pub const fn from_index(index: usize) -> Option<CpuId> {
        if index < crate::cpumask::MAX_CPUS {
            Some(CpuId(index as u32))
        } else {
            None
        }
    }

    /// The CPU number.
    #[inline]
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The CPU index as a `usize`, for indexing per-CPU arrays.
    #[inline]
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// Names a domain inside one [`DomainRegistry`](crate::DomainRegistry).
/// Ids are never reused, so a stale id is refused rather than aliased.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomainId(pub u32);

/// Names one callback registered through
/// [`IrqCore::hotplug_callback`](crate::IrqCore::hotplug_callback), for
/// [`IrqCore::unregister_hotplug`](crate::IrqCore::unregister_hotplug) (see
/// [`HotplugRegistration::leak`](crate::HotplugRegistration::leak)). Only the
/// core makes them.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HotplugId(pub(crate) u64);

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
id_fmt!(DomainId, "domain");
id_fmt!(HotplugId, "hotplug");
